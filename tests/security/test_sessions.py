"""SEC-04: a login starts a new session, logout revokes it on the server, idle and absolute timeouts
end it on the server, a password change or an admin reset ends every earlier session and API token
(and tells the user), and the cookie carries HttpOnly, SameSite and (in production) Secure.

Timeouts are tested by writing old timestamps into the signed session, as time passing would.
"""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from models import Notification, User
from tests.support import DEFAULT_PASSWORD, TEST_DATABASE_URL, TEST_REDIS_URL, login, make_user, post_form
from tests.web.api.conftest import bearer
from utils.enums import Role
from utils.extensions import db
from utils.web.session_limits import SEEN_AT, SIGNED_IN_AT

MINUTE = 60


def signed_in(client: FlaskClient) -> bool:
    """True when the client's cookie opens the dashboard (a login redirect otherwise)."""
    return client.get("/").status_code == 200


def age_session(client: FlaskClient, *, idle: float = 0, age: float = 0) -> None:
    """Pretend the last request was ``idle`` seconds ago and the login ``age`` seconds ago."""
    now = int(time.time())
    with client.session_transaction() as session:
        session[SEEN_AT] = now - int(idle)
        session[SIGNED_IN_AT] = now - int(max(age, idle))


def replayed(app: Flask, cookie: str) -> FlaskClient:
    """Another client presenting a copied session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief


def test_login_issues_a_new_session_and_the_old_cookie_stays_anonymous(app: Flask, trader: User) -> None:
    client = app.test_client()
    client.get("/auth/login")
    before = client.get_cookie("session").value
    assert login(client, trader.email).status_code == 302
    assert client.get_cookie("session").value != before
    assert signed_in(client)
    assert not signed_in(replayed(app, before)), "a cookie planted before login must not become signed in"


def test_a_cookie_replayed_after_logout_is_refused_by_pages_and_the_api(app: Flask, trader: User) -> None:
    client = app.test_client()
    login(client, trader.email)
    stolen = client.get_cookie("session").value
    assert replayed(app, stolen).get("/api/v1/connections").status_code == 200
    assert post_form(client, "/", "/auth/logout").status_code == 302
    assert not signed_in(replayed(app, stolen)), "a cookie copied before logout must not work after it"
    assert replayed(app, stolen).get("/api/v1/connections").status_code == 401


def change_own_password(app: Flask, user: User) -> None:
    """The user changes their password on the page, from the session they are signed in with."""
    client = app.test_client()
    login(client, user.email)
    fields = {"current_password": DEFAULT_PASSWORD, "new_password": "a brand new passphrase", "confirm": ""}
    fields["confirm"] = fields["new_password"]
    assert post_form(client, "/account/password", "/account/password", fields).status_code == 302
    assert signed_in(client), "the session that changed the password goes on"


def reset_by_an_admin(app: Flask, user: User) -> None:
    """A superadmin resets the user's password on the admin page."""
    admin = app.test_client()
    login(admin, make_user("root@example.com", Role.SUPERADMIN).email)
    assert post_form(admin, f"/admin/users/{user.id}", f"/admin/users/{user.id}/reset-password").status_code == 200


@pytest.mark.parametrize("change", [change_own_password, reset_by_an_admin])
def test_a_password_change_or_reset_ends_earlier_sessions_and_tokens(app: Flask, trader: User, change: object) -> None:
    thief = app.test_client()
    login(thief, trader.email)
    stolen = thief.get_cookie("session").value
    tokens = [bearer(trader, ["read"]), bearer(trader, ["read", "trade"])]
    assert all(thief.get("/api/v1/orders", headers=token).status_code == 200 for token in tokens)
    change(app, trader)  # type: ignore[operator]
    assert not signed_in(replayed(app, stolen)), "a cookie from before the change must not open pages"
    assert replayed(app, stolen).get("/api/v1/connections").status_code == 401
    for token in tokens:
        assert app.test_client().get("/api/v1/orders", headers=token).status_code == 401
    [notice] = db.session.scalars(db.select(Notification).where(Notification.user_id == trader.id)).all()
    assert notice.kind == "account.password_changed" and notice.level == "warning"
    assert "2 API token(s) were revoked" in notice.message


def test_an_idle_session_ends_after_the_idle_timeout(app: Flask, trader: User) -> None:
    client = app.test_client()
    login(client, trader.email)
    age_session(client, idle=30 * MINUTE + 5)
    assert client.get("/api/v1/connections").status_code == 401
    assert not signed_in(client)
    with client.session_transaction() as session:
        assert "_user_id" not in session, "the expired session is cleared, not just refused once"


def test_activity_keeps_a_session_alive_within_the_idle_timeout(app: Flask, trader: User) -> None:
    client = app.test_client()
    login(client, trader.email)
    age_session(client, idle=29 * MINUTE, age=2 * 60 * MINUTE)
    assert signed_in(client)
    with client.session_transaction() as session:
        assert int(time.time()) - session[SEEN_AT] < MINUTE, "the request moved the idle clock"
    age_session(client, idle=29 * MINUTE, age=2 * 60 * MINUTE)
    assert signed_in(client), "58 minutes of steady use is not idleness"


def test_a_busy_session_still_ends_at_the_absolute_lifetime(app: Flask, trader: User) -> None:
    client = app.test_client()
    login(client, trader.email)
    age_session(client, idle=0, age=11 * 60 * MINUTE + 59 * MINUTE)
    assert signed_in(client)
    age_session(client, idle=0, age=12 * 60 * MINUTE + MINUTE)
    assert not signed_in(client)


def test_a_signed_in_session_without_timestamps_is_refused(app: Flask, trader: User) -> None:
    client = app.test_client()
    login(client, trader.email)
    with client.session_transaction() as session:
        del session[SIGNED_IN_AT], session[SEEN_AT]
    assert not signed_in(client)


@pytest.mark.parametrize(("setting", "value", "idle", "age"), [
    ("SESSION_IDLE_MINUTES", "5", 6 * MINUTE, 6 * MINUTE),
    ("SESSION_LIFETIME_HOURS", "1", 0, 61 * MINUTE),
])  # fmt: skip
def test_the_timeouts_follow_their_settings(
    environ: dict[str, str], request: pytest.FixtureRequest, setting: str, value: str, idle: int, age: int
) -> None:
    environ[setting] = value
    app: Flask = request.getfixturevalue("app")
    client = app.test_client()
    login(client, request.getfixturevalue("trader").email)
    age_session(client, idle=max(0, idle - 2 * MINUTE), age=age - 2 * MINUTE)
    assert signed_in(client)
    age_session(client, idle=idle, age=age)
    assert not signed_in(client)


def test_session_cookie_is_http_only_and_same_site(client: FlaskClient, trader: User) -> None:
    cookie = login(client, trader.email).headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_production_session_cookie_is_secure_http_only_and_same_site(environ: dict[str, str]) -> None:
    production = create_app(
        environ
        | {
            "ARBION_ENV": "production",
            "DATABASE_URL": TEST_DATABASE_URL or "postgresql://arbion@127.0.0.1:1/unused",
            "REDIS_URL": TEST_REDIS_URL or "redis://127.0.0.1:1/0",
        }
    )
    cookie = production.test_client().get("/auth/login").headers["Set-Cookie"]
    assert cookie.startswith("session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax"):
        assert f"; {flag}" in cookie
