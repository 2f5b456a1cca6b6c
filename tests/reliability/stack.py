"""Celery worker and beat subprocesses for the reliability battery, each started and SIGKILLed on its own.

The processes share the test's database and Redis (so the test reads what they did) and carry an
ARBION_TEST_STACK marker, so whatever survives a test is killed afterwards (tests/processes.py).
The test process keeps the broker fakes; it may also play beat by enqueueing the beat tasks itself.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import Celery

from tests.processes import BIN, ROOT, kill_stack


class Stack:
    """The worker and beat processes of one test."""

    def __init__(self, celery_app: Celery, environ: dict[str, str], folder: Path):
        self.celery_app = celery_app
        self.marker = uuid.uuid4().hex
        self.environ = environ | {
            "ARBION_TEST_STACK": self.marker,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(folder),
        }
        self.folder = folder
        self.log_path = folder / "stack.log"
        self._log = self.log_path.open("ab")
        self._numbers = itertools.count(1)
        self.processes: list[subprocess.Popen[bytes]] = []

    def worker(self, *options: str) -> subprocess.Popen[bytes]:
        """Start a worker (one process: the solo pool unless ``options`` say otherwise); return once it
        answers a ping."""
        name = f"rel{next(self._numbers)}-{self.marker[:8]}@127.0.0.1"
        pool = [] if "--pool" in options else ["--pool", "solo"]
        process = self._start("worker", "-n", name, *pool, *options, "--without-gossip", "--without-mingle")
        deadline = time.monotonic() + 60
        while not self.celery_app.control.ping(destination=[name], timeout=0.5):
            assert process.poll() is None, f"worker {name} exited: {self.log_tail()}"
            assert time.monotonic() < deadline, f"worker {name} never answered a ping: {self.log_tail()}"
        return process

    def beat(self, schedule: str = "beat-schedule") -> subprocess.Popen[bytes]:
        """Start a beat process with its own schedule file."""
        return self._start("beat", "--schedule", str(self.folder / schedule))

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL one process (no shutdown handler runs) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def close(self) -> None:
        """Kill everything still running and show the end of the log (pytest prints it on failure)."""
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)
        kill_stack(self.marker)
        self._log.close()
        sys.stdout.write(self.log_tail())

    def log_tail(self) -> str:
        """The last lines the processes wrote."""
        return self.log_path.read_text(errors="replace")[-6000:]

    def _start(self, command: str, *arguments: str) -> subprocess.Popen[bytes]:
        level = self.environ.get("LOG_LEVEL", "WARNING")  # celery applies its --loglevel to our logging too
        argv = [str(BIN / "celery"), "-A", "worker", command, *arguments, "--loglevel", level]
        process = subprocess.Popen(argv, cwd=ROOT, env=self.environ, stdout=self._log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process


@contextlib.contextmanager
def running_stack(celery_app: Celery, environ: dict[str, str], folder: Path) -> Iterator[Stack]:
    """A Stack for the duration of the block; everything it started is killed afterwards."""
    stack = Stack(celery_app, environ, folder)
    try:
        yield stack
    finally:
        stack.close()
        celery_app.control.purge()


def every(seconds: int) -> dict[str, str]:
    """Settings that run the monitor, order tracking and paper matching every ``seconds``."""
    names = ("STOP_MONITOR_INTERVAL", "ORDER_POLL_INTERVAL", "PAPER_MATCH_INTERVAL")
    return dict.fromkeys(names, str(seconds))


def enqueue(celery_app: Celery, task: str, interval: float, **options: Any) -> None:
    """Send one beat task as beat does: it expires after one interval in the queue."""
    celery_app.send_task(task, expires=interval, **options)
