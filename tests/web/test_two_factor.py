"""Two-factor pages: enrolment with a QR code, the login's second step, disabling, the admin policy."""

from __future__ import annotations

import re

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import User
from tests.support import DEFAULT_PASSWORD, login, make_user, post_form
from tests.two_factor_support import code_for, enrol_through_the_page, wrong_code
from utils.enums import Role
from utils.extensions import db
from utils.services import audit


def second_step(client: FlaskClient, code: str) -> object:
    return post_form(client, "/auth/two-factor", "/auth/two-factor", {"code": code})


def log_out(client: FlaskClient) -> None:
    post_form(client, "/account/profile", "/auth/logout")


def test_the_enrolment_page_shows_an_inline_svg_qr_code_that_obeys_the_csp(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    response = client.get("/account/two-factor")
    page = response.get_data(as_text=True)
    svg = re.search(r'<svg xmlns="http://www.w3.org/2000/svg"[^>]*id="totp-qr".*?</svg>', page, re.S)
    assert svg and "style=" not in svg[0] and "<script" not in svg[0]
    assert 'form method="post" action="/account/two-factor/enable" id="totp-enrol"' in page and 'id="code"' in page
    assert "style-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    again = client.get("/account/two-factor").get_data(as_text=True)
    assert re.findall(r'id="totp-secret">(\w+)<', again) == re.findall(r'id="totp-secret">(\w+)<', page), (
        "reloading keeps the pending secret"
    )


def test_a_wrong_code_then_the_right_one_enrols(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    page = client.get("/account/two-factor").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">(\w+)<', page)[1]  # type: ignore[index]
    refused = post_form(client, "/account/two-factor", "/account/two-factor/enable", {"code": wrong_code(secret)})
    assert refused.status_code == 422 and "not valid" in refused.get_data(as_text=True)
    assert db.session.get_one(User, trader.id).totp_secret_encrypted is None
    accepted = post_form(
        client, "/account/two-factor", "/account/two-factor/enable", {"code": pyotp.TOTP(secret).now()}
    )
    assert accepted.status_code == 200 and 'id="recovery-codes"' in accepted.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).totp_secret_encrypted is not None
    assert client.get("/account/profile").status_code == 200, "this session goes on"
    assert "Two-factor sign-in: on" in client.get("/account/two-factor").get_data(as_text=True)


def test_login_needs_the_code_and_a_replayed_code_is_refused(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    secret, _ = enrol_through_the_page(client)
    log_out(client)
    first = login(client, "trader@example.com")
    assert first.status_code == 302 and first.headers["Location"] == "/auth/two-factor"
    assert client.get("/positions/").status_code == 302, "no session before the second step"
    page = client.get("/auth/two-factor").get_data(as_text=True)
    assert 'id="two-factor-login"' in page and 'id="code"' in page
    code = code_for(secret)
    assert second_step(client, code).status_code == 302
    assert client.get("/positions/").status_code == 200
    log_out(client)
    login(client, "trader@example.com")
    replay = second_step(client, code)
    assert replay.status_code == 401 and "not valid" in replay.get_data(as_text=True)
    assert client.get("/positions/").status_code == 302


def test_a_recovery_code_logs_in_once(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    _, codes = enrol_through_the_page(client)
    log_out(client)
    login(client, "trader@example.com")
    assert second_step(client, codes[3]).status_code == 302
    log_out(client)
    login(client, "trader@example.com")
    assert second_step(client, codes[3]).status_code == 401


def test_the_second_step_is_rate_limited_per_account(app: Flask, client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    secret, _ = enrol_through_the_page(client)
    log_out(client)
    login(client, "trader@example.com")
    statuses = [second_step(client, wrong_code(secret)).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert second_step(client, code_for(secret)).status_code == 429, "even a right code waits out the limit"


def test_the_second_step_without_a_password_first_goes_back_to_login(client: FlaskClient) -> None:
    response = client.get("/auth/two-factor")
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"


def test_disabling_from_the_page_needs_password_and_code(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    secret, _ = enrol_through_the_page(client)
    page = client.get("/account/two-factor").get_data(as_text=True)
    assert 'id="totp-disable"' in page and 'Recovery codes left: <span id="recovery-codes-left">10</span>' in page
    wrong = {"password": "not my password", "code": code_for(secret)}
    assert post_form(client, "/account/two-factor", "/account/two-factor/disable", wrong).status_code == 422
    right = {"password": DEFAULT_PASSWORD, "code": code_for(secret)}
    assert post_form(client, "/account/two-factor", "/account/two-factor/disable", right).status_code == 302
    db.session.expire_all()
    assert db.session.get_one(User, trader.id).totp_secret_encrypted is None
    assert "two_factor.disable" in [entry.action for entry in audit.recent()]


def test_replacing_recovery_codes_retires_the_old_ones(client: FlaskClient, trader: User) -> None:
    login(client, "trader@example.com")
    secret, old_codes = enrol_through_the_page(client)
    action = "/account/two-factor/recovery-codes"
    wrong = {"password": "not my password", "code": code_for(secret)}
    assert post_form(client, "/account/two-factor", action, wrong).status_code == 422

    replaced = post_form(client, "/account/two-factor", action, {"password": DEFAULT_PASSWORD, "code": old_codes[0]})
    assert replaced.status_code == 200 and replaced.headers["Cache-Control"] == "no-store"
    new_codes = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", replaced.get_data(as_text=True))
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    log_out(client)
    login(client, "trader@example.com")
    assert second_step(client, old_codes[1]).status_code == 401, "the old set no longer works"
    assert second_step(client, new_codes[1]).status_code == 302
    assert "two_factor.recovery_codes_replaced" in [entry.action for entry in audit.recent()]


@pytest.fixture()
def totp_required(environ: dict[str, str]) -> dict[str, str]:
    environ["ADMIN_REQUIRE_TOTP"] = "true"
    return environ


def test_admin_require_totp_blocks_the_admin_area_until_enrolled(
    totp_required: dict[str, str], client: FlaskClient
) -> None:
    make_user("root@example.com", Role.SUPERADMIN)
    landed = login(client, "root@example.com")
    assert landed.headers["Location"] == "/account/two-factor", "sent to enrolment at login"
    for path in ("/admin/", "/admin/users/", "/admin/system/"):
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"] == "/account/two-factor", path
    enrol_through_the_page(client)
    assert client.get("/admin/users/").status_code == 200


def test_admin_require_totp_leaves_traders_alone(totp_required: dict[str, str], client: FlaskClient) -> None:
    make_user()
    landed = login(client, "trader@example.com")
    assert landed.headers["Location"] == "/"
    assert client.get("/admin/users/").status_code == 403


def test_without_the_setting_an_admin_without_two_factor_enters(client: FlaskClient) -> None:
    make_user("root@example.com", Role.SUPERADMIN)
    login(client, "root@example.com")
    assert client.get("/admin/users/").status_code == 200
