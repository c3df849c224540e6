"""The plan file of `skyops --apply`: reservations, jobs, bids and nodes, each by name.

A plan reuses the domain's request models (`JobSpec`, `ReservationSpec`, `NodeConfig`),
so a job means the same thing in a plan, the launch form and a trace. What differs is
only what a file needs: `user` defaults to whoever applies the plan, a job's argv is
spelled `command`, and values a file can hold but a grid cannot use (an infinite bid,
a window in the year 9999) are refused here with the key that holds them.

`load_plan` reports every error at once, each as `FILE:LINE: key.path: reason`. TOML
parsers give no line numbers for values, so `PlanLines` finds them by reading the text
the way a person would: the n-th `[[jobs]]` header, then the `key =` line under it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..domain.config import MAX_RATE, NodeConfig
from ..domain.errors import InputError, key_path, loads_toml, validation_messages
from ..domain.specs import NAME, JobSpec, ReservationSpec

TABLES = ("nodes", "reservations", "jobs", "bids")
# Windows before 1970 or after 3000 are typos, and dates beyond what `datetime` prints.
EPOCH_MAX = 32_503_680_000.0  # 3000-01-01 00:00 UTC


class PlanJob(JobSpec):
    """A job as a plan names it. `command` is the argv (a list, never a shell string)."""

    # Optional where JobSpec requires it: a plan may leave the user out. The grid only
    # gets the JobSpec that spec() returns, with the actor filled in.
    user: str | None = Field(default=None, min_length=1, max_length=64)  # type: ignore[assignment]
    argv: tuple[str, ...] = Field(default=(), alias="command")
    bid: float | None = Field(
        default=None, gt=0, le=MAX_RATE, allow_inf_nan=False, description="currency per GPU-hour"
    )

    @field_validator("argv", mode="before")
    @classmethod
    def _command(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError('give the command as a list of arguments, e.g. ["python", "train.py"]')
        if isinstance(v, list | tuple) and not v:
            raise ValueError(
                "an empty command runs nothing: give the program and its arguments, e.g. "
                '["python", "train.py"]'
            )
        return v

    @field_validator("runtime", "checkpoint_every")
    @classmethod
    def _simulator_only(cls, v: float | None, info: Any) -> float | None:
        if v is not None:
            raise ValueError(f"{info.field_name} is for traces (skyops simulate), not plans")
        return v

    def spec(self, actor: str) -> JobSpec:
        data = self.model_dump(exclude={"runtime", "checkpoint_every"})
        data["user"] = self.user or actor
        return JobSpec.model_validate(data)


class PlanReservation(ReservationSpec):
    """A Commit reservation as a plan names it: `start` is a TOML date-time (UTC when it
    has no offset) or epoch seconds."""

    # Optional where ReservationSpec requires it; spec() fills in the actor.
    user: str | None = Field(default=None, min_length=1, max_length=64)  # type: ignore[assignment]

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        return window_start(v)

    def spec(self, actor: str) -> ReservationSpec:
        data = self.model_dump()
        data["user"] = self.user or actor
        return ReservationSpec.model_validate(data)


def window_start(v: Any) -> Any:
    """A window start from a file: a date-time (UTC unless it says), a date, or epoch
    seconds, between 1970 and the year 3000."""
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("not a date-time like 2026-12-01T02:00:00Z") from None
    if isinstance(v, datetime):
        moment = v if v.tzinfo else v.replace(tzinfo=UTC)
    elif isinstance(v, date):
        moment = datetime(v.year, v.month, v.day, tzinfo=UTC)
    elif isinstance(v, int | float) and not isinstance(v, bool):
        # Compared before any float(): an integer past float's range overflows it.
        if isinstance(v, float) and not math.isfinite(v) or not 0 <= v < EPOCH_MAX:
            raise ValueError("epoch seconds must be between 1970 and the year 3000")
        return float(v)
    else:
        raise ValueError("give a date-time like 2026-12-01T02:00:00Z, or epoch seconds")
    try:
        epoch = moment.timestamp()
    except (OverflowError, ValueError, OSError):
        epoch = -1.0
    if not 0 <= epoch < EPOCH_MAX:
        raise ValueError("the window must start between 1970 and the year 3000")
    return moment


class PlanBid(BaseModel):
    """A new bid for a Flex job that exists already (or is created by this plan)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="the Flex job's name")
    bid: float = Field(gt=0, le=MAX_RATE, allow_inf_nan=False, description="currency per GPU-hour")


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodes: tuple[NodeConfig, ...] = ()
    reservations: tuple[PlanReservation, ...] = ()
    jobs: tuple[PlanJob, ...] = ()
    bids: tuple[PlanBid, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.nodes or self.reservations or self.jobs or self.bids)

    def payload(self) -> dict:
        """The plan as JSON-able data, as a command to the scheduler carries it."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def plan_from_payload(payload: dict, source: str = "plan") -> Plan:
    """The inverse of `Plan.payload` (validated again: the payload crossed a process)."""
    return parse_plan(payload, source)


@dataclass
class PlanLines:
    """Where a key path sits in a TOML text, found by reading the lines (best effort)."""

    lines: list[str]
    headers: list[tuple[int, str, bool]] = field(default_factory=list)  # (line, name, array)
    _starts: dict[str, list[int]] | None = None  # table -> indexes into headers

    HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")

    @classmethod
    def of(cls, text: str) -> PlanLines:
        out = cls(text.splitlines())
        in_multiline = False
        for n, line in enumerate(out.lines, 1):
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_multiline = not in_multiline
            if in_multiline:
                continue
            m = cls.HEADER.match(line)
            if m:
                name = re.sub(r"\s*\.\s*", ".", m.group(2)).replace('"', "")
                out.headers.append((n, name, m.group(1) == "[["))
        return out

    def _key_line(self, key: str, start: int, end: int) -> int | None:
        pat = re.compile(
            rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*[=.]"
        )
        for n in range(start, min(end, len(self.lines) + 1)):
            if pat.match(self.lines[n - 1]):
                return n
        return None

    def _entry(self, table: str, index: int) -> tuple[int, int] | None:
        """Lines of the index-th `[[table]]`: its header and the first header after its
        own sub-tables (`[table.env]`)."""
        if self._starts is None:
            self._starts = {}
            for i, (_, name, array) in enumerate(self.headers):
                if array:
                    self._starts.setdefault(name, []).append(i)
        starts = self._starts.get(table, [])
        if index >= len(starts):
            return None
        k = starts[index]
        end = len(self.lines) + 1
        for n, name, _ in self.headers[k + 1 :]:
            if not name.startswith(table + "."):
                end = n
                break
        return self.headers[k][0], end

    def find(self, loc: tuple[int | str, ...]) -> int | None:
        if not loc:
            return None
        top = str(loc[0])
        if len(loc) >= 2 and isinstance(loc[1], int):
            entry = self._entry(top, loc[1])
            if entry is None:
                return self.find((top,))
            start, end = entry
            if len(loc) >= 3 and isinstance(loc[2], str):
                key = loc[2]
                line = self._key_line(key, start + 1, end)
                if line is not None:
                    return line
                for n, name, _ in self.headers:
                    if start < n < end and name == f"{top}.{key}":
                        return n
            return start
        for n, name, _ in self.headers:
            if name == top:
                return n
        return self._key_line(top, 1, self.headers[0][0] if self.headers else len(self.lines) + 1)

    def entry_line(self, table: str, index: int) -> int | None:
        entry = self._entry(table, index)
        if entry is None:
            return None
        return self._key_line("name", entry[0] + 1, entry[1]) or entry[0]


@dataclass
class PlanFile:
    """A validated plan with where it came from, for messages that point into it."""

    plan: Plan
    source: str
    lines: PlanLines | None = None
    _index: dict[tuple[str, str], int] | None = None

    def line(self, table: str, index: int) -> int | None:
        return self.lines.entry_line(table, index) if self.lines else None

    def index_of(self, kind: str, name: str) -> int | None:
        """The entry of the plan a diff item came from (`kind` as `Item.kind`): for a
        node, the `[[nodes]]` group it expands from. Built once, so a report over a
        group of thousands of nodes stays linear."""
        if self._index is None:
            index: dict[tuple[str, str], int] = {}
            for i, n in enumerate(self.plan.nodes):
                for e in n.expand():
                    index.setdefault(("node", e.name), i)
            groups: tuple[tuple[str, tuple[PlanReservation | PlanJob | PlanBid, ...]], ...] = (
                ("reservation", self.plan.reservations),
                ("job", self.plan.jobs),
                ("bid", self.plan.bids),
            )
            for kind_, rows in groups:
                for i, r in enumerate(rows):
                    index.setdefault((kind_, r.name), i)
            self._index = index
        return self._index.get((kind, name))

    def where(self, table: str, index: int) -> str:
        n = self.line(table, index)
        return f"{self.source}:{n}" if n else self.source


def load_plan(path: str | Path) -> PlanFile:
    """Read and validate a plan file; raise `InputError` with every problem in it."""
    path = Path(path).expanduser()
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise InputError([f"{source}: is a directory, not a plan file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError([f"{source}: cannot read: {e}"]) from None
    return PlanFile(parse_plan_text(text, source), source, PlanLines.of(text))


def parse_plan_text(text: str, source: str = "plan.toml") -> Plan:
    return parse_plan(loads_toml(text, source), source, PlanLines.of(text))


def parse_plan(data: Any, source: str = "plan", lines: PlanLines | None = None) -> Plan:
    errors: list[tuple[tuple[int | str, ...], str]] = []
    plan: Plan | None = None
    if not isinstance(data, dict):
        raise InputError([f"{source}: a plan is a table of [[jobs]], [[reservations]], ..."])
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        messages = validation_messages(source, e)
        for err, msg in zip(e.errors(), messages, strict=True):
            loc = _loc(err["loc"])
            reason = msg[len(source) + 2 + len(key_path(loc)) + 2 :]
            if len(loc) in (1, 2) and loc[0] in TABLES:
                got = f" (got {err.get('input')!r})"
                if err["type"] == "tuple_type":
                    reason = f"should be a list of tables, written [[{loc[0]}]]{got}"
                elif err["type"] in ("model_type", "dict_type"):
                    reason = f"should be a table, written [[{loc[0]}]]{got}"
            errors.append((loc, reason))
    errors += _cross_checks(data)
    if errors:
        errors.sort(key=lambda e: _order(e[0], lines))
        out = []
        for loc, reason in errors:
            n = lines.find(loc) if lines else None
            where = f"{source}:{n}" if n else source
            out.append(f"{where}: {key_path(loc)}: {reason}")
        raise InputError(out)
    assert plan is not None
    return plan


def _loc(loc: tuple) -> tuple[int | str, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _order(loc: tuple[int | str, ...], lines: PlanLines | None) -> tuple:
    n = lines.find(loc) if lines else None
    return (n if n is not None else 1 << 30, tuple(str(p) for p in loc))


def _names(data: dict, table: str) -> list[tuple[int, str]]:
    items = data.get(table)
    if not isinstance(items, list):
        return []
    return [
        (i, item["name"])
        for i, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _cross_checks(data: dict) -> list[tuple[tuple[int | str, ...], str]]:
    """What no single entry shows: a name used twice, a bid for a job the plan also
    describes (its bid belongs there)."""
    out: list[tuple[tuple[int | str, ...], str]] = []
    for table in TABLES:
        names = _names(data, table)
        seen: dict[str, int] = {}
        counts = Counter(n for _, n in names)
        for i, name in names:
            if counts[name] > 1 and name in seen:
                out.append(
                    ((table, i, "name"), f"{name!r} is used twice ({table}[{seen[name]}] too)")
                )
            seen.setdefault(name, i)
    jobs: dict[str, int] = {}
    for i, name in _names(data, "jobs"):
        jobs.setdefault(name, i)
    for i, name in _names(data, "bids"):
        if name in jobs:
            out.append(
                (
                    (("bids", i, "name")),
                    f"job {name!r} is in this plan's [[jobs]] (jobs[{jobs[name]}]): "
                    "set its bid there",
                )
            )
    return out
