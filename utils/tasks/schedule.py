"""The Celery Beat schedule, kept as data (intervals from settings)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab, schedstate, schedule

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


# Entries sent at the start of each slot (multiples of the interval since the epoch) with on_slot=True,
# so the task can name the slot it was sent for: a restarted or second beat sends the same slot again.
ON_SLOTS = {"stop-loss-monitor"}


class SlotSchedule(schedule):
    """An interval schedule due once per slot of ``run_every`` seconds, at the slot's start."""

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time until the slot after the one ``last_run_at`` fell in."""
        interval = self.seconds
        next_start = (math.floor(self.maybe_make_aware(last_run_at).timestamp() / interval) + 1) * interval
        return timedelta(seconds=next_start - self.maybe_make_aware(self.now()).timestamp())

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due when the last run was in an earlier slot; check again at the next slot's start."""
        interval, now = self.seconds, self.maybe_make_aware(self.now()).timestamp()
        slot = math.floor(now / interval)
        due = math.floor(self.maybe_make_aware(last_run_at).timestamp() / interval) < slot
        return schedstate(is_due=due, next=(slot + 1) * interval - now)


def build_beat_schedule(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Beat entries for this configuration (intervals come from settings)."""
    entries: dict[str, dict[str, Any]] = {
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
        entries[entry] = {"task": task, "schedule": interval, "options": {"expires": interval}}
        if entry in ON_SLOTS:
            entries[entry] |= {"schedule": SlotSchedule(interval), "kwargs": {"on_slot": True}}
    return entries
