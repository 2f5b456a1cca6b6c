"""The audit trail: append-only records of who did what."""

from __future__ import annotations

from datetime import timedelta
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


def recent(limit: int = 200) -> list[AuditLog]:
    """The newest audit entries first."""
    return list(db.session.scalars(db.select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)))
