"""Scripted submission: `skyops submit` in a shell loop and one 5,000-job array, beside
`sbatch` and a Slurm job array on a localhost Slurm in the same run.

Whole paths timed:
- loop: a bash `for` loop running an installed `skyops` console script N times
  (`skyops --config C --db D submit --mode priority --hours 1 -- sleep 600`): the
  interpreter's start-up, the lean client (cli/lean.py), the socket, the leader's
  checks, journal, apply, write and group-commit fsync, the answer, the printed line.
  Slurm: the same loop of `sbatch -H --wrap 'sleep 600'` (held, so nothing runs).
- array: one `skyops submit --array 5000` process, start to exit; and the same request
  sent from this process over the socket, request to answer (the leader's share,
  durable commit included). Slurm: `sbatch -H --array=0-4999`.
- start-up: `python -c 'import skyops_tui.cli.lean'` against the full client's
  `import skyops_tui.cli.main` and a bare `python -c pass`, medians of 15.

The jobs are not run: the one node is drained (Skyops) or the jobs held (Slurm), so
what is timed is acceptance, not placement (benchmarks/submit_to_running.py times that).
The leader is `skyops serve` in its own process.

Which `skyops`: the loop is timed twice. "installed" is the product as a user installs
it: a wheel built from this tree, installed in a fresh venv (`python -m venv`, with its
pip and setuptools; `--no-deps`, as the lean path imports the standard library alone),
its `<venv>/bin/skyops` run with no PYTHONPATH. "dev env" is this interpreter's own
console script (`<python>/bin/skyops`, not a pyenv shim in front of it) with the tree on
PYTHONPATH: its start-up carries whatever `.pth` files this interpreter's site-packages
runs (an editable install's import finder, a sandbox's certificate hook), which a user's
install does not have; both start-ups are reported. The targets are judged on the
installed client. Left out: building the wheel and the venv (once, before timing).

    python benchmarks/cli_submit.py [--loop 50] [--array 5000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.leader import config, cpu_s, drained_leader  # noqa: E402
from benchmarks.machine import machine  # noqa: E402

LOOP_TARGET = 50.0  # submissions per second, sequential (issue 15)
ARRAY_TARGET_S = 0.2  # 5,000 jobs in one request, durable commit included


def skyops_script() -> str:
    here = Path(sys.executable).parent / "skyops"
    return str(here) if here.exists() else "skyops"


def installed_client(tmp: Path) -> Path:
    """`skyops` as a user installs it: this tree's wheel in a fresh venv."""
    wheels, venv = tmp / "wheel", tmp / "venv"
    for argv in (
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)],
        [sys.executable, "-m", "venv", str(venv)],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
    (wheel,) = wheels.glob("skyops-*.whl")
    # No PYTHONPATH: with the tree on it, pip finds its skyops.egg-info and installs nothing.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True,
                   env=clean)  # fmt: skip
    return venv / "bin" / "skyops"


def timed_loop(argv: list[str], n: int, env: dict) -> float:
    """Seconds for n sequential runs of argv from a bash loop (output discarded)."""
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    script = f"for i in $(seq {n}); do {quoted} >/dev/null || exit 1; done"
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True)
    return time.perf_counter() - t0


def startup(code: str, env: dict, runs: int = 15, python: str = sys.executable) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", code], env=env, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def request(sock: Path, payload: dict) -> tuple[float, dict]:
    """One submit over the socket: seconds from the request to the answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock))
        f = s.makefile("rwb")
        hello = json.loads(f.readline())
        payload["spec"]["user"] = hello["user"]
        msg = {"v": 1, "type": "command", "id": 1, "kind": "submit", "payload": payload}
        line = json.dumps(msg).encode() + b"\n"
        t0 = time.perf_counter()
        f.write(line)
        f.flush()
        reply = json.loads(f.readline())
        return time.perf_counter() - t0, reply
    finally:
        s.close()


def through_skyops(tmp: Path, loop: int, array: int, rounds: int) -> dict:
    (tmp / "config.toml").write_text(config("cli-bench"))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "SKYOPS_USER": "bench"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "agent"), env.get("PYTHONPATH", "")])
    base = [skyops_script(), "--config", str(tmp / "config.toml"), "--db", str(tmp / "s.db")]
    with drained_leader(tmp, base, env) as leader:
        job = ["submit", "--mode", "priority", "--hours", "1", "--", "sleep", "600"]
        client = installed_client(tmp)
        venv_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        installed = [str(client), *base[1:], *job]
        loops = [loop / timed_loop(installed, loop, venv_env) for _ in range(rounds)]
        dev_loops = [loop / timed_loop([*base, *job], loop, env) for _ in range(rounds)]
        venv_python = str(client.parent / "python")
        arrays, answers, cpus = [], [], []
        for r in range(rounds):
            argv = [*base, "submit", "--mode", "priority", "--hours", "1", "--name", f"arr{r}",
                    "--array", str(array), "--", "sleep", "600"]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            arrays.append(time.perf_counter() - t0)
            spec = {"name": f"req{r}", "mode": "priority", "hours": 1, "gpus": 1,
                    "argv": ["sleep", "600"]}  # fmt: skip
            c0 = cpu_s(leader.pid)
            took, reply = request(tmp / "s.sock", {"spec": spec, "count": array})
            cpus.append(cpu_s(leader.pid) - c0)
            assert reply["type"] == "ok" and len(reply["result"]["jobs"]) == array, reply
            answers.append(took)
        return {
            "loop_per_s": loops,
            "loop_per_s_dev_env": dev_loops,
            "array_process_s": arrays,
            "array_request_s": answers,
            "array_request_leader_cpu_s": cpus,
            "startup_lean_s": startup("import skyops_tui.cli.lean", venv_env, python=venv_python),
            "startup_python_s": startup("pass", venv_env, python=venv_python),
            "startup_lean_s_dev_env": startup("import skyops_tui.cli.lean", env),
            "startup_full_s_dev_env": startup("import skyops_tui.cli.main", env),
            "startup_python_s_dev_env": startup("pass", env),
        }


def through_slurm(tmp: Path, loop: int, array: int, rounds: int) -> dict | str:
    from skyops_tui.slurm.local import LocalSlurm, SlurmUnavailable

    try:
        slurm = LocalSlurm(
            tmp / "slurm", nodes=1, extra_conf=f"MaxArraySize={array + 1}\nMaxJobCount=100000\n"
        ).start()
    except SlurmUnavailable as e:
        return str(e)
    try:
        sbatch = shutil.which("sbatch") or "sbatch"
        out = str(tmp / "slurm-%j.out")
        one = [sbatch, "-H", "-p", "priority", "--gres=gpu:1", f"--output={out}", "--wrap",
               "sleep 600"]  # fmt: skip
        loops = [loop / timed_loop(one, loop, slurm.env) for _ in range(rounds)]
        arrays = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run([*one[:1], f"--array=0-{array - 1}", *one[1:]], env=slurm.env,
                           check=True, capture_output=True)  # fmt: skip
            arrays.append(time.perf_counter() - t0)
        version = slurm.run("sinfo", "--version").strip()
        slurm.run("scancel", "--user=root", check=False)
        return {"loop_per_s": loops, "array_process_s": arrays, "version": version}
    finally:
        slurm.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", type=int, default=50, help="submissions per loop round")
    ap.add_argument("--array", type=int, default=5000, help="jobs in the array")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-slurm", action="store_true", help="leave Slurm out")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="skyops-cli-bench-") as d:
        tmp = Path(d)
        sky = through_skyops(tmp, args.loop, args.array, args.rounds)
        slurm = "left out (--no-slurm)" if args.no_slurm else through_slurm(
            tmp, args.loop, args.array, args.rounds)  # fmt: skip
    loop = statistics.median(sky["loop_per_s"])
    arr = statistics.median(sky["array_request_s"])
    report = {
        "machine": machine(),
        "skyops": sky,
        "slurm": slurm,
        "array_jobs": args.array,
        "loop_per_s_median": round(loop, 1),
        "array_request_s_median": round(arr, 4),
        "array_process_s_median": round(statistics.median(sky["array_process_s"]), 4),
        "loop_target_met": loop >= LOOP_TARGET,
        "array_target_met": arr <= ARRAY_TARGET_S,
    }
    if isinstance(slurm, dict):
        report["loop_vs_sbatch"] = round(loop / statistics.median(slurm["loop_per_s"]), 3)
        report["array_vs_slurm_array"] = round(
            statistics.median(slurm["array_process_s"]) / statistics.median(sky["array_process_s"]),
            3,
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"machine: {report['machine']}")
    print(f"skyops submit loop (installed): {loop:.1f}/s (rounds {', '.join(f'{x:.1f}' for x in sky['loop_per_s'])}); "
          f"target >= {LOOP_TARGET:.0f}/s: {'met' if report['loop_target_met'] else 'NOT met'}")  # fmt: skip
    print(f"skyops --array {args.array}: request -> durable answer {arr * 1000:.0f} ms median, "
          f"(leader CPU {statistics.median(sky['array_request_leader_cpu_s']) * 1000:.0f} ms), "
          f"whole process {report['array_process_s_median'] * 1000:.0f} ms; target <= "
          f"{ARRAY_TARGET_S * 1000:.0f} ms: {'met' if report['array_target_met'] else 'NOT met'}")  # fmt: skip
    dev = statistics.median(sky["loop_per_s_dev_env"])
    print(f"  the same loop through the dev env's console script: {dev:.1f}/s")
    print(f"start-up, installed: python {sky['startup_python_s'] * 1000:.0f} ms, lean client "
          f"{sky['startup_lean_s'] * 1000:.0f} ms; dev env: python "
          f"{sky['startup_python_s_dev_env'] * 1000:.0f} ms, lean client "
          f"{sky['startup_lean_s_dev_env'] * 1000:.0f} ms, full client "
          f"{sky['startup_full_s_dev_env'] * 1000:.0f} ms")  # fmt: skip
    if isinstance(slurm, dict):
        print(f"{slurm['version']}: sbatch loop {statistics.median(slurm['loop_per_s']):.1f}/s, "
              f"--array={args.array} {statistics.median(slurm['array_process_s']) * 1000:.0f} ms")  # fmt: skip
        print(f"ratios: loop {report['loop_vs_sbatch']}x sbatch; array "
              f"{report['array_vs_slurm_array']}x as fast as Slurm's (whole process)")  # fmt: skip
    else:
        print(f"slurm: {slurm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
