"""Synthetic prices: deterministic, positive, market-hours aware, with plausible volatility."""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.paper_store import InMemoryPaperStore
from utils.brokers.base import CandleInterval
from utils.brokers.paper import PaperBroker
from utils.brokers.paper_prices import (
    PRICE_TICK,
    SyntheticPrices,
    brownian,
    day_order_expiry,
    is_crypto,
    market_hours,
    trading_seconds,
    us_equity_market_hours,
)

TUESDAY_10AM = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_symbol_and_time_give_the_same_quote_across_instances():
    assert SyntheticPrices(7).quote("AAPL", TUESDAY_10AM) == SyntheticPrices(7).quote("AAPL", TUESDAY_10AM)
    assert SyntheticPrices(7).quote("BTC-USD", TUESDAY_10AM) == SyntheticPrices(7).quote("BTC-USD", TUESDAY_10AM)


def test_prices_are_the_same_in_another_process():
    code = (
        "from datetime import datetime, UTC; from utils.brokers.paper_prices import SyntheticPrices; "
        "print(SyntheticPrices(7).price('AAPL', datetime(2025, 3, 4, 15, 0, tzinfo=UTC)), "
        "SyntheticPrices(7).price('ETH-USD', datetime(2025, 3, 4, 15, 0, tzinfo=UTC)))"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    prices = SyntheticPrices(7)
    assert output.stdout.split() == [
        str(prices.price("AAPL", TUESDAY_10AM)),
        str(prices.price("ETH-USD", TUESDAY_10AM)),
    ]


def test_prices_differ_by_seed_and_symbol():
    assert SyntheticPrices(1).price("AAPL", TUESDAY_10AM) != SyntheticPrices(2).price("AAPL", TUESDAY_10AM)
    assert SyntheticPrices(1).price("AAPL", TUESDAY_10AM) != SyntheticPrices(1).price("MSFT", TUESDAY_10AM)


@settings(max_examples=150, deadline=None)
@given(
    symbol=st.sampled_from(["AAPL", "TSLA", "BRK.B", "BTC-USD", "ETH-USD", "XYZ-USD", "DOGE-USDC"]),
    at=st.datetimes(datetime(2000, 1, 1), datetime(2120, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
    seed=st.integers(0, 2**32),
)
def test_quotes_are_positive_on_the_tick_with_bid_below_ask(symbol, at, seed):
    quote = SyntheticPrices(seed).quote(symbol, at)
    assert 0 < quote.bid < quote.ask
    assert quote.bid <= quote.mark <= quote.ask and quote.last == quote.mark
    assert all(value % PRICE_TICK == 0 for value in (quote.bid, quote.ask, quote.mark))


def test_spreads_are_about_one_bp_for_equities_and_five_for_crypto():
    prices = SyntheticPrices(0)
    for symbol, most in (("AAPL", Decimal("0.0002")), ("BTC-USD", Decimal("0.0006"))):
        quote = prices.quote(symbol, TUESDAY_10AM)
        assert (quote.ask - quote.bid) / quote.mark <= most or quote.ask - quote.bid == PRICE_TICK


def test_well_known_crypto_trades_near_its_familiar_level_in_early_2025():
    btc = SyntheticPrices(0).price("BTC-USD", datetime(2025, 1, 1, 1, 0, tzinfo=UTC))
    assert Decimal(80000) < btc < Decimal(110000)


def test_equity_prices_are_frozen_outside_the_session():
    prices = SyntheticPrices(0)
    friday_close = prices.price("AAPL", datetime(2025, 3, 7, 21, 0, tzinfo=UTC))
    for at in (
        datetime(2025, 3, 7, 23, 0, tzinfo=UTC),  # Friday evening
        datetime(2025, 3, 8, 15, 0, tzinfo=UTC),  # Saturday
        datetime(2025, 3, 10, 13, 29, 59, tzinfo=UTC),  # Monday 09:29:59 (EDT)
    ):
        assert prices.price("AAPL", at) == friday_close
    assert trading_seconds("AAPL", datetime(2025, 3, 10, 13, 30, 1, tzinfo=UTC)) == (
        trading_seconds("AAPL", datetime(2025, 3, 7, 21, 0, tzinfo=UTC)) + 1
    )


def test_prices_move_during_the_session_and_crypto_moves_on_weekends():
    prices = SyntheticPrices(0)
    session = [TUESDAY_10AM + timedelta(minutes=30 * step) for step in range(12)]
    assert len({prices.price("AAPL", at) for at in session}) > 6
    weekend = [datetime(2025, 3, 8, hour, tzinfo=UTC) for hour in range(0, 24, 2)]
    assert len({prices.price("BTC-USD", at) for at in weekend}) > 6


def _daily_log_return_stdev(symbol: str, days: list[datetime]) -> float:
    prices = SyntheticPrices(11)
    levels = [float(prices.price(symbol, at)) for at in days]
    return statistics.stdev(math.log(b / a) for a, b in pairwise(levels))


def test_equity_daily_volatility_is_plausible():
    closes = [datetime(2022, 1, 3, 21, 0, tzinfo=UTC) + timedelta(days=n) for n in range(600)]
    weekdays = [at for at in closes if at.weekday() < 5]
    daily = statistics.fmean(_daily_log_return_stdev(symbol, weekdays) for symbol in ("AAPL", "KO", "NVDA"))
    assert 0.012 < daily < 0.028  # 30 % a year is about 1.9 % a trading day


def test_crypto_daily_volatility_is_plausible():
    days = [datetime(2022, 1, 1, tzinfo=UTC) + timedelta(days=n) for n in range(500)]
    daily = statistics.fmean(_daily_log_return_stdev(symbol, days) for symbol in ("BTC-USD", "SOL-USD"))
    assert 0.022 < daily < 0.045  # 60 % a year is about 3.1 % a calendar day


def test_brownian_path_has_unit_variance_increments():
    increments = [brownian(5, f"S{n}", 10**9 + 3600) - brownian(5, f"S{n}", 10**9) for n in range(600)]
    assert 0.85 < statistics.pstdev(increments) / 60 < 1.15
    with pytest.raises(ValueError, match="outside the grid"):
        brownian(5, "S", -1)


def test_unknown_symbols_are_absent_and_a_universe_restricts_quotes():
    quotes = SyntheticPrices(0).quotes(["AAPL", "not a symbol", "toolongsymbol", "BTC-EUR", "AAPL"], TUESDAY_10AM)
    assert list(quotes) == ["AAPL"]
    limited = SyntheticPrices(0, universe=["MSFT"])
    assert list(limited.quotes(["AAPL", "MSFT"], TUESDAY_10AM)) == ["MSFT"]


def test_crypto_symbols_contain_a_dash():
    assert is_crypto("BTC-USD") and is_crypto("ETH-USDC")
    assert not is_crypto("AAPL") and not is_crypto("BRK.B")


@pytest.mark.parametrize(
    ("day", "opens_utc_hour"),
    [(date(2025, 1, 15), 14), (date(2025, 7, 15), 13)],  # EST then EDT
)
def test_equity_session_follows_new_york_time(day, opens_utc_hour):
    hours = us_equity_market_hours(datetime(day.year, day.month, day.day, 18, tzinfo=UTC))
    assert hours.is_open
    assert hours.opens_at == datetime(day.year, day.month, day.day, opens_utc_hour, 30, tzinfo=UTC)
    assert hours.closes_at == datetime(day.year, day.month, day.day, opens_utc_hour + 7, tzinfo=UTC)
    assert not us_equity_market_hours(hours.closes_at).is_open
    assert us_equity_market_hours(hours.opens_at).is_open


def test_weekends_are_closed_for_equities_and_open_for_crypto():
    saturday = datetime(2025, 3, 8, 16, tzinfo=UTC)
    assert us_equity_market_hours(saturday) == market_hours("AAPL", saturday)
    assert (market_hours("AAPL", saturday).is_open, market_hours("AAPL", saturday).opens_at) == (False, None)
    assert market_hours("ETH-USD", saturday).is_open


def test_day_orders_expire_at_the_next_close():
    assert day_order_expiry("AAPL", TUESDAY_10AM) == datetime(2025, 3, 4, 21, tzinfo=UTC)
    assert day_order_expiry("AAPL", datetime(2025, 3, 4, 21, tzinfo=UTC)) == datetime(2025, 3, 5, 21, tzinfo=UTC)
    assert day_order_expiry("AAPL", datetime(2025, 3, 7, 22, tzinfo=UTC)) == datetime(2025, 3, 10, 20, tzinfo=UTC)
    assert day_order_expiry("BTC-USD", TUESDAY_10AM) == datetime(2025, 3, 5, tzinfo=UTC)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        us_equity_market_hours(datetime(2025, 3, 4, 15))  # noqa: DTZ001 - the point of the test


# ---------------------------------------------------------------------------- price history


def paper_broker_at(now: datetime, seed: int = 7) -> PaperBroker:
    return PaperBroker("acct", InMemoryPaperStore(), SyntheticPrices(seed), clock=lambda: now)


def test_paper_candles_are_deterministic_aligned_and_consistent_with_the_quotes():
    end = TUESDAY_10AM + timedelta(minutes=2)
    bars = paper_broker_at(end).candles("BTC-USD", CandleInterval.FIVE_MINUTES, end - timedelta(hours=2), end)
    assert len(bars) == 24 and bars == paper_broker_at(end).candles(
        "BTC-USD", CandleInterval.FIVE_MINUTES, end - timedelta(hours=2), end
    )
    assert all(bar.time.timestamp() % 300 == 0 and bar.time.tzinfo is not None for bar in bars)
    assert all(bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high for bar in bars)
    assert bars[0].open == SyntheticPrices(7).price("BTC-USD", bars[0].time)
    assert bars[-1].time <= end, "no bar from the future"
    assert paper_broker_at(end, seed=8).candles("BTC-USD", CandleInterval.FIVE_MINUTES, bars[0].time, end) != bars


def test_paper_equity_candles_leave_out_closed_hours_and_weekends():
    monday_noon = datetime(2025, 3, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)
    broker = paper_broker_at(monday_noon)
    intraday = broker.candles("AAPL", CandleInterval.THIRTY_MINUTES, monday_noon - timedelta(days=4), monday_noon)
    assert intraday and all(market_hours("AAPL", bar.time + timedelta(minutes=15)).is_open for bar in intraday)
    daily = broker.candles("AAPL", CandleInterval.ONE_DAY, monday_noon - timedelta(days=14), monday_noon)
    assert {bar.time.weekday() for bar in daily} <= {0, 1, 2, 3, 4} and len(daily) == 10
    assert broker.candles("NOT A SYMBOL", CandleInterval.ONE_DAY, monday_noon - timedelta(days=3), monday_noon) == []
