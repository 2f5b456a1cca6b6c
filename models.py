"""ArbionTrader's database schema.

Schema and small invariants only: no broker calls, no commits, no queueing (services do those).
Money columns are ``Money`` (exact Decimal) and datetimes ``UTCDateTime`` (aware UTC). Table
names are plural because ``user`` and ``order`` are reserved words in PostgreSQL.

Sections: users & auth, broker connections, trading, risk, audit, system.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from utils.enums import (
    EXIT_PURPOSES,
    LIVE_ORDER_STATUSES,
    ConnectionStatus,
    DriftKind,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    ProtectionMode,
    Provider,
    Role,
    TimeInForce,
    TradeStatus,
    TradingState,
)
from utils.extensions import db
from utils.money import Money, UTCDateTime, utcnow

__all__ = [
    # users & auth
    "User",
    "ApiToken",
    "RecoveryCode",
    # broker connections
    "BrokerConnection",
    "BrokerApp",
    "DriftAlert",
    # trading
    "Trade",
    "Order",
    "Fill",
    "MonitorRun",
    "Notification",
    "EquitySnapshot",
    # paper broker
    "PaperAccount",
    "PaperPosition",
    "PaperOrder",
    # risk
    "RiskSettings",
    # audit
    "AuditLog",
    # system
    "SystemSetting",
    "Heartbeat",
    "ENCRYPTED_COLUMNS",
    "INTEGER_MAX",
]

# The largest value of an integer column (PostgreSQL `integer`): every id and every count.
INTEGER_MAX = 2**31 - 1


def enum_column(enum: type[StrEnum], **kwargs: Any) -> Any:
    """A VARCHAR enum column storing the member's value (new members need no migration)."""
    return mapped_column(
        sa.Enum(
            enum,
            native_enum=False,
            create_constraint=False,
            length=32,
            values_callable=lambda members: [member.value for member in members],
            validate_strings=True,
        ),
        **kwargs,
    )


def created_at_column() -> Any:
    """A creation timestamp set by the application in UTC."""
    return mapped_column(UTCDateTime(), nullable=False, default=utcnow)


def updated_at_column() -> Any:
    """A last-change timestamp maintained by the ORM."""
    return mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


# ================================================================================ users & auth


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    """A person who logs in: a trader, an admin or a superadmin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(sa.String(120), nullable=False, default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    role: Mapped[Role] = enum_column(Role, nullable=False, default=Role.TRADER)
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    # Bumped on logout, password change and deactivation: every older session stops working.
    session_version: Mapped[int] = mapped_column(nullable=False, default=1)
    totp_secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    # The last TOTP time step accepted: a code is good once, never for a step at or before it.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Where notifications are also POSTed, signed with the secret (shown to the user once).
    webhook_url: Mapped[str | None] = mapped_column(sa.String(500))
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    webhook_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    connections: Mapped[list[BrokerConnection]] = relationship(back_populates="user")
    risk_settings: Mapped[RiskSettings | None] = relationship(back_populates="user", uselist=False)

    @property
    def is_active(self) -> bool:
        """Flask-Login refuses inactive users."""
        return self.active

    def get_id(self) -> str:
        """Session identity: id and session version, so bumping the version revokes sessions."""
        return f"{self.id}:{self.session_version}"

    @property
    def is_admin(self) -> bool:
        """Admins and superadmins."""
        return self.role in (Role.ADMIN, Role.SUPERADMIN)

    @property
    def is_superadmin(self) -> bool:
        """Only superadmins enter /admin."""
        return self.role == Role.SUPERADMIN

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A personal API token; only its SHA-256 hash is stored, the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(sa.String(80), nullable=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    token_prefix: Mapped[str] = mapped_column(sa.String(12), nullable=False)
    scopes: Mapped[str] = mapped_column(sa.String(200), nullable=False, default="read")
    created_at: Mapped[datetime] = created_at_column()
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RecoveryCode(db.Model):  # type: ignore[name-defined]
    """A one-time two-factor recovery code; only its SHA-256 hash is stored, the code is shown once."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ================================================================================ broker connections


class BrokerConnection(db.Model):  # type: ignore[name-defined]
    """One user's link to one broker account; every secret in it is encrypted."""

    __tablename__ = "broker_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    provider: Mapped[Provider] = enum_column(Provider, nullable=False)
    label: Mapped[str] = mapped_column(sa.String(80), nullable=False, default="")
    status: Mapped[ConnectionStatus] = enum_column(ConnectionStatus, nullable=False, default=ConnectionStatus.PENDING)
    status_detail: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    # Schwab: account calls take the hash; only the last four digits are ever shown.
    account_hash: Mapped[str | None] = mapped_column(sa.String(128))
    account_number_last4: Mapped[str | None] = mapped_column(sa.String(4))
    credentials_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    access_token_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refresh_token_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_tested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Reconciliation: when it last succeeded, and why entries are held (exits only) while it fails.
    reconciled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reconcile_hold_reason: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    user: Mapped[User] = relationship(back_populates="connections")

    def __repr__(self) -> str:
        return f"<BrokerConnection {self.id} {self.provider} {self.status}>"


class BrokerApp(db.Model):  # type: ignore[name-defined]
    """A broker app registration set by the superadmin (Schwab: app key, secret and callback URL).

    Used when the environment does not configure the app; the secret is encrypted at rest.
    """

    __tablename__ = "broker_apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[Provider] = enum_column(Provider, nullable=False, unique=True)
    client_id: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    client_secret_encrypted: Mapped[str | None] = mapped_column(sa.Text)
    redirect_uri: Mapped[str] = mapped_column(sa.String(500), nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))


OPEN_DRIFT = sa.text("resolved_at IS NULL")


class DriftAlert(db.Model):  # type: ignore[name-defined]
    """A difference between our books and a broker's (an order or position the platform did not
    make, one it made that the broker lost, a quantity mismatch). Open until a reconciliation no
    longer finds it; one open alert per connection, kind, symbol and broker order id."""

    __tablename__ = "drift_alerts"
    __table_args__ = (
        sa.Index(
            "uq_drift_alerts_open",
            "connection_id",
            "kind",
            "symbol",
            "broker_order_id",
            unique=True,
            postgresql_where=OPEN_DRIFT,
            sqlite_where=OPEN_DRIFT,
        ),
        sa.Index("ix_drift_alerts_user_resolved", "user_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("broker_connections.id", ondelete="CASCADE"), nullable=False, index=True
    )
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[DriftKind] = enum_column(DriftKind, nullable=False)
    symbol: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="")
    # "" when the drift is not about one broker order (a position mismatch).
    broker_order_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    detail: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    our_quantity: Mapped[Decimal | None] = mapped_column(Money())
    broker_quantity: Mapped[Decimal | None] = mapped_column(Money())
    created_at: Mapped[datetime] = created_at_column()
    # Last seen by a reconciliation (first seen: created_at).
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ================================================================================ trading


def _sql_values(members: frozenset[StrEnum]) -> str:
    return ", ".join(f"'{member.value}'" for member in sorted(members))


ACTIVE_EXIT = sa.text(f"purpose IN ({_sql_values(EXIT_PURPOSES)}) AND status IN ({_sql_values(LIVE_ORDER_STATUSES)})")
LIVE_ORDER = sa.text(f"status IN ({_sql_values(LIVE_ORDER_STATUSES)})")
WATCHED_TRADE = sa.text(f"status IN ({_sql_values(frozenset({TradeStatus.OPEN, TradeStatus.PARTIALLY_FILLED}))})")


class Trade(db.Model):  # type: ignore[name-defined]
    """One entry and its exits, with the original system's tracking fields."""

    __tablename__ = "trades"
    __table_args__ = (
        sa.Index("ix_trades_user_status", "user_id", "status"),
        sa.Index("ix_trades_user_id_id", "user_id", "id"),  # a user's history, newest first, paged
        # The monitor's and the watchdog's scans: the open trades only, however long the history grows.
        sa.Index(
            "ix_trades_watched_connection",
            "connection_id",
            postgresql_where=WATCHED_TRADE,
            sqlite_where=WATCHED_TRADE,
        ),
        sa.CheckConstraint("trailing_stop_offset IS NULL OR trailing_stop_percent IS NULL", name="one_trail_unit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("broker_connections.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    symbol: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    side: Mapped[OrderSide] = enum_column(OrderSide, nullable=False)
    trade_type: Mapped[OrderType] = enum_column(OrderType, nullable=False)
    status: Mapped[TradeStatus] = enum_column(TradeStatus, nullable=False, default=TradeStatus.PENDING)
    quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    price: Mapped[Decimal | None] = mapped_column(Money())
    # Broker tracking (the original system's names).
    order_id: Mapped[str | None] = mapped_column(sa.String(64))
    account_hash: Mapped[str | None] = mapped_column(sa.String(128))
    filled_quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    average_fill_price: Mapped[Decimal | None] = mapped_column(Money())
    remaining_quantity: Mapped[Decimal | None] = mapped_column(Money())
    # Protection.
    protection_mode: Mapped[ProtectionMode] = enum_column(ProtectionMode, nullable=False, default=ProtectionMode.NONE)
    stop_loss_price: Mapped[Decimal | None] = mapped_column(Money())
    stop_loss_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    take_profit_price: Mapped[Decimal | None] = mapped_column(Money())
    take_profit_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    # A trailing stop trails by an amount (price units) or by a percent of the anchor, never both.
    trailing_stop_offset: Mapped[Decimal | None] = mapped_column(Money())
    trailing_stop_percent: Mapped[Decimal | None] = mapped_column(Money())
    # The best price seen since entry (highest bid for a long, lowest ask for a short): the
    # trailing stop sits its offset (or percent) behind it and only ever moves in the trade's favour.
    trail_anchor: Mapped[Decimal | None] = mapped_column(Money())
    protection_detail: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    # When the monitor first saw the stop, take-profit or trailing stop crossed.
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Exits, derived from the fills of the trade's exit orders: open quantity = filled - exited.
    exit_filled_quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    exit_average_price: Mapped[Decimal | None] = mapped_column(Money())
    # Results, derived from fills.
    close_price: Mapped[Decimal | None] = mapped_column(Money())
    fees: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money())
    notes: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    orders: Mapped[list[Order]] = relationship(back_populates="trade")


class Order(db.Model):  # type: ignore[name-defined]
    """One order sent (or about to be sent) to a broker; the intent is stored before sending."""

    __tablename__ = "orders"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
        sa.Index("ix_orders_connection_status", "connection_id", "status"),
        sa.Index("ix_orders_user_id_id", "user_id", "id"),  # a user's history, newest first, paged
        sa.Index("ix_orders_live_user", "user_id", postgresql_where=LIVE_ORDER, sqlite_where=LIVE_ORDER),
        sa.CheckConstraint("trail_offset IS NULL OR trail_percent IS NULL", name="one_trail_unit"),
        # At most one live exit per trade: the database itself refuses a second close, whoever asks.
        sa.Index(
            "uq_orders_one_active_exit",
            "trade_id",
            unique=True,
            postgresql_where=ACTIVE_EXIT,
            sqlite_where=ACTIVE_EXIT,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("broker_connections.id", ondelete="RESTRICT"), nullable=False
    )
    trade_id: Mapped[int | None] = mapped_column(sa.ForeignKey("trades.id", ondelete="SET NULL"), index=True)
    replaces_order_id: Mapped[int | None] = mapped_column(sa.ForeignKey("orders.id", ondelete="SET NULL"))
    client_order_id: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128))
    broker_order_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    purpose: Mapped[OrderPurpose] = enum_column(OrderPurpose, nullable=False, default=OrderPurpose.ENTRY)
    symbol: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    side: Mapped[OrderSide] = enum_column(OrderSide, nullable=False)
    order_type: Mapped[OrderType] = enum_column(OrderType, nullable=False)
    time_in_force: Mapped[TimeInForce] = enum_column(TimeInForce, nullable=False, default=TimeInForce.DAY)
    status: Mapped[OrderStatus] = enum_column(OrderStatus, nullable=False, default=OrderStatus.PENDING_SUBMIT)
    quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    limit_price: Mapped[Decimal | None] = mapped_column(Money())
    stop_price: Mapped[Decimal | None] = mapped_column(Money())
    trail_offset: Mapped[Decimal | None] = mapped_column(Money())
    trail_percent: Mapped[Decimal | None] = mapped_column(Money())
    filled_quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    average_fill_price: Mapped[Decimal | None] = mapped_column(Money())
    remaining_quantity: Mapped[Decimal | None] = mapped_column(Money())
    fees: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    status_detail: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    trade: Mapped[Trade | None] = relationship(back_populates="orders")
    fills: Mapped[list[Fill]] = relationship(back_populates="order", order_by="Fill.filled_at")


class Fill(db.Model):  # type: ignore[name-defined]
    """One execution reported by the broker; recorded once even if reported twice."""

    __tablename__ = "fills"
    __table_args__ = (sa.UniqueConstraint("order_id", "broker_fill_id", name="uq_fills_order_id_broker_fill_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False)
    broker_fill_id: Mapped[str] = mapped_column(sa.String(128), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    price: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    commission: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    filled_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = created_at_column()

    order: Mapped[Order] = relationship(back_populates="fills")


class MonitorRun(db.Model):  # type: ignore[name-defined]
    """One stop-loss monitor pass over a set of connections (a cycle may fan out into several).

    The row is written when the pass starts and is its claim: one pass per (cycle_key, part), so a
    schedule slot (the cycle key) sent twice runs once. ``part`` numbers the chunks of a fanned-out cycle.
    """

    __tablename__ = "monitor_runs"
    __table_args__ = (sa.UniqueConstraint("cycle_key", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_key: Mapped[str] = mapped_column(sa.String(40), nullable=False, index=True)
    part: Mapped[int] = mapped_column(nullable=False, default=0, server_default="0")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    duration_ms: Mapped[int] = mapped_column(nullable=False, default=0)
    positions: Mapped[int] = mapped_column(nullable=False, default=0)
    breaches: Mapped[int] = mapped_column(nullable=False, default=0)
    closes: Mapped[int] = mapped_column(nullable=False, default=0)
    stale_quotes: Mapped[int] = mapped_column(nullable=False, default=0)
    errors: Mapped[int] = mapped_column(nullable=False, default=0)
    quote_calls: Mapped[int] = mapped_column(nullable=False, default=0)
    detail: Mapped[str] = mapped_column(sa.String(1000), nullable=False, default="")


class Notification(db.Model):  # type: ignore[name-defined]
    """Something a user must know: a stop triggered, a protection failure, a rejection, a reconnect."""

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    level: Mapped[str] = mapped_column(sa.String(10), nullable=False, default="info")
    message: Mapped[str] = mapped_column(sa.String(1000), nullable=False)
    subject_type: Mapped[str] = mapped_column(sa.String(40), nullable=False, default="")
    subject_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    created_at: Mapped[datetime] = created_at_column()
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    webhook_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    webhook_attempts: Mapped[int] = mapped_column(nullable=False, default=0)


class EquitySnapshot(db.Model):  # type: ignore[name-defined]
    """A connection's balance as its broker reported it at one moment: the equity curve's points.

    Written by a periodic task (EQUITY_SNAPSHOT_INTERVAL); one run shares one ``taken_at``; rows
    older than EQUITY_SNAPSHOT_RETENTION_DAYS are deleted.
    """

    __tablename__ = "equity_snapshots"
    __table_args__ = (sa.Index("ix_equity_snapshots_user_taken", "user_id", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("broker_connections.id", ondelete="CASCADE"), nullable=False, index=True
    )
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    currency: Mapped[str] = mapped_column(sa.String(8), nullable=False)
    cash: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    buying_power: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    equity: Mapped[Decimal] = mapped_column(Money(), nullable=False)


# ================================================================================ paper broker


class PaperAccount(db.Model):  # type: ignore[name-defined]
    """The paper broker's account behind one paper connection: our own sandbox ledger."""

    __tablename__ = "paper_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        sa.ForeignKey("broker_connections.id", ondelete="CASCADE"), unique=True, nullable=False
    )
    account_key: Mapped[str] = mapped_column(sa.String(32), unique=True, nullable=False)
    cash: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    starting_cash: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()


class PaperPosition(db.Model):  # type: ignore[name-defined]
    """A holding in a paper account."""

    __tablename__ = "paper_positions"
    __table_args__ = (sa.UniqueConstraint("account_id", "symbol", name="uq_paper_positions_account_id_symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("paper_accounts.id", ondelete="CASCADE"), nullable=False)
    symbol: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    average_price: Mapped[Decimal] = mapped_column(Money(), nullable=False)


class PaperOrder(db.Model):  # type: ignore[name-defined]
    """An order at the paper broker, with its fills (a JSON list) and matching state."""

    __tablename__ = "paper_orders"
    __table_args__ = (
        sa.UniqueConstraint("account_id", "client_order_id", name="uq_paper_orders_account_id_client_order_id"),
        sa.Index("ix_paper_orders_account_status", "account_id", "status"),
        sa.Index("ix_paper_orders_account_created", "account_id", "created_at"),
        sa.CheckConstraint("trail_offset IS NULL OR trail_percent IS NULL", name="one_trail_unit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("paper_accounts.id", ondelete="CASCADE"), nullable=False)
    order_key: Mapped[str] = mapped_column(sa.String(64), unique=True, nullable=False)
    client_order_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    replaces_order_key: Mapped[str | None] = mapped_column(sa.String(64))
    symbol: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    side: Mapped[OrderSide] = enum_column(OrderSide, nullable=False)
    order_type: Mapped[OrderType] = enum_column(OrderType, nullable=False)
    time_in_force: Mapped[TimeInForce] = enum_column(TimeInForce, nullable=False)
    status: Mapped[OrderStatus] = enum_column(OrderStatus, nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False)
    limit_price: Mapped[Decimal | None] = mapped_column(Money())
    stop_price: Mapped[Decimal | None] = mapped_column(Money())
    trail_offset: Mapped[Decimal | None] = mapped_column(Money())
    trail_percent: Mapped[Decimal | None] = mapped_column(Money())
    trail_anchor: Mapped[Decimal | None] = mapped_column(Money())
    triggered: Mapped[bool] = mapped_column(nullable=False, default=False)
    filled_quantity: Mapped[Decimal] = mapped_column(Money(), nullable=False, default=Decimal(0))
    # [{"fill_id", "quantity", "price", "commission", "time"}] with decimals and times as strings.
    fills: Mapped[list[dict[str, str]]] = mapped_column(sa.JSON, nullable=False, default=list)
    status_detail: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()


# ================================================================================ risk


class RiskSettings(db.Model):  # type: ignore[name-defined]
    """Per-user risk limits set by an admin; a NULL limit means "use the configured default"."""

    __tablename__ = "risk_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True, nullable=False)
    trading_state: Mapped[TradingState] = enum_column(TradingState, nullable=False, default=TradingState.ACTIVE)
    trading_state_reason: Mapped[str] = mapped_column(sa.String(500), nullable=False, default="")
    max_order_notional: Mapped[Decimal | None] = mapped_column(Money())
    max_position_notional: Mapped[Decimal | None] = mapped_column(Money())
    max_total_exposure: Mapped[Decimal | None] = mapped_column(Money())
    max_open_positions: Mapped[int | None] = mapped_column()
    max_orders_per_day: Mapped[int | None] = mapped_column()
    max_daily_loss: Mapped[Decimal | None] = mapped_column(Money())
    symbol_allowlist: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    symbol_denylist: Mapped[str] = mapped_column(sa.Text, nullable=False, default="")
    equities_market_hours_only: Mapped[bool | None] = mapped_column()
    max_quote_age_seconds: Mapped[int | None] = mapped_column()
    require_stop_loss: Mapped[bool | None] = mapped_column()
    max_stop_distance_pct: Mapped[Decimal | None] = mapped_column(Money())
    updated_at: Mapped[datetime] = updated_at_column()

    user: Mapped[User] = relationship(back_populates="risk_settings")


# ================================================================================ audit


class AuditLog(db.Model):  # type: ignore[name-defined]
    """Append-only record of who did what; rows are never updated (retention deletes old ones)."""

    __tablename__ = "audit_logs"
    __table_args__ = (sa.Index("ix_audit_logs_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    actor_email: Mapped[str] = mapped_column(sa.String(254), nullable=False, default="")
    action: Mapped[str] = mapped_column(sa.String(80), nullable=False, index=True)
    subject_type: Mapped[str] = mapped_column(sa.String(40), nullable=False, default="")
    subject_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, nullable=False, default=dict)
    ip_address: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")
    request_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="")


@sa.event.listens_for(AuditLog, "before_update")
def _refuse_audit_update(mapper: Any, connection: Any, target: AuditLog) -> None:
    raise ValueError("audit log rows are append-only")


# ================================================================================ system


class SystemSetting(db.Model):  # type: ignore[name-defined]
    """Platform-wide settings changed at run time (e.g. the global kill switch)."""

    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(sa.JSON, nullable=False)
    updated_at: Mapped[datetime] = updated_at_column()
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))


class Heartbeat(db.Model):  # type: ignore[name-defined]
    """Last sign of life of a background component ("beat", "worker"), read by /ready and admins."""

    __tablename__ = "heartbeats"

    component: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    hostname: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    beats: Mapped[int] = mapped_column(sa.BigInteger, nullable=False, default=0)
    # When admins were told this component fell silent (once per silence: until seen_at passes it).
    alerted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Every column holding ciphertext: ``flask crypto rotate`` re-encrypts exactly these.
ENCRYPTED_COLUMNS: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
    (BrokerConnection, ("credentials_encrypted", "access_token_encrypted", "refresh_token_encrypted")),
    (User, ("totp_secret_encrypted", "webhook_secret_encrypted")),
    (BrokerApp, ("client_secret_encrypted",)),
)
