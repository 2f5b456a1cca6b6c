"""The OpenAPI document and the Swagger UI page that reads it (public: neither holds any data)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from utils.web import public

bp = Blueprint("api_docs", __name__)


@bp.get("/api/v1/openapi.json")
@public
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3 document of /api/v1."""
    return jsonify(current_app.extensions["arbion_rest_api"].spec.to_dict())


@bp.get("/api/docs")
@public
def swagger_ui() -> ResponseReturnValue:
    """Swagger UI for /api/v1 from vendored assets, under the site's strict CSP.

    It needs no relaxed policy: checked in chromium, no violation while browsing, trying calls and
    authorizing.
    """
    return render_template("api/docs.html")
