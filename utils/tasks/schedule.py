"""The Celery Beat schedule, kept as data. Later issues add the stop-loss monitor here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab

TASK_MODULES = ("utils.tasks.maintenance",)


def build_beat_schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat entries for this configuration (intervals come from settings)."""
    interval = config["HEARTBEAT_INTERVAL"]
    return {
        "worker-heartbeat": {
            "task": "system.record_worker_heartbeat",
            "schedule": float(interval),
            # A heartbeat that waited in the queue longer than the staleness limit is old news.
            "options": {"expires": float(config["HEARTBEAT_MAX_AGE"])},
        },
        "purge-old-audit-logs": {
            "task": "maintenance.purge_old_audit_logs",
            "schedule": crontab(hour=3, minute=17),
        },
    }
