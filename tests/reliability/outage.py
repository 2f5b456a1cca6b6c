"""Outage batteries' harness: the real processes (gunicorn, a Celery worker with beat) on 127.0.0.1,
reaching PostgreSQL or Redis through a ``tests.proxy.TcpProxy`` the test takes down and brings back.

The test process itself talks to the services directly (to arrange and to check), the platform's
processes only through the proxy; nothing here ever stops the machine's shared services.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.processes import BIN, ROOT, free_port, stack_processes, stop_processes, wait_ready
from tests.venues import Venue

# Short intervals, so a cycle, a resend and a recovery happen within seconds.
FAST_INTERVALS = {
    "HEARTBEAT_INTERVAL": "1",
    "HEARTBEAT_MAX_AGE": "10",
    "PAPER_MATCH_INTERVAL": "1",
    "ORDER_POLL_INTERVAL": "2",
    "STOP_MONITOR_INTERVAL": "2",
    "RECONCILE_INTERVAL": "3600",
    "EQUITY_SNAPSHOT_INTERVAL": "86400",  # its broker reads would blur "what the broker was asked"
}
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass
class Platform:
    """The running processes: their base URL and the marker in their environment."""

    url: str
    marker: str

    def pids(self) -> set[int]:
        """The processes alive now (compared before and after an outage: no restart happened)."""
        return set(stack_processes(self.marker))

    def timed(self, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, float]:
        """One request and how long its answer took, in seconds."""
        started = time.monotonic()
        response = requests.request(method, self.url + path, timeout=30, **kwargs)
        return response, time.monotonic() - started


@contextmanager
def platform_processes(environ: dict[str, str], tmp_path: Path) -> Iterator[Platform]:
    """Start gunicorn and a worker with embedded beat from ``environ``; wait for /ready; stop them."""
    port, marker = str(free_port()), uuid.uuid4().hex
    child_env = environ | {"PORT": port, "ARBION_TEST_STACK": marker, "HOME": str(tmp_path)}
    child_env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    commands = [
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "app:create_app()"],
        [str(BIN / "celery"), "-A", "worker", "worker", "-B", "--pool", "threads", "--concurrency", "4",
         "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"],
    ]  # fmt: skip
    log_path = tmp_path / "platform.log"
    with log_path.open("wb") as log:
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
            for command in commands
        ]
        try:
            wait_ready(port)
            yield Platform(f"http://127.0.0.1:{port}", marker)
        finally:
            stop_processes(processes, marker)
            print(log_path.read_text(errors="replace")[-6000:])  # noqa: T201 - shown on failure


def browser_login(platform: Platform, email: str, password: str) -> requests.Session:
    """A requests session logged in through the real login form (CSRF token included)."""
    session = requests.Session()
    page = session.get(platform.url + "/auth/login", timeout=10)
    match = _CSRF.search(page.text)
    assert match, "no csrf token on the login page"
    answer = session.post(
        platform.url + "/auth/login",
        data={"email": email, "password": password, "csrf_token": match.group(1)},
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text[:500]
    return session


def seconds_until(check: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll ``check`` until it holds; how many seconds that took (fails after ``timeout``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)
    return time.monotonic() - started


def api_order_body(venue: Venue) -> dict[str, Any]:
    """An API entry for the venue that the risk engine accepts."""
    ticket = venue.ticket()
    return {
        "connection_id": venue.connection.id,
        "symbol": ticket.symbol,
        "side": "buy",
        "quantity": str(ticket.quantity),
        "stop_loss_price": str(ticket.stop_loss_price),
    }


def is_ready(platform: Platform) -> bool:
    """True when /ready answers 200."""
    try:
        return requests.get(platform.url + "/ready", timeout=3).status_code == 200
    except requests.RequestException:
        return False
