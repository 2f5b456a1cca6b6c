"""The engine: fail-closed on any error, exits never blocked by exposure rules, one decision shape."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from tests.risk.builders import exit_intent, intent, limits, quote, snapshot
from utils.enums import OrderPurpose, OrderSide, TradingState
from utils.exceptions import DailyTradingLimitExceededError, PositionSizeLimitError, RiskLimitExceededError
from utils.risk.engine import SKIPPED_FOR_EXITS, RiskEngine
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot
from utils.risk.rules import DEFAULT_RULES, Rule

D = Decimal
ENGINE = RiskEngine()
# Everything an entry could trip over at once.
HOSTILE = snapshot(
    global_state=TradingState.HALTED,
    user_state=TradingState.REDUCING,
    quote=None,
    market_open=False,
    exposure_by_symbol={"AAPL": D(10**9)},
    total_exposure=D(10**9),
    open_positions=10**6,
    entry_orders_today=10**6,
    realized_pnl_today=D(-(10**9)),
    reduces_position=True,
)
STRICT = limits(
    max_order_notional=D(1),
    max_position_notional=D(1),
    max_total_exposure=D(1),
    max_open_positions=0,
    max_orders_per_day=0,
    max_daily_loss=D(1),
    symbol_denylist=frozenset({"AAPL"}),
)


class Exploding(Rule):
    """A rule whose check raises: the engine must block, whatever the order."""

    name = "exploding"
    gates_new_exposure = False

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        raise RuntimeError("boom")


class Mumbling(Rule):
    """A rule that answers neither None nor a reason."""

    name = "mumbling"
    gates_new_exposure = False

    def __init__(self, answer: object):
        self.answer = answer

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        return self.answer  # type: ignore[return-value]


@pytest.mark.parametrize("purpose", [OrderPurpose.EXIT, OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT])
def test_exits_pass_while_halted_reducing_and_over_every_limit(purpose: OrderPurpose) -> None:
    decision = ENGINE.check(exit_intent(purpose=purpose), HOSTILE, STRICT)
    assert decision.allowed, decision.reasons
    skipped = [result.name for result in decision.results if not result.applied]
    assert skipped == [rule.name for rule in DEFAULT_RULES if rule.gates_new_exposure]
    assert all(result.message == SKIPPED_FOR_EXITS for result in decision.results if not result.applied)
    assert not decision.enter_reducing


def test_the_same_order_as_an_entry_is_refused_for_every_reason() -> None:
    decision = ENGINE.check(intent(side=OrderSide.SELL, stop_loss_price=None), HOSTILE, STRICT)
    assert not decision.allowed
    assert set(decision.failed_rules) == {
        "trading_state",
        "symbol_lists",
        "market_hours",
        "stale_quote",
        "max_order_notional",
        "max_position_notional",
        "max_total_exposure",
        "max_open_positions",
        "max_orders_per_day",
        "max_daily_loss",
        "stop_loss",
        "take_profit",
    }
    assert decision.enter_reducing


@pytest.mark.parametrize("state", [TradingState.HALTED, TradingState.REDUCING])
def test_exits_pass_while_the_platform_or_the_user_is_restricted(state: TradingState) -> None:
    for restricted in (snapshot(global_state=state), snapshot(user_state=state)):
        held = snapshot(**{**restricted.__dict__, "reduces_position": True})
        assert ENGINE.check(exit_intent(), held, limits()).allowed
        assert not ENGINE.check(intent(), held, limits()).allowed


def test_an_exit_that_would_not_reduce_a_position_is_blocked_even_when_all_is_calm() -> None:
    decision = ENGINE.check(exit_intent(), snapshot(reduces_position=False), limits())
    assert decision.failed_rules == ["exit_reduces_position"]


def test_an_unrecognisable_purpose_is_treated_as_an_entry_and_refused() -> None:
    decision = ENGINE.check(intent(purpose="close please"), HOSTILE, STRICT)  # type: ignore[arg-type]
    assert not decision.allowed
    assert all(result.applied for result in decision.results)
    assert "trading_state" in decision.failed_rules


@pytest.mark.parametrize("order", [intent(), exit_intent()])
def test_a_rule_that_raises_blocks_entries_and_exits_and_is_logged(order: OrderIntent) -> None:
    engine = RiskEngine([*DEFAULT_RULES, Exploding()])
    with capture_logs() as logs:
        decision = engine.check(order, snapshot(reduces_position=True), limits())
    assert not decision.allowed
    assert decision.reasons == ["Risk check 'exploding' could not be evaluated; the order was blocked."]
    assert [(e["event"], e["rule"]) for e in logs if e["log_level"] == "error"] == [("risk.rule_failed", "exploding")]


@pytest.mark.parametrize("answer", [False, "", 0, ["reason"]])
def test_a_rule_answering_neither_none_nor_a_reason_blocks(answer: object) -> None:
    decision = RiskEngine([Mumbling(answer)]).check(intent(), snapshot(), limits())
    assert not decision.allowed
    assert decision.results[0].errored


def test_the_error_is_the_failed_rules_own_when_they_agree() -> None:
    too_big = snapshot(exposure_by_symbol={"AAPL": D(10**6)}, total_exposure=D(10**6))
    decision = ENGINE.check(intent(), too_big, limits())
    assert decision.failed_rules == ["max_position_notional", "max_total_exposure"]
    with pytest.raises(PositionSizeLimitError) as caught:
        decision.raise_if_rejected()
    assert caught.value.details["rules"] == ["max_position_notional", "max_total_exposure"]
    assert caught.value.message == " ".join(decision.reasons)


def test_the_error_is_the_general_one_when_the_rules_disagree() -> None:
    mixed = snapshot(entry_orders_today=200, open_positions=20)
    decision = ENGINE.check(intent(), mixed, limits())
    assert decision.failed_rules == ["max_open_positions", "max_orders_per_day"]
    with pytest.raises(RiskLimitExceededError) as caught:
        decision.raise_if_rejected()
    assert type(caught.value) is RiskLimitExceededError
    only_daily = ENGINE.check(intent(), snapshot(entry_orders_today=200, realized_pnl_today=D(-9000)), limits())
    with pytest.raises(DailyTradingLimitExceededError):
        only_daily.raise_if_rejected()


def test_an_allowed_order_does_not_raise() -> None:
    decision = ENGINE.check(intent(), snapshot(), limits())
    decision.raise_if_rejected()
    assert decision.reasons == [] and decision.failed_rules == []


def test_projected_exposure_for_an_entry() -> None:
    held = snapshot(exposure_by_symbol={"AAPL": D(2000)}, total_exposure=D(5000), open_positions=3)
    projected = ENGINE.check(intent(), held, limits()).projected
    assert projected.order_notional == D("1000.10")
    assert projected.symbol_exposure_after == D("3000.10")
    assert projected.total_exposure_after == D("6000.10")
    assert projected.open_positions_after == 4


def test_projected_exposure_for_an_exit_gives_only_its_value() -> None:
    projected = ENGINE.check(exit_intent(), snapshot(reduces_position=True), limits()).projected
    assert projected.order_notional == D("999.90")  # 10 x the bid
    assert (projected.symbol_exposure_after, projected.total_exposure_after, projected.open_positions_after) == (
        None,
        None,
        None,
    )


def test_a_projection_that_cannot_be_computed_is_blank_and_never_allows_anything() -> None:
    decision = ENGINE.check(intent(), snapshot(total_exposure=None), limits())  # type: ignore[arg-type]
    assert decision.projected.total_exposure_after is None
    assert not decision.allowed


def test_the_decision_serialises_to_json_with_money_as_strings() -> None:
    decision = ENGINE.check(intent(), snapshot(quote=quote(age=99)), limits())
    body = json.loads(json.dumps(decision.as_dict()))
    assert body["allowed"] is False
    assert body["projected"]["order_notional"] == "1000.10"
    assert body["reasons"] == decision.reasons
    assert {rule["name"] for rule in body["rules"]} == {rule.name for rule in DEFAULT_RULES}


class Undescribable(Rule):
    """A rule that passes but cannot describe its limit."""

    name = "undescribable"

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        return None

    def describe(self, limits: RiskLimits) -> str:
        raise RuntimeError("no words")


def test_every_result_says_which_limit_applies_in_words() -> None:
    custom = limits(max_order_notional=D(25000), max_open_positions=None, symbol_denylist=frozenset({"GME"}))
    described = {result.name: result.limit for result in ENGINE.check(intent(), snapshot(), custom).results}
    assert described["max_order_notional"] == "At most $25,000.00 per order."
    assert described["max_open_positions"] == "No limit."
    assert described["symbol_lists"] == "Allowed: any symbol; never: GME."
    assert all(described.values()), "every default rule describes its limit"


def test_a_description_that_fails_is_blank_and_changes_no_decision() -> None:
    decision = RiskEngine([Undescribable()]).check(intent(), snapshot(), limits())
    assert decision.allowed and decision.results[0].limit == ""
