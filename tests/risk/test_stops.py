"""Stop-loss, take-profit and trailing-stop evaluation: the right price, the right side, and
never a close on a bad, missing or stale quote (LESSONS.md #1)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.risk.builders import NOW, quote
from utils.brokers.base import Quote
from utils.enums import OrderSide
from utils.risk.stops import (
    ALERT_ACTIONS,
    CLOSE_ACTIONS,
    PositionSide,
    Protection,
    StopAction,
    effective_stop,
    evaluate,
)

D = Decimal
LONG = Protection(PositionSide.LONG, D(10), stop_loss_price=D(95), take_profit_price=D(110), symbol="AAPL")
SHORT = Protection(PositionSide.SHORT, D(10), stop_loss_price=D(105), take_profit_price=D(90), symbol="AAPL")
MAX_AGE = 30


def at(bid: str, ask: str, **extra: object) -> Quote:
    return quote("AAPL", bid, ask, **extra)  # type: ignore[arg-type]


def test_a_long_is_judged_on_the_bid_and_stops_at_or_below_it() -> None:
    assert evaluate(LONG, at("95.01", "95.03"), NOW, MAX_AGE).action == StopAction.HOLD
    hit = evaluate(LONG, at("95.00", "95.02"), NOW, MAX_AGE)
    assert (hit.action, hit.price, hit.trigger_price) == (StopAction.STOP_LOSS, D("95.00"), D(95))
    assert hit.closes and not hit.needs_alert
    assert hit.reason == "The bid 95.00 crossed the stop-loss at 95."


def test_a_long_ignores_last_and_mark_even_far_below_the_stop() -> None:
    misleading = at("96", "96.02", last=D("1"), mark=D("1"))
    assert evaluate(LONG, misleading, NOW, MAX_AGE).action == StopAction.HOLD
    # ... and the ask: a long is not stopped because the ask crossed.
    assert evaluate(LONG, at("95.01", "94.00"), NOW, MAX_AGE).action == StopAction.HOLD


def test_a_short_is_judged_on_the_ask_and_stops_at_or_above_it() -> None:
    assert evaluate(SHORT, at("104.90", "104.99"), NOW, MAX_AGE).action == StopAction.HOLD
    assert evaluate(SHORT, at("106", "104.99"), NOW, MAX_AGE).action == StopAction.HOLD  # bid does not count
    hit = evaluate(SHORT, at("104.98", "105.00"), NOW, MAX_AGE)
    assert (hit.action, hit.price) == (StopAction.STOP_LOSS, D("105.00"))


def test_take_profit_for_long_and_short() -> None:
    long_target = evaluate(LONG, at("110.00", "110.02"), NOW, MAX_AGE)
    assert (long_target.action, long_target.trigger_price) == (StopAction.TAKE_PROFIT, D(110))
    assert evaluate(LONG, at("109.99", "110.50"), NOW, MAX_AGE).action == StopAction.HOLD
    assert evaluate(SHORT, at("89.98", "90.00"), NOW, MAX_AGE).action == StopAction.TAKE_PROFIT
    assert evaluate(SHORT, at("89.00", "90.01"), NOW, MAX_AGE).action == StopAction.HOLD


@pytest.mark.parametrize(
    ("trail", "high", "stop"),
    [
        ({"trailing_stop_offset": D(5)}, D(108), D(103)),  # 108 - 5
        ({"trailing_stop_percent": D(5)}, D(120), D(114)),  # 120 * (1 - 5/100), no longer 95
    ],
)
def test_the_trailing_anchor_follows_a_long_up_and_the_stop_trails_it(
    trail: dict[str, Decimal], high: Decimal, stop: Decimal
) -> None:
    trailing = Protection(PositionSide.LONG, D(1), trail_anchor=D(100), **trail)  # type: ignore[arg-type]
    up = evaluate(trailing, at(str(high), str(high + D("0.02"))), NOW, MAX_AGE)
    assert (up.action, up.trail_anchor, up.anchor_moved, up.trailing_stop_price) == (StopAction.HOLD, high, True, stop)
    stored = replace(trailing, trail_anchor=up.trail_anchor)
    down = evaluate(stored, at(str(stop + D("0.01")), str(stop + D("0.03"))), NOW, MAX_AGE)
    assert (down.action, down.trail_anchor, down.anchor_moved) == (StopAction.HOLD, high, False)
    breached = evaluate(stored, at(str(stop), str(stop + D("0.02"))), NOW, MAX_AGE)
    assert (breached.action, breached.trigger_price) == (StopAction.TRAILING_STOP, stop)
    assert breached.reason == f"The bid {stop} crossed the trailing stop at {stop}."


def test_the_trailing_anchor_follows_a_short_down() -> None:
    trailing = Protection(PositionSide.SHORT, D(1), trailing_stop_offset=D(2), trail_anchor=D(50))
    down = evaluate(trailing, at("44.98", "45"), NOW, MAX_AGE)
    assert (down.trail_anchor, down.trailing_stop_price, down.action) == (D(45), D(47), StopAction.HOLD)
    breached = evaluate(replace(trailing, trail_anchor=D(45)), at("46.90", "47"), NOW, MAX_AGE)
    assert breached.action == StopAction.TRAILING_STOP


def test_a_missing_anchor_starts_at_the_current_price() -> None:
    fresh = evaluate(Protection(PositionSide.LONG, D(1), trailing_stop_offset=D(1)), at("20", "20.1"), NOW, MAX_AGE)
    assert (fresh.trail_anchor, fresh.trailing_stop_price, fresh.action) == (D(20), D(19), StopAction.HOLD)


def test_a_percent_trail_follows_a_short_down_and_stops_that_percent_over_the_low_water_mark() -> None:
    trailing = Protection(PositionSide.SHORT, D(1), trailing_stop_percent=D("2.5"), trail_anchor=D(50))
    down = evaluate(trailing, at("39.98", "40"), NOW, MAX_AGE)
    assert (down.trail_anchor, down.trailing_stop_price, down.action) == (D(40), D(41), StopAction.HOLD)
    stored = replace(trailing, trail_anchor=D(40))
    assert evaluate(stored, at("40.97", "40.99"), NOW, MAX_AGE).action == StopAction.HOLD
    breached = evaluate(stored, at("40.98", "41"), NOW, MAX_AGE)
    assert (breached.action, breached.trigger_price, breached.trail_anchor) == (StopAction.TRAILING_STOP, D(41), D(40))


def test_the_tighter_of_fixed_and_trailing_stops_decides() -> None:
    both = Protection(PositionSide.LONG, D(1), stop_loss_price=D(90), trailing_stop_offset=D(5), trail_anchor=D(100))
    decision = evaluate(both, at("94.5", "94.6"), NOW, MAX_AGE)
    assert (decision.action, decision.trigger_price) == (StopAction.TRAILING_STOP, D(95))
    assert effective_stop(PositionSide.SHORT, D(110), D(104)) == D(104)
    assert effective_stop(PositionSide.LONG, None, None) is None


def test_a_stop_wins_over_an_inconsistent_take_profit() -> None:
    odd = replace(LONG, stop_loss_price=D(100), take_profit_price=D(99))
    assert evaluate(odd, at("99.5", "99.6"), NOW, MAX_AGE).action == StopAction.STOP_LOSS


@pytest.mark.parametrize(
    ("bad", "action"),
    [
        (None, StopAction.NO_QUOTE),
        (quote("AAPL", "0", "95"), StopAction.BAD_QUOTE),
        (quote("AAPL", "-1", "95"), StopAction.BAD_QUOTE),
        (Quote("AAPL", None, D(95), D(95), D(95), NOW), StopAction.BAD_QUOTE),  # type: ignore[arg-type]
        (Quote("AAPL", 90.0, D(95), D(95), D(95), NOW), StopAction.BAD_QUOTE),  # type: ignore[arg-type]
        (Quote("AAPL", D("NaN"), D(95), D(95), D(95), NOW), StopAction.BAD_QUOTE),
        (quote("MSFT", "90", "90.02"), StopAction.BAD_QUOTE),
        (quote("AAPL", "90", "90.02", time=NOW.replace(tzinfo=None)), StopAction.BAD_QUOTE),
        (quote("AAPL", "90", "90.02", time=None), StopAction.BAD_QUOTE),
        (quote("AAPL", "90", "90.02", age=-31), StopAction.BAD_QUOTE),
        (quote("AAPL", "90", "90.02", age=31), StopAction.STALE_QUOTE),
    ],
)
def test_an_unusable_quote_never_closes_it_asks_for_an_alert(bad: Quote | None, action: StopAction) -> None:
    trailing = replace(LONG, trailing_stop_offset=D(1), trail_anchor=D(100))
    decision = evaluate(trailing, bad, NOW, MAX_AGE)
    assert decision.action == action
    assert decision.needs_alert and not decision.closes
    assert (decision.trail_anchor, decision.anchor_moved) == (D(100), False)


def test_a_quote_exactly_at_the_age_limit_is_still_used() -> None:
    assert evaluate(LONG, quote("AAPL", "90", "90.02", age=30), NOW, MAX_AGE).action == StopAction.STOP_LOSS


@pytest.mark.parametrize(
    "broken",
    [
        replace(LONG, stop_loss_price=D(0)),
        replace(LONG, take_profit_price=D(-1)),
        replace(LONG, trailing_stop_offset=D(0)),
        replace(LONG, trail_anchor=D(0), trailing_stop_offset=D(1)),
        replace(LONG, trailing_stop_percent=D(0)),
        replace(LONG, trailing_stop_percent=D(100)),
        replace(LONG, trailing_stop_percent=D(-5)),
        replace(LONG, trailing_stop_percent=D("NaN")),
        replace(LONG, trailing_stop_offset=D(1), trailing_stop_percent=D(5)),
        replace(LONG, stop_loss_price=95.0),  # type: ignore[arg-type]
        replace(LONG, open_quantity=None),  # type: ignore[arg-type]
    ],
)
def test_unusable_protection_settings_never_close(broken: Protection) -> None:
    decision = evaluate(broken, at("1", "1.01"), NOW, MAX_AGE)
    assert decision.action == StopAction.BAD_PROTECTION and decision.needs_alert and not decision.closes


def test_nothing_open_is_held() -> None:
    assert evaluate(replace(LONG, open_quantity=D(0)), at("1", "1.01"), NOW, MAX_AGE).action == StopAction.HOLD


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(LONG, at("90", "90.1"), NOW.replace(tzinfo=None), MAX_AGE)


def test_the_entry_side_gives_the_direction() -> None:
    assert PositionSide.of_entry(OrderSide.BUY) == PositionSide.LONG
    assert PositionSide.of_entry(OrderSide.SELL_SHORT) == PositionSide.SHORT
    with pytest.raises(ValueError, match="does not open a position"):
        PositionSide.of_entry(OrderSide.SELL)


# ---------------------------------------------------------------------------- properties

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10000), places=2)
optional_prices = st.none() | prices
sides = st.sampled_from(PositionSide)
percents = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2)


@st.composite
def protections(draw: st.DrawFn) -> Protection:
    offset = draw(st.none() | prices)
    percent = draw(st.none() | percents) if offset is None else None
    return Protection(
        side=draw(sides),
        open_quantity=draw(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4)),
        stop_loss_price=draw(optional_prices),
        take_profit_price=draw(optional_prices),
        trailing_stop_offset=offset,
        trail_anchor=draw(optional_prices) if offset is not None or percent is not None else None,
        symbol="AAPL",
        trailing_stop_percent=percent,
    )


@st.composite
def good_quotes(draw: st.DrawFn) -> Quote:
    bid = draw(prices)
    ask = bid + draw(st.decimals(min_value=0, max_value=Decimal(5), places=2))
    return quote("AAPL", str(bid), str(ask), age=draw(st.integers(-MAX_AGE, MAX_AGE)))


@settings(max_examples=1000)
@given(protections(), good_quotes())
def test_a_close_happens_exactly_when_a_level_is_crossed(position: Protection, fresh: Quote) -> None:
    decision = evaluate(position, fresh, NOW, MAX_AGE)
    long = position.side == PositionSide.LONG
    price = fresh.bid if long else fresh.ask
    assert decision.price == price
    stop = effective_stop(position.side, position.stop_loss_price, decision.trailing_stop_price)
    stopped = stop is not None and (price <= stop if long else price >= stop)
    target = position.take_profit_price
    profited = target is not None and (price >= target if long else price <= target)
    assert (decision.action in (StopAction.STOP_LOSS, StopAction.TRAILING_STOP)) == stopped
    assert (decision.action == StopAction.TAKE_PROFIT) == (profited and not stopped)
    assert (decision.action == StopAction.HOLD) == (not stopped and not profited)


@settings(max_examples=1000)
@given(protections(), good_quotes())
def test_a_long_is_never_stopped_while_the_bid_is_above_its_effective_stop(position: Protection, fresh: Quote) -> None:
    long = replace(position, side=PositionSide.LONG, take_profit_price=None)
    decision = evaluate(long, fresh, NOW, MAX_AGE)
    stop = effective_stop(PositionSide.LONG, long.stop_loss_price, decision.trailing_stop_price)
    if stop is None or fresh.bid > stop:
        assert not decision.closes


@settings(max_examples=1000)
@given(protections(), good_quotes())
def test_the_trail_anchor_never_moves_against_the_trade(position: Protection, fresh: Quote) -> None:
    decision = evaluate(position, fresh, NOW, MAX_AGE)
    before, after = position.trail_anchor, decision.trail_anchor
    if not position.trails:
        assert after == before
    elif before is not None:
        assert after is not None
        assert after >= before if position.side == PositionSide.LONG else after <= before
        assert decision.anchor_moved == (after != before)


@settings(max_examples=500)
@given(protections(), good_quotes(), st.data())
def test_repeated_quotes_move_the_anchor_monotonically(position: Protection, first: Quote, data: st.DataObject) -> None:
    assume(position.trails)
    anchors = []
    current = position
    for fresh in [first, *data.draw(st.lists(good_quotes(), max_size=8))]:
        decision = evaluate(current, fresh, NOW, MAX_AGE)
        anchors.append(decision.trail_anchor)
        current = replace(current, trail_anchor=decision.trail_anchor)
    expected = sorted(anchors) if position.side == PositionSide.LONG else sorted(anchors, reverse=True)
    assert anchors == expected


bad_prices = st.sampled_from([D(0), D(-1), D("-0.01"), D("NaN"), D("Infinity"), None, 12.5])


@settings(max_examples=500)
@given(
    protections(),
    st.one_of(
        st.none(),
        st.builds(lambda bad: Quote("AAPL", bad, bad, D(1), D(1), NOW), bad_prices),
        st.builds(lambda age: quote("AAPL", "0.01", "0.02", age=age), st.integers(MAX_AGE + 1, 10**6)),
        st.builds(lambda age: quote("AAPL", "0.01", "0.02", age=-age), st.integers(MAX_AGE + 1, 10**6)),
        st.builds(lambda: quote("MSFT", "0.01", "0.02")),
    ),
)
def test_a_bad_missing_or_stale_quote_never_closes(position: Protection, bad: Quote | None) -> None:
    decision = evaluate(position, bad, NOW, MAX_AGE)
    assert decision.action in ALERT_ACTIONS
    assert decision.action not in CLOSE_ACTIONS
    assert decision.trail_anchor == position.trail_anchor
