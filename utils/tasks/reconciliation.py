"""Reconciliation on Celery: every RECONCILE_INTERVAL seconds, and once whenever a worker starts."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from utils.services import reconcile, task_locks

TASK_NAME = "reconcile.all"


@shared_task(name=TASK_NAME, ignore_result=True)
def reconcile_all() -> dict[str, int]:
    """Reconcile every broker connection; returns counts (connections, failed, drift, new, resolved).

    One pass at a time: a pass sent while another still runs (two workers starting together, beat's
    interval shorter than a pass over a large book) is skipped, the running one covers it. The pass
    stays in one task on purpose: spread over the queue it would make the monitor's tasks wait.
    """
    with task_locks.one_at_a_time("reconcile:all") as mine:
        if not mine:
            return {"skipped": 1}
        reports = reconcile.reconcile_all()
    return {
        "connections": len(reports),
        "failed": sum(not report.ok for report in reports),
        "drift": sum(len(report.drift) for report in reports),
        "new": sum(report.new_alerts for report in reports),
        "resolved": sum(report.resolved_alerts for report in reports),
    }


@worker_ready.connect
def reconcile_when_a_worker_starts(sender: Any, **kwargs: Any) -> None:
    """A worker just started (maybe after an outage): check every connection with its broker now."""
    celery_app = sender.app
    celery_app.send_task(TASK_NAME, expires=float(celery_app.flask_app.config["RECONCILE_INTERVAL"]))
