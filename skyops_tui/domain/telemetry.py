"""What a node reports about its GPUs, as the console keeps it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuSample:
    index: int
    name: str
    util: int | None  # percent; None = not available (N/A)
    mem_used_mb: int | None
    mem_total_mb: int | None
    temp_c: int | None = None
    power_w: float | None = None
    uuid: str = ""
    fake: bool = False


@dataclass(frozen=True, slots=True)
class NodeSample:
    node: str
    at: float
    gpus: tuple[GpuSample, ...]
    fake: bool = False
    note: str = ""  # e.g. "no NVIDIA driver"
