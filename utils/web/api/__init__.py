"""The REST API at /api/v1 (flask-smorest): token or session auth, the JSON error envelope,
OpenAPI 3 at /api/v1/openapi.json and Swagger UI at /api/docs.

Every resource blueprint is an ``ApiBlueprint`` (utils/web/api/base.py), which authenticates,
checks scopes, applies CSRF to session calls and counts the rate limit. Errors, including the
422s of request validation, go through the app's one error handler (utils/web/errors.py).
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from utils.web.api import account, admin, docs, orders, positions, schemas

API_VERSION = "1"
RESOURCES = (orders.blp, positions.blp, positions.trades_blp, account.blp, admin.blp)
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal API token (create one under API tokens or with `flask tokens create`).",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The browser session; calls that change something also need the X-CSRFToken header.",
    },
}


class RestApi(Api):
    """flask-smorest with our error envelope documented and no error handler of its own."""

    ERROR_SCHEMA = schemas.ErrorEnvelopeSchema

    def _register_error_handlers(self) -> None:
        """Nothing: the app's handler already answers /api/ paths with the envelope."""


def init_api(app: Flask) -> None:
    """Mount the resources under /api/v1, document them, and serve the spec and the docs page."""
    rest = RestApi(
        app,
        spec_kwargs={
            "title": "ArbionTrader API",
            "version": API_VERSION,
            "openapi_version": "3.0.3",
            "security": [{"bearerAuth": []}, {"sessionCookie": []}],
            "info": {"description": "Orders, positions, trades and risk. Money travels as strings."},
            # Replaces the tag list flask-smorest builds from blueprint names ("api_orders").
            "tags": [{"name": blueprint.tag, "description": blueprint.description} for blueprint in RESOURCES],
        },
    )
    for name, scheme in SECURITY_SCHEMES.items():
        rest.spec.components.security_scheme(name, scheme)
    for blueprint in RESOURCES:
        rest.register_blueprint(blueprint)
    app.extensions["arbion_rest_api"] = rest
    app.register_blueprint(docs.bp)
