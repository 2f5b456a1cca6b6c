"""SEC-19 Form and query fuzzing: every form field and query parameter of every route, and every
id in a path, with the input that used to end in a 500 on PostgreSQL.

The parameters are enumerated, not listed by hand: the fields of every form the pages render (as
a trader and as a superadmin), every name the views read from ``request.args``/``request.form``
(found in their source), and the query parameters and body properties of the OpenAPI document.
Each hostile value is sent in all of a route's parameters at once, as the trader (the superadmin
on admin routes, nobody on public ones), with a valid CSRF token so it reaches the view. Pass: no
5xx anywhere; what the app-wide filter refuses (NUL and control characters, lone surrogates,
JSON nested too deeply, ids no id column holds) is a 4xx that writes nothing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.security.conftest import World
from tests.security.routes import Route, all_routes, is_public, recorded_writes
from tests.support import form_csrf_token, login
from utils.extensions import db
from utils.web.inputs import MAX_JSON_DEPTH

WEB_SOURCES = Path(__file__).resolve().parents[2] / "utils" / "web"
_READ_NAME = re.compile(r"request\.(args|form)(?:\.get\(|\[)\"(\w+)\"")
# Sent in every parameter of every route; True: the filter refuses it before any view runs.
HOSTILE = {
    "nul": ("a\x00b", True),
    "control": ("a\x1b[31mb", True),
    "huge int": (str(2**64), False),
    "huge digits": ("9" * 5000, False),
    "negative huge": (str(-(2**70)), False),
    "snan": ("sNaN", False),
    "nan": ("NaN", False),
    "infinity": ("-Infinity", False),
    "exponent": ("1e999999", False),
    "long text": ("x" * 20_000, False),
}
HUGE_IDS = (str(2**31), str(2**63), str(2**64), "9" * 5000)
# The readiness probe answers 503 while no worker beats, as in these tests: that is its answer.
EXPECTED_5XX = {"/ready": 503}
# Actions that end the caller's session or remove the seeded objects run after the others.
LAST = ("/auth/logout", "/delete", "/deactivate", "/reset", "/reset-password", "/role", "/disable", "/flatten")


class _FormFields(HTMLParser):
    """(METHOD, action path) -> the names of the fields of every <form> in a page."""

    def __init__(self, page_path: str) -> None:
        super().__init__()
        self.page_path = page_path
        self.forms: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._current: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a form, or add a named field to the open one."""
        attributes = dict(attrs)
        if tag == "form":
            action = urlsplit(attributes.get("action") or self.page_path).path or self.page_path
            self._current = ((attributes.get("method") or "get").upper(), action)
            self.forms[self._current] |= set()
        elif tag in ("input", "select", "textarea", "button") and self._current and attributes.get("name"):
            self.forms[self._current].add(str(attributes["name"]))

    def handle_endtag(self, tag: str) -> None:
        """Close the open form."""
        if tag == "form":
            self._current = None


def signed_in(app: Flask, email: str | None) -> FlaskClient:
    """A client signed in as ``email`` (anonymous for None)."""
    client = app.test_client()
    if email:
        login(client, email)
    return client


def session_csrf(client: FlaskClient) -> str:
    """The CSRF token of the client's session (from a page every caller can open)."""
    return form_csrf_token(client.get("/auth/login" if client.get("/").status_code == 302 else "/account/tokens/").text)


def rendered_forms(clients: list[FlaskClient], routes: list[Route], ids: dict[str, int]) -> dict[Any, set[str]]:
    """The fields of every form of every page the clients can open, by (METHOD, endpoint)."""
    fields: dict[Any, set[str]] = defaultdict(set)
    adapter = clients[0].application.url_map.bind("localhost")
    for client in clients:
        for route in routes:
            if route.unsafe or route.is_api or route.endpoint == "static":
                continue
            response = client.get(route.path(ids))
            if response.mimetype != "text/html":
                continue
            parser = _FormFields(route.path(ids))
            parser.feed(response.get_data(as_text=True))
            for (method, action), names in parser.forms.items():
                endpoint = adapter.match(action, method=method)[0]
                fields[(method, endpoint)] |= names - {"csrf_token"}
    return fields


def names_read_by_views() -> set[str]:
    """Every name a view reads from the query string or the form by hand."""
    return {match[1] for source in WEB_SOURCES.rglob("*.py") for match in _READ_NAME.findall(source.read_text())}


def api_parameters(client: FlaskClient) -> dict[tuple[str, str], set[str]]:
    """(METHOD, /path/{param}) -> its query parameters and JSON body properties, from the spec."""
    spec = client.get("/api/v1/openapi.json").json
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            schema = spec["components"]["schemas"].get(body.get("$ref", "").rsplit("/", 1)[-1], body)
            found[(method.upper(), path)] = names | set(schema.get("properties", {}))
    return found


class Fuzzer:
    """Sends one hostile value in every parameter of a route, as the right caller."""

    def __init__(self, app: Flask, world: World) -> None:
        self.ids = world.ids()
        self.trader, self.admin = signed_in(app, world.owner.email), signed_in(app, world.root.email)
        self.anonymous = signed_in(app, None)
        routes = all_routes(app)
        self.forms = rendered_forms([self.trader, self.admin, self.anonymous], routes, self.ids)
        self.read_by_views = names_read_by_views()
        self.api = api_parameters(self.trader)
        self.routes = sorted(routes, key=lambda route: (route.rule.endswith(LAST), route.rule, route.method))
        self.tokens = {id(client): session_csrf(client) for client in (self.trader, self.admin, self.anonymous)}

    def client_for(self, app: Flask, route: Route) -> FlaskClient:
        """Nobody for public routes, the superadmin for admin routes, the trader for the rest."""
        return self.anonymous if is_public(app, route) else self.admin if route.is_admin else self.trader

    def parameters(self, route: Route) -> set[str]:
        """Every name the route may read: its forms' fields, the views' names, the spec's."""
        if route.is_api:
            return self.api.get((route.method, route.template), set())
        return self.forms.get((route.method, route.endpoint), set()) | self.read_by_views

    def fillings(self, route: Route, value: Any, *, one_by_one: bool) -> list[dict[str, Any]]:
        """``value`` in every parameter at once; for a GET also in each alone when asked, since a
        read may stop at its first bad parameter (forms and schemas validate every field)."""
        names = sorted(self.parameters(route))
        alone = [{name: value} for name in names] if one_by_one and not route.unsafe else []
        return [dict.fromkeys(names, value), *alone]

    def send(self, client: FlaskClient, route: Route, path: str, filled: dict[str, Any]) -> Any:
        """``filled`` as the query string of a GET, else as the form (pages) or JSON body (API)."""
        token = self.tokens[id(client)]
        if not route.unsafe:
            return client.get(path, query_string=filled)
        if route.is_api:
            return client.open(path, method=route.method, json=filled, headers={"X-CSRFToken": token})
        return client.open(path, method=route.method, data={**filled, "csrf_token": token})


@pytest.fixture()
def fuzzer(app: Flask, world: World) -> Fuzzer:
    """The enumerated routes and parameters, and the three callers."""
    return Fuzzer(app, world)


def test_the_enumeration_finds_the_forms_and_parameters(fuzzer: Fuzzer) -> None:
    assert len(fuzzer.routes) >= 70
    assert {"email", "password"} <= fuzzer.forms[("POST", "auth.login")]
    assert {"symbol", "quantity", "limit_price"} <= fuzzer.forms[("POST", "orders.place")]
    assert {"symbol", "status", "connection"} <= fuzzer.forms[("GET", "orders.index")]
    assert "q" in fuzzer.forms[("GET", "admin.users.index")] | fuzzer.read_by_views
    assert {"page", "next", "interval"} <= fuzzer.read_by_views
    assert {"connection_id", "page", "symbol"} <= fuzzer.api[("GET", "/api/v1/orders")]
    assert {"connection_id", "quantity"} <= fuzzer.api[("POST", "/api/v1/orders")]


@pytest.mark.parametrize("kind", HOSTILE)
def test_every_form_and_query_parameter_survives_hostile_input(app: Flask, fuzzer: Fuzzer, kind: str) -> None:
    value, refused = HOSTILE[kind]
    failures, written, last_reached = [], [], False
    for route in fuzzer.routes:
        if route.endpoint == "static":
            continue
        if route.rule.endswith(LAST) and not last_reached:
            last_reached = True
            assert fuzzer.trader.get("/").status_code == 200, "the trader stays signed in until the last routes"
        for filled in fuzzer.fillings(route, value, one_by_one=not refused):
            with recorded_writes(db.engine) as writes:
                response = fuzzer.send(fuzzer.client_for(app, route), route, route.path(fuzzer.ids), filled)
            status, where = response.status_code, (route.method, route.rule, sorted(filled)[:3])
            if (status >= 500 and EXPECTED_5XX.get(route.rule) != status) or (refused and filled and status < 400):
                failures.append((*where, status))
            written += [(route.rule, write) for write in writes if refused and filled]
    assert failures == [], f"{kind}: {failures}"
    assert written == [], f"{kind}: a refused request must not change anything"


@pytest.mark.parametrize("huge", HUGE_IDS, ids=["2^31", "2^63", "2^64", "5000 digits"])
def test_an_id_no_column_can_hold_is_not_found_and_changes_nothing(app: Flask, fuzzer: Fuzzer, huge: str) -> None:
    routes = [route for route in fuzzer.routes if route.object_ids]
    assert len(routes) >= 20
    answers = {}
    with recorded_writes(db.engine) as writes:
        for route in routes:
            ids = {**fuzzer.ids, **dict.fromkeys(route.object_ids, huge)}
            answers[(route.method, route.rule)] = fuzzer.send(fuzzer.client_for(app, route), route, route.path(ids), {})
    assert {key: r.status_code for key, r in answers.items() if r.status_code != 404} == {}
    assert [w for w in writes if not w.startswith("UPDATE api_tokens")] == []


@pytest.mark.parametrize("surrogate", ["\ud800", "\udfff"])
def test_a_lone_surrogate_in_json_is_refused(client: FlaskClient, world: World, surrogate: str) -> None:
    login(client, world.owner.email)
    token = session_csrf(client)
    symbol = json.dumps(surrogate)  # the escape \\ud800, as a client would send it
    body = f'{{"connection_id": {world.connection.id}, "symbol": {symbol}, "side": "buy", "quantity": "1"}}'
    with recorded_writes(db.engine) as writes:
        response = client.post(
            "/api/v1/orders", data=body, content_type="application/json", headers={"X-CSRFToken": token}
        )
    assert response.status_code == 422 and response.json["error"]["details"]["fields"] == {
        "symbol": ["Text may not contain a NUL or other control character."]
    }
    assert writes == []


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
@pytest.mark.parametrize("path", ["/api/v1/orders", "/orders/new"])
def test_json_nested_too_deeply_is_refused_everywhere(client: FlaskClient, world: World, depth: int, path: str) -> None:
    login(client, world.owner.email)
    token = session_csrf(client)
    body = '{"symbol": ' + "[" * depth + "]" * depth + "}"
    with recorded_writes(db.engine) as writes:
        response = client.post(path, data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert "nested too deeply" in response.json["error"]["message"]
    assert writes == []


def test_json_as_deep_as_allowed_and_brackets_inside_strings_pass_the_filter(client: FlaskClient, world: World) -> None:
    login(client, world.owner.email)
    token = session_csrf(client)
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    body = '{"symbol": ' + nested + ', "note": "' + '[{\\"' * 100 + '"}'
    response = client.post("/api/v1/orders", data=body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 422
    assert "nested too deeply" not in response.json["error"]["message"], "refused by the schema, not the filter"
