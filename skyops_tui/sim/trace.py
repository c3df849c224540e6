"""Workload traces: JSON Lines, one submission a line (every kind is
described in docs/simulator.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from ..domain.errors import InputError, validation_messages
from ..domain.model import Mode
from ..domain.specs import JobSpec, ReservationSpec

NODE_KINDS = ("silent", "back", "lost")
# Lines that need no name: they act on a node, an account or the console itself.
_UNNAMED = (*NODE_KINDS, "deposit", "restart")


class TraceLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = Field(default=None, min_length=1)
    user: str = Field(default="sim", min_length=1)
    submit: float = Field(ge=0)
    kind: Literal[
        "job",
        "reservation",
        "cancel",
        "bid",
        "extend",
        "fail",
        "deposit",
        "silent",
        "back",
        "lost",
        "restart",
    ] = "job"
    mode: Mode | None = None
    gpus: int | None = Field(default=None, ge=1)
    nodes: int | None = Field(default=None, ge=1)
    gpu_type: str | None = None
    runtime: float | None = Field(default=None, ge=0)
    hours: float | None = Field(default=None, gt=0)
    hourly: bool = False
    auto_renew: bool = False
    start: float | None = Field(default=None, ge=0)
    repeat: Literal["daily", "weekly"] | None = None
    count: int = Field(default=1, ge=1)
    reservation: str | None = None
    bid: float | None = Field(default=None, gt=0)
    checkpoint_every: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=0, ge=0)
    renew_hours: float | None = Field(default=None, gt=0)
    exit_code: int = Field(default=1, ge=1, le=255)  # fail
    amount: float | None = Field(default=None, gt=0)  # deposit
    node: str | None = Field(default=None, min_length=1)  # silent, back, lost
    # The line's number in its file (0: not read from a file).
    _line: int = PrivateAttr(default=0)
    # A job line's spec, built once (parsing validates it; the simulator submits it).
    _spec: JobSpec | None = PrivateAttr(default=None)

    @property
    def line(self) -> int:
        return self._line

    @model_validator(mode="after")
    def _kind(self) -> TraceLine:
        if self.kind in NODE_KINDS:
            if self.node is None:
                raise ValueError(f"a {self.kind} line needs node (the node's name)")
        elif self.kind == "deposit":
            if self.amount is None:
                raise ValueError("a deposit line needs amount (currency, > 0) and user")
        elif self.name is None and self.kind not in _UNNAMED:
            raise ValueError(f"a {self.kind} line needs name")
        if self.kind == "extend" and self.hours is None:
            raise ValueError("an extend line needs hours")
        if self.renew_hours is not None and (self.kind != "job" or self.mode is not Mode.PRIORITY):
            raise ValueError("renew_hours belongs to priority job lines")
        if self.kind == "job" and self.mode is None:
            raise ValueError("a job line needs mode (priority, commit or flex)")
        if self.kind == "reservation" and (self.gpu_type is None or self.hours is None):
            raise ValueError("a reservation line needs gpu_type, gpus and hours")
        if self.kind == "bid" and self.bid is None:
            raise ValueError("a bid line needs bid")
        return self

    def job_spec(self) -> JobSpec:
        """The job line's request, built once and kept: parsing builds it to check the
        line, and the simulator submits that same one (building validates every field
        again, a few microseconds a line). A spec is frozen, so sharing it is safe. A
        line is frozen too; one changed through `model_copy(update=...)` would keep
        the old spec, so make a new line instead. The spec is read from pydantic's own
        dict of private attributes: `self._spec` goes through `BaseModel.__getattr__`
        (about 1.5 microseconds, once a job line in a run)."""
        private = self.__pydantic_private__
        spec = private.get("_spec") if private is not None else self._spec
        if spec is None:
            spec = self._spec = self._build_spec()
        return spec

    def _build_spec(self) -> JobSpec:
        return JobSpec(
            name=self.name or "",
            user=self.user,
            mode=self.mode or Mode.FLEX,
            gpus=self.gpus if self.nodes is None else None,
            nodes=self.nodes,
            gpu_type=self.gpu_type,
            hours=self.hours,
            hourly=self.hourly,
            auto_renew=self.auto_renew,
            reservation=self.reservation,
            bid=self.bid,
            runtime=self.runtime,
            checkpoint_every=self.checkpoint_every,
            max_retries=self.max_retries,
            renew_hours=self.renew_hours,
        )

    def reservation_spec(self, epoch: float) -> ReservationSpec:
        return ReservationSpec(
            name=self.name or "",
            user=self.user,
            gpu_type=self.gpu_type or "",
            gpus=self.gpus or 1,
            start=epoch + (self.start if self.start is not None else self.submit),
            hours=self.hours or 1,
            repeat=self.repeat,
            count=self.count,
        )


def parse_lines(lines: Iterable[str], source: str) -> list[TraceLine]:
    out: list[TraceLine] = []
    errors: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{source}:{n}: not valid JSON: {e.msg}")
            continue
        except RecursionError:
            errors.append(f"{source}:{n}: not valid JSON: nested too deeply")
            continue
        except ValueError:  # an integer longer than Python converts
            digits = sys.get_int_max_str_digits()
            errors.append(f"{source}:{n}: not valid JSON: a number longer than {digits} digits")
            continue
        if not isinstance(data, dict):
            errors.append(f"{source}:{n}: a line must be a JSON object")
            continue
        try:
            item = TraceLine.model_validate(data)
        except ValidationError as e:
            errors.extend(validation_messages(f"{source}:{n}", e))
            continue
        try:
            if item.kind == "job":
                item.job_spec()
            elif item.kind == "reservation":
                item.reservation_spec(0)
        except ValidationError as e:
            errors.extend(validation_messages(f"{source}:{n}", e))
            continue
        item._line = n
        out.append(item)
        if len(errors) >= 50:
            break
    if errors:
        raise InputError(errors)
    out.sort(key=lambda t: t.submit)
    return out


def read_trace(path: str | Path) -> list[TraceLine]:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return parse_lines(f, str(path))
    except FileNotFoundError:
        raise InputError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError([f"{path}: cannot read: {e}"]) from None
