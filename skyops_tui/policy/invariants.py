"""Checks that must hold after every step; the simulator and the tests run them."""

from __future__ import annotations

from ..domain.model import HOLDING, Mode, Transaction, user_account
from . import actions as A
from .grid import Grid


def check_actions(grid: Grid, actions: list[A.Action]) -> list[str]:
    """Checks the actions of one step, once applied. A step may hold two passes (the
    engine runs another when a window opens): only the last price of a market is in
    force, so only that one is held against the bids running after the step."""
    out = []
    last_price = {a.gpu_type: a for a in actions if isinstance(a, A.SetPrice)}
    for a in actions:
        if isinstance(a, A.Preempt):
            job = grid.jobs[a.job]
            if job.mode is not Mode.FLEX:
                out.append(f"{job.mode} job {job.name} preempted ({a.cause})")
        elif isinstance(a, A.SetPrice):
            m = grid.markets[a.gpu_type]
            if a.price < m.floor:
                out.append(f"{a.gpu_type} clearing price {a.price} under the floor {m.floor}")
            if last_price[a.gpu_type] is not a:
                continue
            for jid in grid.flex_running[a.gpu_type]:
                job = grid.jobs[jid]
                if job.bid < a.price and not job.stop_reason:
                    out.append(f"flex job {job.name} pays {a.price} above its bid {job.bid}")
    return out


def check_transactions(grid: Grid, txs: list[Transaction]) -> list[str]:
    out = []
    limit = grid.credit_limit()
    users = set()
    for tx in txs:
        if not tx.balanced:
            out.append(f"unbalanced transaction: {tx.reason}")
        users.update(a for a, _ in tx.entries if a.startswith("user:"))
    for acct in users:
        if grid.balances.get(acct, 0) < -limit:
            out.append(f"{acct} balance {grid.balances[acct]} beyond its limit -{limit}")
    return out


def check_placements(grid: Grid, job_ids: set[int] | None = None) -> list[str]:
    """Every GPU a holding job claims is held by it, and no GPU by two jobs."""
    out = []
    ids = grid.holding if job_ids is None else job_ids
    for jid in ids:
        job = grid.jobs.get(jid)
        if job is None or job.state not in HOLDING:
            continue
        for p in job.placement:
            node = grid.nodes[p.node]
            for i in p.gpus:
                if node.holders[i] != jid:
                    out.append(f"job {job.name} placed on {p.node}:{i} held by {node.holders[i]}")
    if job_ids is None:
        for node in grid.nodes.values():
            for i, h in enumerate(node.holders):
                if h is not None:
                    job = grid.jobs[h]
                    if job.state not in HOLDING or not any(
                        p.node == node.name and i in p.gpus for p in job.placement
                    ):
                        out.append(
                            f"{node.name}:{i} held by job {job.name} ({job.state}) not placed there"
                        )
    return out


def ledger_sum(grid: Grid) -> int:
    return sum(grid.balances.values())


def user_balance(grid: Grid, user: str) -> int:
    return grid.balances.get(user_account(user), 0)
