"""Moving a stop at the real brokers' fakes: a short on Schwab (the rule mirrored, Schwab's ticks) and a
long on Coinbase (the product's own quote_increment), through the one gateway over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from flask import Flask

from models import Order, Trade
from tests.support import make_user
from tests.trading_support import CRYPTO
from tests.venues import EQUITY, Fakes, Venue, open_venue, running_fakes, trade_of
from utils.enums import OrderSide, OrderStatus, ProtectionMode
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.services import execution, orders, positions, protection

D = Decimal


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        running.coinbase.add_product(CRYPTO, "0.00000001", "0.5", "0.00001")  # BTC in half-dollar steps
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    return environ | fakes.environ()


@pytest.fixture()
def schwab(app: Flask, fakes: Fakes) -> Venue:
    return open_venue("schwab", fakes, make_user())


@pytest.fixture()
def coinbase(app: Flask, fakes: Fakes) -> Venue:
    return open_venue("coinbase", fakes, make_user())


def opened(venue: Venue, **fields: object) -> Trade:
    """An entry sent through the gateway, executed at the fake, its fill read and its stop placed there."""
    entry = orders.place_order(venue.user, venue.ticket(**fields))
    execution.send(entry.id)
    sent = db.session.get_one(Order, entry.id)
    assert sent.broker_order_id is not None
    venue.execute(sent.broker_order_id)
    return settled(venue, entry.trade_id or 0)


def settled(venue: Venue, trade_id: int) -> Trade:
    """Two tracking passes (fills read, stop placed; the stop then reads WORKING): the trade as stored."""
    for _ in range(2):
        execution.follow_connection(venue.connection.id)
        db.session.expire_all()
    trade = trade_of(trade_id)
    stop = protection.protective_order(trade)
    assert trade.protection_mode == ProtectionMode.NATIVE and stop is not None and stop.status == OrderStatus.WORKING
    return trade


def refused(venue: Venue, trade: Trade, stop: str, words: str) -> None:
    """The move is refused with ``words`` and the broker-held stop is left as it was."""
    resting = protection.protective_order(trade)
    with pytest.raises(InvalidInputError, match=words):
        positions.move_stop(venue.user, trade.id, D(stop))
    db.session.expire_all()
    assert trade_of(trade.id).stop_loss_price == trade.stop_loss_price
    assert protection.protective_order(trade_of(trade.id)) == resting


def test_a_schwab_short_is_judged_on_the_ask_and_may_lock_in_gains_below_its_entry(fakes: Fakes, schwab: Venue) -> None:
    venue = schwab
    trade = opened(venue, side=OrderSide.SELL_SHORT, stop_loss_price=D("105.00"))  # sold at the bid 99.99
    refused(venue, trade, "100.01", r"not above the ask \$100\.01: it would buy back at once")
    refused(venue, trade, "99.99", "not above the ask")
    refused(venue, trade, "125.00", "away from the ask")
    fakes.schwab.set_price(EQUITY, "95.00", bid="94.99", ask="95.01")  # the short is $5 in profit
    refused(venue, trade, "99.005", "prices move in steps of 0.01")
    positions.move_stop(venue.user, trade.id, D("99.00"))  # below the entry: profit locked
    trade = settled(venue, trade.id)
    assert trade.stop_loss_price == D("99.00") and protection.protective_order(trade).stop_price == D("99.00")  # type: ignore[union-attr]
    stop_bodies = [body for body in fakes.schwab.received_payloads if body.get("orderType") == "STOP"]
    assert stop_bodies[-1]["stopPrice"] == "99.00", "Schwab received the stop as asked"


def test_a_coinbase_stop_must_sit_on_the_products_own_increment(fakes: Fakes, coinbase: Venue) -> None:
    venue = coinbase
    trade = opened(venue)  # bought at the ask 50010, stop 47500
    refused(
        venue, trade, "48000.25", r"BTC-USD prices move in steps of 0\.5; \$48,000\.25 is not one \(try \$48,000\.00\)"
    )
    refused(venue, trade, "48000.01", "steps of 0.5")
    positions.move_stop(venue.user, trade.id, D("48000.50"))
    trade = settled(venue, trade.id)
    assert trade.stop_loss_price == D("48000.50")
    sent = fakes.coinbase.create_requests()[-1].body["order_configuration"]["stop_limit_stop_limit_gtc"]
    assert D(sent["stop_price"]) == D("48000.50"), "the broker got the stop exactly, not rounded"
    refused(venue, trade, "50000.00", r"not below the bid \$50,000\.00")
    refused(venue, trade, "0.5", "away from the bid")
