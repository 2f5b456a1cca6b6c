"""Locust users for bench.web_load: traders on the dashboard and API clients listing their positions.

Run by ``bench.web_load`` (``locust --headless``, loopback, bounded users and run time), which passes:

- BENCH_LOAD_IDENTITIES: a JSON file, a list of {"email", "password", "token"}, one per simulated user;
- BENCH_LOAD_SAMPLES: where to write every measured response time (ms) and failure, per request name
  (``<it>.open`` is touched when the measured window opens);
- BENCH_LOAD_USERS: how many users run: measuring starts once all of them have signed in (the logins,
  argon2 at OWASP's cost, are not what the dashboard's latency is about);
- BENCH_LOAD_WAIT: each user's mean think time between requests in seconds (0: back to back); the
  actual wait is uniform between half and one and a half times it, and each user starts at a random
  moment of the first think time: users released together would otherwise request in lockstep, a
  burst of every user each second that real traders do not make.

Each simulated user is a different bench user; a dashboard user signs in through the real login form
(CSRF token included), an API user presents its own Bearer token.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import defaultdict
from itertools import count
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

IDENTITIES: list[dict[str, str]] = json.loads(Path(os.environ["BENCH_LOAD_IDENTITIES"]).read_text())
EXPECTED_USERS = int(os.environ["BENCH_LOAD_USERS"])
THINK_SECONDS = float(os.environ.get("BENCH_LOAD_WAIT", "0"))
SIGN_IN_TIMEOUT = 60.0
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class _Window:
    """The measured window: from the moment every user is signed in to the end of the run."""

    def __init__(self) -> None:
        self.ready = Event()
        self.signed_in = 0
        self.started = 0.0
        self.stopped = 0.0
        self.times: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, list[str]] = defaultdict(list)

    def user_ready(self) -> None:
        """Count one signed-in user; open the window when the last one is."""
        self.signed_in += 1
        if self.signed_in >= EXPECTED_USERS and not self.ready.is_set():
            self.started = time.time()
            Path(os.environ["BENCH_LOAD_SAMPLES"] + ".open").touch()  # bench.web_load starts its CPU clocks
            self.ready.set()

    def as_dict(self) -> dict[str, Any]:
        """What bench.web_load reads back."""
        return {
            "started": self.started,
            "stopped": self.stopped,
            "signed_in": self.signed_in,
            "times": self.times,
            "failures": self.failures,
        }


WINDOW = _Window()
_NEXT_IDENTITY = count()


@events.request.add_listener
def _record(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    """Every request's time once the window is open; failures always (a failed sign-in counts)."""
    if exception is not None:
        WINDOW.failures[name].append(str(exception)[:200])
    elif WINDOW.ready.is_set():
        WINDOW.times[name].append(response_time)


@events.test_stop.add_listener
def _save(**_: Any) -> None:
    """Close the window and write the samples for bench.web_load."""
    WINDOW.stopped = time.time()
    Path(os.environ["BENCH_LOAD_SAMPLES"]).write_text(json.dumps(WINDOW.as_dict()))


class _BenchUser(FastHttpUser):
    """One bench user: takes the next identity, gets ready, waits until everyone is."""

    abstract = True
    wait_time = between(THINK_SECONDS / 2, THINK_SECONDS * 3 / 2)

    def on_start(self) -> None:
        """Sign in (however the subclass does), then wait for the others before measuring."""
        self.identity = IDENTITIES[next(_NEXT_IDENTITY) % len(IDENTITIES)]
        self.sign_in()
        WINDOW.user_ready()
        if not WINDOW.ready.wait(SIGN_IN_TIMEOUT):
            raise StopUser
        gevent.sleep(random.uniform(0, THINK_SECONDS))  # noqa: S311  # spreading arrivals, not a secret

    def sign_in(self) -> None:
        """Nothing by default."""


class DashboardUser(_BenchUser):
    """A trader who signed in through the login form and keeps loading the home page."""

    def sign_in(self) -> None:
        """GET the form for its CSRF token and session cookie, POST the credentials, land on / as this user."""
        form = self.client.get("/auth/login", name="login form")
        token = CSRF_FIELD.search(form.text or "")
        email = self.identity["email"]
        fields = {"email": email, "password": self.identity["password"], "csrf_token": token.group(1) if token else ""}
        with self.client.post("/auth/login", name="login", data=fields, catch_response=True) as answer:
            if answer.status_code != 200 or f"Log out {email}" not in (answer.text or ""):
                answer.failure(f"sign-in failed: HTTP {answer.status_code}")
                raise StopUser

    @task
    def dashboard(self) -> None:
        """GET / and check it is the signed-in home page, not the login form."""
        with self.client.get("/", name="GET /", catch_response=True) as page:
            if page.status_code != 200 or 'id="overview"' not in (page.text or ""):
                page.failure(f"not the dashboard: HTTP {page.status_code}")


class ApiUser(_BenchUser):
    """An API client with its own Bearer token listing its open positions."""

    @task
    def list_positions(self) -> None:
        """GET /api/v1/positions and check it is a JSON list."""
        headers = {"Authorization": f"Bearer {self.identity['token']}"}
        name = "GET /api/v1/positions"
        with self.client.get("/api/v1/positions", name=name, headers=headers, catch_response=True) as answer:
            if answer.status_code != 200 or not (answer.text or "").lstrip().startswith("["):
                answer.failure(f"not a positions list: HTTP {answer.status_code}")
