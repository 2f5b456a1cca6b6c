"""Stateful property test of the order state machine and the position accounting in trade_book.

A simulated broker holds the truth about each order (its fills, its status, every report it has
given); the machine feeds our Order and Trade rows with those reports in any order a tracker could
see them: partial fills, the same report again, stale reports with less filled, cancels,
rejections, sends that never reached the broker, exits and protective stops created with the
guards ``orders.close_trade`` and ``protection`` use. The rows are transient ORM objects: the
accounting works on them without a session.

Invariants, after every step, for a long-only account:
- the open quantity is never negative; exits never fill more than the entry filled;
- at most one live exit (closing or protective) per trade;
- a broker fill is recorded once however often it is reported, and never lost to a stale report;
- order statuses only move along ``order_states.ALLOWED`` (and an illegal move raises); no report,
  stale or not, moves an order back (a cancel we asked for is not undone by a WORKING report);
- realized P&L agrees with the fills and fees;
- the trade is CLOSED exactly when its entry is done and exits filled all of it, and stays CLOSED.

By default (CI) 400 sequences of up to 40 steps run in about 10 s; ``HYPOTHESIS_PROFILE=thorough``
runs 4000 of up to 80 steps (a few minutes).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from models import Order, Trade
from utils.brokers.base import BrokerOrder
from utils.brokers.base import Fill as BrokerFill
from utils.enums import EXIT_PURPOSES, OrderPurpose, OrderSide, OrderStatus, OrderType, TimeInForce, TradeStatus
from utils.exceptions import IllegalTransitionError
from utils.services import order_states, trade_book

S = OrderStatus
ZERO = Decimal(0)
TOLERANCE = Decimal("1e-12")  # averages are divided: allow the last of 28 significant digits
STEP = Decimal("0.5")  # quantities move in half units, so fractional positions are covered too
BROKER_LIVE = frozenset({S.SUBMITTED, S.WORKING, S.PARTIALLY_FILLED})
# How far along an order is; a report (stale or not) never moves it back.
PROGRESS = {S.SUBMITTED: 0, S.UNKNOWN: 0, S.WORKING: 1, S.PARTIALLY_FILLED: 2, S.CANCEL_PENDING: 3}
PROFILES = {
    "ci": settings(
        max_examples=400, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    ),
    "thorough": settings(
        max_examples=4000, stateful_step_count=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    ),
}
START = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)

prices = st.decimals(min_value=1, max_value=1000, places=2)
commissions = st.decimals(min_value=0, max_value=5, places=4)


@dataclass
class AtBroker:
    """What the broker knows of one order: its status, its fills and every report it has given."""

    order: Order
    broker_order_id: str
    status: OrderStatus = S.SUBMITTED
    fills: list[BrokerFill] = field(default_factory=list)
    reports: list[BrokerOrder] = field(default_factory=list)
    newest_applied: int = -1

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), ZERO)

    def report(self) -> BrokerOrder:
        """A snapshot of the order as it is now (the broker's answer to a poll), kept for replays."""
        value = sum((f.quantity * f.price for f in self.fills), ZERO)
        snapshot = BrokerOrder(
            broker_order_id=self.broker_order_id,
            symbol=self.order.symbol,
            side=OrderSide(self.order.side),
            order_type=OrderType(self.order.order_type),
            status=self.status,
            quantity=self.order.quantity,
            filled_quantity=self.filled,
            remaining_quantity=self.order.quantity - self.filled,
            average_fill_price=value / self.filled if self.filled else None,
            client_order_id=self.order.client_order_id,
            fees=sum((f.commission for f in self.fills), ZERO),
            fills=tuple(self.fills),
        )
        self.reports.append(snapshot)
        return snapshot


def new_order(trade: Trade, purpose: OrderPurpose, side: OrderSide, quantity: Decimal, key: str) -> Order:
    """A stored intent, as ``orders._new_order`` makes it (without a session)."""
    return Order(
        user_id=1,
        connection_id=1,
        trade=trade,
        client_order_id=key,
        purpose=purpose,
        symbol=trade.symbol,
        side=side,
        order_type=OrderType.MARKET if purpose != OrderPurpose.STOP_LOSS else OrderType.STOP,
        time_in_force=TimeInForce.DAY,
        status=S.PENDING_SUBMIT,
        quantity=quantity,
        remaining_quantity=quantity,
        filled_quantity=ZERO,
        fees=ZERO,
        status_detail="",
    )


class TradeBookMachine(RuleBasedStateMachine):
    """One long trade: its entry, exits and protective stops, fed by a simulated broker."""

    def __init__(self) -> None:
        super().__init__()
        self.trade: Trade
        self.entry: Order
        self.broker: dict[str, AtBroker] = {}  # client order id -> what the broker knows
        self.history: dict[str, list[OrderStatus]] = {}
        self.ids = itertools.count(1)
        self.clock = START
        self.was_closed = False
        self.closed_pnl: Decimal | None = None

    # ------------------------------------------------------------------ helpers

    def orders(self) -> list[Order]:
        return list(self.trade.orders)

    def known(self, order: Order) -> AtBroker | None:
        return self.broker.get(order.client_order_id)

    def moved(self, order: Order) -> None:
        """Record the order's status after a step of ours (every change must be an allowed move)."""
        trail = self.history.setdefault(order.client_order_id, [S.PENDING_SUBMIT])
        if trail[-1] != order.status:
            assert order_states.can_move(trail[-1], S(order.status)), (trail, order.status)
            trail.append(S(order.status))

    def apply(self, at: AtBroker, index: int) -> None:
        """Apply one of the broker's reports, as a tracking pass does (then the caller commits)."""
        before = S(at.order.status)
        trade_book.apply_report(at.order, at.reports[index])
        after = S(at.order.status)
        assert PROGRESS.get(after, 4) >= PROGRESS.get(before, 4), f"a report took {before} back to {after}"
        at.newest_applied = max(at.newest_applied, index)
        self.moved(at.order)

    def candidates(self, wanted: object) -> list[AtBroker]:
        return [at for at in self.broker.values() if at.status in wanted]  # type: ignore[operator]

    def exit_guard_passes(self) -> bool:
        """What ``orders.close_trade`` and ``protection._place_stop`` require (the database's unique
        index on one live exit is the ``live_exit`` check): something open, no live exit."""
        return trade_book.open_quantity(self.trade) > 0 and trade_book.live_exit(self.trade) is None

    # ------------------------------------------------------------------ the trader and our workers

    @initialize(units=st.integers(1, 20))
    def enter(self, units: int) -> None:
        """A buy is stored (PENDING_SUBMIT) with its trade."""
        quantity = units * STEP
        self.trade = Trade(
            user_id=1,
            connection_id=1,
            symbol="AAPL",
            side=OrderSide.BUY,
            trade_type=OrderType.MARKET,
            status=TradeStatus.PENDING,
            quantity=quantity,
            filled_quantity=ZERO,
            exit_filled_quantity=ZERO,
            fees=ZERO,
            protection_detail="",
        )
        self.entry = new_order(self.trade, OrderPurpose.ENTRY, OrderSide.BUY, quantity, "entry")

    @precondition(lambda self: any(o.status == S.PENDING_SUBMIT for o in self.orders()))
    @rule(data=st.data(), outcome=st.sampled_from(["accepted", "accepted", "accepted", "unseen", "lost"]))
    def send(self, data: st.DataObject, outcome: str) -> None:
        """A worker claims a stored order and sends it. The broker accepts it and answers SUBMITTED;
        or accepts it but the answer is lost (UNKNOWN until reconciliation reads the broker's
        reports); or the worker died before the call and tracking, finding nothing at the broker,
        gives the order up (``order_tracking._resolve_unsent``)."""
        order = data.draw(st.sampled_from([o for o in self.orders() if o.status == S.PENDING_SUBMIT]))
        order_states.move(order, S.SUBMITTED)
        self.moved(order)
        if outcome == "lost":
            for status in (S.UNKNOWN, S.REJECTED):
                order_states.move(order, status)
                self.moved(order)
            trade_book.settle(self.trade)
            return
        at = AtBroker(order, f"B{next(self.ids)}")
        self.broker[order.client_order_id] = at
        at.report()
        if outcome == "unseen":
            order_states.move(order, S.UNKNOWN, "The broker's answer was not seen.")
            self.moved(order)
            return
        self.apply(at, 0)
        assert order.broker_order_id == at.broker_order_id

    @precondition(
        lambda self: self.exit_guard_passes() and self.trade.status in (TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED)
    )
    @rule()
    def close_position(self) -> None:
        """``orders.close_trade``: OPEN → CLOSING, and one market exit for everything open."""
        self.trade.status = TradeStatus.CLOSING
        quantity = trade_book.open_quantity(self.trade)
        new_order(self.trade, OrderPurpose.EXIT, OrderSide.SELL, quantity, f"exit-{next(self.ids)}")

    @precondition(lambda self: self.exit_guard_passes() and self.trade.status != TradeStatus.CLOSING)
    @rule()
    def protect(self) -> None:
        """``protection._place_stop``: a broker stop sized to what is open."""
        quantity = trade_book.open_quantity(self.trade)
        new_order(self.trade, OrderPurpose.STOP_LOSS, OrderSide.SELL, quantity, f"stop-{next(self.ids)}")

    @precondition(lambda self: any(o.status in (S.WORKING, S.PARTIALLY_FILLED) for o in self.orders()))
    @rule(data=st.data())
    def request_cancel(self, data: st.DataObject) -> None:
        """``order_tracking.cancel_order`` / ``protection.cancel_protection``: CANCEL_PENDING first."""
        order = data.draw(st.sampled_from([o for o in self.orders() if o.status in (S.WORKING, S.PARTIALLY_FILLED)]))
        order_states.move(order, S.CANCEL_PENDING, "Cancel requested.")
        self.moved(order)

    # ------------------------------------------------------------------ the broker

    @precondition(lambda self: bool(self.candidates(BROKER_LIVE)))
    @rule(data=st.data(), action=st.sampled_from(["fill", "fill", "fill", "fill", "ack", "cancel", "reject"]))
    def broker_acts(self, data: st.DataObject, action: str) -> None:
        """Something happens to a live order at the broker; a tracking pass may read it at once,
        later, or (for this report) never."""
        at = data.draw(st.sampled_from(self.candidates(BROKER_LIVE)))
        if action == "fill":
            self.execute(data, at)
        elif action == "ack" and at.status == S.SUBMITTED:
            at.status = S.WORKING
        elif action == "cancel":
            at.status = S.CANCELLED  # on our request, or expired; its fills stay
        elif action == "reject" and not at.fills and at.status != S.PARTIALLY_FILLED:
            at.status = S.REJECTED
        at.report()
        if data.draw(st.booleans(), label="polled now") and order_states.is_live(S(at.order.status)):
            self.apply(at, len(at.reports) - 1)

    def execute(self, data: st.DataObject, at: AtBroker) -> None:
        """Part or all of what is left trades (some brokers still call a partly filled order WORKING)."""
        left = int((at.order.quantity - at.filled) / STEP)
        quantity = data.draw(st.just(left) | st.integers(1, left), label="units") * STEP
        price, commission = data.draw(prices, label="price"), data.draw(commissions, label="commission")
        self.clock += timedelta(seconds=1)
        # Fill ids restart per order (Schwab numbers executions 1, 2, ... within each order).
        at.fills.append(BrokerFill(str(len(at.fills) + 1), quantity, price, self.clock, commission))
        if at.filled == at.order.quantity:
            at.status = S.FILLED
        else:
            at.status = data.draw(st.sampled_from([S.PARTIALLY_FILLED, S.WORKING]), label="partial status")

    # ------------------------------------------------------------------ tracking

    @precondition(lambda self: bool(self.broker))
    @rule(data=st.data(), times=st.integers(1, 3))
    def poll_latest(self, data: st.DataObject, times: int) -> None:
        """The broker's newest report, applied once or repeated (a duplicate changes nothing)."""
        at = data.draw(st.sampled_from(list(self.broker.values())))
        if not order_states.is_live(S(at.order.status)) and at.newest_applied != len(at.reports) - 1:
            return  # the tracker never polls a finished order
        for _ in range(times):
            self.apply(at, len(at.reports) - 1)

    @precondition(
        lambda self: any(
            at.newest_applied > 0 and order_states.is_live(S(at.order.status)) for at in self.broker.values()
        )
    )
    @rule(data=st.data())
    def poll_stale(self, data: st.DataObject) -> None:
        """An older report arrives after a newer one was applied (less filled, an earlier status)."""
        live = [at for at in self.broker.values() if at.newest_applied > 0 and order_states.is_live(S(at.order.status))]
        at = data.draw(st.sampled_from(live))
        filled_before = at.order.filled_quantity
        self.apply(at, data.draw(st.integers(0, at.newest_applied - 1)))
        assert at.order.filled_quantity == filled_before, "a stale report never undoes a fill"

    @precondition(lambda self: bool(self.orders()))
    @rule(data=st.data())
    def illegal_move_raises(self, data: st.DataObject) -> None:
        """Any move outside ALLOWED is refused and leaves the order as it was."""
        order = data.draw(st.sampled_from(self.orders()))
        current = S(order.status)
        forbidden = sorted(set(S) - order_states.ALLOWED[current] - {current})
        if not forbidden:
            return
        target = data.draw(st.sampled_from(forbidden))
        with pytest.raises(IllegalTransitionError):
            order_states.move(order, target)
        assert order.status == current

    # ------------------------------------------------------------------ invariants

    @invariant()
    def fills_are_recorded_once_and_match_the_broker(self) -> None:
        for order in self.orders():
            ids = [fill.broker_fill_id for fill in order.fills]
            assert len(ids) == len(set(ids)), "a fill recorded twice"
            assert sum((f.quantity for f in order.fills), ZERO) == order.filled_quantity
            assert ZERO <= order.filled_quantity <= order.quantity
            assert order.remaining_quantity == order.quantity - order.filled_quantity
            assert order.fees == sum((f.commission for f in order.fills), ZERO)
            at = self.known(order)
            if at is not None and at.newest_applied >= 0:
                newest = at.reports[at.newest_applied]
                assert ids == [f.fill_id for f in newest.fills], "every fill the newest report showed, no more"

    @invariant()
    def the_position_is_never_negative(self) -> None:
        trade = self.trade
        entered = sum((o.filled_quantity for o in self.orders() if o.purpose == OrderPurpose.ENTRY), ZERO)
        exited = sum((o.filled_quantity for o in self.orders() if o.purpose in EXIT_PURPOSES), ZERO)
        assert (trade.filled_quantity, trade.exit_filled_quantity) == (entered, exited)
        assert exited <= entered, "sold more than was bought"
        assert trade_book.open_quantity(trade) == entered - exited >= 0

    @invariant()
    def at_most_one_live_exit(self) -> None:
        live = [o for o in self.orders() if o.purpose in EXIT_PURPOSES and order_states.is_live(S(o.status))]
        assert len(live) <= 1, [(o.purpose, o.status) for o in live]

    @invariant()
    def pnl_agrees_with_fills_and_fees(self) -> None:
        trade = self.trade
        entry_fills = [f for o in self.orders() if o.purpose == OrderPurpose.ENTRY for f in o.fills]
        exit_fills = [f for o in self.orders() if o.purpose in EXIT_PURPOSES for f in o.fills]
        fees = sum((f.commission for o in self.orders() for f in o.fills), ZERO)
        assert trade.fees == fees
        bought = sum((f.quantity * f.price for f in entry_fills), ZERO)
        sold = sum((f.quantity * f.price for f in exit_fills), ZERO)
        if trade.filled_quantity:
            cost_of_exited = bought / trade.filled_quantity * trade.exit_filled_quantity
            assert abs(trade_book.realized_pnl(trade) - (sold - cost_of_exited - fees)) < TOLERANCE
        if trade.status == TradeStatus.CLOSED:
            assert trade.realized_pnl is not None and abs(trade.realized_pnl - (sold - bought - fees)) < TOLERANCE
            assert trade.closed_at is not None and trade.close_price == trade.exit_average_price

    @invariant()
    def trade_status_follows_its_orders(self) -> None:
        trade = self.trade
        entry_done = not order_states.is_live(S(self.entry.status))
        closed = entry_done and trade.exit_filled_quantity == trade.filled_quantity > 0
        assert (trade.status == TradeStatus.CLOSED) == closed, (trade.status, self.entry.status)
        if trade.filled_quantity == 0 and not entry_done:
            assert trade.status == TradeStatus.PENDING
        if trade.filled_quantity == 0 and entry_done:
            rejected = self.entry.status == S.REJECTED
            assert trade.status == (TradeStatus.FAILED if rejected else TradeStatus.CANCELLED)
        if self.was_closed:
            assert trade.status == TradeStatus.CLOSED and trade.realized_pnl == self.closed_pnl, (
                "a closed trade stays closed"
            )
        if trade.status == TradeStatus.CLOSED and not self.was_closed:
            self.was_closed, self.closed_pnl = True, trade.realized_pnl


TradeBookMachine.TestCase.settings = PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), PROFILES["ci"])
TestTradeBook = TradeBookMachine.TestCase
