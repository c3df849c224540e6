"""The localhost Slurm the Slurm backend is tested on is the cluster docs/slurm.md
describes: 8 nodes x 8 GRES GPUs, and a Priority job requeues a Flex job by partition
priority when it needs the GPUs, after the Flex partition's GraceTime."""

from __future__ import annotations

from tests.waiting import wait_for


def state(slurm, job: str) -> str:
    return slurm.run("squeue", "-h", "-j", job, "-o", "%T", check=False).strip()


def test_eight_nodes_of_eight_gpus(clean_slurm):
    out = clean_slurm.run("sinfo", "-h", "-N", "-p", "priority", "-o", "%N %G %t")
    rows = [line.split() for line in out.splitlines()]
    assert [r[0] for r in rows] == [f"n{i}" for i in range(1, 9)]
    assert {r[1] for r in rows} == {"gpu:8"}
    assert {r[2] for r in rows} == {"idle"}


def test_priority_partition_requeues_flex_for_its_gpus(clean_slurm, tmp_path):
    s = clean_slurm
    flex = s.run(
        "sbatch",
        "--parsable",
        "-p",
        "flex",
        "--requeue",
        "-w",
        "n1",
        "--gres=gpu:8",
        "-o",
        str(tmp_path / "flex.out"),
        "--wrap",
        "sleep 60",
    ).strip()
    wait_for(lambda: state(s, flex) == "RUNNING", "the Flex job running")
    prio = s.run(
        "sbatch",
        "--parsable",
        "-p",
        "priority",
        "-w",
        "n1",
        "--gres=gpu:4",
        "-o",
        str(tmp_path / "prio.out"),
        "--wrap",
        "sleep 60",
    ).strip()
    wait_for(lambda: state(s, prio) == "RUNNING", "the Priority job running", 30)
    info = s.run("scontrol", "show", "job", "-o", flex)
    assert "Restarts=1" in info
    assert state(s, flex) in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
