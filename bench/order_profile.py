"""Where an order's time goes, measured in this process with the platform's processes stopped.

The web half is a whole POST /api/v1/orders through Flask's test client (auth, validation,
``orders.place_order``: risk check, intent stored; the task is enqueued), the worker half is
``execution.send`` (what trading.submit_order runs). Half the orders are timed (wall and CPU
milliseconds, SQL statements), the other half run under cProfile: the cumulative milliseconds of
the steps named in ``STEPS`` per order (inflated by the profiler, read them as shares) and the top
functions.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from bench import common
from bench.order_load import Account

Order = tuple[Account, dict[str, Any]]
# (file suffix, function) of the steps worth naming, for the profiled shares.
STEPS = (
    ("utils/web/api/auth.py", "authenticate"),
    ("utils/services/orders.py", "place_order"),
    ("utils/services/system.py", "require_task_queue"),
    ("utils/services/order_checks.py", "usable_connection"),
    ("utils/services/order_checks.py", "_entry_inputs"),
    ("utils/services/risk.py", "_snapshot"),
    ("utils/services/orders.py", "_store_entry"),
    ("utils/tasks/trading.py", "enqueue_submit"),
    ("utils/services/orders.py", "submit"),
    ("utils/services/protection.py", "protect"),
    ("utils/brokers/paper.py", "place_order"),
    ("utils/brokers/schwab.py", "place_order"),
    ("sqlalchemy/orm/session.py", "commit"),
)


def profile(app: Flask, orders: list[Order], before_each: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Time half of ``orders`` and profile the other half, request and send separately."""
    half = len(orders) // 2
    with app.app_context():
        client = app.test_client()
        timed = _timed(client, orders[:half], before_each)
        request, send = cProfile.Profile(), cProfile.Profile()
        for account, body in orders[half:]:
            before_each()
            order_id = request.runcall(_post, client, account, body)
            send.runcall(_send, order_id)
    profiled = len(orders) - half
    return timed | {
        "request_steps_ms": _steps(request, profiled),
        "send_steps_ms": _steps(send, profiled),
        "request_top": _top(request),
        "send_top": _top(send),
    }


def _timed(client: FlaskClient, orders: list[Order], before_each: Callable[[], None]) -> dict[str, Any]:
    from utils.extensions import db

    samples: dict[str, list[float]] = {key: [] for key in ("request", "request_cpu", "send", "send_cpu")}
    counts: Counter[str] = Counter()
    for account, body in orders:
        before_each()
        with _counted(db.engine, counts, "request"):
            order_id = _measured(samples, "request", _post, client, account, body)
        with _counted(db.engine, counts, "send"):
            _measured(samples, "send", _send, order_id)
    summary: dict[str, Any] = {f"{key}_ms": statistics.median(values) for key, values in samples.items()}
    return summary | {f"{key}_per_order": count / len(orders) for key, count in sorted(counts.items())}


@contextmanager
def _counted(engine: sa.Engine, counts: Counter[str], name: str) -> Iterator[None]:
    """Count the SQL statements and the commits (each one a WAL flush) sent through ``engine``."""

    def statement(*_: Any) -> None:
        counts[f"{name}_statements"] += 1

    def commit(*_: Any) -> None:
        counts[f"{name}_commits"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)


def _measured(samples: dict[str, list[float]], name: str, call: Callable[..., Any], *args: Any) -> Any:
    """Run ``call(*args)``, adding its wall and CPU milliseconds to ``samples``."""
    wall, processor = time.perf_counter(), time.process_time()
    outcome = call(*args)
    samples[name].append((time.perf_counter() - wall) * 1000)
    samples[f"{name}_cpu"].append((time.process_time() - processor) * 1000)
    return outcome


def _post(client: FlaskClient, account: Account, body: dict[str, Any]) -> int:
    """One API order as a client sends it; the stored order's id."""
    headers = {"Authorization": f"Bearer {account.token}", "Idempotency-Key": uuid.uuid4().hex}
    response = client.post("/api/v1/orders", json=body, headers=headers)
    if response.status_code != 202:
        raise RuntimeError(
            f"the API refused a profiled order: {response.status_code} {response.get_data(as_text=True)}"
        )
    return int(response.get_json()["id"])


def _send(order_id: int) -> None:
    """What the worker's trading.submit_order task does."""
    from utils.extensions import db
    from utils.services import execution

    execution.send(order_id)
    db.session.remove()


def _steps(profile: cProfile.Profile, orders: int) -> dict[str, float]:
    """Cumulative milliseconds per order of each step in ``STEPS`` that ran."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}
    for (path, _, function), row in stats.items():
        for suffix, name in STEPS:
            if function == name and path.endswith(suffix):
                key = f"{suffix.rsplit('/', 1)[-1]}:{name}"
                found[key] = found.get(key, 0.0) + row[3] * 1000 / orders
    return found


def _top(profile: cProfile.Profile, lines: int = 25) -> list[str]:
    """The functions with the most cumulative time, paths shortened."""
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(lines)
    text = out.getvalue().replace(str(common.ROOT / ".venv" / "lib") + "/", "").replace(str(common.ROOT) + "/", "")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines - 1 :]
