"""Admin user actions on trading accounts: delete (guarded, with the reason) and flatten (audited)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import AuditLog, BrokerConnection, Order, Trade, User
from tests.services.test_positions import protected_trade, resting_buy
from tests.support import csrf_token, login, make_user, post_form
from utils.enums import OrderPurpose, OrderStatus, Role
from utils.exceptions import ConflictError
from utils.extensions import db
from utils.services import audit, execution, positions, users


@pytest.fixture()
def superadmin(client: FlaskClient) -> User:
    user = make_user("root@example.com", Role.SUPERADMIN)
    assert login(client, "root@example.com").status_code == 302
    return user


def detail(client: FlaskClient, user: User | int) -> str:
    user_id = user if isinstance(user, int) else user.id
    return client.get(f"/admin/users/{user_id}").get_data(as_text=True)


def delete(client: FlaskClient, user_id: int) -> object:
    return post_form(client, f"/admin/users/{user_id}", f"/admin/users/{user_id}/delete")


def flatten(client: FlaskClient, user_id: int, reason: str) -> object:
    return post_form(client, f"/admin/users/{user_id}", f"/admin/users/{user_id}/flatten", {"flatten_reason": reason})


def count(model: type, *where: object) -> int:
    return int(db.session.scalar(db.select(db.func.count()).select_from(model).where(*where)) or 0)


def exists(user_id: int) -> bool:
    return count(User, User.id == user_id) == 1


def test_the_user_page_has_confirmed_delete_and_flatten_forms(client: FlaskClient, superadmin: User) -> None:
    other = make_user("someone@example.com")
    page = detail(client, other)
    assert f'action="/admin/users/{other.id}/delete" id="delete-user"' in page
    assert f'action="/admin/users/{other.id}/flatten" id="flatten-user"' in page
    assert page.count("data-confirm=") == 2 and 'id="flatten_reason"' in page


def test_deleting_a_user_removes_the_account_and_what_it_owns(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    trade_id, paper_id = protected_trade(trader, paper).id, paper.id
    exit_ids = positions.flatten(trader, paper.id)
    execution.send(exit_ids[0])
    audit.record("test.marker", actor=trader, subject=trader)
    db.session.commit()
    response = delete(client, trader_id := trader.id)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/users/"
    assert not exists(trader_id)
    assert count(Trade, Trade.id == trade_id) == 0 and count(BrokerConnection, BrokerConnection.id == paper_id) == 0
    entry = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "admin.user_delete")).one()
    assert entry.actor_id == superadmin.id and entry.details["email"] == "trader@example.com"
    marker = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "test.marker")).one()
    assert marker.actor_id is None and marker.actor_email == "trader@example.com", "the trail keeps who it was"
    assert "Deleted trader@example.com." in client.get("/admin/users/").get_data(as_text=True)


def test_nobody_deletes_themselves(client: FlaskClient, superadmin: User) -> None:
    delete(client, superadmin.id)
    assert exists(superadmin.id)
    assert "You cannot delete yourself." in detail(client, superadmin)


def test_the_last_active_superadmin_cannot_be_deleted(app: Flask) -> None:
    last = make_user("last@example.com", Role.SUPERADMIN)
    operator = make_user("ops@example.com", Role.ADMIN)
    with pytest.raises(ConflictError, match="last active superadmin"):
        users.delete_user(operator, last.id)
    assert exists(last.id)


def test_a_superadmin_can_be_deleted_while_another_remains(client: FlaskClient, superadmin: User) -> None:
    second = make_user("second@example.com", Role.SUPERADMIN)
    delete(client, second.id)
    assert not exists(second.id)


@pytest.mark.parametrize(
    ("open_trading", "why"),
    [
        (protected_trade, "1 open position(s) and 1 working order(s)"),  # the broker stop works
        (resting_buy, "1 working order(s): flatten or cancel them first"),
    ],
)
def test_a_user_still_trading_is_not_deleted_and_the_page_says_why(
    client: FlaskClient,
    superadmin: User,
    trader: User,
    paper: BrokerConnection,
    open_trading: Callable[[User, BrokerConnection], object],
    why: str,
) -> None:
    open_trading(trader, paper)
    delete(client, trader.id)
    assert exists(trader.id)
    assert f"still has {why}" in detail(client, trader)


def test_flatten_cancels_entries_stores_exits_queues_them_and_is_audited(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    trades = [protected_trade(trader, paper), protected_trade(trader, paper)]
    resting = resting_buy(trader, paper)
    response = flatten(client, trader.id, "Account under review")
    assert response.status_code == 302
    db.session.expire_all()
    exits = db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all()
    assert sorted(order.trade_id for order in exits) == sorted(trade.id for trade in trades)
    assert all(order.status_detail == "Flattened by an admin: Account under review" for order in exits)
    assert db.session.get_one(Order, resting.id).status == OrderStatus.CANCELLED
    entry = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "admin.user_flatten")).one()
    assert entry.actor_id == superadmin.id and entry.subject_id == str(trader.id)
    assert entry.details == {"reason": "Account under review", "exits": 2}
    exit_audits = db.session.scalars(db.select(AuditLog).where(AuditLog.action == "order.exit")).all()
    assert {row.actor_id for row in exit_audits} == {superadmin.id}
    assert "Flattening: 2 exit order(s) sent." in detail(client, trader)


def test_flatten_without_a_reason_changes_nothing(
    client: FlaskClient, superadmin: User, trader: User, paper: BrokerConnection
) -> None:
    protected_trade(trader, paper)
    flatten(client, trader.id, "   ")
    assert db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all() == []
    assert "Give a reason for flattening this user." in detail(client, trader)


def test_a_trader_gets_403_on_the_new_admin_routes_and_nothing_changes(
    client: FlaskClient, trader: User, paper: BrokerConnection
) -> None:
    protected_trade(trader, paper)
    victim = make_user("victim@example.com")
    login(client, "trader@example.com")
    token = csrf_token(client, "/positions/")
    for path in (f"/admin/users/{victim.id}/delete", f"/admin/users/{trader.id}/flatten"):
        assert client.post(path, data={"csrf_token": token, "flatten_reason": "x"}).status_code == 403, path
    assert client.get("/admin/system/drift").status_code == 403
    assert exists(victim.id)
    assert db.session.scalars(db.select(Order).where(Order.purpose == OrderPurpose.EXIT)).all() == []
