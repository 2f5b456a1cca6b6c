"""The platform's own overhead per order against the Schwab fake answering every call after 50 ms.

The fake (tests/fakes/schwab.py, served on 127.0.0.1 from this process) holds every answer
``LATENCY`` seconds. One user connects through the real OAuth login (schwab_logins), gets an API
token, and places orders one at a time; each is timed from the POST until the database holds the
broker's acknowledgement, and right before it a bare HTTP POST of the same order goes to the same
fake's order endpoint. Ratio = median(ours) / median(bare), in the same run.

The Schwab user's own risk limits (RiskSettings, set through risk_limits.set_limits) lift the
open-position, orders-a-day and notional caps and the equities market-hours rule (the fake's hours
follow the real clock); the quote and market-hours calls are still made. SCHWAB_ORDER_WRITES_PER_MINUTE
is raised so Schwab's 120-a-minute write throttle, which would otherwise pace a sequential run, only counts.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import sqlalchemy as sa
from flask import Flask

from bench import common
from bench.order_load import Account, Posted, acknowledged_status, latency_summary, place
from tests.fakes.schwab import SchwabFakeState, create_schwab_fake
from tests.fakes.server import FakeServer

LATENCY = 0.050
APP_KEY, APP_SECRET = "bench-app-key", "bench-app-secret"
CALLBACK = "https://127.0.0.1/connections/schwab/callback"
SYMBOL = "AAPL"
POLL_SECONDS = 0.002
LIFTED_LIMITS = {
    "max_open_positions": 1_000_000,
    "max_orders_per_day": 1_000_000,
    "max_position_notional": 1_000_000_000,
    "max_total_exposure": 1_000_000_000,
    "equities_market_hours_only": False,
}


@dataclass
class SchwabFake:
    """The running fake: its state, where it listens and the one account it holds."""

    state: SchwabFakeState
    base_url: str
    account_hash: str

    def settings(self) -> dict[str, str]:
        """The platform settings that point Schwab at this fake."""
        return {
            "SCHWAB_CLIENT_ID": APP_KEY,
            "SCHWAB_CLIENT_SECRET": APP_SECRET,
            "SCHWAB_REDIRECT_URI": CALLBACK,
            "SCHWAB_API_BASE_URL": self.base_url,
            "SCHWAB_ORDER_WRITES_PER_MINUTE": "1000000",
        }

    def quote_now(self) -> None:
        """A fresh quote (the risk engine refuses quotes older than RISK_MAX_QUOTE_AGE_SECONDS)."""
        self.state.set_price(SYMBOL, "100.00", bid="99.99", ask="100.01")


@contextmanager
def running_fake() -> Iterator[SchwabFake]:
    """The Schwab fake with one well-funded account, served until the block ends (no latency yet)."""
    app, state = create_schwab_fake(APP_KEY, APP_SECRET, redirect_uri=CALLBACK)
    account = state.add_account("87650001", cash="1000000000", buying_power="1000000000")
    server = FakeServer(app).start()
    try:
        fake = SchwabFake(state, server.base_url, account)
        fake.quote_now()
        yield fake
    finally:
        server.stop()


def connect_user(app: Flask, fake: SchwabFake) -> Account:
    """A trader connected to the fake through the real OAuth login, with lifted limits and a token."""
    from utils.enums import Role
    from utils.services import api_tokens, risk_limits, schwab_logins, users

    with app.app_context():
        trader = users.create_user("schwab-bench@example.com", common.PASSWORD)
        admin = users.create_user("schwab-admin@example.com", common.PASSWORD, Role.ADMIN)
        pending = schwab_logins.begin_login()
        answer = requests.get(pending.url, allow_redirects=False, timeout=5)
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        [connection] = schwab_logins.complete_login(trader, code, pending.verifier)
        risk_limits.set_limits(admin, trader, LIFTED_LIMITS)
        token = api_tokens.create_token(trader, "bench", ["read", "trade"]).plaintext
        return Account(trader.id, token, connection.id)


def measure(base_url: str, engine: sa.Engine, fake: SchwabFake, account: Account, orders: int) -> dict[str, Any]:
    """``orders`` sequential orders, each after a bare POST to the fake: times, ratio, calls per order."""
    fake.state.latency = LATENCY
    bare_ms, ours_ms, failures, posted = [], [], 0, Posted()
    before = Counter(fake.state.requests)
    try:
        with requests.Session() as platform, requests.Session() as broker, engine.connect() as connection:
            reader = connection.execution_options(isolation_level="AUTOCOMMIT")
            token = fake.state.issue_tokens()[0]
            for _ in range(orders):
                fake.quote_now()
                bare_ms.append(_bare_post(broker, fake, token))
                elapsed = _our_order(platform, base_url, reader, account, posted)
                failures += elapsed is None
                ours_ms.extend([elapsed] if elapsed is not None else [])
    finally:
        fake.state.latency = 0.0
    calls = Counter(fake.state.requests)
    calls.subtract(before)
    calls["POST /trader/v1/accounts/<account_hash>/orders"] -= orders  # the bare posts
    return _summary(bare_ms, ours_ms, failures, calls, orders) | {"api_ms": latency_summary(posted.latencies_ms)}


def _bare_post(session: requests.Session, fake: SchwabFake, token: str) -> float:
    """One POST of a market buy straight to the fake's order endpoint; milliseconds to its 201."""
    body = {
        "session": "NORMAL",
        "duration": "DAY",
        "orderType": "MARKET",
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [
            {"instruction": "BUY", "quantity": 1, "instrument": {"symbol": SYMBOL, "assetType": "EQUITY"}}
        ],
    }
    url = f"{fake.base_url}/trader/v1/accounts/{fake.account_hash}/orders"
    started = time.perf_counter()
    response = session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 201:
        raise RuntimeError(f"the fake refused a bare order: {response.status_code} {response.text}")
    return elapsed


def _our_order(
    session: requests.Session, base_url: str, reader: sa.Connection, account: Account, posted: Posted
) -> float | None:
    """POST one protected buy through the API and wait for the broker's acknowledgement in the database;
    milliseconds from the POST until it is stored, or None when refused or failed."""
    started = time.perf_counter()
    order_id = place(session, base_url, account, order_body(account.connection_id), posted)
    deadline = started + 10
    while order_id and time.perf_counter() < deadline:
        status = acknowledged_status(reader, order_id)
        if status:
            return (time.perf_counter() - started) * 1000 if status == "acknowledged" else None
        time.sleep(POLL_SECONDS)
    return None


def order_body(connection_id: int) -> dict[str, Any]:
    """A market buy of one share with its stop-loss 5% under the quote, as the API takes it."""
    return {
        "connection_id": connection_id,
        "symbol": SYMBOL,
        "side": "buy",
        "quantity": "1",
        "order_type": "market",
        "stop_loss_price": "95.00",
    }


def _summary(
    bare_ms: list[float], ours_ms: list[float], failures: int, calls: Counter[str], orders: int
) -> dict[str, Any]:
    bare, ours = statistics.median(bare_ms), statistics.median(ours_ms) if ours_ms else float("nan")
    per_order = {route: count / orders for route, count in sorted(calls.items()) if count > 0}
    round_trips = sum(per_order.values())
    return {
        "orders": orders,
        "failures": failures,
        "bare_post_ms": {"p50": bare, "p90": common.percentile(bare_ms, 0.9)},
        "end_to_end_ms": {"p50": ours, "p90": common.percentile(ours_ms, 0.9) if ours_ms else None},
        "ratio": ours / bare,
        "broker_calls_per_order": per_order,
        "platform_ms_beyond_broker_calls": ours - round_trips * bare,
    }
