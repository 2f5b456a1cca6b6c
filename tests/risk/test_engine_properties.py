"""Property tests of the engine: whatever the account looks like, an error never lets an order
through, a reducing exit is never blocked, and an allowed entry respects every limit."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.risk.builders import NOW, quote
from utils.enums import EXIT_PURPOSES, OrderPurpose, OrderSide, OrderType, TradingState
from utils.risk.engine import RiskEngine
from utils.risk.inputs import OrderIntent, RiskLimits, RiskSnapshot, order_notional
from utils.risk.rules import DEFAULT_RULES, Rule

SYMBOLS = ("AAPL", "MSFT", "BTC-USD")
ENGINE = RiskEngine()


def money(low: int = 0, high: int = 1_000_000) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=low, max_value=high, places=2, allow_nan=False, allow_infinity=False)


prices = money(1, 100_000)
quotes = st.one_of(
    st.none(),
    st.builds(
        lambda symbol, bid, spread, age: quote(symbol, str(bid), str(bid + spread), age=age),
        st.sampled_from(SYMBOLS),
        money(0, 100_000),
        money(0, 50),
        st.integers(-60, 120),
    ),
)
snapshots = st.builds(
    RiskSnapshot,
    now=st.just(NOW),
    user_state=st.sampled_from(TradingState),
    global_state=st.sampled_from(TradingState),
    quote=quotes,
    market_open=st.booleans(),
    exposure_by_symbol=st.dictionaries(st.sampled_from(SYMBOLS), money()),
    total_exposure=money(0, 5_000_000),
    open_positions=st.integers(0, 50),
    entry_orders_today=st.integers(0, 500),
    realized_pnl_today=money(-20_000, 20_000),
    reduces_position=st.booleans(),
)
optional_money = st.none() | money(0, 500_000)
optional_count = st.none() | st.integers(0, 100)
limit_sets = st.builds(
    RiskLimits,
    max_order_notional=optional_money,
    max_position_notional=optional_money,
    max_total_exposure=optional_money,
    max_open_positions=optional_count,
    max_orders_per_day=optional_count,
    max_daily_loss=optional_money,
    symbol_allowlist=st.frozensets(st.sampled_from(SYMBOLS)),
    symbol_denylist=st.frozensets(st.sampled_from(SYMBOLS)),
    equities_market_hours_only=st.booleans(),
    max_quote_age_seconds=st.integers(1, 60),
    require_stop_loss=st.booleans(),
    max_stop_distance_pct=st.none() | money(1, 50),
)
intents = st.builds(
    OrderIntent,
    symbol=st.sampled_from(SYMBOLS),
    side=st.sampled_from(OrderSide),
    quantity=money(1, 1000),
    order_type=st.sampled_from(OrderType),
    purpose=st.sampled_from(OrderPurpose),
    limit_price=st.none() | prices,
    stop_price=st.none() | prices,
    stop_loss_price=st.none() | prices,
    take_profit_price=st.none() | prices,
)


class Exploding(Rule):
    """Raises for every order, entries and exits alike."""

    name = "exploding"
    gates_new_exposure = False

    def check(self, intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits) -> str | None:
        raise ArithmeticError("cannot evaluate")


@settings(max_examples=300)
@given(intents, snapshots, limit_sets, st.integers(0, len(DEFAULT_RULES)))
def test_any_order_is_refused_when_some_rule_raises(
    intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits, position: int
) -> None:
    rules = list(DEFAULT_RULES)
    rules.insert(position, Exploding())
    decision = RiskEngine(rules).check(intent, snapshot, limits)
    assert not decision.allowed
    assert "exploding" in decision.failed_rules


CORRUPTIONS: list[dict[str, Any]] = [
    {"user_state": "paused"},
    {"global_state": None},
    {"market_open": "yes"},
    {"exposure_by_symbol": None},
    {"exposure_by_symbol": dict.fromkeys(SYMBOLS, Decimal("NaN"))},
    {"total_exposure": None},
    {"total_exposure": Decimal("NaN")},
    {"open_positions": "3"},
    {"entry_orders_today": None},
    {"realized_pnl_today": -12.5},
]
set_limits = limit_sets.map(
    lambda limits: replace(
        limits,
        max_order_notional=limits.max_order_notional or Decimal(10**9),
        max_position_notional=limits.max_position_notional or Decimal(10**9),
        max_total_exposure=limits.max_total_exposure or Decimal(10**9),
        max_open_positions=limits.max_open_positions if limits.max_open_positions is not None else 10**6,
        max_orders_per_day=limits.max_orders_per_day if limits.max_orders_per_day is not None else 10**6,
        max_daily_loss=limits.max_daily_loss or Decimal(10**9),
        equities_market_hours_only=True,
    )
)


# No deadline: each corrupted input makes a rule raise, and the engine logs the traceback (slow on
# a loaded machine), which would otherwise make the timing, not the verdict, flaky.
@settings(max_examples=300, deadline=None)
@given(intents, snapshots, set_limits, st.sampled_from(CORRUPTIONS))
def test_an_entry_is_refused_when_the_snapshot_holds_something_unreadable(
    intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits, corruption: dict[str, Any]
) -> None:
    entry = replace(intent, purpose=OrderPurpose.ENTRY, symbol="AAPL")
    assert not ENGINE.check(entry, replace(snapshot, **corruption), limits).allowed


@settings(max_examples=300)
@given(intents, snapshots, limit_sets, st.sampled_from(sorted(EXIT_PURPOSES)))
def test_an_exit_that_reduces_a_position_is_never_blocked(
    intent: OrderIntent, snapshot: RiskSnapshot, limits: RiskLimits, purpose: OrderPurpose
) -> None:
    decision = ENGINE.check(replace(intent, purpose=purpose), replace(snapshot, reduces_position=True), limits)
    assert decision.allowed, decision.reasons
    assert not decision.enter_reducing


@st.composite
def near_misses(draw: st.DrawFn) -> tuple[OrderIntent, RiskSnapshot, RiskLimits]:
    """Entries close to every limit, so that many are allowed and many are not."""
    symbol = draw(st.sampled_from(SYMBOLS))
    bid = draw(money(1, 1000))
    fresh = quote(symbol, str(bid), str(bid + draw(money(0, 1))), age=draw(st.integers(-5, 35)))
    short = draw(st.booleans())
    price = fresh.bid if short else fresh.ask
    distance = draw(st.decimals(min_value=Decimal("0.001"), max_value=Decimal("0.3"), places=3))
    entry = OrderIntent(
        symbol=draw(st.sampled_from([symbol] * 8 + list(SYMBOLS))),
        side=OrderSide.SELL_SHORT if short else OrderSide.BUY,
        quantity=draw(money(1, 100)),
        stop_loss_price=draw(st.just(price * (1 + distance if short else 1 - distance)) | st.none()),
    )
    notional = entry.quantity * price
    near = st.decimals(min_value=notional * Decimal("0.9"), max_value=notional * 3, places=2)
    mostly = st.sampled_from([True] * 8 + [False])
    snapshot = RiskSnapshot(
        now=NOW,
        user_state=draw(st.sampled_from([TradingState.ACTIVE] * 8 + list(TradingState))),
        global_state=draw(st.sampled_from([TradingState.ACTIVE] * 8 + list(TradingState))),
        quote=fresh,
        market_open=draw(mostly),
        exposure_by_symbol={symbol: draw(money(0, 1000))},
        total_exposure=draw(money(0, 2000)),
        open_positions=draw(st.integers(0, 5)),
        entry_orders_today=draw(st.integers(0, 5)),
        realized_pnl_today=draw(money(-100, 100)),
    )
    limits = RiskLimits(
        max_order_notional=draw(st.none() | near),
        max_position_notional=draw(st.none() | near.map(lambda value: value + 1000)),
        max_total_exposure=draw(st.none() | near.map(lambda value: value + 2000)),
        max_open_positions=draw(st.none() | st.integers(0, 10)),
        max_orders_per_day=draw(st.none() | st.integers(0, 10)),
        max_daily_loss=draw(st.none() | money(0, 200)),
        symbol_denylist=draw(st.just(frozenset()) | st.frozensets(st.sampled_from(SYMBOLS), max_size=1)),
        max_quote_age_seconds=30,
        require_stop_loss=draw(st.booleans()),
        max_stop_distance_pct=draw(st.none() | money(10, 40)),
    )
    return entry, snapshot, limits


@settings(max_examples=500)
@given(near_misses())
def test_an_allowed_entry_respects_every_limit(case: tuple[OrderIntent, RiskSnapshot, RiskLimits]) -> None:
    entry, snapshot, limits = case
    decision = ENGINE.check(entry, snapshot, limits)
    event("allowed" if decision.allowed else "refused")
    if not decision.allowed:
        assert decision.reasons and all(decision.reasons)
        return
    assert snapshot.user_state == snapshot.global_state == TradingState.ACTIVE
    assert snapshot.quote is not None and snapshot.quote.symbol == entry.symbol
    assert abs(NOW - snapshot.quote.time) <= timedelta(seconds=limits.max_quote_age_seconds)
    assert entry.symbol not in limits.symbol_denylist
    assert snapshot.market_open or entry.is_crypto
    notional = order_notional(entry, snapshot.quote)
    assert notional is not None
    assert limits.max_order_notional is None or notional <= limits.max_order_notional
    after = snapshot.exposure_by_symbol.get(entry.symbol, Decimal(0)) + notional
    assert limits.max_position_notional is None or after <= limits.max_position_notional
    assert limits.max_total_exposure is None or snapshot.total_exposure + notional <= limits.max_total_exposure
    assert limits.max_open_positions is None or snapshot.open_positions < limits.max_open_positions
    assert limits.max_orders_per_day is None or snapshot.entry_orders_today < limits.max_orders_per_day
    loss = -snapshot.realized_pnl_today
    assert limits.max_daily_loss is None or loss <= 0 or loss < limits.max_daily_loss
    assert entry.stop_loss_price is not None or not limits.require_stop_loss
