"""Launch a job: pick the mode, fill its fields, watch the live quote (what it costs and
what the scheduler would do with it now), submit with ctrl+s.

The command line is split with shlex into argv; it is never run through a shell.
Field errors are pydantic's own (JobSpec), shown under the field they belong to.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Select, Static

from ...control.commands import Submit
from ...domain.errors import NAME_RULE
from ...domain.model import Mode
from ...domain.specs import JobSpec
from ...policy.quotes import dry_run
from .. import quote as Q
from ..keys import bindings
from ..widgets.chrome import show
from .base import SkyScreen

MODES = (Mode.PRIORITY, Mode.COMMIT, Mode.FLEX)
DEMO_WORK_H = 8.0  # demo grid: simulated jobs need this much work unless told otherwise
DEMO_CHECKPOINT_S = 300.0

# Where a model-level error (one without a field) is shown, by a word in its message.
ERROR_FIELDS = (
    ("hours", "hours"),
    ("hourly", "hours"),
    ("reservation", "reservation"),
    ("bid", "bid"),
    ("nodes", "gpus"),
    ("gpus", "gpus"),
)
FIELD_OF = {"argv": "argv", "gpu_type": "gpu_type", "renew_hours": "hours", "runtime": "sim_work"}


def friendly(err: ErrorDetails) -> str:
    if err["type"] == "string_pattern_mismatch":
        return NAME_RULE
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def field_row(label: str, widget: Widget, name: str, classes: str = "") -> Vertical:
    return Vertical(
        Horizontal(Label(label, classes="field-label"), widget, classes="field-line"),
        Static("", id=f"err-{name}", classes="field-error"),
        classes=f"field {classes}".strip(),
        id=f"row-{name}",
    )


class LaunchScreen(SkyScreen):
    SCOPE = "launch"
    VIEW = "launch"
    BINDINGS = bindings("launch")
    AUTO_FOCUS = "#name"

    def __init__(self, runtime, **kw: Any) -> None:
        super().__init__(runtime, **kw)
        self.mode = Mode.PRIORITY
        self.touched: set[str] = set()
        self.show_all_errors = False
        self.last_spec: JobSpec | None = None

    # Layout ---------------------------------------------------------------
    def compose_body(self) -> Iterable[Widget]:
        rt = self.runtime
        types = [(t, t) for t, ns in rt.grid.by_type.items() if ns]
        with Horizontal(id="launch-body"):
            with VerticalScroll(id="launch-form"):
                yield RadioSet(
                    *(
                        RadioButton(
                            m.value.capitalize(), id=f"mode-{m.value}", value=(m is self.mode)
                        )
                        for m in MODES
                    ),
                    id="mode",
                    compact=True,
                )
                yield Static(id="mode-help", classes="mode-help")
                yield field_row("Name", Input(self.default_name(), id="name", compact=True), "name")
                yield field_row("User", Input(rt.user, id="user", compact=True), "user")
                yield field_row(
                    "GPUs", Input("1", id="gpus", placeholder="on one node", compact=True), "gpus"
                )
                yield field_row(
                    "Nodes",
                    Input("", id="nodes", placeholder="or whole nodes", compact=True),
                    "nodes",
                    "only-priority only-flex",
                )
                yield field_row(
                    "GPU type",
                    Select(types, prompt="any type", id="gpu_type", compact=True),
                    "gpu_type",
                    "only-priority only-flex",
                )
                yield field_row(
                    "Command",
                    Input(
                        self.default_command(),
                        id="argv",
                        placeholder="python train.py --lr 3e-4",
                        compact=True,
                    ),
                    "argv",
                )
                yield field_row(
                    "Hours", Input("1", id="hours", compact=True), "hours", "only-priority"
                )
                yield Horizontal(
                    Checkbox(
                        "hourly", id="hourly", compact=True, tooltip="rolling, renewed each hour"
                    ),
                    Checkbox("auto-renew", id="auto_renew", compact=True),
                    classes="field-line only-priority checks",
                )
                yield field_row(
                    "Reservation",
                    Select([], prompt="your reservations", id="reservation", compact=True),
                    "reservation",
                    "only-commit",
                )
                yield field_row(
                    "Bid /GPU-h",
                    Input("", id="bid", placeholder="e.g. 1.00", compact=True),
                    "bid",
                    "only-flex",
                )
                if self.simulated:
                    yield field_row(
                        "Sim work (h)",
                        Input(f"{DEMO_WORK_H:g}", id="sim_work", compact=True),
                        "sim_work",
                    )
                yield Static("", id="form-error", classes="field-error")
                yield Button("Launch  ctrl+s", id="submit", variant="primary", compact=True)
            with Vertical(id="quote-panel"):
                yield Label("Quote", classes="section")
                yield Static(id="quote")

    @property
    def unsaved_edits(self) -> bool:
        """Fields changed since the last launch (q asks before losing them)."""
        return bool(self.touched)

    def on_mount(self) -> None:
        # SkyopsApp.launch_form reads it back with getattr: the app declares no such field.
        setattr(self.app, "_launch_form", self)  # noqa: B010
        self.fill_reservations()
        self.apply_mode()
        self.refresh_view()

    @property
    def simulated(self) -> bool:
        """Simulated agents (a manual clock): a job is so many hours of simulated work,
        not a process, so the form asks for that work; real agents run the command."""
        from ...clock import ManualClock

        return isinstance(self.runtime.clock, ManualClock)

    def default_command(self) -> str:
        """In the demo, the example checkpointing job (an absolute path, run by the
        console's own Python), so a launch works as it stands from any directory."""
        if not self.runtime.demo or self.simulated:
            return ""  # simulated work runs no command
        from ...demo import demo_argv

        return shlex.join(demo_argv())

    def default_name(self) -> str:
        g = self.runtime.grid
        n = g.next_job_id
        while f"job-{n}" in g.job_names:
            n += 1
        return f"job-{n}"

    def my_reservations(self) -> list[tuple[str, str]]:
        rt = self.runtime
        out = []
        for res in rt.grid.reservations.values():
            if res.finished:
                continue
            if rt.is_operator or res.user == rt.user or res.user == self.value("user"):
                out.append((f"{res.name} ({res.gpus} x {res.gpu_type}, {res.user})", res.name))
        return out

    def fill_reservations(self) -> None:
        sel = self.query_one("#reservation", Select)
        options = self.my_reservations()
        current = sel.value
        sel.set_options(options)
        if current in {v for _, v in options}:
            sel.value = current

    def apply_mode(self) -> None:
        # Showing rows directly restyles only them; a class on the screen would restyle
        # every widget on it.
        for m in MODES:
            for w in self.query(f".only-{m.value}"):
                w.display = any(w.has_class(f"only-{x.value}") for x in (self.mode,))
        help_text = {
            Mode.PRIORITY: "Exclusive GPUs now, standard rate; preempts Flex if needed.",
            Mode.COMMIT: "Runs inside your prepaid, discounted reservation window.",
            Mode.FLEX: "Interruptible, by bid: checkpoint signal, pause, auto-resume.",
        }[self.mode]
        show(self.query_one("#mode-help", Static), Text(help_text, style=self.paint("tag--muted")))

    # Reading the form -----------------------------------------------------
    def value(self, wid: str) -> Any:
        try:
            w = self.query_one(f"#{wid}")
        except Exception:
            return None
        if isinstance(w, Input):
            return w.value.strip()
        if isinstance(w, Select):
            return None if w.value is Select.NULL else w.value
        if isinstance(w, Checkbox):
            return w.value
        return None

    def build(self) -> tuple[JobSpec | None, dict[str, str], list[str]]:
        """The JobSpec the form describes, or the errors per field and general ones."""
        errors: dict[str, str] = {}
        general: list[str] = []
        mode = self.mode
        data: dict[str, Any] = {
            "name": self.value("name"),
            "user": self.value("user"),
            "mode": mode,
        }
        try:
            data["argv"] = tuple(shlex.split(self.value("argv") or ""))
        except ValueError as e:
            errors["argv"] = f"cannot split the command: {e}"
        gpus, nodes = self.value("gpus"), self.value("nodes")
        if nodes and mode is not Mode.COMMIT:
            data["nodes"] = nodes
            if gpus and gpus != "1":
                data["gpus"] = gpus
        else:
            data["gpus"] = gpus or None
        if mode is not Mode.COMMIT and self.value("gpu_type"):
            data["gpu_type"] = self.value("gpu_type")
        if mode is Mode.PRIORITY:
            hourly = bool(self.value("hourly"))
            data["hourly"] = hourly
            data["auto_renew"] = bool(self.value("auto_renew"))
            if not hourly:
                data["hours"] = self.value("hours") or None
        elif mode is Mode.COMMIT:
            data["reservation"] = self.value("reservation")
        else:
            data["bid"] = self.value("bid") or None
        if self.simulated:
            work = self.value("sim_work")
            try:
                data["runtime"] = float(work) * 3600 if work else None
            except ValueError:
                errors["sim_work"] = f"{work!r} is not a number of hours"
            if mode is Mode.FLEX:
                data["checkpoint_every"] = DEMO_CHECKPOINT_S
        try:
            spec = JobSpec.model_validate(data)
        except ValidationError as e:
            for err in e.errors():
                loc = [p for p in err["loc"] if isinstance(p, str)]
                name = FIELD_OF.get(loc[0], loc[0]) if loc else None
                msg = friendly(err)
                if name is None:
                    name = next((f for word, f in ERROR_FIELDS if word in msg), None)
                if name is None or not self.query(f"#err-{name}"):
                    general.append(msg)
                else:
                    errors.setdefault(name, msg)
            return None, errors, general
        if errors:
            return None, errors, general
        return spec, errors, general

    # Showing it -----------------------------------------------------------
    def refresh_view(self) -> None:
        spec, errors, general = self.build()
        self.last_spec = spec
        for row in self.query(".field-error").results(Static):  # all Statics (err-*)
            name = (row.id or "").removeprefix("err-")
            if row.id == "form-error":
                continue
            msg = errors.get(name, "")
            if not (self.show_all_errors or name in self.touched):
                msg = ""
            show(row, Text(msg, style=self.paint("tag--error")), bool(msg))
        form_error = self.query_one("#form-error", Static)
        shown = general if (self.show_all_errors or self.touched) else []
        show(form_error, Text("\n".join(shown), style=self.paint("tag--error")), bool(shown))
        show(self.query_one("#quote", Static), self.quote_text(spec, errors, general))

    def quote_text(self, spec: JobSpec | None, errors: dict[str, str], general: list[str]) -> Text:
        rt = self.runtime
        cur = rt.cfg.cluster.currency
        paint = self.paint
        t = Text()
        t.append(self.mode.value.capitalize() + " job\n", paint(f"mode--{self.mode.value}"))
        if spec is None:
            t.append("Fix the marked fields to see the price.\n", paint("tag--muted"))
            for msg in general[:2]:
                t.append(f"· {msg}\n", paint("tag--error"))
            if self.mode is Mode.COMMIT and not self.my_reservations():
                t.append("You have no reservations: book one on the reservations screen (r).\n")
            return t
        now = rt.clock.now()
        if spec.mode is Mode.PRIORITY:
            lines = Q.priority_quote(rt.grid, spec, cur)
        elif spec.mode is Mode.COMMIT:
            lines = Q.commit_quote(rt.grid, spec, now, cur)
        else:
            lines = Q.flex_quote(rt.grid, spec, cur, now)
        lines += Q.funding_lines(rt.grid, spec, now, cur)
        outcome = dry_run(rt.grid, spec, now, rt.user)
        lines += [Q.QuoteLine("If submitted now", "tag--section")]
        lines += Q.outcome_lines(outcome, spec, rt.grid, cur)
        lines += [Q.QuoteLine("Command (argv, no shell)", "tag--section")]
        lines += [Q.QuoteLine(repr(list(spec.argv)) if spec.argv else "(none)", "tag--muted")]
        for line in lines:
            t.append(line.text + "\n", paint(line.style) if line.style else "")
        t.rstrip()
        return t

    # Events ---------------------------------------------------------------
    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id:
            self.touched.add(event.input.id)
        if event.input.id == "user":
            self.fill_reservations()
        self.refresh_view()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id:
            self.touched.add(event.select.id)
        self.refresh_view()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.touched.add("hours")
        self.query_one("#hours", Input).disabled = bool(self.value("hourly"))
        self.refresh_view()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        pressed = event.pressed.id or ""
        self.mode = Mode(pressed.removeprefix("mode-"))
        self.apply_mode()
        self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter moves to the next field: launching spends money, so it takes ctrl+s or
        the Launch button, never a stray enter."""
        event.stop()
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            event.stop()
            self.action_submit()

    def action_pick_mode(self, mode: str) -> None:
        self.query_one(f"#mode-{mode}", RadioButton).value = True

    def action_submit(self) -> None:
        if not self.allowed("launching a job"):
            return
        self.show_all_errors = True
        self.refresh_view()
        spec = self.last_spec
        if spec is None:
            self.notify("Fix the marked fields first.", title="Not launched", severity="error")
            return
        self.command(Submit(spec=spec), then=self.launched)

    def launched(self, job: dict) -> None:
        self.notify(
            f"{job['mode'].capitalize()} job {job['name']} (#{job['id']}) submitted.",
            title="Launched",
            markup=False,
        )
        self.show_all_errors = False
        self.touched.clear()
        self.query_one("#name", Input).value = self.default_name()
        self.touched.discard("name")
        show = getattr(self.app, "show_job", None)
        if show is not None:
            show(job["id"])
