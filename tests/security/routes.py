"""The app's routes as the security battery sees them: every (method, rule) of the URL map, the
OpenAPI operations, concrete paths filled with seeded ids, and a recorder of database writes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from tests.support import csrf_token

IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
SAFE_METHODS = frozenset({"GET"})
WRITES = ("INSERT", "UPDATE", "DELETE")
_PARAMETER = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
# Values for the non-id parameters of the URL map (a new kind fails ``Route.path`` loudly).
PLAIN_VALUES = {"symbol": "BTC-USD", "filename": "css/app.css"}


@dataclass(frozen=True)
class Route:
    """One method of one URL rule."""

    method: str
    rule: str
    endpoint: str

    @property
    def unsafe(self) -> bool:
        """True for the methods that may change something."""
        return self.method not in SAFE_METHODS

    @property
    def is_api(self) -> bool:
        """True under /api/ (JSON answers, token or session auth)."""
        return self.rule.startswith("/api/")

    @property
    def is_admin(self) -> bool:
        """True for the admin pages and the admin API."""
        return self.rule.startswith(("/admin", "/api/v1/admin"))

    @property
    def object_ids(self) -> list[str]:
        """The names of the integer (object id) parameters of the rule."""
        return [name for converter, name in _PARAMETER.findall(self.rule) if converter == "int"]

    @property
    def template(self) -> str:
        """The rule in OpenAPI spelling: ``/orders/{order_id}``."""
        return _PARAMETER.sub(lambda match: "{" + match.group(2) + "}", self.rule)

    def path(self, ids: Mapping[str, int]) -> str:
        """The rule with every parameter filled (ids from ``ids``, others from PLAIN_VALUES)."""

        def value(match: re.Match[str]) -> str:
            name = match.group(2)
            known = {**PLAIN_VALUES, **ids}
            assert name in known, f"{self.rule}: new parameter {name!r}, add it to the security battery"
            return str(known[name])

        return _PARAMETER.sub(value, self.rule)


def all_routes(app: Flask) -> list[Route]:
    """Every method of every rule of the URL map, in a stable order."""
    found = {
        Route(method, rule.rule, rule.endpoint)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or set()) - IGNORED_METHODS
    }
    return sorted(found, key=lambda route: (route.rule, route.method))


def is_public(app: Flask, route: Route) -> bool:
    """True when the view is marked @public (or is the static files)."""
    return route.endpoint == "static" or getattr(app.view_functions[route.endpoint], "is_public", False)


def spec_operations(client: FlaskClient) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) of every operation of the served OpenAPI document."""
    spec = client.get("/api/v1/openapi.json").json
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method.upper() not in IGNORED_METHODS and method != "parameters"
    }


def anonymous_csrf(client: FlaskClient) -> str:
    """A valid CSRF token of an anonymous session (from the login form)."""
    return csrf_token(client, "/auth/login")


def send(
    client: FlaskClient, route: Route, path: str, token: str | None, form: Mapping[str, str], body: Mapping[str, Any]
) -> Any:
    """Call ``route`` at ``path`` the way its own front end does: ``form`` and the CSRF field for a
    page, ``body`` as JSON with the X-CSRFToken header for the API; GETs carry neither."""
    if not route.unsafe:
        return client.open(path, method=route.method)
    if route.is_api:
        headers = {"X-CSRFToken": token} if token else {}
        return client.open(path, method=route.method, json=dict(body), headers=headers)
    return client.open(path, method=route.method, data={**form, **({"csrf_token": token} if token else {})})


@contextmanager
def recorded_writes(engine: Any) -> Iterator[list[str]]:
    """Collect every INSERT, UPDATE or DELETE sent to ``engine`` inside the block."""
    writes: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            writes.append(" ".join(statement.split())[:160])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield writes
    finally:
        event.remove(engine, "before_cursor_execute", record)
