"""Helpers for tests that run the platform's real processes (gunicorn, Celery): ports, readiness, cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(port: str, timeout: float = 60, path: str = "/ready") -> requests.Response:
    """Poll /ready until it answers 200 (web up, worker and beat heartbeats fresh); /health: web up."""
    deadline = time.monotonic() + timeout
    response = None
    while time.monotonic() < deadline:
        try:
            response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=2)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass  # still starting
        time.sleep(0.5)
    raise AssertionError(f"never ready: {response.json() if response is not None else 'no answer'}")


def stack_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes started with ARBION_TEST_STACK=marker in their environment,
    orphans included (process managers give children their own sessions)."""
    return marked_processes("ARBION_TEST_STACK", marker)


def marked_processes(variable: str, marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment holds ``variable=marker`` (the benchmarks'
    stack uses it too)."""
    wanted = f"{variable}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if wanted in environment.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


def kill_stack(marker: str) -> None:
    """SIGKILL every process of the stack."""
    for pid in stack_processes(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_processes(processes: list[subprocess.Popen[bytes]], marker: str) -> None:
    """SIGTERM the processes, give them 15 s to exit, then SIGKILL whatever is left of the stack."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    kill_stack(marker)
