"""The ledger: balances and the transactions behind them.

A user sees their own account and the transactions that touch it (their own account
or money held for their reservations); an operator sees every account, with the sum
of all balances, which double entry keeps at zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable

from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.events import FeedScreen, when
from skyops_tui.domain.model import DEPOSITS, REVENUE, Transaction, user_account
from skyops_tui.domain.money import fmt

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime


def account_kind(account: str) -> str:
    if account.startswith("user:"):
        return "user"
    if account.startswith("held:"):
        return "held for reservation"
    if account == REVENUE:
        return "grid revenue"
    if account == DEPOSITS:
        return "money paid in"
    return "other"


def account_order(account: str) -> tuple[int, str]:
    order = {"user": 0, "held for reservation": 1, "grid revenue": 2, "money paid in": 3}
    return order.get(account_kind(account), 4), account


class LedgerScreen(FeedScreen):
    """Balances above, transactions below (newest at the bottom, followed)."""

    CSS_PATH = ["events.tcss", "ledger.tcss"]
    SCOPE = "ledger"
    VIEW = "ledger"
    NOUN = "transactions"
    FILTER_HINT = "filter transactions: e.g. refund, kim, nightly-a100 (all words must match)"
    BINDINGS = bindings("ledger")
    COLUMNS = (
        ("at", "Time (UTC)"),
        ("amount", "Amount"),
        ("flow", "From → to"),
        ("reason", "Reason"),
        ("ref", "Job / reservation"),
    )

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, id="ledger")
        self._balances: tuple = ()

    # balances ----------------------------------------------------------------
    def compose_feed(self) -> Iterable[Widget]:
        table: DataTable = DataTable(id="balances", cursor_type="none", show_cursor=False)
        table.add_column("Account", key="account")
        table.add_column("Kind", key="kind")
        table.add_column("Balance", key="balance")
        yield table

    def accounts(self) -> list[tuple[str, int]]:
        rt = self.runtime
        g = rt.grid
        if rt.is_operator:
            return sorted(g.balances.items(), key=lambda kv: account_order(kv[0]))
        mine = [(user_account(rt.user), g.balance(rt.user))]
        for res in g.reservations.values():
            acct = f"held:{res.name}"
            if res.user == rt.user and g.balances.get(acct):
                mine.append((acct, g.balances[acct]))
        return mine

    def refresh_extra(self) -> None:
        rt = self.runtime
        cur = rt.cfg.cluster.currency
        rows = self.accounts()
        key = (rt.is_operator, tuple(rows))
        if key == self._balances:
            return
        self._balances = key
        table = self.query_one("#balances", DataTable)
        table.clear()
        for acct, bal in rows:
            table.add_row(acct, account_kind(acct), Text(fmt(bal, cur), justify="right"))
        if rt.is_operator:
            total = sum(b for _, b in rows)
            check = "balanced ✓" if total == 0 else "NOT BALANCED"
            table.add_row(
                Text("sum of all accounts", style="bold"),
                check,
                Text(fmt(total, cur), justify="right", style="bold"),
            )
        table.border_title = "All accounts" if rt.is_operator else f"Your account ({rt.user})"

    # transactions ------------------------------------------------------------
    def feed(self) -> Sequence[Transaction]:
        return self.runtime.feed.transactions

    def listed(self, tx: Transaction) -> bool:
        rt = self.runtime
        if rt.is_operator:
            return True
        mine = user_account(rt.user)
        for acct, _ in tx.entries:
            if acct == mine:
                return True
            if acct.startswith("held:"):
                res = rt.grid.reservations.get(acct[5:])
                if res is not None and res.user == rt.user:
                    return True
        return False

    def row(self, tx: Transaction) -> tuple:
        cur = self.runtime.cfg.cluster.currency
        debits = [(a, -v) for a, v in tx.entries if v < 0]
        credits = [(a, v) for a, v in tx.entries if v > 0]
        amount = sum(v for _, v in credits)
        if len(debits) == 1 and len(credits) == 1:
            flow = f"{debits[0][0]} → {credits[0][0]}"
        else:
            flow = ", ".join(f"{a} {'+' if v > 0 else ''}{fmt(v, cur)}" for a, v in tx.entries)
        ref = []
        if tx.job is not None:
            job = self.runtime.grid.jobs.get(tx.job)
            ref.append(f"#{tx.job} {job.name}" if job is not None else f"#{tx.job}")
        if tx.reservation:
            ref.append(tx.reservation)
        return (
            when(tx.at, self.runtime.clock.now()),
            Text(fmt(amount, cur), justify="right"),
            flow,
            tx.reason,
            " · ".join(ref) or "—",
        )
