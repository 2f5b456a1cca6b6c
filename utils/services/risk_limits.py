"""Per-user risk limits set by an admin: stored on RiskSettings, NULL meaning "the configured default"."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from models import INTEGER_MAX, RiskSettings, User
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.money import MONEY_OVERFLOW, decimal_text, parse_decimal
from utils.services import audit
from utils.services.risk import parse_symbols

MONEY_LIMITS = ("max_order_notional", "max_position_notional", "max_total_exposure", "max_daily_loss")
COUNT_LIMITS = ("max_open_positions", "max_orders_per_day", "max_quote_age_seconds")
FLAGS = ("equities_market_hours_only", "require_stop_loss")
SYMBOL_LISTS = ("symbol_allowlist", "symbol_denylist")
PERCENT_LIMITS = ("max_stop_distance_pct",)
EDITABLE = MONEY_LIMITS + COUNT_LIMITS + FLAGS + SYMBOL_LISTS + PERCENT_LIMITS


def set_limits(actor: User, user: User, changes: Mapping[str, Any]) -> RiskSettings:
    """Change some of a user's limits (None or "" resets one to the default); commit and audit.

    Every value is checked before anything is stored: one bad field changes nothing.
    """
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInputError(f"Unknown risk limit: {', '.join(unknown)}.", details={"field": unknown[0]})
    parsed = {name: _parsed(name, value) for name, value in changes.items()}
    row = db.session.scalar(db.select(RiskSettings).where(RiskSettings.user_id == user.id))
    if row is None:
        row = RiskSettings(user_id=user.id)
        db.session.add(row)
    before = {name: _shown(getattr(row, name)) for name in parsed}
    for name, value in parsed.items():
        setattr(row, name, value)
    after = {name: _shown(value) for name, value in parsed.items()}
    audit.record("risk.limits_changed", actor=actor, subject=user, details={"from": before, "to": after})
    db.session.commit()
    return row


def _parsed(name: str, value: Any) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "" if name in SYMBOL_LISTS else None
    if name in SYMBOL_LISTS:
        return ",".join(sorted(parse_symbols(str(value))))
    if name in FLAGS:
        return _flag(name, value)
    number = _decimal(name, value)
    if name in COUNT_LIMITS:
        if number != number.to_integral_value():
            raise _bad(name, "must be a whole number")
        if number > INTEGER_MAX:
            raise _bad(name, f"must be at most {INTEGER_MAX}")
        return int(number)
    if name in PERCENT_LIMITS and number > 100:
        raise _bad(name, "must be at most 100 (percent)")
    return number


def _decimal(name: str, value: Any) -> Decimal:
    try:
        number = parse_decimal(value)
    except ValueError as exc:
        raise _bad(name, f"must be a number below {decimal_text(MONEY_OVERFLOW)}") from exc
    if number <= 0:
        raise _bad(name, "must be a number above 0 (leave it empty for the default)")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise _bad(name, "must be yes or no")


def _bad(name: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{name.replace('_', ' ').capitalize()} {problem}.", details={"field": name})


def _shown(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value
