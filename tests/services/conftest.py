"""Fixtures for service tests: a trader with a paper account."""

from __future__ import annotations

from decimal import Decimal

import pytest
from flask import Flask

from models import BrokerConnection, User
from tests.support import make_user
from utils.services import connections


@pytest.fixture()
def trader(app: Flask) -> User:
    return make_user()


@pytest.fixture()
def paper(trader: User) -> BrokerConnection:
    return connections.create_paper_connection(trader, "Sandbox", Decimal("1000000"))
