"""The admin status page: queue depths, the hourly broker API check, drift, Schwab login upkeep."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import BrokerConnection, DriftAlert, User
from tests.support import login, make_user
from utils.enums import ConnectionStatus, DriftKind, Provider, Role
from utils.extensions import db
from utils.tasks.connections import check_broker_apis, keep_schwab_logins_alive
from utils.tasks.schedule import build_beat_schedule


@pytest.fixture()
def superadmin(client: FlaskClient) -> User:
    user = make_user("root@example.com", Role.SUPERADMIN)
    assert login(client, "root@example.com").status_code == 302
    return user


def status_page(client: FlaskClient) -> str:
    return client.get("/admin/system/").get_data(as_text=True)


def queue_depth(page: str, queue: str = "celery") -> int:
    found = re.search(rf'<td class="queue-depth" data-queue="{queue}">(\d+)</td>', page)
    assert found, "the queue is listed"
    return int(found[1])


def test_the_page_shows_how_many_tasks_wait_in_the_queue(app: Flask, client: FlaskClient, superadmin: User) -> None:
    assert queue_depth(status_page(client)) == 0
    for _ in range(3):
        app.extensions["celery"].send_task("system.record_worker_heartbeat")
    assert queue_depth(status_page(client)) == 3


def test_broker_status_appears_after_the_hourly_check_runs(
    client: FlaskClient, superadmin: User, paper: BrokerConnection
) -> None:
    assert "No check has run yet" in status_page(client)
    assert check_broker_apis() == {"paper": 1}
    page = status_page(client)
    assert re.search(r'<tr class="ok"><td>paper</td><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td><td>1 of 1</td>', page)
    assert "No check has run yet" not in page


def test_a_failing_connection_shows_the_provider_unhealthy(
    client: FlaskClient, superadmin: User, paper: BrokerConnection
) -> None:
    # A paper connection without its paper account: the broker call fails.
    broken = BrokerConnection(user_id=paper.user_id, provider=Provider.PAPER, status=ConnectionStatus.CONNECTED)
    db.session.add(broken)
    db.session.commit()
    check_broker_apis()
    assert re.search(r'<tr class="bad"><td>paper</td><td>[^<]+</td><td>1 of 2</td><td>[^<—]+</td>', status_page(client))


def test_the_broker_check_runs_hourly_from_beat(app: Flask) -> None:
    entry = build_beat_schedule(app.config)["check-broker-apis"]
    assert entry["task"] == "connections.check_broker_apis" and entry["options"]["expires"] == 3600.0
    assert entry["schedule"].minute == {41} and len(entry["schedule"].hour) == 24


def test_open_drift_is_counted_and_listed(client: FlaskClient, superadmin: User, paper: BrokerConnection) -> None:
    db.session.add(
        DriftAlert(connection_id=paper.id, user_id=paper.user_id, kind=DriftKind.ORPHAN_ORDER, symbol="ZZZ-USD")
    )
    db.session.commit()
    assert '<a href="/admin/system/drift" id="drift-count">1</a>' in status_page(client)
    listing = client.get("/admin/system/drift").get_data(as_text=True)
    assert "ZZZ-USD" in listing and "orphan_order" in listing


def test_schwab_login_upkeep_and_reconnects_are_shown(client: FlaskClient, superadmin: User) -> None:
    assert "not run yet" in status_page(client)
    db.session.add(
        BrokerConnection(user_id=superadmin.id, provider=Provider.SCHWAB, status=ConnectionStatus.RECONNECT_NEEDED)
    )
    db.session.commit()
    assert keep_schwab_logins_alive() == {"refreshed": 0, "expired": 0, "failed": 0}
    page = status_page(client)
    assert re.search(r'<dd id="login-upkeep">[\d-]+ [\d:]+ UTC: 0 refreshed, 0 expired, <span class="">0 failed', page)
    assert '<dd class="bad" id="reconnect-needed">1</dd>' in page
