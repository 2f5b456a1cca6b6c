"""One error envelope for API clients, a friendly page for browsers, nothing leaked on a 500."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from utils.exceptions import ArbionError, InsufficientFundsError, PositionSizeLimitError, RiskLimitExceededError
from utils.web import public

SECRET_DETAIL = "postgresql://arbion:hunter2@db.internal/prod"


@pytest.fixture()
def failing_app(app: Flask) -> Flask:
    """The app with two public routes that fail on purpose."""

    @public
    def risk_rejection() -> None:
        raise PositionSizeLimitError(details={"reasons": ["max position notional 10000 exceeded"]})

    @public
    def crash() -> None:
        raise RuntimeError(f"could not connect to {SECRET_DETAIL}")

    app.add_url_rule("/api/v1/_test/risk", view_func=risk_rejection)
    app.add_url_rule("/_test/crash", view_func=crash)
    app.add_url_rule("/api/v1/_test/crash", "api_crash", view_func=crash)
    return app


def test_domain_errors_become_the_json_envelope(failing_app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/_test/risk", headers={"X-Request-ID": "req-123"})
    assert response.status_code == 422
    assert response.get_json() == {
        "error": {
            "code": "position_size_limit",
            "message": "The order would exceed the position size limit.",
            "details": {"reasons": ["max position notional 10000 exceeded"]},
        },
        "request_id": "req-123",
    }
    assert response.headers["X-Request-ID"] == "req-123"


def test_unexpected_errors_are_a_generic_500_that_leaks_nothing(failing_app: Flask, client: FlaskClient) -> None:
    response = client.get("/api/v1/_test/crash")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == {"code": "internal_error", "message": "Something went wrong.", "details": {}}
    assert len(body["request_id"]) == 32
    assert "hunter2" not in response.get_data(as_text=True)


def test_browsers_get_a_friendly_page_with_a_reference(failing_app: Flask, client: FlaskClient) -> None:
    response = client.get("/_test/crash", headers={"Accept": "text/html"})
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong." in page and "Reference:" in page
    assert "hunter2" not in page and "Traceback" not in page


def test_unknown_api_paths_get_the_envelope(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_json_clients_are_told_to_authenticate(client: FlaskClient) -> None:
    response = client.get("/admin/", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "authentication_required"


def test_a_forged_request_id_is_replaced(client: FlaskClient) -> None:
    forged = "<script>alert(1)</script>" + "x" * 80
    response = client.get("/health", headers={"X-Request-ID": forged})
    assert response.headers["X-Request-ID"] != forged
    assert len(response.headers["X-Request-ID"]) == 32


def test_every_error_class_has_a_status_and_a_stable_code() -> None:
    def subclasses(cls: type) -> list[type]:
        return [cls] + [sub for child in cls.__subclasses__() for sub in subclasses(child)]

    classes = subclasses(ArbionError)
    assert len(classes) >= 30
    codes = [cls.code for cls in classes if cls.__module__ == "utils.exceptions"]
    assert len(codes) == len(set(codes)), "codes must be unique"
    assert all(400 <= cls.status <= 599 for cls in classes)
    assert issubclass(PositionSizeLimitError, RiskLimitExceededError)
    assert InsufficientFundsError().envelope("r")["error"]["code"] == "insufficient_funds"
