"""Browser tests: Debian's chromium driven by Playwright against the real platform processes.

Each test gets gunicorn (the web process) and a Celery worker with embedded beat, started as
subprocesses on 127.0.0.1 against the test database and the test's Celery broker, with short
intervals so fills, protection and the stop-loss monitor happen within seconds. The test process
shares the database: it creates users and connections through the services and reads results.
Every page must run without a console error: a Content-Security-Policy violation fails the test.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.helpers import ConsoleErrors, PageFactory
from tests.processes import BIN, ROOT, free_port, stop_processes, wait_ready

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
FAST_INTERVALS = {
    "HEARTBEAT_INTERVAL": "1",
    "HEARTBEAT_MAX_AGE": "10",
    "PAPER_MATCH_INTERVAL": "1",
    "ORDER_POLL_INTERVAL": "1",
    "STOP_MONITOR_INTERVAL": "2",
    "RECONCILE_INTERVAL": "3600",
    # Many logins from one address in one run: the limits themselves are tested in tests/web.
    "LOGIN_LIMIT_PER_IP": "1000 per minute",
    "LOGIN_LIMIT_PER_ACCOUNT": "1000 per minute",
    "LOGIN_LIMIT_PER_ACCOUNT_ADDRESS": "1000 per minute",
}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless chromium for the session (no sandbox: CI runs as root)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"chromium not found at {CHROMIUM}: `apt-get install -y chromium` (.ci/run does it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture()
def environ(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Short intervals; without Redis, the embedded SQLite Celery transport shared by processes."""
    shared = environ | FAST_INTERVALS
    if "REDIS_URL" not in shared:
        shared["CELERY_BROKER_URL"] = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
        shared["CELERY_RESULT_BACKEND"] = f"db+sqlite:///{tmp_path / 'results.sqlite'}"
    return shared


@pytest.fixture()
def server(app: Flask, environ: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """gunicorn and a Celery worker with beat, on 127.0.0.1; yields the base URL."""
    port = str(free_port())
    marker = uuid.uuid4().hex
    child_env = environ | {
        "PORT": port,
        "ARBION_TEST_STACK": marker,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
    }
    log = (tmp_path / "platform.log").open("wb")
    commands = [
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "app:create_app()"],
        [str(BIN / "celery"), "-A", "worker", "worker", "-B", "--pool", "threads", "--concurrency", "4",
         "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"],
    ]  # fmt: skip
    processes = [
        subprocess.Popen(command, cwd=ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT) for command in commands
    ]
    try:
        wait_ready(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_processes(processes, marker)
        log.close()
        print((tmp_path / "platform.log").read_text(errors="replace")[-6000:])  # noqa: T201 - shown on failure


@pytest.fixture()
def console_errors() -> ConsoleErrors:
    """What went wrong in the browser's console during the test; asserted empty afterwards."""
    return ConsoleErrors()


@pytest.fixture()
def open_page(browser: Browser, server: str, console_errors: ConsoleErrors) -> Iterator[PageFactory]:
    """A factory of pages, each in its own browser context (its own cookies: one user each)."""
    contexts: list[BrowserContext] = []

    def new_page() -> Page:
        context = browser.new_context(base_url=server, viewport={"width": 1360, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        console_errors.watch(page)
        return page

    yield new_page
    for context in contexts:
        context.close()
    assert console_errors.seen == [], "the browser console reported errors"
