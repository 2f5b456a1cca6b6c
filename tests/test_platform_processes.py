"""The real processes: web + worker + beat from Procfile.dev (what `make run` starts).

Starts honcho with the embedded default (SQLite, kombu's SQLAlchemy transport) and, when the run
has them, with PostgreSQL and Redis; waits until /ready says 200 (so beat and the worker really
run), checks that both heartbeats advance, then stops with SIGINT and checks nothing is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.processes import BIN, ROOT, free_port, kill_stack, stack_processes, wait_ready
from tests.support import TEST_DATABASE_URL, TEST_REDIS_URL, base_environ

STACK_DATABASE = "arbion_stack_test"


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
    environ["ARBION_TEST_STACK"] = uuid.uuid4().hex
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
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    kill_stack(environ["ARBION_TEST_STACK"])
    process.wait(timeout=10)
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


def heartbeats(database_url: str) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT component, beats FROM heartbeats")).all()
    engine.dispose()
    return {str(component): int(beats) for component, beats in rows}


@pytest.mark.slow
def test_web_worker_and_beat_come_up_ready_and_stop_cleanly(
    platform: tuple[dict[str, str], subprocess.Popen[bytes]],
) -> None:
    environ, process = platform
    response = wait_ready(environ["PORT"])
    assert len(stack_processes(environ["ARBION_TEST_STACK"])) >= 4, "web master, web workers and the worker run"
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
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal of `make run` sends
    assert process.wait(timeout=30) is not None
    deadline = time.monotonic() + 15
    while stack_processes(environ["ARBION_TEST_STACK"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack_processes(environ["ARBION_TEST_STACK"]) == [], "Ctrl-C leaves no process behind"
