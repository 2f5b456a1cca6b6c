"""The stop-loss monitor and broker-held protection on the paper broker and the real database."""

from __future__ import annotations

from decimal import Decimal

from celery.contrib.testing.worker import start_worker
from flask import Flask

from models import BrokerConnection, MonitorRun, Notification, Order, Trade, User
from tests.support import make_user
from tests.trading_support import CRYPTO, close_concurrently, run_in_threads, ticket
from tests.venues import eventually
from utils.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, ProtectionMode, TradeStatus
from utils.extensions import db
from utils.services import connections, execution, monitor, orders, protection, trade_book
from utils.tasks.monitoring import stop_loss_cycle


def open_trade(trader: User, paper: BrokerConnection, **fields: object) -> Trade:
    """An entry sent and filled, without a broker stop: the monitor is its only protection."""
    entry = orders.submit(orders.place_order(trader, ticket(paper, **fields)).id)
    assert entry is not None and entry.trade is not None and entry.trade.status == TradeStatus.OPEN
    return entry.trade


def bid(paper: BrokerConnection) -> Decimal:
    return connections.broker_for(paper).quotes([CRYPTO])[CRYPTO].bid


def exits_of(trade: Trade) -> list[Order]:
    statement = db.select(Order).where(Order.trade_id == trade.id, Order.purpose == OrderPurpose.EXIT)
    return list(db.session.scalars(statement))


def test_a_breached_stop_is_closed_once_and_the_trade_settles(trader: User, paper: BrokerConnection) -> None:
    trade = open_trade(trader, paper)
    trade.stop_loss_price = bid(paper) * 2  # the market is far below the stop: breached
    db.session.commit()
    first = monitor.run_cycle()
    assert (first.positions, first.breaches, [b.trade_id for b in first.to_close]) == (1, 1, [trade.id])
    db.session.expire_all()
    assert trade.status == TradeStatus.OPEN and trade.breached_at is not None, "the cycle only hands it out"
    exit_id = monitor.close_breached(first.to_close[0])
    assert exit_id is not None and trade.status == TradeStatus.CLOSING
    assert monitor.close_breached(first.to_close[0]) is None, "a breach handed out twice closes once"
    again = monitor.run_cycle()
    assert (again.positions, again.to_close) == (0, []), "a closing trade is not closed twice"
    execution.send(exit_id)
    db.session.expire_all()
    closed = db.session.get_one(Trade, trade.id)
    assert closed.status == TradeStatus.CLOSED and closed.realized_pnl is not None
    assert trade_book.open_quantity(closed) == 0 and len(exits_of(closed)) == 1
    kinds = list(db.session.scalars(db.select(Notification.kind)))
    assert kinds == ["stop_triggered"]
    runs = monitor.recent_runs()
    assert [run.closes for run in runs] == [0, 1] and runs[1].quote_calls == 1


def test_a_breach_whose_close_was_lost_is_handed_out_again(trader: User, paper: BrokerConnection) -> None:
    trade = open_trade(trader, paper)
    trade.stop_loss_price = bid(paper) * 2
    db.session.commit()
    first = monitor.run_cycle()
    assert [breach.trade_id for breach in first.to_close] == [trade.id]  # its close task is lost
    again = monitor.run_cycle()
    assert [breach.trade_id for breach in again.to_close] == [trade.id], "still open: the next cycle hands it out"
    assert monitor.close_breached(again.to_close[0]) is not None


def test_take_profit_and_trailing_stop_close_and_an_untouched_stop_holds(trader: User, paper: BrokerConnection) -> None:
    holding = open_trade(trader, paper)
    target = open_trade(trader, paper)
    target.stop_loss_price, target.take_profit_price = None, bid(paper) / 2
    trailing = open_trade(trader, paper)
    trailing.stop_loss_price, trailing.trailing_stop_offset = None, Decimal("1")
    trailing.trail_anchor = bid(paper) * 2  # it once traded far higher: the trail is now crossed
    db.session.commit()
    result = monitor.run_cycle()
    assert (result.positions, result.breaches) == (3, 2)
    assert {breach.trade_id for breach in result.to_close} == {target.id, trailing.id}
    assert holding.status == TradeStatus.OPEN and holding.breached_at is None


def test_a_trailing_anchor_only_moves_in_the_trades_favour(trader: User, paper: BrokerConnection) -> None:
    trade = open_trade(trader, paper)
    trade.stop_loss_price, trade.trailing_stop_offset = None, bid(paper)  # far away: never crossed
    trade.trail_anchor = Decimal("1")
    db.session.commit()
    monitor.run_cycle()
    raised = trade.trail_anchor
    assert raised is not None and raised > 1
    trade.trail_anchor = raised * 10
    db.session.commit()
    monitor.run_cycle()
    assert trade.trail_anchor == raised * 10, "a lower bid never lowers a long's anchor"


def test_eight_concurrent_cycles_close_every_breached_trade_exactly_once(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    entry = open_trade(trader, paper)
    entry.stop_loss_price = None  # the copies carry the breach; the original stays quiet
    target = bid(paper) / 2  # a take-profit far below the market: hit
    breached = 500 if db.engine.dialect.name == "postgresql" else 60  # the scale where row locks exist
    for _ in range(breached):
        db.session.add(_copy_of(entry, take_profit_price=target))
    db.session.commit()
    db.session.remove()
    results = run_in_threads(app, 8, monitor.run_cycle)
    assert sum(r.errors for r in results) == 0, [(r.errors, r.breaches, len(r.to_close)) for r in results]
    handed_out = [breach for result in results for breach in result.to_close]
    exit_ids = close_concurrently(app, 8, handed_out)
    assert len(exit_ids) == len(set(exit_ids)) == breached
    per_trade = db.session.execute(
        db.select(Order.trade_id, db.func.count()).where(Order.purpose == OrderPurpose.EXIT).group_by(Order.trade_id)
    ).all()
    assert len(per_trade) == breached and {n for _, n in per_trade} == {1}
    assert db.session.scalar(db.select(db.func.count()).select_from(MonitorRun)) == 8


def test_an_entry_fill_gets_a_broker_stop_sized_to_it_and_resized_with_more_fills(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    app.config["PAPER_LIQUIDITY_PER_TICK"] = Decimal("0.01")
    limit = (bid(paper) * Decimal("1.01")).quantize(Decimal("0.01"))  # marketable, 0.01 per pass
    order = orders.place_order(
        trader, ticket(paper, quantity=Decimal("0.04"), order_type=OrderType.LIMIT, limit_price=limit)
    )
    execution.send(order.id)
    trade = db.session.get_one(Trade, order.trade_id)
    stop = protection.protective_order(trade)
    assert trade.protection_mode == ProtectionMode.NATIVE
    assert stop is not None and (stop.order_type, stop.status, stop.quantity) == (
        OrderType.STOP,
        OrderStatus.WORKING,
        Decimal("0.01"),
    )
    execution.follow_orders()
    db.session.expire_all()
    trade = db.session.get_one(Trade, order.trade_id)
    resized = protection.protective_order(trade)
    assert trade.filled_quantity > Decimal("0.01"), "the paper broker filled more on later passes"
    assert resized is not None and resized.id != stop.id
    assert resized.quantity == trade_book.open_quantity(trade) == trade.filled_quantity
    statuses = {o.id: o.status for o in trade.orders if o.purpose == OrderPurpose.STOP_LOSS}
    assert statuses[stop.id] == OrderStatus.CANCELLED


def test_the_watchdog_replaces_a_broker_stop_that_disappeared(trader: User, paper: BrokerConnection) -> None:
    entry = orders.place_order(trader, ticket(paper))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    lost = protection.protective_order(trade)
    assert lost is not None and lost.broker_order_id is not None
    broker = connections.broker_for(paper)
    broker.cancel_order(connections.trading_account_id(paper), lost.broker_order_id)  # gone at the broker
    report, to_close = execution.follow_orders()
    assert report.changed == 1 and to_close == []
    db.session.expire_all()
    trade = db.session.get_one(Trade, entry.trade_id)
    again = protection.protective_order(trade)
    assert again is not None and again.id != lost.id and again.status == OrderStatus.WORKING
    assert trade.protection_mode == ProtectionMode.NATIVE


def test_a_position_without_protection_says_unprotected(app: Flask, trader: User, paper: BrokerConnection) -> None:
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    entry = orders.place_order(trader, ticket(paper, stop_loss_price=None))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    assert trade.protection_mode == ProtectionMode.NONE and trade.protection_detail.startswith("UNPROTECTED")


def _copy_of(trade: Trade, **changes: object) -> Trade:
    """Another open trade like ``trade`` (input rows for the monitor; it sends nothing in this test)."""
    copy = Trade(
        user_id=trade.user_id,
        connection_id=trade.connection_id,
        symbol=trade.symbol,
        side=OrderSide.BUY,
        trade_type=OrderType.MARKET,
        status=TradeStatus.OPEN,
        quantity=trade.quantity,
        filled_quantity=trade.filled_quantity,
        average_fill_price=trade.average_fill_price,
    )
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def test_the_monitor_command_runs_one_cycle_and_closes_the_breach(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    trade = open_trade(trader, paper)
    trade.stop_loss_price = bid(paper) * 2
    db.session.commit()
    output = app.test_cli_runner().invoke(args=["trading", "monitor", "--once"])
    assert output.exit_code == 0, output.output
    assert "1 position(s) checked, 1 breach(es), 1 closed" in output.output
    db.session.expire_all()
    assert db.session.get_one(Trade, trade.id).status == TradeStatus.CLOSED
    refused = app.test_cli_runner().invoke(args=["trading", "monitor"])
    assert refused.exit_code == 2 and "Pass --once" in refused.output


def test_a_large_book_fans_out_one_chunk_per_task_to_the_workers(app: Flask) -> None:
    app.config["STOP_MONITOR_CHUNK_SIZE"] = 1
    trades = []
    for n in range(3):
        user = make_user(f"trader{n}@example.com")
        paper = connections.create_paper_connection(user, "Sandbox", Decimal("1000000"))
        trade = open_trade(user, paper)
        trade.stop_loss_price, trade.take_profit_price = None, bid(paper) / 2  # a take-profit already hit
        trades.append(trade.id)
    db.session.commit()
    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        stop_loss_cycle.delay()
        closed = eventually(
            lambda: all(db.session.get_one(Trade, t).status == TradeStatus.CLOSED for t in trades),
            "every chunk to close its trade",
            timeout=30,
        )
    celery_app.control.purge()
    assert closed
    runs = monitor.recent_runs()
    assert len(runs) == 3 and len({run.cycle_key for run in runs}) == 1 and sum(r.closes for r in runs) == 3


def test_a_trailing_stop_alone_is_held_by_a_broker_that_trails(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    offset = (bid(paper) * Decimal("0.05")).quantize(Decimal("0.01"))
    entry = orders.place_order(trader, ticket(paper, stop_loss_price=None, trailing_stop_offset=offset))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    held = protection.protective_order(trade)
    assert trade.protection_mode == ProtectionMode.NATIVE and "Trailing stop" in trade.protection_detail
    assert held is not None and (held.order_type, held.trail_offset, held.stop_price) == (
        OrderType.TRAILING_STOP,
        offset,
        None,
    )
    assert protection.ensure_all() == [] and protection.protective_order(trade) == held, "it fits: left alone"


def test_a_trailing_stop_by_percent_is_held_by_the_broker_by_percent(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    entry = orders.place_order(trader, ticket(paper, stop_loss_price=None, trailing_stop_percent=Decimal("2.5")))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    held = protection.protective_order(trade)
    assert trade.protection_mode == ProtectionMode.NATIVE
    assert trade.protection_detail == "Trailing stop 2.5% behind the best price, held by the broker."
    assert held is not None and (held.order_type, held.trail_offset, held.trail_percent) == (
        OrderType.TRAILING_STOP,
        None,
        Decimal("2.5"),
    )
    assert protection.ensure_all() == [] and protection.protective_order(trade) == held, "it fits: left alone"
    trade.trailing_stop_percent = Decimal(3)  # the trade now trails wider: the broker's stop no longer fits
    db.session.commit()
    assert protection.ensure_all() == []
    replaced = protection.protective_order(trade)
    assert replaced is not None and replaced.id != held.id and replaced.trail_percent == Decimal(3)
