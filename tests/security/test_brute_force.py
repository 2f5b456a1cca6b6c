"""SEC-03: failed password and code checks are limited per (account, address) and per account, on
every page that checks one, each failure audited; login attempts are limited per client IP; counted
across every gunicorn worker (Redis storage), and a forged X-Forwarded-For only matters when
PROXY_FIX_X_FOR trusts a proxy. An attacker at one address cannot lock the owner out from another.

The multi-worker tests fire concurrent attempts at two sync workers, so both workers answer and
parallel guesses race each other: the exact number of attempts let through shows the counter is
shared and atomic.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from models import User
from tests.scale import scaled
from tests.security.web_workers import gunicorn, needs_redis
from tests.support import DEFAULT_PASSWORD, form_csrf_token, login, make_user, post_form
from tests.two_factor_support import code_for, enrol_through_the_page, wrong_code
from utils.enums import Role
from utils.services import audit

WRONG = "wrong password entirely"
NEW_PASSWORD = "a brand new passphrase"
ATTEMPTS = scaled(12, 48)
LIMITS = {
    "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS": "3 per 5 minutes",
    "LOGIN_LIMIT_PER_ACCOUNT": "6 per 5 minutes",
    "LOGIN_LIMIT_PER_IP": "8 per 5 minutes",
}
ATTACKER, OWNER = "203.0.113.7", "198.51.100.9"


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


def live_login(base_url: str, email: str, forwarded_for: str) -> int:
    """The status of one login with the right password, from ``forwarded_for``."""
    browser, token = _prepared_session(base_url)
    response = browser.post(
        f"{base_url}/auth/login",
        data={"email": email, "password": DEFAULT_PASSWORD, "csrf_token": token},
        headers={"X-Forwarded-For": forwarded_for, "Connection": "close"},
        allow_redirects=False,
        timeout=30,
    )
    return response.status_code


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


def client_at(app: Flask, address: str) -> FlaskClient:
    """A browser at ``address``."""
    browser = app.test_client()
    browser.environ_base["REMOTE_ADDR"] = address
    return browser


def second_step(client: FlaskClient, code: str) -> object:
    return post_form(client, "/auth/two-factor", "/auth/two-factor", {"code": code})


def test_an_attacker_at_one_address_cannot_lock_the_owner_out(app: Flask, trader: User) -> None:
    attacker = client_at(app, ATTACKER)
    assert [login(attacker, trader.email, WRONG).status_code for _ in range(7)] == [401] * 5 + [429] * 2
    assert login(attacker, trader.email).status_code == 429, "the right password waits at the failing address"
    assert login(client_at(app, OWNER), trader.email).status_code == 302, "the owner elsewhere signs in"


def test_a_superadmin_with_two_factor_signs_in_while_an_attacker_with_the_password_guesses_codes(
    app: Flask,
) -> None:
    root = make_user("root@example.com", Role.SUPERADMIN)
    enrolling = client_at(app, OWNER)
    login(enrolling, root.email)
    secret, _ = enrol_through_the_page(enrolling)
    attacker = client_at(app, ATTACKER)
    assert login(attacker, root.email).headers["Location"] == "/auth/two-factor"
    assert [second_step(attacker, wrong_code(secret)).status_code for _ in range(6)] == [401] * 5 + [429]  # type: ignore[attr-defined]
    owner = client_at(app, OWNER)
    assert login(owner, root.email).headers["Location"] == "/auth/two-factor"
    assert second_step(owner, code_for(secret)).status_code == 302  # type: ignore[attr-defined]
    assert owner.get("/admin/system/").status_code == 200, "the kill switch is within reach"


def test_failures_spread_over_addresses_meet_the_higher_account_limit(app: Flask, trader: User) -> None:
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "6 per hour"
    spread = [login(client_at(app, f"203.0.113.{n + 1}"), trader.email, WRONG).status_code for n in range(8)]
    assert spread == [401] * 6 + [429] * 2
    assert login(client_at(app, OWNER), trader.email).status_code == 429, "locked everywhere until failures age"


def test_only_failures_count_and_refused_attempts_never_prolong_a_lock(app: Flask, trader: User) -> None:
    app.config["LOGIN_LIMIT_PER_ACCOUNT_ADDRESS"] = "2 per 4 seconds"
    browser = client_at(app, ATTACKER)
    assert all(login(client_at(app, ATTACKER), trader.email).status_code == 302 for _ in range(4)), "successes"
    window_ends = time.monotonic() + 4  # the window opens at the first failure
    assert [login(browser, trader.email, WRONG).status_code for _ in range(2)] == [401, 401]
    while time.monotonic() < window_ends - 0.5:  # one refused guess after another, as a lock-keeper would
        assert login(browser, trader.email, WRONG).status_code == 429
        time.sleep(0.2)
    time.sleep(max(0.0, window_ends - time.monotonic()) + 0.5)
    assert login(browser, trader.email).status_code == 302, "the window ran out despite the refused guesses"


# ---------------------------------------------------------------------------- every credential check


@dataclass(frozen=True)
class CredentialCheck:
    """A page that checks a password or a code: where it is, what it sends, how it fails and succeeds."""

    action: str
    form_page: str
    fields: Callable[[str, str], dict[str, str]]  # (password, code) -> the form
    failure_audit: str
    failed_status: int
    succeeded_status: int
    signed_in: bool = True
    two_factor: bool = False


CHECKS = {
    "login": CredentialCheck(
        "/auth/login", "/auth/login", lambda password, _: {"email": "trader@example.com", "password": password},
        "auth.login_failed", 401, 302, signed_in=False,
    ),
    "two-factor login step": CredentialCheck(
        "/auth/two-factor", "/auth/two-factor", lambda _, code: {"code": code},
        "auth.two_factor_failed", 401, 302, signed_in=False, two_factor=True,
    ),
    "password change": CredentialCheck(
        "/account/password", "/account/password",
        lambda password, _: {"current_password": password, "new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        "user.password_change_failed", 422, 302,
    ),
    "email change": CredentialCheck(
        "/account/profile", "/account/profile",
        lambda password, _: {"email": "new@example.com", "current_password": password},
        "user.email_change_failed", 422, 302,
    ),
    "two-factor disable": CredentialCheck(
        "/account/two-factor/disable", "/account/two-factor",
        lambda password, code: {"password": password, "code": code},
        "two_factor.disable_failed", 422, 302, two_factor=True,
    ),
    "recovery codes": CredentialCheck(
        "/account/two-factor/recovery-codes", "/account/two-factor",
        lambda password, code: {"password": password, "code": code},
        "two_factor.recovery_codes_failed", 422, 200, two_factor=True,
    ),
}  # fmt: skip


@pytest.fixture()
def three_failures(environ: dict[str, str]) -> dict[str, str]:
    """Three failed checks per account and address (set before the app is built)."""
    environ["LOGIN_LIMIT_PER_ACCOUNT_ADDRESS"] = "3 per 5 minutes"
    return environ


def _browser_for(app: Flask, check: CredentialCheck, address: str, code: str) -> FlaskClient:
    """A browser at ``address`` on ``check``'s page: signed in (``code`` for a second step) or half way."""
    browser = client_at(app, address)
    if check.signed_in or check.two_factor:
        login(browser, "trader@example.com")
    if check.signed_in and check.two_factor:
        assert second_step(browser, code).status_code == 302  # type: ignore[attr-defined]
    return browser


def _wrong_attempts(check: CredentialCheck, secret: str, valid_code: str) -> list[dict[str, str]]:
    """Three failing forms; where a page takes both factors, a wrong password and a wrong code in turn."""
    if not check.two_factor:
        return [check.fields(WRONG, "")] * 3
    if not check.signed_in:
        return [check.fields("", wrong_code(secret))] * 3
    return [check.fields(WRONG, valid_code), check.fields(DEFAULT_PASSWORD, wrong_code(secret))] * 2


@pytest.mark.parametrize("name", CHECKS)
def test_every_credential_check_is_limited_per_address_answered_alike_and_audited(
    three_failures: dict[str, str], app: Flask, trader: User, name: str
) -> None:
    check = CHECKS[name]
    owner, secret, codes = client_at(app, OWNER), "", [""] * 10
    if check.two_factor:
        login(owner, trader.email)
        secret, codes = enrol_through_the_page(owner)
    attacker = _browser_for(app, check, ATTACKER, codes[2])
    wrong = _wrong_attempts(check, secret, codes[5])[:3]
    answers = [post_form(attacker, check.form_page, check.action, fields) for fields in wrong]
    assert [answer.status_code for answer in answers] == [check.failed_status] * 3
    assert len({_flashed(answer.get_data(as_text=True)) for answer in answers}) == 1, "one answer for any failure"
    refused = post_form(attacker, check.form_page, check.action, check.fields(DEFAULT_PASSWORD, codes[0]))
    assert refused.status_code == 429 and "Too many attempts" in refused.get_data(as_text=True), "even when right"
    if not (check.signed_in and check.two_factor):
        owner = _browser_for(app, check, OWNER, codes[3])
    succeeded = post_form(owner, check.form_page, check.action, check.fields(DEFAULT_PASSWORD, codes[1]))
    assert succeeded.status_code == check.succeeded_status, "the owner at another address is not locked out"
    audited = [entry.details for entry in audit.recent() if entry.action == check.failure_audit]
    assert sorted("refused" in details for details in audited) == [False, False, False, True]


def _flashed(page: str) -> str:
    """The error message a page flashed."""
    match = re.search(r'class="flash[^"]*error[^"]*"[^>]*>(.*?)<', page, re.S)
    assert match, "the page says what went wrong"
    return match[1].strip()


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
        # Every guess from one (proxied) address: 3 failures for the account from there, the rest
        # refused (by that address's failures, or its login limit)...
        one_attacker = [(trader.email, ATTACKER)] * ATTEMPTS
        assert concurrent_logins(web.url, one_attacker) == Counter({401: 3, 429: ATTEMPTS - 3})
        # ...while the owner at another address signs in, whichever worker answers.
        assert [live_login(web.url, trader.email, OWNER) for _ in range(4)] == [302] * 4
        # Every guess from another address: the account's own limit (6 failures) holds the rest.
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
