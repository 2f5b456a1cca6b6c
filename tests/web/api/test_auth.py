"""Who may call the API: tokens (valid, revoked, expired, scoped), sessions with the CSRF rule."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from models import ApiToken, BrokerConnection, User
from tests.support import make_user
from tests.web.api.conftest import bearer, order_body, session_csrf
from utils.enums import Role
from utils.extensions import db
from utils.money import utcnow
from utils.services import api_tokens, users


def test_a_valid_token_reads_the_callers_own_data(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    response = client.get("/api/v1/connections", headers=headers)
    assert response.status_code == 200
    assert [row["id"] for row in response.json] == [paper.id]


def test_no_credentials_get_a_401_envelope_not_a_login_redirect(client: FlaskClient) -> None:
    response = client.get("/api/v1/orders")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "authentication_required"
    assert "Bearer" in response.json["error"]["message"]
    assert "request_id" in response.json


def test_an_unknown_or_malformed_token_is_refused(client: FlaskClient, trader: User) -> None:
    for header in ("Bearer arb_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "):
        response = client.get("/api/v1/orders", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json["error"]["code"] == "authentication_required"


def test_a_revoked_token_stops_working_at_once(client: FlaskClient, trader: User) -> None:
    headers = bearer(trader)
    assert client.get("/api/v1/orders", headers=headers).status_code == 200
    token = db.session.scalars(db.select(ApiToken)).one()
    api_tokens.revoke_token(trader, token.id)
    assert client.get("/api/v1/orders", headers=headers).status_code == 401


def test_an_expired_token_is_refused(client: FlaskClient, trader: User) -> None:
    headers = bearer(trader)
    token = db.session.scalars(db.select(ApiToken)).one()
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.get("/api/v1/orders", headers=headers).status_code == 401


def test_a_deactivated_users_token_is_refused(client: FlaskClient, trader: User) -> None:
    headers = bearer(trader)
    admin = make_user("root@example.com", Role.SUPERADMIN)
    users.set_active(admin, trader.id, False)
    assert client.get("/api/v1/orders", headers=headers).status_code == 401


def test_a_read_only_token_cannot_trade(client: FlaskClient, trader: User, paper: BrokerConnection) -> None:
    headers = bearer(trader, ["read"])
    response = client.post("/api/v1/orders", json=order_body(paper), headers=headers)
    assert response.status_code == 403
    assert response.json["error"]["details"] == {"required_scope": "trade"}
    assert client.get("/api/v1/orders", headers=headers).status_code == 200


def test_a_trade_only_token_cannot_read(client: FlaskClient, trader: User) -> None:
    response = client.get("/api/v1/positions", headers=bearer(trader, ["trade"]))
    assert response.status_code == 403
    assert response.json["error"]["details"] == {"required_scope": "read"}


def test_admin_resources_need_the_admin_scope_held_by_a_superadmin(client: FlaskClient, trader: User) -> None:
    root = make_user("root@example.com", Role.SUPERADMIN)
    assert client.get("/api/v1/admin/audit", headers=bearer(root, ["read", "trade"])).status_code == 403
    admin_headers = bearer(root, ["admin"])
    assert client.get("/api/v1/admin/audit", headers=admin_headers).status_code == 200
    users.change_role(make_user("other-root@example.com", Role.SUPERADMIN), root.id, Role.TRADER)
    response = client.get("/api/v1/admin/audit", headers=admin_headers)
    assert response.status_code == 403, "a demoted user's admin token loses the admin scope"


def test_admin_resources_follow_the_admin_two_factor_rule(app: Flask, client: FlaskClient) -> None:
    root = make_user("root@example.com", Role.SUPERADMIN)
    admin_headers = bearer(root, ["admin"])
    app.config["ADMIN_REQUIRE_TOTP"] = True
    response = client.get("/api/v1/admin/audit", headers=admin_headers)
    assert response.status_code == 403, "like /admin: no admin work before two-factor sign-in is on"
    assert client.get("/api/v1/orders", headers=admin_headers).status_code == 403


def test_last_use_is_recorded_at_most_once_a_minute(client: FlaskClient, trader: User) -> None:
    headers = bearer(trader)
    client.get("/api/v1/orders", headers=headers)
    token = db.session.scalars(db.select(ApiToken)).one()
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/orders", headers=headers)
    db.session.refresh(token)
    assert token.last_used_at == first
    token.last_used_at = first - timedelta(minutes=2)
    db.session.commit()
    client.get("/api/v1/orders", headers=headers)
    db.session.refresh(token)
    assert token.last_used_at > first


def test_a_browser_session_reads_without_a_token(session_client: FlaskClient, paper: BrokerConnection) -> None:
    response = session_client.get("/api/v1/connections")
    assert response.status_code == 200 and response.json[0]["id"] == paper.id


def test_a_session_write_needs_the_csrf_header(session_client: FlaskClient, paper: BrokerConnection) -> None:
    refused = session_client.post("/api/v1/orders", json=order_body(paper))
    assert refused.status_code == 400
    assert refused.json["error"]["code"] == "csrf_failed"
    accepted = session_client.post(
        "/api/v1/orders", json=order_body(paper), headers={"X-CSRFToken": session_csrf(session_client)}
    )
    assert accepted.status_code == 202, accepted.json


def test_a_token_write_needs_no_csrf_token(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    response = client.post("/api/v1/orders", json=order_body(paper), headers=headers)
    assert response.status_code == 202, response.json


def test_a_trader_session_cannot_reach_admin_resources(session_client: FlaskClient) -> None:
    response = session_client.get("/api/v1/admin/audit")
    assert response.status_code == 403
    assert response.json["error"]["details"] == {"required_scope": "admin"}
