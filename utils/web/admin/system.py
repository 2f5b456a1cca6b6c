"""Admin pages about the platform itself: status of its parts, reconciliation drift, the audit trail."""

from __future__ import annotations

import json

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import Length, Optional

from models import AuditLog
from utils.services import audit, drift_alerts, platform_status
from utils.web.csv_export import csv_download

bp = Blueprint("system", __name__, url_prefix="/system")
AUDIT_EXPORT_LIMIT = 50_000


@bp.get("/")
def status() -> ResponseReturnValue:
    """Readiness, heartbeats, monitor runs, queue depths, broker API checks, drift and login upkeep."""
    return render_template("admin/system.html", status=platform_status.overview())


@bp.get("/drift")
def drift() -> ResponseReturnValue:
    """Open reconciliation drift alerts: where our books and a broker's disagree."""
    return render_template("admin/drift.html", alerts=drift_alerts.open_drift())


@bp.get("/audit")
def audit_log() -> ResponseReturnValue:
    """Audit entries, newest first, narrowed by actor, action, subject and dates; CSV on request."""
    form = AuditFilterForm(request.args, meta={"csrf": False})
    dates_ok = form.validate()  # a malformed date is shown as an error and ignored
    where = audit.AuditFilter(
        actor=form.actor.data or "",
        action=form.action.data or "",
        subject=form.subject.data or "",
        since=form.since.data if dates_ok else None,
        until=form.until.data if dates_ok else None,
    )
    entries = audit.recent(AUDIT_EXPORT_LIMIT if request.args.get("format") == "csv" else 200, where)
    if request.args.get("format") == "csv":
        return _csv(entries)
    return render_template("admin/audit.html", entries=entries, form=form)


class AuditFilterForm(FlaskForm):
    """The audit viewer's filters (a GET form: no CSRF token needed, nothing changes)."""

    actor = StringField("Actor e-mail starts with", validators=[Optional(), Length(max=254)])
    action = StringField("Action starts with", validators=[Optional(), Length(max=80)])
    subject = StringField('Subject ("Trade" or "Trade 12")', validators=[Optional(), Length(max=80)])
    since = DateField("From (UTC)", validators=[Optional()])
    until = DateField("To (UTC)", validators=[Optional()])


def _csv(entries: list[AuditLog]) -> Response:
    header = ["created_at", "actor", "action", "subject_type", "subject_id", "ip_address", "details"]
    rows = (
        [
            entry.created_at.isoformat(),
            entry.actor_email,
            entry.action,
            entry.subject_type,
            entry.subject_id,
            entry.ip_address,
            json.dumps(entry.details, sort_keys=True),
        ]
        for entry in entries
    )
    return csv_download("audit-log.csv", header, rows)
