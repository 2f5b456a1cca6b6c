"""The stop-loss monitor: one cycle loads every protected open trade, prices it, and closes breaches.

A cycle reads in a constant number of queries (trades, their connections, their live exits),
fetches quotes once per provider and symbol batch, evaluates every trade with pure code
(utils.risk.stops) and closes each breached trade with a market exit EXACTLY ONCE: the exit is
stored by ``orders.close_trade`` (conditional OPEN → CLOSING plus the one-live-exit index), and
the caller sends it. A trade whose broker holds the stop gets one interval for the broker to
act before the monitor steps in. Missing, stale or impossible quotes never close anything: they
are counted, logged and told to the user once.

A run first claims its (cycle key, part) by writing its MonitorRun row: a beat slot whose cycle
key (``slot_key``) was sent twice, by a restarted or a second beat, runs once.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from models import BrokerConnection, MonitorRun, Trade
from utils.brokers.base import Quote
from utils.enums import ConnectionStatus, ProtectionMode, Provider, TradeStatus
from utils.exceptions import ArbionError, TokenExpiredError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.risk import stops
from utils.risk.inputs import looks_like_crypto
from utils.services import (
    connections,
    market_data,
    notifications,
    order_checks,
    orders,
    protection,
    schwab_logins,
    trade_book,
)

log = get_logger(__name__)
UNPRICED = "Not priced: "  # the start of a trade's protection detail while the monitor cannot price it
WATCHED = (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED)


@dataclass
class CycleResult:
    """What one monitor run did; ``exit_order_ids`` are the exits the caller must send."""

    cycle_key: str
    positions: int = 0
    breaches: int = 0
    stale_quotes: int = 0
    errors: int = 0
    quote_calls: int = 0
    duration_ms: int = 0
    exit_order_ids: list[int] = field(default_factory=list)
    skipped: bool = False


def slot_key(now: datetime, interval: float) -> str:
    """The cycle key of the schedule slot ``now`` falls in: the slot's start, UTC, to the second."""
    start = math.floor(now.timestamp() / interval) * interval
    return datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%M%SZ")


def run_cycle(connection_ids: list[int] | None = None, cycle_key: str | None = None, part: int = 0) -> CycleResult:
    """One monitor run over the given connections (all when None), recorded as a MonitorRun (commits).

    Skipped (``skipped``) when this part of this cycle key already ran or runs elsewhere.
    """
    started, clock = utcnow(), time.perf_counter()
    result = CycleResult(cycle_key or uuid.uuid4().hex[:16])
    run = _claim(result.cycle_key, part, started)
    if run is None:
        result.skipped = True
        return result
    trades = _watched_trades(connection_ids)
    result.positions = len(trades)
    by_connection = _connections({trade.connection_id for trade in trades})
    quotes = _quotes(trades, by_connection, result)
    priced_at = utcnow()  # quote ages are judged at fetch time, however long the cycle takes
    marked = [(trade, _mark(trade, by_connection, quotes, priced_at, result)) for trade in trades]
    db.session.commit()  # every anchor, breach time and alert of the cycle in one write
    for trade, decision in marked:
        if decision is not None:
            _act(trade, decision, by_connection.get(trade.connection_id), priced_at, result)
    watchdog(connection_ids, result)
    result.duration_ms = int((time.perf_counter() - clock) * 1000)
    _record(run, result)
    return result


def watchdog(connection_ids: list[int] | None, result: CycleResult) -> None:
    """Re-place or resize broker stops; close a trade whose broker stop is gone and cannot be re-placed."""
    for trade_id in protection.ensure_all(connection_ids):
        _close(db.session.get_one(Trade, trade_id), "Its broker stop was lost and could not be re-placed.", result)


def connection_chunks(size: int) -> list[list[int]]:
    """Connections with watched trades, in chunks of at most ``size`` for fan-out to several workers.

    A chunk never mixes providers: one broker's slow or failing API holds up only its own chunks.
    """
    statement = (
        db.select(BrokerConnection.provider, BrokerConnection.id)
        .where(BrokerConnection.id.in_(db.select(Trade.connection_id).where(Trade.status.in_(WATCHED))))
        .order_by(BrokerConnection.provider, BrokerConnection.id)
    )
    by_provider: dict[str, list[int]] = defaultdict(list)
    for provider, connection_id in db.session.execute(statement):
        by_provider[provider].append(connection_id)
    return [ids[start : start + size] for ids in by_provider.values() for start in range(0, len(ids), size)]


def recent_runs(limit: int = 20) -> list[MonitorRun]:
    """The newest monitor runs first (admin status page)."""
    statement = db.select(MonitorRun).order_by(MonitorRun.started_at.desc(), MonitorRun.id.desc()).limit(limit)
    return list(db.session.scalars(statement))


# ---------------------------------------------------------------------------------- loading


def _watched_trades(connection_ids: list[int] | None) -> list[Trade]:
    """Open trades with any protection, with their orders, in two queries."""
    protected = db.or_(
        Trade.stop_loss_price.is_not(None),
        Trade.take_profit_price.is_not(None),
        Trade.trailing_stop_offset.is_not(None),
        Trade.trailing_stop_percent.is_not(None),
    )
    statement = db.select(Trade).where(Trade.status.in_(WATCHED), protected).options(selectinload(Trade.orders))
    if connection_ids is not None:
        statement = statement.where(Trade.connection_id.in_(connection_ids))
    return list(db.session.scalars(statement.order_by(Trade.id)))


def _connections(ids: Iterable[int]) -> dict[int, BrokerConnection]:
    statement = db.select(BrokerConnection).where(BrokerConnection.id.in_(list(ids)))
    return {connection.id: connection for connection in db.session.scalars(statement)}


def _quotes(trades: list[Trade], by_connection: dict[int, BrokerConnection], result: CycleResult) -> dict[str, Quote]:
    """Quotes for every watched symbol: one call per provider and symbol batch, through any
    connected connection of that provider (market data is the same for every user)."""
    wanted: dict[Provider, set[str]] = defaultdict(set)
    sources: dict[Provider, list[BrokerConnection]] = defaultdict(list)
    for trade in trades:
        connection = by_connection.get(trade.connection_id)
        if connection is None or connection.status != ConnectionStatus.CONNECTED:
            continue
        provider = Provider(connection.provider)
        wanted[provider].add(trade.symbol)
        if connection not in sources[provider]:
            sources[provider].append(connection)
    quotes: dict[str, Quote] = {}
    for provider, symbols in wanted.items():
        quotes |= _provider_quotes(provider, sorted(symbols), sources[provider], result)
    return quotes


def _provider_quotes(
    provider: Provider, symbols: list[str], sources: list[BrokerConnection], result: CycleResult
) -> dict[str, Quote]:
    for connection in sources[:3]:  # a broken connection must not blind the monitor to the provider
        try:
            broker = connections.broker_for(connection)
            found, fetched = market_data.quotes(provider, symbols, broker.quotes)
            result.quote_calls += -(-len(fetched) // broker.capabilities.max_symbols_per_quote)
            return found
        except TokenExpiredError:
            result.errors += 1
            schwab_logins.mark_reconnect_needed(connection)  # the user and the admins are told now
            db.session.commit()
        except ArbionError as exc:
            result.errors += 1
            log.warning("monitor.quotes_failed", provider=provider.value, connection_id=connection.id, error=exc.code)
    return {}


# ---------------------------------------------------------------------------------- evaluating


def _mark(
    trade: Trade,
    by_connection: dict[int, BrokerConnection],
    quotes: dict[str, Quote],
    now: datetime,
    result: CycleResult,
) -> stops.StopDecision | None:
    """Evaluate one trade and note the outcome on it (not committed); the decision when it must close."""
    quote = quotes.get(trade.symbol) if trade.connection_id in by_connection else None
    decision = stops.evaluate(_protection_of(trade), quote, now, current_app.config["STOP_MONITOR_MAX_QUOTE_AGE"])
    if decision.anchor_moved:
        trade.trail_anchor = decision.trail_anchor
    if decision.needs_alert:
        _alert(trade, _unpriced_reason(trade, by_connection, decision.reason), result)
        return None
    if trade.protection_detail.startswith(UNPRICED):
        trade.protection_detail = ""  # priced again: the monitor protects it once more
    if not decision.closes:
        if trade.breached_at is not None:
            trade.breached_at = None
        return None
    result.breaches += 1
    if trade.breached_at is None:
        trade.breached_at = now
    return decision


def _act(
    trade: Trade, decision: stops.StopDecision, connection: BrokerConnection | None, now: datetime, result: CycleResult
) -> None:
    """Close a breached trade, unless its broker stop gets its grace or its market is closed."""
    if _broker_acts_first(trade, decision, now):
        return
    if not _market_open_for(trade, connection):
        trade.protection_detail = f"{decision.reason} The market is closed: closing at the open."[:500]
        db.session.commit()
        return
    _close(trade, decision.reason, result)


def _protection_of(trade: Trade) -> stops.Protection:
    return stops.Protection(
        side=stops.PositionSide.of_entry(trade.side),
        open_quantity=trade_book.open_quantity(trade),
        stop_loss_price=trade.stop_loss_price,
        take_profit_price=trade.take_profit_price,
        trailing_stop_offset=trade.trailing_stop_offset,
        trailing_stop_percent=trade.trailing_stop_percent,
        trail_anchor=trade.trail_anchor,
        symbol=trade.symbol,
    )


def _broker_acts_first(trade: Trade, decision: stops.StopDecision, now: datetime) -> bool:
    """A stop held natively by the broker gets one monitor interval to fill before the backstop."""
    held_by_broker = (stops.StopAction.STOP_LOSS, stops.StopAction.TRAILING_STOP)
    if decision.action not in held_by_broker or trade.protection_mode != ProtectionMode.NATIVE:
        return False
    if protection.protective_order(trade) is None:
        return False
    grace = timedelta(seconds=current_app.config["STOP_MONITOR_INTERVAL"])
    return trade.breached_at is not None and now - trade.breached_at < grace


def _market_open_for(trade: Trade, connection: BrokerConnection | None) -> bool:
    if connection is None or looks_like_crypto(trade.symbol):
        return True
    return order_checks.market_open(connections.broker_for(connection), trade.symbol)


def _close(trade: Trade, reason: str, result: CycleResult) -> None:
    """Cancel a broker stop in the way, then store the one exit (None when another run won)."""
    try:
        if protection.protective_order(trade) is not None:
            broker = connections.broker_for(orders.connection_of(trade))
            if not protection.cancel_protection(trade, broker):
                return  # the broker stop filled (closed by it) or the cancel awaits confirmation
        exit_order = orders.close_trade(trade, f"Monitor: {reason}", notify=f"{trade.symbol}: {reason} Closing.")
    except ArbionError as exc:
        db.session.rollback()
        result.errors += 1
        log.warning("monitor.close_failed", trade_id=trade.id, error=exc.code)
        return
    if exit_order is not None:
        result.exit_order_ids.append(exit_order.id)


def _unpriced_reason(trade: Trade, by_connection: dict[int, BrokerConnection], reason: str) -> str:
    """Why a trade got no price, naming its connection when that is the cause (expired login...)."""
    connection = by_connection.get(trade.connection_id)
    if connection is None or connection.status == ConnectionStatus.CONNECTED:
        return reason
    status = connection.status.value.replace("_", " ")
    return f"{connection.label} is not connected ({status}): reconnect it to restore monitoring"


def _alert(trade: Trade, reason: str, result: CycleResult) -> None:
    """Count and log every time; tell the user once per distinct problem."""
    result.stale_quotes += 1
    log.warning("monitor.unpriced", trade_id=trade.id, symbol=trade.symbol, reason=reason)
    detail = f"{UNPRICED}{reason}"
    if trade.protection_detail != detail:
        trade.protection_detail = detail[:500]
        message = f"{trade.symbol}: the stop-loss monitor could not price this position ({reason})"
        notifications.notify(trade.user_id, "monitor_alert", message, level="error", subject=trade)


def _claim(cycle_key: str, part: int, started: datetime) -> MonitorRun | None:
    """Write the run's row first (commit): None when this part of this cycle already has one."""
    run = MonitorRun(cycle_key=cycle_key, part=part, started_at=started)
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        log.info("monitor.cycle_already_run", cycle_key=cycle_key, part=part)
        return None
    return run


def _record(run: MonitorRun, result: CycleResult) -> None:
    run.duration_ms, run.positions, run.breaches = result.duration_ms, result.positions, result.breaches
    run.closes, run.stale_quotes = len(result.exit_order_ids), result.stale_quotes
    run.errors, run.quote_calls = result.errors, result.quote_calls
    db.session.commit()
