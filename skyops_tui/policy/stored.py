"""A grid rebuilt from what a store recorded, under the current config.

Rates and floors, and the node list, come from the config; jobs, reservations,
balances, price timelines and node status from the record. The one rule here: a node
the config no longer names (or names with another GPU type or count) is kept, with its
recorded shape, only while a job or a Commit window holds its GPUs, and is drained
(degraded: nothing new starts there) with an event saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..domain.config import Config
from ..domain.model import HOLDING, Job, Market, Node, NodeStatus, Reservation
from .resident import JobTable, NameTable

if TYPE_CHECKING:
    from .grid import Grid


class Inconsistent(Exception):
    """The recorded parts contradict each other (a job holding a GPU no node has)."""


@dataclass
class StoredGrid:
    nodes: dict[str, Node]  # as recorded, by name, in the record's order
    markets: dict[str, Market]  # as recorded, each with its price timeline replayed
    jobs: list[Job]  # by id (all, or the live and latest ended: the store's choice)
    reservations: list[Reservation]  # by id
    balances: dict[str, int]
    counters: dict[str, int]  # next_job_id, next_res_id, next_seq


def restore(cfg: Config, now: float, stored: StoredGrid) -> Grid:
    from .grid import Grid

    grid = Grid(cfg, now)
    grid.outbox.dirty_nodes.clear()
    for t, m in grid.markets.items():
        sm = stored.markets.get(t)
        if sm is not None:  # the config's rate and floor, the record's timeline
            m.price, m.price_at, m.integral = sm.price, sm.price_at, sm.integral
            m.starts, m.levels = sm.starts, sm.levels

    jobs, reservations = stored.jobs, stored.reservations
    used = {p.node for j in jobs if j.state in HOLDING for p in j.placement}
    used |= {n for r in reservations if r.active_window is not None for n, _ in r.held}
    kept: list[Node] = []
    for name, rec in stored.nodes.items():
        node = grid.nodes.get(name)
        same_shape = node is not None and (node.gpu_type, node.gpu_count) == (
            rec.gpu_type,
            rec.gpu_count,
        )
        if node is not None and (same_shape or name not in used):
            node.status = rec.status
            grid.status_rev += 1
            node.last_heartbeat = rec.last_heartbeat
            node.drained = rec.drained
            if not same_shape:
                grid.outbox.dirty_nodes.add(name)
            continue
        if name not in used:
            continue  # gone from the config and nothing holds it: left in the record
        if node is not None:
            grid.by_type[node.gpu_type].remove(node)
            del grid.nodes[name]
        if rec.gpu_type not in grid.markets:
            market = stored.markets.get(rec.gpu_type)
            if market is None:
                raise Inconsistent(
                    f"node {name} ({rec.gpu_type}) is held by jobs but its "
                    "GPU type has no market row"
                )
            grid.markets[rec.gpu_type] = market
            grid.by_type[rec.gpu_type] = []
        grid.add_node(rec)
        grid.outbox.dirty_nodes.discard(name)
        kept.append(rec)
    grid.outbox.dirty_nodes.update(n for n in grid.nodes if n not in stored.nodes)

    grid.jobs = JobTable((j.id, j) for j in jobs)
    grid.job_names = NameTable((j.name, j.id) for j in jobs)
    grid.jobs.names = grid.job_names
    for job in jobs:
        if job.state in HOLDING:
            for p in job.placement:
                _hold(grid, p.node, p.gpus, job)
    grid.reservations = {r.name: r for r in reservations}
    for res in reservations:
        if res.active_window is not None:
            for name, i in res.held:
                _reserve(grid, name, i, res)
    for node in grid.nodes.values():
        node.recount()
    grid.ledger.balances = stored.balances
    counters = stored.counters
    grid.next_job_id = max(counters.get("next_job_id", 1), max(grid.jobs, default=0) + 1)
    grid.next_res_id = max(
        counters.get("next_res_id", 1), max((r.id for r in reservations), default=0) + 1
    )
    grid.next_seq = max(counters.get("next_seq", 1), max((j.seq for j in jobs), default=0) + 1)
    grid.reindex()
    # Nothing loaded is news, but the nodes just marked are rows the record lacks.
    grid.outbox.take_records()
    grid.outbox.dirty_jobs.clear()
    grid.outbox.dirty_reservations.clear()
    for node in kept:
        if node.status is NodeStatus.UP:
            grid.node_status(
                node.name,
                NodeStatus.DEGRADED,
                now,
                f"node {node.name} is no longer in the config as {node.gpu_count}x"
                f"{node.gpu_type}; kept, drained, while jobs or a window hold its GPUs",
            )
    return grid


def _hold(grid: Grid, name: str, gpus: tuple[int, ...], job: Job) -> None:
    node = grid.nodes.get(name)
    if node is None:
        raise Inconsistent(f"job {job.name} holds GPUs on unknown node {name}")
    for i in gpus:
        if not 0 <= i < node.gpu_count or node.holders[i] is not None:
            raise Inconsistent(
                f"job {job.name} holds {name}:{i}, which "
                + ("does not exist" if i >= node.gpu_count else f"job {node.holders[i]} holds")
            )
        node.holders[i] = job.id


def _reserve(grid: Grid, name: str, i: int, res: Reservation) -> None:
    node = grid.nodes.get(name)
    if node is None or not 0 <= i < node.gpu_count:
        raise Inconsistent(f"reservation {res.name} holds unknown GPU {name}:{i}")
    node.reserved[i] = res.name
