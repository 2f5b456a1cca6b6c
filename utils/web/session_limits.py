"""Idle and absolute session timeouts, enforced on the server from timestamps in the signed session.

A stolen or forgotten cookie stops working SESSION_IDLE_MINUTES after its last request and
SESSION_LIFETIME_HOURS after the login, whatever the browser does with its expiry.
"""

from __future__ import annotations

import time

from flask import current_app, session
from flask_login import logout_user

SIGNED_IN_AT = "signed_in_at"
SEEN_AT = "seen_at"
# The last-seen time is rewritten at most this often, so most responses carry no new cookie.
_SEEN_RESOLUTION_SECONDS = 60


def start_session_clock() -> None:
    """Stamp a fresh login with its start (for the absolute limit) and its last request (idle)."""
    now = int(time.time())
    session[SIGNED_IN_AT] = now
    session[SEEN_AT] = now


def enforce_session_timeouts() -> None:
    """Before each request: end a signed-in session that is idle or too old, else note the request."""
    if "_user_id" not in session:
        return
    now = int(time.time())
    if _expired(now):
        logout_user()
        session.clear()
    elif now - int(session[SEEN_AT]) >= _SEEN_RESOLUTION_SECONDS:
        session[SEEN_AT] = now


def _expired(now: int) -> bool:
    """True when the session lacks its timestamps, has been idle too long or is past its lifetime."""
    signed_in_at, seen_at = session.get(SIGNED_IN_AT), session.get(SEEN_AT)
    if not isinstance(signed_in_at, int) or not isinstance(seen_at, int):
        return True
    idle = current_app.config["SESSION_IDLE_TIMEOUT"].total_seconds()
    lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    return now - seen_at > idle or now - signed_in_at > lifetime
