"""REL-04 Beat lost and back: the beat process is SIGKILLed, stays down, and comes back.

Real processes: a Celery worker and beat (subprocesses) with a 2-second monitor interval. While beat
is down the workers' own watchdog alerts every admin once, after 3 silent intervals. Beat then comes
back, and for a while a second beat runs beside it (what a botched restart or a failover leaves):
each schedule slot is still run once (the cycle key is the slot, claimed by its MonitorRun row; the
refused duplicates show in the worker's log), no slot is skipped, and consecutive cycles are never
more than 1.5 intervals apart.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import pytest
from flask import Flask

from models import Heartbeat, MonitorRun, Notification
from tests.reliability.stack import Stack
from tests.scale import scaled
from tests.support import make_user
from tests.venues import eventually
from utils.enums import Role
from utils.extensions import db

INTERVAL = 2
SILENT_LIMIT = 3 * INTERVAL
DOWN_FOR = scaled(ci=5, soak=30) * INTERVAL
OVERLAP_FOR = scaled(ci=4, soak=30) * INTERVAL


@pytest.fixture()
def environ(environ: dict[str, str]) -> dict[str, str]:
    return environ | {
        "STOP_MONITOR_INTERVAL": str(INTERVAL),
        "HEARTBEAT_INTERVAL": "1",
        "HEARTBEAT_MAX_AGE": str(SILENT_LIMIT),
        "LOG_LEVEL": "INFO",  # the worker logs each refused duplicate of a slot
    }


def slot_runs() -> list[MonitorRun]:
    """Monitor runs of beat's slots (their key is the slot's start), oldest first."""
    runs = db.session.scalars(db.select(MonitorRun).order_by(MonitorRun.started_at))
    return [run for run in runs if run.cycle_key.endswith("Z")]


def slot_of(run: MonitorRun) -> int:
    """The slot number of a run, from its cycle key."""
    return int(datetime.strptime(run.cycle_key, "%Y%m%dT%H%M%S%z").timestamp()) // INTERVAL


def runs_after(moment: datetime, count: int) -> list[MonitorRun] | None:
    """The slot runs started after ``moment``, once there are ``count`` of them."""
    runs = [run for run in slot_runs() if run.started_at > moment]
    return runs if len(runs) >= count else None


def beat_alerts() -> list[Notification]:
    """Every "beat is silent" notification."""
    return list(db.session.scalars(db.select(Notification).where(Notification.kind == "beat_silent")))


def last_beat() -> datetime:
    """When beat last recorded its heartbeat."""
    return db.session.get_one(Heartbeat, "beat", populate_existing=True).seen_at


@pytest.mark.slow
@pytest.mark.timeout(120 + DOWN_FOR + OVERLAP_FOR)
def test_beat_killed_and_back_alerts_once_and_runs_every_slot_once(app: Flask, stack: Stack) -> None:
    admins = [make_user("root@example.com", Role.SUPERADMIN).id, make_user("ops@example.com", Role.ADMIN).id]
    make_user("trader@example.com")
    stack.worker("--pool", "threads", "--concurrency", "2")
    beat = stack.beat("first")
    eventually(lambda: runs_after(datetime.min.replace(tzinfo=UTC), 3), "3 cycles with beat up", timeout=60)

    stack.kill(beat)
    killed_at = time.monotonic()
    silent_from = last_beat()
    alerts = eventually(beat_alerts, "the alert", timeout=SILENT_LIMIT + 4 * INTERVAL)
    alerted_after = (alerts[0].created_at - silent_from).total_seconds()
    time.sleep(max(0.0, DOWN_FOR - (time.monotonic() - killed_at)))
    assert sorted(a.user_id for a in beat_alerts()) == sorted(admins), "every admin told once, traders not"
    assert SILENT_LIMIT <= alerted_after <= SILENT_LIMIT + 2 * INTERVAL, alerted_after
    assert "silent" in alerts[0].message and alerts[0].level == "error"

    back_at = datetime.now(UTC)
    stack.beat("first")  # the same schedule file: beat remembers what it last sent
    second = stack.beat("second")  # a second beat alongside, sending every slot too
    overlap = eventually(lambda: runs_after(back_at, OVERLAP_FOR // INTERVAL), "the overlap", timeout=OVERLAP_FOR + 60)
    stack.kill(second)
    runs = eventually(lambda: runs_after(overlap[-1].started_at, 3), "cycles after the overlap", timeout=30)
    runs = overlap + runs

    slots = [slot_of(run) for run in runs]
    assert len(slots) == len(set(slots)), "no slot ran twice"
    assert slots == list(range(slots[0], slots[0] + len(slots))), "no slot skipped"
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(runs)]
    assert max(gaps) <= 1.5 * INTERVAL, gaps
    # Reported, not asserted: a duplicate send may also expire in the queue before a worker takes
    # it (each beat entry expires after one interval); the per-slot claim itself is tested in
    # tests/tasks/test_monitor_slots.py, and "no slot ran twice" above is the pass criterion.
    refused = stack.log_path.read_text(errors="replace").count("monitor.cycle_already_run")
    assert len(beat_alerts()) == len(admins), "no second alert once beat is back"
    print(  # noqa: T201 - the figures RELIABILITY.md reports
        f"REL-04: alert {alerted_after:.1f} s after beat's last heartbeat (limit {SILENT_LIMIT} s); "
        f"{len(runs)} slots after return, max gap {max(gaps):.2f} s (interval {INTERVAL} s), "
        f"{refused} duplicate sends refused"
    )
