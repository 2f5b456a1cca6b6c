"""HTTP adapters: blueprints, the login guard that covers every route, and error handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from flask_login import current_user

from models import User
from utils.enums import TradingState
from utils.extensions import login_manager
from utils.services import connections as broker_connections
from utils.services import notifications as notification_service
from utils.services import trading_state, users

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def public(view: ViewFunc) -> ViewFunc:
    """Mark a view as reachable without logging in (everything else requires a login)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def init_web(app: Flask) -> None:
    """Register the input filter, the login machinery, the global login guard, error handlers and blueprints."""
    from utils.web import (
        account,
        admin,
        api,
        auth,
        charts,
        connections,
        dashboard,
        errors,
        formatting,
        health,
        inputs,
        notifications,
        orders,
        positions,
        session_limits,
        tokens,
    )

    inputs.init_inputs(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(errors.unauthorized)
    app.before_request(session_limits.enforce_session_timeouts)
    app.before_request(_require_login)
    app.context_processor(_template_globals)
    formatting.register_filters(app)
    errors.init_error_handlers(app)
    for blueprint in (
        health.bp,
        auth.bp,
        dashboard.bp,
        charts.bp,
        connections.bp,
        positions.bp,
        orders.bp,
        notifications.bp,
        account.bp,
        tokens.bp,
        admin.bp,
    ):
        app.register_blueprint(blueprint)
    api.init_api(app)


def _load_user(session_id: str) -> User | None:
    return users.user_for_session(session_id)


def _require_login() -> Any:
    """Deny by default: a route is public only when its view says so. The REST API's blueprints
    authenticate every call themselves (token or session) and answer 401 in JSON."""
    if request.endpoint is None or request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "is_public", False) or current_user.is_authenticated:
        return None
    if getattr(current_app.blueprints.get(request.blueprint or ""), "authenticates_itself", False):
        return None
    return login_manager.unauthorized()


def _template_globals() -> dict[str, Any]:
    return {
        "arbion_env": current_app.config["ARBION_ENV"],
        "connection_alerts": _connection_alerts,
        "unread_notifications": _unread_notifications,
        "platform_trading": _platform_trading,
    }


def _platform_trading() -> trading_state.TradingStatus | None:
    """The kill switch when it restricts trading (on every signed-in page), else None."""
    if not current_user.is_authenticated:
        return None
    status = trading_state.global_trading_state()
    return None if status.state == TradingState.ACTIVE else status


def _unread_notifications() -> int:
    """The badge in the navigation (logged-in pages only)."""
    return notification_service.unread_count(current_user.id) if current_user.is_authenticated else 0


def _connection_alerts() -> list[str]:
    """Called by the layout only for a logged-in user, so anonymous pages run no query."""
    return broker_connections.alerts(current_user) if current_user.is_authenticated else []
