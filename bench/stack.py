"""The platform's real processes for a benchmark: gunicorn and Celery workers (and beat if asked).

``running()`` starts them against the bench database and Redis (``common.environ()``; migrate
first with ``common.fresh_app``), waits until the web answers /health and every Celery worker
answers a ping, and on exit stops them all: SIGTERM to each process group, SIGKILL after a grace
period, then SIGKILL to any process still carrying this stack's marker in its environment (an
orphan that left its group). Each process logs to a file in a temporary folder; a process that
dies while starting raises with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from celery import Celery

from bench import common
from tests.processes import marked_processes

BIN = common.ROOT / ".venv" / "bin"
MARKER = "ARBION_BENCH_STACK"
START_TIMEOUT = 60.0
STOP_GRACE = 5.0


@dataclass(frozen=True)
class Stack:
    """A running platform: where the web answers and the process group leaders' ids."""

    base_url: str
    pids: list[int] = field(default_factory=list)


@dataclass
class _Launched:
    """One started process and the file it logs to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def running(
    overrides: dict[str, str] | None = None,
    web_workers: int = 2,
    threads: int = 4,
    celery_workers: int = 1,
    concurrency: int = 4,
    beat: bool = False,
) -> Iterator[Stack]:
    """gunicorn ('app:create_app()'), ``celery_workers`` Celery workers and optionally beat, ready, then stopped."""
    marker = uuid.uuid4().hex
    environ = _environ(overrides or {}, marker)
    port = _free_port()
    launched: list[_Launched] = []
    with tempfile.TemporaryDirectory(prefix="arbion-bench-stack-") as folder:
        logs = Path(folder)
        try:
            launched.append(_start("web", _gunicorn(port, web_workers, threads), environ, logs))
            names = [f"bench{index}-{marker[:8]}@%h" for index in range(celery_workers)]
            for index, name in enumerate(names):
                launched.append(_start(f"worker{index}", _celery_worker(name, concurrency), environ, logs))
            if beat:
                launched.append(_start("beat", _celery_beat(logs / "celerybeat-schedule"), environ, logs))
            base_url = f"http://127.0.0.1:{port}"
            _wait_for_web(base_url, launched)
            _wait_for_workers(environ, [name.replace("%h", socket.gethostname()) for name in names], launched)
            yield Stack(base_url, [item.process.pid for item in launched])
        finally:
            _stop(launched, marker)


def _environ(overrides: dict[str, str], marker: str) -> dict[str, str]:
    """The processes' environment: this one, the bench settings and the stack's marker."""
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return os.environ | common.environ(**overrides) | {MARKER: marker, "PATH": path, "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _gunicorn(port: int, workers: int, threads: int) -> list[str]:
    """The Procfile's web command on loopback, without the access log."""
    return [
        str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--log-level", "warning", "app:create_app()",
    ]  # fmt: skip


def _celery_worker(name: str, concurrency: int) -> list[str]:
    """The Procfile's worker command with its own node name."""
    return [
        str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", "WARNING", "--concurrency", str(concurrency),
        "-n", name,
    ]  # fmt: skip


def _celery_beat(schedule: Path) -> list[str]:
    """The Procfile's beat command, its schedule file kept out of the shared instance/ folder."""
    return [str(BIN / "celery"), "-A", "worker", "beat", "--loglevel", "WARNING", "--schedule", str(schedule)]


def _start(name: str, command: list[str], environ: dict[str, str], logs: Path) -> _Launched:
    """Start ``command`` in its own session (so its whole group can be signalled), logging to a file."""
    log = logs / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # our own fixed commands, no shell
            command, cwd=common.ROOT, env=environ, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    return _Launched(name, process, log)


def _wait_for_web(base_url: str, launched: list[_Launched]) -> None:
    """Poll /health until it answers 200."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        _check_alive(launched)
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn never answered /health:\n{_tails(launched)}")


def _wait_for_workers(environ: dict[str, str], names: list[str], launched: list[_Launched]) -> None:
    """Ping the workers through the Celery broker until every one of them has answered."""
    if not names:
        return
    control = Celery(broker=environ.get("CELERY_BROKER_URL") or environ["REDIS_URL"])
    answered: set[str] = set()
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            _check_alive(launched)
            for reply in control.control.ping(destination=names, timeout=1.0) or []:
                answered.update(reply)
            if answered >= set(names):
                return
    finally:
        control.close()
    raise RuntimeError(f"Celery workers {sorted(set(names) - answered)} never answered a ping:\n{_tails(launched)}")


def _check_alive(launched: list[_Launched]) -> None:
    """Raise with the logs if a process already exited while the stack starts."""
    dead = [item.name for item in launched if item.process.poll() is not None]
    if dead:
        raise RuntimeError(f"{', '.join(dead)} exited while starting:\n{_tails(launched)}")


def _tails(launched: list[_Launched], characters: int = 3000) -> str:
    """The end of every process's log, for an error message."""
    return "\n".join(f"--- {item.name}\n{item.log.read_text(errors='replace')[-characters:]}" for item in launched)


def _stop(launched: list[_Launched], marker: str) -> None:
    """SIGTERM every process group, SIGKILL what is left after the grace period, then any orphan."""
    for item in launched:
        _signal_group(item.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for item in launched:
        try:
            item.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(item.process.pid, signal.SIGKILL)
            item.process.wait(timeout=5)
    for item in launched:
        _signal_group(item.process.pid, signal.SIGKILL)  # children that outlived their leader
    for pid in marked_processes(MARKER, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to the whole process group (gone already is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
