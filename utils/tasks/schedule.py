"""The Celery Beat schedule, kept as data (intervals from settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.schedules import crontab

TASK_MODULES = (
    "utils.tasks.maintenance",
    "utils.tasks.paper",
    "utils.tasks.connections",
    "utils.tasks.trading",
    "utils.tasks.monitoring",
    "utils.tasks.reconciliation",
)


def build_beat_schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat entries for this configuration (intervals come from settings)."""
    interval = config["HEARTBEAT_INTERVAL"]
    paper_interval = float(config["PAPER_MATCH_INTERVAL"])
    upkeep_interval = float(config["SCHWAB_TOKEN_UPKEEP_INTERVAL"])
    poll_interval = float(config["ORDER_POLL_INTERVAL"])
    monitor_interval = float(config["STOP_MONITOR_INTERVAL"])
    reconcile_interval = float(config["RECONCILE_INTERVAL"])
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
        "paper-match-working-orders": {
            "task": "paper.match_working_orders",
            "schedule": paper_interval,
            # The next run is due by then: a pass that waited longer is dropped, not piled up.
            "options": {"expires": paper_interval},
        },
        "stop-loss-monitor": {
            "task": "monitoring.stop_loss_cycle",
            "schedule": monitor_interval,
            # A cycle that waited a whole interval in the queue is superseded by the next one.
            "options": {"expires": monitor_interval},
        },
        "track-orders": {
            "task": "trading.track_orders",
            "schedule": poll_interval,
            "options": {"expires": poll_interval},
        },
        "reconcile-brokers": {
            "task": "reconcile.all",
            "schedule": reconcile_interval,
            # Runs that piled up in the queue would only repeat each other: the next one is due.
            "options": {"expires": reconcile_interval},
        },
        "keep-schwab-logins-alive": {
            "task": "connections.keep_schwab_logins_alive",
            "schedule": upkeep_interval,
            "options": {"expires": upkeep_interval},
        },
    }
