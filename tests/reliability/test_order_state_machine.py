"""REL-09 Stateful property test of orders and positions (hypothesis ``RuleBasedStateMachine``).

Why this seam: the issue asks for 2,000 examples of 50 steps in CI, i.e. about 100,000 steps. A
step through the services costs milliseconds of SQL (a commit, row locks, the paper ledger), so
the services cannot run that many steps in a minute. Everything those services *decide* with,
though, is plain code on in-memory rows: ``order_states`` (the transition table and ``move``),
``trade_book`` (applying broker reports, recording fills once, settling quantities, status and
realized P&L), ``utils.risk.stops`` (when a position must close), ``protection.protective_order``
and ``orders.new_exit_order`` / ``orders.request_for``. The machine drives exactly those
functions on transient ``Trade``/``Order``/``Fill`` rows (never flushed), against a simulated
broker that keeps its own truth (what it accepted, filled and cancelled, and every report it
gave, so stale and repeated reports can be replayed). Each rule follows the steps of the service
it stands for (named in its docstring). What only the database enforces (the conditional
OPEN → CLOSING claim, the one-live-exit index, PENDING_SUBMIT → SUBMITTED claims) is proved at
full size on PostgreSQL by REL-01, REL-02 and REL-03; here the rules respect those guards the way
the database would.

Invariants, after every step: no trade ever sells more than it bought, at the broker or in our
book; no order records more than was ordered or more than the broker filled; at most one live
exit per trade; every status an order went through follows ``order_states.ALLOWED``; a report the
state machine refuses changes nothing; a terminal order's recorded fills equal the broker's; a
closed trade's realized P&L is its fills' proceeds minus cost minus every fee; money is Decimal.

``scaled(ci=2000, soak=10000)`` examples of up to 50 steps.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import event

from models import Order, Trade
from tests.scale import scaled
from utils.brokers.base import BrokerOrder, Quote
from utils.brokers.base import Fill as BrokerFill
from utils.enums import EXIT_PURPOSES, OrderPurpose, OrderSide, OrderStatus, OrderType, TimeInForce, TradeStatus
from utils.exceptions import IllegalTransitionError
from utils.extensions import db
from utils.risk import stops
from utils.services import order_states, orders, protection, trade_book
from utils.services.order_tracking import TRACKED

ZERO = Decimal(0)
START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
QUANTITIES = st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(2), Decimal("3.25")])
FRACTIONS = st.sampled_from([Decimal("0.25"), Decimal("0.5"), Decimal(1)])
COMMISSIONS = st.sampled_from([ZERO, Decimal("0.01"), Decimal("0.35")])
PRICE_MOVES = st.sampled_from([Decimal("0.9"), Decimal("0.97"), Decimal("1.01"), Decimal("1.05"), Decimal("1.2")])
SUBMIT_OUTCOMES = st.sampled_from(["accepted", "filled", "refused", "busy", "unseen_placed", "unseen_lost", "died"])
BROKER_LIVE = frozenset({OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED})
EXAMPLES = scaled(ci=2000, soak=10000)
MOVES: list[tuple[OrderStatus, OrderStatus]] = []  # every Order.status change, filled by a listener


@dataclass
class Venue:
    """The broker's truth about one order: its fills, its status, and every report it gave."""

    order: Order
    broker_id: str
    quantity: Decimal
    status: OrderStatus = OrderStatus.WORKING
    fills: list[BrokerFill] = field(default_factory=list)
    reports: list[BrokerOrder] = field(default_factory=list)

    @property
    def filled(self) -> Decimal:
        """What the broker executed of this order."""
        return sum((fill.quantity for fill in self.fills), ZERO)

    def fill(self, quantity: Decimal, price: Decimal, commission: Decimal, at: datetime) -> None:
        """Execute up to ``quantity`` more (never beyond the order)."""
        quantity = min(quantity, self.quantity - self.filled)
        if quantity > 0 and self.status in BROKER_LIVE:
            self.fills.append(BrokerFill(f"{self.broker_id}-{len(self.fills)}", quantity, price, at, commission))
            self.status = OrderStatus.FILLED if self.filled == self.quantity else OrderStatus.PARTIALLY_FILLED

    def report(self) -> BrokerOrder:
        """The order as the broker reports it now (remembered for stale replays)."""
        value = sum((fill.quantity * fill.price for fill in self.fills), ZERO)
        report = BrokerOrder(
            broker_order_id=self.broker_id,
            symbol=self.order.symbol,
            side=OrderSide(self.order.side),
            order_type=OrderType(self.order.order_type),
            status=self.status,
            quantity=self.quantity,
            filled_quantity=self.filled,
            remaining_quantity=self.quantity - self.filled,
            average_fill_price=value / self.filled if self.fills else None,
            client_order_id=self.order.client_order_id,
            fees=sum((fill.commission for fill in self.fills), ZERO),
            fills=tuple(self.fills),
        )
        self.reports.append(report)
        return report


class OrdersAndPositions(RuleBasedStateMachine):
    """Entries, fills, cancels, replaces, broker stops, monitor closes and reconciliation on in-memory rows."""

    def __init__(self) -> None:
        super().__init__()
        self.trades: list[Trade] = []
        self.venues: dict[str, Venue] = {}  # by client order id
        self.price = Decimal(100)
        self.clock = itertools.count(1)

    def teardown(self) -> None:
        """Forget this history's rows (orders.new_exit_order added them to the session, never flushed)."""
        db.session.expunge_all()

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        """A later moment for each fill."""
        return START + timedelta(seconds=next(self.clock))

    def all_orders(self) -> list[Order]:
        """Every order of every trade in this history."""
        return [order for trade in self.trades for order in trade.orders]

    def our(self, *statuses: OrderStatus, sent: bool | None = None) -> list[Order]:
        """Our orders in ``statuses``; ``sent`` filters on having a broker id."""
        return [
            order
            for order in self.all_orders()
            if order.status in statuses and (sent is None or (order.broker_order_id is not None) == sent)
        ]

    def at_broker(self, *statuses: OrderStatus) -> list[Venue]:
        """The broker's orders in ``statuses``."""
        return [venue for venue in self.venues.values() if venue.status in statuses]

    def quote(self) -> Quote:
        """A fresh quote at the current price (ask 0.10 above the bid)."""
        return Quote("BTC-USD", self.price, self.price + Decimal("0.1"), self.price, self.price, START)

    def apply(self, order: Order, report: BrokerOrder) -> None:
        """``trade_book.apply_report``; a report the state machine refuses must change nothing."""
        before = (order.status, order.filled_quantity, len(order.fills), order.fees, order.broker_order_id)
        try:
            trade_book.apply_report(order, report)
        except IllegalTransitionError:
            assert (order.status, order.filled_quantity, len(order.fills), order.fees, order.broker_order_id) == before

    def cancel(self, order: Order) -> None:
        """order_tracking.cancel_at_broker: CANCEL_PENDING, the broker cancels what is still working, its report."""
        order_states.move(order, OrderStatus.CANCEL_PENDING, "Cancel requested.")
        venue = self.venues[order.client_order_id]
        if venue.status in BROKER_LIVE:
            venue.status = OrderStatus.CANCELLED
        self.apply(order, venue.report())

    def store_exit(self, trade: Trade, purpose: OrderPurpose, quantity: Decimal) -> Order | None:
        """orders.new_exit_order, refused as the one-live-exit index refuses a second live exit."""
        if quantity <= 0 or trade_book.live_exit(trade) is not None:
            return None
        return orders.new_exit_order(trade, purpose, quantity)

    def close(self, trade: Trade) -> None:
        """monitor._close + orders.close_trade: cancel the broker stop first, then claim and store the exit."""
        stop = protection.protective_order(trade)
        if stop is not None:
            if stop.broker_order_id is None or stop.status == OrderStatus.UNKNOWN:
                return
            self.cancel(stop)
            if not (stop.status == OrderStatus.CANCELLED and stop.filled_quantity == 0):
                return
        if trade.status not in (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED):
            return  # the conditional OPEN → CLOSING claim finds nothing to claim
        exit_order = self.store_exit(trade, OrderPurpose.EXIT, trade_book.open_quantity(trade))
        if exit_order is not None:
            trade.status = TradeStatus.CLOSING

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.trades) < 6)
    @rule(quantity=QUANTITIES, short=st.booleans(), limit=st.booleans(), stop_distance=FRACTIONS)
    def place_entry(self, quantity: Decimal, short: bool, limit: bool, stop_distance: Decimal) -> None:
        """orders.place_order: a trade and its entry intent (PENDING_SUBMIT), with a stop-loss."""
        side = OrderSide.SELL_SHORT if short else OrderSide.BUY
        offset = self.price * stop_distance / 10
        trade = Trade(
            user_id=1,
            connection_id=1,
            symbol="BTC-USD",
            side=side,
            trade_type=OrderType.LIMIT if limit else OrderType.MARKET,
            status=TradeStatus.PENDING,
            quantity=quantity,
            filled_quantity=ZERO,
            exit_filled_quantity=ZERO,
            fees=ZERO,
            stop_loss_price=self.price + offset if short else self.price - offset,
        )
        Order(
            user_id=1,
            connection_id=1,
            trade=trade,
            client_order_id=uuid.uuid4().hex,
            purpose=OrderPurpose.ENTRY,
            symbol="BTC-USD",
            side=side,
            order_type=trade.trade_type,
            time_in_force=TimeInForce.DAY,
            status=OrderStatus.PENDING_SUBMIT,
            quantity=quantity,
            remaining_quantity=quantity,
            filled_quantity=ZERO,
            fees=ZERO,
            limit_price=self.price if limit else None,
        )
        self.trades.append(trade)

    @precondition(lambda self: bool(self.our(OrderStatus.PENDING_SUBMIT)))
    @rule(data=st.data(), outcome=SUBMIT_OUTCOMES, commission=COMMISSIONS)
    def submit(self, data: st.DataObject, outcome: str, commission: Decimal) -> None:
        """orders.submit: claim, send, then the broker's answer (or a fault) applied."""
        order = data.draw(st.sampled_from(self.our(OrderStatus.PENDING_SUBMIT)))
        order_states.move(order, OrderStatus.SUBMITTED)
        request = orders.request_for(order)
        if outcome in ("accepted", "filled", "unseen_placed", "died"):
            venue = Venue(order, f"B{len(self.venues)}", request.quantity)
            self.venues[order.client_order_id] = venue
            if outcome == "filled" or order.order_type == OrderType.MARKET:
                venue.fill(venue.quantity, self.price, commission, self.now())
        if outcome in ("accepted", "filled"):
            self.apply(order, self.venues[order.client_order_id].report())
        elif outcome in ("unseen_placed", "unseen_lost"):
            order_states.move(order, OrderStatus.UNKNOWN, "Timed out.")
        elif outcome in ("refused", "busy"):
            status = OrderStatus.REJECTED if outcome == "refused" else OrderStatus.PENDING_SUBMIT
            order_states.move(order, status, outcome)
            if order.trade is not None:
                trade_book.settle(order.trade)

    @precondition(lambda self: bool(self.at_broker(*BROKER_LIVE)))
    @rule(data=st.data(), fraction=FRACTIONS, commission=COMMISSIONS)
    def broker_fills(self, data: st.DataObject, fraction: Decimal, commission: Decimal) -> None:
        """The broker executes part or all of a working order (we learn it on the next report)."""
        venue = data.draw(st.sampled_from(self.at_broker(*BROKER_LIVE)))
        if venue.order.order_type in (OrderType.MARKET, OrderType.LIMIT):
            venue.fill(venue.quantity * fraction, self.price, commission, self.now())

    @rule(move=PRICE_MOVES)
    def market_moves(self, move: Decimal) -> None:
        """The market moves; broker-held stops it crosses trigger and fill at the broker."""
        self.price = (self.price * move).quantize(Decimal("0.01"))
        for venue in self.at_broker(*BROKER_LIVE):
            stop = venue.order.stop_price
            if stop is None:
                continue
            long_exit = venue.order.side == OrderSide.SELL
            if (long_exit and self.price <= stop) or (not long_exit and self.price + Decimal("0.1") >= stop):
                venue.fill(venue.quantity, self.price, ZERO, self.now())

    @precondition(lambda self: bool(self.our(*TRACKED, sent=True)))
    @rule()
    def tracking_pass(self) -> None:
        """order_tracking.track_all: every live order with a broker id gets the broker's current report."""
        for order in self.our(*TRACKED, sent=True):
            self.apply(order, self.venues[order.client_order_id].report())

    @precondition(lambda self: any(venue.reports for venue in self.venues.values()))
    @rule(data=st.data())
    def stale_report_arrives(self, data: st.DataObject) -> None:
        """A late or repeated report (an older poll, a webhook replay) is applied again."""
        venue = data.draw(st.sampled_from([venue for venue in self.venues.values() if venue.reports]))
        if order_states.is_live(OrderStatus(venue.order.status)):
            self.apply(venue.order, data.draw(st.sampled_from(venue.reports)))

    @precondition(lambda self: bool(self.our(OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED, sent=True)))
    @rule(data=st.data())
    def cancel_order(self, data: st.DataObject) -> None:
        """order_tracking.cancel_order on a working order."""
        self.cancel(data.draw(st.sampled_from(self.our(OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED, sent=True))))

    @precondition(lambda self: bool(self.our(OrderStatus.PENDING_SUBMIT)))
    @rule(data=st.data())
    def cancel_unsent(self, data: st.DataObject) -> None:
        """order_tracking.cancel_unsent: PENDING_SUBMIT → CANCELLED without a broker call."""
        order = data.draw(st.sampled_from(self.our(OrderStatus.PENDING_SUBMIT)))
        order_states.move(order, OrderStatus.CANCELLED, "Cancelled before it was sent.")
        if order.trade is not None:
            trade_book.settle(order.trade)

    @precondition(lambda self: bool(replaceable(self)))
    @rule(data=st.data(), quantity=QUANTITIES, broker_fills_first=st.booleans())
    def replace_entry(self, data: st.DataObject, quantity: Decimal, broker_fills_first: bool) -> None:
        """order_tracking.replace_order: a working entry with no fills (as we know it) gets a new quantity.

        The broker may execute part of the old order in the moment before it replaces it (the paper
        broker's matching pass runs first; a live market does the same).
        """
        old = data.draw(st.sampled_from(replaceable(self)))
        venue = self.venues[old.client_order_id]
        if broker_fills_first:
            venue.fill(venue.quantity / 2, self.price, ZERO, self.now())
        trade = old.trade
        assert trade is not None
        new = Order(
            user_id=1,
            connection_id=1,
            trade=trade,
            client_order_id=uuid.uuid4().hex,
            purpose=OrderPurpose.ENTRY,
            symbol=old.symbol,
            side=old.side,
            order_type=old.order_type,
            time_in_force=old.time_in_force,
            status=OrderStatus.PENDING_SUBMIT,
            quantity=quantity,
            remaining_quantity=quantity,
            filled_quantity=ZERO,
            fees=ZERO,
            limit_price=old.limit_price,
        )
        order_states.move(new, OrderStatus.SUBMITTED)
        trade.quantity = quantity
        venue.status = OrderStatus.REPLACED
        replacement = Venue(new, f"B{len(self.venues)}", quantity)
        self.venues[new.client_order_id] = replacement
        trade_book.apply_replacement(old, venue.report(), new, replacement.report())

    @precondition(lambda self: bool(self.protectable()))
    @rule(data=st.data())
    def protect(self, data: st.DataObject) -> None:
        """protection.protect: a broker stop sized to the open quantity (the old one cancelled first)."""
        trade = data.draw(st.sampled_from(self.protectable()))
        current = protection.protective_order(trade)
        if current is not None:
            if current.broker_order_id is None or current.status == OrderStatus.UNKNOWN:
                return
            self.cancel(current)
            if not (current.status == OrderStatus.CANCELLED and current.filled_quantity == 0):
                return
        stop = self.store_exit(trade, OrderPurpose.STOP_LOSS, trade_book.open_quantity(trade))
        if stop is not None:
            stop.order_type, stop.time_in_force = OrderType.STOP, TimeInForce.GTC
            stop.stop_price = trade.stop_loss_price

    @precondition(lambda self: bool(self.open_trades()))
    @rule(data=st.data())
    def monitor_pass(self, data: st.DataObject) -> None:
        """monitor.run_cycle for one trade: evaluate its stop on the quote, close it when breached."""
        trade = data.draw(st.sampled_from(self.open_trades()))
        position = stops.Protection(
            side=stops.PositionSide.of_entry(OrderSide(trade.side)),
            open_quantity=trade_book.open_quantity(trade),
            stop_loss_price=trade.stop_loss_price,
            symbol=trade.symbol,
        )
        if stops.evaluate(position, self.quote(), START, 60).closes:
            self.close(trade)

    @precondition(lambda self: bool(self.open_trades()))
    @rule(data=st.data())
    def user_closes(self, data: st.DataObject) -> None:
        """positions.close_position: the user closes a position by hand."""
        self.close(data.draw(st.sampled_from(self.open_trades())))

    @precondition(lambda self: bool(self.our(OrderStatus.UNKNOWN, OrderStatus.SUBMITTED, sent=False)))
    @rule(data=st.data())
    def reconcile(self, data: st.DataObject) -> None:
        """order_tracking._resolve_unsent: found at the broker → its report; never seen → REJECTED."""
        order = data.draw(st.sampled_from(self.our(OrderStatus.UNKNOWN, OrderStatus.SUBMITTED, sent=False)))
        if order.status == OrderStatus.SUBMITTED:
            order_states.move(order, OrderStatus.UNKNOWN, "The worker stopped while sending; looking it up.")
        venue = self.venues.get(order.client_order_id)
        if venue is not None:
            self.apply(order, venue.report())
            return
        order_states.move(order, OrderStatus.REJECTED, "The broker has no record of this order: it was not placed.")
        if order.trade is not None:
            trade_book.settle(order.trade)

    # ------------------------------------------------------------------ candidates

    def protectable(self) -> list[Trade]:
        """Open trades without a broker stop, or with one that no longer fits."""
        return [t for t in self.open_trades() if protection.protective_order(t) is None or _uncovered(t)]

    def open_trades(self) -> list[Trade]:
        """Trades holding a position the monitor watches."""
        return [t for t in self.trades if t.status in (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED)]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def nothing_is_oversold(self) -> None:
        """Exits never execute more than the entries bought, at the broker and in our book."""
        for trade in self.trades:
            assert trade.exit_filled_quantity <= trade.filled_quantity
            entered = sum((self.broker_filled(o) for o in trade.orders if o.purpose == OrderPurpose.ENTRY), ZERO)
            exited = sum((self.broker_filled(o) for o in trade.orders if o.purpose in EXIT_PURPOSES), ZERO)
            assert exited <= entered, f"the broker sold {exited} of {entered}"

    @invariant()
    def fills_stay_within_the_order_and_the_broker(self) -> None:
        """No order records more than ordered or more than the broker executed; terminal ones agree."""
        for order in self.all_orders():
            assert ZERO <= order.filled_quantity <= order.quantity
            assert order.filled_quantity == sum((fill.quantity for fill in order.fills), ZERO)
            broker_filled = self.broker_filled(order)
            assert order.filled_quantity <= broker_filled
            if not order_states.is_live(OrderStatus(order.status)):
                assert order.filled_quantity == broker_filled, f"{order.status}: fills lost"

    @invariant()
    def at_most_one_live_exit_per_trade(self) -> None:
        """A trade never has two exits (protective or closing) live at once."""
        for trade in self.trades:
            live = [o for o in trade.orders if o.purpose in EXIT_PURPOSES and order_states.is_live(o.status)]
            assert len(live) <= 1, [(o.purpose, o.status) for o in live]

    @invariant()
    def every_transition_is_allowed(self) -> None:
        """Every status ever set on an order (by ``move`` or anything else) follows ALLOWED."""
        while MOVES:
            previous, new = MOVES.pop()
            assert order_states.can_move(previous, new), (previous, new)

    @invariant()
    def closed_trades_realize_fills_minus_fees(self) -> None:
        """Realized P&L = sell proceeds - buy cost - every fee, from the recorded fills (to 1e-10)."""
        for trade in self.trades:
            if trade.status != TradeStatus.CLOSED:
                continue
            assert trade_book.open_quantity(trade) == 0
            assert not any(order_states.is_live(o.status) for o in trade.orders), "a closed trade has no live order"
            value = dict.fromkeys(OrderPurpose, ZERO)
            for order in trade.orders:
                value[order.purpose] += sum((fill.quantity * fill.price for fill in order.fills), ZERO)
            sold = sum((value[purpose] for purpose in EXIT_PURPOSES), ZERO) - value[OrderPurpose.ENTRY]
            gross = sold if trade_book.is_long(trade) else -sold
            fees = sum((fill.commission for order in trade.orders for fill in order.fills), ZERO)
            assert trade.realized_pnl is not None and abs(trade.realized_pnl - (gross - fees)) < Decimal("1e-10")

    @invariant()
    def money_is_decimal(self) -> None:
        """Quantities, prices, fees and P&L stay Decimal."""
        for trade in self.trades:
            amounts = (trade.filled_quantity, trade.exit_filled_quantity, trade.fees, trade.quantity)
            optional = (trade.average_fill_price, trade.exit_average_price, trade.realized_pnl, trade.close_price)
            assert all(isinstance(a, Decimal) for a in amounts)
            assert all(a is None or isinstance(a, Decimal) for a in optional)

    def broker_filled(self, order: Order) -> Decimal:
        """What the broker executed of ``order`` (nothing if it never got it)."""
        venue = self.venues.get(order.client_order_id)
        return venue.filled if venue is not None else ZERO


def replaceable(machine: OrdersAndPositions) -> list[Order]:
    """Working entries with a broker id and no recorded fills, still working at the broker."""
    return [
        order
        for order in machine.our(OrderStatus.WORKING, sent=True)
        if order.purpose == OrderPurpose.ENTRY and machine.venues[order.client_order_id].status in BROKER_LIVE
    ]


def _record_move(order: Order, new: object, previous: object, initiator: object) -> None:
    """Attribute listener on Order.status: remember every change (the first value is no change)."""
    if isinstance(previous, OrderStatus) and isinstance(new, OrderStatus):
        MOVES.append((previous, new))


def _uncovered(trade: Trade) -> bool:
    """The trade's broker stop no longer matches its open quantity."""
    stop = protection.protective_order(trade)
    return stop is not None and stop.quantity != trade_book.open_quantity(trade)


@pytest.mark.timeout(EXAMPLES // 5)  # about 0.05 s per example on an idle machine; room for a busy one
def test_orders_and_positions_keep_their_invariants_over_random_histories(app: Flask) -> None:
    """2,000 random histories of up to 50 steps in CI (10,000 under `make soak`)."""
    budget = settings(
        max_examples=EXAMPLES,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    event.listen(Order.status, "set", _record_move)
    try:
        with db.session.no_autoflush:
            run_state_machine_as_test(OrdersAndPositions, settings=budget)
    finally:
        event.remove(Order.status, "set", _record_move)
