"""Numbers on every page: exact Decimal text, never a float's, and a dash for the unknown."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask


def render(app: Flask, source: str, **values: object) -> str:
    with app.app_context():
        return app.jinja_env.from_string(source).render(**values)


def test_amounts_drop_stored_trailing_zeros_and_keep_every_digit(app: Flask) -> None:
    source = "{{ a | amount }} {{ b | amount }} {{ c | amount }} {{ d | amount }}"
    values = {"a": Decimal("0.0100000000"), "b": Decimal("100.0000000000"), "c": Decimal("0.1234567891"), "d": None}
    assert render(app, source, **values) == "0.01 100 0.1234567891 —"


def test_money_is_dollars_and_cents_with_the_sign_first(app: Flask) -> None:
    source = "{{ a | usd }} {{ b | usd }} {{ c | usd }}"
    assert render(app, source, a=Decimal("12500"), b=Decimal("-3.1"), c=None) == "$12,500.00 -$3.10 —"


def test_large_sums_keep_their_cents_where_a_float_would_lose_them(app: Flask) -> None:
    big = Decimal("12345678901234567.89")
    assert render(app, "{{ a | usd }}", a=big) == "$12,345,678,901,234,567.89"
