"""SEC-05 CSRF: every unsafe route of the URL map refuses a session call with a missing or wrong
CSRF token (pages: the form field, the API: the X-CSRFToken header) and changes nothing; and no
GET route, called as a trader and as an admin with real ids, writes to the database."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import User
from tests.security.conftest import World
from tests.security.routes import Route, all_routes, is_public, recorded_writes, send
from tests.support import login, post_form
from tests.web.api.conftest import bearer, order_body
from utils.extensions import db

# Valid fields for every form, so the missing token is the only thing wrong with the request.
FORM = {"quantity": "1", "limit_price": "100", "stop_price": "95", "confirm": "y", "label": "x", "role": "admin"}
# Writes a GET may cause, each for a reason that is not a change the caller asked for.
JUSTIFIED_GET_WRITES = {
    # Token bookkeeping (at most once a minute per token): the tokens page shows when each token
    # was last used, so a user can spot a leaked one.
    "UPDATE api_tokens SET last_used_at": "token last use",
}


def unsafe_routes(app: Flask) -> list[Route]:
    """Every unsafe method of every rule (public ones such as the login form included)."""
    routes = [route for route in all_routes(app) if route.unsafe]
    assert len(routes) >= 35
    return routes


def signed_in_as(app: Flask, user: User | None) -> FlaskClient:
    """A client logged in as ``user`` (anonymous for None)."""
    client = app.test_client()
    if user is not None:
        login(client, user.email)
    return client


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_every_unsafe_route_refuses_a_session_call_without_the_right_csrf_token(
    app: Flask, world: World, token: str | None
) -> None:
    trader, admin, anonymous = signed_in_as(app, world.owner), signed_in_as(app, world.root), signed_in_as(app, None)
    with recorded_writes(db.engine) as writes:
        for route in unsafe_routes(app):
            client = anonymous if is_public(app, route) else admin if route.is_admin else trader
            response = send(client, route, route.path(world.ids()), token, FORM, FORM)
            assert response.status_code == 400, (route, response.status_code)
            if route.is_api:
                assert response.json["error"]["code"] == "csrf_failed", route
    assert writes == [], "a refused request must not change anything"
    assert trader.get("/").status_code == 200 and admin.get("/admin/users/").status_code == 200, "still signed in"


def test_token_calls_need_no_csrf_token(client: FlaskClient, world: World) -> None:
    headers = bearer(world.owner, ["read", "trade"])
    response = client.post("/api/v1/orders", json=order_body(world.connection), headers=headers)
    assert response.status_code == 202


@pytest.mark.parametrize("caller", ["trader", "superadmin", "trader token", "superadmin token"])
def test_no_get_route_writes_to_the_database(app: Flask, world: World, caller: str) -> None:
    user = world.owner if caller.startswith("trader") else world.root
    client = signed_in_as(app, None if caller.endswith("token") else user)
    headers = bearer(user, ["read", "admin"] if user.is_superadmin else ["read"]) if caller.endswith("token") else {}
    unexpected = []
    for route in all_routes(app):
        if route.unsafe or (headers and not route.is_api):
            continue
        with recorded_writes(db.engine) as writes:
            response = client.get(route.path(world.ids()), headers=headers)
        assert response.status_code != 500, route
        unexpected += [(route.rule, write) for write in writes if not write.startswith(tuple(JUSTIFIED_GET_WRITES))]
    assert unexpected == []


def test_the_write_recorder_sees_a_post_that_changes_state(app: Flask, world: World) -> None:
    client = signed_in_as(app, world.owner)
    with recorded_writes(db.engine) as writes:
        assert post_form(client, "/notifications/", "/notifications/read").status_code == 302
    assert any(write.startswith("UPDATE notifications") for write in writes), writes
