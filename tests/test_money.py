"""Money stays exact Decimal and datetimes stay aware UTC, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import TEST_DATABASE_URL
from utils.money import Money, UTCDateTime, parse_decimal, to_decimal

EXACT_VALUES = ["12345678901.1234567891", "0.0000000001", "-99999999999999999.9999999999", "0", "190.90"]


def backends() -> list[str]:
    """SQLite always; PostgreSQL too when the run has one (CI always does)."""
    return ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL.startswith("postgresql") else [])


@pytest.fixture(params=backends())
def table(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[tuple[sa.Engine, sa.Table]]:
    url = f"sqlite:///{tmp_path}/money.db" if request.param == "sqlite" else TEST_DATABASE_URL
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    values = sa.Table(
        "money_round_trip",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("amount", Money()),
        sa.Column("at", UTCDateTime()),
    )
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine, values
    metadata.drop_all(engine)
    engine.dispose()


def store_and_load(engine: sa.Engine, table: sa.Table, **row: object) -> sa.Row:
    with engine.begin() as connection:
        connection.execute(table.delete())
        connection.execute(table.insert().values(id=1, **row))
        return connection.execute(sa.select(table)).one()


@pytest.mark.parametrize("text", EXACT_VALUES)
def test_money_round_trips_exactly(table: tuple[sa.Engine, sa.Table], text: str) -> None:
    loaded = store_and_load(*table, amount=Decimal(text))
    assert isinstance(loaded.amount, Decimal)
    assert loaded.amount == Decimal(text)
    assert loaded.amount.normalize() == Decimal(text).normalize()


# store_and_load replaces the single row each time, so sharing the table across examples is safe.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.decimals(min_value=Decimal("-1e17"), max_value=Decimal("1e17"), places=10, allow_nan=False))
def test_any_money_value_in_range_round_trips(table: tuple[sa.Engine, sa.Table], amount: Decimal) -> None:
    assert store_and_load(*table, amount=amount).amount == amount


def test_datetimes_come_back_aware_in_utc(table: tuple[sa.Engine, sa.Table]) -> None:
    eastern = datetime(2026, 3, 9, 9, 30, tzinfo=timezone(timedelta(hours=-4)))
    loaded = store_and_load(*table, at=eastern)
    assert loaded.at == eastern
    assert loaded.at.tzinfo is not None and loaded.at.utcoffset() == timedelta(0)


def test_naive_datetimes_and_floats_are_refused(table: tuple[sa.Engine, sa.Table]) -> None:
    with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
        store_and_load(*table, at=datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
    with pytest.raises(sa.exc.StatementError, match="refusing float"):
        store_and_load(*table, amount=0.1)


def test_to_decimal_accepts_strings_and_refuses_floats() -> None:
    assert to_decimal(" 1.50 ") == Decimal("1.50")
    assert to_decimal(3) == Decimal(3)
    with pytest.raises(TypeError):
        to_decimal(1.5)
    with pytest.raises(ValueError, match="not a decimal"):
        to_decimal("abc")
    assert datetime.now(UTC).tzinfo is UTC


@pytest.mark.parametrize("text", ["NaN", "sNaN", "-sNaN", "Infinity", "-inf", " nan "])
def test_no_amount_is_nan_or_infinite(text: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        to_decimal(text)
    with pytest.raises(ValueError, match="finite"):
        to_decimal(Decimal(text.strip()))
    with pytest.raises(ValueError, match="Enter a number such as 10"):
        parse_decimal(text)


@pytest.mark.parametrize("text", ["1e18", "-1e18", "1e999999", "9" * 5000, "1000000000000000000.0"])
def test_typed_numbers_a_money_column_cannot_hold_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Enter a number below 1000000000000000000"):
        parse_decimal(text)


def test_typed_numbers_within_range_are_parsed_exactly() -> None:
    assert parse_decimal(" 0.1 ") == Decimal("0.1")
    assert parse_decimal("999999999999999999.9999999999") == Decimal("999999999999999999.9999999999")
    assert parse_decimal(-5) == Decimal(-5)
