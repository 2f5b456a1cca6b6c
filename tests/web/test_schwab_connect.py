"""The Schwab connect flow through the app, against the Schwab fake over real HTTP.

authorize redirect → the fake approves → our callback → tokens stored encrypted → authenticated
calls → refresh after expiry; plus tampered state, refused logins, reconnecting and upkeep.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from celery.contrib.testing.worker import start_worker
from flask import Flask
from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection
from tests.fakes.schwab import SchwabFakeState, create_schwab_fake
from tests.fakes.server import FakeServer
from tests.support import login, make_user, post_form
from utils.enums import ConnectionStatus, Provider
from utils.extensions import db
from utils.services import connections, schwab_logins
from utils.tasks.connections import keep_schwab_logins_alive
from utils.tasks.schedule import build_beat_schedule

APP_KEY, APP_SECRET = "sandbox-app-key", "sandbox-app-secret"
CALLBACK = "http://localhost/connections/schwab/callback"
ACCOUNT_NUMBER = "12345678"


@dataclass
class Schwab:
    server: FakeServer
    state: SchwabFakeState
    account_hash: str


@pytest.fixture()
def schwab() -> Iterator[Schwab]:
    app, state = create_schwab_fake(APP_KEY, APP_SECRET, redirect_uri=CALLBACK)
    account_hash = state.add_account(ACCOUNT_NUMBER, cash="5000")
    state.set_position(account_hash, "AAPL", long="10", avg="150")
    server = FakeServer(app).start()
    yield Schwab(server, state, account_hash)
    server.stop()


@pytest.fixture()
def environ(environ: dict[str, str], schwab: Schwab) -> dict[str, str]:
    return environ | {
        "SCHWAB_CLIENT_ID": APP_KEY,
        "SCHWAB_CLIENT_SECRET": APP_SECRET,
        "SCHWAB_REDIRECT_URI": CALLBACK,
        "SCHWAB_API_BASE_URL": schwab.server.base_url,
    }


def approve_at_schwab(client: FlaskClient) -> str:
    """Start the connect flow and let the fake approve it; the callback URL Schwab sends back."""
    start = client.get("/connections/schwab/connect")
    assert start.status_code == 302
    authorize = start.headers["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert (query["code_challenge_method"], query["redirect_uri"]) == (["S256"], [CALLBACK])
    approval = requests.get(authorize, allow_redirects=False, timeout=5)
    assert approval.status_code == 302
    return approval.headers["Location"]


def follow_callback(client: FlaskClient, callback_url: str) -> str:
    parts = urlsplit(callback_url)
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 302 and response.headers["Location"].endswith("/connections/")
    return client.get("/connections/").get_data(as_text=True)


def schwab_connection() -> BrokerConnection:
    return db.session.scalar(db.select(BrokerConnection).where(BrokerConnection.provider == Provider.SCHWAB))


def test_the_full_connect_flow_stores_encrypted_tokens_that_work_and_refresh(
    schwab: Schwab, client: FlaskClient
) -> None:
    make_user()
    login(client, "trader@example.com")
    page = follow_callback(client, approve_at_schwab(client))
    assert "Schwab connected" in page and "…5678" in page
    connection = schwab_connection()
    assert (connection.status, connection.account_hash, connection.account_number_last4) == (
        ConnectionStatus.CONNECTED,
        schwab.account_hash,
        "5678",
    )
    issued_access = next(iter(schwab.state.access_tokens))
    assert issued_access not in (connection.access_token_encrypted or "")
    assert schwab_logins.days_left(connection) == pytest.approx(7, abs=0.01)
    assert "login valid for 7.0 more days" in page

    broker = connections.broker_for(connection)
    assert [(p.symbol, p.quantity) for p in broker.positions(schwab.account_hash)] == [("AAPL", 10)]
    schwab.state.expire_access_tokens()
    db.session.expire_all()
    connection.access_token_expires_at = connection.access_token_expires_at - timedelta(hours=1)
    db.session.commit()
    fresh = connections.broker_for(schwab_connection())
    assert fresh.balance(schwab.account_hash).cash == 5000
    assert schwab.state.refresh_count == 1
    db.session.expire_all()
    assert schwab_connection().access_token_expires_at > connection.created_at + timedelta(minutes=20)


def test_a_callback_with_another_state_connects_nothing(schwab: Schwab, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    callback = approve_at_schwab(client)
    forged = callback.replace("state=", "state=forged")
    page = follow_callback(client, forged)
    assert "does not match a login started here" in page
    assert schwab_connection() is None
    assert schwab.state.token_grants["authorization_code"] == 0
    page = follow_callback(client, callback)  # the real answer cannot be used after a failed one either
    assert schwab_connection() is None and "does not match" in page


def test_a_refused_login_says_so(schwab: Schwab, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    approve_at_schwab(client)
    page = follow_callback(client, f"{CALLBACK}?error=access_denied&state=x")
    assert "cancelled or refused" in page and schwab_connection() is None


def test_reconnecting_updates_the_same_connection(schwab: Schwab, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    follow_callback(client, approve_at_schwab(client))
    first = schwab_connection()
    first_id, first_token = first.id, first.refresh_token_encrypted
    schwab.state.kill_refresh_tokens()
    first.access_token_expires_at = first.created_at  # force a refresh on the next call
    db.session.commit()
    post_form(client, "/connections/", f"/connections/{first_id}/test")
    db.session.expire_all()
    assert schwab_connection().status == ConnectionStatus.RECONNECT_NEEDED
    assert "The Schwab login has expired" in client.get("/").get_data(as_text=True)

    follow_callback(client, approve_at_schwab(client))
    db.session.expire_all()
    again = schwab_connection()
    assert db.session.scalar(db.select(db.func.count(BrokerConnection.id))) == 1
    assert (again.id, again.status) == (first_id, ConnectionStatus.CONNECTED)
    assert again.refresh_token_encrypted != first_token
    actions = [
        a for a in db.session.scalars(db.select(AuditLog.action).order_by(AuditLog.id)) if a.startswith("connection.")
    ]
    assert actions == ["connection.create", "connection.reconnect_needed", "connection.test", "connection.reconnect"]


def test_upkeep_refreshes_expiring_tokens_and_expires_old_logins(
    schwab: Schwab, app: Flask, client: FlaskClient
) -> None:
    make_user()
    login(client, "trader@example.com")
    follow_callback(client, approve_at_schwab(client))
    connection = schwab_connection()
    assert schwab_logins.keep_logins_alive() == schwab_logins.LoginUpkeep(refreshed=0, expired=0, failed=0)
    connection.access_token_expires_at = connection.created_at  # expiring: upkeep refreshes it
    db.session.commit()
    assert schwab_logins.keep_logins_alive().refreshed == 1 and schwab.state.refresh_count == 1
    db.session.expire_all()
    connection = schwab_connection()
    connection.refresh_token_issued_at = connection.refresh_token_issued_at - timedelta(days=7, minutes=1)
    db.session.commit()
    assert schwab_logins.keep_logins_alive().expired == 1
    db.session.expire_all()
    assert schwab_connection().status == ConnectionStatus.RECONNECT_NEEDED
    assert schwab.state.refresh_count == 1, "an expired login is not refreshed"


def test_an_expiring_login_is_announced_on_every_page(schwab: Schwab, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    follow_callback(client, approve_at_schwab(client))
    connection = schwab_connection()
    connection.refresh_token_issued_at = connection.refresh_token_issued_at - timedelta(days=6)
    db.session.commit()
    assert "the Schwab login expires in 23 hours" in client.get("/").get_data(as_text=True)


def test_without_a_schwab_app_the_page_explains_and_connect_refuses(app: Flask, client: FlaskClient) -> None:
    app.config["SCHWAB_CLIENT_ID"] = ""
    make_user()
    login(client, "trader@example.com")
    assert "Schwab is not set up on this platform" in client.get("/connections/").get_data(as_text=True)
    client.get("/connections/schwab/connect")
    assert "the superadmin must enter the Schwab app" in client.get("/connections/").get_data(as_text=True)


def test_the_upkeep_task_runs_in_a_real_worker(schwab: Schwab, app: Flask, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    follow_callback(client, approve_at_schwab(client))
    connection = schwab_connection()
    connection.access_token_expires_at = connection.created_at
    db.session.commit()
    with start_worker(app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=10):
        counts = keep_schwab_logins_alive.delay().get(timeout=20)
    assert counts == {"refreshed": 1, "expired": 0, "failed": 0} and schwab.state.refresh_count == 1


def test_upkeep_is_scheduled_well_inside_the_access_token_life(app: Flask) -> None:
    entry = build_beat_schedule(app.config)["keep-schwab-logins-alive"]
    assert entry["task"] == "connections.keep_schwab_logins_alive"
    assert entry["schedule"] == float(app.config["SCHWAB_TOKEN_UPKEEP_INTERVAL"]) <= 20 * 60


def test_concurrent_callers_in_separate_sessions_refresh_exactly_once(
    schwab: Schwab, app: Flask, client: FlaskClient
) -> None:
    make_user()
    login(client, "trader@example.com")
    follow_callback(client, approve_at_schwab(client))
    connection = schwab_connection()
    connection_id = connection.id
    connection.access_token_expires_at = connection.created_at  # every caller sees an expiring token
    db.session.commit()
    db.session.remove()
    cash: list[object] = []

    def call() -> None:
        with app.app_context():
            try:
                broker = connections.broker_for(db.session.get(BrokerConnection, connection_id))
                cash.append(broker.balance(schwab.account_hash).cash)
            except Exception as exc:  # noqa: BLE001 - reported through the list
                cash.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert cash == [5000] * 6
    assert schwab.state.refresh_count == 1
