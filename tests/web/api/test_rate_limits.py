"""API rate limits: per token, a stricter one for order writes, 429 with Retry-After in our envelope."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from models import BrokerConnection, User
from tests.web.api.conftest import bearer, order_body


@pytest.fixture()
def environ(environ: dict[str, str]) -> dict[str, str]:
    return environ | {"API_RATE_LIMIT": "5 per minute", "API_ORDER_RATE_LIMIT": "2 per minute"}


def test_the_api_limit_answers_429_with_retry_after(client: FlaskClient, trader: User, headers: dict) -> None:
    statuses = [client.get("/api/v1/orders", headers=headers).status_code for _ in range(5)]
    assert statuses == [200] * 5
    limited = client.get("/api/v1/positions", headers=headers)
    assert limited.status_code == 429, "one budget for every API resource"
    assert limited.json["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/orders", headers=bearer(trader)).status_code == 200, "each token has its own budget"


def test_order_writes_have_a_stricter_limit(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    placed = [client.post("/api/v1/orders", json=order_body(paper), headers=headers).status_code for _ in range(2)]
    assert placed == [202, 202]
    limited = client.post("/api/v1/orders", json=order_body(paper), headers=headers)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert client.post("/api/v1/positions/1/close", headers=headers).status_code == 429, "shared by every order write"
    assert client.get("/api/v1/orders", headers=headers).status_code == 200, "reads keep their own budget"


def test_order_writes_also_spend_the_api_budget(client: FlaskClient, paper: BrokerConnection, headers: dict) -> None:
    placed = [client.post("/api/v1/orders", json=order_body(paper), headers=headers).status_code for _ in range(2)]
    reads = [client.get("/api/v1/orders", headers=headers).status_code for _ in range(4)]
    assert placed == [202, 202] and reads == [200, 200, 200, 429]


def test_one_token_has_one_budget_however_the_header_is_spelled(client: FlaskClient, trader: User) -> None:
    token = bearer(trader)["Authorization"].split()[1]
    spellings = [f"Bearer {token}", f"bearer {token}", f"BEARER {token}", f"Bearer  {token}", f"bEaReR\t{token} "]
    statuses = [client.get("/api/v1/orders", headers={"Authorization": header}).status_code for header in spellings]
    assert statuses == [200] * 5, "every spelling authenticates"
    for header in spellings:
        limited = client.get("/api/v1/orders", headers={"Authorization": header})
        assert limited.status_code == 429, f"{header.split(token)[0]!r} must not open a fresh budget"
