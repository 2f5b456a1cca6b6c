"""Broker connections: create, test, reset, and the registry that builds a client for one.

Secrets are encrypted before they touch the database (utils.services.credentials) and are
never returned; a connection's status tells the rest of the platform whether it can be used.
"""

from __future__ import annotations

import json
import secrets
from decimal import Decimal

from flask import current_app, g

from models import BrokerConnection, PaperAccount, PaperOrder, PaperPosition, User
from utils.brokers import coinbase
from utils.brokers.base import Broker
from utils.brokers.paper import PaperBroker, PaperSettings
from utils.brokers.paper_prices import SyntheticPrices
from utils.brokers.schwab import SchwabClient
from utils.enums import ConnectionStatus, Provider
from utils.exceptions import ArbionError, InvalidInputError, NotFoundError, TokenExpiredError
from utils.extensions import db
from utils.money import utcnow
from utils.services import audit, broker_apps, credentials, paper_market, schwab_logins
from utils.services.paper_ledger import DatabasePaperStore
from utils.services.schwab_tokens import ConnectionTokenStore

MAX_PAPER_STARTING_CASH = Decimal("100000000")
COINBASE_QUOTE_CURRENCY = "USD"  # Coinbase orders are per API key; positions are read against the USD wallet
RECONNECT_WARNING_DAYS = 2
ATTENTION_STATUSES = frozenset(
    {ConnectionStatus.RECONNECT_NEEDED, ConnectionStatus.ERROR, ConnectionStatus.CREDENTIALS_UNREADABLE}
)


def list_connections(user: User) -> list[BrokerConnection]:
    """The user's connections, oldest first."""
    statement = db.select(BrokerConnection).where(BrokerConnection.user_id == user.id).order_by(BrokerConnection.id)
    return list(db.session.scalars(statement))


def alerts(user: User) -> list[str]:
    """What the user must know about their connections, shown on every page."""
    messages = []
    for connection in list_connections(user):
        left = schwab_logins.days_left(connection)
        if connection.status in ATTENTION_STATUSES:
            messages.append(f"{connection.label}: {connection.status_detail or connection.status.value}")
        elif left is not None and left <= RECONNECT_WARNING_DAYS:
            messages.append(f"{connection.label}: the Schwab login expires in {_duration(left)}; connect again soon.")
    return messages


def _duration(days: float) -> str:
    hours = max(0, int(days * 24))
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def get_connection(user: User, connection_id: int) -> BrokerConnection:
    """One of the user's connections; NotFoundError for anyone else's."""
    connection = db.session.get(BrokerConnection, connection_id)
    if connection is None or connection.user_id != user.id:
        raise NotFoundError("No such connection.")
    return connection


def create_paper_connection(user: User, label: str = "", starting_cash: Decimal | None = None) -> BrokerConnection:
    """Open a paper account with its own cash; commit and audit."""
    cash = _starting_cash(starting_cash)
    connection = BrokerConnection(
        user_id=user.id,
        provider=Provider.PAPER,
        label=(label.strip() or "Paper account")[:80],
        status=ConnectionStatus.CONNECTED,
    )
    db.session.add(connection)
    db.session.flush()
    account = PaperAccount(connection_id=connection.id, account_key=secrets.token_hex(8), cash=cash, starting_cash=cash)
    db.session.add(account)
    audit.record("connection.create", actor=user, subject=connection, details={"provider": "paper", "cash": str(cash)})
    db.session.commit()
    return connection


def add_coinbase_connection(user: User, key_name: str, private_key_pem: str, label: str = "") -> BrokerConnection:
    """Store a CDP API key encrypted, then check it against Coinbase once; commit and audit."""
    key_name = key_name.strip()
    if not coinbase.KEY_NAME.match(key_name):
        raise InvalidInputError(
            "The key name must look like organizations/{org_id}/apiKeys/{key_id}.", details={"field": "key_name"}
        )
    coinbase.load_signing_key(private_key_pem)
    connection = BrokerConnection(
        user_id=user.id,
        provider=Provider.COINBASE,
        label=(label.strip() or "Coinbase")[:80],
        account_number_last4=key_name[-4:],
    )
    credentials.store_secret(
        connection, "credentials_encrypted", json.dumps({"key_name": key_name, "private_key": private_key_pem.strip()})
    )
    db.session.add(connection)
    db.session.flush()
    audit.record("connection.create", actor=user, subject=connection, details={"provider": "coinbase"})
    db.session.commit()
    return _check(connection, actor=user)


def ensure_paper_connection(email: str) -> bool:
    """Give the user with this email a paper account unless they have a connection; True if created."""
    user = db.session.scalar(db.select(User).where(User.email == email))
    if user is None or list_connections(user):
        return False
    create_paper_connection(user, "Demo paper account")
    return True


def reset_paper_account(user: User, connection_id: int, starting_cash: Decimal | None = None) -> BrokerConnection:
    """Wipe a paper account's positions and orders and restore its cash; commit and audit."""
    connection = get_connection(user, connection_id)
    account = _paper_account(connection)
    cash = _starting_cash(starting_cash if starting_cash is not None else account.starting_cash)
    db.session.execute(db.delete(PaperPosition).where(PaperPosition.account_id == account.id))
    db.session.execute(db.delete(PaperOrder).where(PaperOrder.account_id == account.id))
    account.cash = account.starting_cash = cash
    account.reset_at = utcnow()
    audit.record("connection.paper_reset", actor=user, subject=connection, details={"cash": str(cash)})
    db.session.commit()
    return connection


def check_connection(user: User, connection_id: int) -> BrokerConnection:
    """Call the broker once (list accounts) and record the outcome on the user's connection."""
    return _check(get_connection(user, connection_id), actor=user)


def check_all_connections() -> list[BrokerConnection]:
    """Check every connection of every user (``flask brokers ping``), one commit each."""
    connections = list(db.session.scalars(db.select(BrokerConnection).order_by(BrokerConnection.id)))
    return [_check(connection, actor=None) for connection in connections]


def _check(connection: BrokerConnection, actor: User | None) -> BrokerConnection:
    try:
        broker_for(connection).accounts()
    except TokenExpiredError:
        schwab_logins.mark_reconnect_needed(connection)
    except ArbionError as exc:
        connection.status = ConnectionStatus.ERROR
        connection.status_detail = exc.message[:500]
    else:
        connection.status, connection.status_detail = ConnectionStatus.CONNECTED, ""
    connection.last_tested_at = utcnow()
    audit.record("connection.test", actor=actor, subject=connection, details={"status": connection.status.value})
    db.session.commit()
    return connection


def trading_account_id(connection: BrokerConnection) -> str:
    """The account id the connection's broker takes in order and position calls."""
    if connection.provider == Provider.PAPER:
        return _paper_account_key(connection)
    if connection.provider == Provider.SCHWAB and connection.account_hash:
        return connection.account_hash
    if connection.provider == Provider.COINBASE:
        return COINBASE_QUOTE_CURRENCY
    raise NotFoundError("This connection has no trading account yet; connect it again.")


def broker_for(connection: BrokerConnection) -> Broker:
    """The broker client for a connection (the one registry of providers)."""
    if connection.provider == Provider.PAPER:
        return _paper_broker(connection)
    if connection.provider == Provider.COINBASE:
        return _coinbase_broker(connection)
    if connection.provider == Provider.SCHWAB:
        return _schwab_broker(connection)
    raise InvalidInputError(f"{connection.provider.value} connections are not available.")


def _schwab_broker(connection: BrokerConnection) -> SchwabClient:
    return schwab_logins.client(ConnectionTokenStore(connection.id))


def _coinbase_broker(connection: BrokerConnection) -> coinbase.CoinbaseClient:
    key = json.loads(credentials.read_secret(connection, "credentials_encrypted") or "{}")
    return coinbase.CoinbaseClient(
        key["key_name"],
        key["private_key"],
        current_app.config["COINBASE_API_BASE_URL"],
        policy=broker_apps.http_policy(),
        budget=coinbase.shared_budget(key["key_name"]),
    )


def _paper_broker(connection: BrokerConnection) -> PaperBroker:
    config = current_app.config
    settings = PaperSettings(
        slippage_bps=config["PAPER_SLIPPAGE_BPS"],
        liquidity_per_tick=config["PAPER_LIQUIDITY_PER_TICK"],
        commission_bps=config["PAPER_COMMISSION_BPS"],
        commission_minimum=config["PAPER_COMMISSION_MINIMUM"],
    )
    prices = SyntheticPrices(config["PAPER_PRICE_SEED"], shifts=paper_market.price_shifts())
    return PaperBroker(_paper_account_key(connection), DatabasePaperStore(), prices, settings)


def _paper_account_key(connection: BrokerConnection) -> str:
    """The connection's paper account key, read once per app context (a task, a request): it never changes."""
    known: dict[int, str] = g.setdefault("paper_account_keys", {})
    if connection.id not in known:
        known[connection.id] = _paper_account(connection).account_key
    return known[connection.id]


def _paper_account(connection: BrokerConnection) -> PaperAccount:
    account = db.session.scalar(db.select(PaperAccount).where(PaperAccount.connection_id == connection.id))
    if account is None:
        raise NotFoundError("This connection has no paper account.")
    return account


def _starting_cash(amount: Decimal | None) -> Decimal:
    cash = current_app.config["PAPER_STARTING_CASH"] if amount is None else amount
    if not (Decimal(0) < cash <= MAX_PAPER_STARTING_CASH):
        raise InvalidInputError(
            f"Starting cash must be more than 0 and at most {MAX_PAPER_STARTING_CASH:,}.",
            details={"field": "starting_cash"},
        )
    return cash.quantize(Decimal("0.01"))
