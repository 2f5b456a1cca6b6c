"""SEC-02 Admin area: every /admin route and admin API operation (from the URL map) is refused to
traders; every admin action leaves an audit entry naming its actor; admin pages never show a secret."""

from __future__ import annotations

from dataclasses import dataclass

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import ApiToken, AuditLog, BrokerConnection, User
from tests.security.conftest import World
from tests.security.routes import Route, all_routes, recorded_writes, send
from tests.support import DEFAULT_PASSWORD, login, make_user
from tests.web.api.conftest import bearer, session_csrf
from utils.enums import ConnectionStatus, Provider, Role
from utils.extensions import db
from utils.services import broker_apps, credentials, two_factor, webhooks

SCHWAB_CALLBACK = "https://arbion.example.com" + broker_apps.CALLBACK_PATH
# Each admin page action, the form it is sent with, and the audit action it must leave behind.
PAGE_ACTIONS = {
    "admin.users.create": (
        {"email": "new@example.com", "role": "trader", "password": "a long passphrase"},
        "user.create",
    ),
    "admin.users.change_role": ({"role": "admin"}, "admin.user_role"),
    "admin.users.activate": ({}, "admin.user_activate"),
    "admin.users.deactivate": ({}, "admin.user_deactivate"),
    "admin.users.reset_password": ({}, "admin.user_password_reset"),
    "admin.users.delete": ({}, "admin.user_delete"),
    "admin.users.flatten": ({"flatten_reason": "risk review"}, "admin.user_flatten"),
    "admin.trading.set_global": ({"state": "halted", "reason": "drill", "confirm": "y"}, "risk.global_trading_state"),
    "admin.trading.set_user": ({"state": "halted", "reason": "drill", "confirm": "y"}, "risk.user_trading_state"),
    "admin.trading.set_limits": ({"max_open_positions": "3"}, "risk.limits_changed"),
    "admin.brokers.save_schwab": (
        {"client_id": "app-key", "client_secret": "app-secret", "redirect_uri": SCHWAB_CALLBACK},
        "broker_app.save",
    ),
}
API_ACTIONS = {"api_admin.set_risk_limits": ({"max_open_positions": 3}, "risk.limits_changed")}


@pytest.fixture()
def environ(environ: dict[str, str]) -> dict[str, str]:
    """The seeded webhook points at a local address, which only this setting allows."""
    return environ | {"WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"}


def admin_routes(app: Flask) -> list[Route]:
    """Every method of every admin page and admin API rule."""
    routes = [route for route in all_routes(app) if route.is_admin]
    assert len(routes) >= 20
    return routes


@pytest.mark.parametrize("role", [Role.TRADER, Role.ADMIN])
def test_every_admin_page_and_api_operation_is_403_for_a_non_superadmin_session(
    app: Flask, client: FlaskClient, world: World, role: Role
) -> None:
    make_user("someone@example.com", role)
    login(client, "someone@example.com")
    token = session_csrf(client)
    with recorded_writes(db.engine) as writes:
        for route in admin_routes(app):
            response = send(client, route, route.path(world.ids()), token, {"role": "superadmin"}, {})
            assert response.status_code == 403, route
    assert writes == [], "a refused admin request must not change anything"


def test_every_admin_api_operation_is_403_for_a_traders_token_even_with_a_forged_admin_scope(
    app: Flask, client: FlaskClient, world: World
) -> None:
    headers = bearer(world.other, ["read", "trade"])
    db.session.execute(db.update(ApiToken).where(ApiToken.user_id == world.other.id).values(scopes="read,trade,admin"))
    db.session.commit()
    for route in admin_routes(app):
        if route.is_api:
            response = client.open(route.path(world.ids()), method=route.method, json={}, headers=headers)
            assert response.status_code == 403, route
            assert response.json["error"]["details"]["required_scope"] == "admin"


def test_every_admin_action_leaves_an_audit_entry_naming_the_actor(
    app: Flask, client: FlaskClient, world: World
) -> None:
    unsafe = {route.endpoint: route for route in admin_routes(app) if route.unsafe}
    assert set(unsafe) == set(PAGE_ACTIONS) | set(API_ACTIONS), "a new admin action needs a line here"
    login(client, world.root.email)
    token, headers = session_csrf(client), bearer(world.root, ["admin"])
    for endpoint, (fields, action) in (PAGE_ACTIONS | API_ACTIONS).items():
        target = make_user(f"target-{endpoint}@example.com")
        route, last = unsafe[endpoint], newest_audit_id()
        if route.is_api:
            response = client.open(
                route.path({"user_id": target.id}), method=route.method, json=fields, headers=headers
            )
        else:
            response = send(client, route, route.path({"user_id": target.id}), token, fields, {})
        assert response.status_code in {200, 302}, (endpoint, response.status_code)
        entries = db.session.scalars(db.select(AuditLog).where(AuditLog.id > last, AuditLog.action == action)).all()
        assert [(entry.actor_id, entry.actor_email) for entry in entries] == [(world.root.id, world.root.email)], (
            endpoint
        )


@dataclass
class Secrets:
    """Seeded secrets in clear, and their stored (encrypted or hashed) forms."""

    clear: dict[str, str]
    stored: dict[str, str]


def seed_secrets(world: World) -> Secrets:
    """A Schwab app secret, Schwab tokens, a Coinbase key, a webhook secret, a TOTP secret, an API token."""
    seal = credentials.encryptor().encrypt
    clear = {
        "schwab app secret": "schwab-app-secret-0c1f9a",
        "access token": "schwab-access-token-77d2e1",
        "refresh token": "schwab-refresh-token-a93b04",
        "coinbase key": "-----BEGIN EC PRIVATE KEY-----coinbase-key-5e6f",
        "password": DEFAULT_PASSWORD,
    }
    broker_apps.save_schwab_app(world.root, "app-key", clear["schwab app secret"], SCHWAB_CALLBACK)
    schwab = BrokerConnection(
        user_id=world.owner.id,
        provider=Provider.SCHWAB,
        label="Schwab 1234",
        status=ConnectionStatus.CONNECTED,
        account_hash="HASH1234",
        account_number_last4="1234",
        access_token_encrypted=seal(clear["access token"]),
        refresh_token_encrypted=seal(clear["refresh token"]),
        credentials_encrypted=seal(clear["coinbase key"]),
    )
    db.session.add(schwab)
    db.session.commit()
    clear["webhook secret"] = webhooks.set_webhook(world.owner, "https://127.0.0.1/hooks/arbion")
    enrolment = two_factor.start_enrolment(world.owner)
    two_factor.enable(world.owner, enrolment.sealed, pyotp.TOTP(enrolment.secret).now())
    clear["totp secret"] = enrolment.secret
    clear["api token"] = bearer(world.owner)["Authorization"].removeprefix("Bearer ")
    owner = db.session.get(User, world.owner.id)
    stored = {
        "password hash": owner.password_hash,
        "totp secret": owner.totp_secret_encrypted,
        "webhook secret": owner.webhook_secret_encrypted,
        "access token": schwab.access_token_encrypted,
        "refresh token": schwab.refresh_token_encrypted,
        "coinbase key": schwab.credentials_encrypted,
    }
    stored |= {f"api token hash {row.id}": row.token_hash for row in db.session.scalars(db.select(ApiToken))}
    return Secrets(clear, stored)


def test_admin_pages_never_show_a_secret(app: Flask, client: FlaskClient, world: World) -> None:
    secrets = seed_secrets(world)
    login(client, world.root.email)
    pages = [route.path(world.ids()) for route in admin_routes(app) if not route.unsafe and not route.is_api]
    pages += ["/admin/system/audit?format=csv", "/api/v1/admin/audit?limit=500"]
    shown = {path: client.get(path, follow_redirects=True).get_data(as_text=True) for path in pages}
    assert world.owner.email in shown[f"/admin/users/{world.owner.id}"], "the page shows the seeded user"
    assert "app-key" in shown["/admin/brokers/"], "the page shows the seeded Schwab app"
    for path, body in shown.items():
        for name, value in (secrets.clear | secrets.stored).items():
            assert value not in body, f"{name} shown on {path}"


def newest_audit_id() -> int:
    """The id of the newest audit entry (0 when none)."""
    return db.session.scalar(db.select(db.func.max(AuditLog.id))) or 0
