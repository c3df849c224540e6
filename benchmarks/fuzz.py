"""Bad input at volume: at least 100,000 generated inputs through every reader of
outside input, counting how each was answered. A crash is any exception other than
the reader's own refusal (ProtocolError for the agent protocol, InputError for the
config, trace and plan readers), a refusal that does not name where, one input that
takes longer than --hang-s to answer, or an accepted config or plan that holds what
the grid cannot use (inf, markup in a name, an empty command, a NUL byte...).

Readers get raw input, as it arrives: bytes for protocol lines, TOML text for the
config and plans, JSON-lines text for traces (and, for the config, parsed tables as
well). Besides random mutations, values that parsers choke on are planted in valid
input: nesting deeper than the stack, integers of thousands of digits, inf and nan,
NUL bytes, console markup and control characters, empty commands, huge node groups.
Whole path: each reader's parse and validation, in-process. Left out: what a refused
input would have led to downstream (nothing is applied) and the transports (SSH, the
socket) that carry the input.

    python benchmarks/fuzz.py [--inputs 100000] [--seed 1] [--hang-s 5]

Prints one JSON object: per reader, inputs, accepted, refused, crashes (must be 0),
seconds and the slowest input's seconds. Exit status 1 on any crash.
tests/domain/test_fuzz.py is the CI-sized run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "agent")):
    if p not in sys.path:
        sys.path.insert(0, p)

from skyops_agent import protocol  # noqa: E402
from skyops_tui.domain.config import DEMO_CONFIG, parse_config, parse_config_text  # noqa: E402
from skyops_tui.domain.errors import InputError  # noqa: E402
from skyops_tui.plan.schema import parse_plan_text  # noqa: E402
from skyops_tui.sim.trace import parse_lines  # noqa: E402

VALID_LINES = [
    protocol.encode(protocol.request(protocol.HELLO, 1, protocol=1)),
    protocol.encode(
        protocol.request(
            protocol.START, 2, job_id="j1-r1-p0", argv=["true"], mode="flex", gpus=[0, 1]
        )
    ),
    protocol.encode(protocol.request(protocol.STOP, 3, job_id="j1-r1-p0", reason="x")),
    protocol.encode(
        protocol.event(
            protocol.JOB_EXITED,
            job_id="j1-r1-p0",
            exit_code=0,
            signal=None,
            stop_reason=None,
            ended_at=1.0,
        )
    ),
    protocol.encode(protocol.ok(4, jobs=[])),
]
VALID_TRACE = [
    '{"name": "a", "submit": 0, "mode": "flex", "gpus": 1, "bid": 1.0, "runtime": 60}',
    '{"name": "r", "submit": 0, "kind": "reservation", "gpu_type": "H100", "gpus": 2, "hours": 1}',
    '{"name": "p", "submit": 5, "mode": "priority", "gpus": 2, "hours": 1}',
]
VALID_CONFIG = """
[cluster]
name = "demo"
currency = "$"
grace_s = 20
stop_grace_s = 5
tick_s = 1
heartbeat_timeout_s = 15
shared_checkpoint_path = "/shared/ckpt"

[pricing]
flex_floor = 0.3
warn_before_s = [600, 60]
retry_backoff_max_s = 3600

[[node_types]]
name = "H100"
rate = 2.50

[[nodes]]
name = "h100-a"
fake_gpus = "8xH100-80GB"
count = 2
local = true

[[nodes]]
name = "gpu-01"
host = "gpu-01.lab"
gpu_type = "H100"
gpus = 8

[accounts]
operators = ["ops"]
default_balance = 5000
credit_limit = 0

[[accounts.users]]
name = "alice"
balance = 100

[simulation]
initial_balance = 1000
stop_delay_s = 5
"""
VALID_PLAN = """
[[nodes]]
name = "h100-a"
fake_gpus = "8xH100-80GB"
count = 2

[[reservations]]
name = "nightly"
gpu_type = "H100"
gpus = 2
start = 2030-01-01T02:00:00
hours = 4

[[jobs]]
name = "train"
mode = "flex"
gpus = 1
bid = 1.0
command = ["python", "train.py"]
workdir = "/data"

[jobs.env]
SEED = "1"
"""
WEIRD = [None, True, -1, 0, 2**64, 1e308, -0.0, "", "x" * 300, [], {}, [1, "a"], {"a": {}}]


def _deep(rng: random.Random, open_: str, close: str, inner: str = "") -> str:
    depth = rng.choice([64, 1_000, 100_000])
    return open_ * depth + inner + close * depth


def hostile_toml(rng: random.Random) -> str:
    """A TOML value some reader of TOML text has choked on."""
    return rng.choice(
        [
            lambda: _deep(rng, "[", "]"),
            lambda: _deep(rng, "{a = ", "}", "1"),
            lambda: rng.choice(["", "-"]) + "9" * rng.choice([4300, 4301, 5000]),
            lambda: rng.choice(["inf", "-inf", "nan", "+nan", "1e300", "-1e300", "1e-300"]),
            lambda: rng.choice(['"a\\u0000b"', '"\\u0000"', '["a\\u0000"]', '["", "x"]']),
            lambda: rng.choice(['"[bold]x"', '"[/x]"', '"\\u001b[2J"', '"\\u202e$"', '"\\\\"']),
            lambda: rng.choice(["[]", "{}", '""', "4000", "4097", "100000", "-1", "0"]),
        ]
    )()


def hostile_json(rng: random.Random) -> str:
    """A JSON value some reader of JSON lines has choked on."""
    return rng.choice(
        [
            lambda: _deep(rng, "[", "]"),
            lambda: _deep(rng, '{"a": ', "}", "1"),
            lambda: rng.choice(["", "-"]) + "9" * rng.choice([4300, 4301, 5000]),
            lambda: rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "1e300", "-0"]),
            lambda: rng.choice(['"a\\u0000b"', '["a\\u0000"]', '["", "x"]', '{"A": "\\u0000"}']),
            lambda: rng.choice(['"[bold]x"', '"[/x]"', '"\\u001b[2J"', '"\\ud800"']),
            lambda: rng.choice(["[]", "{}", '""', "4000", "-1", "0", "null"]),
        ]
    )()


def plant_toml(text: str, rng: random.Random) -> str:
    """Valid TOML text with one `key = value` line's value replaced by a hostile one."""
    lines = text.splitlines()
    keyed = [i for i, line in enumerate(lines) if "=" in line]
    i = rng.choice(keyed)
    key = lines[i].split("=")[0].strip()
    lines[i] = f"{key} = {hostile_toml(rng)}"
    return "\n".join(lines)


PLACE = "\x01place\x01"


def plant_json(line: str | bytes, rng: random.Random) -> str:
    """A valid JSON object line with one field's value (or a new field) hostile."""
    obj = json.loads(line)
    target = obj
    if isinstance(obj.get("argv"), list) and rng.random() < 0.3:
        target = {}
        obj["env"] = target
    key = rng.choice(list(obj) + ["zz"]) if target is obj else "A"
    target[key] = PLACE
    return json.dumps(obj).replace(json.dumps(PLACE), hostile_json(rng))


def weird(rng: random.Random):
    return rng.choice(WEIRD + [rng.random() * 10 ** rng.randint(-5, 12), rng.randint(-9, 99)])


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.6 and b:
            del b[rng.randrange(len(b)) :]
        elif op < 0.8:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.choice([b"{", b"}", b"[", b'"', b"\\u", b"\xff", b"nul", b",", b"1e999"])
        elif b:
            i, j = sorted(rng.randrange(len(b)) for _ in range(2))
            b[i:j] = b[i:j] * 2
    return bytes(b)


def mutate_obj(obj, rng: random.Random):
    """Replace, drop or add one field somewhere in a JSON-like value."""
    if isinstance(obj, dict) and obj and rng.random() < 0.8:
        obj = dict(obj)
        key = rng.choice(list(obj))
        r = rng.random()
        if r < 0.3:
            del obj[key]
        elif r < 0.5:
            obj[rng.choice(["zz", key + "_", "", "id", "type", "v"])] = weird(rng)
        elif r < 0.8:
            obj[key] = weird(rng)
        else:
            obj[key] = mutate_obj(obj[key], rng)
        return obj
    if isinstance(obj, list) and obj:
        obj = list(obj)
        obj[rng.randrange(len(obj))] = mutate_obj(obj[rng.randrange(len(obj))], rng)
        return obj
    return weird(rng)


def protocol_inputs(n: int, rng: random.Random):
    for _ in range(n):
        base = rng.choice(VALID_LINES)
        r = rng.random()
        if r < 0.3:
            yield plant_json(base, rng).encode("utf-8", "surrogatepass")
        elif r < 0.6:
            yield mutate_bytes(base, rng)
        else:
            obj = json.loads(base)
            for _ in range(rng.randint(1, 3)):
                obj = mutate_obj(obj, rng)
            try:
                yield json.dumps(obj)
            except ValueError:
                yield base


def config_inputs(n: int, rng: random.Random):
    base = json.loads(json.dumps(DEMO_CONFIG))
    base["cluster"] = {**base["cluster"], "heartbeat_timeout_s": 15, "tick_s": 1}
    base["pricing"] = {"flex_floor": 0.3, "warn_before_s": [600, 60], "tiers": []}
    for _ in range(n):
        obj = base
        for _ in range(rng.randint(1, 3)):
            obj = mutate_obj(obj, rng)
        yield obj


def config_text_inputs(n: int, rng: random.Random):
    for _ in range(n):
        if rng.random() < 0.7:
            yield plant_toml(VALID_CONFIG, rng)
        else:
            yield mutate_bytes(VALID_CONFIG.encode(), rng).decode("utf-8", "replace")


def trace_inputs(n: int, rng: random.Random):
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(1, 4)):
            line = rng.choice(VALID_TRACE)
            r = rng.random()
            if r < 0.3:
                line = plant_json(line, rng)
            elif r < 0.5:
                line = mutate_bytes(line.encode(), rng).decode("utf-8", "replace")
            elif r < 0.9:
                try:
                    line = json.dumps(mutate_obj(json.loads(line), rng))
                except ValueError:
                    pass
            lines.append(line)
        yield lines


def plan_inputs(n: int, rng: random.Random):
    for _ in range(n):
        text = VALID_PLAN
        r = rng.random()
        if r < 0.3:
            text = plant_toml(text, rng)
        elif r < 0.6:
            text = mutate_bytes(text.encode(), rng).decode("utf-8", "replace")
        else:
            lines = text.splitlines()
            i = rng.randrange(len(lines))
            key = lines[i].split("=")[0].strip() or "name"
            value = rng.choice(
                ['""', "-1", "1e400", "nan", "inf", "[]", "{}", '"x"', "true", "0", '["a", 1]']
            )
            lines[i] = f"{key} = {value}" if rng.random() < 0.7 else f"bogus_{key} = 1"
            text = "\n".join(lines)
        yield text


INT64 = 2**63 - 1


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def unsound_config(cfg) -> str | None:
    """What an accepted config must not hold: what the grid cannot use or show."""
    for v in _leaves(cfg.model_dump()):
        if isinstance(v, float) and not math.isfinite(v):
            return f"a non-finite number {v}"
    for text in (cfg.cluster.name, cfg.cluster.currency):
        if any(c in "[]" or not c.isprintable() for c in text):
            return f"markup or control characters in {text!r}"
    if any(cfg.rate(t.name) * 64 * 24 * 366 > INT64 for t in cfg.node_types):
        return "a rate whose year on a node overflows SQLite's INTEGER"
    return None


def unsound_plan(plan) -> str | None:
    """What an accepted plan must not hold: what would fail when the job starts."""
    for job in plan.jobs:
        if "command" in job.model_fields_set and not job.argv:
            return f"job {job.name}: an empty command"
        texts = [*job.argv, *job.env, *job.env.values(), job.workdir or ""]
        if any("\0" in t for t in texts):
            return f"job {job.name}: a NUL byte"
    if any(n.count > 4096 for n in plan.nodes):
        return "a node group over 4096"
    return None


def run(
    name: str,
    inputs,
    call,
    refusal: type[Exception],
    names_where,
    hang_s: float = 5.0,
    unsound=lambda result: None,
) -> dict:
    counts = {"inputs": 0, "accepted": 0, "refused": 0, "crashes": 0}
    examples: list[str] = []
    slowest = 0.0
    t0 = time.perf_counter()
    for x in inputs:
        counts["inputs"] += 1
        t = time.perf_counter()
        try:
            result = call(x)
            counts["accepted"] += 1
            why = unsound(result)
            if why:
                counts["crashes"] += 1
                examples.append(f"accepted {why}: {x!r:.200}")
        except refusal as e:
            counts["refused"] += 1
            if not names_where(e):
                counts["crashes"] += 1
                examples.append(f"unclear refusal: {e!s:.200} for {x!r:.200}")
        except Exception:  # any other exception is a crash
            counts["crashes"] += 1
            if len(examples) < 5:
                examples.append(f"{traceback.format_exc(limit=3)} for {x!r:.200}")
        took = time.perf_counter() - t
        slowest = max(slowest, took)
        if took > hang_s:
            counts["crashes"] += 1
            examples.append(f"took {took:.1f} s (a hang) for {x!r:.200}")
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    counts["slowest_s"] = round(slowest, 3)
    if examples:
        counts["examples"] = examples[:5]
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=100_000, help="in all, across the readers")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hang-s", type=float, default=5.0, help="one input slower than this: a hang")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    share = max(args.inputs // 10, 1)
    hang = args.hang_s
    in_config = lambda e: all(  # noqa: E731
        re.match(r"^cfg\.toml(:\d+)?: [^:]+: \S", m) for m in e.messages
    )
    results = {
        "protocol.decode": run(
            "protocol",
            protocol_inputs(3 * share, rng),
            protocol.decode,
            protocol.ProtocolError,
            lambda e: bool(e.code and e.message),
            hang,
        ),
        "parse_config": run(
            "config",
            config_inputs(share, rng),
            lambda d: parse_config(d, "cfg.toml"),
            InputError,
            in_config,
            hang,
            unsound_config,
        ),
        "parse_config_text": run(
            "config text",
            config_text_inputs(2 * share, rng),
            lambda text: parse_config_text(text, "cfg.toml"),
            InputError,
            in_config,
            hang,
            unsound_config,
        ),
        "parse_lines": run(
            "trace",
            trace_inputs(2 * share, rng),
            lambda lines: parse_lines(lines, "t.jsonl"),
            InputError,
            lambda e: all(re.match(r"^t\.jsonl:\d+: \S", m) for m in e.messages),
            hang,
        ),
        "parse_plan_text": run(
            "plan",
            plan_inputs(args.inputs - 8 * share, rng),
            lambda text: parse_plan_text(text, "plan.toml"),
            InputError,
            lambda e: all(re.match(r"^plan\.toml(:\d+)?: \S", m) for m in e.messages),
            hang,
            unsound_plan,
        ),
    }
    summary = {
        "inputs": sum(r["inputs"] for r in results.values()),
        "crashes": sum(r["crashes"] for r in results.values()),
        "seconds": round(sum(r["seconds"] for r in results.values()), 2),
        "slowest_s": max(r["slowest_s"] for r in results.values()),
        "seed": args.seed,
        "readers": results,
    }
    print(json.dumps(summary, indent=2))
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
