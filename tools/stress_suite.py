"""Run the test suite again and again while CPU hogs compete for the cores.

A flaky test refuses every landing, and flakes show under load: this runs the README's
test command (or any pytest arguments given after `--`) `--runs` times in a row with
`--hogs` busy-looping processes beside it, and prints a line per run and a summary.

    python tools/stress_suite.py --runs 5 --hogs 2
    python tools/stress_suite.py --runs 20 --hogs 2 -- tests/app -x

Exit 0 when every run passed, 1 otherwise. The hogs are stopped however it ends.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"^=*\s*(.*\b(passed|failed|error)\b.*?)\s*=*$")


def _hog() -> None:  # pragma: no cover - runs in a child process
    os.nice(0)
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def _summary(output: str) -> str:
    for line in reversed(output.splitlines()):
        m = SUMMARY.match(line.strip())
        if m:
            return m.group(1)
    return "(no pytest summary)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="suite runs in a row (default 5)")
    ap.add_argument("--hogs", type=int, default=2, help="busy-looping processes (default 2)")
    ap.add_argument("pytest_args", nargs="*", help="arguments for pytest (default: -q)")
    args = ap.parse_args(argv)
    pytest_args = args.pytest_args or ["-q"]
    hogs = [mp.Process(target=_hog, daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    results: list[tuple[int, float, str]] = []
    try:
        for k in range(1, args.runs + 1):
            t0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            took = time.monotonic() - t0
            out = proc.stdout + proc.stderr
            results.append((proc.returncode, took, _summary(out)))
            print(f"run {k}: exit {proc.returncode} in {took:.0f} s: {_summary(out)}", flush=True)
            if proc.returncode != 0:
                failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))]
                for ln in failed:
                    print(f"    {ln}", flush=True)
    finally:
        for h in hogs:
            h.terminate()
        for h in hogs:
            h.join()
    ok = sum(1 for rc, _, _ in results if rc == 0)
    times = sorted(t for _, t, _ in results)
    median = times[len(times) // 2] if times else 0.0
    print(
        f"{ok}/{len(results)} runs passed with {args.hogs} CPU hogs on {os.cpu_count()} cores; "
        f"median run {median:.0f} s"
    )
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
