"""Generated and mutated plan files against a real state file: reading one never
crashes (it is a plan or an `InputError` naming the file), and applying one is all or
nothing: a refused or empty plan leaves the SQLite file byte for byte as it was, an
applied one did everything it said, and applying it again changes nothing."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from skyops_tui.clock import ManualClock
from skyops_tui.control import commands
from skyops_tui.demo import DEMO_EPOCH
from skyops_tui.domain.config import demo_config
from skyops_tui.domain.errors import InputError
from skyops_tui.domain.money import to_micro
from skyops_tui.plan.schema import Plan, parse_plan_text
from skyops_tui.runtime import Runtime
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store.db import Store

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "plan.toml").read_text()
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BASE = """
[[reservations]]
name = "nightly"
user = "team"
gpu_type = "A100"
gpus = 4
start = 2026-11-26T02:00:00Z
hours = 4
repeat = "daily"
count = 3

[[jobs]]
name = "sweep"
mode = "flex"
gpus = 2
gpu_type = "H100"
bid = 1.0
command = ["python3", "train.py"]

[[jobs]]
name = "prod"
mode = "priority"
gpus = 4
gpu_type = "H100"
hours = 2
command = ["python3", "serve.py"]

[[jobs]]
name = "kims"
user = "kim"
mode = "flex"
bid = 0.9
command = ["x"]

[[jobs]]
name = "team-run"
user = "team"
mode = "commit"
reservation = "nightly"
gpus = 4
command = ["x"]
"""


# ----------------------------------------------------------------- TOML out
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml(doc: dict[str, list[dict]]) -> str:
    out = []
    for table, entries in doc.items():
        for entry in entries:
            out.append(f"[[{table}]]")
            out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in entry.items()]
            out.append("")
    return "\n".join(out)


# ------------------------------------------------------------- strategies
names = st.sampled_from(["sweep", "prod", "kims", "team-run", "nightly", "new-1", "new-2", "x y"])
users = st.sampled_from(["ops", "kim", "team", "lee", ""])
gpu_types = st.sampled_from(["H100", "A100", "L40S", "TPU"])
numbers = st.one_of(
    st.sampled_from([0.5, 0.75, 1.0, 1.2, 2.5, 3.0, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
)

jobs = st.fixed_dictionaries(
    {"name": names, "mode": st.sampled_from(["priority", "commit", "flex", "spot"])},
    optional={
        "user": users,
        "command": st.one_of(st.lists(st.text(max_size=6), max_size=3), st.text(max_size=6)),
        "gpus": st.integers(-1, 10),
        "nodes": st.integers(0, 3),
        "gpu_type": gpu_types,
        "hours": numbers,
        "hourly": st.booleans(),
        "auto_renew": st.booleans(),
        "renew_hours": numbers,
        "reservation": names,
        "bid": numbers,
        "max_retries": st.integers(-1, 5),
        "env": st.dictionaries(
            st.sampled_from(["A", "SKYOPS_X", "1B", "_ok"]), st.text(max_size=3), max_size=2
        ),
        "workdir": st.text(max_size=4),
        "runtime": numbers,
        "colour": st.integers(),
    },
)
starts = st.one_of(
    st.floats(min_value=DEMO_EPOCH - 86400, max_value=DEMO_EPOCH + 30 * 86400),
    st.datetimes(
        min_value=datetime(2026, 11, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    numbers,
    st.text(max_size=5),
)
reservations = st.fixed_dictionaries(
    {"name": names},
    optional={
        "user": users,
        "gpu_type": gpu_types,
        "gpus": st.integers(-1, 12),
        "start": starts,
        "hours": numbers,
        "repeat": st.sampled_from(["daily", "weekly", "hourly"]),
        "count": st.integers(0, 40),
    },
)
bids = st.fixed_dictionaries({"name": names}, optional={"bid": numbers, "price": numbers})
nodes = st.fixed_dictionaries(
    {"name": st.sampled_from(["h100-a", "a100-a", "z-1"])},
    optional={"gpu_type": gpu_types, "gpus": st.integers(0, 9), "fake_gpus": st.text(max_size=8)},
)


@st.composite
def good_jobs(draw: st.DrawFn) -> dict:
    """Jobs that pass validation, so the diff and the grid get to judge them."""
    mode = draw(st.sampled_from(["priority", "commit", "flex"]))
    d: dict[str, Any] = {
        "name": draw(
            st.sampled_from(["sweep", "prod", "kims", "team-run"] + [f"new-{i}" for i in range(8)])
        ),
        "mode": mode,
        "command": draw(st.sampled_from([["python3", "train.py"], ["python3", "serve.py"], ["x"]])),
    }
    if draw(st.booleans()):
        d["user"] = draw(st.sampled_from(["ops", "kim", "team"]))
    size = draw(st.sampled_from(["gpus", "nodes", "default"]))
    if size == "gpus":
        d["gpus"] = draw(st.integers(1, 9))
    elif size == "nodes" and mode != "commit":
        d["nodes"] = draw(st.integers(1, 3))
    if mode != "commit" and draw(st.booleans()):
        d["gpu_type"] = draw(st.sampled_from(["H100", "A100", "L40S"]))
    if mode == "priority":
        if draw(st.booleans()):
            d["hours"] = draw(st.sampled_from([0.5, 1, 2, 3, 10]))
        else:
            d["hourly"] = True
        if draw(st.booleans()):
            d["auto_renew"] = True
    elif mode == "commit":
        d["reservation"] = draw(st.sampled_from(["nightly", "new-res", "ghost"]))
    else:
        d["bid"] = draw(st.sampled_from([0.3, 0.5, 0.8, 1.0, 1.2, 1.6, 2.5, 3.0]))
        if draw(st.booleans()):
            d["max_retries"] = draw(st.integers(0, 3))
    return d


@st.composite
def good_reservations(draw: st.DrawFn) -> dict:
    d: dict[str, Any] = {
        "name": draw(st.sampled_from(["nightly", "new-res", "new-res-2", "new-res-3"])),
        "gpu_type": draw(st.sampled_from(["H100", "A100", "L40S"])),
        "gpus": draw(st.integers(1, 8)),
        "start": DEMO_EPOCH + 3600 * draw(st.integers(-2, 48)),
        "hours": draw(st.sampled_from([1, 2, 4, 6])),
    }
    if draw(st.booleans()):
        d["user"] = draw(st.sampled_from(["ops", "team"]))
    if draw(st.booleans()):
        d["repeat"] = "daily"
        d["count"] = draw(st.integers(1, 10))
    return d


good_bids = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["sweep", "prod", "kims", "ghost"]),
        "bid": st.sampled_from([0.2, 0.8, 1.0, 1.3, 2.0]),
    }
)
good_nodes = st.sampled_from(
    [
        {"name": "h100-a", "gpu_type": "H100", "gpus": 8},
        {"name": "h100-b", "fake_gpus": "8xH100-80GB"},
        {"name": "a100-a", "gpus": 8, "gpu_type": "A100"},
        {"name": "z-9", "gpu_type": "H100", "gpus": 8},
    ]
)


def plan_dicts(job: Any, res: Any, bid: Any, node: Any) -> Any:
    return st.fixed_dictionaries(
        {},
        optional={
            "jobs": st.lists(job, max_size=4, unique_by=lambda d: d["name"]),
            "reservations": st.lists(res, max_size=3, unique_by=lambda d: d["name"]),
            "bids": st.lists(bid, max_size=2, unique_by=lambda d: d["name"]),
            "nodes": st.lists(node, max_size=2, unique_by=lambda d: d["name"]),
        },
    )


# Plans that validate (the grid judges them) and plans with any value anywhere.
valid_plans = plan_dicts(good_jobs(), good_reservations(), good_bids, good_nodes)
wild_plans = plan_dicts(
    st.one_of(good_jobs(), jobs),
    st.one_of(good_reservations(), reservations),
    st.one_of(good_bids, bids),
    st.one_of(good_nodes, nodes),
)


# ------------------------------------------------------------------ world
def dump(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def world(tmp: Path) -> Runtime:
    cfg = demo_config(operator="ops")
    clock = ManualClock(DEMO_EPOCH)
    ex = SimExecutor(clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s)
    rt = Runtime(cfg, ex, clock=clock, store=Store(tmp / "state.db"), user="ops")
    doc = run(rt, parse_plan_text(BASE))
    assert doc["status"] == "applied", doc
    return rt


def run(rt: Runtime, plan: Plan, actor: str = "ops") -> dict:
    payload = {"plan": plan.payload(), "source": "plan.toml"}
    return commands.run(rt.engine, "apply_plan", payload, actor, rt.clock.now())


def read(text: str) -> Plan | None:
    try:
        return parse_plan_text(text, "plan.toml")
    except InputError as e:
        assert e.messages, "an InputError says what is wrong"
        assert all(m.startswith("plan.toml") for m in e.messages), e.messages
        return None


def check_all_or_nothing(text: str, actor: str = "ops") -> None:
    plan = read(text)
    if plan is None:
        event("invalid")
        return
    with tempfile.TemporaryDirectory() as tmp:
        rt = world(Path(tmp))
        try:
            before = dump(Path(tmp) / "state.db")
            doc = run(rt, plan, actor)
            after = dump(Path(tmp) / "state.db")
            event(doc["status"])
            assert doc["status"] in ("applied", "unchanged", "refused"), doc
            for i in doc["items"]:
                if i["action"] == "refuse":
                    event("refused: " + re.sub(r"[0-9$.,]+|'[^']*'", "N", i["reason"])[:50])
            if doc["status"] != "applied":
                assert after == before, f"a {doc['status']} plan changed the state file"
                if doc["status"] == "refused":
                    assert all(i["reason"] for i in doc["items"] if i["action"] == "refuse")
                return
            assert after != before
            g = rt.grid
            for item in doc["items"]:
                if item["action"] == "create" and item["kind"] == "reservation":
                    assert item["name"] in g.reservations
                if item["action"] == "create" and item["kind"] == "job":
                    assert g.job_by_ref(item["name"]).id == item["id"]
                for change in item["changes"] if item["action"] == "change" else []:
                    if change["field"] == "bid":
                        assert g.job_by_ref(item["name"]).bid == to_micro(change["to"])
            again = run(rt, plan, actor)
            assert again["status"] == "unchanged", again
            assert dump(Path(tmp) / "state.db") == after
        finally:
            rt.store.close()


# ------------------------------------------------------------------ tests
@settings(SETTINGS, max_examples=300)
@given(valid_plans, st.sampled_from(["ops", "ops", "ops", "kim", "lee"]))
@example(  # a window already begun is sold from now: applying the plan again is no change
    {"reservations": [{"name": "new-res", "gpu_type": "H100", "gpus": 1,
                       "start": 1795593600.0, "hours": 2}]},
    "ops",
)  # fmt: skip
def test_generated_plans_apply_all_or_nothing(doc: dict, actor: str) -> None:
    check_all_or_nothing(toml(doc), actor)


@SETTINGS
@given(wild_plans, st.sampled_from(["ops", "kim"]))
def test_wild_plans_never_crash_nor_half_apply(doc: dict, actor: str) -> None:
    check_all_or_nothing(toml(doc), actor)


MUTATIONS = [
    "gpus = -1",
    "gpus = 64",
    "bid = inf",
    "bid = 0.1",
    "bid = 2.4",
    'mode = "flex"',
    'mode = "priority"',
    "hours = 2",
    "hourly = true",
    "[[jobs]]",
    "[[bids]]",
    "[[reservations]]",
    'name = "sweep"',
    'name = "prod"',
    'name = "nightly"',
    'reservation = "nightly"',
    "count = 1000",
    "start = 1795600000",
    "[jobs.env]",
    "X = 1",
    '"""',
    "= =",
    "[",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from([EXAMPLE, BASE]))
    lines = base.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "swap", "char"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(MUTATIONS)))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif lines[i]:
            k = draw(st.integers(0, len(lines[i]) - 1))
            c = draw(st.sampled_from(list('0123456789"=[]{}.,#x -\\')))
            lines[i] = lines[i][:k] + c + lines[i][k + 1 :]
    return "\n".join(lines) + "\n"


@SETTINGS
@given(mutated())
def test_mutated_plan_files_apply_all_or_nothing(text: str) -> None:
    check_all_or_nothing(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_plan_or_an_input_error(text: str) -> None:
    read(text)
