"""One error handler for the whole app: JSON envelope for API clients, a friendly page otherwise."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, make_response, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from utils.exceptions import (
    ArbionError,
    AuthenticationRequiredError,
    DatabaseError,
    QueueUnavailableError,
    error_envelope,
)
from utils.extensions import login_manager
from utils.observability import current_request_id, get_logger

log = get_logger(__name__)

_HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("authentication_required", "Please log in."),
    403: ("permission_denied", "You do not have permission to do that."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "That method is not allowed here."),
    413: ("payload_too_large", "The request is too large."),
    429: ("rate_limited", "Too many attempts. Please wait a few minutes and try again."),
}
# A dependency outage is a 503 with its name, never a 500 with a traceback.
_DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
_QUEUE_DOWN = (RedisConnectionError, RedisTimeoutError, KombuOperationalError)
_CSRF_MESSAGE = "The form expired or was not sent from this site. Reload the page and try again."


def wants_json() -> bool:
    """API paths and clients that prefer JSON get the envelope; browsers get a page."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    accept = request.accept_mimetypes
    return accept.best_match(["text/html", "application/json"]) == "application/json"


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    """The error as a JSON envelope or an HTML page, with the given status."""
    request_id = current_request_id()
    if wants_json():
        response = jsonify(error_envelope(code, message, details or {}, request_id))
    else:
        page = render_template("errors/error.html", status=status, message=message, request_id=request_id)
        response = make_response(page)
    response.status_code = status
    return response


def render_error(error: ArbionError) -> Response:
    """Render one of our errors for whoever asked."""
    response = error_response(error.status, error.code, error.message, error.details)
    response.headers.update(retry_after(error))
    return response


def retry_after(error: ArbionError) -> dict[str, str]:
    """The Retry-After header of a 429 that says when to try again; no header otherwise."""
    seconds = error.details.get("retry_after")
    return {"Retry-After": str(seconds)} if error.status == 429 and seconds else {}


def unauthorized() -> Any:
    """Not logged in: 401 envelope for API clients, redirect to the login page for browsers."""
    if wants_json():
        return render_error(AuthenticationRequiredError())
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _handle_http_exception(exc: HTTPException) -> Any:
    status = exc.code or 500
    code, message = _HTTP_CODES.get(status, ("http_error", "The request failed."))
    if isinstance(exc, CSRFError):
        log.info("request.csrf_rejected", reason=exc.description, path=request.path)
        code, message = "csrf_failed", _CSRF_MESSAGE
    response = error_response(status, code, message)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _handle_outage(exc: Exception) -> Response:
    log.warning("request.dependency_unavailable", path=request.path, error=type(exc).__name__)
    if isinstance(exc, _DATABASE_DOWN):
        # The page layout asks about the signed-in user; with the database gone, render anonymously.
        login_manager._update_request_context_with_user()
        return render_error(DatabaseError("The database is unreachable right now; try again in a minute."))
    return render_error(QueueUnavailableError())


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("request.unhandled_exception", path=request.path)
    return render_error(ArbionError())


def init_error_handlers(app: Flask) -> None:
    """Register the handlers for our errors, HTTP errors and anything unexpected."""
    app.register_error_handler(ArbionError, render_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    for outage in (*_DATABASE_DOWN, *_QUEUE_DOWN):
        app.register_error_handler(outage, _handle_outage)
    app.register_error_handler(Exception, _handle_unexpected)
