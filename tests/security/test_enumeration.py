"""Account enumeration: the login answers an unknown, a deactivated and an active account's wrong
password alike and in the same time (one argon2 verification each); the email change answers a taken
address like a free one (see also tests/web/test_account.py).

Times are compared as ratios of medians, never as absolute times, so a slow machine does not matter.
"""

from __future__ import annotations

import statistics
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import csrf_token, make_user
from utils.enums import Role
from utils.extensions import db
from utils.services import users

ROUNDS = 9
WRONG = "wrong password entirely"


@pytest.fixture()
def no_limits(environ: dict[str, str]) -> dict[str, str]:
    """Limits out of the way: every attempt here is a wrong password."""
    for name in ("LOGIN_LIMIT_PER_IP", "LOGIN_LIMIT_PER_ACCOUNT", "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS"):
        environ[name] = "10000 per minute"
    return environ


def _timed_login(client: FlaskClient, email: str) -> tuple[float, int, str]:
    """Seconds one failing login POST takes, its status and its message (the form's token fetched first)."""
    token = csrf_token(client, "/auth/login")
    started = time.perf_counter()
    response = client.post("/auth/login", data={"email": email, "password": WRONG, "csrf_token": token})
    return time.perf_counter() - started, response.status_code, response.get_data(as_text=True)


def test_unknown_deactivated_and_active_accounts_fail_alike_in_the_same_time(
    no_limits: dict[str, str], app: Flask
) -> None:
    make_user("active@example.com")
    gone = make_user("gone@example.com")
    users.set_active(make_user("root@example.com", Role.SUPERADMIN), gone.id, active=False)
    db.session.remove()
    client = app.test_client()
    kinds = {"unknown": "nobody@example.com", "deactivated": "gone@example.com", "active": "active@example.com"}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    answers = set()
    for _ in range(ROUNDS):  # interleaved, so a slower moment of the machine weighs on every kind
        for kind, email in kinds.items():
            elapsed, status, page = _timed_login(client, email)
            seconds[kind].append(elapsed)
            answers.add((status, "Invalid email or password." in page))
    assert answers == {(401, True)}, "one answer for all three"
    medians = {kind: statistics.median(times) for kind, times in seconds.items()}
    assert max(medians.values()) / min(medians.values()) < 1.5, medians
