"""Admin pages about the platform itself: background components and the audit trail."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from utils.services import audit, monitor, system

bp = Blueprint("system", __name__, url_prefix="/system")


@bp.get("/")
def status() -> ResponseReturnValue:
    """Readiness checks, the heartbeats of worker and beat, and the last stop-loss monitor runs."""
    return render_template(
        "admin/system.html",
        readiness=system.check_readiness(),
        heartbeats=system.list_heartbeats(),
        monitor_runs=monitor.recent_runs(),
    )


@bp.get("/audit")
def audit_log() -> ResponseReturnValue:
    """The most recent audit entries."""
    return render_template("admin/audit.html", entries=audit.recent())
