"""SEC-03: login attempts are limited per account and per client IP, counted across every gunicorn
worker (Redis storage), and a forged X-Forwarded-For only matters when PROXY_FIX_X_FOR trusts a proxy.

The multi-worker tests fire concurrent attempts at two sync workers, so both workers answer and
parallel guesses race each other: the exact number of attempts let through shows the counter is
shared and atomic.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from flask import Flask
from flask.testing import FlaskClient

from models import User
from tests.scale import scaled
from tests.security.web_workers import gunicorn, needs_redis
from tests.support import DEFAULT_PASSWORD, form_csrf_token, login, make_user

WRONG = "wrong password entirely"
ATTEMPTS = scaled(12, 48)
LIMITS = {"LOGIN_LIMIT_PER_ACCOUNT": "3 per 5 minutes", "LOGIN_LIMIT_PER_IP": "8 per 5 minutes"}


def _prepared_session(base_url: str) -> tuple[requests.Session, str]:
    """A browser-like session holding the login form's CSRF token."""
    browser = requests.Session()
    return browser, form_csrf_token(browser.get(f"{base_url}/auth/login", timeout=10).text, "/auth/login")


def concurrent_logins(base_url: str, attempts: list[tuple[str, str]]) -> Counter[int]:
    """POST every (email, X-Forwarded-For) attempt at the same moment; count the answers' statuses."""
    prepared = [_prepared_session(base_url) for _ in attempts]
    start = threading.Barrier(len(attempts))

    def attempt(index: int) -> int:
        (browser, token), (email, forwarded_for) = prepared[index], attempts[index]
        start.wait()
        response = browser.post(
            f"{base_url}/auth/login",
            data={"email": email, "password": WRONG, "csrf_token": token},
            headers={"X-Forwarded-For": forwarded_for, "Connection": "close"},
            allow_redirects=False,
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        return Counter(pool.map(attempt, range(len(attempts))))


# ---------------------------------------------------------------------------- one process


def test_failed_logins_are_limited_per_account(client: FlaskClient) -> None:
    make_user()
    for _ in range(5):
        assert login(client, "trader@example.com", WRONG).status_code == 401
    response = login(client, "trader@example.com", DEFAULT_PASSWORD)
    assert response.status_code == 429, "even the right password waits once the account is locked"
    assert "Too many attempts" in response.get_data(as_text=True)
    assert "Retry-After" in response.headers
    other = make_user("other@example.com")
    assert login(client, other.email).status_code == 302, "other accounts are not locked"


def test_the_account_limit_follows_the_account_across_addresses(app: Flask, trader: User) -> None:
    for n in range(5):
        attacker = app.test_client()
        attacker.environ_base["REMOTE_ADDR"] = f"203.0.113.{n + 1}"
        assert login(attacker, trader.email, WRONG).status_code == 401
    fresh_address = app.test_client()
    fresh_address.environ_base["REMOTE_ADDR"] = "198.51.100.99"
    assert login(fresh_address, trader.email, WRONG).status_code == 429


def test_logins_are_limited_per_ip_whatever_the_account(app: Flask, client: FlaskClient) -> None:
    app.config["LOGIN_LIMIT_PER_IP"] = "3 per minute"
    for n in range(3):
        assert login(client, f"user{n}@example.com", WRONG).status_code == 401
    assert login(client, "user9@example.com", WRONG).status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "198.51.100.1"
    assert login(elsewhere, "user9@example.com", WRONG).status_code == 401, "other addresses keep their budget"


# ---------------------------------------------------------------------------- several workers


@needs_redis
def test_limits_hold_across_workers_behind_a_trusted_proxy(
    environ: dict[str, str], trader: User, tmp_path: Path
) -> None:
    with gunicorn(environ | LIMITS | {"PROXY_FIX_X_FOR": "1"}, tmp_path) as web:
        # Every guess from another (proxied) address: only the account limit applies.
        spread = [(trader.email, f"192.0.2.{n + 1}") for n in range(ATTEMPTS)]
        assert concurrent_logins(web.url, spread) == Counter({401: 3, 429: ATTEMPTS - 3})
        # Many accounts from one address: only the address limit applies.
        one_address = [(f"nobody{n}@example.com", "198.51.100.7") for n in range(ATTEMPTS)]
        assert concurrent_logins(web.url, one_address) == Counter({401: 8, 429: ATTEMPTS - 8})
        # The trusted proxy appends the real address: a forged first hop changes nothing.
        forged = [(f"again{n}@example.com", f"10.9.8.{n}, 198.51.100.7") for n in range(ATTEMPTS)]
        assert concurrent_logins(web.url, forged) == Counter({429: ATTEMPTS})
        assert len(web.workers_serving("POST", "/auth/login")) == 2, "both workers answered login attempts"


@needs_redis
def test_a_forged_forwarded_for_is_ignored_without_a_trusted_proxy(
    environ: dict[str, str], app: Flask, tmp_path: Path
) -> None:
    with gunicorn(environ | LIMITS | {"PROXY_FIX_X_FOR": "0"}, tmp_path) as web:
        forged = [(f"nobody{n}@example.com", f"192.0.2.{n + 1}") for n in range(ATTEMPTS)]
        assert concurrent_logins(web.url, forged) == Counter({401: 8, 429: ATTEMPTS - 8})
        assert len(web.workers_serving("POST", "/auth/login")) == 2, "both workers answered login attempts"
