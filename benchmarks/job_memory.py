"""Memory per running job: the agent's per-job shim beside Slurm's slurmstepd.

Starts N real jobs (`sleep 600`) through the agent's own code path (JobRunner.start in
agent/skyops_agent/jobs.py: spec.json, the shim launched by `shim_command`, the job
started by the shim in its cgroup or process group, then the wait handed to the C
`skyops-shim-wait` or kept in Python), for each supervisor (JobRunner(supervisor="c" |
"python")) and each way the agent is imported: from the package (agent/) and from the
zipapp the console pushes to boxes (built here, run in a child process that imports
skyops_agent from it). The C waiter is built once per state dir before the starts (its
build time is shown apart). It waits until every shim is in its long wait (for C: the
shim's pid runs skyops-shim-wait), and reads each shim's /proc/<pid>/smaps_rollup: RSS,
PSS (shared pages split among the processes that map them) and USS (Private_Clean +
Private_Dirty: what the box gets back when that one shim ends), and the CPU time each
shim used (its Python set-up included). The benchmark's own CPU and wall time for the
starts are shown beside them, with the load average.
Medians over the N shims. Beside them, for the floor: N idle interpreters that import
nothing, started as the shim is (`-I -S`), as a plain `python`, and as Debian's
/usr/bin/python3 where that is another interpreter.

Where Slurm is installed and the benchmark runs as root, the same N jobs go to a
localhost Slurm (skyops_tui/slurm/local.py: 8 slurmd x 8 GRES GPUs) as
`sbatch --wrap 'sleep 600'`, and every slurmstepd of each running job is measured the
same way (summed per job; with this configuration a batch job has one).

Left out: the job itself (sleep; Slurm's batch shell), the agent and slurmd/slurmctld
(one per box, not per job), and kernel memory (page tables, the cgroup). PSS depends on
how many processes share the pages, other Pythons on the box included, so it is shown
with N and is less stable than RSS and USS.

    python benchmarks/job_memory.py [--jobs 8] [--no-slurm] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine  # noqa: E402

SUPERVISORS = ("c", "python")
FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")


def smaps(pid: int) -> dict[str, int]:
    """kB figures of one process; USS = its private pages."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in FIELDS:
                out[key] = int(rest.split()[0])
    out["Uss"] = out["Private_Clean"] + out["Private_Dirty"]
    return out


def cpu_s(pid: int) -> float:
    """CPU a process has used so far (schedstat's ns; stat's clock ticks are too coarse)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(samples: list[dict[str, int]]) -> dict:
    """Medians in kB (and MB for the summary), over one figure per job."""
    if not samples:
        return {"n": 0}
    med = {k: statistics.median(s[k] for s in samples) for k in ("Rss", "Pss", "Uss")}
    shared = statistics.median(s["Shared_Clean"] + s["Shared_Dirty"] for s in samples)
    return {
        "n": len(samples),
        "rss_kb": med["Rss"],
        "pss_kb": med["Pss"],
        "uss_kb": med["Uss"],
        "shared_kb": shared,
        "rss_kb_range": [min(s["Rss"] for s in samples), max(s["Rss"] for s in samples)],
    }


def wait(pred, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark waited too long for {what}")
        time.sleep(0.02)


def settled(pids: list[int]) -> list[dict[str, int]]:
    """Sample until two readings 0.3 s apart agree (each shim is in its long wait)."""
    last = [smaps(p) for p in pids]
    for _ in range(20):
        time.sleep(0.3)
        now = [smaps(p) for p in pids]
        if all(a["Rss"] == b["Rss"] for a, b in zip(last, now, strict=True)):
            return now
        last = now
    return last


def start_request(job_id: str, workdir: str) -> dict:
    return {
        "job_id": job_id,
        "argv": ["sleep", "600"],
        "env": {},
        "gpus": [],
        "workdir": workdir,
        "checkpoint_dir": "",
        "resume": False,
        "mode": "priority",
        "user": "",
        "grid": "",
    }


def shims(n: int, tmp: Path, supervisor: str = "c") -> dict:
    from skyops_agent import jobdir, shim_wait
    from skyops_agent.jobs import JobRunner

    state = tmp / f"agent-state-{supervisor}"
    build_s = None
    if supervisor == "c":
        t0 = time.perf_counter()
        if shim_wait.build(str(state)) is None:
            raise RuntimeError("skyops-shim-wait could not be built (see above)")
        build_s = time.perf_counter() - t0
    runner = JobRunner(str(state), supervisor=supervisor)
    ids = [f"mem{k}" for k in range(n)]
    started: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for job_id in ids:
            runner.start(start_request(job_id, str(tmp)))
            started.append(job_id)
        start_s = time.perf_counter() - t0
        start_cpu = time.process_time() - c0

        def all_running() -> bool:
            return all(runner.record(j, False)["state"] == "running" for j in ids)

        wait(all_running, "every job running")
        pids = [runner.record(j, False)["shim_pid"] for j in ids]
        if supervisor == "c":
            wait(
                lambda: all(
                    os.readlink(f"/proc/{p}/exe").endswith("/skyops-shim-wait") for p in pids
                ),
                "every shim waiting in skyops-shim-wait",
            )
        samples = settled(pids)
        cpu = [cpu_s(p) for p in pids]
        with open(f"/proc/{pids[0]}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")
    finally:
        for job_id in started:
            runner.stop(
                {
                    "job_id": job_id,
                    "checkpoint_signal": None,
                    "grace_s": 0,
                    "term_grace_s": 5,
                    "reason": "benchmark over",
                }
            )
        wait(
            lambda: all(runner.record(j, False)["state"] == "exited" for j in started),
            "every job stopped",
        )
    got = {jobdir.read_json(str(state / "jobs" / j / jobdir.STATUS)).get("supervisor") for j in ids}
    if got != {supervisor}:
        raise RuntimeError(f"asked for the {supervisor} supervisor, the jobs got {got}")
    return {
        "supervisor": supervisor,
        "build_s": build_s,
        "agent_from": os.path.dirname(os.path.dirname(jobdir.__file__)),
        "shim_argv": [
            a if len(a) < 60 else a[:57] + "..." for a in argv[: argv.index("--job-dir")]
        ],
        "start_wall_s": start_s,
        "start_cpu_s_agent": start_cpu,
        "shim_cpu_s_median": statistics.median(cpu),
        "per_job": summarise(samples),
        "tracking": jobdir.read_json(str(state / "jobs" / ids[0] / jobdir.STATUS))["tracking"],
    }


def shims_from_zipapp(n: int, tmp: Path, supervisor: str) -> dict:
    """`shims` in a child process whose agent is the zipapp (a fresh build of agent/)."""
    from skyops_agent.zipapp import build_zipapp

    pyz, _ = build_zipapp(str(tmp / "dist"))
    work = tmp / f"pyz-{supervisor}"
    work.mkdir()
    child = [sys.executable, __file__, "--jobs", str(n), "--_shims-from", pyz, str(work)]
    child += ["--_supervisor", supervisor]
    out = subprocess.run(child, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the zipapp run failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def idle_interpreters(n: int, flags: list[str], python: str = sys.executable) -> dict:
    """The floor: an interpreter that imports nothing (`_signal` is built in) and waits."""
    code = "import _signal; _signal.sigtimedwait({_signal.SIGUSR1}, 600)"
    procs = [subprocess.Popen([python, *flags, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.5)
        samples = settled([p.pid for p in procs])
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return {"argv": [python, *flags, "-c", "<wait>"], "per_job": summarise(samples)}


def _stepds(conf: Path) -> dict[str, list[int]]:
    """slurmstepd processes of this cluster (SLURM_CONF in their environment), by job id."""
    needle = f"SLURM_CONF={conf}".encode()
    found: dict[str, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        if not cmd.startswith(b"slurmstepd") or needle not in env.split(b"\0"):
            continue
        step = cmd.split(b"[", 1)[-1].split(b"]", 1)[0].decode()
        found.setdefault(step.split(".")[0], []).append(int(entry.name))
    return found


def slurmstepd(n: int, tmp: Path) -> dict:
    from skyops_tui.slurm.local import LocalSlurm, SlurmUnavailable

    slurm = LocalSlurm(tmp / "slurm")
    try:
        slurm.start()
    except SlurmUnavailable as e:
        return {"skipped": str(e)}
    try:
        ids = {
            slurm.run(
                "sbatch", "--parsable", f"--output={tmp}/slurm-%j.out", "--wrap", "sleep 600"
            ).strip()
            for _ in range(n)
        }

        def running() -> bool:
            out = slurm.run("squeue", "-h", "-t", "R", "-o", "%i", check=False)
            return ids <= set(out.split()) and ids <= set(_stepds(slurm.conf))

        wait(running, "every sbatch job running")
        steps = _stepds(slurm.conf)
        pids = [p for j in ids for p in steps[j]]
        flat = dict(zip(pids, settled(pids), strict=True))
        per_job = []
        for j in ids:
            parts = [flat[p] for p in steps[j]]
            per_job.append({k: sum(s[k] for s in parts) for k in parts[0]})
        return {
            "version": slurm.run("sinfo", "--version").strip(),
            "stepds_per_job": statistics.median(len(steps[j]) for j in ids),
            "per_job": summarise(per_job),
        }
    finally:
        slurm.stop()


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def line(name: str, s: dict) -> str:
    if not s.get("n"):
        return f"{name:<34} (none)"
    return (
        f"{name:<34} RSS {mb(s['rss_kb']):>5} MB  PSS {mb(s['pss_kb']):>5} MB  "
        f"USS {mb(s['uss_kb']):>5} MB  (n={s['n']}, shared {mb(s['shared_kb'])} MB)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--no-slurm", action="store_true", help="measure the shim only")
    ap.add_argument("--json", action="store_true", help="JSON only, no summary")
    ap.add_argument("--_shims-from", nargs=2, metavar=("PYZ", "TMP"), help=argparse.SUPPRESS)
    ap.add_argument("--_supervisor", default="c", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._shims_from:
        pyz, tmp_dir = args._shims_from
        sys.path.insert(0, pyz)
        print(json.dumps(shims(args.jobs, Path(tmp_dir), args._supervisor)))
        return 0
    sys.path.insert(0, str(ROOT / "agent"))
    res: dict = {"machine": machine(), "jobs": args.jobs}
    with tempfile.TemporaryDirectory(prefix="skyops-job-memory-") as d:
        tmp = Path(d)
        for sup in SUPERVISORS:
            res[f"shim_{sup}"] = shims(args.jobs, tmp, sup)
            res[f"shim_{sup}_zipapp"] = shims_from_zipapp(args.jobs, tmp, sup)
        res["shim"] = res["shim_c"]  # what a box with `cc` runs (run_all.py reads it)
        res["floor_isolated"] = idle_interpreters(args.jobs, ["-I", "-S"])
        res["floor_site"] = idle_interpreters(args.jobs, [])
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(system) != os.path.realpath(sys.executable):
            res["floor_system_python"] = idle_interpreters(args.jobs, ["-I", "-S"], system)
        if args.no_slurm:
            res["slurmstepd"] = {"skipped": "--no-slurm"}
        elif shutil.which("slurmd") is None:
            res["slurmstepd"] = {"skipped": "Slurm is not installed"}
        else:
            res["slurmstepd"] = slurmstepd(args.jobs, tmp)
    res["machine"]["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res, indent=2))
    if args.json:
        return 0
    m = res["machine"]
    print(
        f"\n{args.jobs} jobs; {m['cpu']}, Python {m['python']}, commit {m['engine']}, "
        f"load {m['loadavg_1m']} -> {m['loadavg_1m_end']}",
        file=sys.stderr,
    )
    keys = [f"shim_{sup}{how}" for sup in SUPERVISORS for how in ("", "_zipapp")]
    for key in keys:
        r = res[key]
        name = f"shim, {r['supervisor']} wait ({'zipapp' if 'zipapp' in key else 'package'})"
        print(line(name, r["per_job"]), file=sys.stderr)
    for key in keys:
        r = res[key]
        built = f"; waiter built in {r['build_s']:.2f} s" if r["build_s"] is not None else ""
        print(
            f"{key}: {args.jobs} starts in {r['start_wall_s']:.2f} s wall, "
            f"{r['start_cpu_s_agent']:.2f} s agent CPU; each shim "
            f"{r['shim_cpu_s_median'] * 1000:.0f} ms CPU (median){built}",
            file=sys.stderr,
        )
    print(line("idle python -I -S", res["floor_isolated"]["per_job"]), file=sys.stderr)
    print(line("idle python (site)", res["floor_site"]["per_job"]), file=sys.stderr)
    if "floor_system_python" in res:
        floor = res["floor_system_python"]["per_job"]
        print(line("idle /usr/bin/python3 -I -S", floor), file=sys.stderr)
    step = res["slurmstepd"]
    if "skipped" in step:
        print(f"slurmstepd: skipped ({step['skipped']})", file=sys.stderr)
    else:
        print(line(f"slurmstepd ({step['version']})", step["per_job"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
