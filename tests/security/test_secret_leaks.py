"""SEC-12: seeded secrets never appear in responses, the database (audit log included) or the logs.

Known secrets are seeded (Schwab access and refresh tokens and app secret, a Coinbase CDP private
key, user passwords, an API token, a webhook secret, a TOTP secret); then logins (good and bad),
every GET page and API route, API errors and the broker error paths run, with the broker fakes
answering 401, 400 and 500 refusals that repeat the caller's credentials back. Nothing written
anywhere may contain a seeded secret, in full or as its Basic-auth encoding.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from models import AuditLog, BrokerConnection, Order, User
from tests.fakes.server import Fault, InjectedFault
from tests.processes import free_port
from tests.security.routes import all_routes
from tests.security.web_workers import LiveClient, gunicorn, needs_redis
from tests.support import login, make_user, post_form
from tests.two_factor_support import code_for, wrong_code
from tests.venues import COINBASE_KEY_NAME, EQUITY, SCHWAB_KEY, SCHWAB_SECRET, Fakes, running_fakes, schwab_connections
from utils.enums import OrderStatus, Role
from utils.exceptions import ArbionError
from utils.extensions import db
from utils.observability import REDACTED
from utils.services import api_tokens, connections, execution, two_factor, webhooks

OWNER_PASSWORD = "Tulip-passphrase-Zq81-never-shown"
ROOT_PASSWORD = "Cedar-passphrase-Kx47-never-shown"
MISSING_ID = 999_999


@dataclass
class Seeded:
    """The seeded users, connections and every secret value, by name."""

    owner: User
    root: User
    schwab: BrokerConnection
    coinbase: BrokerConnection
    api_token: str
    totp_secret: str
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """Everything the platform showed or wrote, by where it went."""

    responses: list[str] = field(default_factory=list)

    def response(self, answer: Any) -> Any:
        """Keep an answer's status line, headers and body."""
        self.responses.append(f"{answer.status} {dict(answer.headers)} {answer.get_data(as_text=True)}")
        return answer


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    """The Schwab and Coinbase fakes."""
    with running_fakes() as running:
        yield running


@pytest.fixture()
def environ(environ: dict[str, str], fakes: Fakes) -> dict[str, str]:
    """Pointed at the fakes, logging everything (DEBUG), webhooks allowed to a dead local port."""
    # No balance cache: a refusal remembered for a while would also refuse the next round's orders.
    settings = {"LOG_LEVEL": "DEBUG", "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true", "BALANCE_CACHE_SECONDS": "0"}
    return environ | fakes.environ() | settings


def seed(fakes: Fakes) -> Seeded:
    """Users with passwords, both broker connections, an API token, a webhook and a TOTP secret."""
    owner = make_user("owner@example.com", password=OWNER_PASSWORD)
    root = make_user("root@example.com", Role.SUPERADMIN, ROOT_PASSWORD)
    [schwab] = schwab_connections(owner)
    coinbase = connections.add_coinbase_connection(owner, COINBASE_KEY_NAME, fakes.coinbase_private_pem)
    token = api_tokens.create_token(owner, "script", ["read", "trade"]).plaintext
    webhook_secret = webhooks.set_webhook(owner, f"http://127.0.0.1:{free_port()}/hook")
    enrolment = two_factor.start_enrolment(root)
    two_factor.enable(root, enrolment.sealed, code_for(enrolment.secret, 0))
    seeded = Seeded(owner, root, schwab, coinbase, token, enrolment.secret)
    seeded.secrets = {
        "owner password": OWNER_PASSWORD,
        "root password": ROOT_PASSWORD,
        "Schwab app secret": SCHWAB_SECRET,
        "Schwab Basic credentials": base64.b64encode(f"{SCHWAB_KEY}:{SCHWAB_SECRET}".encode()).decode(),
        "API token": token,
        "webhook secret": webhook_secret,
        "TOTP secret": enrolment.secret,
    }
    key_lines = [line for line in fakes.coinbase_private_pem.splitlines() if len(line) > 40]
    seeded.secrets |= {f"CDP private key line {n}": line for n, line in enumerate(key_lines)}
    return seeded


def schwab_tokens(fakes: Fakes) -> dict[str, str]:
    """Every access and refresh token the Schwab fake ever issued."""
    with fakes.schwab.lock:
        issued = [*fakes.schwab.access_tokens, *fakes.schwab.refresh_tokens]
    return {f"Schwab token {n}": token for n, token in enumerate(issued)}


def answer_with_echoes(fakes: Fakes, status: int) -> None:
    """From now on every route of both fakes refuses with ``status``, repeating the credentials."""
    echo = [InjectedFault(Fault.ECHO_CREDENTIALS, {"status": status})]
    for app, plan in ((fakes.schwab_server.app, fakes.schwab.plan), (fakes.coinbase.app, fakes.coinbase.plan)):
        plan.clear()
        for route in _fake_routes(app):
            plan.storm(route, 1.0, echo, random.Random(status))


def _fake_routes(app: Flask) -> set[str]:
    return {
        f"{method} {rule.rule}" for rule in app.url_map.iter_rules() for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def stop_echoes(fakes: Fakes) -> None:
    """Back to normal answers."""
    for plan in (fakes.schwab.plan, fakes.coinbase.plan):
        plan.clear()


# ---------------------------------------------------------------------------- what the user does


def bad_logins(client: Any, seeded: Seeded, seen: Seen) -> None:
    """A wrong password, a password typed into the email field, a right password with a wrong code."""
    seen.response(login(client, seeded.owner.email, ROOT_PASSWORD))
    seen.response(login(client, OWNER_PASSWORD, OWNER_PASSWORD))
    seen.response(login(client, seeded.root.email, ROOT_PASSWORD))
    seen.response(post_form(client, "/auth/two-factor", "/auth/two-factor", {"code": wrong_code(seeded.totp_secret)}))


def every_get(app: Flask, client: Any, seen: Seen, ids: dict[str, int], headers: dict[str, str]) -> None:
    """Every GET route of the URL map, pages and API, with the seeded objects' ids."""
    for route in all_routes(app):
        if route.method == "GET" and route.endpoint != "static":
            seen.response(client.get(route.path(ids), headers=headers))


def api_calls(client: Any, seeded: Seeded, seen: Seen) -> list[int]:
    """Quotes from each broker, bad and good order bodies; returns the ids of the orders stored."""
    bearer = {"Authorization": f"Bearer {seeded.api_token}"}
    placed = []
    for connection, symbol in ((seeded.schwab, EQUITY), (seeded.coinbase, "BTC-USD")):
        seen.response(client.get(f"/api/v1/quotes?connection_id={connection.id}&symbols={symbol}", headers=bearer))
        body = {"connection_id": connection.id, "symbol": symbol, "side": "buy", "quantity": "1"}
        seen.response(client.post("/api/v1/orders", json=body | {"quantity": "-1"}, headers=bearer))
        answer = seen.response(
            client.post(
                "/api/v1/orders",
                json=body | {"order_type": "limit", "limit_price": "1.00", "stop_loss_price": "0.95"},
                headers=bearer,
            )
        )
        if answer.status_code == 202:
            placed.append(answer.json["id"])
    seen.response(client.get("/api/v1/orders/999999", headers=bearer))
    seen.response(
        client.post("/api/v1/orders", data="{not json", headers=bearer | {"Content-Type": "application/json"})
    )
    return placed


def press_test_buttons(client: Any, seeded: Seeded, seen: Seen) -> None:
    """The "test connection" button of both connections (a good answer also clears an error state)."""
    for connection in (seeded.schwab, seeded.coinbase):
        seen.response(post_form(client, "/connections/", f"/connections/{connection.id}/test"))


def broker_actions(client: Any, seeded: Seeded, seen: Seen, placed: list[int], send: bool) -> None:
    """Connection tests from the page and (in this process) order submissions, while brokers misbehave."""
    press_test_buttons(client, seeded, seen)
    for order_id in placed if send else []:
        try:
            execution.send(order_id)
        except ArbionError as exc:  # a temporary error the task would retry: its text is scanned too
            seen.responses.append(f"{exc.message} {exc.details}")


# ---------------------------------------------------------------------------- where secrets could land


def database_text() -> str:
    """Every row of every table, as text."""
    with db.engine.connect() as connection:
        rows = [
            json.dumps([table.name, *map(str, row)])
            for table in db.metadata.sorted_tables
            for row in connection.execute(sa.select(table))
        ]
    return "\n".join(rows)


def audit_text() -> str:
    """The audit log's actions and details."""
    entries = db.session.scalars(db.select(AuditLog).order_by(AuditLog.id))
    return "\n".join(f"{entry.action} {json.dumps(entry.details)}" for entry in entries)


def leaks(secrets: dict[str, str], places: dict[str, str]) -> list[str]:
    """ "<secret> in <place>" for every seeded secret found somewhere."""
    lowered = {place: text.lower() for place, text in places.items()}
    return [
        f"{name} in {place}"
        for name, value in secrets.items()
        for place, text in lowered.items()
        if value.lower() in text
    ]


def run_scenario(app: Flask, fakes: Fakes, seeded: Seeded, new_client: Callable[[], Any], send: bool) -> Seen:
    """Bad logins, a good one, everything readable; then per refusal (400, 500, 401): orders stored
    while the brokers behave, sent while they repeat credentials back, and everything read again."""
    seen, client = Seen(), new_client()
    bad_logins(new_client(), seeded, seen)
    seen.response(login(client, seeded.owner.email, OWNER_PASSWORD))
    ids = {"connection_id": seeded.schwab.id, "user_id": seeded.owner.id, "token_id": MISSING_ID}
    ids |= {"order_id": MISSING_ID, "trade_id": MISSING_ID}
    every_get(app, client, seen, ids, {})
    # 401 last: a refused refresh token ends the Schwab login, after which nothing more is placed.
    for status, connection in ((400, seeded.schwab), (500, seeded.coinbase), (401, seeded.schwab)):
        placed = api_calls(client, seeded, seen)
        assert len(placed) == 2, f"before the {status} round: {[r[-300:] for r in seen.responses[-8:]]}"
        answer_with_echoes(fakes, status)
        broker_actions(client, seeded, seen, placed, send)
        every_get(app, client, seen, ids | {"connection_id": connection.id, "order_id": max(placed)}, {})
        api_calls(client, seeded, seen)
        stop_echoes(fakes)
        press_test_buttons(client, seeded, seen)
    webhooks.deliver_pending()
    seen.response(post_form(client, "/", "/auth/logout"))
    return seen


def places_of(seen: Seen, logs: str) -> dict[str, str]:
    """Where secrets could land, by name: responses, every database row, the audit log, the logs."""
    return {
        "responses": "\n".join(seen.responses),
        "database": database_text(),
        "audit log": audit_text(),
        "logs": logs,
    }


def test_seeded_secrets_appear_in_no_response_row_or_log_line(
    app: Flask, fakes: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = seed(fakes)
    seen = run_scenario(app, fakes, seeded, app.test_client, send=True)
    output = capsys.readouterr()
    places = places_of(seen, output.err + output.out)
    assert '"event": "broker.http"' in places["logs"] and '"status": 500' in places["logs"], "error paths ran"
    assert "auth.login_failed" in places["audit log"]
    outcomes = {(order.status, REDACTED in order.status_detail) for order in db.session.scalars(db.select(Order))}
    assert {(OrderStatus.REJECTED, True), (OrderStatus.UNKNOWN, False)} <= outcomes, "the brokers' refusals landed"
    found = leaks(seeded.secrets | schwab_tokens(fakes), places)
    assert found == [], "\n".join(found)


def test_a_password_typed_into_the_email_field_is_neither_shown_nor_audited(app: Flask) -> None:
    make_user("owner@example.com", password=OWNER_PASSWORD)
    answer = login(app.test_client(), OWNER_PASSWORD, OWNER_PASSWORD)
    assert answer.status_code == 401
    assert OWNER_PASSWORD.lower() not in answer.get_data(as_text=True).lower()
    assert OWNER_PASSWORD.lower() not in audit_text().lower()
    assert "(not an email address)" in audit_text()
    answer = login(app.test_client(), "Owner@Example.com", "a wrong password here")
    assert 'value="Owner@Example.com"' in answer.get_data(as_text=True), "a real email is kept in the form"


@needs_redis
def test_a_real_web_worker_leaks_no_seeded_secret(
    app: Flask, fakes: Fakes, environ: dict[str, str], tmp_path: Path
) -> None:
    seeded = seed(fakes)
    with gunicorn(environ, tmp_path, workers=1) as web:
        seen = run_scenario(app, fakes, seeded, lambda: LiveClient(web.url), send=False)
        places = places_of(seen, web.output())
    assert '"event": "broker.http"' in places["logs"] and '"status": 500' in places["logs"], "error paths ran"
    found = leaks(seeded.secrets | schwab_tokens(fakes), places)
    assert found == [], "\n".join(found)
