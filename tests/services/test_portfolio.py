"""The overview: totals across connections, P&L in exact Decimals, a broken connection left out honestly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from flask import Flask

from models import BrokerConnection, User
from tests.fakes.server import Fault
from tests.trading_support import add_snapshot, add_trade
from tests.venues import Fakes, open_venue, running_fakes
from utils.enums import ConnectionStatus, TradeStatus
from utils.extensions import db
from utils.money import utcnow
from utils.services import connections, portfolio

ACCOUNTS_ROUTE = "GET /api/v3/brokerage/accounts"


@pytest.fixture()
def fakes(app: Flask) -> Iterator[Fakes]:
    """The broker fakes, with the app pointed at them."""
    with running_fakes() as running:
        app.config.update(running.environ())
        yield running


def coinbase_calls(fakes: Fakes) -> int:
    return sum(r.path.endswith("/accounts") for r in fakes.coinbase.received)


def test_totals_add_up_every_connection_in_decimals(trader: User, paper: BrokerConnection, fakes: Fakes) -> None:
    open_venue("coinbase", fakes, trader)
    second_paper = connections.create_paper_connection(trader, "Second", Decimal("250000.10"))
    overview = portfolio.overview(trader)
    assert [a.connection.label for a in overview.accounts] == ["Sandbox", "Coinbase", "Second"]
    assert all(a.balance is not None and a.problem == "" for a in overview.accounts)
    assert overview.equity == Decimal("1350000.10") and isinstance(overview.equity, Decimal)
    assert overview.cash == overview.buying_power == Decimal("1350000.10")
    assert overview.complete and overview.label(second_paper.id) == "Second"


def test_a_failing_connection_is_unavailable_and_the_others_still_count(
    trader: User, paper: BrokerConnection, fakes: Fakes
) -> None:
    venue = open_venue("coinbase", fakes, trader)
    fakes.coinbase.plan.add(ACCOUNTS_ROUTE, Fault.UNAUTHORIZED, times=2)
    overview = portfolio.overview(trader)
    failing = next(a for a in overview.accounts if a.connection.id == venue.connection.id)
    assert failing.balance is None and "refused the API key" in failing.problem
    assert overview.equity == overview.cash == Decimal("1000000.00"), "the paper account still counts"
    assert not overview.complete


def test_one_broker_call_per_cache_period_even_for_a_failure(
    trader: User, paper: BrokerConnection, fakes: Fakes
) -> None:
    open_venue("coinbase", fakes, trader)
    fakes.coinbase.plan.add(ACCOUNTS_ROUTE, Fault.UNAUTHORIZED, times=2)
    before = coinbase_calls(fakes)
    first = portfolio.overview(trader)
    calls = coinbase_calls(fakes) - before
    again = portfolio.overview(trader)
    assert coinbase_calls(fakes) - before == calls, "the second overview asked the broker nothing"
    assert [a.problem for a in again.accounts] == [a.problem for a in first.accounts]


def test_connections_that_need_attention_are_not_called(trader: User, paper: BrokerConnection, fakes: Fakes) -> None:
    venue = open_venue("coinbase", fakes, trader)
    venue.connection.status, venue.connection.status_detail = ConnectionStatus.RECONNECT_NEEDED, ""
    db.session.commit()
    before = coinbase_calls(fakes)
    account = portfolio.overview(trader).accounts[1]
    assert account.balance is None and account.problem == "Reconnect needed."
    assert coinbase_calls(fakes) == before


def test_pnl_adds_realized_and_unrealized_exactly(trader: User, paper: BrokerConnection) -> None:
    now = utcnow()
    closed = {"status": TradeStatus.CLOSED, "exit_filled_quantity": Decimal(2), "exit_average_price": Decimal(1)}
    add_trade(trader, paper, **closed, realized_pnl=Decimal("0.1"), closed_at=now)
    add_trade(trader, paper, **closed, realized_pnl=Decimal("0.2"), closed_at=now - timedelta(days=2))
    add_trade(trader, paper, status=TradeStatus.OPEN, quantity=Decimal("0.5"), filled_quantity=Decimal("0.5"),
              fees=Decimal("0.05"))  # fmt: skip
    pnl = portfolio.overview(trader).pnl
    assert pnl.realized_today == Decimal("0.1")
    assert pnl.realized == Decimal("0.25"), "0.1 + 0.2 - the open trade's 0.05 fee, exactly"
    overview = portfolio.overview(trader)
    mark = overview.marks[(paper.id, "BTC-USD")]
    assert mark.price is not None
    assert overview.pnl.unrealized == (mark.price - Decimal(100)) * Decimal("0.5")
    assert overview.pnl.total == overview.pnl.realized + overview.pnl.unrealized
    assert overview.pnl.trades == 3 and overview.pnl.unpriced == 0


def test_day_pnl_is_equity_now_minus_the_last_snapshot_before_midnight_utc(
    trader: User, paper: BrokerConnection
) -> None:
    assert portfolio.overview(trader).day_pnl is None, "no snapshot yet: unknown, never zero"
    midnight = portfolio.start_of_day(utcnow())
    for taken_at, equity in (
        (midnight - timedelta(hours=5), "1"),
        (midnight - timedelta(minutes=10), "999000.50"),
        (midnight + timedelta(seconds=1), "2"),
    ):
        add_snapshot(trader, paper, taken_at, Decimal(equity))
    overview = portfolio.overview(trader)
    assert overview.accounts[0].day_pnl == overview.day_pnl == Decimal("999.50")
