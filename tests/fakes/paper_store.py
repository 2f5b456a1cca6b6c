"""In-memory doubles for the paper broker: a PaperStore with real session semantics, a price source
whose quotes tests set by hand, and a clock tests move.

The store deep-copies state into each session and back out on a clean exit only, so "persist every
change on a clean exit, nothing on an exception" is really exercised, as is the per-account lock.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from utils.brokers.base import Quote
from utils.brokers.paper import PaperAccountState, PaperOrder, PaperPosition
from utils.enums import OrderStatus
from utils.exceptions import NotFoundError


@dataclass
class _Account:
    cash: Decimal
    starting_cash: Decimal
    positions: dict[str, PaperPosition] = field(default_factory=dict)
    orders: dict[str, PaperOrder] = field(default_factory=dict)  # every order ever, insertion ordered
    lock: threading.RLock = field(default_factory=threading.RLock)


class InMemoryPaperStore:
    """A PaperStore keeping accounts in a dict."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self.commits = 0

    def open_account(self, account_id: str, cash: Decimal | str = "100000") -> None:
        """Create an account with starting cash."""
        self._accounts[account_id] = _Account(cash=Decimal(cash), starting_cash=Decimal(cash))

    def _account(self, account_id: str) -> _Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise NotFoundError(f"no paper account {account_id!r}") from None

    @contextmanager
    def session(self, account_id: str) -> Iterator[PaperAccountState]:
        """Lock the account, hand out a deep copy, and write it back only on a clean exit."""
        account = self._account(account_id)
        with account.lock:
            state = PaperAccountState(
                account_id=account_id,
                cash=account.cash,
                starting_cash=account.starting_cash,
                positions=copy.deepcopy(account.positions),
                orders={oid: copy.deepcopy(order) for oid, order in account.orders.items() if order.is_working},
            )
            yield state
            account.cash = state.cash
            account.positions = {s: copy.deepcopy(p) for s, p in state.positions.items() if p.quantity != 0}
            for order_id, order in state.orders.items():
                account.orders[order_id] = copy.deepcopy(order)
            self.commits += 1

    def find_order(self, account_id: str, order_id: str) -> PaperOrder | None:
        """A copy of one order, any status."""
        order = self._account(account_id).orders.get(order_id)
        return copy.deepcopy(order) if order is not None else None

    def find_by_client_order_id(self, account_id: str, client_order_id: str) -> PaperOrder | None:
        """A copy of the order with this client order id, any status."""
        for order in self._account(account_id).orders.values():
            if order.client_order_id == client_order_id:
                return copy.deepcopy(order)
        return None

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None
    ) -> list[PaperOrder]:
        """Copies of the orders created in [since, until], oldest first."""
        orders = self._account(account_id).orders.values()
        chosen = [o for o in orders if since <= o.created_at <= until and status in (None, o.status)]
        return copy.deepcopy(sorted(chosen, key=lambda order: order.created_at))

    def list_filled_orders(self, account_id: str, since: datetime, until: datetime) -> list[PaperOrder]:
        """Copies of the orders with a fill in [since, until]."""
        orders = self._account(account_id).orders.values()
        chosen = [o for o in orders if any(since <= f.time <= until for f in o.fills)]
        return copy.deepcopy(sorted(chosen, key=lambda order: order.created_at))

    def snapshot(self, account_id: str) -> tuple[Decimal, dict[str, PaperPosition], dict[str, PaperOrder]]:
        """Everything persisted for the account, for before/after comparisons."""
        account = self._account(account_id)
        return account.cash, copy.deepcopy(account.positions), copy.deepcopy(account.orders)


class ManualPrices:
    """A PriceSource whose quotes are set by the test; mark is the bid/ask midpoint."""

    def __init__(self) -> None:
        self._quotes: dict[str, tuple[Decimal, Decimal]] = {}

    def set(self, symbol: str, bid: Decimal | str, ask: Decimal | str | None = None) -> None:
        """Quote ``symbol`` at bid/ask (ask defaults to bid + 0.01)."""
        low = Decimal(bid)
        self._quotes[symbol] = (low, Decimal(ask) if ask is not None else low + Decimal("0.01"))

    def quotes(self, symbols: list[str], at: datetime) -> dict[str, Quote]:
        """Current quotes for the symbols that have one."""
        result = {}
        for symbol in symbols:
            if symbol in self._quotes:
                bid, ask = self._quotes[symbol]
                mid = (bid + ask) / 2
                result[symbol] = Quote(symbol, bid, ask, mid, mid, at)
        return result


class ManualClock:
    """A clock tests move by hand; starts on a Tuesday during the US regular session."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move forward by a timedelta's keyword arguments."""
        self.now += timedelta(**delta)
