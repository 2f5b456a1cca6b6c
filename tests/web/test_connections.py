"""The connections page: paper accounts opened, tested and reset by their owner only."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection, PaperAccount
from tests.fakes.coinbase import CoinbaseFake, create_coinbase_fake
from tests.fakes.server import FakeServer
from tests.support import login, make_user, post_form
from utils.enums import ConnectionStatus, Provider
from utils.extensions import db


def open_paper(client: FlaskClient, label: str = "Sandbox", cash: str = "25000") -> BrokerConnection:
    response = post_form(client, "/connections/", "/connections/paper", {"label": label, "starting_cash": cash})
    assert response.status_code == 302
    return db.session.scalar(db.select(BrokerConnection).order_by(BrokerConnection.id.desc()))


def test_a_trader_opens_a_paper_account_with_its_own_cash(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    connection = open_paper(client)
    assert (connection.provider, connection.status, connection.label) == (
        Provider.PAPER,
        ConnectionStatus.CONNECTED,
        "Sandbox",
    )
    account = db.session.scalar(db.select(PaperAccount).where(PaperAccount.connection_id == connection.id))
    assert account.cash == account.starting_cash == Decimal("25000.00")
    page = client.get("/connections/").get_data(as_text=True)
    assert "Sandbox" in page and "connected" in page
    subject = (AuditLog.subject_type == "BrokerConnection", AuditLog.subject_id == str(connection.id))
    assert db.session.scalar(db.select(AuditLog.action).where(*subject)) == "connection.create"


def test_bad_starting_cash_is_refused_with_a_message(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    post_form(client, "/connections/", "/connections/paper", {"label": "x", "starting_cash": "-5"})
    assert db.session.scalar(db.select(db.func.count(BrokerConnection.id))) == 0
    assert "Number must be at least 1" in client.get("/connections/").get_data(as_text=True)


def test_testing_a_paper_connection_records_the_time(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    connection = open_paper(client)
    response = post_form(client, "/connections/", f"/connections/{connection.id}/test")
    assert response.status_code == 302
    db.session.expire_all()
    assert connection.last_tested_at is not None
    assert connection.status == ConnectionStatus.CONNECTED


def test_reset_needs_confirmation_and_restores_cash(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    connection = open_paper(client, cash="1000")
    account = db.session.scalar(db.select(PaperAccount).where(PaperAccount.connection_id == connection.id))
    account.cash = Decimal("10.50")
    db.session.commit()
    post_form(client, "/connections/", f"/connections/{connection.id}/reset")
    db.session.expire_all()
    assert account.cash == Decimal("10.50"), "no reset without the confirmation box"
    post_form(client, "/connections/", f"/connections/{connection.id}/reset", {"confirm": "y"})
    db.session.expire_all()
    assert account.cash == Decimal("1000.00") and account.reset_at is not None


def test_another_users_connection_is_not_found(app: Flask, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    connection = open_paper(client, cash="1000")
    make_user("intruder@example.com")
    intruder = app.test_client()
    login(intruder, "intruder@example.com")
    response = post_form(intruder, "/connections/", f"/connections/{connection.id}/reset", {"confirm": "y"})
    assert response.status_code == 404
    assert "Sandbox" not in intruder.get("/connections/").get_data(as_text=True)
    assert (
        db.session.scalar(db.select(db.func.count(AuditLog.id)).where(AuditLog.action == "connection.paper_reset")) == 0
    )


def test_brokers_ping_checks_every_connection(app: Flask, client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    open_paper(client)
    result = app.test_cli_runner().invoke(args=["brokers", "ping"])
    assert result.exit_code == 0, result.output
    assert "paper" in result.output and "connected" in result.output and "1 connection(s) checked." in result.output


@pytest.fixture()
def coinbase_key() -> tuple[str, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return "organizations/org-1/apiKeys/key-7f3a", private, public


@pytest.fixture()
def coinbase_fake(environ: dict[str, str], coinbase_key: tuple[str, str, str]) -> Iterator[CoinbaseFake]:
    fake = create_coinbase_fake(coinbase_key[0], coinbase_key[2])
    fake.set_balance("USD", "1000")
    server = FakeServer(fake.app).start()
    environ["COINBASE_API_BASE_URL"] = server.base_url
    yield fake
    server.stop()


def test_a_coinbase_key_is_stored_encrypted_checked_and_never_shown(
    coinbase_fake: CoinbaseFake, coinbase_key: tuple[str, str, str], client: FlaskClient
) -> None:
    key_name, private_pem, _ = coinbase_key
    make_user()
    login(client, "trader@example.com")
    data = {"label": "My Coinbase", "key_name": key_name, "private_key": private_pem}
    response = post_form(client, "/connections/", "/connections/coinbase", data)
    assert response.status_code == 302
    connection = db.session.scalar(db.select(BrokerConnection))
    assert (connection.provider, connection.status) == (Provider.COINBASE, ConnectionStatus.CONNECTED)
    assert "PRIVATE KEY" not in connection.credentials_encrypted
    assert any(r.path.endswith("/accounts") for r in coinbase_fake.received), "the key was checked against Coinbase"
    page = client.get("/connections/").get_data(as_text=True)
    assert "My Coinbase" in page
    assert "PRIVATE KEY" not in page and private_pem.splitlines()[1] not in page


def test_a_malformed_coinbase_key_is_refused_and_nothing_is_stored(client: FlaskClient) -> None:
    make_user()
    login(client, "trader@example.com")
    data = {"key_name": "organizations/o/apiKeys/k", "private_key": "-----BEGIN EC PRIVATE KEY-----\nnope\n"}
    post_form(client, "/connections/", "/connections/coinbase", data)
    assert db.session.scalar(db.select(db.func.count(BrokerConnection.id))) == 0
    assert "not a readable" in client.get("/connections/").get_data(as_text=True)
    post_form(client, "/connections/", "/connections/coinbase", {"key_name": "my-key", "private_key": "x"})
    assert "organizations/{org_id}/apiKeys/{key_id}" in client.get("/connections/").get_data(as_text=True)
