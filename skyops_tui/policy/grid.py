"""The grid's state and every transition of it, with the ledger postings they cause.

`Grid` holds nodes, jobs, reservations, markets and balances in memory, with indexes the
planner reads (queues, order books). It changes only through the methods here: commands
(submit, cancel, extend, change_bid...), executor reports (started, exited, node status)
and the bookkeeping actions a scheduling pass returns. Each change records an `Event`
and any ledger `Transaction` in the outbox, which the store writes in one transaction.
No I/O happens here.

The grid is a facade over named parts: the ledger (ledger.py), the planner's indexes
(indexes.py), the outbox (outbox.py); a grid loaded from a store is put together in
stored.py (`Grid.from_stored`), and dry runs use `snapshot()`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from bisect import bisect_right
from fractions import Fraction
from itertools import islice
from typing import TYPE_CHECKING

from ..domain.config import Config
from ..domain.errors import Refused
from ..domain.model import (
    DEPOSITS,
    HOLDING,
    REVENUE,
    TERMINAL,
    US,
    Event,
    Job,
    JobState,
    Market,
    Mode,
    Node,
    NodeStatus,
    Placement,
    Reservation,
    Transaction,
    held_account,
    us,
    user_account,
)
from ..domain.money import fmt, to_micro
from ..domain.specs import JobSpec, ReservationSpec
from ..text import duration
from . import actions as A
from . import admission, pricing
from .admission import from_now, hm
from .indexes import JobIndex
from .ledger import Ledger
from .outbox import Outbox, Price, Records
from .pricing import flex_usage
from .resident import Archive, JobTable, NameTable

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_CANCELLED = JobState.CANCELLED
_FAILED = JobState.FAILED
_PAUSED = JobState.PAUSED
_SUCCEEDED = JobState.SUCCEEDED
_UNREACHABLE = NodeStatus.UNREACHABLE

if TYPE_CHECKING:
    from .stored import StoredGrid

Q, S, R, PR = JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.PREEMPTING
CLAIM_SLACK_S = 60.0  # beyond the graces, how long a claim keeps its admitted end

# Billing's texts are made of parts that recur: kept, as they come out the same.
_USAGE = {m: f"{m} usage " for m in Mode}
_user_account = functools.cache(user_account)
_rate_text = functools.cache(fmt)
_SECONDS: dict[float, str] = {}
_ACCOUNTS: dict[str, str] = {}  # user -> account, as `user_account` names it


def _account(user: str) -> str:
    """`user_account(user)`, kept: billing names an account for every charge."""
    acct = _ACCOUNTS[user] = user_account(user)
    return acct


_SETTLE, _SET_PRICE = A.Settle, A.SetPrice
_FLEX, _COMMIT, _PRIORITY = Mode.FLEX, Mode.COMMIT, Mode.PRIORITY
_PER_HOUR = pricing.PER_HOUR
# `settle_all` makes a charge's Transaction by setting its slots on a bare instance: the
# dataclass's __init__, a Python function called from C, was a fifth of a charge's
# cost. Only while those slots are all its fields (else through the class).
_TX_SLOTS = ("at", "reason", "entries", "job", "reservation")
_BARE_TX = (
    Transaction.__slots__ == _TX_SLOTS
    and tuple(f.name for f in dataclasses.fields(Transaction)) == _TX_SLOTS
    and not hasattr(Transaction, "__post_init__")
)


def _flex_run_acc(job: Job, market: Market, a: int, b: int) -> int:
    """A running Flex job's running total billed on from `a` to `b` (microseconds,
    `b > a`): the span of one clearing price and one bid (nearly every settle) inline,
    any other through `flex_usage`."""
    starts = market.starts
    i = bisect_right(starts, a) - 1
    log = job.bid_log
    cap = job.bid if not log else log[-1][1] if log[-1][0] <= a else None
    if cap is not None and (i + 1 >= len(starts) or starts[i + 1] >= b):
        price = market.levels[i] if i >= 0 else market.floor
        return job.run_acc + (price if price < cap else cap) * (b - a)
    return job.run_acc + flex_usage(market, log, job.bid, a, b)


# A type's change log: the count its first kept entry stands for, and the entries.
_Log = tuple[list[int], list[str]]
_LOG_KEEP = 256  # entries a log keeps at least once it is trimmed


def _log(logs: dict[str, _Log], t: str, name: str) -> None:
    """Note that node `name` of type `t` changed, one step of its count."""
    log = logs.get(t)
    if log is None:
        log = logs[t] = ([0], [])
    entries = log[1]
    entries.append(name)
    if len(entries) > 2 * _LOG_KEEP:
        del entries[:_LOG_KEEP]
        log[0][0] += _LOG_KEEP


def _since(log: _Log | None, since: int, now: int) -> list[str] | None:
    """The entries of `log` after count `since` (the count is `now`)."""
    if since == now:
        return []
    if log is None:
        return None
    first = log[0][0]
    if since < first or since > now or first + len(log[1]) != now:
        return None
    return log[1][since - first :]


def _seconds_text(secs: float) -> str:
    """`f"{secs:.0f}"`, kept for positive `secs` only: 0.0 and -0.0 are one key but
    two texts ("0", "-0")."""
    text = _SECONDS.get(secs)
    if text is None:
        text = f"{secs:.0f}"
        if secs > 0:
            if len(_SECONDS) >= 4096:
                _SECONDS.clear()
            _SECONDS[secs] = text
    return text


class Grid:
    def __init__(self, cfg: Config, now: float = 0.0) -> None:
        self.cfg = cfg
        self.nodes: dict[str, Node] = {}
        self.by_type: dict[str, list[Node]] = {}
        self.markets: dict[str, Market] = {}
        for t in cfg.node_types:
            rate = to_micro(t.rate)
            floor = cfg.floor(t.name)
            self.markets[t.name] = m = Market(t.name, rate, floor, floor, now, 0)
            m.set_price(floor, now)
            self.by_type[t.name] = []
        # Every job, or with an archive bound the live ones and the latest ended
        # (resident.py): a miss reads an ended job back from the archive.
        self.jobs = JobTable()
        self.job_names = NameTable()
        self.jobs.names = self.job_names
        self.reservations: dict[str, Reservation] = {}
        self.next_job_id = 1
        self.next_res_id = 1
        self.next_seq = 1
        self.index = JobIndex(self.markets)  # what the planner reads
        # Preemptions made for room in this process, by victim: when (one is called off
        # only in its checkpoint grace) and for whom; and those being called off, with
        # why. Not stored: after a restart a preemption runs its course.
        self.preempted_at: dict[int, tuple[float, int]] = {}
        self.calling_off: dict[int, str] = {}
        # No job is preempted for another before this time: a leader that has just
        # started waits for its nodes to report (set by the fleet executor).
        self.preempt_from = float("-inf")
        self.outbox = Outbox()  # drained by whoever persists
        self.ledger = Ledger(self.outbox)
        # The simulator's wake-up times read the unfinished reservations each pass.
        self._live: tuple[int, list[Reservation]] = (-1, [])
        # Raised when a reservation is booked, cancelled or settles a window: what the
        # simulator's kept next window edge stands on.
        self.reservations_rev = 0
        # Raised by whatever changes what a pass's window part reads of the live
        # reservations: one booked or cancelled, a window opened, closed or settled,
        # the GPUs a window holds or misses (planner/windows.py keeps a quiet spell on it).
        self.windows_rev = 0
        # Per node type and per node, a count raised whenever anything about who holds
        # its GPUs, on what terms, changes (holders, reservations, a node's status or
        # drain, a holding job's state, stop or bid): a verdict the planner keeps for a
        # type or a node (planner/flex.py) stands only while the count it was judged
        # at does.
        self.holds_rev: dict[str, int] = dict.fromkeys(self.by_type, 0)
        self.node_rev: dict[str, int] = {}
        # The same counts less a job's start (placed, then its process started): a start
        # only takes GPUs, so it leaves no node more room for a blocked Flex head.
        self.room_rev: dict[str, int] = dict.fromkeys(self.by_type, 0)
        self.node_room_rev: dict[str, int] = {}
        # Per type, the node behind each step of `holds_rev` and of `room_rev`, the
        # latest of them (`holds_changes`, `room_changes`): a verdict kept at a count
        # is judged again on the nodes that changed since, not on every node.
        self._holds_log: dict[str, _Log] = {}
        self._room_log: dict[str, _Log] = {}
        # Raised whenever a node's status may have changed (set, or a node added):
        # whether every node is up is counted again only then (planner/timers.py).
        self.status_rev = 0
        for nc in cfg.all_nodes():
            self.add_node(
                Node(
                    nc.name,
                    nc.resolved_type,
                    nc.resolved_gpus,
                    host=nc.host,
                    fake=bool(nc.fake_gpus),
                )
            )

    @classmethod
    def from_stored(cls, cfg: Config, now: float, stored: StoredGrid) -> Grid:
        """The grid a store recorded, under the current config (stored.py says how);
        raises `stored.Inconsistent` when the record contradicts itself."""
        from .stored import restore

        return restore(cfg, now, stored)

    # The parts, under the names the planner, the store and the screens read.
    @property
    def balances(self) -> dict[str, int]:
        return self.ledger.balances

    @property
    def events(self) -> list[Event]:
        return self.outbox.events

    @property
    def transactions(self) -> list[Transaction]:
        return self.outbox.transactions

    @property
    def prices(self) -> list[Price]:
        return self.outbox.prices

    @property
    def dirty_jobs(self) -> set[int]:
        return self.outbox.dirty_jobs

    @property
    def dirty_reservations(self) -> set[str]:
        return self.outbox.dirty_reservations

    @property
    def dirty_nodes(self) -> set[str]:
        return self.outbox.dirty_nodes

    @property
    def holding(self) -> set[int]:
        return self.index.holding

    @property
    def priority_queue(self) -> list[tuple[int, int]]:
        return self.index.priority_queue

    @property
    def commit_waiting(self) -> dict[str, list[tuple[int, int]]]:
        return self.index.commit_waiting

    @property
    def flex_book(self) -> dict[str | None, list[tuple[int, int, int]]]:
        return self.index.flex_book

    @property
    def flex_needs(self) -> dict[str | None, dict[int, int]]:
        return self.index.flex_needs

    @property
    def flex_running(self) -> dict[str, set[int]]:
        return self.index.flex_running

    @property
    def priority_held(self) -> dict[str, int]:
        return self.index.priority_held

    @property
    def stopping(self) -> set[int]:
        return self.index.stopping

    def snapshot(self) -> Grid:
        """A copy for dry runs (a quote, a plan's diff, a preview): every command and
        pass on it leaves this grid as it was. It shares only the config, which neither
        changes."""
        memo: dict[int, object] = {id(self.cfg): self.cfg}
        # The change logs stay behind: a copy judges its kept verdicts afresh.
        memo[id(self._holds_log)], memo[id(self._room_log)] = {}, {}
        if self.jobs.archive is not None:  # shared: a copy reads the same store
            memo[id(self.jobs.archive)] = self.jobs.archive
        return copy.deepcopy(self, memo)

    # ------------------------------------------------------------ ended jobs
    def bind_archive(self, archive: Archive) -> None:
        """Let ended jobs leave memory (`evict_ended`), read back from `archive` when
        asked for: the store binds itself once it holds every row of this grid."""
        self.jobs.archive = self.job_names.archive = archive
        ended = [j for j in self.jobs.values() if j.state in TERMINAL]
        ended.sort(key=lambda j: (j.ended_at or 0.0, j.id))
        self.jobs.ended = dict.fromkeys(j.id for j in ended)

    def evict_ended(self, keep: int) -> int:
        """Let the ended jobs beyond the `keep` most recently ended leave memory, each
        once nothing in the grid points at it any more (`detached`); the archive keeps
        them. Returns how many left. Does nothing without an archive."""
        table = self.jobs
        ended = table.ended
        over = len(ended) - keep
        if over <= 0 or table.archive is None:
            return 0
        gone = 0
        for jid in list(islice(ended, over)):
            del ended[jid]
            job = dict.get(table, jid)
            if job is None or job.state not in TERMINAL:
                continue
            if not self.detached(job):
                ended[jid] = None  # tried again once the newer ones have gone
                continue
            dict.__delitem__(table, jid)
            if dict.get(self.job_names, job.name) == jid:
                dict.__delitem__(self.job_names, job.name)
            gone += 1
        return gone

    def detached(self, job: Job) -> bool:
        """Whether an ended job may leave memory: billed and settled, its GPUs given
        back, its row written, and no queue, stop, preemption or call-off naming it."""
        jid = job.id
        return (
            job.state in TERMINAL
            and job.billed_from is None
            and not job.placement
            and not job.stop_reason
            and jid not in self.outbox.dirty_jobs
            and jid not in self.index.holding
            and jid not in self.index.stopping
            and jid not in self.preempted_at
            and jid not in self.calling_off
        )

    def live_reservations(self) -> list[Reservation]:
        """The reservations not yet finished. A finished one never comes back, so the
        list is filtered each call and made again only when one is added or removed."""
        count, live = self._live
        if count != len(self.reservations):
            live = list(self.reservations.values())
        # `Reservation.finished`, inline (tens of them, twice a pass)
        live = [r for r in live if r.cancelled_at is None and r.settled_windows < len(r.windows)]
        self._live = (len(self.reservations), live)
        return live

    def user_accounts(self) -> list[str]:
        """The users' accounts, in the order they opened (funding reads them each pass)."""
        return self.ledger.user_accounts()

    # ------------------------------------------------------------------ nodes
    def add_node(self, node: Node) -> None:
        if node.gpu_type not in self.markets:
            raise Refused(f"node {node.name}: gpu type {node.gpu_type} has no price")
        self.nodes[node.name] = node
        self.by_type[node.gpu_type].append(node)
        self.status_rev += 1
        self._touch_node(node)
        self.outbox.dirty_nodes.add(node.name)

    def _touch_node(self, node: Node, start: bool = False) -> None:
        """Who holds the node's GPUs changed (`start`: a job took some to start)."""
        t, name = node.gpu_type, node.name
        self.holds_rev[t] = self.holds_rev.get(t, 0) + 1
        self.node_rev[name] = self.node_rev.get(name, 0) + 1
        _log(self._holds_log, t, name)
        if not start:
            self.room_rev[t] = self.room_rev.get(t, 0) + 1
            self.node_room_rev[name] = self.node_room_rev.get(name, 0) + 1
            _log(self._room_log, t, name)

    def _touch_job(self, job: Job, start: bool = False) -> None:
        """The job's hold on its GPUs changed (`start`: it starts, placed or its
        process started): void the verdicts kept for their nodes."""
        nodes, rev, node_rev = self.nodes, self.holds_rev, self.node_rev
        logs = self._holds_log
        for p in job.placement:
            t = nodes[p.node].gpu_type
            rev[t] = rev.get(t, 0) + 1
            node_rev[p.node] = node_rev.get(p.node, 0) + 1
            _log(logs, t, p.node)
        if not start:
            rev, node_rev, logs = self.room_rev, self.node_room_rev, self._room_log
            for p in job.placement:
                t = nodes[p.node].gpu_type
                rev[t] = rev.get(t, 0) + 1
                node_rev[p.node] = node_rev.get(p.node, 0) + 1
                _log(logs, t, p.node)

    def holds_changes(self, gpu_type: str, since: int) -> list[str] | None:
        """The nodes of the type behind each step of its `holds_rev` after `since`
        (a node as often as it changed), or None when those are no longer kept."""
        return _since(self._holds_log.get(gpu_type), since, self.holds_rev.get(gpu_type, 0))

    def room_changes(self, gpu_type: str, since: int) -> list[str] | None:
        """`holds_changes` for `room_rev` (every change but a job's start)."""
        return _since(self._room_log.get(gpu_type), since, self.room_rev.get(gpu_type, 0))

    # --------------------------------------------------------------- accounts
    def balance(self, user: str) -> int:
        return self.ledger.balances.get(user_account(user), 0)

    def ensure_account(self, user: str, now: float, initial: int | None = None) -> None:
        acct = user_account(user)
        balances = self.ledger.balances
        if acct in balances:
            return
        balances[acct] = 0
        if initial is None:
            initial = to_micro(self.cfg.accounts.default_balance)
            for u in self.cfg.accounts.users:
                if u.name == user:
                    initial = to_micro(u.balance)
        if initial:
            self.post(now, f"opening balance for {user}", [(DEPOSITS, -initial), (acct, initial)])
        else:
            self.outbox.events.append(Event(now, "account", "opened", user=user))

    def deposit(self, user: str, amount: int, now: float, reason: str = "deposit") -> None:
        self.ensure_account(user, now)
        self.post(now, reason, [(DEPOSITS, -amount), (user_account(user), amount)])

    def post(
        self,
        now: float,
        reason: str,
        entries: list[tuple[str, int]],
        job: int | None = None,
        reservation: str | None = None,
    ) -> Transaction | None:
        return self.ledger.post(now, reason, entries, job, reservation)

    def credit_limit(self) -> int:
        return to_micro(self.cfg.accounts.credit_limit)

    def can_fund(self, user: str, amount: int, now: float) -> bool:
        """Whether the account can pay `amount` on top of its usage not yet billed."""
        from .funding import can_fund

        return can_fund(self, user, amount, now)

    # ------------------------------------------------------------ permissions
    def authorize(self, owner: str, actor: str | None, what: str) -> None:
        if actor is None or actor == owner or self.cfg.is_operator(actor):
            return
        raise Refused(f"{actor} may not {what}: it belongs to {owner} (operators may act on all)")

    # --------------------------------------------------------------- job state
    def _event(self, now: float, job: Job, kind: str, cause: str, old: str | None = None) -> None:
        # Every field by position (at, kind, cause, job, reservation, node, old, new,
        # user): keywords made each event cost twice as much (one per job change).
        self.outbox.events.append(
            Event(now, kind, cause, job.id, None, None, old, str(job.state), job.user)
        )

    def set_state(self, job: Job, new: JobState, now: float, cause: str) -> None:
        old = job.state
        if old is new:
            return
        self._unindex(job)
        job.state = new
        self._index(job)
        if job.placement:
            self._touch_job(job, new is S or (old is S and new is R))
        if old is PR and self.preempted_at:
            self.preempted_at.pop(job.id, None)
            self.calling_off.pop(job.id, None)
        if new in TERMINAL:
            job.ended_at = now
            if self.jobs.archive is not None:
                self.jobs.ended[job.id] = None
        self.outbox.dirty_jobs.add(job.id)
        self._event(now, job, "state", cause, str(old))

    def _index(self, job: Job) -> None:
        self.index.add(job)

    def _unindex(self, job: Job) -> None:
        self.index.remove(job)

    def reindex(self) -> None:
        """Rebuild the planner's indexes from `jobs` (after loading them from the store)."""
        self.index = JobIndex.build(self.markets, self.jobs.values())

    def job_by_ref(self, ref: str | int) -> Job:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            job = self.jobs.get(int(ref))
        else:
            jid = self.job_names.get(ref)
            job = self.jobs.get(jid) if jid is not None else None
        if job is None:
            raise Refused(f"no job {ref!r}")
        return job

    # ---------------------------------------------------------------- commands
    def submit(self, spec: JobSpec, now: float, actor: str | None = None) -> Job:
        """Admit a job to the queue, or refuse it saying why. Nothing changes on refusal."""
        if spec.name in self.job_names:
            raise Refused(f"a job named {spec.name!r} exists already")
        bid, reservation = admission.admit(self, spec, now, actor)
        return self._enqueue(spec, spec.name, bid, reservation, now, actor)

    def submit_array(
        self, spec: JobSpec, names: list[str], now: float, actor: str | None = None
    ) -> list[Job]:
        """One job per name, admitted whole or refused whole: every element passes the
        same checks (queued jobs hold no money), so they are made once."""
        taken = self.job_names.taken(names)
        if taken:
            more = f" (and {len(taken) - 1} more of the array)" if len(taken) > 1 else ""
            raise Refused(f"job {taken[0]} exists already{more}")
        if len(set(names)) != len(names):
            raise Refused("the array names a job twice")
        bid, reservation = admission.admit(self, spec, now, actor)
        return [self._enqueue(spec, n, bid, reservation, now, actor) for n in names]

    def _enqueue(
        self,
        spec: JobSpec,
        name: str,
        bid: int,
        reservation: Reservation | None,
        now: float,
        actor: str | None,
    ) -> Job:
        job = Job(
            id=self.next_job_id,
            name=name,
            user=spec.user,
            mode=spec.mode,
            seq=self.next_seq,
            submitted_at=now,
            argv=list(spec.argv),
            gpus=spec.gpu_count if not spec.nodes else 0,
            nodes=spec.nodes or 0,
            gpu_type=spec.gpu_type or (reservation.gpu_type if reservation else None),
            hours=spec.hours,
            hourly=spec.hourly,
            auto_renew=spec.auto_renew or spec.hourly,
            renew_hours=spec.renew_hours or (1.0 if spec.hourly else (spec.hours or 1.0)),
            reservation=spec.reservation,
            bid=bid,
            max_retries=spec.max_retries,
            env=dict(spec.env),
            workdir=spec.workdir,
            runtime=spec.runtime,
            checkpoint_every=spec.checkpoint_every,
        )
        if bid:
            job.bid_log = [(us(now), bid)]
        self.next_job_id += 1
        self.next_seq += 1
        self.jobs[job.id] = job
        self.job_names[job.name] = job.id
        self._index(job)
        self.outbox.dirty_jobs.add(job.id)
        self._event(now, job, "submitted", f"{job.mode} job submitted by {actor or job.user}")
        return job

    def candidate_types(self, gpu_type: str | None) -> list[str]:
        """The node types a request for `gpu_type` (None: any) could run on."""
        if gpu_type:
            return [gpu_type] if self.by_type.get(gpu_type) else []
        return [t for t, ns in self.by_type.items() if ns]

    def change_mode(self, ref: str | int, mode: str, actor: str | None = None) -> None:
        job = self.job_by_ref(ref)
        self.authorize(job.user, actor, f"change job {job.name}")
        raise Refused(
            f"job {job.name} is a {job.mode} job: the mode is locked at creation and cannot "
            f"become {mode}; cancel it and submit a new {mode} job"
        )

    def cancel(self, ref: str | int, now: float, actor: str | None = None) -> list[A.Action]:
        job = self.job_by_ref(ref)
        self.authorize(job.user, actor, f"cancel job {job.name}")
        if job.finished:
            raise Refused(f"job {job.name} has already ended ({job.state})")
        if job.state in HOLDING:
            return [self.request_stop(job, _CANCELLED, f"cancelled by {actor or job.user}", now)]
        self.set_state(job, _CANCELLED, now, f"cancelled by {actor or job.user}")
        return []

    def request_stop(self, job: Job, outcome: JobState, cause: str, now: float) -> A.Stop:
        self._unindex(job)
        job.stop_reason = str(outcome)
        self._index(job)
        self._touch_job(job)
        self.outbox.dirty_jobs.add(job.id)
        self._event(now, job, "stop", cause)
        return A.Stop(job.id, outcome, cause)

    def change_bid(self, ref: str | int, bid: float, now: float, actor: str | None = None) -> Job:
        job = self.job_by_ref(ref)
        self.authorize(job.user, actor, f"change the bid of {job.name}")
        if job.mode is not _FLEX:
            raise Refused(f"job {job.name} is a {job.mode} job: only flex jobs carry a bid")
        if job.finished:
            raise Refused(f"job {job.name} has already ended ({job.state})")
        micro = to_micro(bid)
        types = [job.market] if job.market else self.candidate_types(job.gpu_type)
        floor = min(self.markets[t].floor for t in types)
        cap = max(self.markets[t].rate for t in types)
        if not floor <= micro <= cap:
            raise Refused(f"bid must be between {fmt(floor)} and {fmt(cap)} per GPU-hour")
        old = job.bid
        t = us(now)
        log = job.bid_log or [(0, old)]
        while log and log[-1][0] >= t and len(log) > 1:
            log.pop()
        job.bid_log = [*log, (t, micro)]
        self._unindex(job)
        job.bid = micro
        self._index(job)
        self._touch_job(job)
        self.outbox.dirty_jobs.add(job.id)
        self._event(now, job, "bid", f"bid changed from {fmt(old)} to {fmt(micro)}")
        return job

    def extend(self, ref: str | int, hours: float, now: float, actor: str | None = None) -> Job:
        job = self.job_by_ref(ref)
        self.authorize(job.user, actor, f"extend job {job.name}")
        if job.mode is not _PRIORITY:
            raise Refused(f"job {job.name} is a {job.mode} job: only priority bookings extend")
        if hours <= 0:
            raise Refused("extend by a positive number of hours")
        if job.state not in (R, S) or job.end_at is None or job.stop_reason:
            raise Refused(f"job {job.name} is {job.state}: only a running booking can be extended")
        why = self.renewal_refusal(job, hours, now)
        if why:
            raise Refused(f"cannot extend {job.name}: {why}")
        self.apply(A.Renew(job.id, job.end_at + hours * 3600, f"extended by {hours:g} h"), now)
        return job

    def booked_end(self, job: Job, now: float) -> float:
        """Where a waiting Priority job's booking would end if admitted now. A job that
        claimed GPUs being freed keeps the end it was admitted with while its victims
        stop (docs/modes.md, *Queue, backfill and claims*): judged again at now + hours
        it could overlap a window it fitted before. A claim that outlives the graces has
        lapsed; the booking then counts from now again."""
        span = (job.hours if job.hours is not None else 1.0) * 3600
        if job.end_at is not None:
            c = self.cfg.cluster
            if now <= job.end_at - span + c.grace_s + c.stop_grace_s + CLAIM_SLACK_S:
                return job.end_at
        return now + span

    def renewal_refusal(self, job: Job, hours: float, now: float) -> str | None:
        """Why a Priority booking may not be extended by `hours`, or None if it may."""
        return admission.renewal_refusal(self, job, hours, now)

    def priority_waiting(self, gpu_type: str, now: float) -> Job | None:
        """The first queued Priority job that could use GPUs of the type and that its
        account can fund now (admission.py)."""
        return admission.priority_waiting(self, gpu_type, now)

    def window_squeezed(self, job: Job, start: float, end: float, now: float) -> str | None:
        """The Commit window `job` would squeeze by keeping its GPUs until `end`
        (admission.py), or None."""
        return admission.window_squeezed(self, job, start, end, now)

    def commit_demand(
        self, gpu_type: str, start: float, end: float, exclude: str | None = None
    ) -> tuple[int, str | None]:
        """Most GPUs Commit windows not yet open need at once during [start, end)."""
        return admission.commit_demand(self, gpu_type, start, end, exclude)

    # ----------------------------------------------------------- reservations
    def quote(self, spec: ReservationSpec, now: float | None = None) -> pricing.Quote:
        """The price of a reservation made at `now`: a window already begun is sold
        from `now` to its end only (docs/modes.md, Commit price)."""
        if spec.gpu_type not in self.markets:
            raise Refused(f"no node type {spec.gpu_type!r} (known: {', '.join(self.markets)})")
        return pricing.quote(
            spec.gpu_type,
            spec.gpus,
            from_now(spec.windows(), now),
            self.markets[spec.gpu_type].rate,
            self.cfg.tiers(spec.gpu_type),
            self.cfg.pricing.early_exit_refund,
        )

    def capacity_refusal(self, spec: ReservationSpec, now: float) -> str | None:
        """Why the reservation does not fit, or None (admission.py)."""
        return admission.capacity_refusal(self, spec, now)

    def reserve(self, spec: ReservationSpec, now: float, actor: str | None = None) -> Reservation:
        if actor is not None and actor != spec.user and not self.cfg.is_operator(actor):
            raise Refused(f"{actor} may not reserve as {spec.user}")
        if spec.name in self.reservations:
            raise Refused(f"a reservation named {spec.name!r} exists already")
        q = self.quote(spec, now)
        why = self.capacity_refusal(spec, now)
        if why:
            raise Refused(why)
        self.ensure_account(spec.user, now)
        # The prepayment is taken now: it must leave what the account's running jobs
        # owe unbilled and may cost while they stop (see funding.py).
        from .funding import Guard

        f = Guard(self, now).funds.get(spec.user)
        left = self.balance(spec.user) + self.credit_limit()
        running = left - f.available + f.reserve if f else 0
        if left - running < q.price:
            owed = f"; its running jobs may still cost {fmt(running)}" if running else ""
            raise Refused(
                f"account {spec.user} cannot prepay {fmt(q.price)}; "
                f"balance {fmt(self.balance(spec.user))}{owed}"
            )
        res = Reservation(
            id=self.next_res_id,
            name=spec.name,
            user=spec.user,
            gpu_type=spec.gpu_type,
            gpus=spec.gpus,
            windows=from_now(spec.windows(), now),
            rate=q.rate,
            discount_bp=q.discount_bp,
            prepaid=q.price,
            created_at=now,
        )
        self.next_res_id += 1
        self.reservations[res.name] = res
        self.reservations_rev += 1
        self.windows_rev += 1
        self.outbox.dirty_reservations.add(res.name)
        self.post(
            now,
            f"prepay {res.name}: {res.gpus} x {res.gpu_type}, {q.gpu_hours:g} GPU-h, "
            f"{q.discount_bp / 100:g}% off",
            [(user_account(res.user), -q.price), (held_account(res.name), q.price)],
            reservation=res.name,
        )
        self.outbox.events.append(
            Event(
                now,
                "reservation",
                f"reserved {len(res.windows)} window(s)",
                reservation=res.name,
                user=res.user,
            )
        )
        return res

    def cancel_reservation(self, name: str, now: float, actor: str | None = None) -> list[A.Action]:
        res = self.reservations.get(name)
        if res is None:
            raise Refused(f"no reservation {name!r}")
        self.authorize(res.user, actor, f"cancel reservation {name}")
        if res.finished:
            raise Refused(f"reservation {name} has already ended")
        out: list[A.Action] = []
        for jid in list(self.holding):
            job = self.jobs[jid]
            if job.reservation == name and not job.stop_reason:
                out.append(self.request_stop(job, _CANCELLED, f"reservation {name} cancelled", now))
        for _seq, jid in list(self.commit_waiting.get(name, [])):
            self.set_state(self.jobs[jid], _CANCELLED, now, f"reservation {name} cancelled")
        self._accrue_missing(res, now)
        unused, downtime = pricing.early_exit_refund(res, now, self.cfg.pricing.early_exit_refund)
        self._release_window(res)
        res.cancelled_at = now
        self.reservations_rev += 1
        self.windows_rev += 1
        res.missing = 0
        res.missing_since = None
        res.downtime_gpu_s = 0.0
        held = self.balances.get(held_account(name), 0)
        user = user_account(res.user)
        self.post(
            now,
            f"early exit refund {name}: unused future GPU-hours x "
            f"{self.cfg.pricing.early_exit_refund:g}",
            [(held_account(name), -unused), (user, unused)],
            reservation=name,
        )
        self.post(
            now,
            f"downtime credit {name}",
            [(held_account(name), -downtime), (user, downtime)],
            reservation=name,
        )
        res.refunded += unused
        res.credited += downtime
        rest = held - unused - downtime
        self.post(
            now,
            f"used part of {name}",
            [(held_account(name), -rest), (REVENUE, rest)],
            reservation=name,
        )
        self.outbox.dirty_reservations.add(name)
        self.outbox.events.append(
            Event(
                now,
                "reservation",
                f"cancelled by {actor or res.user}; refund "
                f"{fmt(unused)} + downtime credit {fmt(downtime)}",
                reservation=name,
                user=res.user,
            )
        )
        return out

    def refund_preview(self, name: str, now: float) -> tuple[int, int]:
        res = self.reservations[name]
        return pricing.early_exit_refund(res, now, self.cfg.pricing.early_exit_refund)

    def _release_window(self, res: Reservation) -> None:
        for node_name, idx in res.held:
            node = self.nodes[node_name]
            if node.reserved[idx] == res.name:
                node.reserved[idx] = None
                node.recount()
                self._touch_node(node)
                self.outbox.dirty_nodes.add(node_name)
        res.held = []
        res.active_window = None
        self.windows_rev += 1
        self.outbox.dirty_reservations.add(res.name)

    def _accrue_missing(self, res: Reservation, now: float) -> None:
        if res.missing and res.missing_since is not None:
            res.downtime_gpu_s += res.missing * (now - res.missing_since)
        res.missing_since = now if res.missing else None

    def set_missing(self, res: Reservation, now: float) -> None:
        """Recount reserved GPUs lost to down nodes (or never found), accruing downtime."""
        self._accrue_missing(res, now)
        healthy = sum(1 for n, _ in res.held if self.nodes[n].status is not _UNREACHABLE)
        res.missing = res.gpus - healthy if res.active_window is not None else 0
        self.windows_rev += 1
        res.missing_since = now if res.missing else None
        self.outbox.dirty_reservations.add(res.name)

    # -------------------------------------------------------------- billing
    def settle(self, job: Job, now: float, ended_at: float | None = None, why: str = "") -> None:
        """Bring a job's charge to its running total at `now`, or at `ended_at` when its
        processes are known to have stopped working earlier (an exit recorded by the
        agent, a node last heard from). That may lie before the last billing: what was
        charged past it is then credited back, so a bill never depends on when billing
        ran (docs/modes.md, Billing). Millions of these run in a long simulation: the
        texts they post are built from parts kept between calls."""
        billed = job.billed_from
        mode = job.mode
        if billed is None or mode is _COMMIT or job.market is None:
            return
        start = job.started_at
        if ended_at is None and mode is _FLEX and start is not None and start <= now:
            # A running Flex job billed to now (nearly every settle): `_run_total` and
            # `flex_usage`'s one-price, one-bid case, inline; any other span takes them.
            until = now
            a, b = round((billed or now) * US), round(now * US)
            market = self.markets[job.market]
            if b > a:
                acc = _flex_run_acc(job, market, a, b)
            elif b == a:
                acc = job.run_acc
            else:
                acc = job.run_acc - flex_usage(market, job.bid_log, job.bid, b, a)
        else:
            until = now if ended_at is None or now <= ended_at else ended_at
            acc, until = self._run_total(job, until)
        gpus = job.gpus if not job.nodes else job.gpu_total
        due = gpus * acc // _PER_HOUR - job.run_charged
        secs = until - billed
        job.run_acc = acc
        job.run_charged += due
        job.billed_from = until
        self.outbox.dirty_jobs.add(job.id)
        if not due:
            return
        job.charged += due
        acct = _user_account(job.user)
        if due > 0:
            held = _SECONDS.get(secs) or _seconds_text(secs)
            if mode is _PRIORITY:
                rate = _rate_text(self.markets[job.market].rate)
                reason = f"{_USAGE[mode]}{job.name}: {held} s x {gpus} GPU at {rate}/GPU-h"
            else:
                reason = f"{_USAGE[mode]}{job.name}: {held} s x {gpus} GPU at the clearing price"
            # `Ledger.transfer`, inline (balanced by its making).
            ledger = self.ledger
            balances = ledger.balances
            balances[acct] = balances.get(acct, 0) - due
            balances[REVENUE] = balances.get(REVENUE, 0) + due
            ledger.debited += due
            if _BARE_TX:  # as `settle_all` makes it: no dataclass __init__ call
                tx = object.__new__(Transaction)
                tx.at = now
                tx.reason = reason
                tx.entries = [(acct, -due), (REVENUE, due)]
                tx.job = job.id
                tx.reservation = None
            else:
                tx = Transaction(now, reason, [(acct, -due), (REVENUE, due)], job.id, None)
            self.outbox.transactions.append(tx)
            return
        job.refunded -= due
        back = f"{-secs:.0f} s billed past {why or 'the end of the run'}"
        reason = f"{mode} usage credit {job.name}: {back}"
        self.ledger.transfer(now, reason, REVENUE, acct, -due, job.id)

    def settle_all(self, ids: list[int], now: float) -> None:
        """`settle(job, now)` for each of `ids` in order: a pass's Settle actions (a
        few dozen, millions in a long simulation). A job running since before `now`
        and billed up to it, nearly every one (a Priority booking not past its end), is
        billed here with what every one of them reads kept once: `_run_total` inline,
        and for Flex `_flex_run_acc`'s one-price, one-bid span inline too (the rest
        through it). Any other goes through `settle`.
        Most were billed together, a pass ago: what depends only on when a job was
        last billed (the span, its price per market, the seconds in the text) is
        worked out once per such group, not once per job.
        What they pay to revenue is added to its balance once, at the end (when the
        account exists already: a new one is opened in its place among the accounts),
        and the jobs billed inline are marked dirty together at the end too."""
        jobs, markets, outbox = self.jobs, self.markets, self.outbox
        ledger = self.ledger
        balances = ledger.balances
        debited = 0  # what this call takes from accounts inline, for `ledger.debited`
        revenue = REVENUE in balances
        txs_append = outbox.transactions.append
        # Jobs `settle` was asked to bill that it may leave alone (not dirty): the rest
        # of `ids` are marked dirty at the end, as `settle` marks every job it bills.
        passed: list[int] = []
        b = round(now * US)
        flex_text, priority_text = _USAGE[_FLEX], _USAGE[_PRIORITY]
        accounts = _ACCOUNTS
        bare, new_tx = _BARE_TX, object.__new__
        # Per market: its price segment in force over [a, b) for any `a` at or after the
        # segment's start (every span billed to `now` from there is one price).
        spans: dict[str, tuple[int, int]] = {}
        # Per group of jobs last billed at the same time: the start `a` of the span and
        # its length `d`, the seconds' text, per market the one price over the span (-1
        # when it changed there), the texts' ends per GPU count (Flex) and per market
        # and GPU count (Priority).
        last_billed = None
        a = d = 0
        secs = 0.0
        held: str | None = None
        prices: dict[str, int] = {}
        tails: dict[int, str] = {}
        priority_tails: dict[tuple[str, int], str] = {}
        for jid in ids:
            job = jobs[jid]
            billed = job.billed_from
            start = job.started_at
            market_name = job.market
            if billed is None or market_name is None or start is None or start > now:
                passed.append(jid)
                self.settle(job, now)
                continue
            if billed != last_billed:
                a = round((billed or now) * US)
                d = b - a
                secs = now - billed
                last_billed = billed
                held = None
                prices = {}
                tails = {}
                priority_tails = {}
            if d < 0:
                passed.append(jid)
                self.settle(job, now)  # billed past now: a credit, with its own text
                continue
            mode = job.mode
            if mode is _FLEX:
                if not d:
                    acc = job.run_acc
                else:
                    price = prices.get(market_name)
                    if price is None:
                        span = spans.get(market_name)
                        if span is None:
                            market = markets[market_name]
                            starts = market.starts
                            i = len(starts) - 1
                            if i >= 0 and starts[i] >= b:
                                i = bisect_right(starts, b - 1) - 1  # a segment opened at `now`
                            first = starts[i] if i >= 0 else -1
                            level = market.levels[i] if i >= 0 else market.floor
                            span = spans[market_name] = (first, level)
                        price = prices[market_name] = span[1] if a >= span[0] else -1
                    log = job.bid_log
                    if price >= 0 and (not log or log[-1][0] <= a):
                        cap = log[-1][1] if log else job.bid
                        acc = job.run_acc + (price if price < cap else cap) * d
                    else:
                        acc = _flex_run_acc(job, markets[market_name], a, b)
            elif mode is _PRIORITY and (job.end_at is None or job.end_at >= now):
                acc = job.run_acc + markets[market_name].rate * d
            else:
                passed.append(jid)
                self.settle(job, now)
                continue
            gpus = job.gpus if not job.nodes else job.gpu_total
            due = gpus * acc // _PER_HOUR - job.run_charged
            job.run_acc = acc
            job.run_charged += due
            job.billed_from = now
            if not due:
                continue
            job.charged += due
            user = job.user
            try:
                acct = accounts[user]  # known after a user's first charge
            except KeyError:
                acct = _account(user)
            if due < 0:  # as `settle` credits it
                job.refunded -= due
                back = f"{-secs:.0f} s billed past the end of the run"
                self.ledger.transfer(
                    now, f"{mode} usage credit {job.name}: {back}", REVENUE, acct, -due, jid
                )
                continue
            if held is None:
                held = _SECONDS.get(secs) or _seconds_text(secs)
            if mode is _FLEX:
                tail = tails.get(gpus)
                if tail is None:
                    tail = tails[gpus] = f"{held} s x {gpus} GPU at the clearing price"
                reason = f"{flex_text}{job.name}: {tail}"
            else:
                tail = priority_tails.get((market_name, gpus))
                if tail is None:
                    rate = _rate_text(markets[market_name].rate)
                    tail = f"{held} s x {gpus} GPU at {rate}/GPU-h"
                    priority_tails[market_name, gpus] = tail
                reason = f"{priority_text}{job.name}: {tail}"
            try:
                balances[acct] -= due
            except KeyError:
                balances[acct] = -due
            if not revenue:
                balances[REVENUE] = balances.get(REVENUE, 0) + due
            debited += due
            if bare:
                tx = new_tx(Transaction)
                tx.at = now
                tx.reason = reason
                tx.entries = [(acct, -due), (REVENUE, due)]
                tx.job = jid
                tx.reservation = None
                txs_append(tx)
            else:
                txs_append(Transaction(now, reason, [(acct, -due), (REVENUE, due)], jid, None))
        if revenue and debited:
            balances[REVENUE] += debited  # every inline charge went there, none yet added
        ledger.debited += debited
        if passed:
            skip = set(passed)
            outbox.dirty_jobs.update([jid for jid in ids if jid not in skip])
        else:
            outbox.dirty_jobs.update(ids)

    def _run_total(self, job: Job, until: float) -> tuple[int, float]:
        """The run's exact running total at `until` (kept within the run and, for
        Priority, the booking), and that time."""
        billed = job.billed_from
        start = job.started_at
        if start is None:
            start = billed
        low = start or until
        if low > until:
            until = low
        priority = job.mode is _PRIORITY
        end = job.end_at
        if priority and end is not None:
            low = start or end
            if low > end:
                end = low
            if end < until:
                until = end
        a, b = round((billed or until) * US), round(until * US)
        market = self.markets[job.market or ""]
        if priority:
            return job.run_acc + market.rate * (b - a), until
        if b >= a:
            return job.run_acc + flex_usage(market, job.bid_log, job.bid, a, b), until
        return job.run_acc - flex_usage(market, job.bid_log, job.bid, b, a), until

    def unbilled(self, job: Job, now: float) -> int:
        """What billing the job now would charge: the price owed, not an estimate."""
        if job.billed_from is None or job.mode is _COMMIT or job.market is None:
            return 0
        return pricing.owed(job.gpu_total, self._run_total(job, now)[0]) - job.run_charged

    # ------------------------------------------------------------ apply actions
    def apply(self, action: A.Action, now: float) -> None:
        cls = action.__class__
        # The class compared by identity (mypy does not narrow on it; isinstance costs).
        if cls is _SETTLE:  # most actions by far (16 a pass): no match walked
            self.settle(self.jobs[action.job], now)  # type: ignore[union-attr]
            return
        if cls is _SET_PRICE:  # one a market most passes, the last case below
            self._set_price(action.gpu_type, action.price, now)  # type: ignore[union-attr]
            return
        match action:
            case A.Start(job=jid, placement=pl, market=m, resume=resume):
                self._start(self.jobs[jid], pl, m, resume, now)
            case A.Preempt(job=jid, cause=cause, for_job=for_job):
                job = self.jobs[jid]
                job.stop_reason = "paused"
                job.preemptions += 1
                self.set_state(job, PR, now, cause)
                if for_job is not None:
                    self.preempted_at[jid] = (now, for_job)
            case A.CallOff(job=jid, cause=cause):
                self.calling_off[jid] = cause
            case A.Stop(job=jid, outcome=outcome, cause=cause):
                job = self.jobs[jid]
                if not job.stop_reason:
                    self.request_stop(job, outcome, cause, now)
            case A.Renew(job=jid, end_at=end, cause=cause):
                job = self.jobs[jid]
                self.settle(job, now)
                job.end_at = end
                job.warned = 0
                self.outbox.dirty_jobs.add(jid)
                # A waiting job is booked when it claims GPUs being freed (see booked_end).
                kind = "renewed" if job.state in HOLDING else "booked"
                self._event(now, job, kind, f"{cause}; booked until {hm(end)}")
            case A.Warn(job=jid, seconds_left=left, bit=bit, note=note):
                job = self.jobs[jid]
                job.warned |= bit
                self.outbox.dirty_jobs.add(jid)
                what = "window ends" if job.mode is _COMMIT else "booking expires"
                self._event(now, job, "warning", f"{what} in {duration(left, prose=True)}{note}")
            case A.Fail(job=jid, cause=cause):
                self.set_state(self.jobs[jid], _FAILED, now, cause)
            case A.OpenWindow(reservation=name, index=i, held=held):
                self._open_window(self.reservations[name], i, held, now)
            case A.CloseWindow(reservation=name, index=i):
                self._close_window(self.reservations[name], i, now)
            case A.SetPrice(gpu_type=t, price=p):
                self._set_price(t, p, now)

    def _set_price(self, gpu_type: str, price: int, now: float) -> None:
        market = self.markets[gpu_type]
        if price != market.price:
            self.outbox.prices.append((now, gpu_type, price))  # the store replays these in order
        market.set_price(price, now)

    def _start(
        self, job: Job, placement: tuple[Placement, ...], market: str, resume: bool, now: float
    ) -> None:
        job.placement = list(placement)
        job.market = market
        if job.mode is _PRIORITY and job.end_at is not None and job.state is Q:
            if self.booked_end(job, now) != job.end_at:
                job.end_at = None  # its claim lapsed: booked from its start, as usual
        for p in placement:
            node = self.nodes[p.node]
            for i in p.gpus:
                if node.holders[i] is not None:
                    raise AssertionError(f"GPU {p.node}:{i} already held by job {node.holders[i]}")
                node.holders[i] = job.id
            node.recount()
            self._touch_node(node, start=True)
            self.outbox.dirty_nodes.add(p.node)
        job.stop_reason = None
        # A run is numbered when it is decided, and the number is written with the
        # decision: the agent knows the run by it, so a run that is stopped before its
        # start was reported, or that ran while no console was there, is never confused
        # with the next one.
        job.runs += 1
        why = "resumed" if resume else "placed"
        if len(placement) == 1:  # nearly every start: one node, often one GPU
            p = placement[0]
            gpus = p.gpus
            idx = str(gpus[0]) if len(gpus) == 1 else ",".join(map(str, gpus))
            where = f"{p.node}[{idx}]"
        else:
            where = ", ".join([f"{p.node}[{','.join(map(str, p.gpus))}]" for p in placement])
        self.set_state(job, S, now, f"{why} on {where}")

    def started(self, ref: int, now: float) -> None:
        job = self.jobs[ref]
        if job.state is not S:
            return
        job.started_at = now
        if job.first_started_at is None:
            job.first_started_at = now
        job.billed_from = now
        job.run_acc = job.run_charged = 0
        if job.mode is _PRIORITY and job.end_at is None:
            hours = job.hours if job.hours is not None else 1.0
            job.end_at = now + hours * 3600
        self.set_state(job, R, now, "process started")

    def called_off(self, ref: int, now: float, cause: str = "") -> None:
        """The executor cancelled a preemption in its grace: the job runs on, on its GPUs,
        billed as running all along; the preemption is not counted against it."""
        job = self.jobs[ref]
        why = cause or self.calling_off.get(ref, "") or "no longer needed"
        if job.state is not PR or job.stop_reason != "paused":
            return
        job.stop_reason = None
        job.preemptions = max(job.preemptions - 1, 0)
        self.set_state(job, R, now, f"preemption called off ({why})")

    def _release(self, job: Job, now: float, ended_at: float | None = None, why: str = "") -> None:
        self.settle(job, now, ended_at, why)
        for p in job.placement:
            node = self.nodes[p.node]
            for i in p.gpus:
                if node.holders[i] == job.id:
                    node.holders[i] = None
            node.recount()
            self._touch_node(node)
            self.outbox.dirty_nodes.add(p.node)
        self._unindex(job)
        job.placement = []
        self._index(job)
        job.billed_from = None

    def exited(
        self,
        ref: int,
        exit_code: int | None,
        now: float,
        cause: str = "",
        completed: bool = False,
        ended_at: float | None = None,
    ) -> None:
        """The job's processes are gone: after a stop or preempt, or on their own
        (`completed`: it ended before any stop signal reached it). `ended_at`: when they
        ended, if that was a while ago (learned after a console restart or a reconnect):
        billing stops there, not when the news arrived."""
        job = self.jobs[ref]
        if job.state not in HOLDING:
            return
        self._release(job, now, ended_at)
        job.exit_code = exit_code
        reason = job.stop_reason
        job.stop_reason = None
        if completed and exit_code == 0:
            reason = None
        if reason == "paused":
            self.set_state(job, _PAUSED, now, cause or "stopped after checkpoint signal")
            return
        if reason:
            self.set_state(job, JobState(reason), now, cause or f"stopped ({reason})")
            return
        if exit_code == 0:
            self.set_state(job, _SUCCEEDED, now, cause or "exited with status 0")
            return
        why = cause or f"exited with status {exit_code}"
        if job.mode is _FLEX and job.retries < job.max_retries:
            job.retries += 1
            p = self.cfg.pricing
            delay = min(p.retry_backoff_s * 2 ** (job.retries - 1), p.retry_backoff_max_s)
            job.retry_at = now + delay
            self.set_state(
                job, Q, now, f"{why}; retry {job.retries}/{job.max_retries} in {delay:.0f} s"
            )
            return
        self.set_state(job, _FAILED, now, why)

    def node_status(
        self,
        name: str,
        status: NodeStatus,
        now: float,
        cause: str = "",
        since: float | None = None,
    ) -> list[A.Action]:
        """A node changed state. Losing one ends, moves or pauses the jobs on it per mode;
        their billing stops when the node was last heard from (`since`), if known."""
        node = self.nodes[name]
        if node.status is status:
            return []
        old = node.status
        node.status = status
        self.status_rev += 1
        self._touch_node(node)
        self.outbox.dirty_nodes.add(name)
        self.outbox.events.append(
            Event(now, "node", cause or f"node {status}", node=name, old=str(old), new=str(status))
        )
        out: list[A.Action] = []
        if status is not _UNREACHABLE:
            for res in self.reservations.values():
                if res.active_window is not None and any(n == name for n, _ in res.held):
                    self.set_missing(res, now)
            return out
        lost = f"node {name} lost"
        for jid in sorted({j for j in node.holders if j is not None}):
            job = self.jobs[jid]
            others = [p for p in job.placement if p.node != name]
            if job.mode is _PRIORITY:
                outcome, why = _FAILED, f"failed ({lost})"
            elif job.mode is _COMMIT:
                outcome, why = Q, f"{lost}; will restart on spare reserved GPUs"
            else:
                outcome, why = _PAUSED, f"{lost}; paused, resumes from its checkpoint"
                job.preemptions += 1
            if others:
                # A gang keeps its healthy parts until the executor has stopped them.
                # It does no work from the loss on, so billing stops there.
                self.settle(job, now, since, f"when {lost} was last heard from")
                job.billed_from = None
                job.stop_reason = "paused" if outcome is _PAUSED else str(outcome)
                self._touch_job(job)
                self.outbox.dirty_jobs.add(job.id)
                if job.mode is _FLEX:
                    self.set_state(job, PR, now, why)
                else:
                    self._event(now, job, "stop", why)
                self.stopping.add(job.id)
                out.append(A.Stop(job.id, outcome, why))
                continue
            self._release(job, now, since, f"when {lost} was last heard from")
            job.stop_reason = None
            self.set_state(job, outcome, now, why)
        for res in self.reservations.values():
            if res.active_window is not None and any(n == name for n, _ in res.held):
                if since is not None:
                    # Its silence is downtime too, as it is unbilled time for Priority.
                    silent = now - max(since, res.windows[res.active_window][0])
                    lost_gpus = sum(1 for n, _ in res.held if n == name)
                    res.downtime_gpu_s += lost_gpus * max(silent, 0.0)
                res.held = [(n, i) for n, i in res.held if n != name]
                for i in range(node.gpu_count):
                    if node.reserved[i] == res.name:
                        node.reserved[i] = None
                node.recount()
                self.set_missing(res, now)
        return out

    def drain_node(self, name: str, note: str | None, now: float, cause: str) -> None:
        """An operator's drain (`note`: who and why) or undrain (None), kept apart from
        the status a node's own reports set. A drained node takes nothing new; the jobs
        on it run until they end. An open Commit window moves off it as off a lost node
        (its owner's jobs there keep running): the next pass holds spare GPUs instead,
        and while there are none the shortfall is downtime, credited (docs/modes.md)."""
        node = self.nodes.get(name)
        if node is None:
            raise Refused(f"no node {name!r} (known: {', '.join(sorted(self.nodes))})")
        if note is not None and node.drained is not None:
            raise Refused(f"node {name} is drained already ({node.drained})")
        if note is None and node.drained is None:
            raise Refused(f"node {name} is not drained")
        old = "drained" if node.drained is not None else "schedulable"
        node.drained = note
        self._touch_node(node)
        self.outbox.dirty_nodes.add(name)
        new = "drained" if note is not None else "schedulable"
        self.outbox.events.append(Event(now, "node", cause, node=name, old=old, new=new))
        if note is None:
            return
        for res in self.reservations.values():
            if res.active_window is not None and any(n == name for n, _ in res.held):
                res.held = [(n, i) for n, i in res.held if n != name]
                for i in range(node.gpu_count):
                    if node.reserved[i] == res.name:
                        node.reserved[i] = None
                node.recount()
                self.set_missing(res, now)

    def _open_window(
        self, res: Reservation, index: int, held: tuple[tuple[str, int], ...], now: float
    ) -> None:
        first = res.active_window != index
        res.active_window = index
        self.windows_rev += 1
        for node_name, i in held:
            node = self.nodes[node_name]
            node.reserved[i] = res.name
            node.recount()
            self._touch_node(node)
            self.outbox.dirty_nodes.add(node_name)
        res.held = res.held + list(held) if not first else list(held)
        if first:
            res.missing = 0
            res.missing_since = None
        self.set_missing(res, now)
        s, e = res.windows[index]
        msg = (
            f"window {index + 1}/{len(res.windows)} open until {hm(e)}"
            if first
            else f"{len(held)} spare GPU(s) added"
        )
        if res.missing:
            msg += f"; {res.missing} GPU(s) short, credited as downtime"
        self.outbox.events.append(Event(now, "window", msg, reservation=res.name, user=res.user))

    def _close_window(self, res: Reservation, index: int, now: float) -> None:
        if res.active_window == index:
            self._accrue_missing(res, now)
            self._release_window(res)
        value = pricing.window_value(res, index)
        credit = min(
            int(pricing.effective_rate_per_gpu_second(res) * Fraction(res.downtime_gpu_s)), value
        )
        res.downtime_gpu_s = 0.0
        res.missing = 0
        res.missing_since = None
        res.settled_windows = index + 1
        self.reservations_rev += 1
        self.windows_rev += 1
        res.credited += credit
        self.post(
            now,
            f"downtime credit {res.name} window {index + 1}",
            [(held_account(res.name), -credit), (user_account(res.user), credit)],
            reservation=res.name,
        )
        self.post(
            now,
            f"commit usage {res.name} window {index + 1}",
            [(held_account(res.name), -(value - credit)), (REVENUE, value - credit)],
            reservation=res.name,
        )
        self.outbox.dirty_reservations.add(res.name)
        self.outbox.events.append(
            Event(
                now,
                "window",
                f"window {index + 1}/{len(res.windows)} closed",
                reservation=res.name,
                user=res.user,
            )
        )

    def drain(self) -> Records:
        """Hand over the outbox's records and clear its dirty marks: call it once what
        changed is written (or when nothing is to be written)."""
        return self.outbox.drain()


def windows_as_sold(
    windows: list[tuple[float, float]], at: float | None
) -> list[tuple[float, float]]:
    """The windows a reservation made at `at` holds: one already begun is sold (and
    kept) from `at` to its end. A plan naming the window as asked still matches it."""
    return from_now(windows, at)
