"""One scheduling pass: a function of the grid and the time that returns actions.

`plan(grid, now)` reads the grid and changes nothing; the caller records the actions
in the store, then applies them (`grid.apply`) and hands the executor its share. The
rules are in docs/modes.md; the pass applies them in this order, one module each:

1. `timers`: Priority bookings warn, renew or expire; running jobs are settled;
   accounts that cannot pay stop their jobs.
2. `priority.claims_first`: Priority jobs that claimed GPUs in an earlier pass start
   or claim again, before any window is placed.
3. `windows`: Commit windows open (holding GPUs, lent to Flex until an owner's job
   needs them) and close.
4. `priority`: the Priority queue, FIFO with a head per type and backfill, beside the
   windows due before each booking ends.
5. `commit`: Commit jobs start on their reservation's held GPUs, reclaiming from Flex.
6. `flex`: the Flex market per node type, then each market's clearing price.
7. `victims.call_offs`: preemptions nobody needs any more are called off.

Every part reads and records through one `PassState` (state.py): what this pass gave
out, stopped and claimed, and the placement they share; `victims.choose_victims` is
the one victim choice Priority, Commit and Flex use.

Before `grid.preempt_from` (a leader still hearing from its nodes) nothing is preempted
for anyone: no Flex victims for Priority, no reclaim for Commit, no outbids. Jobs still
start on free GPUs; the rest wait for the next pass.
"""

from __future__ import annotations

from .. import actions as A
from ..grid import Grid
from .commit import commit
from .flex import flex
from .priority import claims_first, priority
from .state import FLEX_POOL, PRIORITY_POOL, PassState
from .timers import SETTLE_PER_PASS, timers
from .victims import call_offs
from .windows import windows

__all__ = [
    "FLEX_POOL",
    "PRIORITY_POOL",
    "SETTLE_PER_PASS",
    "PassState",
    "Planner",
    "plan",
]


def plan(grid: Grid, now: float) -> list[A.Action]:
    return Planner(grid, now).run()


class Planner(PassState):
    """A pass that runs its parts in order. `claims_first` alone is what
    `Grid.capacity_refusal` asks of it (the claims a reservation must be placed around,
    in `claim_extra`)."""

    def run(self) -> list[A.Action]:
        timers(self)
        claims_first(self)
        windows(self)
        priority(self)
        commit(self)
        flex(self)
        call_offs(self)
        return self.actions

    def claims_first(self) -> None:
        claims_first(self)
