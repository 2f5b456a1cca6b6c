"""How pages show numbers: the template filters every page uses, exact on Decimal (never a float).

``{{ order.quantity | amount }}`` shows "0.01" for a stored 0.0100000000; ``{{ pnl | usd }}``
shows "-$3.10". Both show "—" for a value that cannot be known (None).
"""

from __future__ import annotations

from decimal import Decimal

from flask import Flask

from utils.money import decimal_text, usd

UNKNOWN = "—"


def amount_text(value: Decimal | None) -> str:
    """A quantity or price as stored, without trailing zeros: 0.0100000000 -> "0.01", None -> "—"."""
    return UNKNOWN if value is None else decimal_text(value)


def usd_text(value: Decimal | None) -> str:
    """Money as a trader reads it ("$12,500.00"), or "—" when it cannot be known."""
    return UNKNOWN if value is None else usd(value)


def register_filters(app: Flask) -> None:
    """Make ``amount`` and ``usd`` available to every template."""
    app.add_template_filter(amount_text, "amount")
    app.add_template_filter(usd_text, "usd")
