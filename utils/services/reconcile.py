"""Reconciliation: our orders and positions checked against each broker's; drift recorded, never traded.

For one connection (issue 4, part 5):

1. Orders. Our unsent orders in doubt (UNKNOWN, or SUBMITTED with no broker id) are resolved
   exactly as tracking does (order_tracking.refresh_order). Then the broker's orders entered
   since our oldest live order (at least the last day, at most 60 days) are compared with ours:
   - a live order of ours that the broker has finished or filled further is brought up to date
     (trade_book.apply_report): tracking catching up, not drift;
   - a LIVE broker order that is not ours (by broker id or client order id), or that is ours but
     recorded as ended (so nothing follows it), is an ORPHAN: it is never traded on and never
     cancelled, a person decides. Foreign orders that already ended are not order drift: what
     they changed shows up in the positions;
   - a live order of ours with a broker id that the broker neither lists nor finds when asked
     directly is MISSING.
2. Positions. Our net open quantity per symbol (long +, short -) from the connection's open
   trades against ``broker.positions``; any difference, in either direction, is a POSITION
   MISMATCH carrying both quantities. Symbols with an order of ours still in flight (sent, no
   broker answer yet) are compared on the next run, when the outcome is known.

What was found is stored by utils/services/drift_alerts.py (one open alert per drift, resolved
when it goes away, the user told once). A connection whose reconciliation fails (broker error,
expired login) is HELD: the risk engine treats it as REDUCING (exits only) until a later run
succeeds. One connection's failure never stops the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import partial

from sqlalchemy.exc import IntegrityError

from models import BrokerConnection, Order, Trade
from utils.brokers.base import Broker, BrokerOrder
from utils.enums import (
    LIVE_ORDER_STATUSES,
    TERMINAL_ORDER_STATUSES,
    ConnectionStatus,
    DriftKind,
    OrderSide,
    OrderStatus,
)
from utils.exceptions import ArbionError, NotFoundError, TokenExpiredError
from utils.extensions import db
from utils.money import decimal_text, utcnow
from utils.observability import get_logger
from utils.services import connections, drift_alerts, order_states, order_tracking, schwab_logins, trade_book
from utils.services.drift_alerts import Drift, held_connections, open_drift
from utils.services.risk import OPEN_TRADE_STATUSES

__all__ = [
    "Drift",
    "ReconcileReport",
    "connections_to_reconcile",
    "held_connections",
    "open_drift",
    "our_positions",
    "reconcile_all",
    "reconcile_connection",
]

log = get_logger(__name__)
ZERO = Decimal(0)
MIN_LOOKBACK = timedelta(hours=24)
MAX_LOOKBACK = timedelta(days=60)  # the longest window Schwab lists orders over
ENTRY_MARGIN = timedelta(minutes=5)  # a broker's entered time may trail our created_at
CLOCK_SKEW = timedelta(minutes=1)
IN_FLIGHT = (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN)  # sent, outcome not known yet
UNEXPECTED = "an unexpected error (the operators have the details in the logs)"
SHORT_SIDES = frozenset({OrderSide.SELL_SHORT})
_LOOKUP_CHUNK = 500


@dataclass
class ReconcileReport:
    """What one connection's reconciliation found and did."""

    connection_id: int
    ok: bool = False
    error: str = ""
    broker_orders: int = 0
    caught_up: int = 0
    deferred_symbols: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    new_alerts: int = 0
    resolved_alerts: int = 0
    held: bool = False


# ---------------------------------------------------------------------------------- entry points


def connections_to_reconcile() -> list[int]:
    """Every connection except disabled ones (a broken one must be held, so it is visited too)."""
    statement = db.select(BrokerConnection.id).where(BrokerConnection.status != ConnectionStatus.DISABLED)
    return list(db.session.scalars(statement.order_by(BrokerConnection.id)))


def reconcile_all() -> list[ReconcileReport]:
    """Reconcile every connection; one connection's failure (even a bug) never stops the others."""
    reports = []
    for connection_id in connections_to_reconcile():
        try:
            reports.append(reconcile_connection(connection_id))
        except Exception:  # logged loudly and the connection held; the others still run
            db.session.rollback()
            log.exception("reconcile.crashed", connection_id=connection_id)
            held = drift_alerts.hold(connection_id, UNEXPECTED)
            reports.append(ReconcileReport(connection_id, error=UNEXPECTED, held=held))
    return reports


def reconcile_connection(connection_id: int) -> ReconcileReport:
    """Compare one connection's orders and positions with its broker; record drift (commits).

    A broker or login failure holds the connection (entries refused, exits pass) until a run
    succeeds; a success clears the hold.
    """
    report = ReconcileReport(connection_id)
    connection = db.session.get(BrokerConnection, connection_id)
    if connection is None:
        report.error = "no such connection"
        return report
    try:
        broker, account = connections.broker_for(connection), connections.trading_account_id(connection)
        drift = _order_drift(connection_id, broker, account, report)
        drift += _position_drift(connection_id, broker, account, report)
    except ArbionError as exc:
        db.session.rollback()
        log.warning("reconcile.failed", connection_id=connection_id, error=exc.code)
        if isinstance(exc, TokenExpiredError):
            schwab_logins.mark_reconnect_needed(db.session.get_one(BrokerConnection, connection_id))
        report.error, report.held = exc.message, drift_alerts.hold(connection_id, exc.message)
        return report
    report.drift = drift
    report.new_alerts, report.resolved_alerts = drift_alerts.record(connection_id, drift)
    report.ok = True
    log.info(
        "reconcile.done",
        connection_id=connection_id,
        drift=len(drift),
        new=report.new_alerts,
        resolved=report.resolved_alerts,
        caught_up=report.caught_up,
    )
    return report


# ---------------------------------------------------------------------------------- orders


def _order_drift(connection_id: int, broker: Broker, account: str, report: ReconcileReport) -> list[Drift]:
    """Resolve orders in doubt, catch ours up with the broker's list, find orphans and missing ones."""
    for order in _orders(connection_id, IN_FLIGHT, unsent_only=True):  # resolved the way tracking does
        _applied(partial(order_tracking.refresh_order, order, broker, account))
    since, until = _window(connection_id)
    listed = broker.list_orders(account, since, until)
    report.broker_orders = len(listed)
    ours = _ours(connection_id, listed)
    in_flight = {_shape(o) for o in _orders(connection_id, IN_FLIGHT, unsent_only=True)}
    drift = []
    for broker_order in listed:
        mine = ours.get(broker_order.broker_order_id) or ours.get(f"client:{broker_order.client_order_id}")
        if mine is not None and order_states.is_live(OrderStatus(mine.status)):
            report.caught_up += _catch_up(mine, broker_order, broker, account)
        elif broker_order.status in TERMINAL_ORDER_STATUSES:
            continue  # a foreign order that ended: what it did shows in the positions
        elif mine is not None or _shape(broker_order) not in in_flight:
            drift.append(_orphan(broker_order, mine))  # not ours, or ours but given up: nothing follows it
    seen = {o.broker_order_id for o in listed}
    for order in _orders(connection_id, LIVE_ORDER_STATUSES):
        if order.broker_order_id is not None and order.broker_order_id not in seen:
            drift.extend(_look_up(order, broker, account, report))
    return drift


def _window(connection_id: int) -> tuple[datetime, datetime]:
    """Since our oldest live order (at least the last day, at most 60 days back) until now."""
    now = utcnow()
    oldest = db.session.scalar(
        db.select(db.func.min(Order.created_at)).where(
            Order.connection_id == connection_id, Order.status.in_(LIVE_ORDER_STATUSES)
        )
    )
    until = now + CLOCK_SKEW
    since = min(now - MIN_LOOKBACK, (oldest or now) - ENTRY_MARGIN)
    return max(since, until - MAX_LOOKBACK), until


def _orders(connection_id: int, statuses: Iterable[OrderStatus], *, unsent_only: bool = False) -> list[Order]:
    statement = db.select(Order).where(Order.connection_id == connection_id, Order.status.in_(list(statuses)))
    if unsent_only:
        statement = statement.where(Order.broker_order_id.is_(None))
    return list(db.session.scalars(statement.order_by(Order.id)))


def _ours(connection_id: int, listed: list[BrokerOrder]) -> dict[str, Order]:
    """Our orders among the listed ones, keyed by broker id and by "client:<client order id>"."""
    broker_ids = sorted({o.broker_order_id for o in listed})
    client_ids = sorted({o.client_order_id for o in listed if o.client_order_id})
    found: dict[str, Order] = {}
    for column, values in ((Order.broker_order_id, broker_ids), (Order.client_order_id, client_ids)):
        for start in range(0, len(values), _LOOKUP_CHUNK):
            chunk = values[start : start + _LOOKUP_CHUNK]
            statement = db.select(Order).where(Order.connection_id == connection_id, column.in_(chunk))
            for order in db.session.scalars(statement):
                if order.broker_order_id:
                    found[order.broker_order_id] = order
                found[f"client:{order.client_order_id}"] = order
    return found


def _shape(order: Order | BrokerOrder) -> tuple[str, str, Decimal]:
    """What an order looks like without ids: how a sent order of ours is recognised at Schwab."""
    return (order.symbol.upper(), OrderSide(order.side).value, Decimal(order.quantity))


def _catch_up(order: Order, listed: BrokerOrder, broker: Broker, account: str) -> int:
    """Apply the broker's word to a live order of ours that ended or filled further; 1 if it changed."""
    if listed.status not in TERMINAL_ORDER_STATUSES and listed.filled_quantity == order.filled_quantity:
        return 0
    report = listed
    if sum((fill.quantity for fill in listed.fills), ZERO) != listed.filled_quantity:
        report = broker.get_order(account, listed.broker_order_id)  # the list carries no fills (Coinbase)
    changed = _applied(partial(_apply, order, report))
    if changed:
        log.info("reconcile.caught_up", order_id=order.id, status=OrderStatus(order.status).value)
    return int(changed)


def _apply(order: Order, report: BrokerOrder) -> bool:
    changed = trade_book.apply_report(order, report)
    db.session.commit()
    return changed


def _applied(catch_up: Callable[[], bool]) -> bool:
    """Run one catch-up (it commits). The tracking task may record the same fill at the same moment:
    the unique fill index then keeps its copy, ours is dropped, and the order is up to date anyway.
    An order the broker does not know is left as it is (the order pass reports it MISSING): one
    such order must not fail the whole run and hide every other drift."""
    try:
        return catch_up()
    except IntegrityError:
        db.session.rollback()
        log.info("reconcile.tracking_got_there_first")
        return False
    except NotFoundError:
        db.session.rollback()
        log.info("reconcile.order_unknown_to_broker")
        return False


def _look_up(order: Order, broker: Broker, account: str, report: ReconcileReport) -> list[Drift]:
    """A live order of ours the list did not show: ask for it directly; MISSING if the broker has none."""
    broker_order_id = order.broker_order_id or ""
    try:
        found = broker.get_order(account, broker_order_id)
    except NotFoundError:
        return [_missing(order)]
    report.caught_up += _catch_up(order, found, broker, account)
    return []


def _orphan(order: BrokerOrder, ours: Order | None) -> Drift:
    remaining = order.quantity - order.filled_quantity
    what = f"{_words(order.side)} order for {decimal_text(order.quantity)} {order.symbol}"
    whose = "this platform did not place"
    if ours is not None:
        whose = f"this platform recorded as {_words(ours.status)} (order #{ours.id}), so nothing follows it"
    return Drift(
        DriftKind.ORPHAN_ORDER,
        order.symbol.upper(),
        f"The broker has a live {what} (broker id {order.broker_order_id}, {decimal_text(remaining)} unfilled) "
        f"that {whose}. It is left alone: nothing was traded or cancelled.",
        broker_order_id=order.broker_order_id,
        broker_quantity=remaining,
    )


def _missing(order: Order) -> Drift:
    what = f"{_words(order.side)} {decimal_text(order.quantity)} {order.symbol}"
    return Drift(
        DriftKind.MISSING_ORDER,
        order.symbol.upper(),
        f"Our {_words(order.status)} {_words(order.purpose)} order #{order.id} ({what}, broker id "
        f"{order.broker_order_id}) is unknown to the broker.",
        broker_order_id=order.broker_order_id or "",
        our_quantity=order.quantity - order.filled_quantity,
    )


def _words(value: StrEnum) -> str:
    return value.value.replace("_", " ")


# ---------------------------------------------------------------------------------- positions


def _position_drift(connection_id: int, broker: Broker, account: str, report: ReconcileReport) -> list[Drift]:
    """Net quantity per symbol, ours against the broker's; a symbol whose live order of ours moved
    between the two reads is refreshed and compared once more before it counts as drift."""
    deferred = {symbol for symbol, _, _ in map(_shape, _orders(connection_id, IN_FLIGHT, unsent_only=True))}
    drift = _compare(connection_id, broker, account, deferred)
    moving = {d.symbol for d in drift} & _symbols_with_live_orders(connection_id)
    if moving:
        for order in _orders(connection_id, LIVE_ORDER_STATUSES):
            if order.symbol.upper() in moving and order.broker_order_id is not None:
                report.caught_up += int(_applied(partial(order_tracking.refresh_order, order, broker, account)))
        drift = _compare(connection_id, broker, account, deferred)
    report.deferred_symbols = sorted(deferred)
    return drift


def _compare(connection_id: int, broker: Broker, account: str, deferred: set[str]) -> list[Drift]:
    theirs = _net((p.symbol, p.quantity) for p in broker.positions(account))
    ours = our_positions(connection_id)
    drift = []
    for symbol in sorted((set(ours) | set(theirs)) - deferred):
        mine, broker_quantity = ours.get(symbol, ZERO), theirs.get(symbol, ZERO)
        if mine != broker_quantity:
            drift.append(_mismatch(symbol, mine, broker_quantity))
    return drift


def our_positions(connection_id: int) -> dict[str, Decimal]:
    """Net open quantity per symbol from the connection's open trades: longs +, shorts -."""
    rows = db.session.execute(
        db.select(Trade.symbol, Trade.side, Trade.filled_quantity, Trade.exit_filled_quantity).where(
            Trade.connection_id == connection_id, Trade.status.in_(OPEN_TRADE_STATUSES)
        )
    )
    signed = (
        (row.symbol, (row.filled_quantity - row.exit_filled_quantity) * (-1 if row.side in SHORT_SIDES else 1))
        for row in rows
    )
    return _net(signed)


def _net(quantities: Iterable[tuple[str, Decimal]]) -> dict[str, Decimal]:
    """Sum per upper-cased symbol, exact and normalised, dropping what nets to zero."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for symbol, quantity in quantities:
        totals[symbol.upper()] += Decimal(quantity)
    return {symbol: total.normalize() for symbol, total in totals.items() if total != 0}


def _symbols_with_live_orders(connection_id: int) -> set[str]:
    statement = db.select(Order.symbol).where(
        Order.connection_id == connection_id, Order.status.in_(LIVE_ORDER_STATUSES)
    )
    return {symbol.upper() for symbol in db.session.scalars(statement.distinct())}


def _mismatch(symbol: str, ours: Decimal, theirs: Decimal) -> Drift:
    return Drift(
        DriftKind.POSITION_MISMATCH,
        symbol,
        f"{symbol}: this platform's open trades hold {_position_text(ours)}; the broker reports "
        f"{_position_text(theirs)}.",
        our_quantity=ours,
        broker_quantity=theirs,
    )


def _position_text(quantity: Decimal) -> str:
    if quantity == 0:
        return "nothing"
    return f"{decimal_text(quantity)} long" if quantity > 0 else f"{decimal_text(-quantity)} short"
