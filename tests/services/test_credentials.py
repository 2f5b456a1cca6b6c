"""Stored credentials: rotation to a new key (resumable) and isolation of unreadable ones."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from models import BrokerConnection, User
from tests.support import base_environ, make_user
from utils.encryption import build_encryptor
from utils.enums import ConnectionStatus, Provider, Role
from utils.exceptions import CredentialUnavailableError
from utils.extensions import db
from utils.services import credentials


def add_connection(user: User, secret: str) -> BrokerConnection:
    connection = BrokerConnection(user_id=user.id, provider=Provider.COINBASE, status=ConnectionStatus.CONNECTED)
    credentials.store_secret(connection, "credentials_encrypted", secret)
    credentials.store_secret(connection, "refresh_token_encrypted", secret + "-refresh")
    db.session.add(connection)
    db.session.commit()
    return connection


def rotated_app(database_url: str, old_key: str) -> tuple[Flask, str]:
    new_key = Fernet.generate_key().decode()
    return create_app(base_environ(database_url, ENCRYPTION_KEY=new_key, ENCRYPTION_KEYS_OLD=old_key)), new_key


def test_secrets_are_stored_encrypted_and_read_back(app: Flask) -> None:
    connection = add_connection(make_user(), "cdp-private-key")
    assert "cdp-private-key" not in connection.credentials_encrypted
    assert credentials.read_secret(connection, "credentials_encrypted") == "cdp-private-key"


def test_rotate_command_re_encrypts_everything_and_resumes(app: Flask, database_url: str, environ: dict) -> None:
    user = make_user()
    ids = [add_connection(user, f"secret-{n}").id for n in range(6)]
    db.session.remove()
    new_app, new_key = rotated_app(database_url, environ["ENCRYPTION_KEY"])
    with new_app.app_context():
        # A previous run was killed after its first batch: those rows are already current.
        first = db.session.get(BrokerConnection, ids[0])
        first.credentials_encrypted = credentials.encryptor().rotate(first.credentials_encrypted)
        first.refresh_token_encrypted = credentials.encryptor().rotate(first.refresh_token_encrypted)
        db.session.commit()
        result = new_app.test_cli_runner().invoke(args=["crypto", "rotate", "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        assert "Re-encrypted 10 value(s); 2 already current." in result.output
        db.session.remove()
    only_new = build_encryptor({"ENCRYPTION_KEY": new_key})
    for n, connection_id in enumerate(ids):
        connection = db.session.get(BrokerConnection, connection_id)
        db.session.refresh(connection)
        assert only_new.decrypt(connection.credentials_encrypted) == f"secret-{n}"
        assert only_new.decrypt(connection.refresh_token_encrypted) == f"secret-{n}-refresh"


def test_rotation_reports_unreadable_values_and_disables_only_that_connection(
    app: Flask, database_url: str, environ: dict
) -> None:
    user = make_user()
    good = add_connection(user, "good")
    bad = add_connection(user, "bad")
    bad.credentials_encrypted = Fernet(Fernet.generate_key()).encrypt(b"lost key").decode()
    db.session.commit()
    good_id, bad_id = good.id, bad.id
    db.session.remove()
    new_app, _ = rotated_app(database_url, environ["ENCRYPTION_KEY"])
    with new_app.app_context():
        result = new_app.test_cli_runner().invoke(args=["crypto", "rotate"])
        assert result.exit_code == 1
        assert f"BrokerConnection#{bad_id}.credentials_encrypted" in result.output
        db.session.remove()
    statuses = {c.id: c.status for c in db.session.scalars(db.select(BrokerConnection))}
    assert statuses == {good_id: ConnectionStatus.CONNECTED, bad_id: ConnectionStatus.CREDENTIALS_UNREADABLE}


def test_an_unreadable_credential_disables_its_connection_not_others(app: Flask) -> None:
    owner, other = make_user("a@example.com"), make_user("b@example.com", Role.TRADER)
    broken = add_connection(owner, "x")
    healthy = add_connection(other, "y")
    broken.credentials_encrypted = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    db.session.commit()
    with pytest.raises(CredentialUnavailableError) as caught:
        credentials.read_secret(broken, "credentials_encrypted")
    assert caught.value.details == {"connection_id": broken.id}
    db.session.refresh(broken)
    assert broken.status == ConnectionStatus.CREDENTIALS_UNREADABLE
    assert "Reconnect" in broken.status_detail
    assert credentials.read_secret(healthy, "credentials_encrypted") == "y"
    assert healthy.status == ConnectionStatus.CONNECTED
