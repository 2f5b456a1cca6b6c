"""SEC-14: a user's aggregate risk limits hold against parallel requests.

Real HTTP against gunicorn (several processes, several threads each) on the test database. Four
traders, each with room for exactly K more entries under one aggregate limit (open positions,
orders per day, position notional, total exposure), fire N entries each, all released at once:
each trader gets exactly K accepted and K stored, and the others are refused by the risk engine,
never a 5xx. One trader's gate never holds up another's.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from models import Order, User
from tests.scale import scaled
from tests.security.web_workers import gunicorn
from tests.support import make_user
from tests.trading_support import ask
from tests.web.api.conftest import bearer, order_body
from utils.enums import OrderPurpose, Role
from utils.exceptions import RiskLimitExceededError
from utils.extensions import db
from utils.services import connections, risk_limits

ROOM = 3  # K: entries each trader still has room for
PER_TRADER = scaled(ci=8, soak=24)  # N: entries each trader sends at once
QUANTITY = Decimal("0.01")
RISK_CODES = {RiskLimitExceededError.code} | {rule.code for rule in RiskLimitExceededError.__subclasses__()}

pytestmark = pytest.mark.timeout(180)


def _limits(notional: Decimal) -> dict[str, dict[str, str]]:
    """One aggregate limit per trader, each leaving room for exactly ROOM entries of ``notional``."""
    room = str((notional * (ROOM + Decimal("0.5"))).quantize(Decimal("0.01")))
    return {
        "open-positions@example.com": {"max_open_positions": str(ROOM)},
        "orders-per-day@example.com": {"max_orders_per_day": str(ROOM)},
        "position@example.com": {"max_position_notional": room},
        "exposure@example.com": {"max_total_exposure": room},
    }


def _trader(admin: User, email: str, limits: dict[str, str]) -> tuple[User, dict[str, Any], dict[str, str]]:
    """A trader with a paper account, the given limits, a token and the entry they will send."""
    user = make_user(email)
    paper = connections.create_paper_connection(user, "Sandbox", Decimal("1000000"))
    risk_limits.set_limits(admin, user, limits)
    return user, order_body(paper, quantity=str(QUANTITY)), bearer(user)


def _post_all_at_once(url: str, calls: list[tuple[dict[str, Any], dict[str, str]]]) -> list[requests.Response]:
    """POST every (body, headers) to /api/v1/orders from its own thread, released together."""
    start = threading.Barrier(len(calls))

    def post(call: tuple[dict[str, Any], dict[str, str]]) -> requests.Response:
        start.wait()
        return requests.post(f"{url}/api/v1/orders", json=call[0], headers=call[1], timeout=60)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(post, calls))


def test_parallel_entries_never_exceed_an_aggregate_limit(app: Flask, environ: dict[str, str], tmp_path: Path) -> None:
    admin = make_user("root@example.com", Role.SUPERADMIN)
    traders = {}
    for email, limits in _limits(QUANTITY * ask(_any_paper_account(admin))).items():
        traders[email] = _trader(admin, email, limits)
    calls = [(body, headers | {"X-Trader": email}) for email, (_, body, headers) in traders.items()]

    with gunicorn(environ, tmp_path, workers=3, threads=8) as web:
        answers = _post_all_at_once(web.url, calls * PER_TRADER)

    db.session.rollback()  # see what the web processes committed
    for email, (user, _, _) in traders.items():
        mine = [a for a in answers if a.request.headers["X-Trader"] == email]
        statuses = Counter(a.status_code for a in mine)
        assert statuses == {202: ROOM, 422: PER_TRADER - ROOM}, (email, statuses, [a.text for a in mine][:3])
        assert {a.json()["error"]["code"] for a in mine if a.status_code == 422} <= RISK_CODES
        stored = db.session.scalar(
            db.select(db.func.count(Order.id)).where(Order.user_id == user.id, Order.purpose == OrderPurpose.ENTRY)
        )
        assert stored == ROOM, f"{email}: {stored} entries stored against a limit leaving room for {ROOM}"


def _any_paper_account(owner: User) -> Any:
    """A paper account to read the current ask from (every paper account quotes the same market)."""
    return connections.create_paper_connection(owner, "Quotes", Decimal("1000"))
