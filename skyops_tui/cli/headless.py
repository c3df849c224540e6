"""Skyops without the TUI: `skyops --apply plan.toml` and the scripting commands
(`status`, `jobs`, `logs`, `cancel`, `quote`), each with `--json` (docs/headless.md).

Commands that change the grid (`--apply`, `cancel`) and those that need the nodes
(`--wait`, `logs`) open a control session: they lead the grid when no console does, or
queue their commands for the console that leads. Commands that only read (`status`,
`jobs`, `quote`, `--apply --dry-run`) read the state store and take no lease, so they
are instant and never start anything.

Output: rich tables for people, plain JSON on stdout with `--json`, errors on stderr
naming the file, the key and the reason. Exit codes: 0 applied or nothing to do,
1 refused, 2 invalid input, 3 a waited job did not succeed, 4 the state store cannot be
used (locked, disk full, a folder or read-only file; the message names the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..api.views import (
    flag_messages,
    job_json,
    last_placed,
    quote_json,
    status_json,
)
from ..domain.config import Config, load_config
from ..domain.errors import InputError, Refused
from ..domain.model import TERMINAL, Job, JobState, Mode
from ..domain.money import fmt
from ..domain.specs import JobSpec
from ..locations import db_path, demo_db_path
from ..policy.grid import Grid
from ..runtime import current_user
from ..store.schema import StoreError
from ..text import duration

EXIT_OK, EXIT_REFUSED, EXIT_INVALID, EXIT_JOB_FAILED, EXIT_STORE = 0, 1, 2, 3, 4
POLL_S = 0.5
SYMBOL = {"create": "+", "change": "~", "unchanged": "=", "refuse": "!"}
STYLE = {"create": "green", "change": "yellow", "unchanged": "dim", "refuse": "bold red"}
STATE_STYLE = {
    "queued": "cyan",
    "starting": "cyan",
    "running": "green",
    "preempting": "yellow",
    "paused": "yellow",
    "succeeded": "bold green",
    "failed": "bold red",
    "cancelled": "magenta",
    "expired": "red",
}


def dispatch(args: argparse.Namespace, console: Console) -> int | None:
    """Run the headless command the arguments name, or None when they name none."""
    if getattr(args, "apply", None):
        return cmd_apply(args, console)
    if args.command in COMMANDS:
        return COMMANDS[args.command](args, console)
    for flag in ("dry_run", "wait"):
        if getattr(args, flag, False):
            name = "--" + flag.replace("_", "-")
            raise InputError([f"{name}: goes with --apply PLAN"])
    return None


# ------------------------------------------------------------------- targets
@dataclass
class Target:
    cfg: Config
    db: Path
    demo: bool
    user: str
    # --connect: the local end of the SSH tunnel to the head's leader, and its URL.
    tunnel: Path | None = None
    remote: str | None = None

    @property
    def socket(self) -> Path:
        from .console import socket_path

        return self.tunnel if self.tunnel is not None else socket_path(self.cfg, self.db)

    @property
    def client_only(self) -> bool:
        """This account does not own the state (or it is on another host): it may only
        ask the leader's socket, which decides who it is from the kernel."""
        from .console import owns_state

        return self.tunnel is not None or not owns_state(self.db)


def _target(args: argparse.Namespace) -> Target:
    user = current_user()
    tunnel = getattr(args, "connect_socket", None)
    remote = getattr(args, "connect", None)
    if getattr(args, "config", None):
        return Target(load_config(args.config), db_of(args), False, user, tunnel, remote)
    from .console import demo_cluster

    return Target(demo_cluster(user), db_of(args), tunnel is None, user, tunnel, remote)


def no_scheduler(t: Target) -> StoreError:
    if t.remote is not None:
        return StoreError(
            f"--connect {t.remote}: no scheduler answers on the head node's socket; "
            "its owner starts one there with `skyops serve` (docs/api.md)"
        )
    return StoreError(
        f"{t.db}: no scheduler is running for this state (nothing answers on {t.socket}); "
        "its owner starts one with `skyops serve` (docs/api.md has a systemd unit)"
    )


NO_LEADER = object()


def _with_leader(t: Target, talk: Callable[[Any], Awaitable[Any]]) -> Any:
    """`talk` with the leader over its socket: the one door while a scheduler runs.
    With none running, NO_LEADER for the account that owns the state (it may lead
    itself, or read the file), and a "no scheduler" error (exit 4) for any other."""
    from ..api.client import ApiClient, NoLeader

    async def go() -> Any:
        try:
            client = await ApiClient.connect(t.socket)
        except NoLeader:
            if not t.client_only:
                return NO_LEADER
            raise no_scheduler(t) from None
        try:
            return await talk(client)
        finally:
            await client.close()

    return asyncio.run(go())


def _ask(t: Target, type_: str, kind: str, payload: dict | None = None) -> Any:
    """One request to the leader (or NO_LEADER, as `_with_leader` says)."""
    return _with_leader(t, lambda client: client.request(type_, kind, payload))


# Jobs asked of the leader per answer when listing them: a long history goes over the
# socket a page at a time, so neither side holds more than a page of rows for it.
JOBS_PAGE = 2_000


def _ask_jobs(t: Target, payload: dict | None = None) -> Any:
    """The `jobs` query, page by page over one connection: (rows, now), or NO_LEADER."""

    async def pages(client: Any) -> tuple[list[dict], float]:
        rows: list[dict] = []
        after = 0
        while True:
            asked = {**(payload or {}), "after": after, "limit": JOBS_PAGE}
            got = await client.request("query", "jobs", asked)
            rows += got["jobs"]
            if got.get("next") is None:
                return rows, got["now"]
            after = got["next"]

    return _with_leader(t, pages)


def db_of(args: argparse.Namespace) -> Path:
    """The state file the arguments name: --db, else a real grid's or the demo's."""
    if getattr(args, "db", None):
        return Path(args.db).expanduser()
    return db_path() if getattr(args, "config", None) else demo_db_path()


def store_error(args: argparse.Namespace, e: StoreError | sqlite3.Error) -> StoreError:
    """A store failure as one line naming the file: SQLite's own errors carry no path."""
    if isinstance(e, StoreError):
        return e
    from ..store.db import busy_timeout, store_fault

    try:
        waited: float | None = busy_timeout()
    except InputError:
        waited = None
    return store_fault(db_of(args), e, waited)


def report_store_error(args: argparse.Namespace, e: StoreError | sqlite3.Error) -> int:
    message = str(store_error(args, e))
    if getattr(args, "json", False):
        _emit_json({"status": "unavailable", "errors": [message]})
    _errors([message])
    return EXIT_STORE


@dataclass
class Snapshot:
    grid: Grid
    now: float
    leader: str | None


@contextmanager
def _snapshot(t: Target) -> Iterator[Snapshot]:
    """The grid as the store last recorded it. Takes no lease, starts nothing."""
    from ..store.control import lease_holder
    from ..store.db import Store

    store = Store(t.db)
    try:
        now = time.time()
        yield Snapshot(store.load_grid(t.cfg, now), now, lease_holder(store, now))
    finally:
        store.close()


@asynccontextmanager
async def _session(t: Target) -> AsyncIterator[Any]:
    """A control session whose body's refusals surface only after it has closed
    normally (settled), never while the fleet is still connecting."""
    from .session import open_session

    failure: Exception | None = None
    async with open_session(t.cfg, t.db, t.user, demo=t.demo) as s:
        try:
            yield s
        except (InputError, Refused, StoreError, sqlite3.Error) as e:
            failure = e
    if failure is not None:
        raise failure


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _errors(messages: list[str]) -> None:
    err = Console(stderr=True, highlight=False)
    for m in messages:
        err.print(Text("error: ", style="bold red") + Text(m), soft_wrap=True)


def _guard(fn: Callable[[argparse.Namespace, Console], int]) -> Callable:
    """Every failure a person can cause becomes a message and an exit code; with
    --json, a JSON document on stdout too."""

    def run(args: argparse.Namespace, console: Console) -> int:
        try:
            return fn(args, console)
        except InputError as e:
            if getattr(args, "json", False):
                _emit_json({"status": "invalid", "errors": e.messages})
            _errors(e.messages)
            return EXIT_INVALID
        except Refused as e:
            if getattr(args, "json", False):
                _emit_json({"status": "refused", "errors": [str(e)]})
            Console(stderr=True, highlight=False).print(
                Text("refused: ", style="bold red") + Text(str(e)), soft_wrap=True
            )
            return EXIT_REFUSED
        except (StoreError, sqlite3.Error) as e:
            return report_store_error(args, e)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


# --------------------------------------------------------------------- apply
@_guard
def cmd_apply(args: argparse.Namespace, console: Console) -> int:
    """`skyops --apply PLAN [--dry-run] [--wait] [--json]`."""
    from ..plan.schema import load_plan

    if args.dry_run and args.wait:
        raise InputError(["--wait: nothing to wait for in a --dry-run"])
    pf = load_plan(args.apply)
    t = _target(args)
    remote = t.client_only or not (args.dry_run or args.wait)
    if remote and not getattr(args, "readonly", False):
        payload = {"plan": pf.plan.payload(), "source": pf.source, "dry_run": args.dry_run}
        payload.update(_as(args))
        doc = _ask(t, "command", "apply_plan", payload)
        if doc is not NO_LEADER:
            if not args.wait or doc.get("status") == "refused":
                return _report_plan(args, console, pf, doc, dry_run=args.dry_run)
            _report_plan(args, console, pf, doc, dry_run=False, final=False)
            return _waited(
                args, console, pf, doc, t, _wait_remote(t, _plan_names(pf), console, args.json)
            )
    if args.dry_run:
        from ..plan.apply import plan_plan

        if _as(args):
            raise Refused("--as: acting for another user needs a running scheduler to check it")
        with _snapshot(t) as snap:
            doc = plan_plan(snap.grid, pf.plan, snap.now, t.user).to_json()
        return _report_plan(args, console, pf, doc, dry_run=True)
    if getattr(args, "readonly", False):
        raise Refused("--readonly: this console changes nothing (use --dry-run)")
    return asyncio.run(_apply(args, console, pf, t))


async def _apply(args: argparse.Namespace, console: Console, pf: Any, t: Target) -> int:
    async with _session(t) as s:
        doc = await s.call(
            "apply_plan",
            {"plan": pf.plan.payload(), "source": pf.source, "dry_run": False, **_as(args)},
        )
        if doc.get("status") == "refused" or not args.wait:
            return _report_plan(args, console, pf, doc, dry_run=False)
        _report_plan(args, console, pf, doc, dry_run=False, final=False)
        jobs = await _wait(s, _plan_names(pf), console, args.json)
    return _waited(args, console, pf, doc, t, jobs)


def _plan_names(pf: Any) -> list[str]:
    return list(dict.fromkeys([j.name for j in pf.plan.jobs] + [b.name for b in pf.plan.bids]))


def _wait_remote(t: Target, names: list[str], console: Console, as_json: bool) -> list[dict]:
    """`--wait` through the leader's socket (a client that does not own the state):
    the `jobs` query polled until every named job has ended, a line per change."""
    line_out = Console(stderr=True, highlight=False) if as_json else console
    seen: dict[str, tuple] = {}
    while True:
        asked = _ask_jobs(t, {"names": names})
        if asked is NO_LEADER:  # the leader went away while we waited
            raise no_scheduler(t)
        got, _now = asked
        rows = {r["name"]: r for r in got if r["name"] in names}
        for n, r in rows.items():
            key = (r["state"], r["runs"], r["preemptions"])
            if seen.get(n) != key:
                stamp = datetime.now(UTC).strftime("%H:%M:%S")
                line_out.print(Text(f"{stamp} {n}: {r['state']}"))
            seen[n] = key
        if all(r["state"] in FINISHED for r in rows.values()):
            return [rows[n] for n in names if n in rows]
        time.sleep(POLL_S)


def _waited(
    args: argparse.Namespace, console: Console, pf: Any, doc: dict, t: Target, jobs: list[dict]
) -> int:
    failed = [j for j in jobs if j["state"] != "succeeded"]
    code = EXIT_JOB_FAILED if failed else EXIT_OK
    if args.json:
        _emit_json({**_plan_doc(pf, doc, False), "jobs": jobs, "exit_code": code})
    else:
        _print_jobs_summary(console, jobs, t.cfg.cluster.currency)
        if failed:
            _errors([f"job {j['name']} ended {j['state']}" for j in failed])
    return code


def _plan_doc(pf: Any, doc: dict, dry_run: bool) -> dict:
    out = {"plan": pf.source, "dry_run": dry_run, **doc}
    for item in out.get("items", []):
        table = {"node": "nodes", "reservation": "reservations", "job": "jobs", "bid": "bids"}
        index = pf.index_of(item["kind"], item["name"])
        item["line"] = pf.line(table[item["kind"]], index) if index is not None else None
    return out


def _subject(kind: str, name: str, reason: str) -> str:
    """`kind name: reason`, naming the subject once: many refusals already begin so."""
    subject = f"{kind} {name}"
    return f"{subject}: {reason.removeprefix(subject + ': ')}"


def _report_plan(
    args: argparse.Namespace,
    console: Console,
    pf: Any,
    doc: dict,
    dry_run: bool,
    final: bool = True,
) -> int:
    full = _plan_doc(pf, doc, dry_run)
    status = full["status"]
    code = EXIT_REFUSED if status == "refused" else EXIT_OK
    refused = [i for i in full["items"] if i["action"] == "refuse"]
    if refused:
        _errors(
            [
                f"{pf.source}{':' + str(i['line']) if i['line'] else ''}: "
                f"{_subject(i['kind'], i['name'], i['reason'])}"
                for i in refused
            ]
        )
    if args.json:
        if final:
            _emit_json({**full, "exit_code": code})
        return code
    _print_plan(console, full)
    c = full["counts"]
    if status == "refused":
        n = c["refuse"]
        console.print(
            f"[bold red]Refused:[/] {n} item{'s' if n != 1 else ''} cannot be applied; "
            "nothing was changed."
        )
    elif status == "unchanged":
        console.print(f"No change: the grid already matches {pf.source}.")
    else:
        what = f"{c['create']} to create, {c['change']} to change, {c['unchanged']} unchanged"
        if dry_run:
            console.print(f"[bold]Dry run:[/] {what}; nothing was applied.")
        else:
            console.print(
                f"[bold green]Applied[/] {pf.source}: {c['create']} created, "
                f"{c['change']} changed, {c['unchanged']} unchanged."
            )
    return code


def _print_plan(console: Console, doc: dict) -> None:
    t = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    t.add_column("")
    t.add_column("kind")
    t.add_column("name")
    t.add_column("line", justify="right")
    t.add_column("plan")
    for item in doc["items"]:
        action = item["action"]
        what = Text(item["summary"] or "")
        if item["changes"]:
            changes = ", ".join(f"{c['field']}: {c['from']} -> {c['to']}" for c in item["changes"])
            what = Text(changes, style="yellow") if action != "refuse" else Text(changes)
        if action == "refuse":
            what = what + Text("\nrefused: " + str(item["reason"]), style="red")
        elif item["reason"]:
            what = what + Text(f" ({item['reason']})", style="dim")
        t.add_row(
            Text(SYMBOL[action], style=STYLE[action]),
            item["kind"],
            Text(item["name"], style=STYLE[action] if action != "unchanged" else ""),
            str(item["line"] or ""),
            what,
        )
    console.print(t)


# ---------------------------------------------------------------------- wait
async def _wait(s: Any, names: list[str], console: Console, as_json: bool) -> list[dict]:
    """Until every named job has ended: a live table on a terminal, else a line per
    state change (on stderr under --json, so stdout stays one JSON document)."""
    seen: dict[str, tuple] = {}
    line_out = Console(stderr=True, highlight=False) if as_json else console
    live = console.is_terminal and not as_json
    progress = None
    tasks: dict[str, Any] = {}
    if live:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(
            SpinnerColumn(finished_text=" "),
            TextColumn("[bold]{task.fields[name]}"),
            TextColumn("{task.fields[state]}"),
            BarColumn(bar_width=20),
            TextColumn("[dim]{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        progress.start()
        for n in names:
            tasks[n] = progress.add_task(n, total=None, name=n, state="", detail="")
    try:
        while True:
            await s.refresh()
            grid = s.grid
            done = True
            for n in names:
                job = _job_named(grid, n)
                if job is None:
                    continue
                done = done and job.finished
                key = (job.state, job.runs, job.preemptions, tuple(p.node for p in job.placement))
                if progress is not None:
                    style = STATE_STYLE.get(str(job.state), "")
                    progress.update(
                        tasks[n],
                        state=f"[{style}]{job.state}[/]",
                        detail=_detail(grid, job),
                        total=1 if job.finished else None,
                        completed=1 if job.finished else 0,
                    )
                elif seen.get(n) != key:
                    stamp = datetime.now(UTC).strftime("%H:%M:%S")
                    detail = _detail(grid, job)
                    line_out.print(f"{stamp} {n}: {job.state}" + (f" ({detail})" if detail else ""))
                seen[n] = key
            if done:
                break
            await asyncio.sleep(POLL_S)
    finally:
        if progress is not None:
            progress.stop()
    return [job_json(s.grid, j) for j in (_job_named(s.grid, n) for n in names) if j is not None]


def _job_named(grid: Grid, name: str) -> Job | None:
    jid = grid.job_names.get(name)
    return grid.jobs.get(jid) if jid is not None else None


def _detail(grid: Grid, job: Job) -> str:
    bits = []
    if job.placement and job.holding:
        bits.append("on " + _where(job))
    if job.state is JobState.QUEUED and job.mode is Mode.PRIORITY:
        pos = next((k for k, (_, j) in enumerate(grid.priority_queue, 1) if j == job.id), None)
        if pos:
            bits.append(f"priority queue #{pos}")
    if job.state is JobState.PAUSED:
        bits.append("resumes when its bid clears")
    if job.preemptions:
        bits.append(f"preempted {job.preemptions}x")
    if job.runs > 1:
        bits.append(f"run {job.runs}")
    if job.finished and job.exit_code is not None:
        bits.append(f"exit {job.exit_code}")
    return ", ".join(bits)


def _where(job: Job) -> str:
    return ",".join(f"{p.node}[{','.join(map(str, p.gpus))}]" for p in job.placement)


def _print_jobs_summary(console: Console, jobs: list[dict], cur: str) -> None:
    t = Table(title="Plan jobs", title_justify="left", header_style="bold")
    for col in ("job", "state", "runs", "preemptions", "work lost", "cost", "exit"):
        t.add_column(col, justify="right" if col not in ("job", "state") else "left")
    for j in jobs:
        t.add_row(
            j["name"],
            Text(j["state"], style=STATE_STYLE.get(j["state"], "")),
            str(j["runs"]),
            str(j["preemptions"]),
            f"{j['lost_work_s']:.0f} s",
            fmt(j["charged"], cur),
            "" if j["exit_code"] is None else str(j["exit_code"]),
        )
    console.print(t)


# -------------------------------------------------------------------- status
@_guard
def cmd_status(args: argparse.Namespace, console: Console) -> int:
    """`skyops status`: nodes, and capacity per node type and mode."""
    t = _target(args)
    doc = _ask(t, "query", "status")
    if doc is NO_LEADER:
        with _snapshot(t) as snap:
            doc = status_json(snap.grid, snap.leader)
    if args.json:
        _emit_json(doc)
        return EXIT_OK
    cur = t.cfg.cluster.currency
    who = doc["leader"] or "none (state as last recorded)"
    console.print(Text(doc["cluster"], style="bold") + Text(f"  scheduler: {who}"))
    nt = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NODE", "TYPE", "GPUS", "STATUS", "PRIO", "COMMIT", "FLEX", "IDLE-RSV", "FREE"):
        nt.add_column(col, justify="left" if col in ("NODE", "TYPE", "STATUS") else "right")
    for n in doc["nodes"]:
        style = {"up": "green", "degraded": "yellow", "unreachable": "red"}.get(n["status"], "")
        status = Text(n["status"], style=style)
        if n.get("drained") is not None:
            status += Text(", drained", style="magenta")  # who and why: --json, events
        nt.add_row(
            n["name"],
            n["gpu_type"] + (" (fake)" if n["fake"] else ""),
            str(n["gpus"]),
            status,
            *(str(n["held"][m]) for m in ("priority", "commit", "flex")),
            str(n["reserved_idle"]),
            str(n["free"]),
        )
    console.print(nt)
    console.print()
    ct = Table(box=None, header_style="bold", pad_edge=False)
    heads = ("TYPE", "GPUS", "UP", "PRIO-AVAIL", "COMMIT-RSV", "FLEX-CAP", "PRICE", "FLOOR")
    for col in (*heads, "WAITING P/C/F"):
        ct.add_column(col, justify="left" if col == "TYPE" else "right")
    for c in doc["capacity"]:
        w = c["waiting"]
        ct.add_row(
            c["gpu_type"],
            str(c["gpus"]),
            str(c["schedulable_gpus"]),
            str(c["priority_available"]),
            str(c["reserved"]),
            str(c["flex_capacity"]),
            fmt(c["price"], cur),
            fmt(c["floor"], cur),
            f"{w['priority']}/{w['commit']}/{w['flex']}",
        )
    console.print(ct)
    return EXIT_OK


# ---------------------------------------------------------------------- jobs
@_guard
def cmd_jobs(args: argparse.Namespace, console: Console) -> int:
    """`skyops jobs`: live jobs (all with --all), oldest first."""
    t = _target(args)
    # Only the live ones when that is all it shows: a long history stays in the store.
    got = _ask_jobs(t, None if args.all or args.state else {"live": True})
    if got is not NO_LEADER:
        all_rows, now = got
    else:
        with _snapshot(t) as snap:
            grid = snap.grid
            all_rows = [job_json(grid, j) for j in sorted(grid.jobs.values(), key=lambda j: j.id)]
            now = snap.now
    rows = [
        r
        for r in all_rows
        if (args.all or args.state or r["state"] not in FINISHED)
        and (args.user is None or r["user"] == args.user)
        and (args.mode is None or r["mode"] == args.mode)
        and (args.state is None or r["state"] == args.state)
    ]
    if args.json:
        _emit_json(rows)
        return EXIT_OK
    cur = t.cfg.cluster.currency
    table = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("ID", "NAME", "USER", "MODE", "STATE", "GPUS", "TYPE", "WHERE", "PRICE", "TIME"):
        table.add_column(col, justify="right" if col in ("ID", "GPUS") else "left")
    for row in rows:
        holding = bool(row["placement"]) and row["state"] not in FINISHED
        price = ""
        if row["mode"] == "flex":
            price = f"bid {fmt(row['bid'] or 0, cur)}"
        elif row["mode"] == "commit":
            price = row["reservation"] or ""
        elif row["end_at"] is not None and holding:
            price = f"ends in {_age(row['end_at'] - now)}"
        elif row["hours"] is not None:
            price = f"{row['hours']:g} h"
        since = row["started_at"] if holding else None
        where = ",".join(f"{p['node']}[{','.join(map(str, p['gpus']))}]" for p in row["placement"])
        # Names come from users: cells are Text, never markup (a name "[/x]" is shown).
        table.add_row(
            str(row["id"]),
            Text(row["name"]),
            Text(row["user"]),
            row["mode"],
            Text(row["state"], style=STATE_STYLE.get(row["state"], "")),
            str(row["gpus"]) + (f" ({row['nodes']}n)" if row["nodes"] else ""),
            Text(row["market"] or row["gpu_type"] or "any"),
            Text(where if holding else ""),
            Text(price),
            _age(now - since) if since else "",
        )
    console.print(table)
    if not rows:
        console.print("[dim]no jobs[/]" + ("" if args.all else " (live ones; --all for every job)"))
    return EXIT_OK


FINISHED = frozenset(str(s) for s in TERMINAL)


def _age(s: float) -> str:
    """A table's time: whole seconds, never negative (a clock a moment behind the
    store's shows 0s), in the compact style."""
    return duration(int(max(s, 0)), compact=True)


# ---------------------------------------------------------------------- logs
@_guard
def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    """`skyops logs JOB [-f]`: the job's latest run's output, from its node's agent."""
    if args.lines < 1:
        raise InputError([f"--lines: must be at least 1 (got {args.lines})"])
    t = _target(args)
    code = _remote_logs(args, console, t)
    return asyncio.run(_logs(args, console, t)) if code is NO_LEADER else code


def _remote_logs(args: argparse.Namespace, console: Console, t: Target) -> Any:
    """Logs through the leader, which checks that the caller may read them."""
    stream = "stderr" if args.stderr else "stdout"
    if not args.follow:
        doc = _ask(t, "query", "logs", {"ref": args.job, "stream": stream, "lines": args.lines})
        if doc is NO_LEADER:
            return doc
        if args.json:
            _emit_json({k: doc[k] for k in ("job", "id", "stream", "lines")})
        else:
            for line in doc["lines"]:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK

    def emit(job: str, lines: list[str]) -> None:
        for line in lines:
            if args.json:
                sys.stdout.write(json.dumps({"job": job, "line": line}) + "\n")
            else:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.stdout.flush()

    # As `_follow` does in-process: each line once, a new run from its start.
    run: str | None = None
    offset: int | None = None
    partial = ""
    while True:
        ended: bool | None = None
        while True:
            req = {"ref": args.job, "stream": stream, "lines": args.lines, "follow": True}
            doc = _ask(t, "query", "logs", {**req, "offset": offset})
            if doc is NO_LEADER:
                if run is None and offset is None:
                    return doc
                raise no_scheduler(t)  # the leader went away while following
            ended = doc["finished"] if ended is None else ended
            got = doc["read"]
            if got is None:
                break
            if got["run"] != run and run is not None:
                run, offset, partial = got["run"], 0, ""
                continue
            lines = got["lines"]
            if offset is None and got["next_offset"] < got["size"]:
                lines = lines[:-1]
            run, offset, partial = got["run"], got["next_offset"], got.get("partial", "")
            emit(doc["job"], lines)
            if not lines:
                break
        if ended:
            if partial:
                emit(doc["job"], [partial])
            return EXIT_OK
        time.sleep(1.0)


async def _logs(args: argparse.Namespace, console: Console, t: Target) -> int:
    stream = "stderr" if args.stderr else "stdout"
    async with _session(t) as s:
        job = s.grid.job_by_ref(args.job)
        await s.wait_for_nodes(10.0)
        # With -f this only opens the links: the follow reads by offset.
        lines = await s.logs(last_placed(s.rt.store, job), stream, 0 if args.follow else args.lines)
        if not args.follow:
            if args.json:
                _emit_json({"job": job.name, "id": job.id, "stream": stream, "lines": lines})
            else:
                for line in lines:
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
            return EXIT_OK
        return await _follow(args, s, job, stream, console)


async def _follow(args: argparse.Namespace, s: Any, job: Job, stream: str, console: Console) -> int:
    """Print the job's output as it grows, each line once: the last -n lines, then
    every byte after them, read from the agent by offset. A new run (after a
    preemption or a retry) is printed from its start."""

    def emit(lines: list[str]) -> None:
        for line in lines:
            if args.json:
                sys.stdout.write(json.dumps({"job": job.name, "line": line}) + "\n")
            else:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.stdout.flush()

    read = s.rt.executor.read_log
    run: str | None = None
    offset: int | None = None
    partial = ""
    while True:
        ended = job.finished  # read first: output written before the end is in the file
        while True:
            got = await read(last_placed(s.rt.store, job), stream, offset, args.lines)
            if got is None:
                break
            if got["run"] != run and run is not None:
                run, offset, partial = got["run"], 0, ""
                continue  # a new run: all of its output
            lines = got["lines"]
            if offset is None and got["next_offset"] < got["size"]:
                lines = lines[:-1]  # the tail's unfinished last line comes with the next read
            run, offset, partial = got["run"], got["next_offset"], got.get("partial", "")
            emit(lines)
            if not lines:
                break
        if ended:
            if partial:
                emit([partial])
            return EXIT_OK
        await asyncio.sleep(1.0)
        await s.refresh()
        job = s.grid.job_by_ref(job.id)


# -------------------------------------------------------------------- cancel
@_guard
def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    """`skyops cancel JOB` (or `--reservation NAME`)."""
    if getattr(args, "readonly", False):
        raise Refused("--readonly: this console changes nothing")
    t = _target(args)
    doc = _ask(t, "command", *_cancel_command(args))
    if doc is not NO_LEADER:
        return _print_cancel(args, console, t, doc)
    return asyncio.run(_cancel(args, console, t))


def _as(args: argparse.Namespace) -> dict:
    """`--as USER` as a command's `as_user`: the leader refuses it unless the caller is
    an operator, and logs both names (docs/security.md)."""
    return {"as_user": args.as_user} if getattr(args, "as_user", None) else {}


def _cancel_command(args: argparse.Namespace) -> tuple[str, dict]:
    who = _as(args)
    if args.reservation:
        return "cancel_reservation", {"name": args.job, **who}
    return "cancel", {"ref": args.job, **who}


async def _cancel(args: argparse.Namespace, console: Console, t: Target) -> int:
    async with _session(t) as s:
        doc = await s.call(*_cancel_command(args))
    if not args.reservation:
        # The command's answer is the job as the cancel found it: a running job is still
        # running until its process has gone. Report it as the grid has it now.
        with _snapshot(t) as snap:
            job = snap.grid.jobs.get(doc["id"])
        if job is not None:
            doc = {**doc, "state": str(job.state)}
    return _print_cancel(args, console, t, doc)


def _print_cancel(args: argparse.Namespace, console: Console, t: Target, doc: dict) -> int:
    status = "cancelled"
    if not args.reservation:
        status = "cancelled" if doc["state"] == "cancelled" else "stopping"
    if args.json:
        _emit_json({"status": status, **doc})
        return EXIT_OK
    cur = t.cfg.cluster.currency
    if args.reservation:
        console.print(
            Text(
                f"Cancelled reservation {doc['name']}: refund {fmt(doc['refund'], cur)}, "
                f"downtime credit {fmt(doc['downtime_credit'], cur)}."
            )
        )
    else:
        what = "stopping" if doc.get("state") not in ("cancelled",) else "cancelled"
        console.print(Text(f"Job {doc['name']} (id {doc['id']}): {what}."))
    return EXIT_OK


# --------------------------------------------------------------- node drain
@_guard
def cmd_drain(args: argparse.Namespace, console: Console) -> int:
    """`skyops nodes drain NODE [--reason TEXT]` and `skyops nodes undrain NODE`:
    operators only, decided by the leader from who the kernel says is asking."""
    if getattr(args, "readonly", False):
        raise Refused("--readonly: this console changes nothing")
    t = _target(args)
    kind = args.nodes_command
    payload = {"node": args.node}
    if kind == "drain" and args.reason:
        payload["reason"] = args.reason
    doc = _ask(t, "command", kind, payload)
    if doc is NO_LEADER:
        doc = asyncio.run(_drain_here(t, kind, payload))
    if getattr(args, "json", False):
        _emit_json({"status": kind + "ed", **doc})
        return EXIT_OK
    if doc["drained"] is not None:
        line = f"Node {doc['node']} drained ({doc['drained']}): nothing new is placed there"
        if doc["held"]:
            line += f"; {doc['held']} GPU(s) in use run until their jobs end"
    else:
        line = f"Node {doc['node']} undrained: it takes work again"
    console.print(Text(line + "."))
    return EXIT_OK


async def _drain_here(t: Target, kind: str, payload: dict) -> dict:
    async with _session(t) as s:
        return await s.call(kind, payload)


# --------------------------------------------------------------------- quote


@_guard
def cmd_quote(args: argparse.Namespace, console: Console) -> int:
    """`skyops quote KIND ...`: what a request would cost and whether it is admitted."""
    t = _target(args)
    from ..api.protocol import QUOTE_KEYS

    req = {k: v for k, v in vars(args).items() if k in QUOTE_KEYS and v not in (None, False)}
    doc = _ask(t, "query", "quote", req)
    if doc is NO_LEADER:
        user = args.user or t.user
        with _snapshot(t) as snap:
            doc = quote_json(snap.grid, args, user, snap.now, t.user)
    if args.json:
        _emit_json(doc)
    else:
        _print_quote(console, doc, t.cfg.cluster.currency)
    return EXIT_OK if doc["refused"] is None else EXIT_REFUSED


def _print_quote(console: Console, doc: dict, cur: str) -> None:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    money_keys = {
        "rate",
        "per_hour",
        "price",
        "list_price",
        "bid",
        "floor",
        "max_per_hour",
        "effective_rate",
        "prepaid",
        "balance",
    }
    for k, v in doc.items():
        if v is None or k in ("refused", "outcome"):
            continue
        if k in money_keys:
            v = fmt(v, cur)
        elif k == "clearing_price":
            v = ", ".join(f"{t_}: {fmt(p, cur)}" for t_, p in v.items())
        elif k == "discount_bp":
            k, v = "discount", f"{v / 100:g}%"
        elif k == "first_window":
            v = " to ".join(v)
        t.add_row(k.replace("_", " "), str(v))
    console.print(t)
    if doc["refused"]:
        console.print(Text("would be refused: ", style="bold red") + Text(doc["refused"]))
    else:
        console.print(Text("would be admitted: ", style="bold green") + Text(doc["outcome"]))


# -------------------------------------------------------------------- submit
@_guard
def cmd_submit(args: argparse.Namespace, console: Console) -> int:
    """`skyops submit [--mode M] [--gpus N] [--array N] -- COMMAND...`: a lean client.
    Through the leader's socket when one runs (as the user the kernel names), else
    the owning account leads for the moment, as `--apply` does."""
    if getattr(args, "readonly", False):
        raise Refused("--readonly: this console changes nothing")
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise InputError(
            ["submit: give the command after --, e.g. skyops submit -- python train.py"]
        )
    if args.array is not None and not 1 <= args.array <= 10_000:
        raise InputError([f"--array: must be from 1 to 10000 (got {args.array})"])
    t = _target(args)
    who = _ask(t, "query", "whoami")
    user = args.as_user or (t.user if who is NO_LEADER else who["user"])
    fields = {"mode": args.mode, "gpus": args.gpus, "gpu_type": args.gpu_type,
              "hours": args.hours, "bid": args.bid, "reservation": args.reservation}  # fmt: skip
    data = {k: v for k, v in fields.items() if v is not None}
    # Without --name the leader names the job after its program and id (docs/headless.md).
    name = args.name or "job"
    try:
        spec = JobSpec.model_validate({**data, "name": name, "user": user, "argv": argv})
    except ValidationError as e:
        raise InputError(flag_messages("skyops submit", e)) from None
    payload = {"spec": spec.model_dump(mode="json", exclude_none=True), **_as(args)}
    if args.name is None:
        payload["auto_name"] = True
    if args.array is not None:
        payload["count"] = args.array
    if who is NO_LEADER:
        result = asyncio.run(_submit_here(t, payload))
    else:
        result = _ask(t, "command", "submit", payload)
    done = result["jobs"] if args.array is not None else [result]
    if args.json:
        _emit_json({"status": "submitted", "jobs": done})
    else:
        for d in done:
            console.print(
                Text(f"Submitted {d['mode']} job {d['name']} (id {d['id']}): {d['state']}.")
            )
    return EXIT_OK


async def _submit_here(t: Target, payload: dict) -> dict:
    async with _session(t) as s:
        return await s.call("submit", payload)


COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "submit": cmd_submit,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "logs": cmd_logs,
    "cancel": cmd_cancel,
    "quote": cmd_quote,
}
