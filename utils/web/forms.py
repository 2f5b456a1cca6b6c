"""Forms and fields several pages share."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import DecimalField

from utils.money import parse_decimal


class ActionForm(FlaskForm):
    """A bare form: its CSRF token proves the action came from our page."""


class FiniteDecimalField(DecimalField):
    """A decimal field that refuses NaN, sNaN, Infinity and numbers no money column holds, with
    a message a trader understands (WTForms would accept them, and its validators then crash)."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Parse the number, or keep the raw text and say what is expected."""
        if valuelist:
            self.data = parse_decimal(valuelist[0])  # a ValueError leaves the default (None)
