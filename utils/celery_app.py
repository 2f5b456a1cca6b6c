"""Celery wired the Flask way: every task runs inside the app context of the app that made it.

Beat uses ``HeartbeatScheduler``, which records the beat process's own liveness in the database
on every tick, so /ready can tell "beat is down" apart from "workers are down". Every worker runs
``BeatWatchdog`` on its own timer (beat sends no task while it is down) to alert admins when beat
falls silent.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, cast

from celery import Celery, Task, bootsteps
from celery.beat import PersistentScheduler
from celery.signals import worker_init
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from utils.observability import get_logger
from utils.tasks.schedule import TASK_MODULES, build_beat_schedule

log = get_logger(__name__)


class ArbionCelery(Celery):
    """Celery app that knows the Flask app it serves."""

    flask_app: Flask


def celery_init_app(app: Flask) -> ArbionCelery:
    """Create the Celery app for a Flask app and register it as app.extensions["celery"]."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = ArbionCelery(app.import_name, task_cls=FlaskTask, include=list(TASK_MODULES))
    celery_app.config_from_object(app.config["CELERY"])
    celery_app.conf.beat_schedule = build_beat_schedule(app.config)
    celery_app.conf.beat_scheduler = "utils.celery_app:HeartbeatScheduler"
    celery_app.steps["worker"].add(BeatWatchdog)
    celery_app.flask_app = app
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


@worker_init.connect
def declare_queues_before_start(sender: Any, **kwargs: Any) -> None:
    """Create the queues once, before the consumer and the embedded beat start.

    kombu's SQLAlchemy transport (the embedded default) creates a queue with check-then-insert;
    when the worker and `-B` beat do it at the same moment, one dies on the unique queue name.
    """
    celery_app = sender.app
    if not str(celery_app.conf.broker_url).startswith("sqla+"):
        return
    with celery_app.connection_for_write() as connection:
        for queue in celery_app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()


class HeartbeatScheduler(PersistentScheduler):
    """The default scheduler, plus a "beat" heartbeat written at most once per interval."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._last_heartbeat = float("-inf")
        self._hostname = socket.gethostname()
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """Make sure the schedule file's folder exists (a fresh dyno has no instance/ folder)."""
        filename = self.schedule_filename  # type: ignore[attr-defined]  # set by PersistentScheduler
        os.makedirs(os.path.dirname(os.path.abspath(filename)), exist_ok=True)
        super().setup_schedule()

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        """Send one due entry, first replacing a producer whose channel was closed under it.

        Celery caches the producer for the life of beat, so one closed channel (seen with the
        embedded beat on kombu's SQLite transport right at start-up) would silence every later
        entry; a fresh producer heals it.
        """
        if producer is not None and getattr(producer.channel, "connection", None) is None:
            log.warning("beat.producer_reopened", entry=entry.name)
            self.__dict__.pop("producer", None)
            producer = self.producer
        super().apply_entry(entry, producer=producer)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run due entries, then record liveness if the heartbeat interval has passed."""
        delay: float = super().tick(*args, **kwargs)
        flask_app = cast(ArbionCelery, self.app).flask_app
        every = flask_app.config["HEARTBEAT_INTERVAL"]
        if time.monotonic() - self._last_heartbeat >= every:
            self._record(flask_app)
        return min(delay, every)

    def _record(self, flask_app: Flask) -> None:
        from utils.services.system import record_heartbeat

        try:
            with flask_app.app_context():
                record_heartbeat("beat", self._hostname)
            self._last_heartbeat = time.monotonic()
        except SQLAlchemyError:
            # Beat must keep scheduling even when the database blips; /ready will show it.
            log.exception("beat.heartbeat_failed")


class BeatWatchdog(bootsteps.StartStopStep):
    """A worker step: every HEARTBEAT_INTERVAL, check beat's heartbeat and alert admins once when it is silent."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any):
        self.timer_entry: Any = None
        super().__init__(parent, **kwargs)

    def start(self, parent: Any) -> None:
        """Schedule the check on the worker's timer."""
        flask_app = cast(ArbionCelery, parent.app).flask_app
        every = flask_app.config["HEARTBEAT_INTERVAL"]
        self.timer_entry = parent.timer.call_repeatedly(every, _watch_beat, (flask_app,), priority=10)

    def stop(self, parent: Any) -> None:
        """Cancel the check."""
        if self.timer_entry is not None:
            self.timer_entry.cancel()


def _watch_beat(flask_app: Flask) -> None:
    from utils.services.beat_watch import alert_if_beat_silent

    try:
        with flask_app.app_context():
            alert_if_beat_silent()
    except SQLAlchemyError:
        # The watchdog must outlive a database blip; /ready shows the database problem.
        log.exception("worker.beat_watch_failed")
