"""The real processes: web + worker + beat from Procfile.dev (what `make run` starts).

Starts honcho with the embedded default (SQLite, kombu's SQLAlchemy transport) and, when the run
has them, with PostgreSQL and Redis; waits until /ready says 200 (so beat and the worker really
run), checks that both heartbeats advance, then stops with SIGINT and checks nothing is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.support import TEST_DATABASE_URL, TEST_REDIS_URL, base_environ

ROOT = Path(__file__).resolve().parent.parent
STACK_DATABASE = "arbion_stack_test"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stack_environ(tmp_path: Path, backend: str) -> dict[str, str]:
    if backend == "embedded":
        environ = base_environ(f"sqlite:///{tmp_path / 'arbion.db'}")
        environ.pop("REDIS_URL", None)
        environ["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
        environ["CELERY_RESULT_BACKEND"] = f"db+sqlite:///{tmp_path / 'results.sqlite'}"
    else:
        environ = base_environ(str(sa.make_url(TEST_DATABASE_URL).set(database=STACK_DATABASE)))
        environ["REDIS_URL"] = TEST_REDIS_URL.rsplit("/", 1)[0] + "/14"
    environ.update(
        {
            "HEARTBEAT_INTERVAL": "1",
            "HEARTBEAT_MAX_AGE": "5",
            "LOG_LEVEL": "INFO",
            "PORT": str(free_port()),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
        }
    )
    return environ


def backends() -> list[str]:
    return ["embedded"] + (["postgresql+redis"] if TEST_DATABASE_URL and TEST_REDIS_URL else [])


@pytest.fixture(params=backends())
def platform(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes]]]:
    environ = stack_environ(tmp_path, request.param)
    if request.param != "embedded":
        recreate_database(STACK_DATABASE)
    subprocess.run(
        [str(BIN / "flask"), "--app", "app", "db", "upgrade"], cwd=ROOT, env=environ, check=True, capture_output=True
    )
    log = (tmp_path / "honcho.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "honcho"), "-f", "Procfile.dev", "start"],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield environ, process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()
    lines = (tmp_path / "honcho.log").read_text(errors="replace").splitlines()
    sys.stdout.write("\n".join(line for line in lines if "GET /ready" not in line)[-8000:])  # shown on failure


def recreate_database(name: str) -> None:
    """A private PostgreSQL database, so these processes never touch the suite's tables."""
    engine = sa.create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def wait_ready(port: str, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    response = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"http://127.0.0.1:{port}/ready", timeout=2)
            if response.status_code == 200:
                return response
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"never ready: {response.json() if response is not None else 'no answer'}")


def heartbeats(database_url: str) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT component, beats FROM heartbeats")).all()
    engine.dispose()
    return {str(component): int(beats) for component, beats in rows}


def processes_in_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and Path(entry, "stat").read_text().split()[2] != "Z":
                    found.append(int(entry.name))
            except (ProcessLookupError, FileNotFoundError):
                continue
    return found


@pytest.mark.slow
def test_web_worker_and_beat_come_up_ready_and_stop_cleanly(
    platform: tuple[dict[str, str], subprocess.Popen[bytes]],
) -> None:
    environ, process = platform
    response = wait_ready(environ["PORT"])
    assert set(response.json()["checks"].values()) == {"ok"}
    first = heartbeats(environ["DATABASE_URL"])
    later = first
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        later["beat"] > first["beat"] and later.get("worker", 0) > first.get("worker", 0)
    ):
        time.sleep(0.5)
        later = heartbeats(environ["DATABASE_URL"])
    assert later["beat"] > first["beat"], "beat's heartbeat advances"
    assert later.get("worker", 0) > first.get("worker", 0), "the worker executes the heartbeat task"
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) is not None
    deadline = time.monotonic() + 15
    while processes_in_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in_group(process.pid) == [], "Ctrl-C leaves no process behind"
