"""Watching the scheduler from the workers: when beat falls silent, the admins are told once.

Beat records its own heartbeat (utils.celery_app.HeartbeatScheduler) and /ready reports it stale
after HEARTBEAT_MAX_AGE; but nobody reads /ready at night, and with beat down no periodic task runs,
so the workers check on a timer of their own and notify every admin. The alert is claimed on the
heartbeat row (``alerted_at``): several workers alert once per silence, and a later silence, after
beat came back, alerts again.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from models import Heartbeat, User
from utils.enums import Role
from utils.extensions import db
from utils.money import utcnow
from utils.rowlock import claimed
from utils.services import notifications

ADMIN_ROLES = (Role.ADMIN, Role.SUPERADMIN)


def alert_if_beat_silent() -> bool:
    """Notify every active admin when beat's heartbeat is older than HEARTBEAT_MAX_AGE, once per
    silence (commit). True when this call sent the alert."""
    now = utcnow()
    silent_since = now - timedelta(seconds=current_app.config["HEARTBEAT_MAX_AGE"])
    claim = (
        db.update(Heartbeat)
        .where(
            Heartbeat.component == "beat",
            Heartbeat.seen_at < silent_since,
            db.or_(Heartbeat.alerted_at.is_(None), Heartbeat.alerted_at < Heartbeat.seen_at),
        )
        .values(alerted_at=now)
    )
    if not claimed(claim):
        db.session.rollback()
        return False
    heartbeat = db.session.get_one(Heartbeat, "beat", populate_existing=True)
    seconds = int((now - heartbeat.seen_at).total_seconds())
    message = (
        f"The scheduler (Celery beat) has been silent for {seconds} s: stop-loss monitor cycles, order "
        "tracking and reconciliation do not run until it is back."
    )
    admins = db.select(User.id).where(User.role.in_(ADMIN_ROLES), User.active.is_(True))
    for admin_id in db.session.scalars(admins):
        notifications.notify(admin_id, "beat_silent", message, level="error")
    db.session.commit()
    return True
