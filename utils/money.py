"""Money and time column types that keep Decimal exact and datetimes in UTC on every backend, and
the two text forms a Decimal is shown in (plain and dollars), so no float ever formats money.

SQLite's NUMERIC affinity silently turns values into floats, so on SQLite money is stored as
TEXT; PostgreSQL gets a real Numeric(28, 10).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_PRECISION = 28
MONEY_SCALE = 10
# The smallest magnitude a Numeric(28, 10) column cannot hold.
MONEY_OVERFLOW = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)


def to_decimal(value: Any) -> Decimal:
    """Convert a str/int/Decimal to a finite Decimal; floats are refused because they are already
    inexact, and NaN, sNaN and Infinity because no amount is one."""
    if isinstance(value, bool | float):
        raise TypeError(f"refusing {type(value).__name__} as money: pass a str or Decimal")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"money must be finite, got {number}")
    return number


def parse_decimal(text: Any) -> Decimal:
    """A number a person or client typed: finite and within what a money column holds, else a
    ValueError whose message the person can act on."""
    try:
        number = to_decimal(text)
    except (TypeError, ValueError) as exc:
        raise ValueError("Enter a number such as 10 or 0.5.") from exc
    if abs(number) >= MONEY_OVERFLOW:
        raise ValueError(f"Enter a number below {decimal_text(MONEY_OVERFLOW)}.")
    return number


def decimal_text(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 0.0100000000 -> "0.01", 100.00 -> "100"."""
    return format(value.normalize(), "f")


def usd(amount: Decimal) -> str:
    """Money as a trader reads it: "$12,500.00", "-$3.10"."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def trail_distance(anchor: Decimal, amount: Decimal | None, percent: Decimal | None) -> Decimal:
    """How far a trailing stop sits from its anchor: the amount, else ``percent`` of the anchor."""
    if amount is not None:
        return amount
    return anchor * (percent or Decimal(0)) / 100


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Money(TypeDecorator[Decimal]):
    """Exact Decimal column: Numeric(28, 10) on PostgreSQL, TEXT on SQLite."""

    impl = sa.Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Pick TEXT on SQLite so no float ever touches the value."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(64))
        return dialect.type_descriptor(sa.Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Validate and store; SQLite receives the canonical string."""
        if value is None:
            return None
        amount = to_decimal(value)
        return format(amount, "f") if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Always hand Decimal back to the application."""
        return None if value is None else Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; naive datetimes are refused on the way in."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes and normalise to UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """SQLite returns naive values: they were stored as UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
