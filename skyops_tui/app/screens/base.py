"""What every Skyops screen shares: the frame (top bar, demo banner, status line,
footer), a cheap `refresh_view` from the in-memory grid, the read-only guard and the
way a refused command is shown."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from ...domain.errors import Refused
from .. import palette
from ..widgets.chrome import DemoBanner, StatusLine, Swatch, TopBar

if TYPE_CHECKING:
    from ...runtime import Runtime

T = TypeVar("T")


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
    return Baseline(StatusLine(runtime), Footer(compact=True))


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
        fn: Callable[[], T],
        done: str | Callable[[T], str] | None = None,
        then: Callable[[T], None] | None = None,
    ) -> T | None:
        """Run a scheduler command; a refusal becomes an error toast with its reason.

        In the console that leads, commands are in-memory and return at once (the result
        is returned, and `then(result)` called). A follower's commands wait for the leading
        console's answer, so they run in a thread worker; `then` is called when the
        answer comes and None is returned now."""
        if getattr(self.runtime, "leader", True):
            try:
                result = fn()
            except Refused as e:
                self._refused(e)
                return None
            self._succeeded(result, done, then)
            return result
        self.notify("Sent to the leading console...", title="Queued", timeout=2)
        self._remote_command(fn, done, then)
        return None

    @work(thread=True, group="commands")
    def _remote_command(self, fn: Callable[[], Any], done: Any, then: Any) -> None:
        try:
            result = fn()
        except Refused as e:
            self.app.call_from_thread(self._refused, e)
            return
        except Exception as e:  # the store or the leader failed: say so, never crash
            self.app.call_from_thread(self._refused, Refused(f"{type(e).__name__}: {e}"))
            return
        self.app.call_from_thread(self._succeeded, result, done, then)

    def _refused(self, e: Exception) -> None:
        self.notify(str(e), title="Refused", severity="error", timeout=8)

    def _succeeded(self, result: Any, done: Any, then: Any) -> None:
        if done:
            self.notify(done(result) if callable(done) else done, title="Done")
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
