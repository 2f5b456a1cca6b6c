"""The trader's exits: close a position, flatten an account, change an order, move a stop."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask

from models import AuditLog, BrokerConnection, Order, PaperOrder, Trade, User
from tests.support import make_user
from tests.trading_support import CRYPTO, add_trade, ask, ticket
from utils.enums import OrderPurpose, OrderStatus, OrderType, ProtectionMode, TradeStatus
from utils.exceptions import ConflictError, InvalidInputError
from utils.extensions import db
from utils.services import connections, execution, order_tracking, orders, paper_market, positions, protection


def protected_trade(trader: User, paper: BrokerConnection) -> Trade:
    entry = orders.place_order(trader, ticket(paper))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    assert trade.protection_mode == ProtectionMode.NATIVE
    return trade


def resting_buy(trader: User, paper: BrokerConnection) -> Order:
    low = (ask(paper) * Decimal("0.9")).quantize(Decimal("0.01"))
    stop = (low * Decimal("0.95")).quantize(Decimal("0.01"))
    order = orders.place_order(trader, ticket(paper, order_type=OrderType.LIMIT, limit_price=low, stop_loss_price=stop))
    sent = orders.submit(order.id)
    assert sent is not None and sent.status == OrderStatus.WORKING
    return sent


def test_closing_a_protected_position_cancels_the_broker_stop_first(trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    stop = protection.protective_order(trade)
    assert stop is not None
    exit_order = positions.close_position(trader, trade.id)
    assert db.session.get_one(Order, stop.id).status == OrderStatus.CANCELLED
    execution.send(exit_order.id)
    db.session.expire_all()
    closed = db.session.get_one(Trade, trade.id)
    assert closed.status == TradeStatus.CLOSED
    assert connections.broker_for(paper).positions(connections.trading_account_id(paper)) == [], "no oversell"
    with pytest.raises(ConflictError, match="Nothing is open"):
        positions.close_position(trader, trade.id)


def test_flatten_cancels_working_entries_and_closes_everything(trader: User, paper: BrokerConnection) -> None:
    first, second = protected_trade(trader, paper), protected_trade(trader, paper)
    resting = resting_buy(trader, paper)
    held = positions.open_positions(trader)
    assert [(p.symbol, p.quantity, len(p.trades), p.protection) for p in held] == [
        (CRYPTO, Decimal("0.02"), 2, "native")
    ]
    exits = positions.flatten(trader, paper.id)
    assert len(exits) == 2
    assert db.session.get_one(Order, resting.id).status == OrderStatus.CANCELLED
    for exit_id in exits:
        execution.send(exit_id)
    db.session.expire_all()
    assert {db.session.get_one(Trade, t.id).status for t in (first, second)} == {TradeStatus.CLOSED}
    assert positions.open_positions(trader) == []


def test_a_working_entry_is_replaced_by_a_linked_order(trader: User, paper: BrokerConnection) -> None:
    resting = resting_buy(trader, paper)
    lower = (resting.limit_price * Decimal("0.99")).quantize(Decimal("0.01"))
    new = order_tracking.replace_order(trader, resting.id, limit_price=lower)
    assert (new.replaces_order_id, new.status, new.limit_price) == (resting.id, OrderStatus.WORKING, lower)
    assert db.session.get_one(Order, resting.id).status == OrderStatus.REPLACED
    assert new.client_order_id != resting.client_order_id and new.broker_order_id != resting.broker_order_id
    at_broker = {row.order_key: row.status for row in db.session.scalars(db.select(PaperOrder))}
    assert at_broker[resting.broker_order_id] == OrderStatus.REPLACED and at_broker[new.broker_order_id] == "working"
    with pytest.raises(ConflictError, match="Only a working entry"):
        order_tracking.replace_order(trader, resting.id, limit_price=lower)


def test_fills_the_broker_makes_just_before_a_replace_are_kept_on_the_old_order(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    """Found by REL-09: a REPLACED order is never polled again, so its last fills are read at the replace."""
    resting = resting_buy(trader, paper)
    app.config["PAPER_LIQUIDITY_PER_TICK"] = Decimal("0.004")  # the matching pass fills 0.004 of 0.01
    paper_market.shift_price(CRYPTO, "-20")  # the market falls through the limit before we poll again
    lower = (resting.limit_price * Decimal("0.99")).quantize(Decimal("0.01"))
    new = order_tracking.replace_order(trader, resting.id, limit_price=lower)
    old = db.session.get_one(Order, resting.id)
    assert (old.status, old.filled_quantity, len(old.fills)) == (OrderStatus.REPLACED, Decimal("0.004"), 1)
    trade = db.session.get_one(Trade, new.trade_id)
    assert trade.filled_quantity == old.filled_quantity + new.filled_quantity, "the position counts both"


def test_moving_a_stop_replaces_the_broker_stop_at_the_new_price(trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    old = protection.protective_order(trade)
    assert old is not None and trade.average_fill_price is not None
    tighter = (trade.average_fill_price * Decimal("0.97")).quantize(Decimal("0.01"))
    positions.move_stop(trader, trade.id, tighter)
    db.session.expire_all()
    trade = db.session.get_one(Trade, trade.id)
    moved = protection.protective_order(trade)
    assert moved is not None and moved.id != old.id and moved.stop_price == tighter
    assert db.session.get_one(Order, old.id).status == OrderStatus.CANCELLED
    stops = [o for o in trade.orders if o.purpose == OrderPurpose.STOP_LOSS and o.status == OrderStatus.WORKING]
    assert len(stops) == 1, "never two broker stops at once"
    with pytest.raises(InvalidInputError, match="is not below the bid"):
        positions.move_stop(trader, trade.id, (trade.average_fill_price * 2).quantize(Decimal("0.01")))


def assert_refused_and_unchanged(trader: User, trade: Trade, stop: Decimal, words: str) -> None:
    """The move is refused with ``words``; the trade's stop and its broker stop are as they were."""
    before, resting = trade.stop_loss_price, protection.protective_order(trade)
    assert resting is not None
    with pytest.raises(InvalidInputError, match=words) as refused:
        positions.move_stop(trader, trade.id, stop)
    assert refused.value.details == {"field": "stop_price"}
    db.session.expire_all()
    trade = db.session.get_one(Trade, trade.id)
    assert trade.stop_loss_price == before and trade.protection_mode == ProtectionMode.NATIVE
    assert protection.protective_order(trade) == resting and resting.status == OrderStatus.WORKING


def test_a_penny_stop_on_a_bitcoin_long_is_refused_as_too_far_from_the_bid(
    trader: User, paper: BrokerConnection
) -> None:
    trade = protected_trade(trader, paper)
    assert_refused_and_unchanged(trader, trade, Decimal("0.01"), r"away from the bid \$[\d,]+\.\d\d; your limit is 20%")


@pytest.mark.parametrize("extra", ["0.000000000000001", "0.005", "0.0000001"])
def test_a_stop_off_the_price_increment_is_refused_not_sent_to_be_refused(
    trader: User, paper: BrokerConnection, extra: str
) -> None:
    """The paper broker takes cents only: a finer stop would be refused there and drop to emulated."""
    trade = protected_trade(trader, paper)
    assert trade.stop_loss_price is not None
    off_tick = trade.stop_loss_price + Decimal("100") + Decimal(extra)
    assert_refused_and_unchanged(trader, trade, off_tick, "prices move in steps of 0.01")


def test_a_long_stop_above_the_entry_locks_in_gains_while_the_bid_is_above_it(
    trader: User, paper: BrokerConnection
) -> None:
    trade = protected_trade(trader, paper)
    assert trade.average_fill_price is not None
    paper_market.shift_price(CRYPTO, "1")  # about $950 above the entry
    locked = (trade.average_fill_price + 10).quantize(Decimal("0.01"))
    positions.move_stop(trader, trade.id, locked)
    db.session.expire_all()
    trade = db.session.get_one(Trade, trade.id)
    moved = protection.protective_order(trade)
    assert moved is not None and moved.stop_price == locked and trade.protection_mode == ProtectionMode.NATIVE
    over_the_bid = (ask(paper) + 1).quantize(Decimal("0.01"))
    assert_refused_and_unchanged(trader, trade, over_the_bid, "is not below the bid")


def test_the_max_distance_counts_from_the_market_not_the_entry(trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    assert trade.average_fill_price is not None
    paper_market.shift_price(CRYPTO, "40")
    near_the_entry = (trade.average_fill_price * Decimal("0.9")).quantize(Decimal("0.01"))  # 10% under the entry
    assert_refused_and_unchanged(trader, trade, near_the_entry, "away from the bid")


@pytest.mark.parametrize("stop", ["0", "-1", "NaN", "Infinity"])
def test_a_stop_that_is_not_a_positive_number_is_refused_and_audited(
    trader: User, paper: BrokerConnection, stop: str
) -> None:
    trade = protected_trade(trader, paper)
    assert_refused_and_unchanged(trader, trade, Decimal(stop), "The stop price must be a number above 0")
    refused = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "risk.rejected")).one()
    assert refused.details["purpose"] == "stop_move" and refused.details["stop_price"] == stop
    assert (refused.actor_id, refused.subject_id) == (trader.id, str(trade.id))


def test_without_a_quote_the_stop_is_not_moved(trader: User, paper: BrokerConnection) -> None:
    trade = add_trade(trader, paper, symbol="BTC-EUR", stop_loss_price=Decimal(90))  # the paper market has no quote
    with pytest.raises(InvalidInputError, match="There is no current BTC-EUR quote"):
        positions.move_stop(trader, trade.id, Decimal(95))
    db.session.expire_all()
    assert db.session.get_one(Trade, trade.id).stop_loss_price == Decimal(90)


def test_another_users_trade_is_not_found(trader: User, paper: BrokerConnection) -> None:
    trade = protected_trade(trader, paper)
    other = make_user("other@example.com")
    with pytest.raises(Exception, match="No such trade"):
        positions.close_position(other, trade.id)
