"""Notifications: what a user must know (a stop triggered, a protection failure, a rejection).

Rows are added to the caller's transaction; the dashboard lists them.
"""

from __future__ import annotations

from typing import Any

from models import Notification
from utils.extensions import db
from utils.observability import get_logger

log = get_logger(__name__)
LEVELS = ("info", "warning", "error")


def notify(user_id: int, kind: str, message: str, *, level: str = "info", subject: Any = None) -> Notification:
    """Add a notification for one user (the caller commits); it is logged too."""
    if level not in LEVELS:
        raise ValueError(f"unknown notification level {level!r}")
    row = Notification(
        user_id=user_id,
        kind=kind,
        level=level,
        message=message[:1000],
        subject_type=type(subject).__name__ if subject is not None else "",
        subject_id=str(getattr(subject, "id", "") or ""),
    )
    db.session.add(row)
    log.info("notification", user_id=user_id, kind=kind, level=level)
    return row


def recent(user_id: int, limit: int = 50) -> list[Notification]:
    """The user's newest notifications first."""
    statement = (
        db.select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(statement))
