"""Housekeeping tasks: worker liveness and retention."""

from __future__ import annotations

import socket

from celery import shared_task

from utils.services import audit, system


@shared_task(name="system.record_worker_heartbeat", ignore_result=True)
def record_worker_heartbeat() -> None:
    """Record that a worker is consuming tasks."""
    system.record_heartbeat("worker", socket.gethostname())


@shared_task(name="maintenance.purge_old_audit_logs")
def purge_old_audit_logs() -> int:
    """Delete audit rows older than AUDIT_RETENTION_DAYS; return how many were deleted."""
    return audit.purge_expired()
