"""Personal API tokens: shown once, stored as a hash, scoped, revocable; the page and the CLI."""

from __future__ import annotations

import hashlib
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import ApiToken, AuditLog, User
from tests.support import csrf_token, login, make_user, post_form
from utils.enums import Role
from utils.exceptions import InvalidInputError, NotFoundError
from utils.extensions import db
from utils.services import api_tokens

TOKEN = re.compile(r"arb_[A-Za-z0-9_\-]{43}")


def test_only_the_hash_and_a_short_prefix_are_stored(trader: User) -> None:
    issued = api_tokens.create_token(trader, "nightly job", ["trade", "read"])
    assert TOKEN.fullmatch(issued.plaintext)
    row = db.session.scalars(db.select(ApiToken)).one()
    assert row.token_hash == hashlib.sha256(issued.plaintext.encode()).hexdigest()
    assert row.token_prefix == issued.plaintext[:12] and row.scopes == "read,trade"
    audit = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "api_token.create")).one()
    assert issued.plaintext not in str(audit.details) and issued.plaintext[4:] not in str(row.__dict__)


def test_scopes_and_names_are_checked(trader: User) -> None:
    for name, scopes in (("ok", []), ("ok", ["read", "write"]), ("", ["read"]), ("x" * 81, ["read"])):
        with pytest.raises(InvalidInputError):
            api_tokens.create_token(trader, name, scopes)
    with pytest.raises(InvalidInputError, match="superadmins"):
        api_tokens.create_token(trader, "sneaky", ["admin"])
    root = make_user("root@example.com", Role.SUPERADMIN)
    assert api_tokens.create_token(root, "ops", ["admin"]).token.scopes == "admin"


def test_only_the_owner_can_revoke_a_token(trader: User) -> None:
    issued = api_tokens.create_token(trader, "mine", ["read"])
    with pytest.raises(NotFoundError):
        api_tokens.revoke_token(make_user("other@example.com"), issued.token.id)
    assert api_tokens.revoke_token(trader, issued.token.id).revoked_at is not None
    assert db.session.scalar(db.select(db.func.count(AuditLog.id)).where(AuditLog.action == "api_token.revoke")) == 1


def test_the_page_shows_a_new_token_once_and_never_caches_it(client: FlaskClient, trader: User) -> None:
    login(client, trader.email)
    response = post_form(
        client, "/account/tokens/", "/account/tokens/", {"name": "laptop", "scopes": ["read", "trade"]}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    shown = TOKEN.findall(response.get_data(as_text=True))
    assert len(shown) == 1
    listing = client.get("/account/tokens/").get_data(as_text=True)
    assert "laptop" in listing and "read, trade" in listing and shown[0] not in listing
    assert client.get("/api/v1/orders", headers={"Authorization": f"Bearer {shown[0]}"}).status_code == 200


def test_the_page_refuses_a_token_without_scopes_or_with_admin_for_a_trader(client: FlaskClient, trader: User) -> None:
    login(client, trader.email)
    assert 'value="admin"' not in client.get("/account/tokens/").get_data(as_text=True)
    no_scope = post_form(client, "/account/tokens/", "/account/tokens/", {"name": "x"})
    admin = post_form(client, "/account/tokens/", "/account/tokens/", {"name": "x", "scopes": ["admin"]})
    assert no_scope.status_code == admin.status_code == 400
    assert db.session.scalar(db.select(db.func.count(ApiToken.id))) == 0


def test_revoking_from_the_page_needs_the_csrf_token(client: FlaskClient, trader: User) -> None:
    issued = api_tokens.create_token(trader, "old script", ["read"])
    login(client, trader.email)
    client.post(f"/account/tokens/{issued.token.id}/revoke")
    db.session.refresh(issued.token)
    assert issued.token.revoked_at is None
    token = csrf_token(client, "/account/tokens/")
    client.post(f"/account/tokens/{issued.token.id}/revoke", data={"csrf_token": token})
    db.session.refresh(issued.token)
    assert issued.token.revoked_at is not None
    assert "revoked" in client.get("/account/tokens/").get_data(as_text=True)


def test_the_cli_prints_a_working_token_once(app: Flask, client: FlaskClient, trader: User) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tokens", "create", "--user", trader.email, "--name", "cron", "--scope", "read,trade"])
    assert result.exit_code == 0, result.output
    [plaintext] = TOKEN.findall(result.output)
    assert client.get("/api/v1/orders", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
    refused = runner.invoke(args=["tokens", "create", "--user", trader.email, "--name", "x", "--scope", "admin"])
    assert refused.exit_code == 1 and "superadmins" in refused.output
    unknown = runner.invoke(args=["tokens", "create", "--user", "nobody@example.com", "--name", "x"])
    assert unknown.exit_code == 1 and "No user" in unknown.output
