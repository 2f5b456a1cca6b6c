"""The risk service on the real database: limits over defaults, the snapshot, trading states, and
the audited check that every order passes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from models import AuditLog, BrokerConnection, RiskSettings, SystemSetting, Trade, User
from tests.support import count_queries, make_user
from tests.trading_support import stored_order as order
from utils.brokers.base import Quote
from utils.config import load_config
from utils.enums import (
    ConnectionStatus,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    Provider,
    TradeStatus,
    TradingState,
)
from utils.exceptions import ConfigurationError, InvalidInputError
from utils.extensions import db
from utils.money import utcnow
from utils.risk.inputs import OrderIntent, RiskLimits
from utils.services import risk

D = Decimal
NOW = utcnow()
YESTERDAY = risk.start_of_utc_day(NOW) - timedelta(hours=1)


def connection(user: User, provider: Provider = Provider.PAPER) -> BrokerConnection:
    row = BrokerConnection(user_id=user.id, provider=provider, label="Sandbox", status=ConnectionStatus.CONNECTED)
    db.session.add(row)
    db.session.flush()
    return row


def trade(conn: BrokerConnection, symbol: str, side: OrderSide, status: TradeStatus, **fields: Any) -> Trade:
    """A trade row as the order service would leave it (fills given as totals)."""
    row = Trade(
        user_id=conn.user_id,
        connection_id=conn.id,
        symbol=symbol,
        side=side,
        trade_type=OrderType.MARKET,
        status=status,
        quantity=fields.pop("quantity", fields.get("filled_quantity", D(1))),
        **fields,
    )
    db.session.add(row)
    db.session.flush()
    return row


def quote(symbol: str = "AAPL", bid: str = "99.99", ask: str = "100.01") -> Quote:
    return Quote(symbol, D(bid), D(ask), D(ask), D(ask), utcnow())


def entry(symbol: str = "AAPL", quantity: str = "10", **changes: Any) -> OrderIntent:
    fields: dict[str, Any] = {"stop_loss_price": D(95), **changes}
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=D(quantity), **fields)


def closing(symbol: str = "AAPL", quantity: str = "6", side: OrderSide = OrderSide.SELL) -> OrderIntent:
    return OrderIntent(symbol=symbol, side=side, quantity=D(quantity), purpose=OrderPurpose.EXIT)


def audits(action: str) -> list[AuditLog]:
    db.session.rollback()  # read what was committed
    return list(db.session.scalars(db.select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


# ---------------------------------------------------------------------------- limits


def test_limits_are_the_configured_defaults_without_settings(app: Flask) -> None:
    assert risk.limits_for(make_user()) == RiskLimits(
        max_order_notional=D(25000),
        max_position_notional=D(50000),
        max_total_exposure=D(250000),
        max_open_positions=20,
        max_orders_per_day=200,
        max_daily_loss=D(5000),
        equities_market_hours_only=True,
        max_quote_age_seconds=30,
        require_stop_loss=True,
        max_stop_distance_pct=D(20),
    )


def test_a_users_settings_override_the_defaults_column_by_column(app: Flask) -> None:
    user = make_user()
    db.session.add(
        RiskSettings(
            user_id=user.id,
            max_order_notional=D("1234.56"),
            max_open_positions=3,
            require_stop_loss=False,
            equities_market_hours_only=False,
            symbol_allowlist="aapl, msft\nSPY",
            symbol_denylist="gme;amc",
        )
    )
    db.session.commit()
    app.config["RISK_MAX_DAILY_LOSS"] = None  # "off" in the environment
    limits = risk.limits_for(user)
    assert (limits.max_order_notional, limits.max_open_positions) == (D("1234.56"), 3)
    assert (limits.require_stop_loss, limits.equities_market_hours_only) == (False, False)
    assert limits.max_position_notional == D(50000), "NULL column: the default"
    assert limits.max_daily_loss is None
    assert limits.symbol_allowlist == {"AAPL", "MSFT", "SPY"}
    assert limits.symbol_denylist == {"GME", "AMC"}


def test_risk_settings_are_read_from_the_environment(app: Flask) -> None:
    base = {"ARBION_ENV": "testing", "SECRET_KEY": "s", "ENCRYPTION_KEY": app.config["ENCRYPTION"]["ENCRYPTION_KEY"]}
    config = load_config(
        {**base, "RISK_MAX_DAILY_LOSS": "off", "RISK_MAX_OPEN_POSITIONS": "None", "RISK_MAX_ORDER_NOTIONAL": "999.5"}
    )
    assert (config["RISK_MAX_DAILY_LOSS"], config["RISK_MAX_OPEN_POSITIONS"]) == (None, None)
    assert config["RISK_MAX_ORDER_NOTIONAL"] == D("999.5")
    with pytest.raises(ConfigurationError, match="RISK_MAX_QUOTE_AGE_SECONDS must be an integer >= 1"):
        load_config({**base, "RISK_MAX_QUOTE_AGE_SECONDS": "0"})
    with pytest.raises(ConfigurationError, match="RISK_MAX_STOP_DISTANCE_PCT must be a non-negative number"):
        load_config({**base, "RISK_MAX_STOP_DISTANCE_PCT": "-5"})


# ---------------------------------------------------------------------------- snapshot


def book(user: User) -> tuple[BrokerConnection, BrokerConnection]:
    """Two connections with longs, a short, a closing trade, pending entries and today's results."""
    first, second = connection(user), connection(user)
    aapl = trade(first, "AAPL", OrderSide.BUY, TradeStatus.OPEN, filled_quantity=D(10), exit_filled_quantity=D(4),
                 average_fill_price=D(100))  # fmt: skip
    trade(second, "AAPL", OrderSide.SELL_SHORT, TradeStatus.OPEN, filled_quantity=D(5), average_fill_price=D(110))
    trade(first, "MSFT", OrderSide.BUY, TradeStatus.CLOSING, filled_quantity=D(3), exit_filled_quantity=D(1),
          average_fill_price=D(400))  # fmt: skip
    trade(first, "SPY", OrderSide.BUY, TradeStatus.OPEN, filled_quantity=D(5), exit_filled_quantity=D(5),
          average_fill_price=D(500))  # fmt: skip
    trade(first, "NFLX", OrderSide.BUY, TradeStatus.CANCELLED, filled_quantity=D(0))
    for pnl, closed_at in ((D(-250), NOW), (D(50), NOW), (D(-1000), YESTERDAY)):
        trade(first, "IBM", OrderSide.BUY, TradeStatus.CLOSED, filled_quantity=D(1), exit_filled_quantity=D(1),
              average_fill_price=D(1), realized_pnl=pnl, closed_at=closed_at)  # fmt: skip
    # The AAPL entry is still working on 2 more at 101; a TSLA entry has not filled at all.
    order(first, "AAPL", OrderPurpose.ENTRY, OrderStatus.PARTIALLY_FILLED, quantity=D(12), filled_quantity=D(10),
          limit_price=D(101), trade_id=aapl.id)  # fmt: skip
    tsla = trade(first, "TSLA", OrderSide.BUY, TradeStatus.PENDING, quantity=D(10))
    order(first, "TSLA", OrderPurpose.ENTRY, OrderStatus.WORKING, quantity=D(10), limit_price=D(200), trade_id=tsla.id)
    order(first, "GME", OrderPurpose.ENTRY, OrderStatus.REJECTED, quantity=D(1), limit_price=D(20))
    order(first, "MSFT", OrderPurpose.EXIT, OrderStatus.WORKING, side=OrderSide.SELL, quantity=D(2))
    order(first, "AAPL", OrderPurpose.ENTRY, OrderStatus.FILLED, created_at=YESTERDAY)
    return first, second


def test_the_snapshot_reads_exposure_positions_orders_and_pnl(app: Flask) -> None:
    user = make_user()
    other = make_user("other@example.com")
    first, _ = book(user)
    trade(connection(other), "AAPL", OrderSide.BUY, TradeStatus.OPEN, filled_quantity=D(100), average_fill_price=D(1))
    db.session.commit()
    snapshot = risk.snapshot_for(user, first.id, entry(), quote(), market_open=True, now=NOW)
    # AAPL: 6 open long at 100 + 5 short at 110 + 2 pending at 101; MSFT: 2 at 400; TSLA: 10 pending at 200.
    assert snapshot.exposure_by_symbol == {"AAPL": D(1352), "MSFT": D(800), "TSLA": D(2000)}
    assert snapshot.total_exposure == D(4152)
    assert snapshot.open_positions == 4  # AAPL long, AAPL short, MSFT closing, TSLA pending
    assert snapshot.entry_orders_today == 3  # AAPL, TSLA and the rejected GME; not the exit, not yesterday's
    assert snapshot.realized_pnl_today == D(-200)
    assert (snapshot.user_state, snapshot.global_state) == (TradingState.ACTIVE, TradingState.ACTIVE)
    assert snapshot.now == NOW and snapshot.market_open is True
    assert snapshot.reduces_position is False


@pytest.mark.parametrize(
    ("which", "intent", "reduces"),
    [
        (0, closing("AAPL", "6"), True),
        (0, closing("aapl", "0.5"), True),
        (0, closing("AAPL", "6.0001"), False),  # more than is open would oversell
        (1, closing("AAPL", "6"), False),  # the second connection holds a short, not a long
        (1, closing("AAPL", "5", OrderSide.BUY_TO_COVER), True),
        (1, closing("AAPL", "6", OrderSide.BUY_TO_COVER), False),
        (0, closing("SPY", "1"), False),  # fully exited
        (0, closing("MSFT", "2"), True),  # CLOSING still has 2 open
        (0, closing("AAPL", "1", OrderSide.SELL_SHORT), False),
    ],
)
def test_whether_an_exit_reduces_a_position_is_per_connection_symbol_and_side(
    app: Flask, which: int, intent: OrderIntent, reduces: bool
) -> None:
    user = make_user()
    connections = book(user)
    db.session.commit()
    assert risk.snapshot_for(user, connections[which].id, intent, quote(), True).reduces_position is reduces


def test_the_snapshot_takes_a_constant_number_of_queries(app: Flask) -> None:
    user = make_user()
    first, _ = book(user)
    db.session.commit()
    first_id = (user.id, first.id)[1]  # load the test's own objects before counting
    small = count_queries(lambda: risk.snapshot_for(user, first_id, entry(), quote(), True))
    for number in range(30):
        trade(first, f"S{number}", OrderSide.BUY, TradeStatus.OPEN, filled_quantity=D(1), average_fill_price=D(1))
        order(first, f"P{number}", OrderPurpose.ENTRY, OrderStatus.WORKING, limit_price=D(1))
    db.session.commit()
    first_id = (user.id, first.id)[1]
    large = count_queries(lambda: risk.snapshot_for(user, first_id, entry(), quote(), True))
    assert large == small == 4  # settings; open and closed-today trades; live entries; state, hold and count


def test_a_pending_market_entry_is_valued_at_the_quote_of_its_symbol(app: Flask) -> None:
    user = make_user()
    conn = connection(user)
    order(conn, "AAPL", OrderPurpose.ENTRY, OrderStatus.PENDING_SUBMIT, order_type=OrderType.MARKET, quantity=D(3))
    db.session.commit()
    snapshot = risk.snapshot_for(user, conn.id, entry(), quote(), True)
    assert snapshot.exposure_by_symbol == {"AAPL": D("300.03")}


def test_exposure_that_cannot_be_valued_blocks_entries_but_not_exits(app: Flask) -> None:
    user = make_user()
    conn = connection(user)
    trade(conn, "AAPL", OrderSide.BUY, TradeStatus.OPEN, filled_quantity=D(6))  # no average price recorded
    order(conn, "MSFT", OrderPurpose.ENTRY, OrderStatus.UNKNOWN, order_type=OrderType.MARKET)  # unpriced
    db.session.commit()
    snapshot = risk.snapshot_for(user, conn.id, entry(), quote(), True)
    assert snapshot.exposure_by_symbol["AAPL"].is_nan() and snapshot.exposure_by_symbol["MSFT"].is_nan()
    refused = risk.evaluate(user, conn.id, entry(), quote(), True)
    assert {"max_position_notional", "max_total_exposure"} <= set(refused.failed_rules)
    assert all(result.errored for result in refused.failures)
    assert risk.evaluate(user, conn.id, closing(), quote(), True).allowed


# ---------------------------------------------------------------------------- trading states


def test_states_default_to_active(app: Flask) -> None:
    assert risk.user_trading_state(make_user()) == risk.TradingStatus(TradingState.ACTIVE)
    assert risk.global_trading_state() == risk.TradingStatus(TradingState.ACTIVE)


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_restricting_needs_a_reason(app: Flask, state: TradingState) -> None:
    admin = make_user("admin@example.com")
    with pytest.raises(InvalidInputError, match="a reason is required"):
        risk.set_user_trading_state(admin, make_user(), state, "  ")
    with pytest.raises(InvalidInputError, match="a reason is required"):
        risk.set_global_trading_state(admin, state)
    with pytest.raises(InvalidInputError, match="under 500 characters"):
        risk.set_global_trading_state(admin, state, "x" * 501)


def test_a_users_state_change_is_stored_audited_and_committed(app: Flask) -> None:
    admin, user = make_user("admin@example.com"), make_user()
    risk.set_user_trading_state(admin, user, TradingState.HALTED, "compliance review")
    risk.set_user_trading_state(admin, user, TradingState.ACTIVE)
    user_id = user.id
    db.session.remove()  # a new process would start here
    user = db.session.get_one(User, user_id)
    assert risk.user_trading_state(user) == risk.TradingStatus(TradingState.ACTIVE, "")
    entries = audits("risk.user_trading_state")
    assert [(e.actor_email, e.subject_id, e.details["from"], e.details["to"]) for e in entries] == [
        ("admin@example.com", str(user.id), "active", "halted"),
        ("admin@example.com", str(user.id), "halted", "active"),
    ]
    assert entries[0].details["reason"] == "compliance review"
    assert db.session.scalar(db.select(db.func.count(RiskSettings.id))) == 1


def test_the_global_kill_switch_is_stored_audited_and_committed(app: Flask) -> None:
    admin = make_user("admin@example.com")
    risk.set_global_trading_state(admin, TradingState.HALTED, "exchange outage")
    admin_id = admin.id
    db.session.remove()
    assert risk.global_trading_state() == risk.TradingStatus(
        TradingState.HALTED, "exchange outage", "admin@example.com"
    )
    setting = db.session.get_one(SystemSetting, "trading_state")
    assert setting.value == {"state": "halted", "reason": "exchange outage", "by": "admin@example.com"}
    assert setting.updated_by_id == admin_id
    risk.set_global_trading_state(None, TradingState.ACTIVE, source="cli")
    assert risk.global_trading_state() == risk.TradingStatus(TradingState.ACTIVE, "", "cli")
    assert [(e.details["from"], e.details["to"]) for e in audits("risk.global_trading_state")] == [
        ("active", "halted"),
        ("halted", "active"),
    ]


@pytest.mark.parametrize("value", [{"state": "paused"}, {"reason": "no state"}, "halted", None, [1]])
def test_an_unreadable_kill_switch_counts_as_halted(app: Flask, value: Any) -> None:
    db.session.add(SystemSetting(key="trading_state", value=value))
    db.session.commit()
    status = risk.global_trading_state()
    assert status.state == TradingState.HALTED
    assert not risk.evaluate(make_user(), 1, entry(), quote(), True).allowed


# ---------------------------------------------------------------------------- the check


def test_an_allowed_order_leaves_no_trace(app: Flask) -> None:
    user = make_user()
    decision = risk.evaluate(user, connection(user).id, entry(), quote(), True)
    assert decision.allowed, decision.reasons
    assert decision.projected.order_notional == D("1000.10")
    assert audits("risk.rejected") == []


def test_a_rejection_is_audited_with_its_reasons_and_committed(app: Flask) -> None:
    user = make_user()
    conn_id = connection(user).id
    risk.set_user_trading_state(None, user, TradingState.HALTED, "compliance review")
    decision = risk.evaluate(user, conn_id, entry(quantity="300"), quote(), True)
    assert not decision.allowed
    assert decision.failed_rules == ["trading_state", "max_order_notional"]
    (entry_row,) = audits("risk.rejected")
    assert entry_row.subject_id == str(user.id) and entry_row.actor_id is None
    assert entry_row.details["reasons"] == decision.reasons
    assert entry_row.details["rules"] == ["trading_state", "max_order_notional"]
    assert entry_row.details["symbol"] == "AAPL" and entry_row.details["quantity"] == "300"
    assert entry_row.details["projected"]["order_notional"] == "30003.00"


def test_exits_pass_under_the_global_halt_and_a_users_halt(app: Flask) -> None:
    user = make_user()
    first, _ = book(user)
    db.session.commit()
    risk.set_global_trading_state(None, TradingState.HALTED, "exchange outage")
    risk.set_user_trading_state(None, user, TradingState.HALTED, "compliance review")
    assert risk.evaluate(user, first.id, closing(), quote(), market_open=False).allowed
    assert not risk.evaluate(user, first.id, entry(), quote(), True).allowed
    assert len(audits("risk.rejected")) == 1


def test_hitting_the_daily_loss_limit_moves_an_active_user_to_reducing_once(app: Flask) -> None:
    user = make_user()
    conn = connection(user)
    trade(conn, "IBM", OrderSide.BUY, TradeStatus.CLOSED, filled_quantity=D(1), exit_filled_quantity=D(1),
          average_fill_price=D(1), realized_pnl=D("-5000.01"), closed_at=NOW)  # fmt: skip
    db.session.commit()
    first = risk.evaluate(user, conn.id, entry(), quote(), True)
    assert first.enter_reducing and not first.allowed
    assert risk.user_trading_state(user) == risk.TradingStatus(TradingState.REDUCING, "daily loss limit reached")
    second = risk.evaluate(user, conn.id, entry(), quote(), True)
    assert set(second.failed_rules) == {"trading_state", "max_daily_loss"}
    changes = audits("risk.user_trading_state")
    assert [(e.details["from"], e.details["to"], e.details["by"]) for e in changes] == [
        ("active", "reducing", "risk engine")
    ]
    assert len(audits("risk.rejected")) == 2


def test_the_daily_loss_limit_never_loosens_a_halt(app: Flask) -> None:
    user = make_user()
    conn = connection(user)
    trade(conn, "IBM", OrderSide.BUY, TradeStatus.CLOSED, filled_quantity=D(1), exit_filled_quantity=D(1),
          average_fill_price=D(1), realized_pnl=D(-9000), closed_at=NOW)  # fmt: skip
    db.session.commit()
    risk.set_user_trading_state(None, user, TradingState.HALTED, "compliance review")
    assert risk.evaluate(user, conn.id, entry(), quote(), True).enter_reducing
    assert risk.user_trading_state(user) == risk.TradingStatus(TradingState.HALTED, "compliance review")
    assert len(audits("risk.user_trading_state")) == 1


def test_preview_decides_without_auditing_or_changing_state(app: Flask) -> None:
    user = make_user()
    conn = connection(user)
    trade(conn, "IBM", OrderSide.BUY, TradeStatus.CLOSED, filled_quantity=D(1), exit_filled_quantity=D(1),
          average_fill_price=D(1), realized_pnl=D(-9000), closed_at=NOW)  # fmt: skip
    db.session.commit()
    decision = risk.preview(user, conn.id, entry(), quote(), True)
    assert not decision.allowed and decision.enter_reducing
    assert decision.projected.total_exposure_after == D("1000.10")
    assert risk.user_trading_state(user).state == TradingState.ACTIVE
    assert audits("risk.rejected") == [] and audits("risk.user_trading_state") == []
