"""Personal API tokens: shown once, stored as a hash, scoped, expiring, revocable, created on the page
only after the password (and a two-factor code) are re-entered; the page and the CLI."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import ApiToken, AuditLog, User
from tests.support import DEFAULT_PASSWORD, csrf_token, login, make_user, post_form
from tests.two_factor_support import code_for, enrol_through_the_page, wrong_code
from utils.enums import Role
from utils.exceptions import InvalidInputError, NotFoundError
from utils.extensions import db
from utils.money import utcnow
from utils.services import api_tokens

TOKEN = re.compile(r"arb_[A-Za-z0-9_\-]{43}")


def create_on_the_page(client: FlaskClient, fields: dict[str, Any]) -> Any:
    """Submit the token form as a browser would, the password filled in unless ``fields`` says otherwise."""
    return post_form(client, "/account/tokens/", "/account/tokens/", {"password": DEFAULT_PASSWORD} | fields)


def token_count() -> int:
    return int(db.session.scalar(db.select(db.func.count(ApiToken.id))) or 0)


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
    response = create_on_the_page(client, {"name": "laptop", "scopes": ["read", "trade"]})
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
    no_scope = create_on_the_page(client, {"name": "x"})
    admin = create_on_the_page(client, {"name": "x", "scopes": ["admin"]})
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


def test_a_session_alone_cannot_mint_a_token(client: FlaskClient, trader: User) -> None:
    login(client, trader.email)
    for password in ("", "wrong password entirely", DEFAULT_PASSWORD.upper(), DEFAULT_PASSWORD + " "):
        refused = create_on_the_page(client, {"name": "stolen", "scopes": ["read", "trade"], "password": password})
        assert refused.status_code == 400, password
        assert refused.headers["Cache-Control"] == "no-store"
        assert not TOKEN.search(refused.get_data(as_text=True))
    assert token_count() == 0
    failures = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "api_token.create_failed")).all()
    assert len(failures) == 3 and all(row.actor_id == trader.id for row in failures), (
        "the empty one never reached the check"
    )
    assert create_on_the_page(client, {"name": "mine", "scopes": ["read"]}).status_code == 200
    assert token_count() == 1


def test_a_two_factor_user_needs_a_current_code_too(client: FlaskClient, trader: User) -> None:
    login(client, trader.email)
    secret, recovery = enrol_through_the_page(client)
    assert 'name="code"' in client.get("/account/tokens/").get_data(as_text=True)
    fields = {"name": "ci", "scopes": ["read"]}
    for code in ("", wrong_code(secret), "aaaa-bbbb-cccc-dddd"):
        assert create_on_the_page(client, fields | {"code": code}).status_code == 400, code
    wrong_password = create_on_the_page(client, fields | {"code": code_for(secret), "password": "not it at all"})
    assert wrong_password.status_code == 400 and token_count() == 0
    assert create_on_the_page(client, fields | {"code": code_for(secret)}).status_code == 200
    assert create_on_the_page(client, fields | {"code": recovery[0]}).status_code == 200
    assert token_count() == 2


def test_invalid_input_spends_no_two_factor_code(client: FlaskClient, trader: User) -> None:
    login(client, trader.email)
    secret, _ = enrol_through_the_page(client)
    code = code_for(secret)
    assert create_on_the_page(client, {"name": "", "scopes": ["read"], "code": code}).status_code == 400
    assert create_on_the_page(client, {"name": "ok", "scopes": ["read"], "code": code}).status_code == 200


def test_every_token_expires_and_its_expiry_is_shown(client: FlaskClient, trader: User) -> None:
    issued = api_tokens.create_token(trader, "cron", ["read"])
    assert issued.token.expires_at - utcnow() == pytest.approx(timedelta(days=90), abs=timedelta(minutes=1))
    with pytest.raises(InvalidInputError, match="1 to 365 days"):
        api_tokens.create_token(trader, "forever", ["read"], 3650)
    login(client, trader.email)
    page = client.get("/account/tokens/").get_data(as_text=True)
    assert f"{issued.token.expires_at:%Y-%m-%d %H:%M} UTC" in page and 'selected value="90"' in page
    shown = create_on_the_page(client, {"name": "month", "scopes": ["read"], "expires_in_days": "30"})
    expiry = db.session.scalars(db.select(ApiToken).where(ApiToken.name == "month")).one().expires_at
    assert f'id="new-token-expiry">{expiry:%Y-%m-%d %H:%M} UTC' in shown.get_data(as_text=True)
    assert create_on_the_page(client, {"name": "x", "scopes": ["read"], "expires_in_days": "3650"}).status_code == 400
    issued.token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert "expired" in client.get("/account/tokens/").get_data(as_text=True)
    assert client.get("/api/v1/orders", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 401


def test_the_lifetimes_follow_their_settings(environ: dict[str, str], request: pytest.FixtureRequest) -> None:
    environ.update(API_TOKEN_DEFAULT_DAYS="7", API_TOKEN_MAX_DAYS="30")
    client: FlaskClient = request.getfixturevalue("client")
    trader: User = request.getfixturevalue("trader")
    issued = api_tokens.create_token(trader, "week", ["read"])
    assert issued.token.expires_at - utcnow() == pytest.approx(timedelta(days=7), abs=timedelta(minutes=1))
    with pytest.raises(InvalidInputError, match="1 to 30 days"):
        api_tokens.create_token(trader, "long", ["read"], 31)
    login(client, trader.email)
    page = client.get("/account/tokens/").get_data(as_text=True)
    assert 'selected value="7"' in page and 'value="30"' in page and 'value="90"' not in page
