"""SEC-06 Security headers on every kind of response (page, JSON answer, JSON and HTML errors,
static file, redirect, download, OpenAPI, probes): a strict CSP, no framing, no sniffing, a strict
referrer policy, and HSTS in the production configuration only (plain http elsewhere)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from app import create_app
from tests.security.conftest import World
from tests.support import DEFAULT_PASSWORD, IsolatedClient, login, post_form
from tests.two_factor_support import code_for, wrong_code
from tests.web.api.conftest import bearer

ONE_YEAR = 365 * 24 * 3600


@pytest.fixture(params=["testing", "production"])
def configured(request: pytest.FixtureRequest, app: Flask, environ: dict[str, str]) -> Iterator[tuple[Flask, str]]:
    """The test app over plain http, and one built from the same settings with ARBION_ENV=production
    behind its https proxy (which says so in X-Forwarded-Proto, as the platform's router does)."""
    if request.param == "testing":
        yield app, "http"
        return
    production = create_app(environ | {"ARBION_ENV": "production"})
    production.test_client_class = IsolatedClient
    yield production, "https"


def every_kind_of_response(app: Flask, scheme: str, world: World) -> dict[str, TestResponse]:
    """One response of each kind, checked to really be of that kind."""
    anonymous, trader = app.test_client(), app.test_client()
    for client in (anonymous, trader):
        client.environ_base["HTTP_X_FORWARDED_PROTO"] = scheme
    login(trader, world.owner.email)
    token = bearer(world.owner)
    expected = {
        "html page": (trader.get("/"), 200, "text/html"),
        "login page": (anonymous.get("/auth/login"), 200, "text/html"),
        "htmx fragment": (trader.get("/positions/table"), 200, "text/html"),
        "json api answer": (anonymous.get("/api/v1/orders", headers=token), 200, "application/json"),
        "json 401": (anonymous.get("/api/v1/orders"), 401, "application/json"),
        "json 404": (anonymous.get("/api/v1/orders/999999", headers=token), 404, "application/json"),
        "json 422": (anonymous.get("/api/v1/orders?page=x", headers=token), 422, "application/json"),
        "html 404": (trader.get("/no-such-page"), 404, "text/html"),
        "html 403": (trader.get("/admin/"), 403, "text/html"),
        "html 405": (trader.put("/"), 405, "text/html"),
        "static file": (anonymous.get("/static/css/app.css"), 200, "text/css"),
        "redirect": (anonymous.get("/orders/"), 302, "text/html"),
        "csv download": (trader.get("/orders/history.csv"), 200, "text/csv"),
        "chart json": (trader.get("/charts/equity.json"), 200, "application/json"),
        "openapi json": (anonymous.get("/api/v1/openapi.json"), 200, "application/json"),
        "api docs page": (anonymous.get("/api/docs"), 200, "text/html"),
        "health": (anonymous.get("/health"), 200, "application/json"),
        "readiness": (anonymous.get("/ready"), 503, "application/json"),  # no beat heartbeat in tests
    }
    for kind, (response, status, mimetype) in expected.items():
        assert (response.status_code, response.mimetype) == (status, mimetype), kind
    return {kind: response for kind, (response, _, _) in expected.items()}


def test_every_kind_of_response_carries_the_security_headers(configured: tuple[Flask, str], world: World) -> None:
    app, scheme = configured
    production = app.config["ARBION_ENV"] == "production"
    for kind, response in every_kind_of_response(app, scheme, world).items():
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
        assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'", kind
        assert directives["object-src"] == "'none'" and "unsafe-inline" not in policy, kind
        assert response.headers["X-Content-Type-Options"] == "nosniff", kind
        assert response.headers["X-Frame-Options"] == "DENY", kind
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", kind
        assert hsts_max_age(response) >= (ONE_YEAR if production else 0), kind
        assert production or "Strict-Transport-Security" not in response.headers, kind


def hsts_max_age(response: TestResponse) -> int:
    """The HSTS max-age in seconds (0 without the header)."""
    hsts = response.headers.get("Strict-Transport-Security", "max-age=0")
    return int(hsts.split(";")[0].removeprefix("max-age="))


# Every view that shows a secret, and what on its page is the secret. Such a view is marked with
# utils.web.safety.no_store; the test below checks the marks and this list agree both ways.
TOTP_KEY = re.compile(r'<code id="totp-secret">([A-Z2-7]{32})</code>')
RECOVERY_CODES = re.compile(r"<li><code>[a-z2-7-]{19}</code></li>")
SECRET_PAGES = {
    "admin.users.reset_password": re.compile(r'<code class="secret">[^<]{20,}</code>'),
    "tokens.create": re.compile(r'<code class="token-secret">arb_[\w-]{43}</code>'),
    "account.two_factor": TOTP_KEY,
    "account.enable_two_factor": re.compile(f"{TOTP_KEY.pattern}|{RECOVERY_CODES.pattern}"),
    "account.replace_recovery_codes": RECOVERY_CODES,
    "notifications.set_webhook": re.compile(r"Signing secret \(shown once, copy it now\): <code>[^<]{20,}</code>"),
}


def secret_pages(app: Flask, world: World) -> list[tuple[str, TestResponse]]:
    """Each secret page, reached the way a user reaches it; enrolment also after a wrong code (the
    page shows the key again)."""
    app.config["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] = True  # the test's hook is on the loopback
    owner, root = app.test_client(), app.test_client()
    login(owner, world.owner.email)
    login(root, world.root.email)
    user_page, token_fields = (
        f"/admin/users/{world.other.id}",
        {"name": "n", "scopes": "read", "password": DEFAULT_PASSWORD},
    )
    enrolment = owner.get("/account/two-factor")
    key = TOTP_KEY.search(enrolment.get_data(as_text=True))
    assert key, "the enrolment page shows its key"
    two_factor_form, enable = "/account/two-factor", "/account/two-factor/enable"
    return [
        ("admin.users.reset_password", post_form(root, user_page, f"{user_page}/reset-password")),
        ("tokens.create", post_form(owner, "/account/tokens/", "/account/tokens/", token_fields)),
        (
            "notifications.set_webhook",
            post_form(owner, "/notifications/", "/notifications/webhook", {"url": "http://127.0.0.1:9/hook"}),
        ),
        ("account.two_factor", enrolment),
        ("account.enable_two_factor", post_form(owner, two_factor_form, enable, {"code": wrong_code(key[1])})),
        ("account.enable_two_factor", post_form(owner, two_factor_form, enable, {"code": pyotp.TOTP(key[1]).now()})),
        (
            "account.replace_recovery_codes",
            post_form(
                owner,
                two_factor_form,
                "/account/two-factor/recovery-codes",
                {"password": DEFAULT_PASSWORD, "code": code_for(key[1])},
            ),
        ),
    ]


def test_every_page_that_shows_a_secret_is_never_stored(app: Flask, world: World) -> None:
    marked = {endpoint for endpoint, view in app.view_functions.items() if getattr(view, "shows_secret", False)}
    assert marked == set(SECRET_PAGES), "mark every view that shows a secret with @no_store, and list it here"
    for endpoint, response in secret_pages(app, world):
        assert SECRET_PAGES[endpoint].search(response.get_data(as_text=True)), f"{endpoint} shows its secret"
        assert response.headers["Cache-Control"] == "no-store", endpoint


def test_ordinary_pages_are_not_forced_no_store(app: Flask, world: World) -> None:
    """Pages without a secret keep the browser's back/forward cache: they send no freshness or
    validators, so no cache may reuse them anyway, and marking all of them would hide which ones
    must never be kept."""
    for kind, response in every_kind_of_response(app, "http", world).items():
        assert "no-store" not in response.headers.get("Cache-Control", ""), kind
        assert kind == "static file" or not {"Expires", "ETag", "Last-Modified"} & set(response.headers.keys()), kind
