"""The monitor's schedule slots, the beat-silence alert and the one-pass-at-a-time locks (REL-04, REL-07).

The real-process versions live in tests/reliability; these pin each rule down on its own, quickly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask

from models import Heartbeat, MonitorRun, Notification
from tests.support import make_user
from utils.enums import Role
from utils.extensions import db
from utils.money import utcnow
from utils.services import beat_watch, monitor, task_locks
from utils.tasks.monitoring import stop_loss_cycle
from utils.tasks.schedule import SlotSchedule, build_beat_schedule


def test_beat_sends_the_monitor_on_slots_and_other_tasks_on_plain_intervals(app: Flask) -> None:
    entries = build_beat_schedule(app.config)
    assert isinstance(entries["stop-loss-monitor"]["schedule"], SlotSchedule)
    assert entries["stop-loss-monitor"]["kwargs"] == {"on_slot": True}
    assert not isinstance(entries["track-orders"]["schedule"], SlotSchedule)


def test_a_slot_schedule_is_due_once_per_slot_and_wakes_at_the_next_slot() -> None:
    slot_start = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    schedule = SlotSchedule(10.0, nowfun=lambda: slot_start + timedelta(seconds=3))
    assert schedule.is_due(slot_start - timedelta(seconds=1)) == (True, 7.0)
    assert schedule.is_due(slot_start + timedelta(seconds=1)) == (False, 7.0)


def test_a_slot_sent_twice_runs_once_while_cycles_asked_for_by_hand_all_run(app: Flask) -> None:
    app.config["STOP_MONITOR_INTERVAL"] = 3600  # both sends fall in the same slot
    app.extensions["celery"].conf.update(task_always_eager=True, task_eager_propagates=True)
    for _ in range(2):
        stop_loss_cycle.delay(on_slot=True)
        stop_loss_cycle.delay()
    keys = sorted(db.session.scalars(db.select(MonitorRun.cycle_key)))
    assert keys.count(monitor.slot_key(utcnow(), 3600)) == 1
    assert len(keys) == 3


def test_beat_silence_is_told_to_every_admin_once_per_silence(app: Flask) -> None:
    admins = {make_user("root@example.com", Role.SUPERADMIN).id, make_user("ops@example.com", Role.ADMIN).id}
    make_user()
    silent = utcnow() - timedelta(seconds=app.config["HEARTBEAT_MAX_AGE"] + 1)
    db.session.add(Heartbeat(component="beat", hostname="h", seen_at=silent, beats=1))
    db.session.commit()

    assert [beat_watch.alert_if_beat_silent() for _ in range(2)] == [True, False]
    heartbeat = db.session.get_one(Heartbeat, "beat", populate_existing=True)
    heartbeat.seen_at = utcnow()  # beat came back ...
    db.session.commit()
    assert not beat_watch.alert_if_beat_silent()
    # ... an hour after the alert, and has been silent again for the last half hour
    heartbeat.alerted_at, heartbeat.seen_at = utcnow() - timedelta(hours=1), utcnow() - timedelta(minutes=30)
    db.session.commit()
    assert beat_watch.alert_if_beat_silent()

    told = list(db.session.scalars(db.select(Notification.user_id).where(Notification.kind == "beat_silent")))
    assert sorted(told) == sorted([*admins, *admins]), "each admin told once per silence, traders never"


def test_a_pass_lock_refuses_a_second_holder_until_the_first_is_done(app: Flask) -> None:
    with (
        task_locks.one_at_a_time("track:1") as first,
        task_locks.one_at_a_time("track:1") as second,
        task_locks.one_at_a_time("track:2") as other,
    ):
        assert (first, second, other) == (True, False, True)
    with task_locks.one_at_a_time("track:1") as again:
        assert again
