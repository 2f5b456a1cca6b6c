"""The stop rule every change to a stop-loss passes: the protective side of the market now, the max
distance from it, the instrument's price increment; fail closed without a usable quote or increment."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.risk.builders import NOW, quote
from utils.risk.stop_changes import StopChange, stop_change_problem
from utils.risk.stops import PositionSide

D = Decimal
BTC_BID, BTC_ASK = "98866.00", "98870.00"
LONG = StopChange(
    symbol="BTC-USD",
    side=PositionSide.LONG,
    stop_price=D("95000.00"),
    quote=quote("BTC-USD", BTC_BID, BTC_ASK),
    price_increment=D("0.01"),
    max_distance_pct=D(20),
    max_quote_age_seconds=30,
    now=NOW,
)
SHORT = replace(LONG, side=PositionSide.SHORT, stop_price=D("100000.00"))


def problem(base: StopChange, stop: str, **changes: object) -> str | None:
    return stop_change_problem(replace(base, stop_price=D(stop), **changes))  # type: ignore[arg-type]


def test_a_penny_stop_under_a_98866_bitcoin_long_is_refused_as_too_far_from_the_bid() -> None:
    reason = problem(LONG, "0.01")
    assert reason is not None and "away from the bid $98,866.00; your limit is 20%" in reason


@pytest.mark.parametrize(
    ("stop", "nearest"),
    [("95000.123456789012345", "95,000.12"), ("95000.001", "95,000.00"), ("95000.005", "95,000.00")],
)
def test_a_price_off_the_increment_is_refused_never_rounded(stop: str, nearest: str) -> None:
    reason = problem(LONG, stop)
    assert reason is not None and "prices move in steps of 0.01" in reason and f"${stop}" in reason
    assert f"(try ${nearest})" in reason, "the nearest valid price is suggested, not used"


def test_the_increment_is_the_instruments_own() -> None:
    assert problem(LONG, "95000.50", price_increment=D("0.5")) is None
    reason = problem(LONG, "95000.25", price_increment=D("0.5"))
    assert reason is not None and "steps of 0.5" in reason
    below_a_dollar = replace(LONG, symbol="XYZ", quote=quote("XYZ", "0.9000", "0.9010"))
    assert problem(below_a_dollar, "0.8512", price_increment=D("0.0001")) is None


def test_a_long_stop_above_the_entry_is_allowed_while_the_bid_is_above_it() -> None:
    """Break-even or locking gains: the entry does not matter, the market does."""
    entry = D("98856.00")  # the bid is $10 above the entry
    assert problem(LONG, str(entry)) is None
    assert problem(LONG, str(entry + 5)) is None
    assert problem(LONG, "98865.99") is None


@pytest.mark.parametrize("stop", ["98866.00", "98866.01", "98870.00", "120000.00"])
def test_a_long_stop_at_or_above_the_bid_is_refused(stop: str) -> None:
    reason = problem(LONG, stop)
    assert reason is not None and "is not below the bid $98,866.00: it would sell at once" in reason


def test_a_short_stop_below_the_entry_is_allowed_while_the_ask_is_below_it() -> None:
    assert problem(SHORT, "98870.01") is None
    assert problem(SHORT, "98880.00") is None


@pytest.mark.parametrize("stop", ["98870.00", "98869.99", "98866.00", "50000.00"])
def test_a_short_stop_at_or_below_the_ask_is_refused(stop: str) -> None:
    reason = problem(SHORT, stop)
    assert reason is not None and "is not above the ask $98,870.00: it would buy back at once" in reason


def test_the_max_distance_is_measured_from_the_market_on_both_sides() -> None:
    bid, ask = D(BTC_BID), D(BTC_ASK)
    assert problem(LONG, str((bid * D("0.80")).quantize(D("0.01"), rounding="ROUND_UP"))) is None
    assert "away from the bid" in (problem(LONG, str((bid * D("0.79")).quantize(D("0.01")))) or "")
    assert problem(SHORT, str((ask * D("1.20")).quantize(D("0.01"), rounding="ROUND_DOWN"))) is None
    assert "away from the ask" in (problem(SHORT, str((ask * D("1.21")).quantize(D("0.01")))) or "")
    assert problem(LONG, "0.01", max_distance_pct=None) is None, "no limit configured: any distance"


@pytest.mark.parametrize("stop", ["0", "-1", "NaN", "Infinity"])
def test_a_price_that_is_not_positive_and_finite_is_refused(stop: str) -> None:
    assert problem(LONG, stop) == "The stop price must be a number above 0. The stop was left where it was."


def test_without_a_quote_nothing_is_allowed() -> None:
    reason = problem(LONG, "95000.00", quote=None)
    assert reason == "There is no current BTC-USD quote to check the stop against. The stop was left where it was."


@pytest.mark.parametrize(
    ("bad_quote", "words"),
    [
        (quote("BTC-USD", BTC_BID, BTC_ASK, age=31), "seconds old"),
        (quote("BTC-USD", BTC_BID, BTC_ASK, age=-31), "in the future"),
        (quote("ETH-USD", BTC_BID, BTC_ASK), "not 'BTC-USD'"),
        (quote("BTC-USD", "0", BTC_ASK), "bid is missing or not a positive price"),
    ],
)
def test_a_stale_foreign_or_priceless_quote_refuses_the_change(bad_quote: object, words: str) -> None:
    reason = problem(LONG, "95000.00", quote=bad_quote)
    assert reason is not None and words in reason and "checked against the current price" in reason


def test_a_short_is_judged_on_the_ask_so_a_missing_ask_refuses_it() -> None:
    reason = problem(SHORT, "100000.00", quote=quote("BTC-USD", BTC_BID, "0"))
    assert reason is not None and "ask is missing" in reason


@pytest.mark.parametrize("increment", [None, D(0), D(-1), D("NaN")])
def test_an_unknown_increment_refuses_the_change(increment: Decimal | None) -> None:
    reason = problem(LONG, "95000.00", price_increment=increment)
    assert reason is not None and reason.startswith("The price increment of BTC-USD is not known right now")


def test_a_price_beyond_decimal_precision_is_refused_not_raised() -> None:
    reason = problem(SHORT, "1E+40", max_distance_pct=None)
    assert reason is not None and "is not a price BTC-USD can trade at" in reason


def test_a_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        problem(LONG, "95000.00", now=NOW.replace(tzinfo=None))


ticks = st.integers(min_value=1, max_value=10**9)
increments = st.sampled_from([D("0.01"), D("0.0001"), D("0.5"), D("0.00000001"), D(1)])
sides = st.sampled_from([PositionSide.LONG, PositionSide.SHORT])
percents = st.one_of(st.none(), st.decimals(min_value=D("0.01"), max_value=D(99), places=2))
spreads = st.integers(min_value=0, max_value=100)


@given(side=sides, market_ticks=ticks, spread=spreads, stop_ticks=ticks, increment=increments, max_pct=percents)
def test_an_allowed_stop_is_always_protective_near_the_market_and_on_the_increment(
    side: PositionSide, market_ticks: int, spread: int, stop_ticks: int, increment: Decimal, max_pct: Decimal | None
) -> None:
    bid = market_ticks * increment
    ask = bid + spread * increment
    change = replace(
        LONG,
        symbol="AAPL",
        side=side,
        stop_price=stop_ticks * increment,
        quote=quote("AAPL", str(bid), str(ask)),
        price_increment=increment,
        max_distance_pct=max_pct,
    )
    market = bid if side == PositionSide.LONG else ask
    protective = change.stop_price < market if side == PositionSide.LONG else change.stop_price > market
    near = max_pct is None or abs(market - change.stop_price) / market * 100 <= max_pct
    assert (stop_change_problem(change) is None) == (protective and near)


@given(side=sides, stop=st.decimals(min_value=D("0.000001"), max_value=D(10**6), places=6), increment=increments)
def test_only_whole_multiples_of_the_increment_pass(side: PositionSide, stop: Decimal, increment: Decimal) -> None:
    market = D(10**6) + 1 if side == PositionSide.LONG else D("0.0000001")
    change = replace(
        LONG,
        side=side,
        symbol="AAPL",
        stop_price=stop,
        quote=quote("AAPL", str(market), str(market)),
        price_increment=increment,
        max_distance_pct=None,
    )
    assert (stop_change_problem(change) is None) == (stop % increment == 0)
