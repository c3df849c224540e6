"""Skyops on Slurm: the Slurm backend (docs/slurm.md) and a localhost Slurm for tests."""
