"""``flask trading halt|resume|status``: the platform-wide kill switch from the command line."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask

from models import AuditLog
from tests.support import make_user
from utils.brokers.base import Quote
from utils.enums import OrderSide, TradingState
from utils.extensions import db
from utils.money import utcnow
from utils.risk.inputs import OrderIntent
from utils.services import risk


def run(app: Flask, *args: str) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["trading", *args])
    return result.exit_code, result.output


def test_halt_stops_new_orders_until_resume(app: Flask) -> None:
    trader = make_user()
    buy = OrderIntent("BTC-USD", OrderSide.BUY, Decimal("0.01"), stop_loss_price=Decimal(90000))
    quote = Quote("BTC-USD", Decimal(94990), Decimal(95010), Decimal(95000), Decimal(95000), utcnow())

    code, output = run(app, "halt", "--reason", "exchange outage")
    assert code == 0, output
    assert "Trading HALTED platform-wide: exchange outage" in output
    assert risk.global_trading_state() == risk.TradingStatus(TradingState.HALTED, "exchange outage", "cli")
    refused = risk.preview(trader, 1, buy, quote, True)
    assert refused.failed_rules == ["trading_state"]

    code, output = run(app, "status")
    assert (code, output.strip()) == (0, "Trading is HALTED platform-wide: exchange outage (set by cli).")

    code, output = run(app, "resume")
    assert code == 0 and "ACTIVE platform-wide" in output
    assert risk.global_trading_state().state == TradingState.ACTIVE
    assert risk.preview(trader, 1, buy, quote, True).allowed
    actions = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "risk.global_trading_state"))
    assert [(entry.details["to"], entry.details["by"]) for entry in actions] == [("halted", "cli"), ("active", "cli")]


def test_halt_requires_a_reason(app: Flask) -> None:
    code, output = run(app, "halt")
    assert code == 2 and "Missing option '--reason'" in output
    code, output = run(app, "halt", "--reason", "   ")
    assert code == 1 and "a reason is required" in output
    assert risk.global_trading_state().state == TradingState.ACTIVE


def test_status_when_nothing_was_ever_set(app: Flask) -> None:
    assert run(app, "status") == (0, "Trading is ACTIVE platform-wide.\n")
