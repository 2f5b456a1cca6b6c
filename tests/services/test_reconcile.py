"""Reconciliation against the paper ledger and the Schwab fake, on the real database (both backends).

Seeded mismatches are all found and nothing else is; orphans are never traded or cancelled; a
connection whose reconciliation fails accepts exits only until a run succeeds; alerts are not
duplicated by repeated runs and are resolved when the drift goes away; the task runs in a real
Celery worker, on its schedule and when a worker starts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_ready
from flask import Flask
from structlog.testing import capture_logs

from app import create_app
from models import (
    AuditLog,
    BrokerConnection,
    DriftAlert,
    Notification,
    Order,
    PaperAccount,
    PaperOrder,
    PaperPosition,
    Trade,
    User,
)
from tests.fakes.schwab import ORDER_RULE, ORDERS_RULE, SchwabFakeState, create_schwab_fake
from tests.fakes.server import FakeServer, Fault
from tests.support import base_environ, make_user
from tests.trading_support import CRYPTO, ask, ticket
from utils.brokers.base import OrderRequest
from utils.brokers.schwab import OAuthTokens
from utils.enums import (
    ConnectionStatus,
    DriftKind,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    Provider,
    TradeStatus,
    TradingState,
)
from utils.exceptions import ConfigurationError, RiskLimitExceededError
from utils.extensions import db
from utils.money import utcnow
from utils.risk.inputs import OrderIntent
from utils.services import connections, credentials, execution, orders, reconcile, risk, task_locks
from utils.services.order_tickets import OrderTicket
from utils.services.schwab_tokens import write_tokens
from utils.tasks.reconciliation import reconcile_all as reconcile_task

D = Decimal
APP_KEY, APP_SECRET = "recon-app-key", "recon-app-secret"
CALLBACK = "http://localhost/connections/schwab/callback"
LIST_ORDERS = f"GET {ORDERS_RULE}"


# ---------------------------------------------------------------------------------- fixtures


@dataclass
class Schwab:
    state: SchwabFakeState
    account_hash: str


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeServer, list[Flask]]]:
    """One fake server per module; each test swaps in a fresh fake Schwab app."""
    current: list[Flask] = []
    dispatch = Flask("schwab_dispatch")
    dispatch.wsgi_app = lambda environ, start_response: current[0](environ, start_response)  # type: ignore[method-assign]
    server = FakeServer(dispatch).start()
    yield server, current
    server.stop()


@pytest.fixture()
def schwab(served: tuple[FakeServer, list[Flask]]) -> Schwab:
    fake_app, state = create_schwab_fake(APP_KEY, APP_SECRET, redirect_uri=CALLBACK)
    served[1][:] = [fake_app]
    return Schwab(state, state.add_account("87654321", cash="1000000", buying_power="1000000"))


@pytest.fixture()
def environ(environ: dict[str, str], served: tuple[FakeServer, list[Flask]]) -> dict[str, str]:
    return environ | {
        "SCHWAB_CLIENT_ID": APP_KEY,
        "SCHWAB_CLIENT_SECRET": APP_SECRET,
        "SCHWAB_REDIRECT_URI": CALLBACK,
        "SCHWAB_API_BASE_URL": served[0].base_url,
    }


def schwab_connection(user: User, schwab: Schwab) -> BrokerConnection:
    """A connected Schwab account, as the connect flow leaves it."""
    access, refresh = schwab.state.issue_tokens()
    connection = BrokerConnection(
        user_id=user.id,
        provider=Provider.SCHWAB,
        label="Schwab …4321",
        account_hash=schwab.account_hash,
        account_number_last4="4321",
    )
    write_tokens(connection, OAuthTokens(access, refresh, utcnow() + timedelta(minutes=30), utcnow()))
    db.session.add(connection)
    db.session.commit()
    return connection


# ---------------------------------------------------------------------------------- seeding


def seed_trade(
    connection: BrokerConnection, symbol: str, quantity: str, exited: str = "0", side: OrderSide = OrderSide.BUY
) -> Trade:
    """An open trade as the order path leaves it after its fills (the caller commits)."""
    trade = Trade(
        user_id=connection.user_id,
        connection_id=connection.id,
        symbol=symbol,
        side=side,
        trade_type=OrderType.MARKET,
        status=TradeStatus.OPEN,
        quantity=D(quantity),
        filled_quantity=D(quantity),
        exit_filled_quantity=D(exited),
        average_fill_price=D("10"),
        remaining_quantity=D(0),
        opened_at=utcnow(),
    )
    db.session.add(trade)
    return trade


def seed_order(
    connection: BrokerConnection,
    symbol: str,
    quantity: str,
    broker_order_id: str | None,
    status: OrderStatus = OrderStatus.WORKING,
    trade: Trade | None = None,
) -> Order:
    """One of our live limit buys as tracking leaves it (the caller commits)."""
    order = Order(
        user_id=connection.user_id,
        connection_id=connection.id,
        trade=trade,
        client_order_id=uuid.uuid4().hex,
        broker_order_id=broker_order_id,
        purpose=OrderPurpose.ENTRY,
        symbol=symbol,
        side=OrderSide.BUY,
        order_type=OrderType.LIMIT,
        status=status,
        quantity=D(quantity),
        limit_price=D("10"),
        remaining_quantity=D(quantity),
        filled_quantity=D(0),
        fees=D(0),
        submitted_at=utcnow(),
    )
    db.session.add(order)
    return order


def broker_order(schwab: Schwab, symbol: str, quantity: int, instruction: str = "BUY") -> str:
    """An order as it sits in Schwab's book (WORKING); returns its id."""
    payload = {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": "LIMIT",
        "price": "10.00",
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {"instruction": instruction, "quantity": quantity, "instrument": {"symbol": symbol, "assetType": "EQUITY"}}
        ],
    }
    return str(schwab.state.create_order(schwab.account_hash, payload)["orderId"])


def alert_keys(alerts: list[DriftAlert]) -> set[tuple[str, str, str]]:
    return {(alert.kind.value, alert.symbol, alert.broker_order_id) for alert in alerts}


def count(model: type, *criteria: Any) -> int:
    return db.session.scalar(db.select(db.func.count()).select_from(model).where(*criteria)) or 0


def actions(prefix: str) -> list[str]:
    statement = db.select(AuditLog.action).where(AuditLog.action.startswith(prefix)).order_by(AuditLog.id)
    return list(db.session.scalars(statement))


# ---------------------------------------------------------------------------------- at scale


def test_every_seeded_mismatch_is_found_and_no_clean_record_raises_an_alarm(trader: User, schwab: Schwab) -> None:
    """REL-10 scale: 100 mismatches among 1,000 clean records (positions and working orders)."""
    connection = schwab_connection(trader, schwab)
    expected: set[tuple[str, str, str]] = set()
    for i in range(300):  # clean positions: longs, shorts, partial exits, two trades in one symbol
        symbol = f"P{i:03d}"
        if i % 5 == 0:
            seed_trade(connection, symbol, "8", side=OrderSide.SELL_SHORT)
            schwab.state.set_position(schwab.account_hash, symbol, short="8", avg="10")
        elif i % 5 == 1:
            seed_trade(connection, symbol, "10", exited="3")
            schwab.state.set_position(schwab.account_hash, symbol, long="7", avg="10")
        elif i % 5 == 2:
            seed_trade(connection, symbol, "4")
            seed_trade(connection, symbol, "6", exited="6").status = TradeStatus.CLOSED
            seed_trade(connection, symbol, "5")
            schwab.state.set_position(schwab.account_hash, symbol, long="9", avg="10")
        else:
            seed_trade(connection, symbol, str(i))
            schwab.state.set_position(schwab.account_hash, symbol, long=str(i), avg="10")
    for i in range(700):  # clean working orders, ours at the broker
        seed_order(connection, f"W{i % 50:03d}", str(1 + i % 9), broker_order(schwab, f"W{i % 50:03d}", 1 + i % 9))
    for _ in range(10):  # foreign orders that already ended: their effect is in the positions, not drift
        schwab.state.set_status(broker_order(schwab, "ENDED", 1), "CANCELED")

    for i in range(20):  # orphans: live at the broker, not ours
        expected.add(("orphan_order", f"O{i:02d}", broker_order(schwab, f"O{i:02d}", 5)))
    for i in range(20):  # missing: ours, live, unknown to the broker
        seed_order(connection, f"M{i:02d}", "3", f"77{i:07d}")
        expected.add(("missing_order", f"M{i:02d}", f"77{i:07d}"))
    for i in range(20):  # quantity differs
        seed_trade(connection, f"Q{i:02d}", "10")
        schwab.state.set_position(schwab.account_hash, f"Q{i:02d}", long="11" if i % 2 else "9", avg="10")
        expected.add(("position_mismatch", f"Q{i:02d}", ""))
    for i in range(20):  # the broker holds what no trade of ours opened (long and short)
        schwab.state.set_position(
            schwab.account_hash, f"B{i:02d}", long="2" if i % 2 else "0", short="0" if i % 2 else "2"
        )
        expected.add(("position_mismatch", f"B{i:02d}", ""))
    for i in range(20):  # our trade holds what the broker does not (one broker row says 0)
        seed_trade(connection, f"T{i:02d}", "1", side=OrderSide.SELL_SHORT if i % 2 else OrderSide.BUY)
        if i == 0:
            schwab.state.set_position(schwab.account_hash, "T00", long="0", avg="10")
        expected.add(("position_mismatch", f"T{i:02d}", ""))
    db.session.commit()
    writes_before = schwab.state.orders_received

    started = time.monotonic()
    report = reconcile.reconcile_connection(connection.id)
    assert time.monotonic() - started < 15
    assert report.ok and not report.held and report.error == ""
    assert {drift.key for drift in report.drift} == expected
    assert len(expected) == 100
    alerts = reconcile.open_drift(trader.id)
    assert alert_keys(alerts) == expected and report.new_alerts == 100
    by_key = {(a.kind.value, a.symbol, a.broker_order_id): a for a in alerts}
    q01 = by_key[("position_mismatch", "Q01", "")]
    assert (q01.our_quantity, q01.broker_quantity) == (D(10), D(11))
    assert "hold 10 long; the broker reports 11 long" in q01.detail
    b00, t01 = by_key[("position_mismatch", "B00", "")], by_key[("position_mismatch", "T01", "")]
    assert (b00.our_quantity, b00.broker_quantity) == (D(0), D(-2))
    assert (t01.our_quantity, t01.broker_quantity) == (D(-1), D(0))
    assert by_key[("orphan_order", "O00", next(k[2] for k in expected if k[1] == "O00"))].broker_quantity == D(5)
    assert count(Notification, Notification.kind == "drift", Notification.level == "warning") == 100
    assert actions("reconcile.drift") == ["reconcile.drift"] * 100

    # Never trade on an orphan, never cancel it: nothing was written to the broker.
    assert schwab.state.orders_received == writes_before
    assert schwab.state.requests[f"DELETE {ORDER_RULE}"] == 0
    orphan_ids = [key[2] for key in expected if key[0] == "orphan_order"]
    assert {schwab.state.orders[i]["status"] for i in orphan_ids} == {"WORKING"}
    assert count(Order, Order.broker_order_id.in_(orphan_ids)) == 0, "an orphan is never adopted as ours"
    assert db.session.get_one(BrokerConnection, connection.id).reconciled_at is not None


def test_repeated_runs_keep_one_alert_per_drift_and_resolve_what_went_away(trader: User, schwab: Schwab) -> None:
    connection = schwab_connection(trader, schwab)
    orphan = broker_order(schwab, "ORPH", 4)
    seed_trade(connection, "AAPL", "10")
    schwab.state.set_position(schwab.account_hash, "AAPL", long="12", avg="10")
    db.session.commit()

    first = reconcile.reconcile_connection(connection.id)
    opened = {a.id: a.detected_at for a in reconcile.open_drift()}
    assert first.new_alerts == 2 and len(opened) == 2
    second = reconcile.reconcile_connection(connection.id)
    assert (second.new_alerts, second.resolved_alerts, len(second.drift)) == (0, 0, 2)
    again = reconcile.open_drift()
    assert {a.id for a in again} == set(opened), "the same open drift is updated, not added again"
    assert all(a.detected_at >= opened[a.id] for a in again)
    assert count(DriftAlert) == 2 and count(Notification, Notification.kind == "drift") == 2

    schwab.state.set_position(schwab.account_hash, "AAPL", long="15", avg="10")  # changed, still drift
    third = reconcile.reconcile_connection(connection.id)
    assert third.new_alerts == 0
    (aapl,) = [a for a in reconcile.open_drift() if a.symbol == "AAPL"]
    assert aapl.broker_quantity == D(15) and "15 long" in aapl.detail

    schwab.state.set_status(orphan, "CANCELED")  # a person dealt with it at the broker
    schwab.state.set_position(schwab.account_hash, "AAPL", long="10", avg="10")
    fourth = reconcile.reconcile_connection(connection.id)
    assert (fourth.resolved_alerts, fourth.drift) == (2, [])
    assert reconcile.open_drift() == []
    resolved = list(db.session.scalars(db.select(DriftAlert)))
    assert len(resolved) == 2 and all(a.resolved_at is not None for a in resolved)
    assert actions("reconcile.drift_resolved") == ["reconcile.drift_resolved"] * 2

    schwab.state.set_position(schwab.account_hash, "AAPL", long="11", avg="10")  # back: a new alert
    assert reconcile.reconcile_connection(connection.id).new_alerts == 1
    assert count(DriftAlert) == 3 and len(reconcile.open_drift(trader.id)) == 1
    assert reconcile.open_drift(make_user("other@example.com").id) == []


# ---------------------------------------------------------------------------------- catching up


def test_our_orders_catch_up_with_what_the_broker_did_without_raising_drift(trader: User, schwab: Schwab) -> None:
    connection = schwab_connection(trader, schwab)
    trade = seed_trade(connection, "MSFT", "5")
    trade.status, trade.filled_quantity = TradeStatus.PENDING, D(0)
    filled = seed_order(connection, "MSFT", "5", broker_order(schwab, "MSFT", 5), trade=trade)
    cancelled = seed_order(connection, "IBM", "2", broker_order(schwab, "IBM", 2))
    unknown = seed_order(connection, "NVDA", "3", None, status=OrderStatus.UNKNOWN)
    db.session.commit()
    schwab.state.fill(filled.broker_order_id or "", 5, "101.50")  # filled while nobody was looking
    schwab.state.set_status(cancelled.broker_order_id or "", "CANCELED")
    at_broker = broker_order(schwab, "NVDA", 3)  # the UNKNOWN order did reach Schwab

    report = reconcile.reconcile_connection(connection.id)
    assert report.ok and report.drift == [] and count(DriftAlert) == 0
    db.session.expire_all()
    assert (filled.status, filled.filled_quantity, len(filled.fills)) == (OrderStatus.FILLED, D(5), 1)
    assert (trade.status, trade.filled_quantity, trade.average_fill_price) == (TradeStatus.OPEN, D(5), D("101.50"))
    assert cancelled.status == OrderStatus.CANCELLED
    assert (unknown.broker_order_id, unknown.status) == (at_broker, OrderStatus.WORKING)
    assert report.caught_up >= 2


def test_a_missing_order_on_a_symbol_whose_position_drifted_is_reported_not_a_failed_run(
    trader: User, schwab: Schwab
) -> None:
    connection = schwab_connection(trader, schwab)
    seed_trade(connection, "MSFT", "5")  # ours: 5 MSFT, the broker holds none
    seed_order(connection, "MSFT", "3", "4242424242")  # working here, unknown to the broker
    db.session.commit()
    report = reconcile.reconcile_connection(connection.id)
    assert report.ok and not report.held, report.error
    assert alert_keys(reconcile.open_drift()) == {
        (DriftKind.MISSING_ORDER.value, "MSFT", "4242424242"),
        (DriftKind.POSITION_MISMATCH.value, "MSFT", ""),
    }


def test_a_clean_paper_book_shows_no_drift(app: Flask, trader: User, paper: BrokerConnection) -> None:
    """Several trades, a partial exit, resting orders (broker stops and a far limit) on the paper ledger.
    The paper broker does not sell short; shorts are covered against the Schwab fake above."""
    for quantity in ("0.01", "0.02"):
        execution.send(orders.place_order(trader, ticket(paper, quantity=D(quantity))).id)
    app.config["RISK_REQUIRE_STOP_LOSS"] = False
    eth = orders.place_order(trader, ticket(paper, symbol="ETH-USD", quantity=D("0.5"), stop_loss_price=None))
    execution.send(eth.id)
    partial = orders.new_exit_order(db.session.get_one(Trade, eth.trade_id), OrderPurpose.EXIT, D("0.2"))
    db.session.commit()
    assert orders.submit(partial.id) is not None
    limit = (ask(paper) * D("0.5")).quantize(D("0.01"))
    resting = orders.place_order(
        trader,
        ticket(
            paper, order_type=OrderType.LIMIT, limit_price=limit, stop_loss_price=(limit * D("0.9")).quantize(D("0.01"))
        ),
    )
    execution.send(resting.id)
    db.session.expire_all()
    live = count(Order, Order.status.in_([OrderStatus.WORKING, OrderStatus.PARTIALLY_FILLED]))
    assert live == 3, "two broker stops and the far limit rest at the paper broker"
    assert reconcile.our_positions(paper.id) == {CRYPTO: D("0.03"), "ETH-USD": D("0.3")}

    report = reconcile.reconcile_connection(paper.id)
    assert report.ok and report.drift == [], report.drift
    assert report.broker_orders == 7 and report.caught_up == 0
    assert count(DriftAlert) == 0 and count(Notification, Notification.kind == "drift") == 0


def test_paper_ledger_drift_is_found_and_the_orphan_left_working(trader: User, paper: BrokerConnection) -> None:
    execution.send(orders.place_order(trader, ticket(paper)).id)
    account = db.session.scalar(db.select(PaperAccount).where(PaperAccount.connection_id == paper.id))
    broker = connections.broker_for(paper)
    far = (ask(paper, "SOL-USD") * D("0.5")).quantize(D("0.01"))
    request = OrderRequest("SOL-USD", OrderSide.BUY, D(1), OrderType.LIMIT, "placed-by-hand", limit_price=far)
    orphan = broker.place_order(account.account_key, request)
    position = db.session.scalar(db.select(PaperPosition).where(PaperPosition.symbol == CRYPTO))
    position.quantity = D("0.0125")  # the ledger moved without us
    db.session.commit()

    report = reconcile.reconcile_connection(paper.id)
    assert {d.key for d in report.drift} == {
        ("orphan_order", "SOL-USD", orphan.broker_order_id),
        ("position_mismatch", CRYPTO, ""),
    }
    mismatch = next(d for d in report.drift if d.kind == DriftKind.POSITION_MISMATCH)
    assert (mismatch.our_quantity, mismatch.broker_quantity) == (D("0.01"), D("0.0125"))
    db.session.expire_all()
    placed = db.session.scalar(db.select(PaperOrder).where(PaperOrder.order_key == orphan.broker_order_id))
    assert placed.status == OrderStatus.WORKING and count(PaperOrder) == 3, "nothing cancelled, nothing placed"


def test_an_order_we_gave_up_on_that_is_working_at_the_broker_is_drift(trader: User, paper: BrokerConnection) -> None:
    limit = (ask(paper) * D("0.5")).quantize(D("0.01"))
    order = orders.place_order(
        trader,
        ticket(
            paper, order_type=OrderType.LIMIT, limit_price=limit, stop_loss_price=(limit * D("0.9")).quantize(D("0.01"))
        ),
    )
    sent = orders.submit(order.id)
    assert sent is not None and sent.status == OrderStatus.WORKING
    sent.status, sent.status_detail = OrderStatus.REJECTED, "The broker has no record of this order."
    db.session.commit()  # as when an UNKNOWN order is given up on, and then turns up after all

    (drift,) = reconcile.reconcile_connection(paper.id).drift
    assert drift.key == ("orphan_order", CRYPTO, sent.broker_order_id)
    assert f"recorded as rejected (order #{sent.id}), so nothing follows it" in drift.detail
    db.session.expire_all()
    assert db.session.get_one(Order, order.id).status == OrderStatus.REJECTED, "never adopted back silently"


# ---------------------------------------------------------------------------------- failing connections


def entry_ticket(connection: BrokerConnection) -> OrderTicket:
    return OrderTicket(connection.id, "MSFT", OrderSide.BUY, D(1), stop_loss_price=D("95"))


def test_a_failing_connection_is_held_to_exits_until_a_run_succeeds(
    app: Flask, trader: User, schwab: Schwab, paper: BrokerConnection
) -> None:
    app.config["RISK_EQUITIES_MARKET_HOURS_ONLY"] = False  # the fake's weekday hours must not decide this test
    schwab.state.set_price("MSFT", "100.00")
    connection = schwab_connection(trader, schwab)
    open_trade = seed_trade(connection, "MSFT", "10")
    schwab.state.set_position(schwab.account_hash, "MSFT", long="10", avg="10")
    seed_trade(paper, CRYPTO, "1")  # drift on another connection: still found while Schwab fails
    db.session.commit()
    schwab.state.plan.add(LIST_ORDERS, Fault.SERVER_ERROR, times=6)

    reports = {r.connection_id: r for r in reconcile.reconcile_all()}
    assert reports[connection.id].held and not reports[connection.id].ok
    assert reports[paper.id].ok and [d.symbol for d in reports[paper.id].drift] == [CRYPTO]
    db.session.expire_all()
    hold = db.session.get_one(BrokerConnection, connection.id).reconcile_hold_reason
    assert hold is not None and hold.startswith("the last reconciliation with the broker failed")

    with pytest.raises(RiskLimitExceededError) as refused:
        orders.place_order(trader, entry_ticket(connection))
    assert refused.value.details["rules"] == ["trading_state"]
    assert refused.value.message == (
        f"Trading on this broker account is in reduce-only mode ({hold}). "
        "Orders that close or reduce a position still go through."
    )
    assert count(Order) == 0
    exit_intent = OrderIntent("MSFT", OrderSide.SELL, D(10), purpose=OrderPurpose.EXIT)
    assert risk.preview(trader, connection.id, exit_intent, None, False).allowed
    exit_order = orders.close_trade(db.session.get_one(Trade, open_trade.id), "closing while held")
    assert exit_order is not None and exit_order.status == OrderStatus.PENDING_SUBMIT
    assert risk.preview(trader, paper.id, OrderIntent(CRYPTO, OrderSide.BUY, D("0.01")), None, True).failed_rules != [
        "trading_state"
    ], "the hold is per connection"

    assert reconcile.reconcile_connection(connection.id).held, "still failing: still held"
    holds = Notification.kind == "reconcile_hold"
    assert count(Notification, holds) == 1 and actions("reconcile.hold") == ["reconcile.hold"]

    exit_order.status = OrderStatus.CANCELLED  # drop the exit so the book matches the broker again
    open_trade.status = TradeStatus.OPEN
    db.session.commit()
    ok = reconcile.reconcile_connection(connection.id)
    assert ok.ok and not ok.held and ok.drift == []
    db.session.expire_all()
    assert db.session.get_one(BrokerConnection, connection.id).reconcile_hold_reason is None
    assert "reconcile.hold_cleared" in actions("reconcile.hold")
    assert risk.connection_hold(connection.id) is None
    entry_intent = OrderIntent("MSFT", OrderSide.BUY, D(1), stop_loss_price=D("95"))
    assert "trading_state" not in risk.preview(trader, connection.id, entry_intent, None, True).failed_rules
    assert orders.place_order(trader, entry_ticket(connection)).status == OrderStatus.PENDING_SUBMIT


def test_a_dead_schwab_login_holds_the_connection_and_asks_for_a_reconnect(trader: User, schwab: Schwab) -> None:
    connection = schwab_connection(trader, schwab)
    schwab.state.expire_access_tokens()
    schwab.state.kill_refresh_tokens()
    connection.access_token_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    report = reconcile.reconcile_connection(connection.id)
    assert report.held and report.error
    db.session.expire_all()
    held = db.session.get_one(BrokerConnection, connection.id)
    assert held.status == ConnectionStatus.RECONNECT_NEEDED and held.reconcile_hold_reason is not None
    assert reconcile.held_connections(trader.id) == [held]
    assert schwab.state.requests[LIST_ORDERS] == 0


def test_an_unexpected_error_holds_only_its_own_connection(trader: User, paper: BrokerConnection) -> None:
    broken = BrokerConnection(
        user_id=trader.id, provider=Provider.COINBASE, label="Coinbase", status=ConnectionStatus.CONNECTED
    )
    credentials.store_secret(broken, "credentials_encrypted", "not the JSON key it should be")
    db.session.add(broken)
    seed_trade(paper, CRYPTO, "1")
    db.session.commit()

    with capture_logs() as logs:
        reports = {r.connection_id: r for r in reconcile.reconcile_all()}
    assert reports[broken.id].held and reports[broken.id].error == reconcile.UNEXPECTED
    assert reports[paper.id].ok and [d.symbol for d in reports[paper.id].drift] == [CRYPTO]
    assert [(e["event"], e["log_level"]) for e in logs if e["event"] == "reconcile.crashed"] == [
        ("reconcile.crashed", "error")
    ]
    assert [c.id for c in reconcile.held_connections()] == [broken.id]


def test_the_snapshot_reports_a_held_connection_as_reducing(trader: User, paper: BrokerConnection) -> None:
    intent = OrderIntent(CRYPTO, OrderSide.BUY, D("0.01"))
    assert risk.snapshot_for(trader, paper.id, intent, None, True).connection_state == TradingState.ACTIVE
    paper.reconcile_hold_reason = "the last reconciliation with the broker failed: boom"
    db.session.commit()
    snapshot = risk.snapshot_for(trader, paper.id, intent, None, True)
    assert (snapshot.connection_state, snapshot.connection_state_reason) == (
        TradingState.REDUCING,
        "the last reconciliation with the broker failed: boom",
    )


# ---------------------------------------------------------------------------------- the task


@pytest.fixture()
def worker(app: Flask) -> Iterator[Any]:
    """A real Celery worker thread consuming from the app's broker (Redis in CI)."""
    with start_worker(app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
        yield w


def wait_for_alerts(expected: int, seconds: float = 20) -> list[DriftAlert]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.rollback()
        alerts = reconcile.open_drift()
        if len(alerts) >= expected:
            return alerts
        time.sleep(0.1)
    return reconcile.open_drift()


def test_the_task_reconciles_in_a_real_worker(app: Flask, trader: User, paper: BrokerConnection, worker: Any) -> None:
    seed_trade(paper, CRYPTO, "1")
    db.session.commit()
    reconcile_task.delay()
    (alert,) = wait_for_alerts(1)
    assert (alert.kind, alert.symbol, alert.our_quantity, alert.broker_quantity) == (
        DriftKind.POSITION_MISMATCH,
        CRYPTO,
        D(1),
        D(0),
    )


def test_a_pass_sent_while_another_runs_is_skipped(app: Flask, paper: BrokerConnection) -> None:
    seed_trade(paper, CRYPTO, "1")
    db.session.commit()
    with task_locks.one_at_a_time("reconcile:all") as mine:
        assert mine
        assert reconcile_task() == {"skipped": 1}
        assert reconcile.open_drift() == [], "nothing reconciled while the running pass holds the lease"
    assert reconcile_task() == {"connections": 1, "failed": 0, "drift": 1, "new": 1, "resolved": 0}
    assert [alert.symbol for alert in reconcile.open_drift()] == [CRYPTO]


def test_a_starting_worker_enqueues_one_reconciliation(
    app: Flask, trader: User, paper: BrokerConnection, worker: Any
) -> None:
    seed_trade(paper, "ETH-USD", "2")
    db.session.commit()
    worker_ready.send(sender=worker.consumer)  # what celery's worker sends once it consumes
    (alert,) = wait_for_alerts(1)
    assert alert.symbol == "ETH-USD"


def test_beat_runs_reconciliation_every_configured_interval(app: Flask, database_url: str) -> None:
    assert app.config["RECONCILE_INTERVAL"] == 300, "the default"
    configured = create_app(base_environ(database_url, RECONCILE_INTERVAL="45"))
    celery_app = configured.extensions["celery"]
    entry = celery_app.conf.beat_schedule["reconcile-brokers"]
    assert entry["task"] == "reconcile.all" and entry["task"] in celery_app.tasks
    assert (entry["schedule"], entry["options"]) == (45.0, {"expires": 45.0})
    with pytest.raises(ConfigurationError, match="RECONCILE_INTERVAL must be an integer >= 30"):
        create_app(base_environ(database_url, RECONCILE_INTERVAL="10"))
