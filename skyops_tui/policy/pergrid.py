"""What the planner and the checks keep per grid between passes, looked up fast.

A `weakref.WeakKeyDictionary` makes a new weak reference on every lookup (Python
code, about half a microsecond); the kept verdicts are read several times a pass, and
a long simulation runs hundreds of thousands of passes. `PerGrid` keys on the grid's
`id` in a plain dict instead and forgets a grid's entry when the grid is collected,
before its `id` can be reused. Like the weak dictionary it never copies: a grid's
snapshot (`Grid.snapshot`) starts with nothing kept.
"""

from __future__ import annotations

import weakref
from typing import Generic, TypeVar

V = TypeVar("V")


class PerGrid(Generic[V]):
    """One value per live grid."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, V] = {}

    def get(self, grid: object, default: V | None = None) -> V | None:
        return self._by_id.get(id(grid), default)

    def put(self, grid: object, value: V) -> V:
        key = id(grid)
        by_id = self._by_id
        if key not in by_id:
            weakref.finalize(grid, by_id.pop, key, None)
        by_id[key] = value
        return value

    def setdefault(self, grid: object, value: V) -> V:
        got = self._by_id.get(id(grid))
        return self.put(grid, value) if got is None else got

    def __len__(self) -> int:
        return len(self._by_id)
