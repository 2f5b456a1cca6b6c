"""Schwab OAuth tokens kept encrypted on the BrokerConnection (implements schwab.TokenStore).

One refresher at a time across processes: ``refresh_lock`` holds a row lock on the connection
(utils.rowlock) for the whole read-refresh-save, and the rotated tokens are committed
together when the lock is released, so no process ever loses a rotated refresh token.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from models import BrokerConnection
from utils.brokers.schwab import OAuthTokens
from utils.enums import ConnectionStatus
from utils.exceptions import TokenExpiredError
from utils.extensions import db
from utils.rowlock import locked_one
from utils.services import credentials

ACCESS, REFRESH = "access_token_encrypted", "refresh_token_encrypted"


class ConnectionTokenStore:
    """Tokens of one Schwab connection, read and written through the encryption layer."""

    def __init__(self, connection_id: int):
        self.connection_id = connection_id

    def load(self) -> OAuthTokens:
        """The stored tokens, as committed by whichever process saved them last."""
        connection = self._connection(refresh=True)
        access, refresh = credentials.read_secret(connection, ACCESS), credentials.read_secret(connection, REFRESH)
        if not (access and refresh and connection.access_token_expires_at and connection.refresh_token_issued_at):
            raise TokenExpiredError(details={"connection_id": self.connection_id})
        return OAuthTokens(access, refresh, connection.access_token_expires_at, connection.refresh_token_issued_at)

    def save(self, tokens: OAuthTokens) -> None:
        """Stage rotated tokens; they are committed when the refresh lock is released."""
        connection = self._connection(refresh=False)
        write_tokens(connection, tokens)

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """Serialise refreshes of this connection across processes (row lock until commit)."""
        locked_one(BrokerConnection, BrokerConnection.id == self.connection_id)
        try:
            yield
        except BaseException:
            db.session.rollback()
            raise
        db.session.commit()

    def _connection(self, refresh: bool) -> BrokerConnection:
        statement = db.select(BrokerConnection).where(BrokerConnection.id == self.connection_id)
        if refresh:
            statement = statement.execution_options(populate_existing=True)
        connection = db.session.scalar(statement)
        if connection is None:
            raise TokenExpiredError(details={"connection_id": self.connection_id})
        return connection


def write_tokens(connection: BrokerConnection, tokens: OAuthTokens) -> None:
    """Put encrypted tokens and their times on a connection (the caller commits)."""
    credentials.store_secret(connection, ACCESS, tokens.access_token)
    credentials.store_secret(connection, REFRESH, tokens.refresh_token)
    connection.access_token_expires_at = tokens.access_expires_at
    connection.refresh_token_issued_at = tokens.refresh_issued_at
    connection.status, connection.status_detail = ConnectionStatus.CONNECTED, ""
