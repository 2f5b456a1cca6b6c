"""Composition root: create_app() builds the Flask app from the environment, without side effects."""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from utils.celery_app import celery_init_app
from utils.cli import init_cli
from utils.config import load_config
from utils.encryption import build_encryptor
from utils.extensions import csrf, db, init_security_headers, limiter, login_manager, migrate
from utils.observability import configure_logging, init_request_ids
from utils.web import init_web


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app from ``environ`` (default: os.environ); refuse to start on unsafe settings."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.update(load_config(environ, app.instance_path))
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    app.extensions["encryptor"] = build_encryptor(app.config["ENCRYPTION"])
    if app.config["PROXY_FIX_X_FOR"]:
        hops = app.config["PROXY_FIX_X_FOR"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(app.root_path, "migrations"), render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    init_security_headers(app)
    init_request_ids(app)
    celery_init_app(app)
    init_web(app)
    init_cli(app)
    return app
