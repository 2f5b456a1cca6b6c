"""REL-08 Risk fails closed: each risk check forced to raise blocks the order before the broker.

Every rule of DEFAULT_RULES is enumerated, so a rule added later is covered without editing this
file. The app's engine (``app.extensions["risk_engine"]``) is given the default rules with one of
them made to raise; the order then goes through the real gateway. Pass criteria: the order is
refused with a reason naming the check, the refusal is audited, nothing is stored as an order and
the paper broker's own order book receives nothing. Exits meet only the rules that do not gate new
exposure, so those rules are also forced to raise under a real closing exit.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask

from models import AuditLog, BrokerConnection, Order, PaperOrder, Trade, User
from tests.trading_support import ticket
from utils.enums import OrderStatus, TradeStatus
from utils.exceptions import RiskLimitExceededError
from utils.extensions import db
from utils.risk.engine import RiskEngine, evaluation_failed
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot
from utils.risk.rules import DEFAULT_RULES, Rule
from utils.services import execution, orders, risk_limits

RULE_NAMES = [rule.name for rule in DEFAULT_RULES]
EXIT_RULE_NAMES = [rule.name for rule in DEFAULT_RULES if not rule.gates_new_exposure]


class Broken(Rule):
    """A default rule whose check raises, as a bug or a corrupt input would make it."""

    def __init__(self, rule: Rule):
        self.name = rule.name  # type: ignore[misc]
        self.gates_new_exposure = rule.gates_new_exposure  # type: ignore[misc]
        self.enters_reducing = rule.enters_reducing  # type: ignore[misc]

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        """Always fails to evaluate."""
        raise RuntimeError(f"{self.name} exploded")


def break_rule(app: Flask, name: str) -> None:
    """The app's engine: the default rules with ``name`` made to raise."""
    rules = [Broken(rule) if rule.name == name else rule for rule in DEFAULT_RULES]
    app.extensions["risk_engine"] = RiskEngine(rules)


def paper_orders() -> int:
    """Orders the paper broker received (its own book)."""
    return int(db.session.scalar(db.select(db.func.count(PaperOrder.id))) or 0)


def rejections() -> list[AuditLog]:
    return list(db.session.scalars(db.select(AuditLog).where(AuditLog.action == "risk.rejected")))


def send_waiting() -> None:
    """What the worker would send: every stored intent still waiting."""
    for order_id in db.session.scalars(db.select(Order.id).where(Order.status == OrderStatus.PENDING_SUBMIT)):
        execution.send(order_id)


def open_position(trader: User, paper: BrokerConnection) -> Trade:
    """A filled entry on the paper broker, placed and sent with the healthy engine; no broker stop
    (this trader may trade without one), so a closing exit goes straight to the risk check."""
    risk_limits.set_limits(trader, trader, {"require_stop_loss": False})
    entry = orders.place_order(trader, ticket(paper, stop_loss_price=None))
    execution.send(entry.id)
    trade = db.session.get_one(Trade, entry.trade_id)
    assert trade.status == TradeStatus.OPEN and paper_orders() >= 1
    return trade


def test_every_default_rule_is_enumerated() -> None:
    assert len(RULE_NAMES) == len(set(RULE_NAMES)) >= 13, "each rule has its own name"
    assert EXIT_RULE_NAMES, "at least one rule guards exits"


def test_a_healthy_engine_lets_the_same_entry_reach_the_broker(
    app: Flask, trader: User, paper: BrokerConnection
) -> None:
    break_rule(app, "no such rule")
    entry = orders.place_order(trader, ticket(paper))
    send_waiting()
    received = db.session.scalars(db.select(PaperOrder.client_order_id))
    assert entry.client_order_id in set(received), "the paper broker booked the entry"


@pytest.mark.parametrize("name", RULE_NAMES)
def test_an_entry_is_refused_when_a_check_raises(app: Flask, trader: User, paper: BrokerConnection, name: str) -> None:
    break_rule(app, name)
    with pytest.raises(RiskLimitExceededError) as refused:
        orders.place_order(trader, ticket(paper))
    send_waiting()

    assert evaluation_failed(name) in refused.value.message, "the reason names the check"
    assert name in refused.value.details["rules"]
    [audited] = rejections()
    assert name in audited.details["rules"] and evaluation_failed(name) in audited.details["reasons"]
    assert db.session.scalar(db.select(db.func.count(Order.id))) == 0, "nothing stored as an order"
    assert db.session.scalar(db.select(db.func.count(Trade.id))) == 0
    assert paper_orders() == 0, "the broker received nothing"


@pytest.mark.parametrize("name", EXIT_RULE_NAMES)
def test_an_exit_is_refused_when_a_check_it_obeys_raises(
    app: Flask, trader: User, paper: BrokerConnection, name: str
) -> None:
    trade = open_position(trader, paper)
    sent_before, orders_before = paper_orders(), db.session.scalar(db.select(db.func.count(Order.id)))
    break_rule(app, name)
    with pytest.raises(RiskLimitExceededError) as refused:
        orders.close_trade(trade, "test close")
    send_waiting()

    assert evaluation_failed(name) in refused.value.message
    [audited] = rejections()
    assert audited.subject_id == str(trade.id) and name in " ".join(audited.details["reasons"])
    assert db.session.scalar(db.select(db.func.count(Order.id))) == orders_before, "no exit stored"
    assert db.session.get_one(Trade, trade.id).status == TradeStatus.OPEN
    assert paper_orders() == sent_before, "the broker received no exit"


def test_an_exit_passes_when_only_an_exposure_check_raises(app: Flask, trader: User, paper: BrokerConnection) -> None:
    trade = open_position(trader, paper)
    gating = next(rule.name for rule in DEFAULT_RULES if rule.gates_new_exposure)
    break_rule(app, gating)
    exit_order = orders.close_trade(trade, "test close")
    assert exit_order is not None
    execution.send(exit_order.id)
    assert paper_orders() == 2 and db.session.get_one(Order, exit_order.id).quantity == Decimal("0.01")
