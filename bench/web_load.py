"""Target 4: the dashboard and the API under load, and no N+1, over 1,000 users and a million trades.

1. The book: ``data.seed`` (1,000 users, 10,000 open protected trades over 500 symbols, closed history
   up to a million trades in all; the time it takes is reported), then two more traders inserted in
   SQL: a light one with 10 trades and a heavy one with 10,000.
2. No N+1, in process: a Flask test client signs each of the two in through the login form and
   counts the SQL statements of the dashboard, the orders history, the positions page, the chart
   data and the API's list endpoints; the counts must be the same for both.
3. Load, from a separate process: gunicorn (``stack.running``, 2 workers x 4 threads as in the
   Procfile, no Celery worker: nothing here enqueues), then ``locust --headless`` (bench/locustfile.py)
   on loopback, 20 users for a bounded time, once for GET / (users signed in through the login form)
   and once for GET /api/v1/positions (each user its own Bearer token). Every user is a different
   bench user. Percentiles come from every response time of the measured window.
   The targets are read with each user waiting about THINK_SECONDS after each answer; the same scenarios
   run again back to back (no think time) to show the capacity, reported beside them, not judged.

``python -m bench.web_load [--full]``: quick mode has 100,000 trades and 15 s of load per scenario
(about 70 s in all); full mode a million trades and 60 s (about 5 minutes, seeding included).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from bench import common, cpu, data, stack

LOCUSTFILE = common.ROOT / "bench" / "locustfile.py"
LOCUST = stack.BIN / "locust"
CONCURRENT_USERS = 20
THINK_SECONDS = 1.0  # mean wait of each user after each answer (the home page itself polls every 10 s)
REPEATS = 3  # in-process requests per page and trader (after one warm-up)
# Every simulated user signs in from 127.0.0.1, twice per run: the per-IP login limit (30 per 5 minutes) is
# for one attacker's address, not for twenty traders behind one load generator. Nothing else is relaxed.
OVERRIDES = {"LOGIN_LIMIT_PER_IP": "1000 per minute"}
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PAGES = ("/", "/orders/", "/positions/", "/charts/equity.json", "/charts/daily-pnl.json")
API_LISTS = ("/api/v1/positions", "/api/v1/orders", "/api/v1/trades", "/api/v1/connections")


@dataclass(frozen=True)
class Scale:
    """How big the book is and how long each load scenario runs."""

    book: data.Book
    seconds: int  # per scenario with think time (the targets)
    saturation_seconds: int  # per scenario back to back (capacity, for information)


QUICK = Scale(data.Book(users=1_000, positions=10_000, symbols=500, closed=90_000), seconds=15, saturation_seconds=10)
FULL = Scale(data.Book(users=1_000, positions=10_000, symbols=500, closed=990_000), seconds=60, saturation_seconds=20)


@dataclass(frozen=True)
class Trader:
    """An extra trader for the N+1 comparison: open trades over ``symbols`` symbols, then closed ones."""

    email: str
    open_trades: int
    closed_trades: int
    symbols: int

    @property
    def trades(self) -> int:
        """Open and closed together."""
        return self.open_trades + self.closed_trades


LIGHT = Trader("bench-light@example.com", open_trades=1, closed_trades=9, symbols=10)
HEAVY = Trader("bench-heavy@example.com", open_trades=1_000, closed_trades=9_000, symbols=50)


@dataclass(frozen=True)
class Scenario:
    """One load run: which locust user class, which request it measures, and the p95 target in ms."""

    name: str
    user_class: str
    request: str
    p95_target_ms: float


SCENARIOS = (
    Scenario("dashboard", "DashboardUser", "GET /", 150.0),
    Scenario("api_positions", "ApiUser", "GET /api/v1/positions", 50.0),
)


def run(quick: bool) -> dict[str, Any]:
    """Seed, count statements per request, load the real web processes; save and return the results."""
    scale = QUICK if quick else FULL
    app = common.fresh_app(OVERRIDES)
    from utils.extensions import db

    with app.app_context():
        engine = db.engine
        seeding = _seed(engine, scale.book)
        identities = _identities([data.email(n) for n in _spread(scale.book.users)])
        traders = _identities([LIGHT.email, HEAVY.email])
    statements = _statements_per_request(app, engine, traders)  # outside: each request its own app context
    with stack.running(OVERRIDES, web_workers=2, threads=4, celery_workers=0) as platform:
        loads = [_load(platform, engine, each, identities, scale.seconds, THINK_SECONDS) for each in SCENARIOS]
        saturation = [_load(platform, engine, each, identities, scale.saturation_seconds, 0.0) for each in SCENARIOS]
    result = _result(scale, seeding, loads, saturation, statements)
    common.save("web_load", result)
    return result


def _result(
    scale: Scale,
    seeding: dict[str, Any],
    loads: list[dict[str, Any]],
    saturation: list[dict[str, Any]],
    statements: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything bench.report needs (title, about, tables, targets) and the raw measurements."""
    book = {**seeding, "users": scale.book.users, "open_trades": scale.book.positions,
            "closed_trades": scale.book.closed, "symbols": scale.book.symbols}  # fmt: skip
    return {
        "title": "Dashboard and API under load",
        "about": (
            f"{book['users']:,} users and {book['trades']:,} trades ({book['orders']:,} orders) in PostgreSQL, "
            f"generated in {book['seed_seconds']:.0f} s. gunicorn 'app:create_app()' with 2 workers x 4 threads; "
            f"locust (a separate process, loopback) runs {CONCURRENT_USERS} users, each a different bench user, "
            "dashboard users signed in through the login form (CSRF token included), API users with their own "
            f"Bearer token; each user waits {THINK_SECONDS / 2:g}-{THINK_SECONDS * 3 / 2:g} s (uniform) after every "
            f"answer, users starting at random moments, {scale.seconds} s per scenario; "
            "percentiles over every response once all users are signed in. The same scenarios back to back "
            f"({scale.saturation_seconds} s, no wait) give the capacity. CPU ms per request: gunicorn and the bench "
            "database's PostgreSQL backends in the measured window; CPU wait: how long gunicorn's threads were "
            "ready to run but had no core (the shared machine's other work shows there). No N+1: a Flask test "
            f"client counts the SQL statements per request for a user with {LIGHT.trades} trades and one with "
            f"{HEAVY.trades:,}."
        ),
        "command": "python -m bench.run --full --only web_load",
        "machine": common.machine(),
        "mode": "quick" if scale == QUICK else "full",
        "book": book,
        "web": {"gunicorn_workers": 2, "threads": 4, "concurrent_users": CONCURRENT_USERS,
                "think_seconds": THINK_SECONDS, "seconds": scale.seconds, "load_tool": "locust (FastHttpUser)"},
        "targets": _targets(loads, statements),
        "tables": [_load_table(loads + saturation), _statements_table(statements)],
        "load": loads,
        "saturation": saturation,
        "traders": {label: {"email": t.email, "trades": t.trades, "open_trades": t.open_trades, "symbols": t.symbols}
                    for label, t in (("light", LIGHT), ("heavy", HEAVY))},
        "statements": statements,
    }  # fmt: skip


def _load_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per locust run: latency, throughput, errors and CPU cost."""
    columns = ["request", "think s", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors",
               "CPU ms/req (web + PostgreSQL)", "CPU-bound req/s", "CPU wait ms/req", "load before"]  # fmt: skip
    rows = [
        [each["request"], f"{each['think_seconds']:g}", each["requests"], each["requests_per_second"], each["p50_ms"],
         each["p95_ms"], each["p99_ms"], each["max_ms"], each["errors"],
         f"{each['cpu_ms_per_request']['web']} + {each['cpu_ms_per_request']['database']}", each["cpu_bound_rps"],
         each["cpu_wait_ms_per_request"], each["machine_load_before"]]
        for each in runs
    ]  # fmt: skip
    return {"title": f"{CONCURRENT_USERS} users (think 0: back to back, the capacity)", "columns": columns,
            "rows": rows}  # fmt: skip


def _statements_table(statements: list[dict[str, Any]]) -> dict[str, Any]:
    """SQL statements and in-process time per request for the light and the heavy trader."""
    columns = ["GET", f"SQL, {LIGHT.trades} trades", f"SQL, {HEAVY.trades:,} trades", "same",
               f"ms, {LIGHT.trades} trades", f"ms, {HEAVY.trades:,} trades"]  # fmt: skip
    rows = [
        [row["path"], _joined(row["light"]["statements"]), _joined(row["heavy"]["statements"]),
         "yes" if row["same"] else "NO", row["light"]["in_process_ms"], row["heavy"]["in_process_ms"]]
        for row in statements
    ]  # fmt: skip
    return {"title": "SQL statements per request (in process, median time of 3)", "columns": columns, "rows": rows}


def _joined(counts: list[int]) -> str:
    """Statement counts seen over the repeats: one number when they agree, "a/b" when not."""
    return "/".join(str(count) for count in counts)


# The book ---------------------------------------------------------------------------------------


def _seed(engine: sa.Engine, book: data.Book) -> dict[str, Any]:
    """The generated book plus the light and heavy traders; how long it took."""
    started = time.perf_counter()
    data.seed(engine, book, common.PASSWORD)
    seeded = time.perf_counter() - started
    names = data.symbols(HEAVY.symbols)
    with engine.begin() as connection:
        for trader in (LIGHT, HEAVY):
            _add_trader(connection, trader, names)
        connection.execute(sa.text("ANALYZE"))
    with engine.connect() as connection:
        trades = connection.execute(sa.text("SELECT count(*) FROM trades")).scalar_one()
        orders = connection.execute(sa.text("SELECT count(*) FROM orders")).scalar_one()
    return {"seed_seconds": round(seeded, 1), "trades": trades, "orders": orders}


def _add_trader(connection: sa.Connection, trader: Trader, names: list[str]) -> None:
    """One user, its paper connection and account, its trades (open first), their orders and holdings."""
    from utils.passwords import hash_password

    user_id = connection.execute(
        sa.text(
            "INSERT INTO users (email, display_name, password_hash, role, active, session_version, created_at,"
            " updated_at) VALUES (:email, :email, :hash, 'trader', true, 1, now(), now()) RETURNING id"
        ),
        {"email": trader.email, "hash": hash_password(common.PASSWORD)},
    ).scalar_one()
    connection_id = connection.execute(
        sa.text(
            "INSERT INTO broker_connections (user_id, provider, label, status, status_detail, created_at, updated_at)"
            " VALUES (:user, 'paper', 'Bench paper', 'connected', '', now(), now()) RETURNING id"
        ),
        {"user": user_id},
    ).scalar_one()
    connection.execute(
        sa.text(
            "INSERT INTO paper_accounts (connection_id, account_key, cash, starting_cash, created_at, updated_at)"
            " VALUES (:connection, 'bench' || :connection, :cash, :cash, now(), now())"
        ),
        {"connection": connection_id, "cash": data.STARTING_CASH},
    )
    _trader_trades(connection, trader, user_id, connection_id, names[: trader.symbols])
    _trader_orders(connection, user_id)
    connection.execute(
        sa.text(
            "INSERT INTO paper_positions (account_id, symbol, quantity, average_price)"
            " SELECT account.id, trades.symbol, sum(trades.quantity), round(avg(trades.price), 2)"
            " FROM trades JOIN paper_accounts AS account ON account.connection_id = trades.connection_id"
            " WHERE trades.user_id = :user AND trades.status = 'open' GROUP BY account.id, trades.symbol"
        ),
        {"user": user_id},
    )


def _trader_trades(
    connection: sa.Connection, trader: Trader, user_id: int, connection_id: int, names: list[str]
) -> None:
    """The trader's open protected trades (stop at half the price) and closed history, one unit each."""
    quotes = _prices(names)
    connection.execute(
        sa.text(
            "WITH sym AS (SELECT symbol, CAST(price AS numeric) AS price, ord - 1 AS k"
            "  FROM unnest(CAST(:symbols AS text[]), CAST(:prices AS text[])) WITH ORDINALITY AS s(symbol, price, ord))"
            " INSERT INTO trades (user_id, connection_id, symbol, side, trade_type, status, quantity, filled_quantity,"
            " price, average_fill_price, protection_mode, stop_loss_price, fees, notes, protection_detail,"
            " exit_filled_quantity, exit_average_price, close_price, realized_pnl, created_at, updated_at,"
            " opened_at, closed_at)"
            " SELECT :user, :connection, sym.symbol, 'buy', 'market', CASE WHEN opened THEN 'open' ELSE 'closed' END,"
            " 1, 1, sym.price, sym.price, CASE WHEN opened THEN 'emulated' ELSE 'none' END,"
            " CASE WHEN opened THEN round(sym.price * 0.5, 2) END, 0, '', '', CASE WHEN opened THEN 0 ELSE 1 END,"
            " exit_price, exit_price, exit_price - sym.price, at, now(), at, at + exit_after"
            " FROM generate_series(1, :count) AS i JOIN sym ON sym.k = i % :nsym"
            " CROSS JOIN LATERAL (SELECT i <= :open AS opened, now() - (i % 525600) * interval '1 minute' AS at)"
            "  AS moment"
            " CROSS JOIN LATERAL (SELECT CASE WHEN NOT opened THEN sym.price + (i % 7 - 3) END AS exit_price,"
            "  CASE WHEN NOT opened THEN interval '1 hour' END AS exit_after) AS outcome"
        ),
        {"symbols": names, "prices": [quotes[name] for name in names], "user": user_id,
         "connection": connection_id, "count": trader.trades, "nsym": len(names), "open": trader.open_trades},
    )  # fmt: skip


def _prices(names: list[str]) -> dict[str, str]:
    """The paper broker's current marks for ``names`` (so the open trades sit near the market)."""
    from utils.brokers.paper_prices import SyntheticPrices

    quotes = SyntheticPrices(0).quotes(names, datetime.now(UTC))
    return {name: str(quotes[name].mark) for name in names}


def _trader_orders(connection: sa.Connection, user_id: int) -> None:
    """The filled entry order of each of the trader's trades, and the filled exit of each closed one."""
    for purpose, side, price, which in (
        ("entry", "buy", "average_fill_price", "opened_at"),
        ("exit", "sell", "exit_average_price", "closed_at"),
    ):
        connection.execute(
            sa.text(
                "INSERT INTO orders (user_id, connection_id, trade_id, client_order_id, broker_order_id, purpose,"
                " symbol, side, order_type, time_in_force, status, quantity, filled_quantity, average_fill_price,"
                " fees, status_detail, created_at, updated_at, submitted_at, closed_at)"
                f" SELECT user_id, connection_id, id, 'bench-{purpose}-' || id, 'paper-{purpose}-' || id,"
                f" '{purpose}', symbol, '{side}', 'market', 'day', 'filled', quantity, quantity, {price}, 0, '',"
                f" {which}, {which}, {which}, {which} FROM trades WHERE user_id = :user AND {which} IS NOT NULL"
            ),
            {"user": user_id},
        )


def _spread(users: int) -> list[int]:
    """CONCURRENT_USERS user numbers spread evenly over the generated users."""
    step = max(1, users // CONCURRENT_USERS)
    return [1 + index * step for index in range(CONCURRENT_USERS)]


def _identities(emails: list[str]) -> list[dict[str, str]]:
    """Email, password and a fresh read-only API token (made by the product's service) for each user."""
    from models import User
    from utils.extensions import db
    from utils.services import api_tokens

    found = []
    for email in emails:
        user = db.session.scalars(db.select(User).where(User.email == email)).one()
        issued = api_tokens.create_token(user, "bench load", ["read"])
        found.append({"email": email, "password": common.PASSWORD, "token": issued.plaintext})
    return found


# No N+1 -----------------------------------------------------------------------------------------


def _statements_per_request(app: Flask, engine: sa.Engine, traders: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Per page and API list: statement counts and in-process times of the light and the heavy trader."""
    light, heavy = ({**identity, "client": _signed_in(app.test_client(), identity["email"])} for identity in traders)
    rows = []
    for path in PAGES + API_LISTS:
        measured = {label: _count(identity, engine, path) for label, identity in (("light", light), ("heavy", heavy))}
        same = measured["light"]["statements"] == measured["heavy"]["statements"]
        rows.append({"path": path, **measured, "same": same})
    return rows


def _signed_in(client: FlaskClient, email: str) -> FlaskClient:
    """``client`` after signing in through the login form, with its CSRF token."""
    form = client.get("/auth/login").get_data(as_text=True)
    token = CSRF_FIELD.search(form)
    answer = client.post(
        "/auth/login",
        data={"email": email, "password": common.PASSWORD, "csrf_token": token.group(1) if token else ""},
    )
    if answer.status_code != 302:
        raise RuntimeError(f"{email} could not sign in: HTTP {answer.status_code}")
    return client


def _count(identity: dict[str, Any], engine: sa.Engine, path: str) -> dict[str, Any]:
    """Statements sent for each of REPEATS GETs of ``path`` (after one warm-up), and their median time."""
    headers = {"Authorization": f"Bearer {identity['token']}"} if path.startswith("/api/") else {}
    client: FlaskClient = identity["client"]
    counts, seconds = [], []
    for attempt in range(REPEATS + 1):
        with common.counted_statements(engine) as statements:
            started = time.perf_counter()
            answer = client.get(path, headers=headers)
            elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path} as {identity['email']}: HTTP {answer.status_code}")
        if attempt:
            counts.append(len(statements))
            seconds.append(elapsed)
    return {"statements": sorted(set(counts)), "in_process_ms": round(statistics.median(seconds) * 1000, 1)}


# Load -------------------------------------------------------------------------------------------


def _load(
    platform: stack.Stack,
    engine: sa.Engine,
    scenario: Scenario,
    identities: list[dict[str, str]],
    seconds: int,
    think: float,
) -> dict[str, Any]:
    """Run locust headless against the platform for ``seconds``, each user waiting ``think`` seconds between
    requests (0: back to back, the platform's capacity); percentiles and CPU cost of the measured window."""
    with tempfile.TemporaryDirectory(prefix="arbion-web-load-") as folder:
        files = Path(folder)
        (files / "identities.json").write_text(json.dumps(identities))
        machine_load = " ".join(f"{value:.1f}" for value in os.getloadavg())
        generator_before = _children_cpu()
        with (files / "locust.log").open("wb") as log:
            process = subprocess.Popen(  # our own fixed command
                _locust_command(platform.base_url, scenario, seconds, files / "locust"),
                cwd=common.ROOT, env=_locust_environ(files, think), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                window_cpu = _window_cpu(process, files, platform.pids[0], engine, seconds + 120)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if not (files / "samples.json").exists():
            tail = (files / "locust.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"locust wrote no samples (exit {process.returncode}):\n{tail}")
        samples = json.loads((files / "samples.json").read_text())
        reported = _locust_row(files / "locust_stats.csv", scenario.request)
    measured = _summary(scenario, samples, reported)
    return {
        "think_seconds": think,
        "machine_load_before": machine_load,
        **measured,
        **_cpu_cost(window_cpu, measured["requests"]),
        "load_generator_cpu_seconds": round(_children_cpu() - generator_before, 1),
    }


def _locust_environ(files: Path, think: float) -> dict[str, str]:
    """What bench/locustfile.py reads: the identities, where to write samples, how many users, the think time."""
    return os.environ | {
        "BENCH_LOAD_IDENTITIES": str(files / "identities.json"),
        "BENCH_LOAD_SAMPLES": str(files / "samples.json"),
        "BENCH_LOAD_USERS": str(CONCURRENT_USERS),
        "BENCH_LOAD_WAIT": str(think),
    }


def _window_cpu(
    process: subprocess.Popen[bytes], files: Path, web_group: int, engine: sa.Engine, timeout: float
) -> dict[str, float]:
    """CPU seconds gunicorn and the database spent, and seconds gunicorn's threads waited for a CPU, from the
    window's opening (locust touches samples.json.open once every user is signed in) to the end of the run."""
    deadline = time.monotonic() + timeout
    while not (files / "samples.json.open").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    started = _clocks(web_group, engine)
    process.wait(timeout=max(1.0, deadline - time.monotonic()))
    ended = _clocks(web_group, engine)
    return {name: ended[name] - started[name] for name in started}


def _clocks(web_group: int, engine: sa.Engine) -> dict[str, float]:
    """The clocks ``_window_cpu`` reads at both ends of the window."""
    return {
        "web": cpu.group_seconds(web_group),
        "database": cpu.database_seconds(engine),
        "web_waiting": _waiting_seconds(web_group),
    }


def _waiting_seconds(group: int) -> float:
    """Seconds the threads of process group ``group`` have spent runnable but waiting for a CPU (schedstat):
    on a shared machine, the part of the latency that other processes caused."""
    waited = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or _process_group(entry) != group:
            continue
        for task in (entry / "task").glob("*/schedstat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                waited += int(task.read_text().split()[1])  # on-CPU ns, run-queue ns, time slices
    return waited / 1e9


def _process_group(entry: Path) -> int | None:
    try:
        return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])  # state, ppid, pgrp
    except (OSError, IndexError, ValueError):
        return None


def _cpu_cost(window: dict[str, float], requests: int) -> dict[str, Any]:
    """Per request: CPU ms of gunicorn and PostgreSQL, the rate two cores could carry at best (unlike latency,
    this does not depend on what else the shared machine runs), and the ms gunicorn waited for a CPU."""
    if not requests:
        return {"cpu_ms_per_request": {"web": None, "database": None}, "cpu_bound_rps": None,
                "cpu_wait_ms_per_request": None}  # fmt: skip
    per_request = {name: round(window[name] * 1000 / requests, 2) for name in ("web", "database")}
    cores = os.cpu_count() or 1
    return {
        "cpu_ms_per_request": per_request,
        "cpu_bound_rps": round(cores * 1000 / sum(per_request.values()), 1),
        "cpu_wait_ms_per_request": round(window["web_waiting"] * 1000 / requests, 2),
    }


def _locust_command(base_url: str, scenario: Scenario, seconds: int, csv_prefix: Path) -> list[str]:
    """Headless, bounded in users and time, against loopback only."""
    if not base_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load only goes to loopback, not {base_url}")
    return [
        str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--host", base_url,
        "--users", str(CONCURRENT_USERS), "--spawn-rate", str(CONCURRENT_USERS), "--run-time", f"{seconds}s",
        "--stop-timeout", "5", "--csv", str(csv_prefix), "--only-summary", "--loglevel", "WARNING",
        scenario.user_class,
    ]  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds (user and system) used so far by this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _locust_row(path: Path, name: str) -> dict[str, str]:
    """Locust's own summary of ``name`` from its --csv stats (rounded percentiles, for cross-checking)."""
    with path.open(newline="") as stats:
        for row in csv.DictReader(stats):
            if row["Name"] == name:
                wanted = ("Request Count", "Failure Count", "50%", "95%", "99%", "Requests/s")
                return {key: row[key] for key in wanted}
    return {}


def _summary(scenario: Scenario, samples: dict[str, Any], reported: dict[str, str]) -> dict[str, Any]:
    """Percentiles, throughput and errors of the measured request in the window."""
    times: list[float] = samples["times"].get(scenario.request, [])
    window = max(samples["stopped"] - samples["started"], 1e-9) if samples["started"] else 0.0
    errors = sum(len(messages) for messages in samples["failures"].values())
    percentiles = {f"p{int(f * 100)}_ms": round(common.percentile(times, f), 1) if times else None
                   for f in (0.5, 0.95, 0.99)}  # fmt: skip
    return {
        "scenario": scenario.name,
        "request": scenario.request,
        "signed_in": samples["signed_in"],
        "requests": len(times),
        "window_seconds": round(window, 1),
        "requests_per_second": round(len(times) / window, 1) if window else 0.0,
        **percentiles,
        "max_ms": round(max(times), 1) if times else None,
        "errors": errors,
        "error_examples": {name: messages[:3] for name, messages in samples["failures"].items()},
        "locust_csv": reported,
        "p95_target_ms": scenario.p95_target_ms,
    }


def _targets(loads: list[dict[str, Any]], statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of issue #6 item 4 with what was measured and whether it is met."""
    found = []
    for load in loads:
        p95 = load["p95_ms"]
        met = p95 is not None and p95 <= load["p95_target_ms"] and load["errors"] == 0
        found.append({"name": f"{load['request']} p95 at {CONCURRENT_USERS} users, 0 errors",
                      "target": f"<= {load['p95_target_ms']:.0f} ms, 0 errors",
                      "measured": f"{p95} ms, {load['errors']} errors", "met": met})  # fmt: skip
    differing = [row["path"] for row in statements if not row["same"]]
    found.append({
        "name": f"SQL statements per request: {LIGHT.trades} vs {HEAVY.trades} trades",
        "target": "the same on every page and API list",
        "measured": "the same on all" if not differing else "differ on " + ", ".join(differing),
        "met": not differing,
    })  # fmt: skip
    return found


if __name__ == "__main__":
    common.QUICK = "--full" not in sys.argv[1:]  # quick results go to bench/results/quick/
    sys.stdout.write(json.dumps(run(quick=common.QUICK)["targets"], indent=2) + "\n")
