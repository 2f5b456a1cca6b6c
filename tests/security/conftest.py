"""The security battery's world: an owner with one object of every kind, another trader, a superadmin."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from flask import Flask

from models import ApiToken, BrokerConnection, Notification, Order, Trade, User
from tests.support import make_user
from tests.trading_support import CRYPTO, add_trade, stored_order
from utils.enums import OrderPurpose, OrderStatus, Role, TradeStatus
from utils.extensions import db
from utils.services import api_tokens, connections, notifications


@dataclass
class World:
    """Seeded users and the owner's objects (one of each kind a route can name by id)."""

    owner: User
    other: User
    root: User
    connection: BrokerConnection
    order: Order
    trade: Trade
    token: ApiToken
    notification: Notification

    def ids(self) -> dict[str, int]:
        """The value of each object-id parameter of the URL map: the owner's objects."""
        return {
            "order_id": self.order.id,
            "trade_id": self.trade.id,
            "connection_id": self.connection.id,
            "token_id": self.token.id,
            "user_id": self.owner.id,
        }


@pytest.fixture()
def world(app: Flask) -> World:
    """owner@example.com (paper account, a working order, an open trade, a token, a notification),
    other@example.com (a trader with nothing) and root@example.com (superadmin)."""
    owner = make_user("owner@example.com")
    connection = connections.create_paper_connection(owner, "Owner sandbox", Decimal("100000"))
    order = stored_order(connection, CRYPTO, OrderPurpose.ENTRY, OrderStatus.WORKING, limit_price=Decimal(100))
    trade = add_trade(owner, connection, status=TradeStatus.OPEN, stop_loss_price=Decimal(90))
    api_tokens.create_token(owner, "owner script", ["read"])
    notification = notifications.notify(owner.id, "test", "Something happened.")
    db.session.commit()
    token = db.session.scalars(db.select(ApiToken).where(ApiToken.user_id == owner.id)).one()
    other = make_user("other@example.com")
    root = make_user("root@example.com", Role.SUPERADMIN)
    return World(owner, other, root, connection, order, trade, token, notification)
