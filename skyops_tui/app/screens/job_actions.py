"""Cancel, extend, change bid, and why the mode cannot change: the same on the job
list and in a job's detail. Each change asks first (a confirmation that focuses Cancel,
or the new value), then runs the scheduler command; a refusal shows its own reason."""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from rich.text import Text

from ...control.commands import Bid, Cancel, Extend
from ...domain.model import Job, Mode
from ...domain.money import MICRO
from .. import format as F
from .. import quote as Q
from .dialogs import AskDialog, ConfirmDialog, positive_number

if TYPE_CHECKING:
    # The host: what the mixin uses (runtime, app, notify, allowed, command, paint).
    from .base import SkyScreen as _Host
else:
    _Host = object


class JobActions(_Host):
    """Mixed into a SkyScreen that can say which job is selected."""

    def selected_job(self) -> Job | None:  # pragma: no cover - overridden
        return None

    def _job_or_say(self) -> Job | None:
        job = self.selected_job()
        if job is None:
            self.notify("No job selected.", severity="warning")
        return job

    def action_cancel(self) -> None:
        if not self.allowed("cancelling a job"):
            return
        job = self._job_or_say()
        if job is None:
            return
        where = f" on {F.placement(job)}" if job.placement else ""
        how = (
            "Its processes get SIGTERM, then SIGKILL after the grace period."
            if job.holding
            else "It has not started, so it just leaves the queue."
        )
        message = f"Cancel {job.mode} job {job.name} (#{job.id}, {job.state}{where})?\n{how}"

        def done(yes: bool | None) -> None:
            if yes:
                self.command(Cancel(ref=job.id), f"Cancelling {job.name}.")

        self.app.push_screen(ConfirmDialog("Cancel job", message, "Cancel job"), done)

    def action_extend(self) -> None:
        if not self.allowed("extending a booking"):
            return
        job = self._job_or_say()
        if job is None:
            return
        if job.mode is not Mode.PRIORITY:
            # The grid says why, in the same words as the CLI and plans.
            self.command(Extend(ref=job.id, hours=1.0))
            return
        cur = self.runtime.cfg.cluster.currency
        market = self.runtime.grid.markets.get(job.market or job.gpu_type or "")
        ends = F.stamp(job.end_at) + " UTC" if job.end_at else "when it starts"
        cost = (
            f"{F.rate(market.rate * job.gpu_total, cur)} per hour for {job.gpu_total} GPUs"
            if market
            else ""
        )
        message = f"{job.name} is booked until {ends}.\nExtend by how many hours? {cost}"
        rt = self.runtime

        def preview(value: str) -> Text | None:
            hours = float(value)
            t = Text()
            if job.end_at is not None:
                t.append(f"new end {F.stamp(job.end_at + hours * 3600)} UTC", "bold")
            if market is not None:
                total = int(market.rate * job.gpu_total * Fraction(str(hours)))
                t.append(f"{'  ·  ' if t else ''}total {F.fmt(total, cur)}", "bold")
                if not rt.grid.can_fund(job.user, total, rt.clock.now()):
                    t.append(f"\n{job.user}'s account cannot cover it", self.paint("tag--error"))
            return t

        def done(value: str | None) -> None:
            if value:
                hours = float(value)
                self.command(
                    Extend(ref=job.id, hours=hours),
                    lambda j: (
                        f"{j['name']} extended by {hours:g} h, until {F.stamp(j['end_at'])} UTC."
                    ),
                )

        self.app.push_screen(
            AskDialog("Extend booking", message, "1", "hours", positive_number, "Extend", preview),
            done,
        )

    def action_bid(self) -> None:
        if not self.allowed("changing a bid"):
            return
        job = self._job_or_say()
        if job is None:
            return
        if job.mode is not Mode.FLEX:
            self.command(Bid(ref=job.id, bid=1.0))
            return
        g = self.runtime.grid
        cur = self.runtime.cfg.cluster.currency
        market = g.markets.get(job.market or job.gpu_type or "")
        hint = ""
        if market is not None:
            hint = (
                f"\n{market.gpu_type} market: floor {F.rate(market.floor, cur)}, "
                f"standard {F.rate(market.rate, cur)}, clearing now {F.rate(market.price, cur)}."
            )
        message = f"{job.name} bids {F.rate(job.bid, cur)} per GPU-hour.{hint}\nNew bid:"
        rt = self.runtime
        paint = self.paint

        def preview(value: str) -> Text:
            t = Text()
            for line in Q.bid_preview(rt.grid, job, float(value), rt.clock.now(), cur):
                t.append(line.text + "\n", paint(line.style) if line.style else "")
            t.rstrip()
            return t

        def done(value: str | None) -> None:
            if value:
                bid = float(value)
                self.command(
                    Bid(ref=job.id, bid=bid),
                    lambda j: f"{j['name']} now bids {F.rate(j['bid'], cur)} per GPU-hour.",
                )

        self.app.push_screen(
            AskDialog(
                "Change bid",
                message,
                f"{job.bid / MICRO:.2f}",
                "per GPU-hour",
                positive_number,
                "Change bid",
                preview,
            ),
            done,
        )

    def action_change_mode(self) -> None:
        """A job's mode is locked at creation (docs/modes.md, Mode lock): say so and what to do
        instead, rather than offer a switch that would be refused."""
        job = self._job_or_say()
        if job is None:
            return
        others = " or ".join(m.value.capitalize() for m in Mode if m is not job.mode)
        self.app.notify(
            f"{job.name} is a {job.mode.value.capitalize()} job; a job's mode is locked "
            f"when it is created. To run it as {others}, cancel it (ctrl+d) and launch "
            "a new job in that mode (n).",
            title="Mode locked",
            timeout=10,
        )
