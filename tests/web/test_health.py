"""Liveness and readiness probes."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from models import Heartbeat
from tests.support import base_environ
from utils.extensions import db
from utils.money import utcnow
from utils.services.system import record_heartbeat


def test_health_answers_without_touching_dependencies(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_is_503_until_beat_has_a_heartbeat(client: FlaskClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready"
    assert body["checks"]["beat"] == "no heartbeat recorded yet"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["celery_broker"] == "ok"
    assert body["checks"]["encryption"] == "ok"


def test_ready_is_200_with_a_fresh_beat_heartbeat(client: FlaskClient) -> None:
    record_heartbeat("beat", "beat-host")
    response = client.get("/ready")
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()["checks"].values()) == {"ok"}


def test_ready_reports_a_stale_beat(app: Flask, client: FlaskClient) -> None:
    db.session.add(Heartbeat(component="beat", hostname="h", seen_at=utcnow() - timedelta(minutes=10), beats=3))
    db.session.commit()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.get_json()["checks"]["beat"].startswith("stale: last heartbeat 6")


def test_ready_is_503_when_the_database_is_down(database_url: str) -> None:
    down = create_app(base_environ("postgresql://arbion@127.0.0.1:9/nothing"))
    response = down.test_client().get("/ready")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["database"].startswith("unreachable")
    assert checks["beat"] == "unknown: database down"
    assert "Traceback" not in response.get_data(as_text=True)


def test_ready_is_503_when_the_celery_broker_is_down(database_url: str) -> None:
    environ = base_environ(database_url, CELERY_BROKER_URL="redis://127.0.0.1:9/0")
    down = create_app(environ)
    with down.app_context():
        response = down.test_client().get("/ready")
        db.session.remove()
    assert response.status_code == 503
    assert response.get_json()["checks"]["celery_broker"].startswith("unreachable")


def test_heartbeat_upsert_counts_beats(app: Flask) -> None:
    record_heartbeat("worker", "w1")
    record_heartbeat("worker", "w2")
    beat = db.session.get(Heartbeat, "worker")
    db.session.refresh(beat)
    assert (beat.hostname, beat.beats) == ("w2", 2)
