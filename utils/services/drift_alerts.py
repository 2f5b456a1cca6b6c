"""Drift alerts and reconciliation holds: what utils/services/reconcile.py found, stored and shown.

One open DriftAlert per connection, kind, symbol and broker order id (a partial unique index): a
run that still sees a drift refreshes its alert, a run that no longer sees it resolves it. A new
alert notifies the user once and is audited. A connection whose reconciliation fails is HELD
(``reconcile_hold_reason`` set): the risk engine then treats it as REDUCING, exits only, until a
run succeeds and ``record`` clears the hold. Writes happen under the connection's row lock, so
two runs at once (beat and a starting worker) cannot open the same alert twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from models import BrokerConnection, DriftAlert
from utils.enums import DriftKind
from utils.extensions import db
from utils.money import decimal_text, utcnow
from utils.rowlock import locked_one
from utils.services import audit, notifications

__all__ = ["Drift", "held_connections", "hold", "open_drift", "record"]

HOLD_PREFIX = "the last reconciliation with the broker failed: "


@dataclass(frozen=True)
class Drift:
    """One difference between our books and the broker's, as found by one run."""

    kind: DriftKind
    symbol: str
    detail: str
    broker_order_id: str = ""
    our_quantity: Decimal | None = None
    broker_quantity: Decimal | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two findings the same drift (the open-alert uniqueness rule)."""
        return (DriftKind(self.kind).value, self.symbol, self.broker_order_id)


def open_drift(user_id: int | None = None) -> list[DriftAlert]:
    """Unresolved drift alerts, newest first: one user's, or everyone's (admin page)."""
    statement = db.select(DriftAlert).where(DriftAlert.resolved_at.is_(None))
    if user_id is not None:
        statement = statement.where(DriftAlert.user_id == user_id)
    return list(db.session.scalars(statement.order_by(DriftAlert.detected_at.desc(), DriftAlert.id.desc())))


def held_connections(user_id: int | None = None) -> list[BrokerConnection]:
    """Connections held in reduce-only mode because their reconciliation fails."""
    statement = db.select(BrokerConnection).where(BrokerConnection.reconcile_hold_reason.is_not(None))
    if user_id is not None:
        statement = statement.where(BrokerConnection.user_id == user_id)
    return list(db.session.scalars(statement.order_by(BrokerConnection.id)))


def record(connection_id: int, found: list[Drift]) -> tuple[int, int]:
    """A successful run: open, refresh and resolve alerts, clear any hold (commits).

    Returns (alerts opened, alerts resolved).
    """
    db.session.commit()  # the row lock must be the first statement of its transaction (utils.rowlock)
    connection = locked_one(BrokerConnection, BrokerConnection.id == connection_id)
    if connection is None:
        db.session.rollback()
        return 0, 0
    now, opened = utcnow(), 0
    alerts = {_key(alert): alert for alert in _open_alerts(connection_id)}
    for drift in found:
        alert = alerts.pop(drift.key, None)
        if alert is None:
            _open_alert(connection, drift, now)
            opened += 1
        else:
            alert.detail, alert.detected_at = drift.detail[:500], now
            alert.our_quantity, alert.broker_quantity = drift.our_quantity, drift.broker_quantity
    for alert in alerts.values():  # no longer seen: resolved
        alert.resolved_at = now
        audit.record("reconcile.drift_resolved", subject=alert, details={"kind": DriftKind(alert.kind).value})
    _clear_hold(connection, now)
    db.session.commit()
    return opened, len(alerts)


def hold(connection_id: int, message: str) -> bool:
    """A failed run: hold the connection in reduce-only mode (audited and notified when the hold
    starts; commits). False when the connection is gone."""
    connection = locked_one(BrokerConnection, BrokerConnection.id == connection_id)
    if connection is None:
        db.session.rollback()
        return False
    reason = f"{HOLD_PREFIX}{message}"[:500]
    if connection.reconcile_hold_reason is None:
        audit.record("reconcile.hold", subject=connection, details={"reason": reason})
        notifications.notify(
            connection.user_id,
            "reconcile_hold",
            f"{connection.label}: new positions are paused (closing orders and stops still go through) "
            f"because {reason}",
            level="warning",
            subject=connection,
        )
    connection.reconcile_hold_reason = reason
    db.session.commit()
    return True


def _open_alerts(connection_id: int) -> list[DriftAlert]:
    statement = db.select(DriftAlert).where(DriftAlert.connection_id == connection_id, DriftAlert.resolved_at.is_(None))
    return list(db.session.scalars(statement.execution_options(populate_existing=True)))


def _key(alert: DriftAlert) -> tuple[str, str, str]:
    return (DriftKind(alert.kind).value, alert.symbol, alert.broker_order_id)


def _open_alert(connection: BrokerConnection, drift: Drift, now: datetime) -> DriftAlert:
    alert = DriftAlert(
        connection_id=connection.id,
        user_id=connection.user_id,
        kind=drift.kind,
        symbol=drift.symbol,
        broker_order_id=drift.broker_order_id,
        detail=drift.detail[:500],
        our_quantity=drift.our_quantity,
        broker_quantity=drift.broker_quantity,
        created_at=now,
        detected_at=now,
    )
    db.session.add(alert)
    db.session.flush()
    details = {
        "connection_id": connection.id,
        "kind": DriftKind(drift.kind).value,
        "symbol": drift.symbol,
        "broker_order_id": drift.broker_order_id,
        "our_quantity": None if drift.our_quantity is None else decimal_text(drift.our_quantity),
        "broker_quantity": None if drift.broker_quantity is None else decimal_text(drift.broker_quantity),
    }
    audit.record("reconcile.drift", subject=alert, details=details)
    message = f"{connection.label}: {drift.detail} Please check the account at the broker."
    notifications.notify(connection.user_id, "drift", message, level="warning", subject=alert)
    return alert


def _clear_hold(connection: BrokerConnection, now: datetime) -> None:
    connection.reconciled_at = now
    if connection.reconcile_hold_reason is None:
        return
    connection.reconcile_hold_reason = None
    audit.record("reconcile.hold_cleared", subject=connection)
    notifications.notify(
        connection.user_id,
        "reconcile_hold_cleared",
        f"{connection.label}: reconciliation with the broker succeeded again; new positions are allowed.",
        subject=connection,
    )
