"""Run every benchmark, each in its own process, and print their JSON reports as one
JSON object, with a summary table (figure, target, met?) on stderr and in the JSON.

    python benchmarks/run_all.py                 # the set, sized to finish in < 10 minutes
    python benchmarks/run_all.py --quick         # smaller sizes, for a smoke run (~2 minutes)
    python benchmarks/run_all.py --only submissions,scheduler_step --out results.json

Whole path: whatever each benchmark measures (its docstring says what it times and
what it leaves out); here, only the sizes change. The sizes below keep the whole run
under 10 minutes on the 2-core machine of docs/benchmarks.md: the simulator and the
scheduler step at their target sizes, the others at their smallest size that still
checks their target. A benchmark that fails, or runs past its time limit, is reported
as such and the run goes on; one whose prerequisites are missing (Slurm for
slurm_submit) is reported as skipped, with why. Left out: the grid screen's
benchmark at every size (512 nodes only) and the crash harness's fault kinds beyond
kills (its own defaults run them all), and the key-latency benchmark on a big grid
(the demo grid only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

Row = tuple[str, str, bool | None]  # figure, target, met (None: no target or not measured)


def _ms(d: dict) -> str:
    return f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} ms"


def s_policy_pass(doc: dict) -> list[Row]:
    rows = []
    for r in doc["results"]:
        fig = f"{r['nodes']}x8, {r['queued_target']:,} queued: plan() wall {_ms(r)}, CPU {_ms(r['cpu'])}"
        target = "p50 <= 20 ms" if (r["nodes"], r["queued_target"]) == (1024, 20_000) else ""
        met = r["p50_ms"] <= 20 if target else None
        rows.append((fig, target, met))
    return rows


def s_scheduler_step(doc: dict) -> list[Row]:
    rows = []
    for r in doc["results"]:
        fig = (
            f"{r['nodes']}x8, {r['queued_target']:,} queued: step wall {_ms(r)}, "
            f"CPU {_ms(r['cpu'])}"
        )
        t = r.get("target")
        if t:
            want = f"p50 <= {t['p50_ms']:g} ms" + (
                f", p99 <= {t['p99_ms']:g} ms" if "p99_ms" in t else ""
            )
            rows.append((fig, want, t["met"]))
        else:
            rows.append((fig, "", None))
    return rows


def s_simulator(doc: dict) -> list[Row]:
    fig = (
        f"{doc['jobs']:,} jobs: {doc['jobs_per_cpu_s']:,.0f} jobs/CPU s "
        f"({doc['jobs_per_wall_s']:,.0f}/wall s), violations {doc['violations']}"
    )
    return [(fig, ">= 2,000 jobs/s", doc["target"]["met"])]


def s_submissions(doc: dict) -> list[Row]:
    fig = (
        f"{doc['median_per_second']:,.0f} durable submissions/s, "
        f"{doc['fsyncs_per_submission']} fsyncs each (FULL: "
        f"{doc['baseline_full_median_per_second']:,.0f}/s)"
    )
    return [(fig, ">= 5,000/s durable", doc["target"]["met"])]


def s_submit_to_running(doc: dict) -> list[Row]:
    fig = f"64 jobs all running in {doc['median_all_running_s']:.3f} s (Slurm {doc['slurm_s']} s)"
    return [(fig, "<= 0.5 s", doc["target"]["met"])]


def s_api_commands(doc: dict) -> list[Row]:
    m = doc["median_per_second"]
    fig = ", ".join(f"{k} {v:,.0f}/s" for k, v in m.items())
    return [(fig, "", None)]


def s_telemetry(doc: dict) -> list[Row]:
    rows = []
    for r in doc["results"]:
        fig = f"{r['agents']} agents: console {r['console_cpu_pct']} % of a core"
        if r["agents"] == 128:
            rows.append((fig, "128 agents <= 10 %", r["console_cpu_pct"] <= 10))
        else:
            rows.append((fig, "", None))
    return rows


def s_grid_refresh(doc: dict) -> list[Row]:
    rows: list[Row] = []
    for r in doc.get("sizes", []):
        if "frame_cpu" in r:
            fig = f"{r['nodes']} nodes: frame (refresh and paint) CPU {_ms(r['frame_cpu'])}"
        else:
            fig = f"{r['nodes']} nodes: refresh wall {_ms(r['refresh_wall'])}"
        rows.append((fig, "", None))
    t = doc.get("target", {})
    for key, target in (("frame_p50_ms", "p50 <= 16 ms"), ("frame_p99_ms", "p99 <= 33 ms")):
        if key in t:
            v = t[key]
            fig = f"512 nodes frame {key[6:9]} CPU {v['cpu']} ms (wall {v['wall']} ms)"
            rows.append((fig, f"{target} (CPU)", v["met"]))
    return rows or [("see report", "", None)]


def s_key_latency(doc: dict) -> list[Row]:
    t = doc["target"]
    grid = str(doc.get("grid", "")).split(" (")[0]
    if str(doc.get("console", "")).startswith("follower"):
        grid += (
            f", a follower ({doc['follower_reloads']} reloads, {doc['console_cpu_per_s']} CPU/s)"
        )
    fig = (
        f"{grid}: {doc['presses']} keys, key to frame {_ms(doc['all'])} (switches "
        f"{_ms(doc['screen_switches'])}, moves {_ms(doc['list_moves'])})"
    )
    return [(fig, "p99 <= 100 ms", t["met"])]


def s_crash_harness(doc: dict) -> list[Row]:
    bad = doc.get("violations")
    n = len(bad) if isinstance(bad, list) else bad
    kills = len(doc.get("kill_points", [])) or "?"
    return [(f"{kills} kills: violations {n}", "nothing lost", n == 0)]


def s_fuzz(doc: dict) -> list[Row]:
    fig = f"{doc['inputs']:,} inputs, {doc['crashes']} crashes, slowest {doc['slowest_s']} s"
    return [(fig, "0 crashes", doc["crashes"] == 0)]


def s_slurm_submit(doc: dict) -> list[Row]:
    rows: list[Row] = []
    for path, d in doc.items():
        if isinstance(d, dict) and "submissions_per_s" in d:
            rows.append((f"{path}: {d['submissions_per_s']:,.0f} submissions/s", "", None))
    return rows or [("see report", "", None)]


def s_cli_submit(doc: dict) -> list[Row]:
    sky, slurm = doc["skyops"], doc["slurm"]
    sbatch = ""
    if isinstance(slurm, dict):
        sbatch = f"; sbatch {sorted(slurm['loop_per_s'])[len(slurm['loop_per_s']) // 2]:.1f}/s"
    loop = f"`skyops submit` loop {doc['loop_per_s_median']:.1f}/s (installed){sbatch}"
    cpu = sorted(sky["array_request_leader_cpu_s"])[len(sky["array_request_leader_cpu_s"]) // 2]
    n = doc["array_jobs"]
    array = (
        f"--array {n:,}: request to durable answer "
        f"{doc['array_request_s_median'] * 1000:.0f} ms (leader CPU {cpu * 1000:.0f} ms)"
    )
    at_size = n == 5000  # the target's size; a quick run's smaller array is not judged
    return [(loop, ">= 50/s", doc["loop_target_met"]),
            (array, "<= 200 ms" if at_size else "", doc["array_target_met"] if at_size else None)]  # fmt: skip


def s_job_memory(doc: dict) -> list[Row]:
    shim = doc["shim"]["per_job"]
    fig = (
        f"shim per running job: RSS {shim['rss_kb'] / 1024:.1f} MB, USS "
        f"{shim['uss_kb'] / 1024:.1f} MB (bare python -I -S "
        f"{doc['floor_isolated']['per_job']['rss_kb'] / 1024:.1f} MB RSS)"
    )
    step = doc.get("slurmstepd", {})
    if "per_job" in step:
        s = step["per_job"]
        fig += f"; slurmstepd RSS {s['rss_kb'] / 1024:.1f} MB, USS {s['uss_kb'] / 1024:.1f} MB"
    return [(fig, "shim <= 7 MB RSS", shim["rss_kb"] <= 7 * 1024)]


def s_serve_memory(doc: dict) -> list[Row]:
    s = doc["summary"]
    ended = s["rss_after_ended_mb"]
    fig = (
        f"serve RSS {s['rss_live_mb']} MB with {doc['points'][1]['live']:,} live jobs; "
        f"{ended[0]} -> {ended[-1]} MB over {doc['points'][-2]['ended']:,} ended"
    )
    return [(fig, "<= 40 MB, flat", s["met"])]


def slurm_missing() -> str | None:
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        return "Slurm (slurm-wlm) is not installed"
    if os.geteuid() != 0:
        return "needs root to start a localhost Slurm"
    return None


# name (the script's, or script@variant for a second size of one): (full args, quick
# args, time limit s, summary, why it cannot run or None)
PLAN: dict[str, tuple[list[str], list[str], int, Callable[[dict], list[Row]], Callable[[], str | None]]] = {
    "submissions": (["--jobs", "20000", "--rounds", "1"], ["--jobs", "5000", "--rounds", "1"], 120, s_submissions, lambda: None),
    "submit_to_running": (["--rounds", "5"], ["--rounds", "2"], 60, s_submit_to_running, lambda: None),
    "api_commands": (["--jobs", "2000", "--rounds", "1"], ["--jobs", "500", "--rounds", "1"], 90, s_api_commands, lambda: None),
    "policy_pass": (["--sizes", "1024x20000", "--passes", "100"], ["--sizes", "256x5000", "--passes", "50"], 90, s_policy_pass, lambda: None),
    "scheduler_step": (["--sizes", "1024x20000,4096x50000", "--passes", "100"], ["--sizes", "1024x20000", "--passes", "50"], 240, s_scheduler_step, lambda: None),
    "simulator": ([], ["--jobs", "5000"], 240, s_simulator, lambda: None),
    "telemetry": (["--agents", "16", "--seconds", "10"], ["--agents", "16", "--seconds", "5"], 90, s_telemetry, lambda: None),
    "grid_refresh": (["--nodes", "512", "--refreshes", "100", "--first-paints", "1"], ["--nodes", "64", "--refreshes", "30", "--first-paints", "1"], 120, s_grid_refresh, lambda: None),
    "key_latency": (["--presses", "200"], ["--presses", "60"], 120, s_key_latency, lambda: None),
    "key_latency@512": (["--presses", "200", "--nodes", "512"], ["--presses", "60", "--nodes", "64"], 150, s_key_latency, lambda: None),
    "key_latency@512-follower": (["--presses", "200", "--nodes", "512", "--follower", "--changes-per-s", "10"], ["--presses", "60", "--nodes", "64", "--follower", "--changes-per-s", "10"], 150, s_key_latency, lambda: None),
    "fuzz": (["--inputs", "20000"], ["--inputs", "2000"], 90, s_fuzz, lambda: None),
    "crash_harness": (["--jobs", "200", "--kills", "4"], ["--jobs", "100", "--kills", "2"], 150, s_crash_harness, lambda: None),
    "cli_submit": (["--json"], ["--json", "--loop", "20", "--array", "2000", "--rounds", "1", "--no-slurm"], 150, s_cli_submit, lambda: None),
    "job_memory": (["--json"], ["--json", "--jobs", "4", "--no-slurm"], 90, s_job_memory, lambda: None),
    "serve_memory": (["--ended", "20000", "--every", "10000"], ["--live", "500", "--ended", "10000", "--every", "5000"], 150, s_serve_memory, lambda: None),
    "slurm_submit": (["--json"], ["--json", "--jobs", "16", "--starts", "2"], 120, s_slurm_submit, slurm_missing),
}  # fmt: skip


def table(summary: list[dict]) -> str:
    lines = ["| benchmark | figure | target | met? | seconds |", "|---|---|---|---|---|"]
    for s in summary:
        met = {True: "yes", False: "**no**", None: "—"}[s["met"]]
        lines.append(
            f"| {s['benchmark']} | {s['figure']} | {s['target']} | {met} | {s['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--only", help="comma-separated benchmark names (default: all)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--budget-s", type=float, default=600.0, help="skip what would not fit")
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else list(PLAN)
    unknown = [n for n in names if n not in PLAN]
    if unknown:
        print(f"run_all: unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    t_start = time.monotonic()
    reports: dict[str, dict] = {}
    summary: list[dict] = []
    for name in names:
        full, quick, limit, summarise, missing = PLAN[name]
        args = quick if a.quick else full
        row = {"benchmark": name, "args": args, "figure": "", "target": "", "met": None}
        left = a.budget_s - (time.monotonic() - t_start)
        why = missing() or (None if left >= min(limit, 30) else f"{left:.0f} s of the budget left")
        if why:
            row.update(figure=f"skipped: {why}", seconds=0)
            summary.append(row)
            print(f"skipping {name}: {why}", file=sys.stderr)
            continue
        print(f"running {name} {' '.join(args)}", file=sys.stderr)
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, str(HERE / f"{name.split('@')[0]}.py"), *args],
                stdout=subprocess.PIPE,
                text=True,
                timeout=min(limit, max(left, 1)),
            )
            if done.returncode != 0:
                raise RuntimeError(f"exit status {done.returncode}")
            doc = json.loads(done.stdout)
        except subprocess.TimeoutExpired:
            row.update(figure=f"timed out after {min(limit, left):.0f} s", met=False)
            doc = None
        except (RuntimeError, json.JSONDecodeError) as e:
            row.update(figure=f"failed: {e}", met=False)
            doc = None
        row["seconds"] = round(time.monotonic() - t0, 1)
        if doc is not None:
            reports[name] = doc
            try:
                rows = summarise(doc)
            except (KeyError, TypeError) as e:
                rows = [(f"see report (no {e})", "", None)]
            for k, (fig, target, met) in enumerate(rows):
                summary.append({**row, "figure": fig, "target": target, "met": met}
                               if k == 0 else {**row, "benchmark": "", "figure": fig,
                                               "target": target, "met": met, "seconds": ""})  # fmt: skip
        else:
            summary.append(row)
    total = round(time.monotonic() - t_start, 1)
    text = table(summary) + f"\n\nwhole run: {total} s (budget {a.budget_s:g} s)"
    print(text, file=sys.stderr)
    out = {"benchmark": "run_all", "quick": a.quick, "total_s": total, "summary": summary,
           "table": text, "reports": reports}  # fmt: skip
    doc_text = json.dumps(out, indent=2)
    if a.out:
        Path(a.out).write_text(doc_text + "\n")
    print(doc_text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
