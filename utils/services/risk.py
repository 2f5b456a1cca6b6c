"""Risk on the database side: limits and snapshots from rows, and the audited check.

The decision itself is pure (utils/risk); this module only reads what it needs in a constant
number of queries, records rejections in the audit trail, and commits. Trading states live in
utils/services/trading_state.py and are re-exported here.

Money is summed in Python, never in SQL: on SQLite ``Money`` columns are TEXT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any, cast

from flask import current_app

from models import BrokerConnection, Order, RiskSettings, Trade, User
from utils.brokers.base import Quote
from utils.enums import LIVE_ORDER_STATUSES, OrderPurpose, OrderSide, TradeStatus, TradingState
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.risk.engine import RiskDecision, RiskEngine
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot, reference_price
from utils.services import audit
from utils.services.trading_state import (
    TradingStatus,
    enter_reducing,
    global_state_columns,
    global_status_of,
    global_trading_state,
    set_global_trading_state,
    set_user_trading_state,
    settings_row,
    status_of,
    user_trading_state,
)

__all__ = [
    "ENGINE",
    "OpenTrade",
    "TradingStatus",
    "connection_hold",
    "engine",
    "evaluate",
    "global_trading_state",
    "limits_for",
    "preview",
    "reduces_position",
    "set_global_trading_state",
    "set_user_trading_state",
    "snapshot_for",
    "trading_states",
    "user_trading_state",
]

log = get_logger(__name__)
ENGINE = RiskEngine()
OPEN_TRADE_STATUSES = (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED, TradeStatus.CLOSING)
# A position or pending order whose value cannot be known: exposure rules fail closed on it.
UNKNOWN = Decimal("NaN")
DAILY_LOSS_REASON = "daily loss limit reached"
# (RiskSettings column, config key): a NULL column means "use the configured default".
_LIMIT_DEFAULTS = (
    ("max_order_notional", "RISK_MAX_ORDER_NOTIONAL"),
    ("max_position_notional", "RISK_MAX_POSITION_NOTIONAL"),
    ("max_total_exposure", "RISK_MAX_TOTAL_EXPOSURE"),
    ("max_open_positions", "RISK_MAX_OPEN_POSITIONS"),
    ("max_orders_per_day", "RISK_MAX_ORDERS_PER_DAY"),
    ("max_daily_loss", "RISK_MAX_DAILY_LOSS"),
    ("equities_market_hours_only", "RISK_EQUITIES_MARKET_HOURS_ONLY"),
    ("max_quote_age_seconds", "RISK_MAX_QUOTE_AGE_SECONDS"),
    ("require_stop_loss", "RISK_REQUIRE_STOP_LOSS"),
    ("max_stop_distance_pct", "RISK_MAX_STOP_DISTANCE_PCT"),
)
# Which open trades an exit of this side reduces: sells close longs, buys cover shorts.
_CLOSES = {
    OrderSide.SELL: OrderSide.BUY,
    OrderSide.BUY_TO_COVER: OrderSide.SELL_SHORT,
    OrderSide.BUY: OrderSide.SELL_SHORT,
}


@dataclass(frozen=True)
class OpenTrade:
    """One trade with quantity still open (filled minus exited), valued at cost."""

    trade_id: int
    connection_id: int
    symbol: str
    side: OrderSide
    open_quantity: Decimal
    average_price: Decimal | None


# ---------------------------------------------------------------------------- limits


def limits_for(user: User) -> RiskLimits:
    """The user's limits: their RiskSettings row where set, the configured defaults elsewhere."""
    return _limits(settings_row(user))


def parse_symbols(text: str) -> frozenset[str]:
    """Symbols from a comma/space separated list, upper-cased ("aapl, msft" -> {"AAPL", "MSFT"})."""
    return frozenset(symbol for symbol in re.split(r"[\s,;]+", (text or "").upper()) if symbol)


def _limits(row: RiskSettings | None) -> RiskLimits:
    config = current_app.config
    values: dict[str, Any] = {}
    for column, key in _LIMIT_DEFAULTS:
        value = getattr(row, column) if row is not None else None
        values[column] = config[key] if value is None else value
    return RiskLimits(
        **values,
        symbol_allowlist=parse_symbols(row.symbol_allowlist if row is not None else ""),
        symbol_denylist=parse_symbols(row.symbol_denylist if row is not None else ""),
    )


# ---------------------------------------------------------------------------- snapshot


def snapshot_for(
    user: User,
    connection_id: int,
    intent: OrderIntent,
    quote: Quote | None,
    market_open: bool,
    now: datetime | None = None,
) -> RiskSnapshot:
    """The user's account as the risk engine sees it, in a constant number of queries.

    Exposure is gross notional per symbol across all the user's connections: each open trade at
    COST (open quantity x average fill price), plus the unfilled remainder of each live entry
    order (at its limit or stop price, else its trade's price, else this quote for the same
    symbol). What cannot be valued counts as unknown (NaN), so the exposure rules block entries
    rather than guess. Open positions count trades with quantity open (OPEN, PARTIALLY_FILLED,
    CLOSING) plus pending entries. Today is the UTC day of ``now``. A connection held by a failing
    reconciliation is REDUCING (entries refused, exits pass).
    """
    return _snapshot(user, settings_row(user), connection_id, intent, quote, market_open, now or utcnow())


def _snapshot(
    user: User,
    row: RiskSettings | None,
    connection_id: int,
    intent: OrderIntent,
    quote: Quote | None,
    market_open: bool,
    now: datetime,
) -> RiskSnapshot:
    day_start = start_of_utc_day(now)
    trades, realized_today = _trades_and_realized_pnl(user.id, day_start)
    pending = _live_entry_orders(user.id)
    exposure = _exposure(trades, pending, _price_for(intent, quote))
    counts = _counts(user.id, connection_id, day_start)
    user_status, global_status = status_of(row), counts.global_state
    return RiskSnapshot(
        now=now,
        user_state=user_status.state,
        user_state_reason=user_status.reason,
        global_state=global_status.state,
        global_state_reason=global_status.reason,
        quote=quote,
        market_open=market_open,
        exposure_by_symbol=exposure,
        total_exposure=sum(exposure.values(), Decimal(0)),
        open_positions=len({("trade", t.trade_id) for t in trades} | {_position_key(order) for order in pending}),
        entry_orders_today=counts.entries_today,
        realized_pnl_today=realized_today,
        reduces_position=reduces_position(intent, connection_id, trades),
        connection_state=TradingState.ACTIVE if counts.hold is None else TradingState.REDUCING,
        connection_state_reason=counts.hold or "",
    )


def trading_states(user_id: int, connection_id: int, now: datetime | None = None) -> RiskSnapshot:
    """A snapshot holding only the platform's, the user's and the connection's trading states, read
    fresh in one statement: all that ``TradingStateRule`` weighs when a claimed entry is sent."""
    user_state = db.select(RiskSettings.trading_state).where(RiskSettings.user_id == user_id).scalar_subquery()
    user_reason = db.select(RiskSettings.trading_state_reason).where(RiskSettings.user_id == user_id)
    found, value, hold, state, reason = db.session.execute(
        db.select(
            *global_state_columns(),
            _hold_reason(connection_id).scalar_subquery(),
            user_state,
            user_reason.scalar_subquery(),
        )
    ).one()
    global_status = global_status_of(found, value)
    return RiskSnapshot(
        now=now or utcnow(),
        user_state=TradingState(state or TradingState.ACTIVE),
        user_state_reason=reason or "",
        global_state=global_status.state,
        global_state_reason=global_status.reason,
        connection_state=TradingState.ACTIVE if hold is None else TradingState.REDUCING,
        connection_state_reason=hold or "",
    )


def connection_hold(connection_id: int) -> str | None:
    """Why entries on this connection are held (its reconciliation is failing), or None; read fresh."""
    return db.session.scalar(_hold_reason(connection_id))


def _hold_reason(connection_id: int) -> Any:
    return db.select(BrokerConnection.reconcile_hold_reason).where(BrokerConnection.id == connection_id)


def start_of_utc_day(moment: datetime) -> datetime:
    """Midnight UTC of the day containing ``moment``."""
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _trades_and_realized_pnl(user_id: int, since: datetime) -> tuple[list[OpenTrade], Decimal]:
    """The user's trades with quantity still open (open quantity computed in Python) and the realized
    P&L of trades closed since ``since``, in one query."""
    columns = (Trade.id, Trade.connection_id, Trade.symbol, Trade.side, Trade.status, Trade.realized_pnl)
    quantities = (Trade.filled_quantity, Trade.exit_filled_quantity, Trade.average_fill_price)
    closed_since = db.and_(Trade.status == TradeStatus.CLOSED, Trade.closed_at >= since)
    wanted = db.or_(Trade.status.in_(OPEN_TRADE_STATUSES), closed_since)
    rows = db.session.execute(db.select(*columns, *quantities).where(Trade.user_id == user_id, wanted)).all()
    closed = [row for row in rows if row.status == TradeStatus.CLOSED]
    realized = sum((row.realized_pnl for row in closed if row.realized_pnl is not None), Decimal(0))
    return _open_only(row for row in rows if row.status != TradeStatus.CLOSED), realized


def _open_only(rows: Iterable[Any]) -> list[OpenTrade]:
    trades = [
        OpenTrade(
            row.id,
            row.connection_id,
            row.symbol.upper(),
            row.side,
            row.filled_quantity - row.exit_filled_quantity,
            row.average_fill_price,
        )
        for row in rows
    ]
    return [trade for trade in trades if trade.open_quantity > 0]


def reduces_position(intent: OrderIntent, connection_id: int, trades: Iterable[OpenTrade]) -> bool:
    """True when the order only reduces what is open on this connection and symbol.

    A SELL reduces longs, a BUY_TO_COVER (or BUY) reduces shorts, and never by more than is open.
    """
    closes = _CLOSES.get(intent.side)
    if closes is None:
        return False
    symbol = intent.symbol.upper()
    open_quantity = sum(
        (t.open_quantity for t in trades if (t.connection_id, t.symbol, t.side) == (connection_id, symbol, closes)),
        Decimal(0),
    )
    return Decimal(0) < intent.quantity <= open_quantity


def _live_entry_orders(user_id: int) -> list[Any]:
    statement = (
        db.select(
            Order.id,
            Order.trade_id,
            Order.symbol,
            Order.quantity,
            Order.filled_quantity,
            Order.limit_price,
            Order.stop_price,
            Trade.price.label("trade_price"),
        )
        .outerjoin(Trade, Trade.id == Order.trade_id)
        .where(Order.user_id == user_id, Order.purpose == OrderPurpose.ENTRY, Order.status.in_(LIVE_ORDER_STATUSES))
    )
    return list(db.session.execute(statement))


def _exposure(
    trades: list[OpenTrade], pending: list[Any], intent_price: tuple[str, Decimal | None]
) -> dict[str, Decimal]:
    exposure: dict[str, Decimal] = {}
    for trade in trades:
        cost = trade.average_price if trade.average_price is not None else _unknown("trade", trade.trade_id)
        exposure[trade.symbol] = exposure.get(trade.symbol, Decimal(0)) + trade.open_quantity * cost
    for order in pending:
        remaining = order.quantity - order.filled_quantity
        if remaining <= 0:
            continue
        symbol = order.symbol.upper()
        exposure[symbol] = exposure.get(symbol, Decimal(0)) + remaining * _pending_price(order, intent_price)
    return exposure


def _pending_price(order: Any, intent_price: tuple[str, Decimal | None]) -> Decimal:
    for price in (order.limit_price, order.stop_price, order.trade_price):
        if price is not None:
            return cast(Decimal, price)
    symbol, price = intent_price
    if order.symbol.upper() == symbol and price is not None:
        return price
    return _unknown("order", order.id)


def _price_for(intent: OrderIntent, quote: Quote | None) -> tuple[str, Decimal | None]:
    """The current price of the intent's symbol from its quote (to value pending market orders)."""
    market = OrderIntent(symbol=intent.symbol, side=intent.side, quantity=Decimal(1))
    try:
        return intent.symbol.upper(), reference_price(market, quote)
    except (TypeError, ValueError):
        return intent.symbol.upper(), None


def _unknown(kind: str, identifier: int) -> Decimal:
    log.warning("risk.exposure_unknown", kind=kind, id=identifier)
    return UNKNOWN


def _position_key(order: Any) -> tuple[str, int]:
    return ("trade", order.trade_id) if order.trade_id is not None else ("order", order.id)


@dataclass(frozen=True)
class _Counts:
    """The snapshot's single values, read in one statement."""

    global_state: TradingStatus
    hold: str | None  # why the connection's entries are held (its reconciliation is failing)
    entries_today: int


def _counts(user_id: int, connection_id: int, since: datetime) -> _Counts:
    entries = db.select(db.func.count(Order.id)).where(
        Order.user_id == user_id, Order.purpose == OrderPurpose.ENTRY, Order.created_at >= since
    )
    found, value, held, count = db.session.execute(
        db.select(*global_state_columns(), _hold_reason(connection_id).scalar_subquery(), entries.scalar_subquery())
    ).one()
    return _Counts(global_state=global_status_of(found, value), hold=held, entries_today=int(count or 0))


# ---------------------------------------------------------------------------- the check


def engine() -> RiskEngine:
    """The app's risk engine: ``app.extensions["risk_engine"]`` when set (another rule set), else ENGINE."""
    configured = current_app.extensions.get("risk_engine", ENGINE)
    return cast(RiskEngine, configured)


def preview(
    user: User,
    connection_id: int,
    intent: OrderIntent,
    quote: Quote | None,
    market_open: bool,
    now: datetime | None = None,
) -> RiskDecision:
    """The decision and projected exposure, with no audit entry and no state change (order ticket)."""
    row = settings_row(user)
    snapshot = _snapshot(user, row, connection_id, intent, quote, market_open, now or utcnow())
    return engine().check(intent, snapshot, _limits(row))


def evaluate(
    user: User,
    connection_id: int,
    intent: OrderIntent,
    quote: Quote | None,
    market_open: bool,
    now: datetime | None = None,
) -> RiskDecision:
    """The gate every order passes (services.orders calls it before storing the intent).

    A rejection is audited ("risk.rejected") and committed; when the daily loss limit is hit an
    ACTIVE user is moved to REDUCING (audited). The caller raises ``decision.raise_if_rejected()``.
    """
    decision = preview(user, connection_id, intent, quote, market_open, now)
    if decision.enter_reducing:
        enter_reducing(user, DAILY_LOSS_REASON)
    if not decision.allowed:
        details = _rejection_details(connection_id, intent, decision)
        audit.record("risk.rejected", actor=None, subject=user, details=details)
        log.info("risk.rejected", user_id=user.id, symbol=intent.symbol, rules=decision.failed_rules)
    if decision.enter_reducing or not decision.allowed:
        db.session.commit()
    return decision


def _rejection_details(connection_id: int, intent: OrderIntent, decision: RiskDecision) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "symbol": intent.symbol,
        "side": str(intent.side),
        "quantity": str(intent.quantity),
        "order_type": str(intent.order_type),
        "purpose": str(intent.purpose),
        "reasons": decision.reasons,
        "rules": decision.failed_rules,
        "projected": decision.projected.as_dict(),
    }
