"""A real Slurm on localhost (skyops_tui/slurm/local.py): munged, slurmctld and 8
`slurmd -N nX` with 8 fake GPUs each, started once for the Slurm tests and stopped
after. Where Slurm cannot start the tests are skipped, except under CI (the CI variable
set), where that fails: CI must not pass by skipping.
"""

from __future__ import annotations

import os

import pytest

from skyops_tui.slurm.local import LocalSlurm, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), nodes=8, gpus=8, grace_s=3)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"Slurm did not start: {e} -- CI must run the Slurm tests")
        pytest.skip(f"Slurm did not start: {e}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def clean_slurm(slurm):
    """The shared cluster with no job or reservation of an earlier test left on it, and
    every node up."""
    yield slurm
    slurm.run("scancel", "--user=root", check=False)
    slurm.end_reservations()
    slurm.wait_quiet()
