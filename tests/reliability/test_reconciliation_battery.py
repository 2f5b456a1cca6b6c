"""REL-10 Reconciliation: seeded mismatches among clean records, found and never traded on.

Four Schwab accounts (four connections, one OAuth login) and a Coinbase connection, all on their
HTTP fakes. Our side is bulk-inserted rows (working orders, open trades); the brokers' side is
seeded straight into the fakes' order books and holdings. Most records agree; 100 do not, in
three kinds spread over symbols and connections by a seeded RNG: ORPHAN orders (live at the
broker, not ours), MISSING orders (ours, unknown to the broker) and POSITION mismatches (our net
quantity differs from the broker's). Pass criteria: every mismatch is an open drift alert of the
right kind for the right connection, symbol and broker order id (100/100), no other alert (0 false
alarms), no write of any kind reaches a broker (0 automatic trades), and a second run opens and
resolves nothing.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from models import BrokerConnection, DriftAlert, Order, User
from tests.fakes.schwab import ORDER_RULE, ORDERS_RULE
from tests.scale import scaled
from tests.support import make_user
from tests.trading_support import add_trade, stored_order
from tests.venues import COINBASE_KEY_NAME, Fakes, running_fakes, schwab_connections
from utils.enums import DriftKind, OrderPurpose, OrderStatus, TradeStatus
from utils.extensions import db
from utils.services import connections, reconcile

CLEAN = scaled(ci=1000, soak=1000)
MISMATCHES = 100
SCHWAB_ACCOUNTS = 4
EQUITIES = tuple(f"EQ{letter}{digit}" for letter in "ABCDE" for digit in range(6))
COINS = ("BTC", "ETH", "SOL")
KINDS = (DriftKind.ORPHAN_ORDER, DriftKind.MISSING_ORDER, DriftKind.POSITION_MISMATCH)
Key = tuple[int, str, str, str]  # connection id, drift kind, symbol, broker order id


class Account:
    """One connection and its broker's books as the test seeds them."""

    symbols: tuple[str, ...] = ()

    def __init__(self, connection: BrokerConnection, fakes: Fakes):
        self.connection, self.fakes = connection, fakes
        self.holdings: dict[str, Decimal] = defaultdict(Decimal)

    def place(self, symbol: str, quantity: int, client_order_id: str) -> str:
        """Book a working limit buy at the broker; its broker order id."""
        raise NotImplementedError

    def unknown_order_id(self, rng: random.Random) -> str:
        """An order id of the broker's format that its book does not hold."""
        raise NotImplementedError

    def publish_holdings(self) -> None:
        """Make the broker report ``holdings``."""
        raise NotImplementedError


class SchwabAccount(Account):
    """A Schwab account: orders without client ids, long holdings per symbol."""

    symbols = EQUITIES

    def place(self, symbol: str, quantity: int, client_order_id: str) -> str:
        """A DAY limit buy, as Schwab stores it."""
        leg = {"instruction": "BUY", "quantity": quantity, "instrument": {"symbol": symbol, "assetType": "EQUITY"}}
        payload = {"session": "NORMAL", "duration": "DAY", "orderType": "LIMIT", "price": "10.00",
                   "orderStrategyType": "SINGLE", "orderLegCollection": [leg]}  # fmt: skip
        return str(self.fakes.schwab.create_order(connections.trading_account_id(self.connection), payload)["orderId"])

    def unknown_order_id(self, rng: random.Random) -> str:
        """Schwab's ids are numbers; the fake counts up from 1000000001."""
        return str(rng.randint(9_000_000_000, 9_999_999_999))

    def publish_holdings(self) -> None:
        """One long position per symbol."""
        account = connections.trading_account_id(self.connection)
        for symbol, quantity in self.holdings.items():
            self.fakes.schwab.set_position(account, symbol, long=str(quantity), avg="10")


class CoinbaseAccount(Account):
    """The Coinbase portfolio: orders carry our client order id, holdings are wallets."""

    symbols = tuple(f"{coin}-USD" for coin in COINS)

    def place(self, symbol: str, quantity: int, client_order_id: str) -> str:
        """A GTC limit buy."""
        configuration = {"limit_limit_gtc": {"base_size": str(quantity), "limit_price": "1", "post_only": False}}
        order = self.fakes.coinbase.add_order(
            client_order_id=client_order_id, product_id=symbol, order_configuration=configuration
        )
        return str(order["order_id"])

    def unknown_order_id(self, rng: random.Random) -> str:
        """Coinbase's ids are UUIDs."""
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def publish_holdings(self) -> None:
        """One wallet per coin."""
        for symbol, quantity in self.holdings.items():
            self.fakes.coinbase.set_balance(symbol.split("-")[0], str(quantity))


class Seeder:
    """Writes matching records on both sides, and the mismatches the battery must find."""

    def __init__(self, user: User, accounts: list[Account], rng: random.Random):
        self.user, self.accounts, self.rng = user, accounts, rng
        self.expected: set[Key] = set()
        self.mismatched_positions: set[tuple[int, str]] = set()

    def _pick(self) -> tuple[Account, str]:
        account = self.rng.choice(self.accounts)
        return account, self.rng.choice(account.symbols)

    def _ours(self, account: Account, symbol: str, quantity: int, broker_order_id: str | None) -> Order:
        order = stored_order(
            account.connection, symbol, OrderPurpose.ENTRY, OrderStatus.WORKING, quantity=Decimal(quantity),
            limit_price=Decimal(10), remaining_quantity=Decimal(quantity), broker_order_id=broker_order_id,
        )  # fmt: skip
        order.submitted_at = order.created_at
        return order

    def clean_order(self) -> None:
        """Ours, working, and the same order working at the broker."""
        account, symbol = self._pick()
        quantity = self.rng.randint(1, 50)
        order = self._ours(account, symbol, quantity, None)
        order.broker_order_id = account.place(symbol, quantity, order.client_order_id)

    def clean_trade(self) -> None:
        """An open trade of ours, held at the broker too."""
        account, symbol = self._pick()
        quantity = Decimal(self.rng.randint(1, 20))
        add_trade(self.user, account.connection, symbol=symbol, quantity=quantity, filled_quantity=quantity,
                  status=TradeStatus.OPEN, average_fill_price=Decimal(10))  # fmt: skip
        account.holdings[symbol] += quantity

    def orphan(self) -> None:
        """A live order at the broker this platform never placed."""
        account, symbol = self._pick()
        broker_order_id = account.place(symbol, self.rng.randint(1, 50), f"foreign-{uuid.uuid4()}")
        self._expect(account, DriftKind.ORPHAN_ORDER, symbol, broker_order_id)

    def missing(self) -> None:
        """A working order of ours whose broker id the broker does not know."""
        account, symbol = self._pick()
        broker_order_id = account.unknown_order_id(self.rng)
        self._ours(account, symbol, self.rng.randint(1, 50), broker_order_id)
        self._expect(account, DriftKind.MISSING_ORDER, symbol, broker_order_id)

    def position_mismatch(self) -> None:
        """The broker holds more, less, nothing, or something we do not (one per connection and symbol)."""
        account, symbol = self._pick()
        while (account.connection.id, symbol) in self.mismatched_positions:
            account, symbol = self._pick()
        self.mismatched_positions.add((account.connection.id, symbol))
        held = account.holdings[symbol]
        account.holdings[symbol] = self.rng.choice([held + 1, held + 7, Decimal(0) if held else Decimal(3)])
        self._expect(account, DriftKind.POSITION_MISMATCH, symbol, "")

    def _expect(self, account: Account, kind: DriftKind, symbol: str, broker_order_id: str) -> None:
        self.expected.add((account.connection.id, kind.value, symbol, broker_order_id))


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as running:
        for number in range(1, SCHWAB_ACCOUNTS):
            running.schwab.add_account(f"2000000{number}")
        for coin in COINS[1:]:
            running.coinbase.add_product(f"{coin}-USD", "0.00000001", "0.01", "0.00001")
            running.coinbase.set_price(f"{coin}-USD", "100.00", "100.10")
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    return environ | fakes.environ()


@pytest.fixture()
def accounts(app: Flask, fakes: Fakes) -> list[Account]:
    user = make_user()
    schwab = [SchwabAccount(connection, fakes) for connection in schwab_connections(user)]
    coinbase = connections.add_coinbase_connection(user, COINBASE_KEY_NAME, fakes.coinbase_private_pem)
    assert len(schwab) == SCHWAB_ACCOUNTS
    return [*schwab, CoinbaseAccount(coinbase, fakes)]


def seed(accounts: list[Account]) -> Seeder:
    """CLEAN matching records (60% orders, 40% trades) and MISMATCHES of the three kinds, interleaved."""
    rng = random.Random(20261130)  # a reproducible battery
    user = db.session.get_one(User, accounts[0].connection.user_id)
    seeder = Seeder(user, accounts, rng)
    mismatch = {DriftKind.ORPHAN_ORDER: seeder.orphan, DriftKind.MISSING_ORDER: seeder.missing,
                DriftKind.POSITION_MISMATCH: seeder.position_mismatch}  # fmt: skip
    clean_orders = CLEAN * 6 // 10
    for index in range(CLEAN):
        (seeder.clean_order if index < clean_orders else seeder.clean_trade)()
    for index in range(MISMATCHES):  # after the trades, so a mismatch can change a clean holding
        mismatch[KINDS[index % len(KINDS)]]()
    for account in accounts:
        account.publish_holdings()
    db.session.commit()
    return seeder


def open_alerts() -> set[Key]:
    db.session.rollback()
    return {
        (alert.connection_id, DriftKind(alert.kind).value, alert.symbol, alert.broker_order_id)
        for alert in db.session.scalars(db.select(DriftAlert).where(DriftAlert.resolved_at.is_(None)))
    }


def broker_writes(fakes: Fakes) -> dict[str, Any]:
    """Every order write the brokers received: placements, changes, cancels."""
    schwab = {key: fakes.schwab.requests[key] for key in (f"POST {ORDERS_RULE}", f"PUT {ORDER_RULE}",
                                                          f"DELETE {ORDER_RULE}")}  # fmt: skip
    coinbase = [request.path for request in fakes.coinbase.received if request.method != "GET"]
    return {"schwab": {key: count for key, count in schwab.items() if count}, "coinbase": coinbase}


@pytest.mark.timeout(180)
def test_every_seeded_mismatch_is_an_alert_and_nothing_else_is_and_nothing_is_traded(
    app: Flask, fakes: Fakes, accounts: list[Account]
) -> None:
    seeder = seed(accounts)
    orders_before = db.session.scalar(db.select(db.func.count(Order.id)))
    assert len(seeder.expected) == MISMATCHES
    assert {kind for _, kind, _, _ in seeder.expected} == {kind.value for kind in KINDS}
    assert len({connection for connection, *_ in seeder.expected}) == len(accounts), "every connection has drift"

    started = time.monotonic()
    reports = reconcile.reconcile_all()
    took = time.monotonic() - started
    found = open_alerts()

    assert all(report.ok for report in reports), [report.error for report in reports if not report.ok]
    detected, false_alarms = found & seeder.expected, found - seeder.expected
    print(f"REL-10: {len(detected)}/{MISMATCHES} detected, {len(false_alarms)} false alarms among {CLEAN} clean "  # noqa: T201
          f"records on {len(accounts)} connections, reconciled in {took:.2f} s")  # fmt: skip
    assert seeder.expected - found == set(), "every mismatch detected with its kind"
    assert false_alarms == set(), "no false alarm"
    assert broker_writes(fakes) == {"schwab": {}, "coinbase": []}, "no order placed, changed or cancelled"
    assert db.session.scalar(db.select(db.func.count(Order.id))) == orders_before, "no order of ours created"

    again = reconcile.reconcile_all()
    assert [(r.new_alerts, r.resolved_alerts) for r in again] == [(0, 0)] * len(accounts), "a rerun is stable"
    assert open_alerts() == seeder.expected
