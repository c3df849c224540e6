"""The Skyops console: a Textual app on one `Runtime`.

It starts the runtime's scheduler on mount and stops it on unmount. Every view reads
the in-memory grid (cheap, never stale) and is redrawn once a second and after each
batch of events; anything slow (logs, executor calls) runs in a worker.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
from collections import deque
from functools import partial
from pathlib import Path, PurePath
from typing import ClassVar

from textual import events, work
from textual._dispatch_key import dispatch_key
from textual.app import App, UnknownModeError
from textual.binding import Keymap
from textual.screen import ModalScreen, Screen
from textual.widget import AwaitMount

from ..domain.model import HOLDING, TERMINAL, Event, Job
from ..runtime import Runtime
from . import palette
from .commands import SkyopsCommands
from .keys import bindings
from .notify import Notifier
from .screens.base import SkyScreen, is_live
from .screens.events import EventsScreen
from .screens.grid import GridScreen
from .screens.help import HelpScreen
from .screens.jobs import JobsScreen
from .screens.launch import LaunchScreen
from .screens.ledger import LedgerScreen
from .screens.market import MarketScreen
from .screens.reservations import ReservationsScreen
from .widgets.chrome import StatusLine, TopBar

STOP_WAIT_S = 30.0
SWITCH_HOLD_MAX_S = 0.5  # frames held back while a view switches, at most
NO_FULL_PASSES = 1 << 30  # the collector's own trigger for a full pass, never reached

# Each view's screen, in the order of the view keys.
SCREENS: dict[str, type[SkyScreen]] = {
    "grid": GridScreen,
    "jobs": JobsScreen,
    "launch": LaunchScreen,
    "market": MarketScreen,
    "reservations": ReservationsScreen,
    "ledger": LedgerScreen,
    "events": EventsScreen,
}


def css_paths(screen: type[Screen]) -> list[Path]:
    """A screen class's CSS files, resolved as Textual resolves them for its instances."""
    if screen.CSS_PATH is None:
        return []
    here = Path(inspect.getfile(screen)).parent
    paths = [screen.CSS_PATH] if isinstance(screen.CSS_PATH, str | PurePath) else screen.CSS_PATH
    return [p if (p := Path(raw)).is_absolute() else (here / p).resolve() for raw in paths]


class SkyopsApp(App):
    CSS_PATH = "skyops.tcss"
    TITLE = "Skyops"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {SkyopsCommands}
    VIEWS: ClassVar[tuple[str, ...]] = tuple(SCREENS)
    REFRESH_S = 1.0
    GC_FULL_S = 60.0  # the collector's full pass, on this timer (see on_mount)

    def __init__(
        self,
        runtime: Runtime,
        *,
        thresholds: palette.LoadThresholds | None = None,
        keymap: Keymap | None = None,
        sim_speed: float | None = None,
        start_view: str = "grid",
    ) -> None:
        """`sim_speed`: on a simulated runtime (ManualClock), move simulated time this many
        seconds per real second (for a live demo; tests move time themselves)."""
        super().__init__()
        self.runtime = runtime
        self.thresholds = thresholds or palette.DEFAULT_THRESHOLDS
        self.keymap_overrides: dict[str, str] = dict(keymap or {})
        self.sim_speed = sim_speed
        self.start_view = start_view
        self.history: list[str] = []
        self.toast_log: deque[tuple[str, str, str]] = deque(maxlen=200)
        self.notifier = Notifier(runtime, self.notify)
        self._refresh_pending = False
        # Bumped whenever what the views show may have changed (events, the clock's
        # tick): a screen drawn since the last bump is current (SkyScreen.drawn_epoch).
        self.data_epoch = 0
        self._runtime_up = False  # leading or following: roles are told from then on
        self._was_leader: bool | None = None
        self.status_note = ""
        for view in self.VIEWS:
            self.add_mode(view, partial(SCREENS[view], runtime))
        # Every view's stylesheet is read with the app's, at start-up: a first visit then
        # brings no new CSS, which Textual would answer by reparsing the whole stylesheet
        # and restyling every screen built so far.
        for path in (p for view in SCREENS.values() for p in css_paths(view)):
            if path not in self.css_path:
                self.css_path.append(path)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """Colours for the meanings a theme does not name (palette.MEANING_COLOURS),
        picked for the theme's background, so every theme has them."""
        return palette.meaning_colours(self.current_theme.dark)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity="information",
        timeout=None,
        markup: bool = False,
    ) -> None:
        """A toast, also kept in `toast_log` (title, message, severity) for tests and the
        events screen. Markup is off: messages carry user text (job names, commands)."""
        self.toast_log.append((title, message, severity))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # Keys, in the order they were typed -----------------------------------------
    async def on_event(self, event: events.Event) -> None:
        """Resolve a key's binding when the key arrives, against the focus of that
        moment. Textual resolves it only once the key has bubbled up from the focused
        widget, by which time a later letter may already have been typed into a field:
        ctrl+u then clears what was typed after it, and a letter meant for the field
        fires a screen key. Keys no binding wants go on to the focused widget as usual."""
        if (
            isinstance(event, events.Key)
            and not event.is_forwarded
            and self._screen_stack
            and self.screen.maximized is None
        ):
            if await self._check_bindings(event.key, priority=True):
                return
            if await self._check_bindings(event.key):
                return
            event._skyops_checked = True  # type: ignore[attr-defined]
        await super().on_event(event)

    async def _on_key(self, event: events.Key) -> None:
        if getattr(event, "_skyops_checked", False):
            await dispatch_key(self, event)  # its bindings were looked up on arrival
            return
        await super()._on_key(event)

    # Lifecycle ----------------------------------------------------------------
    async def on_mount(self) -> None:
        if self.keymap_overrides:
            self.set_keymap(self.keymap_overrides)
        feed = self.runtime.feed
        feed.listeners.append(self._on_events)
        await self.action_view(self.start_view)
        self.set_interval(self.REFRESH_S, self._tick, name="refresh")
        self.start_runtime()
        # What exists after start-up lives as long as the app: keep it out of the
        # collector's full passes, which otherwise stall a refresh on a big grid.
        gc.freeze()
        # A full pass still took 50-110 ms at 512 nodes, when the collector chose (nine
        # a minute, from the feed's short-lived rows): a key that came meanwhile waited
        # for it. Young generations are collected as before; the full pass runs once a
        # minute on a timer, between other work.
        self._gc_threshold = gc.get_threshold()
        young, middle, _ = self._gc_threshold
        gc.set_threshold(young, middle, NO_FULL_PASSES)
        self.set_interval(self.GC_FULL_S, self._collect, name="full collection")
        if self.sim_speed:
            self.set_interval(1.0, self._advance_sim, name="simulated time")

    @work(exclusive=True, group="runtime")
    async def start_runtime(self) -> None:
        """Start the scheduler (and connect to the nodes) after the first screen is up."""
        self.status_note = "starting the scheduler and connecting to nodes..."
        self.data_epoch += 1
        self.refresh_views()
        try:
            await self.runtime.start()
        except Exception as e:  # e.g. a store that cannot be opened: say so, keep showing
            self.status_note = f"the scheduler did not start: {e}"
            self.notify(str(e), title="Scheduler not started", severity="error", timeout=15)
        else:
            self.status_note = ""
            self._runtime_up = True
            self._note_leadership()  # how it started, so that a later takeover is told
        self.data_epoch += 1
        self.refresh_views()

    async def on_unmount(self) -> None:
        threshold = getattr(self, "_gc_threshold", None)
        if threshold is not None:
            gc.set_threshold(*threshold)
        feed = self.runtime.feed
        if self._on_events in feed.listeners:
            feed.listeners.remove(self._on_events)
        await self.runtime.stop()

    def _on_events(self, events: list[Event]) -> None:
        if threading.get_ident() != self._thread_id:
            # A follower's command reloads the grid from a worker thread.
            self.call_from_thread(self._on_events, events)
            return
        self.notifier.on_events(events)
        self.data_epoch += 1
        if not self._refresh_pending:
            self._refresh_pending = True
            self.call_later(self.refresh_views)

    def _collect(self) -> None:
        gc.collect()

    def _tick(self) -> None:
        self.data_epoch += 1
        self.notifier.flush()
        self._note_leadership()
        self.refresh_views()

    def _note_leadership(self) -> None:
        """Say when this console takes over the grid, or hands it over: the top bar's
        LEADER/FOLLOWER changes quietly, a takeover should not."""
        rt = self.runtime
        if getattr(rt, "store", None) is None or not self._runtime_up:
            return
        leads = bool(getattr(rt, "leader", True))
        was = self._was_leader
        self._was_leader = leads
        if was is None or was == leads:
            return
        if leads:
            self.notify(
                "This console now leads the grid: it schedules and runs the commands.",
                title="Now leading",
                severity="warning",
            )
        else:
            self.notify(
                "Another console leads the grid now; this one follows it.",
                title="Now following",
                severity="warning",
            )

    def _advance_sim(self) -> None:
        from ..clock import ManualClock
        from ..demo import advance

        if isinstance(self.runtime.clock, ManualClock) and self.sim_speed:
            advance(self.runtime, self.sim_speed, step=min(30.0, self.sim_speed))
            self.data_epoch += 1

    def refresh_views(self) -> None:
        """Redraw the visible screen from the in-memory grid."""
        self._refresh_pending = False
        for screen in self._visible_screens():
            if not is_live(screen):
                continue
            tick = getattr(screen, "tick", None)
            if tick is not None:
                tick()
                continue
            for bar in screen.query(TopBar):
                bar.update_bar()
            for line in screen.query(StatusLine):
                line.update_line()
            refresh = getattr(screen, "refresh_view", None)
            if callable(refresh):
                refresh()

    def _visible_screens(self) -> list[Screen]:
        """The active screen, and the one under it while a dialog is open."""
        out: list[Screen] = []
        for screen in reversed(self.screen_stack):
            out.append(screen)
            if not isinstance(screen, ModalScreen):
                break
        return out

    # Navigation ----------------------------------------------------------------
    @property
    def modal_open(self) -> bool:
        return isinstance(self.screen, ModalScreen)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("view", "help") and self.modal_open:
            return False
        return True

    async def action_view(self, view: str) -> None:
        if view not in self.VIEWS:
            self.notify(f"No view {view!r}.", severity="error")
            return
        if self.current_mode == view:
            # Pressing a view's key again goes back to its top (e.g. from a job's detail).
            while len(self.screen_stack) > 1:
                self.pop_screen()
            return
        if self.current_mode in self.VIEWS:
            self.history.append(self.current_mode)
        await self.switch_mode(view)
        # A view's key opens the view itself, not a detail left open on it earlier.
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.focus_first(self.screen)
        screen = self.screen
        if not isinstance(screen, SkyScreen) or screen.drawn_epoch != self.data_epoch:
            self.refresh_views()  # a view built just now has drawn itself on mount

    def switch_mode(self, mode: str) -> AwaitMount:
        """Textual's `App.switch_mode` (8.2, pinned), except that a screen coming back
        keeps its styles when no stylesheet or theme changed while it was away.

        Textual re-applies the whole stylesheet to every widget of a resumed screen
        (`ScreenResume.refresh_styles`), which also empties each table's render cache,
        so the screen is styled and rendered from scratch: about a third of a switch's
        CPU (docs/benchmarks.md §11). A theme or CSS change bumps the app's CSS count,
        the screen's then differs, and it is restyled as before. A first visit is
        styled once, as its widgets mount (`_first_visit`)."""
        if mode == self._current_mode:
            return AwaitMount(self.screen, [])
        if mode not in self._modes:
            raise UnknownModeError(f"No known mode {mode!r}")
        self._begin_batch()  # Textual holds frames back 50 ms (delay_update); see below
        self.screen.post_message(events.ScreenSuspend())
        self.screen.refresh()
        first = mode not in self._screen_stacks
        await_mount = self._first_visit(mode) if first else AwaitMount(self.screen, [])
        self._current_mode = mode
        stale = self.screen._css_update_count != self._css_update_count
        if stale and not first:
            self.refresh_css()
        self.mode_change_signal.publish(mode)
        self.screen_change_signal.publish(self.screen)
        self.screen._screen_resized(self.size)
        self.screen.post_message(events.ScreenResume(refresh_styles=stale and not first))
        self._end_batch_when_shown(self.screen)
        return await_mount

    def _end_batch_when_shown(self, screen: Screen) -> None:
        """Let frames through again as soon as the new screen can show itself: built,
        resumed, and the key's own handling (which refreshes the view) done.

        Textual's switch holds frames back a fixed 50 ms, so that no frame shows a
        screen half built: every switch took at least 50 ms to show, however little it
        cost. The screen's queue reaches this callback after its compose, mount and
        resume; the app's queue, after the handler of the key that switched. A screen
        torn down first never gets there: the timer ends the hold then."""
        done = False

        def end() -> None:
            nonlocal done
            if done:
                return
            done = True
            fallback.stop()
            self._end_batch()
            if not self._batch_count:
                self.screen.refresh()

        fallback = self.set_timer(SWITCH_HOLD_MAX_S, end, name="switch hold")
        screen.call_later(self.call_later, end)

    def _first_visit(self, mode: str) -> AwaitMount:
        """Textual's `App._init_mode` for a view's screen, without restyling: each
        widget is styled as it mounts, from a stylesheet that already holds the view's
        CSS (read at start-up). `_init_mode` reparsed the whole stylesheet and restyled
        every screen built so far, then posted a resume that restyled the new one: three
        stylings, and half of a first visit's CPU (docs/benchmarks.md §11)."""
        factory = self._modes[mode]
        assert callable(factory)  # SCREENS' partials, added in __init__
        screen, await_mount = self._get_screen(factory())
        self._screen_stacks[mode] = [screen]
        self._load_screen_css(screen)  # nothing to read unless a subclass adds CSS
        screen._css_update_count = self._css_update_count
        return await_mount

    def focus_first(self, screen: Screen) -> None:
        """Focus the screen's first field now, not when its resume event comes round:
        keys typed right after the view key then land in that field, never on the
        screen's own single-letter keys."""
        selector = screen.AUTO_FOCUS
        if not selector or screen.focused is not None:
            return
        found = screen.query(selector)
        if found:
            screen.set_focus(found.first())

    # Sync where Textual's App.action_back is async: screens (screens/base.py) call it
    # directly and must not be handed a coroutine; Textual runs either kind of action.
    def action_back(self) -> None:  # type: ignore[override]
        """esc: close the top screen, else go back to the previous view."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
            return
        while self.history:
            view = self.history.pop()
            if view != self.current_mode:
                self.switch_mode(view)
                return

    # Quitting ---------------------------------------------------------------
    async def action_quit(self) -> None:
        """q asks first when leaving would lose something: a launch form's edits, or
        the demo's running jobs (real boxes' jobs are meant to outlive the console;
        the demo's run on this machine, so stopping them is offered)."""
        form = self.launch_form
        demo_jobs = self.demo_jobs_running()
        if (form is None or not form.unsaved_edits) and not demo_jobs:
            self.exit()
            return
        self.run_worker(self._ask_to_quit(), group="quit", exclusive=True)

    async def _ask_to_quit(self) -> None:
        from .screens.dialogs import ChoiceDialog, ConfirmDialog

        form = self.launch_form
        if form is not None and form.unsaved_edits:
            fields = ", ".join(sorted(form.touched))
            ok = await self.push_screen_wait(
                ConfirmDialog(
                    "Quit with unsaved edits?",
                    f"The launch form has edits not launched ({fields}). Quit and lose them?",
                    confirm="Quit",
                )
            )
            if not ok:
                return
        jobs = self.demo_jobs_running()
        if jobs:
            names = ", ".join(j.name for j in jobs[:6]) + (" ..." if len(jobs) > 6 else "")
            choice = await self.push_screen_wait(
                ChoiceDialog(
                    "Quit the demo?",
                    f"{len(jobs)} demo jobs are running on this machine ({names}), each "
                    "a job process and its shim. They keep running after the console "
                    "quits unless you stop them; the next `skyops` picks them up again.",
                    [("stop", "Stop them and quit"), ("leave", "Leave them running")],
                )
            )
            if choice is None:
                return
            if choice == "stop":
                # Queued ones too, or they would start on the GPUs the others free.
                grid = self.runtime.grid
                await self.stop_jobs([j for j in grid.jobs.values() if not j.finished])
        self.exit()

    @property
    def launch_form(self) -> LaunchScreen | None:
        form = getattr(self, "_launch_form", None)
        return form if form is not None and form.is_attached else None

    def demo_jobs_running(self) -> list[Job]:
        if not self.runtime.demo:
            return []
        return [j for j in self.runtime.grid.jobs.values() if j.state in HOLDING]

    async def stop_jobs(self, jobs: list[Job]) -> None:
        """Cancel each job and wait (a bounded time) for its processes to go: quitting
        at once would stop the scheduler before the stop reached the agent."""
        from ..clock import ManualClock
        from ..control.commands import Cancel

        self.notify(f"Stopping {len(jobs)} demo jobs...", title="Quitting", timeout=10)
        for job in jobs:
            if job.stop_reason:
                continue  # already on its way out
            try:
                await self.runtime.call(Cancel(ref=job.id))
            except Exception as e:  # one refusal must not keep the rest running
                self.notify(str(e), title="Not stopped", severity="error")
        if isinstance(self.runtime.clock, ManualClock):
            return  # simulated agents: no processes to wait for
        deadline = time.monotonic() + STOP_WAIT_S
        ids = {j.id for j in jobs}
        while time.monotonic() < deadline:
            grid = self.runtime.grid
            if all(grid.jobs[i].state in TERMINAL for i in ids if i in grid.jobs):
                return
            await asyncio.sleep(0.2)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.runtime))

    # Jumps the other screens and the palette use --------------------------------
    def show_job(self, job_id: int, logs: bool = False) -> None:
        from .screens.job import JobScreen

        async def go() -> None:
            await self.action_view("jobs")
            while len(self.screen_stack) > 1:
                self.pop_screen()
            self.push_screen(JobScreen(self.runtime, job_id, logs=logs))

        self.call_later(go)

    def show_node(self, name: str) -> None:
        from .screens.node import NodeScreen

        async def go() -> None:
            await self.action_view("grid")
            while len(self.screen_stack) > 1:
                self.pop_screen()
            self.push_screen(NodeScreen(self.runtime, name))

        self.call_later(go)

    def launch(self, mode: str) -> None:
        async def go() -> None:
            await self.action_view("launch")
            await self.run_action(f"pick_mode('{mode}')", self.screen)

        self.call_later(go)
