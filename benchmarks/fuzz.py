"""Bad input at volume: at least 100,000 generated inputs through every reader of
outside input, counting how each was answered. A crash is any exception other than
the reader's own refusal (ProtocolError for the agent protocol, InputError for the
config, trace and plan readers), or a refusal that does not name where.

    python benchmarks/fuzz.py [--inputs 100000] [--seed 1]

Prints one JSON object: per reader, inputs, accepted, refused, crashes (must be 0),
and seconds. Exit status 1 on any crash. tests/unit/test_fuzz.py is the CI-sized run.
"""

from __future__ import annotations

import argparse
import json
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
from skyops_tui.domain.config import DEMO_CONFIG, parse_config  # noqa: E402
from skyops_tui.domain.errors import InputError  # noqa: E402
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
VALID_PLAN = """
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
"""
WEIRD = [None, True, -1, 0, 2**64, 1e308, -0.0, "", "x" * 300, [], {}, [1, "a"], {"a": {}}]


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
        if rng.random() < 0.5:
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


def trace_inputs(n: int, rng: random.Random):
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(1, 4)):
            line = rng.choice(VALID_TRACE)
            r = rng.random()
            if r < 0.4:
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
        if rng.random() < 0.5:
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


def run(name: str, inputs, call, refusal: type[Exception], names_where) -> dict:
    counts = {"inputs": 0, "accepted": 0, "refused": 0, "crashes": 0}
    examples: list[str] = []
    t0 = time.perf_counter()
    for x in inputs:
        counts["inputs"] += 1
        try:
            call(x)
            counts["accepted"] += 1
        except refusal as e:
            counts["refused"] += 1
            if not names_where(e):
                counts["crashes"] += 1
                examples.append(f"unclear refusal: {e!s:.200} for {x!r:.200}")
        except Exception:  # any other exception is a crash
            counts["crashes"] += 1
            if len(examples) < 5:
                examples.append(f"{traceback.format_exc(limit=3)} for {x!r:.200}")
    counts["seconds"] = round(time.perf_counter() - t0, 2)
    if examples:
        counts["examples"] = examples[:5]
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=100_000, help="in all, across the readers")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    share = max(args.inputs // 10, 1)
    results = {
        "protocol.decode": run(
            "protocol",
            protocol_inputs(4 * share, rng),
            protocol.decode,
            protocol.ProtocolError,
            lambda e: bool(e.code and e.message),
        ),
        "parse_config": run(
            "config",
            config_inputs(2 * share, rng),
            lambda d: parse_config(d, "cfg.toml"),
            InputError,
            lambda e: all(re.match(r"^cfg\.toml: [^:]+: \S", m) for m in e.messages),
        ),
        "parse_lines": run(
            "trace",
            trace_inputs(2 * share, rng),
            lambda lines: parse_lines(lines, "t.jsonl"),
            InputError,
            lambda e: all(re.match(r"^t\.jsonl:\d+: \S", m) for m in e.messages),
        ),
    }
    try:
        from skyops_tui.plan.schema import parse_plan_text
    except ImportError:
        results["load_plan"] = {"skipped": "skyops_tui.plan is not there yet"}
    else:
        results["load_plan"] = run(
            "plan",
            plan_inputs(args.inputs - 8 * share, rng),
            lambda text: parse_plan_text(text, "plan.toml"),
            InputError,
            lambda e: all(m.startswith("plan.toml") for m in e.messages),
        )
    readers = [r for r in results.values() if "inputs" in r]
    summary = {
        "inputs": sum(r["inputs"] for r in readers),
        "crashes": sum(r["crashes"] for r in readers),
        "seconds": round(sum(r["seconds"] for r in readers), 2),
        "seed": args.seed,
        "readers": results,
    }
    print(json.dumps(summary, indent=2))
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
