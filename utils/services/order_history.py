"""The trader's orders as pages show them: working orders, a filtered history in pages, the export.

Every listing reads only the orders table (rows show order columns; connection labels come from
the user's connections, loaded once by the page), so the number of queries does not grow with
the number of orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from models import Order, User
from utils.enums import LIVE_ORDER_STATUSES, OrderStatus
from utils.extensions import db
from utils.services.paging import Page, paginate

PAGE_SIZE = 50
EXPORT_LIMIT = 50_000
# Offered in the ticket's symbol list next to what the user has traded (free text is allowed too).
SUGGESTED_SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY", "QQQ", "BTC-USD", "ETH-USD", "SOL-USD")


@dataclass(frozen=True)
class OrderFilter:
    """What the history narrows by; empty fields do not filter (dates inclusive, UTC days)."""

    since: date | None = None
    until: date | None = None
    symbol: str = ""
    status: OrderStatus | None = None
    connection_id: int | None = None


def working_orders(user: User) -> list[Order]:
    """The user's live orders (not yet filled, cancelled, rejected, expired or replaced), newest first."""
    statement = db.select(Order).where(Order.user_id == user.id, Order.status.in_(LIVE_ORDER_STATUSES))
    return list(db.session.scalars(statement.order_by(Order.id.desc())))


def history(user: User, where: OrderFilter, page: int = 1) -> Page[Order]:
    """One page of the user's matching orders, newest first (a page past the end shows the last)."""
    statement = db.select(Order).where(*_conditions(user, where)).order_by(Order.id.desc())
    return paginate(statement, page, PAGE_SIZE, clamp=True)


def export(user: User, where: OrderFilter) -> list[Order]:
    """Every matching order for the CSV export (up to EXPORT_LIMIT), newest first."""
    statement = db.select(Order).where(*_conditions(user, where)).order_by(Order.id.desc())
    return list(db.session.scalars(statement.limit(EXPORT_LIMIT)))


def suggested_symbols(user: User) -> list[str]:
    """Symbols for the ticket's list: those the user has ordered, then common ones."""
    traded = set(db.session.scalars(db.select(Order.symbol).where(Order.user_id == user.id).distinct()))
    return sorted(traded) + [symbol for symbol in SUGGESTED_SYMBOLS if symbol not in traded]


def _conditions(user: User, where: OrderFilter) -> list[Any]:
    conditions: list[Any] = [Order.user_id == user.id]
    if where.symbol.strip():
        conditions.append(Order.symbol == where.symbol.strip().upper())
    if where.status is not None:
        conditions.append(Order.status == where.status)
    if where.connection_id is not None:
        conditions.append(Order.connection_id == where.connection_id)
    if where.since is not None:
        conditions.append(Order.created_at >= datetime.combine(where.since, time.min, tzinfo=UTC))
    if where.until is not None:
        conditions.append(Order.created_at < datetime.combine(where.until + timedelta(days=1), time.min, tzinfo=UTC))
    return conditions
