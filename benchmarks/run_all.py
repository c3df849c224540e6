"""Run every benchmark and print their JSON reports as one JSON object.

    python benchmarks/run_all.py            # the full set (about 10 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smaller sizes, for a smoke run (about 1 minute)
    python benchmarks/run_all.py --out results.json

Each benchmark runs in its own process, so one's garbage does not slow the next.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "policy_pass": [],
    "simulator": [],
}
QUICK = {
    "policy_pass": ["--sizes", "64x1000,256x5000,1024x1000", "--passes", "50"],
    "simulator": ["--jobs", "5000"],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)
    plan = QUICK if a.quick else FULL
    report = {}
    for name, args in plan.items():
        print(f"running {name} {' '.join(args)}", file=sys.stderr)
        done = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py"), *args],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        report[name] = json.loads(done.stdout)
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
