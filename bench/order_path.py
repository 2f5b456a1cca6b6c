"""Target 3 (issue #6): the order path, POST /api/v1/orders, on the real processes.

gunicorn (2 workers x 4 threads) and one Celery worker (concurrency 4) run as in the Procfile
(bench.stack) on the bench database and Redis; 10 client threads in this process post protected
market buys with Bearer tokens. Each run measures, for the paper broker:

- API answer time (intent validated, risk-checked and stored; the worker is told) at 10 clients,
  closed loop (each sends its next order on the last answer) and paced (one order a second each);
- end-to-end throughput: accepted orders / seconds from the first POST until every order is stored
  with the broker's acknowledgement (FILLED at the paper broker), with errors (refusals, rejected,
  unknown, never acknowledged) and duplicates (our orders against the paper broker's book by client
  order id);
- the CPU milliseconds each order costs gunicorn, the worker, PostgreSQL and the clients (bench.cpu);

and, in the same run, the overhead against the Schwab fake answering after 50 ms
(bench.schwab_overhead). When a target is missed, the API request (``place_order`` inside) and the
worker's ``send`` are profiled in this process after the stack has stopped (bench.order_profile).

``python -m bench.order_path [--full]``: quick by default (a few hundred orders, one run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask

from bench import common, cpu, order_load, order_profile, schwab_overhead, stack
from bench.order_load import Account, AccountPool

NAME = "order_path"
CLIENTS = 10
SYMBOLS = 10
PROFILED_ORDERS = 40
PACED_EVERY = 1.0  # seconds between one client's orders in the paced phase: 10 orders/s in all


@dataclass(frozen=True)
class Sizes:
    """Orders per phase and how many times the phases repeat."""

    warmup: int
    latency: int
    paced: int
    throughput: int
    overhead: int
    runs: int

    def users(self) -> int:
        """Paper users the phases and the profile consume (ORDERS_PER_USER orders each)."""
        phases = [self.warmup, *[self.latency, self.paced, self.throughput] * self.runs, 2 * PROFILED_ORDERS]
        return sum(-(-orders // order_load.ORDERS_PER_USER) for orders in phases)


QUICK = Sizes(warmup=30, latency=150, paced=50, throughput=250, overhead=20, runs=1)
FULL = Sizes(warmup=100, latency=1000, paced=300, throughput=3000, overhead=100, runs=3)


def run(quick: bool) -> dict[str, Any]:
    """Measure every phase ``runs`` times on one running stack, profile if a target is missed, save."""
    sizes = QUICK if quick else FULL
    with schwab_overhead.running_fake() as fake:
        app = common.fresh_app(fake.settings())
        pool = order_load.paper_accounts(app, sizes.users())
        schwab = schwab_overhead.connect_user(app, fake)
        engine = sa.create_engine(common.DATABASE_URL)
        with stack.running(fake.settings(), web_workers=2, threads=4, celery_workers=1, concurrency=4) as platform:
            runs = _runs(platform, engine, pool, fake, schwab, sizes)
        result = _result(sizes, runs)
        if not all(target["met"] for target in result["targets"]):
            result["profile"] = _profile(app, pool, fake, schwab)
        engine.dispose()
    common.save(NAME, result)
    return result


def _runs(
    platform: stack.Stack,
    engine: sa.Engine,
    pool: AccountPool,
    fake: schwab_overhead.SchwabFake,
    schwab: Account,
    sizes: Sizes,
) -> dict[str, Any]:
    """A warm-up, then ``runs`` rounds of the latency, throughput and overhead phases, interleaved."""
    warmup = _load_phase(platform, engine, pool, sizes.warmup)
    phases: dict[str, Any] = {"warmup": warmup, "latency": [], "paced": [], "throughput": [], "overhead": []}
    for _ in range(sizes.runs):
        phases["latency"].append(_load_phase(platform, engine, pool, sizes.latency))
        phases["paced"].append(_load_phase(platform, engine, pool, sizes.paced, every=PACED_EVERY))
        phases["throughput"].append(_load_phase(platform, engine, pool, sizes.throughput))
        phases["overhead"].append(schwab_overhead.measure(platform.base_url, engine, fake, schwab, sizes.overhead))
    return phases


def _load_phase(
    platform: stack.Stack, engine: sa.Engine, pool: AccountPool, orders: int, every: float = 0.0
) -> dict[str, Any]:
    """``orders`` paper orders from ``CLIENTS`` clients (closed loop, or one every ``every`` s each);
    answer times, end-to-end rate, errors, duplicates and the CPU each order cost the web, the
    worker, PostgreSQL and the clients."""
    bodies = order_load.order_bodies(pool.take(orders), order_load.paper_symbols(SYMBOLS))
    load = os.getloadavg()[0]
    cpu_before = _cpu_seconds(platform, engine)
    started = time.perf_counter()
    posted = order_load.post_orders(platform.base_url, bodies, CLIENTS, every)
    settled = order_load.wait_settled(engine, posted.order_ids, started, timeout=max(60.0, orders / 10))
    cpu_after = _cpu_seconds(platform, engine)
    checks = order_load.paper_duplicates(engine, posted.order_ids)
    return {
        "cpu_ms_per_order": {part: (cpu_after[part] - cpu_before[part]) * 1000 / orders for part in cpu_after},
        "orders": orders,
        "clients": CLIENTS,
        "client_interval_s": every or None,
        "api_ms": order_load.latency_summary(posted.latencies_ms),
        "api_orders_per_s": len(posted.latencies_ms) / posted.seconds,
        "end_to_end_orders_per_s": settled.acknowledged / settled.seconds,
        "seconds": settled.seconds,
        "drain_after_last_answer_s": settled.seconds - posted.seconds,
        "refused": posted.refusals,
        "failed": settled.failed,
        "never_acknowledged": settled.waiting,
        "errors": sum(posted.refusals.values())
        + settled.failed
        + settled.waiting
        + checks["missing_at_broker"]
        + checks["broker_id_mismatches"],
        **checks,
        "load_1min": load,
    }


def _cpu_seconds(platform: stack.Stack, engine: sa.Engine) -> dict[str, float]:
    """CPU seconds so far of gunicorn, the Celery worker, the bench database's backends and this process."""
    web, worker = platform.pids[:2]
    return {
        "web": cpu.group_seconds(web),
        "worker": cpu.group_seconds(worker),
        "postgres": cpu.database_seconds(engine),
        "clients": cpu.own_seconds(),
    }


def _result(sizes: Sizes, runs: dict[str, Any]) -> dict[str, Any]:
    """Medians and spread over the runs, and the targets of issue #6 (3) with whether each is met."""
    medians = {
        "api_p50_ms": _spread(runs["latency"], lambda phase: phase["api_ms"]["p50"]),
        "api_p99_ms": _spread(runs["latency"], lambda phase: phase["api_ms"]["p99"]),
        "paced_api_p50_ms": _spread(runs["paced"], lambda phase: phase["api_ms"]["p50"]),
        "paced_api_p99_ms": _spread(runs["paced"], lambda phase: phase["api_ms"]["p99"]),
        "throughput_orders_per_s": _spread(runs["throughput"], lambda phase: phase["end_to_end_orders_per_s"]),
        "api_orders_per_s": _spread(runs["throughput"], lambda phase: phase["api_orders_per_s"]),
        "schwab_ratio": _spread(runs["overhead"], lambda phase: phase["ratio"]),
        "schwab_end_to_end_ms": _spread(runs["overhead"], lambda phase: phase["end_to_end_ms"]["p50"]),
        "schwab_bare_post_ms": _spread(runs["overhead"], lambda phase: phase["bare_post_ms"]["p50"]),
    }
    loaded = runs["latency"] + runs["paced"] + runs["throughput"]
    errors = sum(phase["errors"] for phase in loaded) + sum(phase["failures"] for phase in runs["overhead"])
    duplicates = sum(phase["duplicates"] for phase in loaded)
    setup = _setup()
    return {
        "title": "Order path",
        "about": (
            "POST /api/v1/orders on the paper broker with the real processes: "
            + setup["web"]
            + "; "
            + setup["worker"]
            + ". Clients: "
            + setup["clients"]
            + ". Orders: "
            + setup["orders"]
            + "; "
            + setup["users"]
            + ". The "
            "Schwab overhead: one order at a time, our end-to-end time (POST to the broker's acknowledgement stored) "
            "against a bare HTTP POST of the same order to the same fake, " + setup["schwab"] + ". CPU per order "
            "is read from /proc for gunicorn, the worker, PostgreSQL's backends and the clients."
        ),
        "command": "python -m bench.run --full --only order_path",
        "tables": [_table(medians)],
        "machine": common.machine(),
        "mode": "quick" if sizes == QUICK else "full",
        "sizes": vars(sizes),
        "setup": setup,
        "medians": {name: spread.as_dict() for name, spread in medians.items()},
        "targets": _targets(medians, errors, duplicates),
        "runs": runs,
    }


def _setup() -> dict[str, str]:
    """How the order path was driven, in words."""
    return {
        "web": "gunicorn 'app:create_app()' --workers 2 --threads 4 (no access log)",
        "worker": "celery -A worker worker --concurrency 4 (one worker)",
        "clients": f"{CLIENTS} threads, one requests.Session each, Bearer token, Idempotency-Key; closed loop "
        f"(next order on the last answer) except the paced phase (one order every {PACED_EVERY:g} s each)",
        "cpu": "cpu_ms_per_order: CPU of gunicorn, the Celery worker, the bench database's PostgreSQL backends "
        "and the client process per order (2 cores give 2,000 CPU ms a second at most)",
        "orders": "market buy of 1 unit with a stop-loss 15% under the bid, paper crypto products",
        "users": f"{order_load.ORDERS_PER_USER} orders per generated user: default risk limits, none raised",
        "schwab": f"fake answering every call after {schwab_overhead.LATENCY * 1000:.0f} ms; "
        "the Schwab user's own limits lifted (positions, orders a day, notional, market hours)",
    }


def _table(medians: dict[str, common.Spread]) -> dict[str, Any]:
    """Every median with its spread over the runs."""
    rows = [
        [name.replace("_", " "), f"{spread.median:.2f}", f"{spread.low:.2f}-{spread.high:.2f}", spread.runs]
        for name, spread in medians.items()
    ]
    return {"title": "Medians over the runs", "columns": ["measure", "median", "min-max", "runs"], "rows": rows}


def _spread(phases: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> common.Spread:
    return common.Spread.of([value(phase) for phase in phases])


def _targets(medians: dict[str, common.Spread], errors: int, duplicates: int) -> list[dict[str, Any]]:
    def target(name: str, wanted: str, measured: float, met: bool) -> dict[str, Any]:
        return {"name": name, "target": wanted, "measured": round(measured, 2), "met": met}

    p50, p99 = medians["api_p50_ms"].median, medians["api_p99_ms"].median
    paced_p50, paced_p99 = medians["paced_api_p50_ms"].median, medians["paced_api_p99_ms"].median
    paced = f"{CLIENTS} clients paced to {CLIENTS / PACED_EVERY:.0f} orders/s in all"
    rate, ratio = medians["throughput_orders_per_s"].median, medians["schwab_ratio"].median
    return [
        target(f"API answer p50 at {CLIENTS} clients, closed loop (ms)", "<= 15", p50, p50 <= 15),
        target(f"API answer p99 at {CLIENTS} clients, closed loop (ms)", "<= 60", p99, p99 <= 60),
        target(f"API answer p50, {paced} (ms)", "<= 15", paced_p50, paced_p50 <= 15),
        target(f"API answer p99, {paced} (ms)", "<= 60", paced_p99, paced_p99 <= 60),
        target("end-to-end orders/s (paper, 2 web workers, 1 Celery worker)", ">= 100", rate, rate >= 100),
        target("errors", "0", errors, errors == 0),
        target("duplicates at the broker", "0", duplicates, duplicates == 0),
        target("end-to-end / bare HTTP POST, Schwab fake at 50 ms", "<= 1.5", ratio, ratio <= 1.5),
    ]


# ---------------------------------------------------------------------------------- profile


def _profile(app: Flask, pool: AccountPool, fake: schwab_overhead.SchwabFake, schwab: Account) -> dict[str, Any]:
    """API request and worker send, profiled in this process (the stack is stopped): paper and Schwab."""
    paper = order_load.order_bodies(pool.take(2 * PROFILED_ORDERS), order_load.paper_symbols(SYMBOLS))
    schwab_orders = [(schwab, schwab_overhead.order_body(schwab.connection_id))] * 10
    fake.state.latency = schwab_overhead.LATENCY
    try:
        return {
            "paper": order_profile.profile(app, paper),
            "schwab": order_profile.profile(app, schwab_orders, fake.quote_now),
        }
    finally:
        fake.state.latency = 0.0


if __name__ == "__main__":
    common.QUICK = "--full" not in sys.argv[1:]  # quick results go to bench/results/quick/
    outcome = run(quick=common.QUICK)
    sys.stdout.write(json.dumps({"medians": outcome["medians"], "targets": outcome["targets"]}, indent=2) + "\n")
