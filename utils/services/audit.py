"""The audit trail: append-only records of who did what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from flask import current_app, has_request_context, request
from sqlalchemy.engine import CursorResult

from models import AuditLog, User
from utils.extensions import db
from utils.money import utcnow
from utils.observability import current_request_id, redact_value


def record(
    action: str,
    *,
    actor: User | None = None,
    subject: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the current transaction (the calling service commits)."""
    entry = AuditLog(
        action=action,
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else "",
        subject_type=type(subject).__name__ if subject is not None else "",
        subject_id=str(getattr(subject, "id", "") or "") if subject is not None else "",
        details=redact_value("", details or {}),
        ip_address=(request.remote_addr or "") if has_request_context() else "",
        request_id=current_request_id() or "",
    )
    db.session.add(entry)
    return entry


def purge_expired() -> int:
    """Delete audit rows older than AUDIT_RETENTION_DAYS and commit; return the count."""
    cutoff = utcnow() - timedelta(days=current_app.config["AUDIT_RETENTION_DAYS"])
    result = cast(CursorResult[Any], db.session.execute(db.delete(AuditLog).where(AuditLog.created_at < cutoff)))
    db.session.commit()
    return result.rowcount


@dataclass(frozen=True)
class AuditFilter:
    """What the audit viewer narrows by; empty fields do not filter."""

    actor: str = ""
    action: str = ""
    subject: str = ""
    since: date | None = None
    until: date | None = None


def recent(limit: int = 200, where: AuditFilter | None = None) -> list[AuditLog]:
    """The newest matching audit entries first (actor e-mail and action by prefix, subject "Type" or
    "Type 12", dates inclusive in UTC)."""
    statement = db.select(AuditLog)
    for condition in _conditions(where or AuditFilter()):
        statement = statement.where(condition)
    return list(db.session.scalars(statement.order_by(AuditLog.id.desc()).limit(limit)))


def _conditions(where: AuditFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.actor:
        conditions.append(AuditLog.actor_email.startswith(where.actor.strip().lower(), autoescape=True))
    if where.action:
        conditions.append(AuditLog.action.startswith(where.action.strip(), autoescape=True))
    if where.subject:
        kind, _, ident = where.subject.strip().partition(" ")
        conditions.append(AuditLog.subject_type == kind)
        if ident:
            conditions.append(AuditLog.subject_id == ident.strip())
    if where.since:
        conditions.append(AuditLog.created_at >= datetime.combine(where.since, time.min, tzinfo=UTC))
    if where.until:
        conditions.append(AuditLog.created_at < datetime.combine(where.until + timedelta(days=1), time.min, tzinfo=UTC))
    return conditions
