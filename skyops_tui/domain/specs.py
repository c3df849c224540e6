"""What people ask for: job and reservation requests, validated at the edge.

Commands, plan files and traces all build these, so a request means the same thing
wherever it comes from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config import MAX_RATE
from .model import Mode

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$"


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class JobSpec(Spec):
    name: str = Field(pattern=NAME)
    user: str = Field(min_length=1, max_length=64)
    mode: Mode
    argv: tuple[str, ...] = ()
    gpus: int | None = Field(default=None, ge=1, le=64)
    nodes: int | None = Field(default=None, ge=1, le=4096)
    gpu_type: str | None = None
    hours: float | None = Field(default=None, gt=0, le=24 * 365)
    hourly: bool = False
    auto_renew: bool = False
    renew_hours: float | None = Field(default=None, gt=0, le=24 * 30)
    reservation: str | None = None
    bid: float | None = Field(default=None, gt=0, le=MAX_RATE, description="currency per GPU-hour")
    max_retries: int = Field(default=0, ge=0, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    runtime: float | None = Field(default=None, ge=0, description="simulator: seconds of work")
    checkpoint_every: float | None = Field(default=None, gt=0)

    @field_validator("argv")
    @classmethod
    def _argv(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # The OS cannot pass a NUL inside an argument: refuse it here, not at start.
        if v and not v[0]:
            raise ValueError("the program (the first argument) is empty")
        for i, a in enumerate(v):
            if "\0" in a:
                raise ValueError(f"argument {i} contains a NUL byte")
        return v

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        if v is not None and "\0" in v:
            raise ValueError("a path cannot contain a NUL byte")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k, value in v.items():
            if (
                not k
                or not (k[0].isalpha() or k[0] == "_")
                or not all(c.isalnum() or c == "_" for c in k)
            ):
                raise ValueError(f"environment variable name {k!r} is not valid")
            if k.startswith("SKYOPS_") or k == "CUDA_VISIBLE_DEVICES":
                raise ValueError(f"{k} is set by Skyops and cannot be overridden")
            if "\0" in value:
                raise ValueError(f"the value of {k} contains a NUL byte")
        return v

    @model_validator(mode="after")
    def _per_mode(self) -> JobSpec:
        if self.gpus is not None and self.nodes is not None:
            raise ValueError("give gpus (on one node) or nodes (whole nodes), not both")
        if self.mode is Mode.PRIORITY:
            if (self.hours is None) == (not self.hourly):
                raise ValueError("a priority job needs hours = N or hourly = true (one of them)")
        elif self.hours is not None or self.hourly or self.auto_renew:
            raise ValueError(f"hours, hourly and auto_renew are for priority jobs, not {self.mode}")
        if self.mode is Mode.COMMIT:
            if not self.reservation:
                raise ValueError("a commit job needs reservation = NAME")
            if self.nodes is not None:
                raise ValueError("a commit job asks for gpus within its reservation, not nodes")
        elif self.reservation is not None:
            raise ValueError(f"reservation is for commit jobs, not {self.mode}")
        if self.mode is Mode.FLEX:
            if self.bid is None:
                raise ValueError("a flex job needs bid = price per GPU-hour")
        elif self.bid is not None:
            raise ValueError(f"bid is for flex jobs, not {self.mode}")
        return self

    @property
    def gpu_count(self) -> int:
        return self.gpus if self.gpus is not None else (0 if self.nodes else 1)


Timestamp = float | datetime


LAST_EPOCH = 4_102_444_800.0  # 2100-01-01: later starts are typos, not plans


def to_epoch(value: Timestamp) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


class ReservationSpec(Spec):
    name: str = Field(pattern=NAME)
    user: str = Field(min_length=1, max_length=64)
    gpu_type: str = Field(min_length=1)
    gpus: int = Field(ge=1, le=100_000)
    start: Timestamp = Field(description="window start: epoch seconds or a UTC datetime")
    hours: float = Field(gt=0, le=24 * 366)
    repeat: Literal["daily", "weekly"] | None = None
    count: int = Field(default=1, ge=1, le=1000)

    @model_validator(mode="after")
    def _recurrence(self) -> ReservationSpec:
        if not 0 <= to_epoch(self.start) <= LAST_EPOCH:
            raise ValueError("start must be between 1970 and 2100 (UTC)")
        period = {"daily": 24, "weekly": 24 * 7}.get(self.repeat or "", None)
        if period is not None and self.hours > period:
            raise ValueError(f"a {self.repeat} window cannot last {self.hours} h (> {period} h)")
        if self.repeat is None and self.count != 1:
            raise ValueError("count is for recurring reservations (repeat = daily or weekly)")
        return self

    def windows(self) -> list[tuple[float, float]]:
        start = to_epoch(self.start)
        step = {"daily": 86400.0, "weekly": 7 * 86400.0}.get(self.repeat or "", 0.0)
        return [(start + k * step, start + k * step + self.hours * 3600) for k in range(self.count)]
