"""SEC-09 Key rotation: ``flask crypto rotate`` over many stored credentials.

The operator's procedure (README, env.example): a new ENCRYPTION_KEY, the old key moved to
ENCRYPTION_KEYS_OLD, then ``flask crypto rotate``. Afterwards every secret must decrypt with the
new key alone; a rotation killed midway must resume without losing or double-encrypting anything;
one unreadable credential must disable only its own connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask

from app import create_app
from models import AuditLog, BrokerConnection, User
from tests.processes import ROOT
from tests.scale import scaled
from tests.support import TEST_DATABASE_URL, base_environ, make_user
from utils.encryption import Encryptor, build_encryptor
from utils.enums import ConnectionStatus, Provider
from utils.extensions import db
from utils.services import credentials

STORED = scaled(ci=200, soak=1000)
SECRET_COLUMNS = ("credentials_encrypted", "access_token_encrypted", "refresh_token_encrypted")
BATCH = 20
GARBAGE = "gAAAAAB-this-is-not-a-fernet-token"


@pytest.fixture()
def new_key() -> str:
    """The key rotated to."""
    return Fernet.generate_key().decode()


@pytest.fixture()
def stored(app: Flask) -> dict[int, dict[str, str]]:
    """STORED connections whose secrets are encrypted with the app's (old) key, bulk-inserted;
    answers every connection's plaintexts by id."""
    owner = make_user()
    encryptor = credentials.encryptor()
    rows = [_encrypted_row(owner, n, encryptor) for n in range(STORED)]
    db.session.execute(sa.insert(BrokerConnection), rows)
    db.session.commit()
    ids = db.session.scalars(sa.select(BrokerConnection.id).order_by(BrokerConnection.id)).all()
    return {connection_id: _plaintexts(n) for n, connection_id in enumerate(ids)}


def rotation_environ(database_url: str, old_key: str, new_key: str) -> dict[str, str]:
    """The settings after step one of the procedure: new key first, the old one kept to decrypt."""
    return base_environ(database_url, ENCRYPTION_KEY=new_key, ENCRYPTION_KEYS_OLD=old_key)


def rotate(environ: dict[str, str]) -> tuple[int, str]:
    """Run ``flask crypto rotate`` with ``environ``; its exit code and output."""
    rotated_app = create_app(environ)
    with rotated_app.app_context():
        result = rotated_app.test_cli_runner().invoke(args=["crypto", "rotate", "--batch-size", str(BATCH)])
        db.session.remove()
        db.engine.dispose()
    return result.exit_code, result.output


def test_every_stored_credential_decrypts_with_the_new_key_alone_after_rotation(
    stored: dict[int, dict[str, str]], database_url: str, environ: dict[str, str], new_key: str
) -> None:
    code, output = rotate(rotation_environ(database_url, environ["ENCRYPTION_KEY"], new_key))
    assert code == 0, output
    assert f"Re-encrypted {STORED * 3} value(s); 0 already current." in output
    assert _decrypted_with(new_key) == stored


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs PostgreSQL row locks to stop the rotation mid-batch")
def test_a_rotation_killed_midway_resumes_without_losing_or_double_encrypting(
    stored: dict[int, dict[str, str]], database_url: str, environ: dict[str, str], new_key: str
) -> None:
    settings = rotation_environ(database_url, environ["ENCRYPTION_KEY"], new_key)
    ids = sorted(stored)
    done_before_kill = ids[: len(ids) // 2]  # whole batches: STORED is a multiple of 2 * BATCH
    with _row_locked(database_url, ids[len(done_before_kill)]):
        process = _start_rotation(settings)
        try:
            _wait_until(lambda: _current_ids(new_key) >= set(done_before_kill), process)
            _wait_until(lambda: _waiting_on_a_lock(database_url), process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    assert _current_ids(new_key) == set(done_before_kill), "committed batches stay; the killed one rolls back"

    code, output = rotate(settings)
    assert code == 0, output
    remaining = len(ids) - len(done_before_kill)
    assert f"Re-encrypted {remaining * 3} value(s); {len(done_before_kill) * 3} already current." in output
    assert _decrypted_with(new_key) == stored


def test_one_unreadable_credential_disables_only_its_own_connection(
    stored: dict[int, dict[str, str]], database_url: str, environ: dict[str, str], new_key: str
) -> None:
    broken_id = sorted(stored)[len(stored) // 3]
    db.session.execute(
        sa.update(BrokerConnection).where(BrokerConnection.id == broken_id).values(credentials_encrypted=GARBAGE)
    )
    db.session.commit()

    code, output = rotate(rotation_environ(database_url, environ["ENCRYPTION_KEY"], new_key))

    assert code == 1
    assert f"Re-encrypted {STORED * 3 - 1} value(s)" in output
    assert f"BrokerConnection#{broken_id}.credentials_encrypted" in output
    db.session.expire_all()
    statuses = dict(db.session.execute(sa.select(BrokerConnection.id, BrokerConnection.status)).tuples().all())
    assert {i for i, status in statuses.items() if status != ConnectionStatus.CONNECTED} == {broken_id}
    broken = db.session.get(BrokerConnection, broken_id)
    assert broken is not None and broken.status == ConnectionStatus.CREDENTIALS_UNREADABLE
    assert broken.status_detail == credentials.UNREADABLE_DETAIL
    audited = db.session.scalars(sa.select(AuditLog).where(AuditLog.action == "connection.credentials_unreadable"))
    assert [(entry.subject_id, entry.details["column"]) for entry in audited] == [
        (str(broken_id), "credentials_encrypted")
    ]
    expected = {i: texts for i, texts in stored.items() if i != broken_id}
    expected[broken_id] = {name: text for name, text in stored[broken_id].items() if name != "credentials_encrypted"}
    assert _decrypted_with(new_key, skip=GARBAGE) == expected


def _plaintexts(n: int) -> dict[str, str]:
    return {column: f"{column}-{n}-plaintext" for column in SECRET_COLUMNS}


def _encrypted_row(owner: User, n: int, encryptor: Encryptor) -> dict[str, object]:
    secrets = {column: encryptor.encrypt(text) for column, text in _plaintexts(n).items()}
    return {
        "user_id": owner.id,
        "provider": Provider.COINBASE,
        "label": f"account {n}",
        "status": ConnectionStatus.CONNECTED,
        "status_detail": "",
        **secrets,
    }


def _decrypted_with(key: str, skip: str = "") -> dict[int, dict[str, str]]:
    """Every connection's secrets decrypted with ``key`` and no other (``skip``: left out)."""
    only_new = build_encryptor({"ENCRYPTION_KEY": key})
    db.session.expire_all()
    return {
        connection.id: {
            column: only_new.decrypt(getattr(connection, column))
            for column in SECRET_COLUMNS
            if getattr(connection, column) != skip
        }
        for connection in db.session.scalars(sa.select(BrokerConnection))
    }


def _current_ids(key: str) -> set[int]:
    """Connections whose every secret is already under ``key``."""
    only_new = build_encryptor({"ENCRYPTION_KEY": key})
    db.session.expire_all()
    rows = db.session.scalars(sa.select(BrokerConnection))
    current = {row.id for row in rows if all(only_new.is_current(getattr(row, c)) for c in SECRET_COLUMNS)}
    db.session.rollback()
    return current


@contextmanager
def _row_locked(database_url: str, connection_id: int) -> Iterator[None]:
    """Hold a row lock on one connection (as a concurrent transaction would) until the block ends."""
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as locker:
            locker.execute(
                sa.text("SELECT id FROM broker_connections WHERE id = :id FOR UPDATE"), {"id": connection_id}
            )
            yield
    finally:
        engine.dispose()


def _start_rotation(settings: dict[str, str]) -> subprocess.Popen[bytes]:
    """``flask crypto rotate`` as its own process, as an operator runs it."""
    command = [sys.executable, "-m", "flask", "--app", "app", "crypto", "rotate", "--batch-size", str(BATCH)]
    return subprocess.Popen(command, cwd=ROOT, env=os.environ | settings)


def _waiting_on_a_lock(database_url: str) -> bool:
    """True when another session of this database is blocked on a lock (the rotation, on our row)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as probe:
            waiting = probe.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return bool(waiting)


def _wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the rotation ended before it could be killed"
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("the rotation never reached the point to kill it at")
