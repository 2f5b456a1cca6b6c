"""Reads the REST API offers beyond the pages: the user's orders and trades in pages of any size,
and quotes through one of the user's connections.

Listings count and fetch in two queries whatever the page; everything is scoped to the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import selectinload

from models import Order, Trade, User
from utils.brokers.base import Quote
from utils.enums import Provider
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.services import connections, market_data
from utils.services.order_tickets import SYMBOL
from utils.services.paging import Page, paginate

MAX_PER_PAGE = 100
MAX_QUOTE_SYMBOLS = 50


@dataclass(frozen=True)
class ListQuery:
    """Which page of a listing, narrowed by what; empty fields do not filter."""

    status: str = ""
    symbol: str = ""
    connection_id: int | None = None
    page: int = 1
    per_page: int = 50


def orders(user: User, query: ListQuery) -> Page[Order]:
    """The user's matching orders, newest first, each with its trade (its protection is shown)."""
    return _paged(Order, user, query, selectinload(Order.trade))


def trades(user: User, query: ListQuery) -> Page[Trade]:
    """The user's matching trades, newest first."""
    return _paged(Trade, user, query)


def quotes(user: User, connection_id: int, symbols: list[str]) -> list[Quote]:
    """Quotes for up to MAX_QUOTE_SYMBOLS symbols from one of the user's connections (briefly cached)."""
    wanted = sorted({symbol.strip().upper() for symbol in symbols if symbol.strip()})
    if not wanted or len(wanted) > MAX_QUOTE_SYMBOLS:
        raise InvalidInputError(f"Ask for 1 to {MAX_QUOTE_SYMBOLS} symbols.", details={"field": "symbols"})
    if bad := [symbol for symbol in wanted if not SYMBOL.match(symbol)]:
        raise InvalidInputError(f"Not a symbol: {bad[0][:20]}.", details={"field": "symbols"})
    connection = connections.get_connection(user, connection_id)
    broker = connections.broker_for(connection)
    found = market_data.quotes(Provider(connection.provider), wanted, broker.quotes)[0]
    return [found[symbol] for symbol in wanted if symbol in found]


def _conditions(model: Any, user: User, where: ListQuery) -> list[Any]:
    conditions: list[Any] = [model.user_id == user.id]
    if where.status:
        conditions.append(model.status == where.status)
    if where.symbol.strip():
        conditions.append(model.symbol == where.symbol.strip().upper())
    if where.connection_id is not None:
        conditions.append(model.connection_id == where.connection_id)
    return conditions


def _paged(model: Any, user: User, query: ListQuery, *loads: Any) -> Page[Any]:
    page, per_page = query.page, query.per_page
    if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
        raise InvalidInputError(f"page starts at 1; per_page is 1 to {MAX_PER_PAGE}.", details={"field": "per_page"})
    statement = db.select(model).where(*_conditions(model, user, query)).order_by(model.id.desc()).options(*loads)
    return paginate(statement, page, per_page)
