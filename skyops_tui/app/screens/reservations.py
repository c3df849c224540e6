"""Commit reservations: a timeline of windows per node type, the list with what each
has used and prepaid, a form that quotes before it books, and cancel with the refund
shown before it is confirmed.

The quote and the refund come from the grid's own pricing (`Grid.quote`,
`Grid.refund_preview`), so what the screen shows is what the ledger will post.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Select, Static

from skyops_tui.app import format as F
from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.app.screens.dialogs import ConfirmDialog, Dialog
from skyops_tui.app.widgets.timeline import DAY, Timeline, day_start, lanes_by_type
from skyops_tui.control.commands import CancelReservation, Reserve
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import Reservation, user_account
from skyops_tui.domain.money import fmt
from skyops_tui.domain.specs import ReservationSpec

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime

START_FORMAT = "%Y-%m-%d %H:%M"
REPEATS = (("once", "none"), ("daily", "daily"), ("weekly", "weekly"))


def parse_start(text: str) -> float:
    """'YYYY-MM-DD HH:MM' in UTC to epoch seconds; ValueError names the format."""
    try:
        return datetime.strptime(text.strip(), START_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ValueError(f"start {text.strip()!r}: write it as YYYY-MM-DD HH:MM (UTC)") from None


def format_start(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(START_FORMAT)


def windows_used(res: Reservation, now: float) -> tuple[int, int]:
    """(windows begun, windows not begun); a cancelled reservation has none left."""
    cut = now if res.cancelled_at is None else res.cancelled_at
    used = sum(1 for s, _ in res.windows if s <= cut)
    return used, 0 if res.cancelled_at is not None else len(res.windows) - used


def next_window(res: Reservation, now: float) -> str:
    """'now → 12:50' (in a window), the next start ('Thu 26 08:50'), 'cancelled', 'ended'."""
    if res.cancelled_at is not None:
        return "cancelled"
    for s, e in res.windows:
        if s <= now < e:
            return f"now → {F.clock(e, seconds=False)}"
        if s > now:
            return datetime.fromtimestamp(s, UTC).strftime("%a %d %H:%M")
    return "ended"


# ---------------------------------------------------------------- new reservation
class ReservationForm(Dialog):
    """Name, type, GPUs, start, hours, recurrence; the live quote and the capacity
    check below; ctrl+s (or Reserve) books it. Refusals keep the form open."""

    AUTO_FOCUS = "#res-name"
    BINDINGS = bindings("reservation_form")

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(id="reservation-form")
        self.runtime = runtime

    def compose(self) -> ComposeResult:
        rt = self.runtime
        now = rt.clock.now()
        start = now - now % 3600 + 3600
        types = [(t, t) for t in rt.grid.markets]
        with Vertical(classes="dialog"):
            yield Label("New Commit reservation", classes="dialog-title")
            with Grid(id="res-fields"):
                yield Label("name")
                yield Input(placeholder="nightly-train", id="res-name", compact=True)
                yield Label("owner")
                yield Input(rt.user, id="res-owner", compact=True, disabled=not rt.is_operator)
                yield Label("type")
                yield Select(
                    types,
                    value=types[0][1] if types else Select.NULL,
                    allow_blank=not types,
                    id="res-type",
                    compact=True,
                )
                yield Label("GPUs")
                yield Input("1", id="res-gpus", type="integer", compact=True)
                yield Label("start UTC")
                yield Input(
                    format_start(start),
                    placeholder="YYYY-MM-DD HH:MM",
                    id="res-start",
                    compact=True,
                )
                yield Label("hours")
                yield Input("4", id="res-hours", type="number", compact=True)
                yield Label("repeat")
                yield Select(
                    [(label, value) for label, value in REPEATS],
                    value="none",
                    allow_blank=False,
                    id="res-repeat",
                    compact=True,
                )
                yield Label("count")
                yield Input("1", id="res-count", type="integer", compact=True, disabled=True)
            yield Static(id="res-quote")
            yield Static(id="res-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Reserve (ctrl+s)", id="reserve", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.update_quote()

    # ------------------------------------------------------------------ reading
    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value.strip()

    def spec(self) -> ReservationSpec:
        """The request as typed; ValueError (incl. pydantic's) says what is wrong."""
        name = self._value("res-name")
        if not name:
            raise ValueError("give the reservation a name")
        gpu_type = self.query_one("#res-type", Select).value
        if gpu_type is Select.NULL:
            raise ValueError("pick a node type")
        repeat = self.query_one("#res-repeat", Select).value
        repeat = None if repeat in ("none", Select.NULL) else repeat
        numbers = {}
        for field, wid, kind in (
            ("gpus", "res-gpus", int),
            ("hours", "res-hours", float),
            ("count", "res-count", int),
        ):
            text = self._value(wid)
            try:
                numbers[field] = kind(text)
            except ValueError:
                raise ValueError(f"{field}: {text!r} is not a number") from None
        if repeat is None:
            numbers["count"] = 1
        try:
            return ReservationSpec(
                name=name,
                user=self._value("res-owner") or self.runtime.user,
                gpu_type=str(gpu_type),
                start=parse_start(self._value("res-start")),
                repeat=repeat,
                **numbers,
            )
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise ValueError(f"{field}: {msg}" if field else msg) from None

    # ------------------------------------------------------------------ quote
    def refresh_view(self) -> None:
        """The app redraws open dialogs each second: the capacity check follows the grid."""
        if self.is_mounted:
            self.update_quote()

    def update_quote(self) -> None:
        quote = self.query_one("#res-quote", Static)
        try:
            spec = self.spec()
        except ValueError as e:
            quote.update(Text(str(e), style="italic"))
            quote.set_class(True, "-invalid")
            return
        quote.set_class(False, "-invalid")
        quote.update(self.quote_text(spec))

    def quote_text(self, spec: ReservationSpec) -> Text:
        rt = self.runtime
        g = rt.grid
        cur = rt.cfg.cluster.currency
        try:
            q = g.quote(spec)
        except Refused as e:
            return Text(f"✗ {e}")
        t = Text()
        windows = f"{q.windows} window{'s' if q.windows != 1 else ''}"
        t.append(f"{windows} · {spec.gpus} × {spec.gpu_type} · {q.gpu_hours:g} GPU-h")
        t.append(f" × {fmt(q.rate, cur)} = {fmt(q.list_price, cur)} at the standard rate\n")
        t.append(f"Discount {q.discount_bp / 100:g}%", "bold")
        t.append(" → prepay ")
        t.append(fmt(q.price, cur), "bold")
        t.append(" now")
        tiers = sorted(rt.cfg.tiers(spec.gpu_type), key=lambda x: x.gpu_hours)
        better = [x for x in tiers if x.gpu_hours > q.gpu_hours]
        if better:
            nxt = better[0]
            t.append(f"  (next tier: {nxt.discount * 100:g}% from {nxt.gpu_hours:g} GPU-h)", "dim")
        t.append("\n")
        t.append(
            f"Early exit refunds {q.refund_fraction * 100:g}% of the unused future GPU-hours; "
            "downtime is credited in full; used time is never refunded.\n"
        )
        why = g.capacity_refusal(spec, rt.clock.now())
        if why:
            t.append(f"✗ {why}", "bold")
        else:
            t.append("✓ the capacity calendar has room for every window", "bold")
        if user_account(spec.user) in g.balances:
            bal = g.balance(spec.user)
            if g.can_fund(spec.user, q.price, rt.clock.now()):
                t.append(f" · {spec.user}: {fmt(bal, cur)} → {fmt(bal - q.price, cur)}")
            else:
                t.append(
                    f"\n✗ {spec.user} cannot prepay {fmt(q.price, cur)}: balance {fmt(bal, cur)}",
                    "bold",
                )
        return t

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#res-error", Static).update("")
        self.update_quote()

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id == "res-repeat":
            count = self.query_one("#res-count", Input)
            count.disabled = event.value in ("none", Select.NULL)
            if count.disabled:
                count.value = "1"
        self.update_quote()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

    # ------------------------------------------------------------------ booking
    def action_reserve(self) -> None:
        rt = self.runtime
        try:
            spec = self.spec()
        except ValueError as e:
            self.query_one("#res-error", Static).update(str(e))
            return
        self.run_worker(self._reserve(rt, spec), group="commands", exit_on_error=False)

    async def _reserve(self, rt: Runtime, spec: ReservationSpec) -> None:
        """Off the screen's loop: a follower waits for the leader's answer."""
        try:
            res = await rt.call(Reserve(spec=spec))
        except Exception as e:  # refused, or the leader or store failed: say so
            why = str(e) if isinstance(e, Refused) else f"{type(e).__name__}: {e}"
            self.query_one("#res-error", Static).update(Text(f"Refused: {why}"))
            return
        self.dismiss(res["name"])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "reserve":
            self.action_reserve()
        else:
            self.dismiss(None)

    def action_dismiss_cancel(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------- the screen
class ReservationsScreen(SkyScreen):
    """Timeline of Commit windows above, the reservations below. `a` books one,
    ctrl+d cancels the selected one (refund shown first)."""

    CSS_PATH = "reservations.tcss"
    SCOPE = "reservations"
    VIEW = "reservations"
    BINDINGS = bindings("reservations")

    COLUMNS = {
        "name": "Reservation",
        "owner": "Owner",
        "gpus": "GPUs",
        "windows": "Windows",
        "next": "Now / next",
        "prepaid": "Prepaid",
        "discount": "Off",
        "refunded": "Refunded",
    }
    NARROW = ("name", "owner", "gpus", "windows", "next", "prepaid")
    WIDE = 110  # columns from which every column shows

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, id="reservations")
        self.offset_days = 0
        self._rows: list[tuple] = []

    def compose_body(self) -> Iterable[Widget]:
        yield Static(id="tl-title")
        yield VerticalScroll(Timeline(id="timeline"), id="tl-pane")
        yield DataTable(id="res-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.redraw_if_stale()

    # ------------------------------------------------------------------ refresh
    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        rt = self.runtime
        now = rt.clock.now()
        g = rt.grid
        shown = [r for r in g.reservations.values()]
        capacity = {t: sum(n.gpu_count for n in g.by_type.get(t, [])) for t in g.markets}
        groups = tuple(grp for grp in lanes_by_type(shown, capacity, rt.user) if grp.lanes)
        start = day_start(now) + self.offset_days * DAY
        tl = self.query_one(Timeline)
        tl.show(groups, now, start)
        title = self.query_one("#tl-title", Static)
        title.update("No Commit reservations yet: press a to book one.")
        title.display = not groups
        self._fill_table(now)

    def columns(self) -> tuple[str, ...]:
        if self.size.width and self.size.width < self.WIDE:
            return self.NARROW
        return tuple(self.COLUMNS)

    def _row(self, res: Reservation, now: float, columns: tuple[str, ...]) -> tuple:
        cur = self.runtime.cfg.cluster.currency
        used, left = windows_used(res, now)
        back = res.refunded + res.credited
        off = f"{res.discount_bp / 100:g}%"
        cells = {
            "name": res.name,
            "owner": res.user,
            "gpus": f"{res.gpus}×{res.gpu_type}",
            "windows": f"{used}/{len(res.windows)}·{left} left",
            "next": next_window(res, now),
            "prepaid": fmt(res.prepaid, cur),
            "discount": off,
            "refunded": fmt(back, cur) if back else "—",
        }
        if "discount" not in columns:
            cells["prepaid"] += f" -{off}"
        if "refunded" not in columns and back:
            cells["next"] += f" +{fmt(back, cur)}"
        return tuple(cells[c] for c in columns)

    def on_resize(self) -> None:
        table = self.query_one(DataTable)
        if tuple(c.value for c in table.columns) != self.columns():  # the width's columns
            self.redraw()

    def _fill_table(self, now: float) -> None:
        table = self.query_one(DataTable)
        columns = self.columns()
        reservations = sorted(self.runtime.grid.reservations.values(), key=lambda r: r.id)
        rows = [(columns, *self._row(r, now, columns)) for r in reservations]
        if rows == self._rows and tuple(c.value for c in table.columns) == columns:
            return
        selected = self.selected_name()
        if tuple(c.value for c in table.columns) != columns:
            table.clear(columns=True)
            for key in columns:
                table.add_column(self.COLUMNS[key], key=key)
        else:
            table.clear()
        for row in rows:
            table.add_row(*row[1:], key=row[1])
        self._rows = rows
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected), animate=False)

    def selected_name(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return key.value

    # ------------------------------------------------------------------ actions
    def action_pan(self, days: int) -> None:
        self.offset_days += days
        self.refresh_view()

    def action_today(self) -> None:
        self.offset_days = 0
        self.refresh_view()

    def action_new(self) -> None:
        if not self.allowed("booking a reservation"):
            return

        def booked(name: str | None) -> None:
            if not name:
                return
            res = self.runtime.grid.reservations.get(name)
            if res is not None:
                cur = self.runtime.cfg.cluster.currency
                self.notify(
                    f"{name}: {len(res.windows)} window(s), prepaid {fmt(res.prepaid, cur)} "
                    f"({res.discount_bp / 100:g}% off)",
                    title="Reserved",
                )
            self.refresh_view()
            table = self.query_one(DataTable)
            if name in table.rows:
                table.move_cursor(row=table.get_row_index(name), animate=False)
            self.app_refresh()

        self.app.push_screen(ReservationForm(self.runtime), booked)

    def action_cancel_reservation(self) -> None:
        if not self.allowed("cancelling a reservation"):
            return
        name = self.selected_name()
        rt = self.runtime
        g = rt.grid
        res = g.reservations.get(name or "")
        if res is None:
            self.notify("No reservation selected.", severity="warning")
            return
        # The same checks the scheduler makes, before asking: nothing changes here.
        try:
            g.authorize(res.user, rt.user, f"cancel reservation {res.name}")
            if res.finished:
                raise Refused(f"reservation {res.name} has already ended")
        except Refused as e:
            self.notify(str(e), title="Refused", severity="error", timeout=8)
            return
        now = rt.clock.now()
        unused, downtime = g.refund_preview(res.name, now)
        self.app.push_screen(
            ConfirmDialog(
                f"Cancel reservation {res.name}?",
                self.refund_text(res, now, unused, downtime),
                confirm="Cancel reservation",
            ),
            lambda ok: self._cancel(res.name) if ok else None,
        )

    def refund_text(self, res: Reservation, now: float, unused: int, downtime: int) -> Text:
        cur = self.runtime.cfg.cluster.currency
        frac = self.runtime.cfg.pricing.early_exit_refund
        used, left = windows_used(res, now)
        kept = res.prepaid - res.refunded - res.credited - unused - downtime
        t = Text()
        t.append(
            f"{res.gpus} × {res.gpu_type} for {res.user} · {len(res.windows)} windows, "
            f"{used} begun, {left} to come · prepaid {fmt(res.prepaid, cur)} "
            f"({res.discount_bp / 100:g}% off)\n\n"
        )
        t.append(f"Refund of unused future GPU-hours (× {frac:g}): ")
        t.append(fmt(unused, cur), "bold")
        t.append("\nDowntime credit: ")
        t.append(fmt(downtime, cur), "bold")
        t.append(f"\nBack to {res.user}: ")
        t.append(fmt(unused + downtime, cur), "bold")
        t.append(f" · kept for time used and given up: {fmt(kept, cur)}\n")
        t.append("Commit jobs running in the window are stopped.")
        return t

    def _cancel(self, name: str) -> None:
        rt = self.runtime
        cur = rt.cfg.cluster.currency

        def done(_: object) -> str:
            res = rt.grid.reservations[name]
            return (
                f"{name} cancelled: refund {fmt(res.refunded, cur)} + downtime credit "
                f"{fmt(res.credited, cur)} to {res.user}"
            )

        self.command(CancelReservation(name=name), done)
        self.refresh_view()
