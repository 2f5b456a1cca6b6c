"""The OpenAPI document: valid, complete, bearer auth documented; Swagger UI from local assets."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

SPEC_URL = "/api/v1/openapi.json"


def test_the_spec_is_valid_openapi_3_with_bearer_auth(client: FlaskClient) -> None:
    response = client.get(SPEC_URL)
    assert response.status_code == 200, "the spec is public: it holds no data"
    spec = response.json
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert {"bearerAuth": []} in spec["security"]


def test_every_api_route_is_documented(app: Flask, client: FlaskClient) -> None:
    documented = client.get(SPEC_URL).json["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == SPEC_URL:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in documented, path
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in documented[path], f"{method} {path}"


def test_errors_and_money_are_documented_as_they_are_sent(client: FlaskClient) -> None:
    spec = client.get(SPEC_URL).json
    envelope = spec["components"]["schemas"]["ErrorEnvelope"]["properties"]
    assert set(envelope) == {"error", "request_id"}
    order = spec["components"]["schemas"]["Order"]["properties"]
    assert order["average_fill_price"]["type"] == "string" and order["average_fill_price"]["format"] == "decimal"
    assert spec["paths"]["/api/v1/orders"]["post"]["responses"]["202"]


def test_the_docs_page_loads_only_local_assets_under_the_strict_csp(client: FlaskClient) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert any("swagger-ui-bundle.js" in asset for asset in assets)
    assert any("swagger-ui.css" in asset for asset in assets)
    assert any("swagger-init.js" in asset for asset in assets)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html), "no CDN"
    assert "<script>" not in html, "no inline script"
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert f'data-spec-url="{SPEC_URL}"' in html


def test_operations_are_grouped_under_described_human_tags(client: FlaskClient) -> None:
    spec = client.get(SPEC_URL).json
    tags = {tag["name"]: tag["description"] for tag in spec["tags"]}
    assert set(tags) == {"Orders", "Positions", "Trades", "Account", "Administration"}
    assert all(tags.values()), "every tag says what it holds"
    operations = [
        operation for path in spec["paths"].values() for key, operation in path.items() if key != "parameters"
    ]
    used = {tag for operation in operations for tag in operation["tags"]}
    assert used == set(tags), "no operation is filed under a blueprint name"
    assert spec["paths"]["/api/v1/orders"]["post"]["tags"] == ["Orders"]
