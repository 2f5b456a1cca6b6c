"""Notifications: what a user must know (a stop triggered, a protection failure, a rejection).

Rows are added to the caller's transaction; the dashboard lists them.
"""

from __future__ import annotations

from typing import Any

from models import Notification, User
from utils.enums import Role
from utils.extensions import db
from utils.money import utcnow
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


def notify_admins(kind: str, message: str, *, level: str = "warning", subject: Any = None) -> list[Notification]:
    """Add the notification for every active admin and superadmin (the caller commits)."""
    statement = db.select(User.id).where(User.role.in_([Role.ADMIN, Role.SUPERADMIN]), User.active.is_(True))
    return [notify(admin_id, kind, message, level=level, subject=subject) for admin_id in db.session.scalars(statement)]


def recent(user_id: int, limit: int = 50) -> list[Notification]:
    """The user's newest notifications first."""
    statement = (
        db.select(Notification)
        .where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(statement))


def unread_count(user_id: int) -> int:
    """How many of the user's notifications are not read yet."""
    statement = db.select(db.func.count(Notification.id)).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    return db.session.scalar(statement) or 0


def mark_all_read(user_id: int) -> int:
    """Mark every unread notification of the user read (commit); how many were marked."""
    unread = db.session.scalars(
        db.select(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    ).all()
    for row in unread:
        row.read_at = utcnow()
    db.session.commit()
    return len(unread)
