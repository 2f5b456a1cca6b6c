"""Schwab logins: connecting accounts (OAuth with state + PKCE), keeping logins alive, expiry.

The login gives one token pair for every account the user approved; each account becomes (or
refreshes) one BrokerConnection carrying its own encrypted copy of the tokens. Logging in again
(Schwab's refresh token dies after about 7 days) updates the existing connections in place, so
nothing that hangs off them is lost.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from flask import current_app

from models import BrokerConnection, Trade, User
from utils.brokers.base import BrokerAccount
from utils.brokers.schwab import (
    REFRESH_TOKEN_LIFETIME,
    OAuthTokens,
    SchwabClient,
    SchwabOAuth,
    TokenStore,
    WriteThrottle,
    make_pkce_pair,
)
from utils.enums import ConnectionStatus, Provider, TradeStatus
from utils.exceptions import ArbionError, AuthenticationError, TokenExpiredError
from utils.extensions import db, redis_client
from utils.money import utcnow
from utils.observability import get_logger
from utils.services import audit, broker_apps, notifications, system
from utils.services.schwab_tokens import ConnectionTokenStore, write_tokens
from utils.services.throttles import SharedWriteThrottle

log = get_logger(__name__)
RECONNECT_DETAIL = "The Schwab login has expired. Connect again to keep trading and protecting positions."
# Schwab's order-write limit is per app: every connection shares one window (in Redis when set).
_throttles: dict[int, WriteThrottle] = {}
SCHWAB_WRITES_KEY = "arbion:throttle:schwab-order-writes"
# Where keep_logins_alive leaves its last report for the admin status page.
UPKEEP_STATUS_KEY = "schwab_login_upkeep"


@dataclass(frozen=True)
class PendingLogin:
    """A started login: send the user to ``url``; keep ``state`` and ``verifier`` for the callback."""

    url: str
    state: str = field(repr=False)
    verifier: str = field(repr=False)


def begin_login() -> PendingLogin:
    """A fresh state and PKCE pair and the Schwab authorize URL that carries them."""
    verifier, challenge = make_pkce_pair()
    state = secrets.token_urlsafe(32)
    return PendingLogin(_oauth().authorize_url(state, challenge), state, verifier)


def complete_login(user: User, code: str, verifier: str) -> list[BrokerConnection]:
    """Exchange the callback's code, read the approved accounts, store one connection per account.

    Nothing is stored unless both the exchange and the account listing succeed.
    """
    tokens = _oauth().exchange_code(code, verifier)
    accounts = client(_JustIssued(tokens)).accounts()
    if not accounts:
        raise AuthenticationError("Schwab approved the login but shared no account. Connect again and tick one.")
    existing = {c.account_hash: c for c in _schwab_connections(user)}
    connected = [_store_account(user, existing.get(account.account_id), account, tokens) for account in accounts]
    db.session.commit()
    return connected


def days_left(connection: BrokerConnection, now: datetime | None = None) -> float | None:
    """Days until a Schwab connection's login expires (None when it has none)."""
    if connection.provider != Provider.SCHWAB or connection.refresh_token_issued_at is None:
        return None
    remaining = connection.refresh_token_issued_at + REFRESH_TOKEN_LIFETIME - (now or utcnow())
    return remaining.total_seconds() / 86400


@dataclass
class LoginUpkeep:
    """What ``keep_logins_alive`` did."""

    refreshed: int = 0
    expired: int = 0
    failed: int = 0


def keep_logins_alive() -> LoginUpkeep:
    """Refresh Schwab access tokens before they expire; mark logins past their 7 days for reconnecting.

    One connection's failure is logged and counted; it never stops the others.
    """
    report = LoginUpkeep()
    statement = db.select(BrokerConnection).where(
        BrokerConnection.provider == Provider.SCHWAB, BrokerConnection.status == ConnectionStatus.CONNECTED
    )
    for connection in list(db.session.scalars(statement.order_by(BrokerConnection.id))):
        _keep_alive(connection, report)
    system.store_status(UPKEEP_STATUS_KEY, {"ran_at": utcnow().isoformat(timespec="seconds"), **asdict(report)})
    db.session.commit()
    return report


def _keep_alive(connection: BrokerConnection, report: LoginUpkeep) -> None:
    left = days_left(connection)
    try:
        if left is None or left <= 0:
            raise TokenExpiredError(details={"connection_id": connection.id})
        if client(ConnectionTokenStore(connection.id)).refresh_if_expiring():
            report.refreshed += 1
    except TokenExpiredError:
        db.session.rollback()
        mark_reconnect_needed(connection)
        db.session.commit()
        report.expired += 1
        log.warning("connection.reconnect_needed", connection_id=connection.id, user_id=connection.user_id)
    except ArbionError as exc:
        db.session.rollback()
        report.failed += 1
        log.warning("connection.upkeep_failed", connection_id=connection.id, error=exc.code)


def mark_reconnect_needed(connection: BrokerConnection) -> None:
    """Record that the user must log in to the broker again (audited; the caller commits)."""
    if connection.status != ConnectionStatus.RECONNECT_NEEDED:
        audit.record("connection.reconnect_needed", subject=connection, details={"provider": connection.provider.value})
        message = f"{connection.label}: {RECONNECT_DETAIL}"
        notifications.notify(connection.user_id, "reconnect_needed", message, level="error", subject=connection)
        notifications.notify_admins("reconnect_needed", _admin_message(connection), level="error", subject=connection)
    connection.status, connection.status_detail = ConnectionStatus.RECONNECT_NEEDED, RECONNECT_DETAIL


def _admin_message(connection: BrokerConnection) -> str:
    """What admins are told: whose login expired and how many open positions hang off it."""
    open_trades = db.session.scalar(
        db.select(db.func.count(Trade.id)).where(
            Trade.connection_id == connection.id, Trade.status.in_([TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED])
        )
    )
    owner = db.session.get_one(User, connection.user_id)
    return (
        f"The Schwab login of {owner.email} ({connection.label}) has expired with {open_trades} open position(s): "
        "no new entries until they reconnect, and the monitor cannot price those positions."
    )


def client(store: TokenStore) -> SchwabClient:
    """A Schwab client over ``store`` with the platform's app and the process-wide write throttle."""
    app = broker_apps.schwab_app()
    per_minute = current_app.config["SCHWAB_ORDER_WRITES_PER_MINUTE"]
    return SchwabClient(
        store,
        client_id=app.client_id,
        client_secret=app.client_secret,
        redirect_uri=app.redirect_uri,
        base_url=app.base_url,
        policy=broker_apps.http_policy(),
        write_throttle=write_throttle(per_minute),
    )


def write_throttle(per_minute: int) -> Callable[[], None]:
    """Shared by every process through Redis when it is configured, else by this process's clients."""
    url = current_app.config.get("REDIS_URL") or ""
    if url:
        return SharedWriteThrottle(redis_client(url), SCHWAB_WRITES_KEY, per_minute)
    return _throttles.setdefault(per_minute, WriteThrottle(per_minute))


def _store_account(
    user: User, connection: BrokerConnection | None, account: BrokerAccount, tokens: OAuthTokens
) -> BrokerConnection:
    action = "connection.reconnect" if connection is not None else "connection.create"
    if connection is None:
        connection = BrokerConnection(
            user_id=user.id,
            provider=Provider.SCHWAB,
            label=f"Schwab {account.display_number}"[:80],
            account_hash=account.account_id,
        )
        db.session.add(connection)
    connection.account_number_last4 = account.display_number[-4:]
    write_tokens(connection, tokens)
    connection.last_tested_at = utcnow()
    db.session.flush()
    audit.record(action, actor=user, subject=connection, details={"provider": "schwab"})
    return connection


def _schwab_connections(user: User) -> list[BrokerConnection]:
    statement = db.select(BrokerConnection).where(
        BrokerConnection.user_id == user.id, BrokerConnection.provider == Provider.SCHWAB
    )
    return list(db.session.scalars(statement))


def _oauth() -> SchwabOAuth:
    app = broker_apps.schwab_app()
    return SchwabOAuth(app.client_id, app.client_secret, app.redirect_uri, app.base_url)


class _JustIssued:
    """A TokenStore over tokens that were issued a moment ago and are not stored yet."""

    def __init__(self, tokens: OAuthTokens):
        self.tokens = tokens
        self._lock = threading.Lock()

    def load(self) -> OAuthTokens:
        return self.tokens

    def save(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens

    def refresh_lock(self) -> threading.Lock:
        return self._lock
