"""SEC-13 Injection and redirects: login's ``next`` never leads off the site; user-controlled text is
escaped on every page that shows it; SQL filters bind their values (and the code builds no SQL
from strings); no script writes HTML from data."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from werkzeug.test import TestResponse

from models import Order, Trade, User
from tests.security.conftest import World
from tests.security.routes import all_routes
from tests.support import DEFAULT_PASSWORD, csrf_token, login, make_user
from tests.trading_support import stored_order
from tests.web.api.conftest import bearer
from utils.enums import OrderPurpose, OrderStatus, Role, TradingState
from utils.extensions import db
from utils.services import api_tokens, notifications, trading_state

ROOT = Path(__file__).resolve().parents[2]
OFF_SITE = [
    "https://evil.example/",
    "HTTPS://evil.example",
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "https:evil.example",
    "http:/\\evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "%5C%5Cevil.example",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "//evil.example%2F@localhost",
]
SQL_INJECTION = "' OR 1=1 --"


def xss(n: int) -> str:
    """A script tag that would run if shown unescaped (``n`` tells the fields apart)."""
    return f"<script>alert({n})</script>"


def assert_same_site(location: str) -> None:
    """A Location a browser resolves on this site: a relative path, no scheme, no host, no tricks."""
    parts = urlsplit(location)
    assert location.startswith("/") and not location.startswith("//"), location
    assert not parts.scheme and not parts.netloc and "\\" not in location, location
    assert not any(char.isspace() or ord(char) < 0x20 for char in location), location


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_the_site(client: FlaskClient, trader: User, target: str) -> None:
    response = login_with_next(client, target)
    assert response.status_code == 302
    assert_same_site(response.headers["Location"])
    signed_in = client.get("/auth/login", query_string={"next": target})
    assert signed_in.status_code == 302
    assert_same_site(signed_in.headers["Location"])


def test_login_keeps_a_same_site_next(client: FlaskClient, trader: User) -> None:
    response = login_with_next(client, "/orders/?symbol=BTC-USD")
    assert response.headers["Location"] == "/orders/?symbol=BTC-USD"


def login_with_next(client: FlaskClient, target: str) -> TestResponse:
    """Log in through the form served for ``?next=target``, with that ``next`` in the post."""
    token = csrf_token(client, "/auth/login?next=" + quote(target))
    data = {"email": "trader@example.com", "password": DEFAULT_PASSWORD, "next": target}
    return client.post("/auth/login", data=data | {"csrf_token": token})


# The user-controlled fields pages show; each gets its own script tag.
FIELDS = (
    "display name",
    "connection label",
    "connection status",
    "symbol",
    "order status detail",
    "protection detail",
    "notification",
    "token name",
    "user trading reason",
    "platform reason",
)
REFLECTED = xss(99)  # sent in query strings and paths: reflected input


def seed_scripts(world: World) -> dict[str, str]:
    """A script tag in every user-controlled field a page shows; field -> payload."""
    payloads = {field: xss(n) for n, field in enumerate(FIELDS)}
    owner = world.owner
    owner.display_name = payloads["display name"]
    world.connection.label = payloads["connection label"]
    world.connection.status_detail = payloads["connection status"]
    stored_order(world.connection, payloads["symbol"], OrderPurpose.ENTRY, OrderStatus.REJECTED)
    db.session.get(Order, world.order.id).status_detail = payloads["order status detail"]
    db.session.get(Trade, world.trade.id).protection_detail = payloads["protection detail"]
    notifications.notify(owner.id, "test", payloads["notification"])
    db.session.commit()
    api_tokens.create_token(owner, payloads["token name"], ["read"])
    trading_state.set_user_trading_state(world.root, owner, TradingState.REDUCING, payloads["user trading reason"])
    trading_state.set_global_trading_state(world.root, TradingState.REDUCING, payloads["platform reason"])
    return payloads


def html_pages(app: Flask, client: FlaskClient, world: World) -> dict[str, str]:
    """Every GET page of the URL map, and those that echo a query, as seen by ``client``."""
    paths = [route.path(world.ids()) for route in all_routes(app) if not route.unsafe and not route.is_api]
    paths += [
        f"/admin/users/?q={quote(REFLECTED)}",
        f"/admin/system/audit?action={quote(REFLECTED)}&actor={quote(REFLECTED)}",
        f"/orders/?symbol={quote(REFLECTED)}",
        f"/orders/new?symbol={quote(REFLECTED)}",
        f"/charts/{world.connection.id}/{quote(REFLECTED, safe='')}",
    ]
    pages = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code != 500, path
        if response.mimetype == "text/html":
            pages[path] = response.get_data(as_text=True)
    return pages


def test_user_controlled_text_is_escaped_on_every_page(app: Flask, world: World) -> None:
    payloads = seed_scripts(world)
    shown: dict[str, str] = {}
    for user in (world.owner, world.root):
        client = app.test_client()
        login(client, user.email)
        shown |= {f"{user.email} {path}": body for path, body in html_pages(app, client, world).items()}
    anonymous = app.test_client().get(f"/auth/login?next={quote(REFLECTED)}").get_data(as_text=True)
    shown["anonymous login"] = anonymous
    for where, body in shown.items():
        assert "<script>alert(" not in body, f"unescaped script on {where}"
    everything = "\n".join(shown.values())
    missing = [field for field, payload in payloads.items() if str(escape(payload)) not in everything]
    assert missing == [], "each seeded field is shown (escaped) somewhere"
    assert str(escape(REFLECTED)) in anonymous


def test_filters_bind_their_values(app: Flask, client: FlaskClient, world: World) -> None:
    headers, admin = bearer(world.owner, ["read"]), bearer(world.root, ["read", "admin"])
    for path in ("/api/v1/orders", "/api/v1/trades"):
        response = client.get(path, query_string={"symbol": SQL_INJECTION}, headers=headers)
        assert response.status_code == 200 and response.json["items"] == [], path
    response = client.get("/api/v1/admin/audit", query_string={"action": SQL_INJECTION}, headers=admin)
    assert response.status_code == 200 and response.json == []
    quotes = client.get("/api/v1/quotes", query_string={"symbols": SQL_INJECTION}, headers=headers)
    assert quotes.status_code < 500
    login(client, world.root.email)
    for query in (SQL_INJECTION, "%", "_"):
        page = client.get("/admin/users/", query_string={"q": query}).get_data(as_text=True)
        assert world.owner.email not in page and world.other.email not in page, query
    page = client.get("/admin/system/audit", query_string={"action": SQL_INJECTION}).get_data(as_text=True)
    assert "No entries match" in page


def test_user_search_matches_wildcard_characters_literally(client: FlaskClient, world: World) -> None:
    make_user("under_score@example.com", Role.TRADER)
    login(client, world.root.email)
    page = client.get("/admin/users/", query_string={"q": "d_r"}).get_data(as_text=True)
    assert "under_score@example.com" not in page and world.owner.email not in page
    page = client.get("/admin/users/", query_string={"q": "r_s"}).get_data(as_text=True)
    assert "under_score@example.com" in page and world.owner.email not in page


SQL_CALLS = {"text", "execute", "exec_driver_sql", "literal_column"}
# SQL built from strings on purpose, each with why no input can reach it.
BUILT_SQL_ALLOWED = {
    # Partial index predicates (one live exit per trade, live orders, open trades), built at import
    # time from enum constants.
    ("models.py", "ACTIVE_EXIT = sa.text("),
    ("models.py", "LIVE_ORDER = sa.text(f"),
    ("models.py", "WATCHED_TRADE = sa.tex"),
}


def built_sql(tree: ast.AST) -> list[int]:
    """Lines where a SQL call's first argument is built from strings (f-string, %, + or .format)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0]
        built = isinstance(first, ast.JoinedStr) or (
            isinstance(first, ast.BinOp) and isinstance(first.op, ast.Mod | ast.Add)
        )
        formatted = isinstance(first, ast.Call) and getattr(first.func, "attr", "") == "format"
        if name in SQL_CALLS and (built or formatted):
            found.append(node.lineno)
    return sorted(found)


def test_the_scan_finds_sql_built_from_strings() -> None:
    sample = 'db.session.execute(text(f"SELECT {x}"))\nconn.exec_driver_sql("DELETE " + t)\ntext("%s" % x)\n'
    assert built_sql(ast.parse(sample)) == [1, 2, 3]
    assert built_sql(ast.parse('db.session.execute(text("SELECT 1 WHERE a = :a"), {"a": x})')) == []


def test_no_sql_is_built_from_strings_in_the_product() -> None:
    sources = [*sorted((ROOT / "utils").rglob("*.py")), ROOT / "models.py", ROOT / "app.py"]
    offenders = set()
    for path in sources:
        source = path.read_text()
        lines = source.splitlines()
        for number in built_sql(ast.parse(source)):
            offenders.add((str(path.relative_to(ROOT)), lines[number - 1].strip()[:22]))
    assert offenders == BUILT_SQL_ALLOWED
    assert len(sources) > 50


def test_no_script_writes_html_from_data() -> None:
    sinks = re.compile(r"\.innerHTML\s*=|\.outerHTML\s*=|insertAdjacentHTML|document\.write|eval\(")
    scripts = sorted((ROOT / "static" / "js").glob("*.js"))
    assert scripts
    assert [path.name for path in scripts if sinks.search(path.read_text())] == []
