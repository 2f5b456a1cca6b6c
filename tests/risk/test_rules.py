"""Every risk rule: a case it allows, cases it rejects (with the trader's words), and a case
where the check itself raises (the order is blocked, never waved through)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.risk.builders import NOW, exit_intent, intent, limits, quote, snapshot
from utils.enums import OrderSide, OrderType, TradingState
from utils.exceptions import (
    DailyTradingLimitExceededError,
    PositionSizeLimitError,
    RiskLimitExceededError,
    StopLossNotSetError,
)
from utils.risk.engine import RiskDecision, RiskEngine, evaluation_failed
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot
from utils.risk.rules import DEFAULT_RULES, STOP_REQUIRED, unknown_value

D = Decimal
RULES = {rule.name: rule for rule in DEFAULT_RULES}
Inputs = tuple[OrderIntent, RiskSnapshot, RiskLimits]
CLOSING = " Orders that close or reduce a position still go through."
BITCOIN = {
    "symbol": "BTC-USD",
    "quantity": D("0.01"),
    "stop_loss_price": D(90000),
    "take_profit_price": D(100000),
}


def case(i: dict[str, Any] | None = None, s: dict[str, Any] | None = None, lim: dict[str, Any] | None = None) -> Inputs:
    """The baseline entry with changes to the intent, the snapshot and the limits."""
    built_intent = exit_intent(**(i or {}).get("exit", {})) if "exit" in (i or {}) else intent(**(i or {}))
    return built_intent, snapshot(**(s or {})), limits(**(lim or {}))


def only(rule_name: str, inputs: Inputs) -> RiskDecision:
    return RiskEngine([RULES[rule_name]]).check(*inputs)


def full(inputs: Inputs) -> RiskDecision:
    return RiskEngine().check(*inputs)


LIMIT_ORDER = {"order_type": OrderType.LIMIT, "limit_price": D(100)}

ALLOW = [
    ("trading_state", case()),
    ("exit_reduces_position", case({"exit": {}}, {"reduces_position": True})),
    ("symbol_lists", case(lim={"symbol_allowlist": frozenset({"aapl", "MSFT"})})),
    (
        "market_hours",
        case(BITCOIN, {"market_open": False, "quote": quote("BTC-USD", "94990", "95010")}),
    ),
    ("market_hours", case(s={"market_open": False}, lim={"equities_market_hours_only": False})),
    ("stale_quote", case(s={"quote": quote(age=30)})),
    ("max_order_notional", case(lim={"max_order_notional": D("1000.10")})),
    ("max_position_notional", case(s={"exposure_by_symbol": {"AAPL": D("48999.90")}, "total_exposure": D("48999.90")})),
    ("max_total_exposure", case(s={"exposure_by_symbol": {"MSFT": D("248999.90")}, "total_exposure": D("248999.90")})),
    ("max_open_positions", case(s={"open_positions": 19})),
    ("max_orders_per_day", case(s={"entry_orders_today": 199})),
    ("max_daily_loss", case(s={"realized_pnl_today": D("-4999.99")})),
    ("max_daily_loss", case(s={"realized_pnl_today": D("10000")}, lim={"max_daily_loss": D(0)})),
    ("stop_loss", case({"stop_loss_price": None}, lim={"require_stop_loss": False})),
    ("stop_loss", case({"side": OrderSide.SELL_SHORT, "stop_loss_price": D(105), "take_profit_price": D(90)})),
    ("take_profit", case({"take_profit_price": None})),
]

REJECT = [
    (
        "trading_state",
        case(s={"global_state": TradingState.HALTED, "global_state_reason": "exchange outage"}),
        "Trading is halted platform-wide (exchange outage)." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "trading_state",
        case(s={"global_state": TradingState.REDUCING}),
        "Trading is in reduce-only mode platform-wide." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "trading_state",
        case(s={"user_state": TradingState.HALTED, "user_state_reason": "compliance review"}),
        "Trading is halted for your account (compliance review)." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "trading_state",
        case(s={"user_state": TradingState.REDUCING, "user_state_reason": "daily loss limit reached"}),
        "Your account is in reduce-only mode (daily loss limit reached)." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "trading_state",
        case(s={"connection_state": TradingState.REDUCING, "connection_state_reason": "reconciliation failed"}),
        "Trading on this broker account is in reduce-only mode (reconciliation failed)." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "trading_state",
        case(s={"connection_state": TradingState.HALTED}),
        "Trading on this broker account is halted." + CLOSING,
        RiskLimitExceededError,
    ),
    (
        "exit_reduces_position",
        case({"exit": {}}, {"reduces_position": False}),
        "This closing order does not reduce an open AAPL position on this account (nothing is open, or it is "
        "larger than what is open), so it was blocked: it would open a new position.",
        RiskLimitExceededError,
    ),
    (
        "symbol_lists",
        case(lim={"symbol_denylist": frozenset({"aapl"}), "symbol_allowlist": frozenset({"AAPL"})}),
        "AAPL is on your list of blocked symbols.",
        RiskLimitExceededError,
    ),
    (
        "symbol_lists",
        case(lim={"symbol_allowlist": frozenset({"SPY", "MSFT"})}),
        "AAPL is not on your list of allowed symbols (MSFT, SPY).",
        RiskLimitExceededError,
    ),
    (
        "market_hours",
        case(s={"market_open": False}),
        "The market for AAPL is closed; your account opens equity positions only in market hours.",
        RiskLimitExceededError,
    ),
    (
        "stale_quote",
        case(s={"quote": quote(age=31)}),
        "The latest AAPL quote is 31 seconds old (the limit is 30 s); try again when prices update.",
        RiskLimitExceededError,
    ),
    (
        "stale_quote",
        case(LIMIT_ORDER, {"quote": None}),
        "There is no current quote for AAPL, so the order was not sent.",
        RiskLimitExceededError,
    ),
    (
        "stale_quote",
        case(LIMIT_ORDER, {"quote": quote("MSFT")}),
        "The quote received is for MSFT, not AAPL, so the order was not sent.",
        RiskLimitExceededError,
    ),
    (
        "stale_quote",
        case(LIMIT_ORDER, {"quote": quote(ask="0")}),
        "The AAPL quote has no usable ask price right now, so the order was not sent.",
        RiskLimitExceededError,
    ),
    (
        "stale_quote",
        case(s={"quote": quote(age=-31)}),
        "The AAPL quote is dated in the future; the server clock needs checking.",
        RiskLimitExceededError,
    ),
    (
        "max_order_notional",
        case(
            {
                "order_type": OrderType.LIMIT,
                "quantity": D(100),
                "limit_price": D(125),
                "stop_loss_price": D(120),
                "take_profit_price": D(130),
            },
            lim={"max_order_notional": D(10000)},
        ),
        "This order is worth $12,500.00; your limit per order is $10,000.00.",
        PositionSizeLimitError,
    ),
    (
        "max_order_notional",
        case(lim={"max_order_notional": D(1000)}),
        "This order is worth $1,000.10; your limit per order is $1,000.00.",
        PositionSizeLimitError,
    ),
    (
        "max_position_notional",
        case(s={"exposure_by_symbol": {"AAPL": D(49000)}, "total_exposure": D(49000)}),
        "This order would bring your AAPL position to $50,000.10; your limit per symbol is $50,000.00.",
        PositionSizeLimitError,
    ),
    (
        "max_total_exposure",
        case(s={"exposure_by_symbol": {"MSFT": D(249000)}, "total_exposure": D(249000)}),
        "This order would bring your total exposure to $250,000.10; your limit is $250,000.00.",
        PositionSizeLimitError,
    ),
    (
        "max_open_positions",
        case(s={"open_positions": 20}),
        "You already have 20 open positions (pending entries included); your limit is 20.",
        PositionSizeLimitError,
    ),
    (
        "max_orders_per_day",
        case(s={"entry_orders_today": 200}),
        "You have placed 200 entry orders today (UTC); your daily limit is 200.",
        DailyTradingLimitExceededError,
    ),
    (
        "max_daily_loss",
        case(s={"realized_pnl_today": D(-5000)}),
        "Your realized loss today is $5,000.00; your daily loss limit is $5,000.00. Your account moves to "
        "reduce-only mode: orders that close or reduce a position still go through.",
        DailyTradingLimitExceededError,
    ),
    ("stop_loss", case({"stop_loss_price": None}), STOP_REQUIRED, StopLossNotSetError),
    (
        "stop_loss",
        case({"stop_loss_price": D(101)}),
        "The stop-loss at $101.00 is not below the entry price $100.01; for a long position it must be below.",
        StopLossNotSetError,
    ),
    (
        "stop_loss",
        case({"side": OrderSide.SELL_SHORT, "stop_loss_price": D(95), "take_profit_price": D(90)}),
        "The stop-loss at $95.00 is not above the entry price $99.99; for a short position it must be above.",
        StopLossNotSetError,
    ),
    (
        "stop_loss",
        case({"stop_loss_price": D(75), "take_profit_price": None}),
        "The stop-loss is 25.01% away from the entry price $100.01; your limit is 20%.",
        StopLossNotSetError,
    ),
    ("stop_loss", case({"stop_loss_price": D(0)}), "The stop-loss price must be above zero.", StopLossNotSetError),
    (
        "take_profit",
        case({"take_profit_price": D(90)}),
        "The take-profit at $90.00 is not above the entry price $100.01; for a long position it must be above.",
        RiskLimitExceededError,
    ),
    (
        "take_profit",
        case({"side": OrderSide.SELL_SHORT, "stop_loss_price": D(105), "take_profit_price": D(101)}),
        "The take-profit at $101.00 is not below the entry price $99.99; for a short position it must be below.",
        RiskLimitExceededError,
    ),
]

# Inputs the rule cannot interpret: a wrong type, an unknown state, an unknown (NaN) exposure.
RAISED = [
    ("trading_state", case(s={"user_state": "paused"})),
    ("trading_state", case(s={"global_state": None})),
    ("trading_state", case(s={"connection_state": "held"})),
    ("trading_state", case(s={"connection_state": None, "global_state": TradingState.HALTED})),
    ("exit_reduces_position", case({"exit": {}}, {"reduces_position": "yes"})),
    ("exit_reduces_position", case({"purpose": "open"})),
    ("symbol_lists", case(lim={"symbol_denylist": None})),
    ("market_hours", case(s={"market_open": "no"})),
    ("stale_quote", case(s={"quote": quote(time=NOW.replace(tzinfo=None))})),
    ("max_order_notional", case(lim={"max_order_notional": 1000.0})),
    ("max_order_notional", case({"quantity": D(-10)})),
    ("max_position_notional", case(s={"exposure_by_symbol": None})),
    ("max_position_notional", case(s={"exposure_by_symbol": {"AAPL": D("NaN")}})),
    ("max_total_exposure", case(s={"total_exposure": None})),
    ("max_total_exposure", case(s={"total_exposure": D("NaN")})),
    ("max_open_positions", case(s={"open_positions": "19"})),
    ("max_orders_per_day", case(s={"entry_orders_today": None})),
    ("max_daily_loss", case(s={"realized_pnl_today": -6000.0})),
    ("max_daily_loss", case(s={"realized_pnl_today": None})),
    ("stop_loss", case({"stop_loss_price": "95"})),
    ("take_profit", case({"take_profit_price": 110.0})),
]


def test_every_rule_has_allow_reject_and_raised_cases() -> None:
    names = set(RULES)
    assert len(names) == len(DEFAULT_RULES), "rule names are unique"
    assert {name for name, _ in ALLOW} == names
    assert {name for name, *_ in REJECT} == names
    assert {name for name, _ in RAISED} == names


def test_the_baseline_entry_passes_every_rule() -> None:
    decision = full(case())
    assert decision.allowed, decision.reasons
    assert all(result.applied and result.passed for result in decision.results)


@pytest.mark.parametrize(("rule_name", "inputs"), ALLOW, ids=[f"{name}-{n}" for n, (name, _) in enumerate(ALLOW)])
def test_rule_allows(rule_name: str, inputs: Inputs) -> None:
    assert only(rule_name, inputs).allowed
    assert full(inputs).allowed, full(inputs).reasons


@pytest.mark.parametrize(
    ("rule_name", "inputs", "message", "error"), REJECT, ids=[f"{r[0]}-{n}" for n, r in enumerate(REJECT)]
)
def test_rule_rejects_with_a_reason_a_trader_understands(
    rule_name: str, inputs: Inputs, message: str, error: type[RiskLimitExceededError]
) -> None:
    decision = full(inputs)
    assert not decision.allowed
    assert decision.failed_rules == [rule_name], decision.reasons
    assert decision.reasons == [message]
    assert not decision.failures[0].errored
    with pytest.raises(RiskLimitExceededError) as caught:
        decision.raise_if_rejected()
    assert type(caught.value) is error
    assert caught.value.message == message
    assert caught.value.details == {"reasons": [message], "rules": [rule_name]}


@pytest.mark.parametrize(("rule_name", "inputs"), RAISED, ids=[f"{name}-{n}" for n, (name, _) in enumerate(RAISED)])
def test_a_rule_that_raises_blocks_the_order(rule_name: str, inputs: Inputs) -> None:
    with capture_logs() as logs:
        decision = only(rule_name, inputs)
    assert not decision.allowed
    (result,) = decision.results
    assert (result.name, result.passed, result.errored) == (rule_name, False, True)
    assert result.message == f"Risk check '{rule_name}' could not be evaluated; the order was blocked."
    assert result.message == evaluation_failed(rule_name)
    assert not decision.enter_reducing
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert [(e["event"], e["rule"], e["exc_info"]) for e in errors] == [("risk.rule_failed", rule_name, True)]
    in_full = {r.name: r for r in full(inputs).results}
    assert in_full[rule_name].errored and not in_full[rule_name].passed
    with pytest.raises(RiskLimitExceededError) as caught:
        decision.raise_if_rejected()
    assert type(caught.value) is RiskLimitExceededError, "an unchecked limit is not named as the reason"


def test_the_daily_loss_limit_asks_for_reduce_only_mode() -> None:
    hit = full(case(s={"realized_pnl_today": D("-5000.01")}))
    assert hit.enter_reducing and not hit.allowed
    assert not full(case(s={"realized_pnl_today": D("-4999.99")})).enter_reducing


def test_an_order_whose_value_cannot_be_known_is_refused() -> None:
    no_price = case(s={"quote": quote(ask="0")})
    decision = only("max_order_notional", no_price)
    assert decision.reasons == [unknown_value(no_price[0])]


def test_a_stop_order_is_valued_at_its_stop_when_that_is_higher() -> None:
    buy_stop = case(
        {"order_type": OrderType.STOP, "stop_price": D(120), "stop_loss_price": D(110), "take_profit_price": D(130)},
        lim={"max_order_notional": D(1100)},
    )
    assert full(buy_stop).reasons == ["This order is worth $1,200.00; your limit per order is $1,100.00."]


def test_a_held_connection_still_lets_exits_through() -> None:
    held = {"connection_state": TradingState.REDUCING, "connection_state_reason": "reconciliation failed"}
    assert not full(case(s=held)).allowed
    exit_decision = full(case({"exit": {}}, held | {"reduces_position": True}))
    assert exit_decision.allowed, exit_decision.reasons
    in_full = {r.name: r for r in exit_decision.results}
    assert not in_full["trading_state"].applied
