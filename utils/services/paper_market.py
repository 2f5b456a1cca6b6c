"""Paper market shocks: an operator moves a paper symbol's synthetic price by a percentage.

Traders rehearse what their stop-losses do when the market gaps; browser tests move the price past
a stop. Shifts are platform-wide (every paper account sees the same market), so only operators set
them (CLI, admin). They live in one SystemSetting row, read each time a paper broker is built, so
the web process and every worker see the same prices; every change is audited.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from models import SystemSetting, User
from utils.brokers.paper_prices import is_known_symbol
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.money import parse_decimal
from utils.observability import get_logger
from utils.services import audit
from utils.services.trading_state import upsert

log = get_logger(__name__)
SHIFTS_KEY = "paper_price_shifts"
MIN_PERCENT, MAX_PERCENT = Decimal(-90), Decimal(900)


def price_shifts() -> dict[str, Decimal]:
    """The current multipliers per symbol (empty when the paper market runs unshocked)."""
    statement = db.select(SystemSetting.value).where(SystemSetting.key == SHIFTS_KEY)
    stored = db.session.scalar(statement) or {}
    try:
        return {str(symbol): Decimal(str(factor)) for symbol, factor in dict(stored).items()}
    except (InvalidOperation, TypeError, ValueError):
        log.error("paper.price_shifts_unreadable")
        return {}


def shift_price(symbol: str, percent: Decimal | str, actor: User | None = None) -> Decimal:
    """Move ``symbol``'s paper price by ``percent`` from its synthetic level (audited, committed)."""
    symbol = symbol.strip().upper()
    if not is_known_symbol(symbol):
        raise InvalidInputError(f"{symbol or 'That'} is not a paper market symbol.", details={"field": "symbol"})
    change = _percent(percent)
    factor = 1 + change / 100
    shifts = price_shifts() | {symbol: factor}
    _store(shifts, actor)
    audit.record("paper.price_shift", actor=actor, details={"symbol": symbol, "percent": str(change)})
    db.session.commit()
    log.warning("paper.price_shift", symbol=symbol, percent=str(change))
    return factor


def reset_prices(actor: User | None = None) -> None:
    """Remove every shift: the paper market follows its synthetic prices again (audited, committed)."""
    _store({}, actor)
    audit.record("paper.price_reset", actor=actor)
    db.session.commit()


def _percent(value: Decimal | str) -> Decimal:
    try:
        change = parse_decimal(value)
    except ValueError:
        raise InvalidInputError(
            "The change must be a number of percent, e.g. -10.", details={"field": "percent"}
        ) from None
    if not (MIN_PERCENT <= change <= MAX_PERCENT):
        raise InvalidInputError(
            f"The change must be between {MIN_PERCENT}% and {MAX_PERCENT}%.", details={"field": "percent"}
        )
    return change


def _store(shifts: dict[str, Decimal], actor: User | None) -> None:
    value = {symbol: str(factor) for symbol, factor in shifts.items()}
    row = {"key": SHIFTS_KEY, "value": value, "updated_by_id": actor.id if actor is not None else None}
    upsert(SystemSetting, row, [SystemSetting.key])
