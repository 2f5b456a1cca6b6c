"""What every benchmark shares: the bench database and Redis, the app, statistics and results.

Benchmarks run against their own PostgreSQL database (BENCH_DATABASE_URL, default ``bench`` on
127.0.0.1) and Redis index (BENCH_REDIS_URL, default 13), emptied and migrated by ``fresh_app``:
never point them at data you keep.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ENCRYPTION_KEY = os.environ.get("BENCH_ENCRYPTION_KEY") or Fernet.generate_key().decode()
PASSWORD = "bench password 7Fq2xLp9"
QUICK = False  # set by bench.run --quick: results go to bench/results/quick/ and the report is left alone


def environ(**overrides: str) -> dict[str, str]:
    """Settings of the benchmarked platform: production-like, quiet logs, no request limits in the way."""
    settings = {
        "ARBION_ENV": "development",
        "SECRET_KEY": "bench-secret-key-not-for-production-9Wm4Rz8Vt1Nc6Hb3",
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "API_RATE_LIMIT": "1000000 per minute",
        "API_ORDER_RATE_LIMIT": "1000000 per minute",
        "ADMIN_REQUIRE_TOTP": "false",
    }
    return settings | overrides


def create(overrides: dict[str, str] | None = None) -> Flask:
    """The app on the bench database (already migrated)."""
    from app import create_app

    return create_app(environ(**(overrides or {})))


def fresh_app(overrides: dict[str, str] | None = None) -> Flask:
    """Empty the bench database and Redis, migrate, and return the app."""
    engine = sa.create_engine(DATABASE_URL)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()
    app = create(overrides)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    if result.exit_code != 0:
        raise RuntimeError(f"migration failed: {result.output}")
    return app


@contextmanager
def counted_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Collect the SQL statements sent through ``engine`` inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@dataclass(frozen=True)
class Spread:
    """Median and spread of repeated measurements."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def repeat(runs: int, measure: Callable[[], float]) -> Spread:
    """``measure`` called ``runs`` times (after one warm-up call)."""
    measure()
    return Spread.of([measure() for _ in range(runs)])


def machine() -> dict[str, str]:
    """The machine and versions the numbers were measured on."""
    with sa.create_engine(DATABASE_URL).connect() as connection:
        postgres = connection.execute(sa.text("SHOW server_version")).scalar_one()
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "postgresql": str(postgres).split()[0],
        "redis": str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]),
        "load": " ".join(f"{value:.1f}" for value in os.getloadavg()),
        "commit": _git_commit(),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    """Write one benchmark's results as bench/results/<name>.json (read by bench.report), or under
    bench/results/quick/ in quick mode."""
    folder = RESULTS / "quick" if QUICK else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"
