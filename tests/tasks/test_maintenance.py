"""Heartbeat and retention tasks, executed by a real Celery worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from flask import Flask

from models import AuditLog, Heartbeat
from utils.celery_app import HeartbeatScheduler
from utils.extensions import db
from utils.money import utcnow
from utils.tasks.maintenance import purge_old_audit_logs, record_worker_heartbeat


@pytest.fixture()
def worker(app: Flask) -> Iterator[None]:
    """A real Celery worker thread consuming from the app's broker (Redis in CI)."""
    with start_worker(app.extensions["celery"], pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield


def test_worker_heartbeat_task_runs_in_a_real_worker(app: Flask, worker: None) -> None:
    record_worker_heartbeat.apply_async().forget()
    deadline = utcnow() + timedelta(seconds=20)
    while utcnow() < deadline:
        db.session.expire_all()
        if db.session.get(Heartbeat, "worker") is not None:
            break
    beat = db.session.get(Heartbeat, "worker")
    assert beat is not None and beat.beats == 1
    assert utcnow() - beat.seen_at < timedelta(seconds=20)


def test_retention_deletes_only_expired_audit_rows(app: Flask, worker: None) -> None:
    app.config["AUDIT_RETENTION_DAYS"] = 30
    old = AuditLog(action="old", created_at=utcnow() - timedelta(days=31))
    recent = AuditLog(action="recent", created_at=utcnow() - timedelta(days=29))
    db.session.add_all([old, recent])
    db.session.commit()
    assert purge_old_audit_logs.delay().get(timeout=20) == 1
    db.session.expire_all()
    assert list(db.session.scalars(db.select(AuditLog.action))) == ["recent"]


def test_audit_rows_cannot_be_updated(app: Flask) -> None:
    entry = AuditLog(action="x")
    db.session.add(entry)
    db.session.commit()
    entry.action = "tampered"
    with pytest.raises(ValueError, match="append-only"):
        db.session.commit()
    db.session.rollback()


def test_beat_scheduler_records_its_own_heartbeat(app: Flask, tmp_path: object) -> None:
    celery_app = app.extensions["celery"]
    scheduler = HeartbeatScheduler(app=celery_app, schedule_filename=f"{tmp_path}/schedule", lazy=False)
    try:
        delay = scheduler.tick()
        assert delay <= app.config["HEARTBEAT_INTERVAL"]
        db.session.expire_all()
        first = db.session.get(Heartbeat, "beat")
        assert first is not None and first.beats == 1
        scheduler.tick()  # within the interval: no second write
        db.session.expire_all()
        assert db.session.get(Heartbeat, "beat").beats == 1
    finally:
        scheduler.close()


def test_beat_schedule_is_data_with_the_heartbeat_and_retention(app: Flask) -> None:
    schedule = app.extensions["celery"].conf.beat_schedule
    assert schedule["worker-heartbeat"]["task"] == "system.record_worker_heartbeat"
    assert schedule["worker-heartbeat"]["schedule"] == float(app.config["HEARTBEAT_INTERVAL"])
    assert schedule["purge-old-audit-logs"]["task"] == "maintenance.purge_old_audit_logs"
    registered = app.extensions["celery"].tasks
    assert all(entry["task"] in registered for entry in schedule.values())


def test_beat_replaces_a_producer_whose_channel_closed(app: Flask, tmp_path: object, worker: None) -> None:
    celery_app = app.extensions["celery"]
    scheduler = HeartbeatScheduler(app=celery_app, schedule_filename=f"{tmp_path}/schedule", lazy=False)
    try:
        dead = scheduler.producer
        dead.channel.close()  # as the embedded beat's channel was seen to close at start-up
        scheduler.apply_entry(scheduler.schedule["worker-heartbeat"], producer=dead)
        assert scheduler.producer is not dead
        deadline = utcnow() + timedelta(seconds=20)
        while db.session.get(Heartbeat, "worker") is None and utcnow() < deadline:
            db.session.expire_all()
        assert db.session.get(Heartbeat, "worker") is not None, "the entry was sent through a fresh producer"
    finally:
        scheduler.close()
