"""Fixtures of the reliability battery: the broker fakes, and worker/beat subprocesses to kill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.reliability.stack import Stack, running_stack
from tests.venues import Fakes, running_fakes


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    """The Schwab and Coinbase fakes on 127.0.0.1 (point the app at them with ``fakes.environ()``)."""
    with running_fakes() as running:
        yield running


@pytest.fixture()
def stack(app: Flask, environ: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """Worker and beat subprocesses on the test's database and Redis, started by the test."""
    with running_stack(app.extensions["celery"], environ, tmp_path) as running:
        yield running
