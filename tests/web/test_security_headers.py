"""Security headers on every response: a strict CSP, no framing, no sniffing, HSTS with https cookies."""

from __future__ import annotations

from flask.testing import FlaskClient

from app import create_app
from tests.support import IsolatedClient


def test_pages_and_api_answers_carry_the_headers(client: FlaskClient) -> None:
    for path in ("/auth/login", "/health", "/no-such-page"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "Strict-Transport-Security" not in response.headers, "plain http here: no HSTS"


def test_https_only_cookies_turn_on_hsts(environ: dict[str, str]) -> None:
    app = create_app(environ | {"SESSION_COOKIE_SECURE": "true"})
    app.test_client_class = IsolatedClient
    response = app.test_client().get("/health", base_url="https://localhost")
    assert "max-age=" in response.headers["Strict-Transport-Security"]
