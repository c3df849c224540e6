"""What every Skyops screen shares: the frame (top bar, demo banner, status line,
footer), a cheap `refresh_view` from the in-memory grid, the read-only guard and the
way a refused command is shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget

from ...domain.errors import Refused
from .. import palette
from ..widgets.chrome import DemoBanner, StatusLine, Swatch, TopBar
from ..widgets.footer import ScreenFooter

if TYPE_CHECKING:
    from ...control.commands import Command
    from ...runtime import Runtime


class Masthead(Vertical):
    pass


class Baseline(Vertical):
    pass


def chrome_top(runtime: Runtime, view: str) -> Masthead:
    parts: list[Widget] = [Swatch(), TopBar(runtime, view)]
    if runtime.demo:
        parts.append(DemoBanner())
    return Masthead(*parts)


def chrome_bottom(runtime: Runtime) -> Baseline:
    return Baseline(StatusLine(runtime), ScreenFooter(compact=True))


def is_live(screen: Screen) -> bool:
    """Built and not being torn down: the only state in which a tick may draw.

    A screen counts as mounted only once its composed widgets are. It starts coming
    apart (its widgets pruned) as soon as it is popped or the app shuts down, while
    `is_mounted` still says True: a tick then would find half its widgets gone."""
    return (
        screen.is_mounted
        and screen.is_attached
        and not (screen._closing or screen._closed or screen._pruning)
        and screen.app.is_running
        and not screen.app._closing
    )


class SkyScreen(Screen):
    """A console screen on one runtime. Subclasses compose their body and redraw it in
    `refresh_view`, which the app calls every second and after each batch of events."""

    SCOPE = ""
    VIEW = ""

    def __init__(self, runtime: Runtime, **kw: Any) -> None:
        super().__init__(**kw)
        self.runtime = runtime
        # The app's data_epoch when this screen last drew itself from the grid.
        self.drawn_epoch = -1

    def _compositor_refresh(self) -> None:
        """Textual's, except that no frame is rendered while the app holds frames back
        (a view switching): the screen is drawn whole when the hold ends. Textual renders
        it anyway and drops the result, once or twice a switch."""
        if self.app._batch_count and self is self.app.screen and not self.app.is_inline:
            self._repaint_required = True
            return
        super()._compositor_refresh()

    def compose(self) -> ComposeResult:
        yield chrome_top(self.runtime, self.VIEW)
        yield from self.compose_body()
        yield chrome_bottom(self.runtime)

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def refresh_view(self) -> None:
        """Redraw from the in-memory grid. Must be cheap: no I/O."""

    def tick(self) -> None:
        if not is_live(self):
            return
        for bar in self.query(TopBar):
            bar.update_bar()
        for line in self.query(StatusLine):
            line.update_line()
        self.refresh_view()
        self.drawn_epoch = self._epoch()

    def redraw(self) -> None:
        """`refresh_view`, noted as current: what a screen's mount draws (where its
        `refresh_view` draws before the mount is over), so that the switch that built
        it does not draw it all again (a big job list is rebuilt row by row, each time)."""
        self.refresh_view()
        self.drawn_epoch = self._epoch()

    def redraw_if_stale(self) -> None:
        """On resume: draw unless drawn since the grid or clock last moved (the view
        key's own redraw has just run, when a key brought the screen back)."""
        if self.drawn_epoch != self._epoch():
            self.redraw()

    def _epoch(self) -> int:
        return getattr(self.app, "data_epoch", -1)

    @property
    def paint(self) -> palette.Painter:
        return palette.Painter(self)

    # Commands -------------------------------------------------------------
    def allowed(self, what: str) -> bool:
        """False (and say so) when the console is read-only."""
        if self.runtime.readonly:
            self.notify(
                f"Read-only console (--readonly): {what} is disabled.",
                title="Read-only",
                severity="warning",
            )
            return False
        return True

    def command(
        self,
        cmd: Command,
        done: str | Callable[[dict], str] | None = None,
        then: Callable[[dict], None] | None = None,
    ) -> None:
        """Send a command through the one command path; a refusal becomes an error
        toast with its reason. It runs as a worker, never blocking the screen: the
        leading console applies it at once, a follower waits on the leader's socket.
        `done` (a toast) and `then` get the command's result when it comes."""
        if not getattr(self.runtime, "leader", True):
            self.notify("Sent to the leading console...", title="Queued", timeout=2)
        self.run_worker(self._command(cmd, done, then), group="commands", exit_on_error=False)

    async def _command(self, cmd: Command, done: Any, then: Any) -> None:
        try:
            result = await self.runtime.call(cmd)
        except Refused as e:
            self._refused(e)
            return
        except Exception as e:  # the store or the leader failed: say so, never crash
            self._refused(Refused(f"{type(e).__name__}: {e}"))
            return
        self._succeeded(result, done, then)

    def _refused(self, e: Exception) -> None:
        self.notify(str(e), title="Refused", severity="error", timeout=8, markup=False)

    def _succeeded(self, result: Any, done: Any, then: Any) -> None:
        if done:
            self.notify(done(result) if callable(done) else done, title="Done", markup=False)
        if then is not None:
            then(result)
        self.app.call_later(self.app_refresh)

    def app_refresh(self) -> None:
        refresh = getattr(self.app, "refresh_views", None)
        if refresh is not None:
            refresh()

    def action_back(self) -> None:
        back = getattr(self.app, "action_back", None)
        if back is not None:
            back()
