"""What the grid changed since the store last wrote it: the records to append (events,
ledger transactions, price changes) and the rows to rewrite (dirty jobs, reservations,
nodes). The grid only adds to it; whoever persists drains it, in one place, so no caller
has to know which of its parts to reset."""

from __future__ import annotations

from ..domain.model import Event, Transaction

Price = tuple[float, str, int]  # (at, gpu type, price per GPU-hour)
Records = tuple[list[Event], list[Transaction], list[Price]]


class Outbox:
    __slots__ = (
        "events",
        "transactions",
        "prices",
        "dirty_jobs",
        "dirty_reservations",
        "dirty_nodes",
    )

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.transactions: list[Transaction] = []
        self.prices: list[Price] = []
        self.dirty_jobs: set[int] = set()
        self.dirty_reservations: set[str] = set()
        self.dirty_nodes: set[str] = set()

    def take_records(self) -> Records:
        """The records, handed over (fresh lists replace them); the dirty marks stay, for
        a store that writes them later (the simulator's checks read records first)."""
        records = self.events, self.transactions, self.prices
        self.events, self.transactions, self.prices = [], [], []
        return records

    def drain(self) -> Records:
        """Everything is written (or, with no store, nothing needs to be): the records,
        handed over, and the dirty marks cleared."""
        self.dirty_jobs.clear()
        self.dirty_reservations.clear()
        self.dirty_nodes.clear()
        return self.take_records()
