"""A symbol's price chart on one of the user's connections: bars from its broker, and the entry,
stop-loss and take-profit levels of the user's open trades in that symbol."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from models import BrokerConnection, User
from utils.brokers.base import Candle, CandleInterval
from utils.exceptions import InvalidInputError
from utils.money import utcnow
from utils.services import connections, positions

BARS = 200
# Intraday bars reach back at least this far, so a chart opened on a weekend still shows a session.
MINIMUM_LOOKBACK = timedelta(days=4)
DEFAULT_INTERVAL = CandleInterval.FIVE_MINUTES
SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9./-]{0,31}")


@dataclass(frozen=True)
class ChartSubject:
    """Whose chart this is: one of the user's connections, a well-formed symbol and a bar length."""

    connection: BrokerConnection
    symbol: str
    interval: CandleInterval


def chart_subject(user: User, connection_id: int, symbol: str, interval: str = "") -> ChartSubject:
    """The user's connection (NotFoundError for anyone else's), the symbol upper-cased, the interval
    checked (InvalidInputError for a bad symbol or interval)."""
    connection = connections.get_connection(user, connection_id)
    clean = symbol.strip().upper()
    if not SYMBOL.fullmatch(clean):
        raise InvalidInputError("That is not a symbol.", details={"field": "symbol"})
    return ChartSubject(connection, clean, _interval(interval))


def price_chart(user: User, connection_id: int, symbol: str, interval: str = "") -> dict[str, Any]:
    """Bars (oldest first, at most BARS) and trade levels, amounts as strings, times ISO-8601 UTC."""
    subject = chart_subject(user, connection_id, symbol, interval)
    bar = subject.interval
    end = utcnow()
    start = end - max(bar.length * BARS, MINIMUM_LOOKBACK if bar != CandleInterval.ONE_DAY else timedelta(0))
    bars = connections.broker_for(subject.connection).candles(subject.symbol, bar, start, end)[-BARS:]
    return {
        "symbol": subject.symbol,
        "interval": bar.value,
        "candles": [_candle(candle) for candle in bars],
        "levels": _levels(user, subject),
    }


def _interval(value: str) -> CandleInterval:
    try:
        return CandleInterval(value or DEFAULT_INTERVAL)
    except ValueError:
        choices = ", ".join(member.value for member in CandleInterval)
        raise InvalidInputError(f"The interval must be one of {choices}.", details={"field": "interval"}) from None


def _candle(candle: Candle) -> dict[str, str]:
    prices = {name: str(getattr(candle, name)) for name in ("open", "high", "low", "close")}
    return {"time": candle.time.isoformat(), **prices}


def _levels(user: User, subject: ChartSubject) -> list[dict[str, Any]]:
    """Entry, stop-loss and take-profit of each open trade in the symbol on this connection."""
    levels = []
    for position in positions.open_positions(user, subject.connection.id):
        if position.symbol != subject.symbol:
            continue
        for trade in position.trades:
            named = (
                ("entry", trade.average_fill_price),
                ("stop", trade.stop_loss_price),
                ("take_profit", trade.take_profit_price),
            )
            levels += [{"kind": kind, "price": str(price), "trade_id": trade.id} for kind, price in named if price]
    return levels
