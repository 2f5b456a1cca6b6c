"""Login, logout, CSRF and safe redirects (limits, sessions and passwords: tests/security/)."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from models import AuditLog, User
from tests.support import DEFAULT_PASSWORD, csrf_token, login, make_user, post_form
from utils.extensions import db


def test_login_is_case_insensitive_and_lands_on_the_dashboard(client: FlaskClient) -> None:
    make_user("Trader@Example.com")
    response = login(client, "TRADER@example.COM")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "trader@example.com" in client.get("/").get_data(as_text=True)


def test_wrong_password_is_refused_with_a_message_and_audited(client: FlaskClient) -> None:
    make_user()
    response = login(client, "trader@example.com", "wrong password entirely")
    assert response.status_code == 401
    assert "Invalid email or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    assert db.session.scalar(db.select(AuditLog.action).order_by(AuditLog.id.desc())) == "auth.login_failed"


def test_unknown_email_gets_the_same_answer(client: FlaskClient) -> None:
    response = login(client, "nobody@example.com")
    assert response.status_code == 401
    assert "Invalid email or password." in response.get_data(as_text=True)


def test_inactive_users_cannot_log_in(client: FlaskClient) -> None:
    user = make_user()
    user.active = False
    db.session.commit()
    assert login(client, "trader@example.com").status_code == 401


def test_pages_require_login_and_redirect_back_after(client: FlaskClient) -> None:
    make_user()
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=/account/password")
    token = csrf_token(client, "/auth/login?next=/account/password")
    response = client.post(
        "/auth/login",
        data={
            "email": "trader@example.com",
            "password": DEFAULT_PASSWORD,
            "next": "/account/password",
            "csrf_token": token,
        },
    )
    assert response.headers["Location"] == "/account/password"


def test_open_redirects_are_refused(client: FlaskClient) -> None:
    make_user()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        client.get("/")  # fresh page load
        token = csrf_token(client, "/auth/login")
        response = client.post(
            "/auth/login",
            data={"email": "trader@example.com", "password": DEFAULT_PASSWORD, "next": target, "csrf_token": token},
        )
        assert response.headers["Location"] == "/", target
        post_form(client, "/", "/auth/logout")


def test_post_without_csrf_token_is_400_and_changes_nothing(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert "form expired" in response.get_data(as_text=True)
    assert client.get("/").status_code == 200, "still logged in: the logout did not happen"
    version = db.session.scalar(db.select(User.session_version))
    assert version == 1


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    make_user()
    response = client.post("/auth/login", data={"email": "trader@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_password_change_ends_other_sessions_but_not_this_one(app: Flask, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    other_device = app.test_client()
    login(other_device, "trader@example.com")
    response = post_form(
        client,
        "/account/password",
        "/account/password",
        {
            "current_password": DEFAULT_PASSWORD,
            "new_password": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert other_device.get("/").status_code == 302
    assert login(app.test_client(), "trader@example.com", "a brand new passphrase").status_code == 302
