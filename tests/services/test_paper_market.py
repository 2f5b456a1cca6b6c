"""Paper market shocks: an operator moves a paper symbol's price for every paper account."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask

from models import AuditLog, BrokerConnection
from tests.trading_support import CRYPTO
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.services import connections, paper_market


def mid(connection: BrokerConnection, symbol: str = CRYPTO) -> Decimal:
    quote = connections.broker_for(connection).quotes([symbol])[symbol]
    return (quote.bid + quote.ask) / 2


def test_a_shift_moves_the_symbol_for_every_paper_broker_and_reset_undoes_it(paper: BrokerConnection) -> None:
    before, other_before = mid(paper), mid(paper, "ETH-USD")

    assert paper_market.shift_price(" btc-usd ", "-10") == Decimal("0.90")

    assert mid(paper) == pytest.approx(before * Decimal("0.9"), rel=Decimal("0.002"))
    assert mid(paper, "ETH-USD") == pytest.approx(other_before, rel=Decimal("0.002"))
    paper_market.reset_prices()
    assert mid(paper) == pytest.approx(before, rel=Decimal("0.002"))
    actions = list(db.session.scalars(db.select(AuditLog.action).order_by(AuditLog.id)))
    assert actions[-2:] == ["paper.price_shift", "paper.price_reset"]


@pytest.mark.parametrize(
    ("symbol", "percent", "field"),
    [
        ("not a symbol", "-10", "symbol"),
        (CRYPTO, "-95", "percent"),
        (CRYPTO, "ten", "percent"),
        (CRYPTO, "NaN", "percent"),
    ],
)
def test_bad_shifts_are_refused_and_change_nothing(app: Flask, symbol: str, percent: str, field: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        paper_market.shift_price(symbol, percent)
    assert refused.value.details == {"field": field}
    assert paper_market.price_shifts() == {}


def test_cli_shift_and_reset(app: Flask, paper: BrokerConnection) -> None:
    runner = app.test_cli_runner()
    before = mid(paper)

    shifted = runner.invoke(args=["paper", "shift", CRYPTO, "--percent", "50"])
    assert shifted.exit_code == 0, shifted.output
    assert "BTC-USD now trades at 1.5 x its synthetic price" in shifted.output
    assert mid(paper) == pytest.approx(before * Decimal("1.5"), rel=Decimal("0.002"))

    refused = runner.invoke(args=["paper", "shift", CRYPTO, "--percent", "-100"])
    assert refused.exit_code != 0 and "between -90% and 900%" in refused.output

    reset = runner.invoke(args=["paper", "reset"])
    assert reset.exit_code == 0 and paper_market.price_shifts() == {}
