"""The stop-loss monitor: one cycle loads every protected open trade, prices it, and hands out breaches.

A cycle reads in a constant number of statements whatever the size of the book (the trades as
plain rows with whether a broker stop rests for them, their connections), fetches quotes once per
provider and symbol batch, evaluates every trade with pure code (utils.risk.stops), writes its
marks in one transaction, and returns the breached trades. Each breach is then closed on its own
(``close_breached``, one task per trade, so a thousand breaches close in parallel and a slow
broker delays only its own) with a market exit EXACTLY ONCE: ``orders.close_trade`` claims the
trade (conditional OPEN → CLOSING plus the one-live-exit index), and the caller sends the exit.
A breach handed out twice (two cycles, a redelivered task) closes once; a breach whose task was
lost stays OPEN and breached, and the next cycle hands it out again.

A trade whose broker holds the stop gets one interval for the broker to act before the monitor
steps in. Missing, stale or impossible quotes never close anything: they are counted, logged and
told to the user once.

A run first claims its (cycle key, part) by writing its MonitorRun row: a beat slot whose cycle
key (``slot_key``) was sent twice, by a restarted or a second beat, runs once.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from models import BrokerConnection, MonitorRun, Order, Trade
from utils.brokers.base import Quote
from utils.enums import (
    EXIT_PURPOSES,
    LIVE_ORDER_STATUSES,
    ConnectionStatus,
    OrderPurpose,
    OrderStatus,
    ProtectionMode,
    Provider,
    TradeStatus,
)
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
UNFILLED_ENDINGS = (OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.EXPIRED)


@dataclass(frozen=True)
class Breach:
    """A trade to close and why: the caller hands each one to ``close_breached`` (a task per trade)."""

    trade_id: int
    reason: str


@dataclass
class CycleResult:
    """What one monitor run did; ``to_close`` are the breached trades the caller must close."""

    cycle_key: str
    positions: int = 0
    breaches: int = 0
    stale_quotes: int = 0
    errors: int = 0
    quote_calls: int = 0
    duration_ms: int = 0
    to_close: list[Breach] = field(default_factory=list)
    skipped: bool = False


@dataclass(frozen=True)
class _Link:
    """What the cycle needs of a connection: whether it can price, and through which provider."""

    provider: Provider
    status: ConnectionStatus
    label: str


def slot_key(now: datetime, interval: float) -> str:
    """The cycle key of the schedule slot ``now`` falls in: the slot's start, UTC, to the second."""
    start = math.floor(now.timestamp() / interval) * interval
    return datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%M%SZ")


def run_cycle(connection_ids: list[int] | None = None, cycle_key: str | None = None, part: int = 0) -> CycleResult:
    """One monitor run over the given connections (all when None), recorded as a MonitorRun (commits).

    It reads and writes in a constant number of statements, whatever the number of trades: the
    trades as plain rows, their connections, one quote call per provider and symbol batch, one
    write of every mark. It closes nothing itself: ``to_close`` lists the breaches for
    ``close_breached``. Skipped (``skipped``) when this part of this cycle key already ran or runs
    elsewhere.
    """
    started, clock = utcnow(), time.perf_counter()
    result = CycleResult(cycle_key or uuid.uuid4().hex[:16])
    run = _claim(result.cycle_key, part, started)
    if run is None:
        result.skipped = True
        return result
    trades = _watched_trades(connection_ids)
    result.positions = len(trades)
    links = _links({trade.connection_id for trade in trades})
    quotes = _quotes(trades, links, result)
    priced_at = utcnow()  # quote ages are judged at fetch time, however long the cycle takes
    marks = _Marks()
    for trade in trades:
        decision = _mark(trade, links, quotes, priced_at, marks, result)
        if decision is not None and not _broker_acts_first(trade, decision, priced_at):
            result.to_close.append(Breach(trade.id, decision.reason))
    marks.write()
    result.to_close.extend(watchdog(connection_ids))
    result.duration_ms = int((time.perf_counter() - clock) * 1000)
    _record(run, result)
    return result


def close_breached(breach: Breach) -> int | None:
    """Close one trade a cycle found breached (commits): the id of the exit the caller must send.

    None when it is no longer open (closed by another run, or by its broker stop), when its market
    is closed (it closes at the open), or when the close failed (logged; the next cycle tries again).
    Exactly once however often it is called: ``orders.close_trade`` claims the trade.
    """
    trade = db.session.get(Trade, breach.trade_id)
    if trade is None or trade.status not in WATCHED:
        return None
    try:
        if not _market_open_for(trade):
            trade.protection_detail = f"{breach.reason} The market is closed: closing at the open."[:500]
            db.session.commit()
            return None
        return _close(trade, breach.reason)
    except ArbionError as exc:
        db.session.rollback()
        log.warning("monitor.close_failed", trade_id=breach.trade_id, error=exc.code)
        return None


def watchdog(connection_ids: list[int] | None) -> list[Breach]:
    """Re-place or resize broker stops; the trades whose broker stop is gone and cannot be re-placed
    must be closed."""
    reason = "Its broker stop was lost and could not be re-placed."
    return [Breach(trade_id, reason) for trade_id in protection.ensure_all(connection_ids)]


def failed_exits(connection_id: int, since: datetime) -> list[Breach]:
    """Breached trades of the connection whose exit ended unfilled since ``since`` (the broker never
    took it, refused or cancelled it) and that have no other live exit: the tracking pass that saw
    the exit end hands them out at once, instead of leaving them to the next cycle."""
    live_exit = db.select(Order.trade_id).where(
        Order.purpose.in_(EXIT_PURPOSES), Order.status.in_(LIVE_ORDER_STATUSES), Order.trade_id.is_not(None)
    )
    ended = db.select(Order.trade_id).where(
        Order.connection_id == connection_id,
        Order.purpose == OrderPurpose.EXIT,
        Order.status.in_(UNFILLED_ENDINGS),
        Order.closed_at >= since,
    )
    statement = db.select(Trade.id).where(
        Trade.id.in_(ended),
        Trade.status.in_(WATCHED),
        Trade.breached_at.is_not(None),
        Trade.id.not_in(live_exit),
    )
    reason = "Its exit was not taken by the broker; closing again."
    return [Breach(trade_id, reason) for trade_id in db.session.scalars(statement.order_by(Trade.id))]


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

_WATCHED_COLUMNS = (
    Trade.id,
    Trade.user_id,
    Trade.connection_id,
    Trade.symbol,
    Trade.side,
    Trade.filled_quantity,
    Trade.exit_filled_quantity,
    Trade.stop_loss_price,
    Trade.take_profit_price,
    Trade.trailing_stop_offset,
    Trade.trailing_stop_percent,
    Trade.trail_anchor,
    Trade.protection_mode,
    Trade.protection_detail,
    Trade.breached_at,
)


def _watched_trades(connection_ids: list[int] | None) -> list[Row[Any]]:
    """Open trades with any protection, as plain rows (no ORM objects: a cycle may read 100,000),
    each with ``has_broker_stop``: whether a live stop-loss order rests at its broker."""
    protected = db.or_(
        Trade.stop_loss_price.is_not(None),
        Trade.take_profit_price.is_not(None),
        Trade.trailing_stop_offset.is_not(None),
        Trade.trailing_stop_percent.is_not(None),
    )
    live_stops = protection.live_stop_orders().subquery()
    statement = (
        db.select(*_WATCHED_COLUMNS, live_stops.c.trade_id.is_not(None).label("has_broker_stop"))
        .outerjoin(live_stops, live_stops.c.trade_id == Trade.id)
        .where(Trade.status.in_(WATCHED), protected)
    )
    if connection_ids is not None:
        statement = statement.where(Trade.connection_id.in_(connection_ids))
    return list(db.session.execute(statement.order_by(Trade.id)))


def _links(ids: Iterable[int]) -> dict[int, _Link]:
    columns = (BrokerConnection.id, BrokerConnection.provider, BrokerConnection.status, BrokerConnection.label)
    statement = db.select(*columns).where(BrokerConnection.id.in_(list(ids)))
    return {
        row.id: _Link(Provider(row.provider), ConnectionStatus(row.status), row.label)
        for row in db.session.execute(statement)
    }


def _quotes(trades: list[Row[Any]], links: dict[int, _Link], result: CycleResult) -> dict[str, Quote]:
    """Quotes for every watched symbol: one call per provider and symbol batch, through any
    connected connection of that provider (market data is the same for every user)."""
    wanted: dict[Provider, set[str]] = defaultdict(set)
    sources: dict[Provider, dict[int, None]] = defaultdict(dict)
    for trade in trades:
        link = links.get(trade.connection_id)
        if link is None or link.status != ConnectionStatus.CONNECTED:
            continue
        wanted[link.provider].add(trade.symbol)
        sources[link.provider][trade.connection_id] = None
    quotes: dict[str, Quote] = {}
    for provider, symbols in wanted.items():
        quotes |= _provider_quotes(provider, sorted(symbols), list(sources[provider]), links, result)
    return quotes


def _provider_quotes(
    provider: Provider, symbols: list[str], sources: list[int], links: dict[int, _Link], result: CycleResult
) -> dict[str, Quote]:
    """One provider's quotes through the first of its connections that answers. A connection whose
    login expired is marked, and its link says so: its trades are unpriced because of it."""
    for connection_id in sources[:3]:  # a broken connection must not blind the monitor to the provider
        connection = db.session.get_one(BrokerConnection, connection_id)
        try:
            broker = connections.broker_for(connection)
            found, fetched = market_data.quotes(provider, symbols, broker.quotes)
            result.quote_calls += -(-len(fetched) // broker.capabilities.max_symbols_per_quote)
            return found
        except TokenExpiredError:
            result.errors += 1
            schwab_logins.mark_reconnect_needed(connection)  # the user and the admins are told now
            db.session.commit()
            links[connection_id] = replace(links[connection_id], status=ConnectionStatus(connection.status))
        except ArbionError as exc:
            result.errors += 1
            log.warning("monitor.quotes_failed", provider=provider.value, connection_id=connection.id, error=exc.code)
    return {}


# ---------------------------------------------------------------------------------- evaluating


class _Marks:
    """What the cycle notes on its trades (trail anchors, breach times, unpriced details), written
    at the end in one bulk UPDATE per set of changed columns, with the alerts it raised."""

    def __init__(self) -> None:
        self.changes: dict[int, dict[str, Any]] = defaultdict(dict)
        self.alerts: dict[int, str] = {}

    def note(self, trade_id: int, **values: Any) -> None:
        self.changes[trade_id].update(values)

    def alert(self, trade: Row[Any], message: str) -> None:
        self.alerts[trade.id] = message

    def write(self) -> None:
        """Every change and alert of the cycle in one transaction (commits)."""
        by_columns: dict[frozenset[str], list[dict[str, Any]]] = defaultdict(list)
        for trade_id, values in self.changes.items():
            by_columns[frozenset(values)].append({"id": trade_id, **values})
        for records in by_columns.values():
            db.session.execute(db.update(Trade), records)
        if self.alerts:
            alerted = db.session.scalars(db.select(Trade).where(Trade.id.in_(list(self.alerts))))
            for trade in alerted:
                notifications.notify(
                    trade.user_id, "monitor_alert", self.alerts[trade.id], level="error", subject=trade
                )
        db.session.commit()


def _mark(
    trade: Row[Any],
    links: dict[int, _Link],
    quotes: dict[str, Quote],
    now: datetime,
    marks: _Marks,
    result: CycleResult,
) -> stops.StopDecision | None:
    """Evaluate one trade and note the outcome; the decision when it must close."""
    quote = quotes.get(trade.symbol) if trade.connection_id in links else None
    decision = stops.evaluate(_protection_of(trade), quote, now, current_app.config["STOP_MONITOR_MAX_QUOTE_AGE"])
    if decision.anchor_moved:
        marks.note(trade.id, trail_anchor=decision.trail_anchor)
    if decision.needs_alert:
        _alert(trade, _unpriced_reason(trade, links, decision.reason), marks, result)
        return None
    if trade.protection_detail.startswith(UNPRICED):
        marks.note(trade.id, protection_detail="")  # priced again: the monitor protects it once more
    if not decision.closes:
        if trade.breached_at is not None:
            marks.note(trade.id, breached_at=None)
        return None
    result.breaches += 1
    if trade.breached_at is None:
        marks.note(trade.id, breached_at=now)
    return decision


def _protection_of(trade: Row[Any]) -> stops.Protection:
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


def _broker_acts_first(trade: Row[Any], decision: stops.StopDecision, now: datetime) -> bool:
    """A stop held natively by the broker gets one monitor interval to fill before the backstop."""
    held_by_broker = (stops.StopAction.STOP_LOSS, stops.StopAction.TRAILING_STOP)
    if decision.action not in held_by_broker or trade.protection_mode != ProtectionMode.NATIVE:
        return False
    if not trade.has_broker_stop:
        return False
    grace = timedelta(seconds=current_app.config["STOP_MONITOR_INTERVAL"])
    return now - (trade.breached_at or now) < grace


def _market_open_for(trade: Trade) -> bool:
    if looks_like_crypto(trade.symbol):
        return True
    connection = orders.connection_of(trade)
    return order_checks.market_open(Provider(connection.provider), connections.broker_for(connection), trade.symbol)


def _close(trade: Trade, reason: str) -> int | None:
    """Cancel a broker stop in the way, then store the one exit (None when another run won)."""
    if protection.protective_order(trade) is not None:
        broker = connections.broker_for(orders.connection_of(trade))
        if not protection.cancel_protection(trade, broker):
            return None  # the broker stop filled (closed by it) or the cancel awaits confirmation
    exit_order = orders.close_trade(trade, f"Monitor: {reason}", notify=f"{trade.symbol}: {reason} Closing.")
    return exit_order.id if exit_order is not None else None


def _unpriced_reason(trade: Row[Any], links: dict[int, _Link], reason: str) -> str:
    """Why a trade got no price, naming its connection when that is the cause (expired login...)."""
    link = links.get(trade.connection_id)
    if link is None or link.status == ConnectionStatus.CONNECTED:
        return reason
    status = link.status.value.replace("_", " ")
    return f"{link.label} is not connected ({status}): reconnect it to restore monitoring"


def _alert(trade: Row[Any], reason: str, marks: _Marks, result: CycleResult) -> None:
    """Count and log every time; tell the user once per distinct problem."""
    result.stale_quotes += 1
    log.warning("monitor.unpriced", trade_id=trade.id, symbol=trade.symbol, reason=reason)
    detail = f"{UNPRICED}{reason}"[:500]
    if trade.protection_detail != detail:
        marks.note(trade.id, protection_detail=detail)
        marks.alert(trade, f"{trade.symbol}: the stop-loss monitor could not price this position ({reason})")


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
    run.closes, run.stale_quotes = len(result.to_close), result.stale_quotes
    run.errors, run.quote_calls = result.errors, result.quote_calls
    db.session.commit()
