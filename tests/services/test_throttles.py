"""The Schwab order-write window shared through Redis by every process (runs where Redis is configured)."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.support import TEST_REDIS_URL
from utils.extensions import redis_client
from utils.services import schwab_logins
from utils.services.throttles import SharedWriteThrottle

pytestmark = pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL (CI always sets it)")


class Clock:
    """A shared fake clock: ``sleep`` moves it forward and remembers how long was waited."""

    def __init__(self) -> None:
        self.now, self.waits = 1_000_000.0, []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_two_processes_share_one_window(app: Flask) -> None:
    clock = Clock()
    client = redis_client(TEST_REDIS_URL)
    web = SharedWriteThrottle(client, "test:writes", 3, clock=clock.time, sleep=clock.sleep)
    worker = SharedWriteThrottle(client, "test:writes", 3, clock=clock.time, sleep=clock.sleep)
    web()
    clock.now += 10
    worker()
    web()
    assert clock.waits == [], "three writes fit in the window"
    worker()  # the fourth waits until the first leaves the 60-second window
    assert clock.waits == [pytest.approx(50.0)]
    web()
    assert clock.waits[-1] == pytest.approx(10.0), "then until the second leaves"


def test_schwab_clients_use_the_shared_window_when_redis_is_set(app: Flask) -> None:
    assert app.config["REDIS_URL"]
    assert isinstance(schwab_logins.write_throttle(120), SharedWriteThrottle)
