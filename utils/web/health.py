"""Liveness and readiness probes for the platform and its load balancer."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from utils.services import system
from utils.web import public

bp = Blueprint("health", __name__)


@bp.get("/health")
@public
def health() -> ResponseReturnValue:
    """Liveness: the process answers. Touches no dependency."""
    return jsonify(status="ok")


@bp.get("/ready")
@public
def ready() -> ResponseReturnValue:
    """Readiness: database, Celery broker, encryption and a fresh beat heartbeat; 503 names failures."""
    readiness = system.check_readiness()
    status = 200 if readiness.ready else 503
    return jsonify(status="ready" if readiness.ready else "not_ready", checks=readiness.checks), status
