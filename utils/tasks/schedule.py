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
    "utils.tasks.notifications",
    "utils.tasks.portfolio",
)

# Periodic tasks: (beat entry, task name, setting holding the interval in seconds).
EVERY_FEW_SECONDS = (
    ("paper-match-working-orders", "paper.match_working_orders", "PAPER_MATCH_INTERVAL"),
    ("stop-loss-monitor", "monitoring.stop_loss_cycle", "STOP_MONITOR_INTERVAL"),
    ("track-orders", "trading.track_orders", "ORDER_POLL_INTERVAL"),
    ("reconcile-brokers", "reconcile.all", "RECONCILE_INTERVAL"),
    ("keep-schwab-logins-alive", "connections.keep_schwab_logins_alive", "SCHWAB_TOKEN_UPKEEP_INTERVAL"),
    ("deliver-webhooks", "notifications.deliver_webhooks", "WEBHOOK_INTERVAL"),
    ("snapshot-equity", "portfolio.snapshot_equity", "EQUITY_SNAPSHOT_INTERVAL"),
)


def build_beat_schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat entries for this configuration (intervals come from settings)."""
    schedule: dict[str, dict[str, Any]] = {
        "worker-heartbeat": {
            "task": "system.record_worker_heartbeat",
            "schedule": float(config["HEARTBEAT_INTERVAL"]),
            # A heartbeat that waited in the queue longer than the staleness limit is old news.
            "options": {"expires": float(config["HEARTBEAT_MAX_AGE"])},
        },
        "purge-old-audit-logs": {
            "task": "maintenance.purge_old_audit_logs",
            "schedule": crontab(hour=3, minute=17),
        },
        "check-broker-apis": {
            "task": "connections.check_broker_apis",
            "schedule": crontab(minute=41),
            # An hourly check that waited a whole hour is superseded by the next one.
            "options": {"expires": 3600.0},
        },
    }
    for entry, task, setting in EVERY_FEW_SECONDS:
        interval = float(config[setting])
        # A run that waited a whole interval in the queue is superseded by the next one: drop it.
        schedule[entry] = {"task": task, "schedule": interval, "options": {"expires": interval}}
    return schedule
