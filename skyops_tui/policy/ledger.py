"""The ledger: balances by account and the double-entry postings that change them.
Every posting balances (its entries sum to zero) and goes to the outbox, which the
store appends in the same transaction as the state it pays for (docs/store.md)."""

from __future__ import annotations

from ..domain.model import Transaction
from .outbox import Outbox

# funding.py's kept lowest balance (see `Ledger.low_mark`).
LowMark = tuple[dict[str, int], int, int, int, object, int, object, int, float, float]


class Ledger:
    __slots__ = ("balances", "_outbox", "_users", "_users_seen", "debited", "low_mark")

    def __init__(self, outbox: Outbox, balances: dict[str, int] | None = None) -> None:
        self.balances: dict[str, int] = {} if balances is None else balances
        self._outbox = outbox
        self._users: list[str] = []
        self._users_seen = -1  # the count of accounts `_users` was listed from
        # Everything ever taken from any account (each posting's negative side): a
        # balance can have fallen since a moment by at most what this grew since.
        # Whatever writes `balances` must add to it (grid.py's billing does, inline).
        self.debited = 0
        # funding.py's lowest user balance as last counted: (the balances it was
        # counted in, their count of accounts, the lowest, `debited` then, and what the
        # bar was judged on: the config, the node count and last node, the credit
        # limit, the horizon and the grid's cost over it).
        self.low_mark: LowMark | None = None

    def post(
        self,
        now: float,
        reason: str,
        entries: list[tuple[str, int]],
        job: int | None = None,
        reservation: str | None = None,
    ) -> Transaction | None:
        """Post the non-zero entries as one transaction; None when all are zero."""
        entries = [(a, v) for a, v in entries if v]
        if not entries:
            return None
        tx = Transaction(now, reason, entries, job, reservation)
        if not tx.balanced:
            raise AssertionError(f"unbalanced transaction: {tx}")
        balances = self.balances
        for acct, amount in entries:
            balances[acct] = balances.get(acct, 0) + amount
            if amount < 0:
                self.debited -= amount
        self._outbox.transactions.append(tx)
        return tx

    def transfer(
        self, now: float, reason: str, payer: str, payee: str, amount: int, job: int
    ) -> Transaction:
        """Post `amount` (not zero) from `payer` to `payee`: what `post` makes of
        `[(payer, -amount), (payee, amount)]`, balanced by its making, so billing's
        postings (millions in a long simulation) skip the filter and the check."""
        tx = Transaction(now, reason, [(payer, -amount), (payee, amount)], job, None)
        balances = self.balances
        balances[payer] = balances.get(payer, 0) - amount
        balances[payee] = balances.get(payee, 0) + amount
        self.debited += amount if amount > 0 else -amount
        self._outbox.transactions.append(tx)
        return tx

    def user_accounts(self) -> list[str]:
        """The users' accounts (`user:…`), in the order they opened. Accounts are only
        ever opened, never closed: the list is made again only when their count changes
        (funding reads it every pass)."""
        if self._users_seen != len(self.balances):
            self._users = [a for a in self.balances if a.startswith("user:")]
            self._users_seen = len(self.balances)
        return self._users
