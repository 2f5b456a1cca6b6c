"""gunicorn with several workers as a subprocess, its access log naming the worker (pid) of each
request, so a test can show a limit holds across processes and read what the workers logged."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.processes import BIN, ROOT, free_port, kill_stack, wait_ready
from tests.support import TEST_REDIS_URL

# "<worker pid> method path status" per request (gunicorn writes %(p)s as "<pid>").
ACCESS_FORMAT = "%(p)s %(m)s %(U)s %(s)s"
needs_redis = pytest.mark.skipif(not TEST_REDIS_URL, reason="workers share state through Redis (TEST_REDIS_URL)")
_ACCESS_LINE = re.compile(r"^<(\d+)> (\w+) (\S+) (\d{3})$", re.MULTILINE)


@dataclass(frozen=True)
class WebWorkers:
    """A running gunicorn: its base URL and the file its workers log to (stdout and stderr)."""

    url: str
    log: Path

    def output(self) -> str:
        """Everything the master and the workers wrote so far."""
        return self.log.read_text(errors="replace")

    def workers_serving(self, method: str, path: str) -> set[int]:
        """The pids of the workers that answered ``method path``."""
        return {int(pid) for pid, m, p, _ in _ACCESS_LINE.findall(self.output()) if (m, p) == (method, path)}


@contextmanager
def gunicorn(environ: dict[str, str], tmp_path: Path, workers: int = 2, threads: int = 1) -> Iterator[WebWorkers]:
    """Sync workers: a busy worker cannot accept, so concurrent connections spread over all of them.
    With ``threads`` above 1, threaded workers: requests also run side by side inside each process."""
    port = str(free_port())
    marker = uuid.uuid4().hex
    child_env = environ | {
        "ARBION_TEST_STACK": marker,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
    }
    log_path = tmp_path / f"gunicorn-{port}.log"
    command = [
        str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "sync" if threads == 1 else "gthread",
        "--access-logfile", "-", "--access-logformat", ACCESS_FORMAT, "app:create_app()",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, path="/health")
            yield WebWorkers(f"http://127.0.0.1:{port}", log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            kill_stack(marker)


class LiveAnswer:
    """A ``requests`` response seen through the FlaskClient response attributes the tests read."""

    def __init__(self, response: requests.Response):
        self.raw = response
        self.status_code = response.status_code
        self.status = f"{response.status_code} {response.reason}"
        self.headers = response.headers

    def get_data(self, as_text: bool = True) -> str:
        """The body as text."""
        return self.raw.text

    @property
    def json(self) -> Any:
        """The body decoded from JSON."""
        return self.raw.json()


class LiveClient:
    """The FlaskClient calls the battery's helpers make (get, post), sent over HTTP to a live server
    with one cookie jar, redirects not followed."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> LiveAnswer:
        """GET ``path``."""
        return LiveAnswer(self.session.get(self.base_url + path, allow_redirects=False, timeout=60, **kwargs))

    def post(self, path: str, **kwargs: Any) -> LiveAnswer:
        """POST to ``path`` (data=, json=, headers= as FlaskClient takes them)."""
        return LiveAnswer(self.session.post(self.base_url + path, allow_redirects=False, timeout=60, **kwargs))
