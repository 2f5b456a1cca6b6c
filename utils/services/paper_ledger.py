"""The paper broker's storage in the database (implements utils.brokers.paper.PaperStore).

A session locks the paper account row (utils.rowlock: FOR UPDATE on PostgreSQL, the write lock on
SQLite), so the web and the workers never match the same account at once; every change is
committed on a clean exit and rolled back on an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from models import BrokerConnection, PaperAccount, PaperOrder, PaperPosition
from utils.brokers import base
from utils.brokers import paper as engine
from utils.brokers.base import TERMINAL_STATUSES
from utils.enums import OrderStatus
from utils.exceptions import NotFoundError
from utils.extensions import db
from utils.rowlock import locked_one

WORKING_STATUSES = [status for status in OrderStatus if status not in TERMINAL_STATUSES]


class DatabasePaperStore:
    """PaperStore over the paper_accounts, paper_positions and paper_orders tables."""

    @contextmanager
    def session(self, account_id: str) -> Iterator[engine.PaperAccountState]:
        """Load the account locked, yield its state, persist it on a clean exit."""
        account = _locked_account(account_id)
        loaded = _Rows(
            positions={row.symbol: row for row in _positions(account)},
            orders={row.order_key: row for row in _working_orders(account)},
        )
        state = engine.PaperAccountState(
            account_id=account.account_key,
            cash=account.cash,
            starting_cash=account.starting_cash,
            positions={key: engine.PaperPosition(p.quantity, p.average_price) for key, p in loaded.positions.items()},
            orders={key: _to_order(row) for key, row in loaded.orders.items()},
        )
        try:
            yield state
        except BaseException:
            db.session.rollback()
            raise
        _persist(account, loaded, state)
        db.session.commit()

    def find_order(self, account_id: str, order_id: str) -> engine.PaperOrder | None:
        """One order of the account by its id, in any status."""
        row = db.session.scalar(
            db.select(PaperOrder)
            .join(PaperAccount)
            .where(PaperAccount.account_key == account_id, PaperOrder.order_key == order_id)
        )
        return None if row is None else _to_order(row)

    def list_orders(
        self, account_id: str, since: datetime, until: datetime, status: OrderStatus | None
    ) -> list[engine.PaperOrder]:
        """Orders created in a window, optionally of one status, oldest first."""
        statement = (
            db.select(PaperOrder)
            .join(PaperAccount)
            .where(PaperAccount.account_key == account_id, PaperOrder.created_at.between(since, until))
            .order_by(PaperOrder.created_at, PaperOrder.id)
        )
        if status is not None:
            statement = statement.where(PaperOrder.status == status)
        return [_to_order(row) for row in db.session.scalars(statement)]

    def find_by_client_order_id(self, account_id: str, client_order_id: str) -> engine.PaperOrder | None:
        """The account's order with this client order id (unique per account), in any status."""
        row = db.session.scalar(
            db.select(PaperOrder)
            .join(PaperAccount)
            .where(PaperAccount.account_key == account_id, PaperOrder.client_order_id == client_order_id)
        )
        return None if row is None else _to_order(row)

    def list_filled_orders(self, account_id: str, since: datetime, until: datetime) -> list[engine.PaperOrder]:
        """Orders with fills that may lie in [since, until] (the broker filters by fill time).

        The filled-quantity test runs in Python: on SQLite money is TEXT, so SQL compares it as text.
        """
        statement = (
            db.select(PaperOrder)
            .join(PaperAccount)
            .where(
                PaperAccount.account_key == account_id,
                PaperOrder.created_at <= until,
                db.or_(PaperOrder.closed_at.is_(None), PaperOrder.closed_at >= since),
            )
            .order_by(PaperOrder.created_at, PaperOrder.id)
        )
        return [_to_order(row) for row in db.session.scalars(statement) if row.fills]


def paper_connections_with_working_orders() -> list[BrokerConnection]:
    """Connections whose paper account has at least one working order, in one query (oldest first)."""
    working = (
        db.select(PaperOrder.id)
        .where(PaperOrder.account_id == PaperAccount.id, PaperOrder.status.in_(WORKING_STATUSES))
        .exists()
    )
    statement = (
        db.select(BrokerConnection)
        .join(PaperAccount, PaperAccount.connection_id == BrokerConnection.id)
        .where(working)
        .order_by(PaperAccount.id)
    )
    return list(db.session.scalars(statement))


def _locked_account(account_key: str) -> PaperAccount:
    account = locked_one(PaperAccount, PaperAccount.account_key == account_key)
    if account is None:
        raise NotFoundError("No such paper account.")
    return account


def _positions(account: PaperAccount) -> list[PaperPosition]:
    statement = db.select(PaperPosition).where(PaperPosition.account_id == account.id)
    return list(db.session.scalars(statement.execution_options(populate_existing=True)))


def _working_orders(account: PaperAccount) -> list[PaperOrder]:
    statement = db.select(PaperOrder).where(
        PaperOrder.account_id == account.id, PaperOrder.status.in_(WORKING_STATUSES)
    )
    return list(db.session.scalars(statement.execution_options(populate_existing=True)))


@dataclass
class _Rows:
    """The rows a session loaded under the account lock: what its state was built from."""

    positions: dict[str, PaperPosition]
    orders: dict[str, PaperOrder]


def _persist(account: PaperAccount, loaded: _Rows, state: engine.PaperAccountState) -> None:
    """Write the state back over the rows it was loaded from (orders entered meanwhile are new rows)."""
    account.cash = state.cash
    rows = dict(loaded.positions)
    for symbol, position in state.positions.items():
        row = rows.pop(symbol, None) or PaperPosition(account_id=account.id, symbol=symbol)
        if position.quantity == 0:
            if row.id is not None:
                db.session.delete(row)
            continue
        row.quantity, row.average_price = position.quantity, position.average_price
        db.session.add(row)
    for row in rows.values():
        db.session.delete(row)
    for order in state.orders.values():
        order_row = loaded.orders.get(order.order_id) or PaperOrder(account_id=account.id, order_key=order.order_id)
        _copy_order(order, order_row)
        db.session.add(order_row)


_ORDER_FIELDS = (
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "time_in_force",
    "status",
    "quantity",
    "limit_price",
    "stop_price",
    "trail_offset",
    "trail_percent",
    "trail_anchor",
    "triggered",
    "filled_quantity",
    "status_detail",
    "expires_at",
    "closed_at",
    "created_at",
)


def _copy_order(order: engine.PaperOrder, row: PaperOrder) -> None:
    for name in _ORDER_FIELDS:
        setattr(row, name, getattr(order, name))
    row.replaces_order_key = order.replaces_order_id
    row.fills = [_fill_to_json(fill) for fill in order.fills]


def _to_order(row: PaperOrder) -> engine.PaperOrder:
    values: dict[str, Any] = {name: getattr(row, name) for name in _ORDER_FIELDS}
    return engine.PaperOrder(
        order_id=row.order_key,
        replaces_order_id=row.replaces_order_key,
        fills=[_fill_from_json(item) for item in row.fills],
        **values,
    )


def _fill_to_json(fill: base.Fill) -> dict[str, str]:
    return {
        "fill_id": fill.fill_id,
        "quantity": str(fill.quantity),
        "price": str(fill.price),
        "commission": str(fill.commission),
        "time": fill.time.isoformat(),
    }


def _fill_from_json(item: dict[str, str]) -> base.Fill:
    return base.Fill(
        fill_id=item["fill_id"],
        quantity=Decimal(item["quantity"]),
        price=Decimal(item["price"]),
        commission=Decimal(item["commission"]),
        time=datetime.fromisoformat(item["time"]),
    )
