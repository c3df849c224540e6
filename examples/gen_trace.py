"""Write workload traces for `skyops simulate` (JSON Lines, PRODUCT.md §4).

Two uses, both deterministic (same arguments, same bytes):

    python examples/gen_trace.py --jobs 100000 --out /tmp/big.jsonl
    python examples/gen_trace.py --stories examples/

The first writes a mixed trace of N jobs in all three modes, with reservations (some
cancelled early), job cancels and bid changes, sized from the config's capacity so the
grid is contended but not hopeless: offered load is `--load` of the GPU-hours the grid
has, and Priority bursts push it above that for a while each day. The second rewrites
the four story traces that examples/README.md describes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from collections.abc import Iterable
from pathlib import Path

from skyops_tui.domain.config import Config, load_config

HERE = Path(__file__).resolve().parent
DAY = 86400.0
HOUR = 3600.0

Line = dict


def _bid(rng: random.Random, floor: float, rate: float) -> float:
    """A bid between the floor and the standard rate, to the cent, skewed low."""
    return round(floor + (rate - floor) * rng.random() ** 1.5, 2)


# --------------------------------------------------------------------- mixed trace


class Market:
    def __init__(self, name: str, rate: float, floor: float, gpus: int, node_size: int) -> None:
        self.name, self.rate, self.floor = name, rate, floor
        self.gpus, self.node_size = gpus, node_size


def markets(cfg: Config) -> list[Market]:
    out = []
    for t in cfg.node_types:
        nodes = [n for n in cfg.all_nodes() if n.resolved_type == t.name]
        if nodes:
            floor = t.rate * cfg.pricing.flex_floor
            out.append(
                Market(
                    t.name,
                    t.rate,
                    math.ceil(floor * 100) / 100,
                    sum(n.resolved_gpus for n in nodes),
                    min(n.resolved_gpus for n in nodes),
                )
            )
    return out


# Job shapes: (weight, gpus); runtimes in hours as (weight, low, high).
FLEX_GPUS = [(40, 1), (25, 2), (20, 4), (15, 8)]
FLEX_HOURS = [(50, 0.1, 1.0), (35, 1.0, 4.0), (15, 4.0, 12.0)]
PRIORITY_GPUS = [(30, 1), (30, 2), (25, 4), (15, 8)]
PRIORITY_HOURS = [1, 2, 4, 8]

SHARE = {"priority": 0.25, "commit": 0.12, "flex": 0.63}


def _pick(rng: random.Random, table: list[tuple]) -> tuple:
    total = sum(w for w, *_ in table)
    x = rng.random() * total
    for row in table:
        x -= row[0]
        if x < 0:
            return row[1:]
    return table[-1][1:]


def _mean(table: list[tuple], f) -> float:
    total = sum(w for w, *_ in table)
    return sum(w * f(*rest) for w, *rest in table) / total


def _flex_gpu_hours() -> float:
    return _mean(FLEX_GPUS, lambda g: g) * _mean(FLEX_HOURS, lambda lo, hi: (lo + hi) / 2)


def _priority_gpu_hours() -> float:
    # Runtime is 30 %..110 % of the booking, capped at it: about 0.68 of the hours held.
    return _mean(PRIORITY_GPUS, lambda g: g) * sum(PRIORITY_HOURS) / len(PRIORITY_HOURS) * 0.68


def mixed(cfg: Config, jobs: int, seed: int = 1, load: float = 0.9) -> list[Line]:
    """`jobs` job lines in all three modes plus reservation, cancel and bid lines."""
    rng = random.Random(seed)
    ms = markets(cfg)
    if not ms:
        raise SystemExit("the config has no nodes")
    capacity = sum(m.gpus for m in ms)
    weights = [m.gpus for m in ms]  # demand per market follows its size
    users = [f"user{i:02d}" for i in range(1, 25)]
    teams = [f"team-{c}" for c in "abcdefgh"]

    # Arrival rates per second that offer `load` x capacity in GPU-hours, by share.
    gpu_h_per_s = load * capacity / HOUR
    lam_flex = SHARE["flex"] * gpu_h_per_s / _flex_gpu_hours()
    lam_prio = SHARE["priority"] * gpu_h_per_s / _priority_gpu_hours()
    # Commit: per market, reservation slots of 8 GPU-hours a day each (daily windows of
    # 4 h on 2..8 GPUs), enough to cover SHARE["commit"] of the market's capacity.
    slots: list[tuple[Market, int, float]] = []
    for m in ms:
        want = SHARE["commit"] * load * m.gpus * 24  # GPU-hours a day
        gpus = min(8, m.node_size * 2, max(2, m.gpus // 8))
        n = max(1, round(want / (gpus * 4)))
        for k in range(n):
            slots.append((m, gpus, (2 + 3 * k) % 24 * HOUR))
    lam_commit = len(slots) * 1.2 / DAY
    span = jobs / (lam_flex + lam_prio + lam_commit) * 1.1

    out: list[Line] = []
    n_job = 0

    def job_name() -> str:
        nonlocal n_job
        n_job += 1
        return f"j{n_job:07d}"

    # Flex
    t = 0.0
    while True:
        t += rng.expovariate(lam_flex)
        if t > span:
            break
        typed = rng.random() < 0.8
        m = rng.choices(ms, weights)[0]
        (gpus,) = _pick(rng, FLEX_GPUS)
        if typed:
            gpus = min(gpus, m.node_size)
            floor, rate = m.floor, m.rate
        else:
            gpus = min(gpus, max(x.node_size for x in ms))
            floor, rate = max(x.floor for x in ms), min(x.rate for x in ms)
        lo, hi = _pick(rng, FLEX_HOURS)
        runtime = round(rng.uniform(lo, hi) * HOUR)
        name = job_name()
        line = {
            "name": name,
            "user": rng.choice(users),
            "submit": round(t, 1),
            "mode": "flex",
            "gpus": gpus,
            "bid": _bid(rng, floor, rate),
            "runtime": runtime,
            "checkpoint_every": rng.choice([300, 600, 900, 1800]),
        }
        if typed:
            line["gpu_type"] = m.name
        if rng.random() < 0.05:
            line["max_retries"] = 2
        out.append(line)
        if rng.random() < 0.06:  # re-bid once or twice while it lives (or after: refused)
            at = t
            for _ in range(rng.choice([1, 1, 2])):
                at += rng.uniform(60, 2 * HOUR)
                out.append(
                    {
                        "name": name,
                        "user": line["user"],
                        "submit": round(at, 1),
                        "kind": "bid",
                        "bid": _bid(rng, floor, rate),
                    }
                )
        if rng.random() < 0.02:
            out.append(_cancel(name, line["user"], t + rng.uniform(0, runtime)))

    # Priority: a steady stream, denser in working hours (about 2x at 09:00-18:00).
    t = 0.0
    while True:
        t += rng.expovariate(lam_prio * 1.5)
        if t > span:
            break
        if not 9 * HOUR <= t % DAY < 18 * HOUR and rng.random() < 0.45:
            continue
        m = rng.choices(ms, weights)[0]
        (gpus,) = _pick(rng, PRIORITY_GPUS)
        hours = rng.choice(PRIORITY_HOURS)
        name = job_name()
        line = {
            "name": name,
            "user": rng.choice(users),
            "submit": round(t, 1),
            "mode": "priority",
            "gpu_type": m.name,
            "hours": hours,
            "runtime": round(hours * HOUR * min(rng.uniform(0.3, 1.1), 1.0)),
        }
        if gpus >= m.node_size and rng.random() < 0.3:
            line["nodes"] = 1
        else:
            line["gpus"] = min(gpus, m.node_size)
        if rng.random() < 0.03:
            line["runtime"] = round(line["runtime"] * 2.5)
            line["auto_renew"] = True
        out.append(line)
        if rng.random() < 0.02:
            out.append(_cancel(name, line["user"], t + rng.uniform(0, line["runtime"])))

    # Commit: each slot is a string of reservations of 7..30 daily windows, booked up
    # to a day ahead; one in ten is cancelled early; the owner runs a job (sometimes two)
    # in each window.
    n_res = 0
    for m, gpus, at in slots:
        owner = rng.choice(teams)
        day = 0
        while day * DAY < span:
            n_res += 1
            rname = f"r{n_res:05d}"
            count = rng.randint(7, 30)
            start = day * DAY + at
            out.append(
                {
                    "name": rname,
                    "user": owner,
                    "submit": round(max(start - DAY + rng.uniform(0, 6 * HOUR), 0.0), 1),
                    "kind": "reservation",
                    "gpu_type": m.name,
                    "gpus": gpus,
                    "start": start,
                    "hours": 4,
                    "repeat": "daily",
                    "count": count,
                }
            )
            cancel_after = count
            if rng.random() < 0.1:
                cancel_after = rng.randint(1, count - 1)
                out.append(
                    _cancel(rname, owner, start + (cancel_after - 1) * DAY + rng.uniform(0, DAY))
                )
            for w in range(cancel_after):
                ws = start + w * DAY
                n = 2 if rng.random() < 0.2 else 1
                for _ in range(n):
                    g = gpus if n == 1 else gpus // 2
                    out.append(
                        {
                            "name": job_name(),
                            "user": owner,
                            "submit": round(ws + rng.uniform(0, 1800), 1),
                            "mode": "commit",
                            "reservation": rname,
                            "gpus": g,
                            # Most finish inside the 4 h window; some run into its end.
                            "runtime": round(rng.uniform(1.0, 4.5) * HOUR),
                        }
                    )
            day += count + rng.randint(0, 2)

    return _first_jobs(out, jobs)


def _cancel(name: str, user: str, at: float) -> Line:
    return {"name": name, "user": user, "submit": round(at, 1), "kind": "cancel"}


def _first_jobs(lines: list[Line], jobs: int) -> list[Line]:
    """Sorted by submit time, cut after the `jobs`-th job line."""
    lines.sort(key=lambda x: (x["submit"], x["name"], x.get("kind", "job")))
    n = 0
    for i, line in enumerate(lines):
        if line.get("kind", "job") == "job":
            n += 1
            if n == jobs:
                lines = lines[: i + 1]
                break
    # Reservations end with the trace: no windows that nobody submits a job into.
    end = lines[-1]["submit"] if lines else 0.0
    for line in lines:
        if line.get("kind") == "reservation" and line.get("repeat") == "daily":
            line["count"] = max(1, min(line["count"], int((end - line["start"]) // DAY) + 1))
    return lines


# -------------------------------------------------------------------------- stories


def contended_day(seed: int = 7) -> list[Line]:
    """A day on the example grid: Flex fills it from midnight; Priority bursts at 09:00,
    13:30 and 19:00 preempt the lowest bids, which resume when the bursts end."""
    rng = random.Random(seed)
    out: list[Line] = []
    types = [("H100", 0.75, 2.50, 8), ("A100", 0.48, 1.60, 8), ("L40S", 0.27, 0.90, 4)]
    n = 0
    t = 0.0
    while t < 20 * HOUR:
        t += rng.expovariate(1 / 300)
        name, floor, rate, size = rng.choices(types, weights=[6, 3, 1])[0]
        n += 1
        runtime = round(rng.uniform(0.5, 4) * HOUR)
        out.append(
            {
                "name": f"flex-{n:03d}",
                "user": rng.choice(["sweep", "batch", "render"]),
                "submit": round(t, 1),
                "mode": "flex",
                "gpu_type": name,
                "gpus": min(rng.choice([1, 2, 2, 4, 4, 8]), size),
                "bid": _bid(rng, floor, rate),
                "runtime": runtime,
                "checkpoint_every": rng.choice([300, 600, 900]),
            }
        )
    bursts = [
        # (at, user, count, gpu_type, gpus or whole nodes, hours, runtime)
        (9 * HOUR, "prod", 6, "H100", {"gpus": 8}, 3, 2.5 * HOUR),
        (9 * HOUR + 120, "prod", 2, "L40S", {"gpus": 4}, 2, 1.5 * HOUR),
        (13.5 * HOUR, "eval", 3, "A100", {"gpus": 8}, 2, 1.7 * HOUR),
        (13.5 * HOUR + 60, "eval", 4, "H100", {"gpus": 2}, 1, 0.9 * HOUR),
        (19 * HOUR, "release", 2, "H100", {"nodes": 2}, 4, 3 * HOUR),
        # A booking that runs out before its work is done: it expires.
        (19 * HOUR + 300, "release", 1, "A100", {"gpus": 4}, 1, 1.5 * HOUR),
    ]
    for at, user, count, gpu_type, shape, hours, runtime in bursts:
        for k in range(count):
            out.append(
                {
                    "name": f"{user}-{gpu_type.lower()}-{k + 1}",
                    "user": user,
                    "submit": at + k * 10,
                    "mode": "priority",
                    "gpu_type": gpu_type,
                    **shape,
                    "hours": hours,
                    "runtime": runtime,
                }
            )
    return sorted(out, key=lambda x: (x["submit"], x["name"]))


def nightly_commit(seed: int = 11) -> list[Line]:
    """The team books 8 x A100 daily 02:00-06:00 for 30 nights and runs its training job
    each night; Flex sweeps keep the A100s busy and borrow the reserved GPUs until the
    team's job arrives."""
    rng = random.Random(seed)
    out: list[Line] = [
        {
            "name": "nightly",
            "user": "team",
            "submit": 0,
            "kind": "reservation",
            "gpu_type": "A100",
            "gpus": 8,
            "start": 2 * HOUR,
            "hours": 4,
            "repeat": "daily",
            "count": 30,
        }
    ]
    for night in range(30):
        d = night * DAY
        # The data lands between 02:10 and 02:30; the run takes 3 h, longer on
        # nights 7 and 21 when it is still running at 06:00 and is stopped.
        runtime = 4.5 * HOUR if night + 1 in (7, 21) else rng.uniform(2.5, 3.2) * HOUR
        out.append(
            {
                "name": f"train-night-{night + 1:02d}",
                "user": "team",
                "submit": round(d + 2 * HOUR + rng.uniform(600, 1800), 1),
                "mode": "commit",
                "reservation": "nightly",
                "gpus": 8,
                "runtime": round(runtime),
            }
        )
        # A Flex sweep from 00:30: 10 x 4 A100 at one bid, 40 GPUs for 32.
        for k in range(10):
            out.append(
                {
                    "name": f"sweep-n{night + 1:02d}-{k + 1:02d}",
                    "user": "sweep",
                    "submit": d + 0.5 * HOUR + k,
                    "mode": "flex",
                    "gpu_type": "A100",
                    "gpus": 4,
                    "bid": 0.60,
                    "runtime": round(rng.uniform(3, 4.5) * HOUR),
                    "checkpoint_every": 600,
                }
            )
    return sorted(out, key=lambda x: (x["submit"], x["name"]))


def outbid_war() -> list[Line]:
    """Alice and Bob each want all four A100 nodes for a gang job and take turns
    outbidding each other; raises under the 5 % margin displace nobody."""

    def job(name: str, user: str, at: float, bid: float, hours: float) -> Line:
        return {
            "name": name,
            "user": user,
            "submit": at,
            "mode": "flex",
            "gpu_type": "A100",
            "nodes": 4,
            "bid": bid,
            "runtime": hours * HOUR,
            "checkpoint_every": 600,
        }

    def bid(name: str, user: str, at: float, value: float) -> Line:
        return {"name": name, "user": user, "submit": at, "kind": "bid", "bid": value}

    return [
        job("alice-train", "alice", 0, 0.60, 6),
        job("bob-train", "bob", 600, 0.70, 5),  # +17 %: displaces Alice
        bid("alice-train", "alice", 1800, 0.80),  # displaces Bob
        bid("bob-train", "bob", 3000, 0.82),  # +2.5 %: under min_outbid, nothing moves
        bid("bob-train", "bob", 3600, 0.90),  # displaces Alice
        bid("alice-train", "alice", 5400, 1.00),  # displaces Bob
        bid("bob-train", "bob", 7200, 1.20),  # displaces Alice
        bid("alice-train", "alice", 9000, 1.25),  # +4 %: nothing moves; Alice waits
        # A small job at the standard rate takes one node: Bob's gang pauses whole.
        {**job("carol-eval", "carol", 10800, 1.60, 1), "nodes": 1},
    ]


def early_exit(seed: int = 5) -> list[Line]:
    """A lab books 16 x H100 daily 10:00-16:00 for 14 days, runs a job each day, and
    cancels on day 5 at 12:00 while that day's job runs: it is refunded half the value
    of the unused future GPU-hours; the used part is never refunded."""
    rng = random.Random(seed)
    out: list[Line] = [
        {
            "name": "pilot",
            "user": "lab",
            "submit": 0,
            "kind": "reservation",
            "gpu_type": "H100",
            "gpus": 16,
            "start": 10 * HOUR,
            "hours": 6,
            "repeat": "daily",
            "count": 14,
        }
    ]
    for day in range(5):
        d = day * DAY
        for k, gpus in enumerate((8, 8)):
            out.append(
                {
                    "name": f"pilot-d{day + 1}-{k + 1}",
                    "user": "lab",
                    "submit": d + 10 * HOUR + 60 + k,
                    "mode": "commit",
                    "reservation": "pilot",
                    "gpus": gpus,
                    "runtime": round(rng.uniform(4, 5.5) * HOUR),
                }
            )
    out.append({"name": "pilot", "user": "lab", "submit": 4 * DAY + 12 * HOUR, "kind": "cancel"})
    # Background Flex on H100 all week: it borrows the GPUs the windows do not hold,
    # gives back what a window needs when it opens, and has them all after the cancel.
    for k in range(150):
        out.append(
            {
                "name": f"batch-{k + 1:03d}",
                "user": "batch",
                "submit": round(k * HOUR + rng.uniform(0, 600), 1),
                "mode": "flex",
                "gpu_type": "H100",
                "gpus": 8,
                "bid": _bid(rng, 0.75, 2.50),
                "runtime": round(rng.uniform(2, 8) * HOUR),
                "checkpoint_every": 900,
            }
        )
    return sorted(out, key=lambda x: (x["submit"], x["name"]))


STORIES = {
    "contended-day": contended_day,
    "nightly-commit": nightly_commit,
    "outbid-war": outbid_war,
    "early-exit": early_exit,
}


def write(lines: Iterable[Line], path: Path) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100_000, help="job lines (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load", type=float, default=0.9, help="offered GPU-hours / capacity")
    ap.add_argument("--config", default=str(HERE / "sim-config.toml"))
    ap.add_argument("--out", help="file to write (default: stdout)")
    ap.add_argument("--stories", metavar="DIR", help="write the four story traces into DIR")
    a = ap.parse_args(argv)
    if a.stories:
        for name, fn in STORIES.items():
            path = Path(a.stories) / f"{name}.jsonl"
            print(f"{path}: {write(fn(), path)} lines", file=sys.stderr)
        return 0
    lines = mixed(load_config(a.config), a.jobs, a.seed, a.load)
    if a.out:
        write(lines, Path(a.out))
    else:
        for line in lines:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
