"""SEC-01 Access matrix: built from the URL map and the OpenAPI document, so a new route cannot
escape it. Another trader's object ids are 404, a token without the scope 403, anonymous callers
401 (API) or sent to the login page (pages); only an explicit allowlist is public."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from models import ApiToken, Order, Trade
from tests.security.conftest import World
from tests.security.routes import Route, all_routes, anonymous_csrf, is_public, send, spec_operations
from tests.support import login
from tests.web.api.conftest import bearer, session_csrf
from utils.enums import OrderStatus, TradeStatus
from utils.extensions import db

# Adding a public route means adding it here, on purpose.
PUBLIC_ENDPOINTS = {
    "static",
    "health.health",
    "health.ready",
    "auth.login",
    "auth.second_step",
    "api_docs.openapi_json",
    "api_docs.swagger_ui",
}
# Valid fields for every form and JSON body of an id route, so ownership is what refuses, not validation.
FORM = {"quantity": "1", "limit_price": "100", "stop_price": "95", "confirm": "y"}
BODY = {"stop_price": "95"}  # the one field both the order replace and the stop move take


def object_routes(app: Flask) -> list[Route]:
    """Trader routes naming an object by id (admin routes are SEC-02's)."""
    return [route for route in all_routes(app) if route.object_ids and not route.is_admin]


def api_operations(app: Flask) -> list[Route]:
    """Every documented /api/v1 operation (the spec's own routes excluded)."""
    return [route for route in all_routes(app) if route.is_api and not is_public(app, route)]


def test_the_public_endpoints_are_exactly_the_allowlist(app: Flask) -> None:
    marked = {route.endpoint for route in all_routes(app) if is_public(app, route)}
    assert marked == PUBLIC_ENDPOINTS


def test_the_openapi_document_and_the_url_map_list_the_same_api_operations(app: Flask, client: FlaskClient) -> None:
    routed = {(route.method, route.template) for route in api_operations(app)}
    assert routed == spec_operations(client)
    assert len(routed) >= 14


def test_every_object_id_route_is_covered_and_only_admins_name_users(app: Flask, world: World) -> None:
    routes = [route for route in all_routes(app) if route.object_ids]
    for route in routes:
        route.path(world.ids())  # fails on an id kind the battery does not seed yet
        assert "user_id" not in route.object_ids or route.is_admin, route
    assert len(object_routes(app)) >= 12


def test_another_trader_gets_404_for_every_object_of_the_owner(app: Flask, client: FlaskClient, world: World) -> None:
    login(client, world.other.email)
    token = session_csrf(client)
    for route in object_routes(app):
        response = send(client, route, route.path(world.ids()), token, FORM, BODY)
        assert response.status_code == 404, (route, response.status_code)
    assert_owner_objects_untouched(world)


def test_another_traders_token_gets_404_for_every_object_of_the_owner(
    app: Flask, client: FlaskClient, world: World
) -> None:
    headers = bearer(world.other, ["read", "trade"])
    for route in object_routes(app):
        if route.is_api:
            response = client.open(route.path(world.ids()), method=route.method, json=BODY, headers=headers)
            assert response.status_code == 404, route
            assert response.json["error"]["code"] == "not_found"
    assert_owner_objects_untouched(world)


def test_a_token_without_the_needed_scope_gets_403_on_every_operation(
    app: Flask, client: FlaskClient, world: World
) -> None:
    read_only, trade_only = bearer(world.owner, ["read"]), bearer(world.owner, ["trade"])
    not_admin = bearer(world.root, ["read", "trade"])
    for route in api_operations(app):
        headers = not_admin if route.is_admin else read_only if route.unsafe else trade_only
        response = client.open(route.path(world.ids()), method=route.method, json=BODY, headers=headers)
        assert response.status_code == 403, route
        assert response.json["error"]["details"]["required_scope"] in {"read", "trade", "admin"}
    assert_owner_objects_untouched(world)


def test_anonymous_callers_get_401_from_the_api_and_the_login_page_elsewhere(
    app: Flask, client: FlaskClient, world: World
) -> None:
    token = anonymous_csrf(client)
    for route in all_routes(app):
        if is_public(app, route):
            continue
        response = send(client, route, route.path(world.ids()), token, FORM, BODY)
        if route.is_api:
            assert response.status_code == 401, route
            assert response.json["error"]["code"] == "authentication_required"
        else:
            assert response.status_code == 302, route
            assert response.headers["Location"].startswith("/auth/login"), route
    assert_owner_objects_untouched(world)


def test_the_public_endpoints_answer_anonymous_callers(app: Flask, client: FlaskClient, world: World) -> None:
    for route in all_routes(app):
        if is_public(app, route) and not route.unsafe:
            response = client.get(route.path(world.ids()))
            assert response.status_code in {200, 302, 503}, route
            assert "next=" not in response.headers.get("Location", ""), "the login guard must not stop it"


def test_an_api_token_does_not_open_pages(app: Flask, client: FlaskClient, world: World) -> None:
    headers = bearer(world.owner, ["read", "trade"])
    for route in all_routes(app):
        if not route.is_api and not route.unsafe and not is_public(app, route):
            response = client.get(route.path(world.ids()), headers=headers)
            assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login"), route


def assert_owner_objects_untouched(world: World) -> None:
    """The refused calls changed none of the owner's objects."""
    db.session.expire_all()
    assert db.session.get(Order, world.order.id).status == OrderStatus.WORKING
    assert db.session.get(Trade, world.trade.id).status == TradeStatus.OPEN
    assert db.session.get(ApiToken, world.token.id).revoked_at is None
