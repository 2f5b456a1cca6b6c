"""An admin sets a user's limits; the order gateway enforces them at once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models import AuditLog, BrokerConnection, Order, RiskSettings, User
from tests.support import make_user
from tests.trading_support import ticket
from utils.enums import Role
from utils.exceptions import InvalidInputError, RiskLimitExceededError
from utils.extensions import db
from utils.services import orders, risk, risk_limits


@pytest.fixture()
def admin(trader: User) -> User:
    return make_user("root@example.com", Role.SUPERADMIN)


def test_a_lowered_order_limit_blocks_the_next_order(admin: User, trader: User, paper: BrokerConnection) -> None:
    orders.place_order(trader, ticket(paper))
    risk_limits.set_limits(admin, trader, {"max_order_notional": "1"})
    with pytest.raises(RiskLimitExceededError, match="limit per order"):
        orders.place_order(trader, ticket(paper))
    assert db.session.scalar(db.select(db.func.count()).select_from(Order)) == 1
    entry = db.session.scalar(db.select(AuditLog).where(AuditLog.action == "risk.limits_changed"))
    assert entry is not None and entry.details["to"] == {"max_order_notional": "1"}


def test_values_are_parsed_and_empty_resets_to_the_default(app: object, admin: User, trader: User) -> None:
    row = risk_limits.set_limits(
        admin,
        trader,
        {
            "max_open_positions": "3",
            "require_stop_loss": "no",
            "symbol_denylist": "gme, amc",
            "max_stop_distance_pct": "7.5",
        },
    )
    assert (row.max_open_positions, row.require_stop_loss, row.symbol_denylist) == (3, False, "AMC,GME")
    limits = risk.limits_for(trader)
    assert limits.max_open_positions == 3 and limits.symbol_denylist == frozenset({"GME", "AMC"})
    assert limits.max_stop_distance_pct == Decimal("7.5")
    risk_limits.set_limits(admin, trader, {"max_open_positions": ""})
    assert risk.limits_for(trader).max_open_positions == 20, "back to RISK_MAX_OPEN_POSITIONS"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_order_notional": "-5"}, "above 0"),
        ({"max_order_notional": "lots"}, "must be a number"),
        ({"max_open_positions": "2.5"}, "whole number"),
        ({"require_stop_loss": "maybe"}, "yes or no"),
        ({"max_stop_distance_pct": "150"}, "at most 100"),
        ({"max_leverage": "3"}, "Unknown risk limit"),
    ],
)
def test_a_bad_value_changes_nothing(admin: User, trader: User, changes: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        risk_limits.set_limits(admin, trader, {"max_orders_per_day": "5", **changes})
    assert db.session.scalar(db.select(RiskSettings)) is None
