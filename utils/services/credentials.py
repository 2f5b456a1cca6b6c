"""Stored secrets: reading a connection's credentials safely, and re-encrypting under a new key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from models import ENCRYPTED_COLUMNS, BrokerConnection
from utils.encryption import CredentialDecryptError, Encryptor
from utils.enums import ConnectionStatus
from utils.exceptions import CredentialUnavailableError
from utils.extensions import db
from utils.observability import get_logger
from utils.services import audit

log = get_logger(__name__)
UNREADABLE_DETAIL = "Stored credentials cannot be decrypted with the configured keys. Reconnect this broker."


def encryptor() -> Encryptor:
    """The app's Encryptor (built and self-tested at startup)."""
    encryptor_: Encryptor = current_app.extensions["encryptor"]
    return encryptor_


def read_secret(connection: BrokerConnection, column: str) -> str | None:
    """Decrypt one secret of a connection; if it cannot be read, disable only this connection."""
    token = getattr(connection, column)
    if token is None:
        return None
    try:
        return encryptor().decrypt(token)
    except CredentialDecryptError as exc:
        _disable_unreadable(connection, column)
        db.session.commit()
        raise CredentialUnavailableError(details={"connection_id": connection.id}) from exc


def store_secret(connection: BrokerConnection, column: str, plaintext: str | None) -> None:
    """Encrypt and set one secret of a connection (the caller commits)."""
    setattr(connection, column, None if plaintext is None else encryptor().encrypt(plaintext))


def _disable_unreadable(connection: BrokerConnection, column: str) -> None:
    """Disable only this connection, audited and logged (the caller commits)."""
    connection.status = ConnectionStatus.CREDENTIALS_UNREADABLE
    connection.status_detail = UNREADABLE_DETAIL
    audit.record("connection.credentials_unreadable", subject=connection, details={"column": column})
    log.error("connection.credentials_unreadable", connection_id=connection.id, column=column)


@dataclass
class RotationReport:
    """What ``rotate_all`` did: values re-encrypted, already current, unreadable."""

    rotated: int = 0
    already_current: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate_all(batch_size: int = 200) -> RotationReport:
    """Re-encrypt every stored secret with the current key, committing per batch.

    Resumable: a value already under the current key is skipped, so a run killed midway can
    simply be started again. Unreadable values are reported and their connection disabled.
    """
    report = RotationReport()
    for model, columns in ENCRYPTED_COLUMNS:
        last_id = 0
        while batch := _next_batch(model, last_id, batch_size):
            for row in batch:
                _rotate_row(row, columns, report)
            db.session.commit()
            last_id = batch[-1].id
    return report


def _next_batch(model: Any, after_id: int, size: int) -> list[Any]:
    statement = db.select(model).where(model.id > after_id).order_by(model.id).limit(size)
    return list(db.session.scalars(statement))


def _rotate_row(row: Any, columns: tuple[str, ...], report: RotationReport) -> None:
    for column in columns:
        token = getattr(row, column)
        if token is None:
            continue
        if encryptor().is_current(token):
            report.already_current += 1
            continue
        try:
            setattr(row, column, encryptor().rotate(token))
            report.rotated += 1
        except CredentialDecryptError:
            report.unreadable.append(f"{type(row).__name__}#{row.id}.{column}")
            if isinstance(row, BrokerConnection):
                _disable_unreadable(row, column)
