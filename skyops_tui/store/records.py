"""What the store's read queries return: rows of its append-only logs, with their ids."""

from __future__ import annotations

from dataclasses import dataclass

from ..policy import actions as A


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    at: float
    kind: str
    cause: str
    job: int | None = None
    reservation: str | None = None
    node: str | None = None
    old: str | None = None
    new: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: int
    at: float
    reason: str
    entries: tuple[tuple[str, int], ...]
    job: int | None = None
    reservation: str | None = None


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """A decided action and what became of it. `action` is None for a kind this code
    does not know (written by a newer Skyops); `payload` keeps the raw JSON."""

    id: int
    at: float
    kind: str
    job: int | None
    payload: str
    action: A.Action | None
    status: str  # 'intended' | 'done' | 'failed'
    outcome: str | None = None
    done_at: float | None = None
