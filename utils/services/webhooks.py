"""Notification webhooks: each user may have their notifications POSTed, signed, to a URL.

The body is JSON; ``X-Arbion-Timestamp`` holds the Unix time and ``X-Arbion-Signature`` is
``sha256=`` + hex HMAC-SHA256 of ``"{timestamp}.{body}"`` with the user's secret, which is shown
once when the webhook is set and stored encrypted. Delivery runs in the worker; a failed POST is
tried again on later passes, up to MAX_ATTEMPTS. The URL is vetted by ``utils.public_http`` when it
is set and again at every delivery, which resolves the host once and connects to the checked
address, never following a redirect: only public https endpoints on WEBHOOK_ALLOWED_PORTS, unless
WEBHOOK_ALLOW_PRIVATE_ADDRESSES is set (development and tests; production refuses it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from models import Notification, User
from utils import public_http
from utils.exceptions import InvalidInputError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.services import audit, credentials

log = get_logger(__name__)
MAX_ATTEMPTS = 5
BATCH = 100
TIMEOUT = (3.05, 5)
OLDEST = timedelta(days=1)  # older notifications are not sent any more


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    failed: int = 0


def set_webhook(user: User, url: str, *, resolver: public_http.Resolver = public_http.system_resolve) -> str:
    """Point the user's notifications at ``url``; returns the new signing secret (shown once)."""
    url = url.strip()
    target = _vet(url, resolver)[0]
    secret = secrets.token_urlsafe(32)
    user.webhook_url, user.webhook_since = url, utcnow()
    user.webhook_secret_encrypted = credentials.encryptor().encrypt(secret)
    audit.record("webhook.set", actor=user, subject=user, details={"host": target.host})
    db.session.commit()
    return secret


def clear_webhook(user: User) -> None:
    """Stop sending the user's notifications anywhere."""
    user.webhook_url = user.webhook_secret_encrypted = user.webhook_since = None
    audit.record("webhook.clear", actor=user, subject=user)
    db.session.commit()


def deliver_pending(*, resolver: public_http.Resolver = public_http.system_resolve) -> DeliveryReport:
    """POST every notification not yet delivered to its user's webhook (commits per notification)."""
    report = DeliveryReport()
    statement = (
        db.select(Notification, User)
        .join(User, User.id == Notification.user_id)
        .where(
            User.webhook_url.is_not(None),
            Notification.webhook_sent_at.is_(None),
            Notification.webhook_attempts < MAX_ATTEMPTS,
            Notification.created_at >= utcnow() - OLDEST,
            Notification.created_at >= User.webhook_since,
        )
        .order_by(Notification.id)
        .limit(BATCH)
    )
    for notification, user in db.session.execute(statement).all():
        if _deliver(notification, user, resolver):
            report.sent += 1
        else:
            report.failed += 1
        db.session.commit()
    return report


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Arbion-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _deliver(notification: Notification, user: User, resolver: public_http.Resolver) -> bool:
    body = json.dumps(
        {
            "id": notification.id,
            "kind": notification.kind,
            "level": notification.level,
            "message": notification.message,
            "subject_type": notification.subject_type,
            "subject_id": notification.subject_id,
            "created_at": notification.created_at.isoformat(),
        }
    ).encode()
    timestamp = str(int(time.time()))
    secret = credentials.encryptor().decrypt(user.webhook_secret_encrypted or "")
    headers = {
        "Content-Type": "application/json",
        "X-Arbion-Timestamp": timestamp,
        "X-Arbion-Signature": signature(secret, timestamp, body),
    }
    notification.webhook_attempts += 1
    try:
        status = public_http.post(*_vet(user.webhook_url or "", resolver), body, headers, TIMEOUT)
    except (public_http.DeliveryError, InvalidInputError) as exc:
        log.warning("webhook.failed", notification_id=notification.id, error=type(exc.__cause__ or exc).__name__)
        return False
    if not 200 <= status < 300:
        log.warning("webhook.refused", notification_id=notification.id, status=status)
        return False
    notification.webhook_sent_at = utcnow()
    return True


def _vet(url: str, resolver: public_http.Resolver) -> tuple[public_http.Target, tuple[str, ...]]:
    """The vetted target of ``url`` and the checked addresses to connect to (InvalidInputError if unsafe)."""
    config = current_app.config
    policy = public_http.Policy(frozenset(config["WEBHOOK_ALLOWED_PORTS"]), config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"])
    target = public_http.parse(url, policy)
    return target, public_http.resolve(target, policy, resolver)
