"""The paper broker's matching engine and Broker interface, against an in-memory store and hand-set prices."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.paper_store import InMemoryPaperStore, ManualClock, ManualPrices
from utils.brokers.base import OrderRequest
from utils.brokers.paper import PaperBroker, PaperSettings
from utils.brokers.paper_prices import SyntheticPrices
from utils.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from utils.exceptions import (
    InvalidOrderError,
    NotFoundError,
    OrderCancellationError,
    OrderRejectedError,
    SymbolNotFoundError,
    TradingError,
)

ACCOUNT = "paper-acct-7781"
D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
_ids = itertools.count(1)


def req(
    side: OrderSide = BUY,
    quantity: str = "10",
    order_type: OrderType = OrderType.MARKET,
    symbol: str = "AAPL",
    tif: TimeInForce = TimeInForce.GTC,
    limit: str | None = None,
    stop: str | None = None,
    trail: str | None = None,
    client_order_id: str | None = None,
    percent: str | None = None,
) -> OrderRequest:
    """A compact order request builder; each call gets a fresh client order id unless given one."""
    return OrderRequest(
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        order_type=order_type,
        client_order_id=client_order_id or f"cid-{next(_ids)}",
        time_in_force=tif,
        limit_price=D(limit) if limit else None,
        stop_price=D(stop) if stop else None,
        trail_offset=D(trail) if trail else None,
        trail_percent=D(percent) if percent else None,
    )


@pytest.fixture()
def store() -> InMemoryPaperStore:
    store = InMemoryPaperStore()
    store.open_account(ACCOUNT, "100000")
    return store


@pytest.fixture()
def prices() -> ManualPrices:
    prices = ManualPrices()
    prices.set("AAPL", "100.00", "100.02")
    prices.set("MSFT", "400.00", "400.04")
    prices.set("BTC-USD", "50000.00", "50010.00")
    return prices


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


def make_broker(store: InMemoryPaperStore, prices: ManualPrices, clock: ManualClock, **overrides: str) -> PaperBroker:
    values = {"slippage_bps": D(0)} | {key: D(value) for key, value in overrides.items()}
    return PaperBroker(ACCOUNT, store, prices, PaperSettings(**values), clock)


@pytest.fixture()
def broker(store: InMemoryPaperStore, prices: ManualPrices, clock: ManualClock) -> PaperBroker:
    return make_broker(store, prices, clock)


def position(broker: PaperBroker, symbol: str) -> tuple[Decimal, Decimal]:
    found = {p.symbol: p for p in broker.positions(ACCOUNT)}
    return (found[symbol].quantity, found[symbol].average_price) if symbol in found else (D(0), D(0))


# ---------------------------------------------------------------------------- market and limit


def test_market_buy_fills_at_ask_plus_slippage_and_moves_cash(store, prices, clock):
    broker = make_broker(store, prices, clock, slippage_bps="2")
    order = broker.place_order(ACCOUNT, req(quantity="10"))
    # 100.02 * 1.0002 = 100.040004, rounded up to the tick against the buyer.
    assert (order.status, order.filled_quantity, order.average_fill_price) == (OrderStatus.FILLED, 10, D("100.05"))
    assert order.fills[0].fill_id == f"{order.broker_order_id}-1"
    assert broker.balance(ACCOUNT).cash == D("100000") - D("1000.50")
    assert position(broker, "AAPL") == (D(10), D("100.05"))


def test_market_sell_fills_at_bid_minus_slippage(store, prices, clock):
    broker = make_broker(store, prices, clock, slippage_bps="2")
    broker.place_order(ACCOUNT, req(quantity="10"))
    sold = broker.place_order(ACCOUNT, req(SELL, "4"))
    assert sold.average_fill_price == D("99.98")  # 100.00 * 0.9998, rounded down against the seller
    assert position(broker, "AAPL") == (D(6), D("100.05"))
    assert broker.balance(ACCOUNT).cash == D("100000") - D("1000.50") + D("399.92")


def test_limit_buy_waits_until_ask_reaches_limit_then_fills_at_ask(broker, prices):
    order = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="99.50"))
    prices.set("AAPL", "99.50", "99.51")
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "99.40", "99.45")
    filled = broker.get_order(ACCOUNT, order.broker_order_id)
    assert (filled.status, filled.average_fill_price) == (OrderStatus.FILLED, D("99.45"))


def test_limit_sell_waits_until_bid_reaches_limit(broker, prices):
    broker.place_order(ACCOUNT, req(quantity="5"))
    order = broker.place_order(ACCOUNT, req(SELL, "5", OrderType.LIMIT, limit="101.00"))
    prices.set("AAPL", "100.99", "101.50")
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "101.20", "101.22")
    assert broker.get_order(ACCOUNT, order.broker_order_id).average_fill_price == D("101.20")


# ---------------------------------------------------------------------------- stops


def test_stop_buy_triggers_when_ask_reaches_stop_then_fills_as_market(broker, prices):
    order = broker.place_order(ACCOUNT, req(order_type=OrderType.STOP, stop="101.00"))
    prices.set("AAPL", "100.98", "100.99")
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "101.30", "101.32")
    filled = broker.get_order(ACCOUNT, order.broker_order_id)
    assert (filled.status, filled.average_fill_price) == (OrderStatus.FILLED, D("101.32"))


def test_stop_sell_triggers_when_bid_falls_to_stop(broker, prices):
    broker.place_order(ACCOUNT, req(quantity="10"))
    order = broker.place_order(ACCOUNT, req(SELL, "10", OrderType.STOP, stop="95.00"))
    prices.set("AAPL", "95.01", "95.03")
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "94.00", "94.02")
    filled = broker.get_order(ACCOUNT, order.broker_order_id)
    assert (filled.status, filled.average_fill_price) == (OrderStatus.FILLED, D("94.00"))


def test_stop_limit_triggers_then_rests_as_limit_when_price_gaps_through(broker, prices, store):
    broker.place_order(ACCOUNT, req(quantity="10"))
    order = broker.place_order(ACCOUNT, req(SELL, "10", OrderType.STOP_LIMIT, stop="95.00", limit="94.50"))
    prices.set("AAPL", "94.00", "94.02")  # triggers, but the bid is below the limit
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    found = store.find_order(ACCOUNT, order.broker_order_id)
    assert found is not None and found.triggered
    prices.set("AAPL", "96.00", "96.02")  # above the stop again: still a triggered limit, fills at the bid
    assert broker.get_order(ACCOUNT, order.broker_order_id).average_fill_price == D("96.00")


@pytest.mark.parametrize(
    ("trail", "bids", "high", "fills_at"),
    [
        ({"trail": "2.00"}, ("103.00", "105.00", "104.00", "103.01"), "105.00", "103.00"),  # 105.00 - 2.00
        ({"percent": "2"}, ("103.00", "110.00", "108.00", "107.81"), "110.00", "107.80"),  # 110.00 * (1 - 2/100)
    ],
)
def test_trailing_stop_sell_ratchets_its_anchor_up_only_and_triggers(
    broker, prices, store, trail, bids, high, fills_at
):
    broker.place_order(ACCOUNT, req(quantity="10"))
    order = broker.place_order(ACCOUNT, req(SELL, "10", OrderType.TRAILING_STOP, **trail))
    for bid in bids:
        prices.set("AAPL", bid, D(bid) + D("0.02"))
        assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    anchor = store.find_order(ACCOUNT, order.broker_order_id)
    assert anchor is not None and anchor.trail_anchor == D(high)
    prices.set("AAPL", fills_at, D(fills_at) + D("0.02"))
    filled = broker.get_order(ACCOUNT, order.broker_order_id)
    assert (filled.status, filled.average_fill_price) == (OrderStatus.FILLED, D(fills_at))


def test_trailing_stop_buy_follows_the_lowest_ask(broker, prices):
    order = broker.place_order(ACCOUNT, req(order_type=OrderType.TRAILING_STOP, trail="1.00"))
    prices.set("AAPL", "97.00", "97.02")
    broker.process()
    prices.set("AAPL", "97.98", "98.01")
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "98.00", "98.02")  # lowest ask 97.02 + 1.00
    assert broker.get_order(ACCOUNT, order.broker_order_id).average_fill_price == D("98.02")


def test_trailing_stop_buy_by_percent_follows_the_lowest_ask(broker, prices):
    order = broker.place_order(ACCOUNT, req(order_type=OrderType.TRAILING_STOP, percent="1"))
    prices.set("AAPL", "97.00", "97.02")
    broker.process()
    prices.set("AAPL", "97.97", "97.99")  # under 97.02 * 1.01 = 97.9902
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    prices.set("AAPL", "97.98", "98.00")
    assert broker.get_order(ACCOUNT, order.broker_order_id).average_fill_price == D("98.00")


# ---------------------------------------------------------------------------- liquidity, IOC, FOK


def test_large_order_fills_partially_over_passes_with_weighted_average(store, prices, clock):
    broker = make_broker(store, prices, clock, liquidity_per_tick="100")
    order = broker.place_order(ACCOUNT, req(quantity="250"))
    assert (order.status, order.filled_quantity, order.remaining_quantity) == (OrderStatus.PARTIALLY_FILLED, 100, 150)
    prices.set("AAPL", "101.00", "101.02")
    broker.process()
    prices.set("AAPL", "102.00", "102.02")
    done = broker.get_order(ACCOUNT, order.broker_order_id)
    assert [f.quantity for f in done.fills] == [100, 100, 50]
    assert [f.fill_id for f in done.fills] == [f"{order.broker_order_id}-{n}" for n in (1, 2, 3)]
    expected = (100 * D("100.02") + 100 * D("101.02") + 50 * D("102.02")) / 250
    assert (done.status, done.average_fill_price) == (OrderStatus.FILLED, expected)
    assert position(broker, "AAPL") == (D(250), expected)


def test_ioc_fills_one_pass_and_cancels_the_rest(store, prices, clock):
    broker = make_broker(store, prices, clock, liquidity_per_tick="100")
    order = broker.place_order(ACCOUNT, req(quantity="250", tif=TimeInForce.IOC))
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELLED, 100)
    assert "Immediate-or-cancel" in order.status_detail
    unmarketable = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00", tif=TimeInForce.IOC))
    assert (unmarketable.status, unmarketable.filled_quantity) == (OrderStatus.CANCELLED, 0)


def test_fok_fills_entirely_or_not_at_all(store, prices, clock):
    broker = make_broker(store, prices, clock, liquidity_per_tick="100")
    killed = broker.place_order(ACCOUNT, req(quantity="101", tif=TimeInForce.FOK))
    assert (killed.status, killed.filled_quantity) == (OrderStatus.CANCELLED, 0)
    assert "Fill-or-kill" in killed.status_detail
    assert broker.place_order(ACCOUNT, req(quantity="100", tif=TimeInForce.FOK)).status == OrderStatus.FILLED
    limit = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="99.00", tif=TimeInForce.FOK))
    assert limit.status == OrderStatus.CANCELLED


# ---------------------------------------------------------------------------- time in force and hours


def test_day_order_expires_at_the_close_and_gtc_survives(broker, prices, clock):
    day = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00", tif=TimeInForce.DAY))
    gtc = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00", tif=TimeInForce.GTC))
    clock.now = datetime(2025, 3, 4, 20, 59, 59, tzinfo=UTC)  # 15:59:59 in New York
    assert broker.get_order(ACCOUNT, day.broker_order_id).status == OrderStatus.WORKING
    clock.now = datetime(2025, 3, 5, 15, 0, tzinfo=UTC)
    prices.set("AAPL", "89.00", "89.02")  # the next morning the price would fill both
    expired = broker.get_order(ACCOUNT, day.broker_order_id)
    assert (expired.status, expired.closed_at, expired.fills) == (
        OrderStatus.EXPIRED,
        datetime(2025, 3, 4, 21, 0, tzinfo=UTC),
        (),
    )
    assert broker.get_order(ACCOUNT, gtc.broker_order_id).status == OrderStatus.FILLED


def test_equity_market_order_entered_when_closed_waits_for_the_open(broker, prices, clock):
    clock.now = datetime(2025, 3, 8, 17, 0, tzinfo=UTC)  # Saturday
    order = broker.place_order(ACCOUNT, req(tif=TimeInForce.DAY))
    assert order.status == OrderStatus.WORKING
    clock.now = datetime(2025, 3, 10, 13, 29, tzinfo=UTC)  # Monday 09:29 New York (EDT)
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.WORKING
    clock.now = datetime(2025, 3, 10, 13, 30, tzinfo=UTC)
    assert broker.get_order(ACCOUNT, order.broker_order_id).status == OrderStatus.FILLED


def test_crypto_trades_on_weekends_and_day_orders_expire_at_utc_midnight(broker, prices, clock):
    clock.now = datetime(2025, 3, 8, 23, 0, tzinfo=UTC)  # Saturday
    assert broker.place_order(ACCOUNT, req(quantity="0.5", symbol="BTC-USD")).status == OrderStatus.FILLED
    resting = broker.place_order(
        ACCOUNT, req(quantity="0.25", symbol="BTC-USD", order_type=OrderType.LIMIT, limit="40000", tif=TimeInForce.DAY)
    )
    clock.advance(hours=1)
    expired = broker.get_order(ACCOUNT, resting.broker_order_id)
    assert (expired.status, expired.closed_at) == (OrderStatus.EXPIRED, datetime(2025, 3, 9, tzinfo=UTC))


def test_immediate_equity_order_is_cancelled_when_the_market_is_closed(broker, clock):
    clock.now = datetime(2025, 3, 4, 22, 0, tzinfo=UTC)
    order = broker.place_order(ACCOUNT, req(tif=TimeInForce.IOC))
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELLED, 0)


# ---------------------------------------------------------------------------- cancel and replace


def test_cancel_working_order_then_cancel_again_is_refused(broker, clock):
    order = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00"))
    clock.advance(minutes=1)
    broker.cancel_order(ACCOUNT, order.broker_order_id)
    cancelled = broker.get_order(ACCOUNT, order.broker_order_id)
    assert (cancelled.status, cancelled.closed_at) == (OrderStatus.CANCELLED, clock.now)
    with pytest.raises(OrderCancellationError, match="already cancelled"):
        broker.cancel_order(ACCOUNT, order.broker_order_id)
    with pytest.raises(NotFoundError):
        broker.cancel_order(ACCOUNT, "no-such-order")


def test_cancel_filled_order_is_refused(broker):
    order = broker.place_order(ACCOUNT, req())
    with pytest.raises(OrderCancellationError, match="already filled"):
        broker.cancel_order(ACCOUNT, order.broker_order_id)


def test_replace_creates_a_new_order_and_marks_the_old_replaced(broker, prices, store):
    old = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00"))
    new = broker.replace_order(
        ACCOUNT, old.broker_order_id, req(order_type=OrderType.LIMIT, limit="95.00", client_order_id="cid-new")
    )
    assert new.broker_order_id != old.broker_order_id and new.client_order_id == "cid-new"
    assert broker.get_order(ACCOUNT, old.broker_order_id).status == OrderStatus.REPLACED
    stored = store.find_order(ACCOUNT, new.broker_order_id)
    assert stored is not None and stored.replaces_order_id == old.broker_order_id
    prices.set("AAPL", "94.90", "94.95")
    assert broker.get_order(ACCOUNT, new.broker_order_id).status == OrderStatus.FILLED
    assert broker.get_order(ACCOUNT, old.broker_order_id).fills == ()
    with pytest.raises(OrderCancellationError):
        broker.replace_order(ACCOUNT, new.broker_order_id, req(order_type=OrderType.LIMIT, limit="96.00"))


def test_replace_of_a_sell_does_not_count_the_old_order_as_committed(broker):
    broker.place_order(ACCOUNT, req(quantity="10"))
    old = broker.place_order(ACCOUNT, req(SELL, "10", OrderType.LIMIT, limit="120.00"))
    new = broker.replace_order(ACCOUNT, old.broker_order_id, req(SELL, "10", OrderType.LIMIT, limit="110.00"))
    assert new.status == OrderStatus.WORKING


def test_rejected_replace_leaves_the_old_order_working(broker, store):
    old = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="90.00"))
    before = store.snapshot(ACCOUNT)
    with pytest.raises(OrderRejectedError, match="Insufficient buying power"):
        broker.replace_order(ACCOUNT, old.broker_order_id, req(quantity="5000", order_type=OrderType.LIMIT, limit="95"))
    with pytest.raises(InvalidOrderError, match="keep the symbol"):
        broker.replace_order(ACCOUNT, old.broker_order_id, req(symbol="MSFT"))
    assert store.snapshot(ACCOUNT) == before


# ---------------------------------------------------------------------------- validation and rejections


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (req(quantity="2000"), OrderRejectedError, "Insufficient buying power"),
        (req(SELL, "1"), OrderRejectedError, "You are selling more than you hold"),
        (req(OrderSide.SELL_SHORT), OrderRejectedError, "Short selling is not supported by the paper broker"),
        (req(OrderSide.BUY_TO_COVER), OrderRejectedError, "Short selling is not supported"),
        (req(symbol="NOPE"), SymbolNotFoundError, "Unknown symbol"),
        (req(quantity="0"), InvalidOrderError, "positive"),
        (req(quantity="1.5"), InvalidOrderError, "whole shares"),
        (req(symbol="BTC-USD", quantity="0.000000001"), InvalidOrderError, "8 decimal places"),
        (req(order_type=OrderType.LIMIT), InvalidOrderError, "needs a limit price"),
        (req(order_type=OrderType.STOP), InvalidOrderError, "needs a stop price"),
        (req(order_type=OrderType.STOP_LIMIT, stop="99"), InvalidOrderError, "needs a limit price"),
        (req(order_type=OrderType.TRAILING_STOP), InvalidOrderError, "needs a trail offset"),
        (req(order_type=OrderType.TRAILING_STOP, percent="100"), InvalidOrderError, "above 0 and below 100"),
        (req(order_type=OrderType.TRAILING_STOP, percent="-1"), InvalidOrderError, "above 0 and below 100"),
        (req(order_type=OrderType.TRAILING_STOP, trail="1.00", percent="1"), InvalidOrderError, "not both"),
        (req(order_type=OrderType.LIMIT, limit="99.001"), InvalidOrderError, "multiple of 0.01"),
        (req(order_type=OrderType.STOP, stop="101", tif=TimeInForce.IOC), InvalidOrderError, "market and limit"),
        (req(client_order_id="x" * 65), InvalidOrderError, "1 to 64 characters"),
    ],
)
def test_rejections_are_readable_and_change_nothing(broker, store, request_, error, message):
    before = store.snapshot(ACCOUNT)
    with pytest.raises(error, match=message):
        broker.place_order(ACCOUNT, request_)
    assert store.snapshot(ACCOUNT) == before


def test_sell_counts_quantity_already_committed_to_other_sells(broker):
    broker.place_order(ACCOUNT, req(quantity="10"))
    broker.place_order(ACCOUNT, req(SELL, "7", OrderType.LIMIT, limit="150.00"))
    with pytest.raises(OrderRejectedError, match=r"3 available \(10 held, 7 already in other sell orders\)"):
        broker.place_order(ACCOUNT, req(SELL, "4", OrderType.LIMIT, limit="150.00"))
    assert broker.place_order(ACCOUNT, req(SELL, "3")).status == OrderStatus.FILLED


def test_a_rejection_still_saves_the_pass_that_ran_before_it(broker, prices, store):
    resting = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="95.00"))
    prices.set("AAPL", "94.00", "94.02")
    with pytest.raises(OrderRejectedError):
        broker.place_order(ACCOUNT, req(OrderSide.SELL_SHORT))
    stored = store.find_order(ACCOUNT, resting.broker_order_id)
    assert stored is not None and stored.status == OrderStatus.FILLED


def test_duplicate_client_order_id_returns_the_existing_order(broker, store):
    first = broker.place_order(ACCOUNT, req(quantity="10", client_order_id="same"))
    again = broker.place_order(ACCOUNT, req(quantity="10", client_order_id="same"))
    assert again.broker_order_id == first.broker_order_id
    assert position(broker, "AAPL")[0] == 10
    assert len(store.snapshot(ACCOUNT)[2]) == 1


def test_buy_that_cannot_be_afforded_at_fill_time_is_cancelled(store, prices, clock):
    store.open_account(ACCOUNT, "1500")
    broker = make_broker(store, prices, clock)
    first = broker.place_order(ACCOUNT, req(quantity="10", order_type=OrderType.LIMIT, limit="99.00"))
    second = broker.place_order(ACCOUNT, req(quantity="10", order_type=OrderType.LIMIT, limit="99.00"))
    prices.set("AAPL", "98.00", "98.02")
    assert broker.get_order(ACCOUNT, first.broker_order_id).status == OrderStatus.FILLED
    late = broker.get_order(ACCOUNT, second.broker_order_id)
    assert (late.status, late.filled_quantity) == (OrderStatus.CANCELLED, 0)
    assert "not enough cash" in late.status_detail
    assert broker.balance(ACCOUNT).cash == D("1500") - D("980.20")


def test_other_accounts_are_not_found(broker):
    with pytest.raises(NotFoundError):
        broker.balance("someone-else")


# ---------------------------------------------------------------------------- reads


def test_commission_is_charged_per_fill_and_reported_in_transactions(store, prices, clock):
    broker = make_broker(store, prices, clock, commission_bps="10", commission_minimum="1.00")
    small = broker.place_order(ACCOUNT, req(quantity="1"))  # 100.02 * 10 bp = 0.10 -> the 1.00 minimum
    clock.advance(seconds=1)
    big = broker.place_order(ACCOUNT, req(quantity="50"))  # 5001.00 * 10 bp = 5.00
    assert (small.fills[0].commission, big.fills[0].commission) == (D("1.00"), D("5.00"))
    clock.advance(seconds=1)
    broker.place_order(ACCOUNT, req(SELL, "51"))  # 5100.00 * 10 bp = 5.10
    assert broker.balance(ACCOUNT).cash == D("100000") - D("101.02") - D("5006.00") + D("5094.90")
    entries = broker.transactions(ACCOUNT, clock.now - timedelta(hours=1), clock.now)
    assert [t.amount for t in entries] == [D("-101.02"), D("-5006.00"), D("5094.90")]
    assert entries[0].transaction_id == small.fills[0].fill_id and entries[0].symbol == "AAPL"
    assert broker.fills(ACCOUNT, big.broker_order_id) == list(big.fills)


def test_balance_and_positions_are_marked_to_market(broker, prices):
    broker.place_order(ACCOUNT, req(quantity="10"))
    broker.place_order(ACCOUNT, req(quantity="0.1", symbol="BTC-USD"))
    prices.set("AAPL", "110.00", "110.02")
    balance = broker.balance(ACCOUNT)
    cash = D("100000") - D("1000.20") - D("5001.000")
    assert (balance.currency, balance.cash, balance.buying_power) == ("USD", cash, cash)
    assert balance.equity == cash + 10 * D("110.01") + D("0.1") * D("50005.00")
    held = {p.symbol: p for p in broker.positions(ACCOUNT)}
    assert held["AAPL"].market_value == D("1100.10") and held["BTC-USD"].quantity == D("0.1")


def test_list_orders_filters_by_window_and_status(broker, clock):
    filled = broker.place_order(ACCOUNT, req())
    clock.advance(minutes=5)
    working = broker.place_order(ACCOUNT, req(order_type=OrderType.LIMIT, limit="50.00"))
    start, end = clock.now - timedelta(minutes=10), clock.now
    assert [o.broker_order_id for o in broker.list_orders(ACCOUNT, start, end)] == [
        filled.broker_order_id,
        working.broker_order_id,
    ]
    assert [o.broker_order_id for o in broker.list_orders(ACCOUNT, start, end, OrderStatus.WORKING)] == [
        working.broker_order_id
    ]
    assert broker.list_orders(ACCOUNT, end + timedelta(seconds=1), end + timedelta(hours=1)) == []


def test_accounts_capabilities_quotes_and_hours(broker, clock):
    assert [(a.account_id, a.display_number) for a in broker.accounts()] == [(ACCOUNT, "PAPER-7781")]
    caps = broker.capabilities
    assert (caps.native_stop, caps.trailing_stop, caps.bracket, caps.replace, caps.always_open) == (
        True,
        True,
        False,
        True,
        False,
    )
    assert set(broker.quotes(["AAPL", "BTC-USD", "ZZZZ"])) == {"AAPL", "BTC-USD"}
    assert broker.market_hours("BTC-USD", datetime(2025, 3, 8, tzinfo=UTC)).is_open
    assert not broker.market_hours("AAPL", datetime(2025, 3, 8, tzinfo=UTC)).is_open


def test_synthetic_prices_drive_a_real_round_trip(store, clock):
    broker = PaperBroker(ACCOUNT, store, SyntheticPrices(seed=3), clock=clock)
    bought = broker.place_order(ACCOUNT, req(quantity="5", symbol="MSFT"))
    quote = broker.quotes(["MSFT"])["MSFT"]
    assert bought.status == OrderStatus.FILLED and bought.average_fill_price >= quote.ask
    clock.advance(hours=2)
    sold = broker.place_order(ACCOUNT, req(SELL, "5", symbol="MSFT"))
    assert sold.status == OrderStatus.FILLED and broker.positions(ACCOUNT) == []


def test_session_failure_persists_nothing(store):
    with pytest.raises(RuntimeError), store.session(ACCOUNT) as state:
        state.cash = D(0)
        raise RuntimeError("boom")
    assert store.snapshot(ACCOUNT)[0] == D("100000")


# ---------------------------------------------------------------------------- conservation property

SYMBOLS = ["AAPL", "ETH-USD"]
STEP = st.one_of(
    st.tuples(st.just("price"), st.sampled_from(SYMBOLS), st.integers(8000, 12000), st.integers(1, 40)),
    st.tuples(
        st.just("order"),
        st.sampled_from(SYMBOLS),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 200),
        st.sampled_from([OrderType.MARKET, *OrderType]),
        st.sampled_from([TimeInForce.GTC, *TimeInForce]),
        st.integers(8000, 12000),
        st.integers(1, 500),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(
        st.just("process"),
    ),
)


def _run(broker: PaperBroker, prices: ManualPrices, clock: ManualClock, steps: list[tuple]) -> list[str]:
    """Play random steps; trading errors are part of the game. Returns the ids of entered orders."""
    order_ids: list[str] = []
    for step in steps:
        clock.advance(minutes=5)  # strictly increasing time: fills sort into engine order by (time, created)
        try:
            if step[0] == "price":
                _, symbol, cents, spread = step
                prices.set(symbol, D(cents) / 100, D(cents + spread) / 100)
            elif step[0] == "order":
                _, symbol, side, size, kind, tif, cents, offset = step
                size = size if side == BUY else max(1, size // 4)  # sells small enough to pass often
                quantity = str(size) if symbol == "AAPL" else str(D(size) / 100)
                price, trail = str(D(cents) / 100), str(D(offset) / 100)
                request = req(side, quantity, kind, symbol, tif, limit=price, stop=price, trail=trail)
                order_ids.append(broker.place_order(ACCOUNT, request).broker_order_id)
            elif step[0] == "cancel" and order_ids:
                broker.cancel_order(ACCOUNT, order_ids[step[1] % len(order_ids)])
            else:
                broker.process()
        except TradingError:
            pass
    return order_ids


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEP, max_size=25),
    fee=st.sampled_from([("0", "0"), ("10", "0"), ("5", "1.00")]),
    slippage=st.sampled_from(["0", "2"]),
)
def test_cash_and_cost_basis_are_conserved(steps, fee, slippage):
    store, prices, clock = InMemoryPaperStore(), ManualPrices(), ManualClock(datetime(2025, 3, 3, 18, 30, tzinfo=UTC))
    store.open_account(ACCOUNT, "50000")
    for symbol in SYMBOLS:
        prices.set(symbol, "100.00", "100.05")
    costs = PaperSettings(D(slippage), D("60"), D(fee[0]), D(fee[1]))
    broker = PaperBroker(ACCOUNT, store, prices, costs, clock)
    _run(broker, prices, clock, [("order", "AAPL", BUY, 50, OrderType.MARKET, TimeInForce.GTC, 0, 0)] * 2)
    _run(broker, prices, clock, [("order", "ETH-USD", BUY, 100, OrderType.MARKET, TimeInForce.GTC, 0, 0)])
    _run(broker, prices, clock, steps)
    clock.advance(minutes=5)  # a last pass at a later time: the model orders fills by (time, created)
    broker.process()
    cash, positions, orders = store.snapshot(ACCOUNT)

    fills = sorted(
        ((fill, order) for order in orders.values() for fill in order.fills),
        key=lambda pair: (pair[0].time, pair[1].created_at),
    )
    model_cash, held, basis, realized, commissions = D(50000), dict.fromkeys(SYMBOLS, D(0)), {}, D(0), D(0)
    for fill, order in fills:
        notional, commissions = fill.quantity * fill.price, commissions + fill.commission
        if order.side == BUY:
            model_cash -= notional + fill.commission
            basis[order.symbol] = basis.get(order.symbol, D(0)) + notional
            held[order.symbol] += fill.quantity
        else:
            average = basis[order.symbol] / held[order.symbol]
            realized += fill.quantity * (fill.price - average)
            basis[order.symbol] -= fill.quantity * average
            held[order.symbol] -= fill.quantity
            if not held[order.symbol]:
                basis[order.symbol] = D(0)
            model_cash += notional - fill.commission
    for order in orders.values():
        assert order.filled_quantity == sum((f.quantity for f in order.fills), D(0)) <= order.quantity
        assert (order.status == OrderStatus.FILLED) == (order.filled_quantity == order.quantity)

    assert cash == model_cash >= 0
    assert {s: p.quantity for s, p in positions.items()} == {s: q for s, q in held.items() if q}
    cost_basis = sum((p.quantity * p.average_price for p in positions.values()), D(0))
    # cash + cost basis == starting cash - commissions (+ realized P&L of sells); average prices keep 10 decimals
    assert abs(cash + cost_basis - (D(50000) - commissions + realized)) < D("1e-6")
    if not any(order.side == SELL and order.fills for order in orders.values()):
        assert abs(cash + cost_basis - (D(50000) - commissions)) < D("1e-6")


def test_the_price_increment_is_the_cent_the_engine_accepts(broker: PaperBroker) -> None:
    assert broker.price_increment("BTC-USD", D("98866.00")) == broker.price_increment("AAPL", D("0.5")) == D("0.01")
