"""Platform liveness: heartbeats of background components and the readiness checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from flask import current_app
from kombu.exceptions import ChannelError
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from models import Heartbeat, SystemSetting
from utils.encryption import Encryptor
from utils.exceptions import ConfigurationError, QueueUnavailableError
from utils.extensions import db
from utils.money import utcnow
from utils.observability import get_logger
from utils.services.trading_state import upsert

BROKER_CHECK_TIMEOUT_SECONDS = 2.0
_PINGERS: dict[str, redis.Redis] = {}
log = get_logger(__name__)


def record_heartbeat(component: str, hostname: str) -> None:
    """Upsert the component's heartbeat (atomic on both backends) and commit."""
    now = utcnow()
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(Heartbeat).values(component=component, hostname=hostname, seen_at=now, beats=1)
    statement = statement.on_conflict_do_update(
        index_elements=[Heartbeat.component],
        set_={"hostname": hostname, "seen_at": now, "beats": Heartbeat.beats + 1},
    )
    db.session.execute(statement)
    db.session.commit()


def store_status(key: str, value: dict[str, Any]) -> None:
    """Keep a background job's latest report (a JSON SystemSetting); the caller commits."""
    upsert(SystemSetting, {"key": key, "value": value, "updated_by_id": None}, [SystemSetting.key])


def read_status(key: str) -> dict[str, Any]:
    """A report kept by ``store_status``, or {} when there is none yet."""
    setting = db.session.get(SystemSetting, key)
    return dict(setting.value) if setting is not None and isinstance(setting.value, dict) else {}


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue (Redis: LLEN; the embedded transport: its messages
    table), or None when the Celery broker cannot be reached."""
    celery_app = current_app.extensions["celery"]
    depths = {}
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_CHECK_TIMEOUT_SECONDS)
            channel = connection.default_channel
            for name in sorted(celery_app.amqp.queues):
                depths[name] = _queue_size(channel, name)
    except Exception:  # noqa: BLE001 - kombu raises transport-specific errors; any means "unknown".
        return None
    return depths


def _queue_size(channel: Any, name: str) -> int:
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except ChannelError:  # Redis drops an empty list's key: the queue exists only while non-empty
        return 0


def list_heartbeats() -> list[Heartbeat]:
    """Every recorded heartbeat, for the admin status page."""
    return list(db.session.scalars(db.select(Heartbeat).order_by(Heartbeat.component)))


@dataclass
class Readiness:
    """Outcome of the readiness checks: each check's name and either "ok" or why it failed."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(result == "ok" for result in self.checks.values())


def check_readiness() -> Readiness:
    """Database, Celery broker, encryption self-test and beat heartbeat freshness."""
    readiness = Readiness()
    readiness.checks["database"] = _check_database()
    readiness.checks["celery_broker"] = _check_celery_broker()
    readiness.checks["encryption"] = _check_encryption()
    readiness.checks["beat"] = _check_beat() if readiness.checks["database"] == "ok" else "unknown: database down"
    return readiness


def _check_database() -> str:
    try:
        db.session.execute(db.text("SELECT 1"))
    except SQLAlchemyError as exc:
        db.session.rollback()
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def require_task_queue() -> None:
    """Raise QueueUnavailableError unless the Celery broker answers: an order that no worker could
    be told about is refused before it is stored or any broker is called."""
    if (status := _check_celery_broker()) != "ok":
        log.warning("orders.refused_queue_unreachable", status=status)
        raise QueueUnavailableError(
            "New orders are not accepted while the platform's task queue is unreachable: nothing was "
            "stored or sent. Try again in a minute."
        )


def _check_celery_broker() -> str:
    """Whether the Celery broker answers now ("ok"). A broker on the app's Redis gets a PING over the
    process's pooled connection (a fraction of a millisecond; every order entry asks); any other
    transport a fresh connection."""
    celery_app = current_app.extensions["celery"]
    broker_url = celery_app.conf.broker_url
    if broker_url and broker_url == current_app.config["REDIS_URL"]:
        try:
            _broker_pinger(broker_url).ping()
        except redis.RedisError as exc:
            return f"unreachable ({type(exc).__name__})"
        return "ok"
    try:
        with celery_app.connection_for_write() as connection:
            # One immediate retry, no back-off sleep: an order refused must be refused quickly.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors; any means "down".
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def _broker_pinger(url: str) -> redis.Redis:
    """This process's client for the broker check: pooled, short timeouts, and one immediate retry
    (a pooled connection Redis dropped while it restarted is replaced, not reported as an outage)."""
    if url not in _PINGERS:
        timeout = BROKER_CHECK_TIMEOUT_SECONDS
        retry = Retry(NoBackoff(), 1)
        _PINGERS[url] = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry)
    return _PINGERS[url]


def _check_encryption() -> str:
    encryptor: Encryptor = current_app.extensions["encryptor"]
    try:
        encryptor.self_test()
    except ConfigurationError:
        return "self-test failed"
    return "ok"


def _check_beat() -> str:
    heartbeat = db.session.get(Heartbeat, "beat")
    if heartbeat is None:
        return "no heartbeat recorded yet"
    max_age = timedelta(seconds=current_app.config["HEARTBEAT_MAX_AGE"])
    age = utcnow() - heartbeat.seen_at
    if age > max_age:
        return f"stale: last heartbeat {int(age.total_seconds())} s ago"
    return "ok"
