"""The admin area's actions and pages (who may reach them: tests/security/test_admin_area.py)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from models import AuditLog, User
from tests.support import DEFAULT_PASSWORD, login, make_user, post_form
from utils.enums import Role
from utils.extensions import db
from utils.services import audit, monitor


@pytest.fixture()
def superadmin(client: FlaskClient) -> User:
    user = make_user("root@example.com", Role.SUPERADMIN)
    assert login(client, "root@example.com").status_code == 302
    return user


def actions() -> list[str]:
    return list(db.session.scalars(db.select(AuditLog.action).order_by(AuditLog.id)))


def test_superadmin_sees_users_and_can_search(client: FlaskClient, superadmin: User) -> None:
    make_user("alice@example.com")
    make_user("bob@example.com")
    page = client.get("/admin/users/?q=ALICE").get_data(as_text=True)
    assert "alice@example.com" in page
    assert "bob@example.com" not in page


def test_superadmin_creates_a_user_and_it_is_audited(client: FlaskClient, superadmin: User) -> None:
    response = post_form(
        client,
        "/admin/users/new",
        "/admin/users/new",
        {
            "email": "New.Trader@Example.com",
            "display_name": "New",
            "role": "trader",
            "password": "a long enough passphrase",
        },
    )
    assert response.status_code == 302
    created = db.session.scalar(db.select(User).where(User.email == "new.trader@example.com"))
    assert created is not None and created.role == Role.TRADER
    entry = db.session.scalar(db.select(AuditLog).where(AuditLog.subject_id == str(created.id)))
    assert entry.actor_id == superadmin.id and entry.subject_id == str(created.id)
    assert "a long enough passphrase" not in str(entry.details)


def test_creating_a_duplicate_or_weak_user_shows_why(client: FlaskClient, superadmin: User) -> None:
    data = {"email": "root@example.com", "role": "trader", "password": "a long enough passphrase"}
    response = post_form(client, "/admin/users/new", "/admin/users/new", data)
    assert response.status_code == 409
    assert "already exists" in response.get_data(as_text=True)
    data = {"email": "x@example.com", "role": "trader", "password": "short"}
    response = post_form(client, "/admin/users/new", "/admin/users/new", data)
    assert response.status_code == 422
    assert "Use at least 12 characters." in response.get_data(as_text=True)


def test_role_change_and_deactivation_are_applied_and_audited(
    app: Flask, client: FlaskClient, superadmin: User
) -> None:
    target = make_user("target@example.com")
    target_client = app.test_client()
    login(target_client, "target@example.com")
    page = f"/admin/users/{target.id}"
    post_form(client, page, f"{page}/role", {"role": "admin"})
    post_form(client, page, f"{page}/deactivate")
    db.session.expire_all()
    assert (target.role, target.active) == (Role.ADMIN, False)
    assert target_client.get("/").status_code == 302, "deactivation ends the user's sessions"
    assert login(app.test_client(), "target@example.com").status_code == 401
    post_form(client, page, f"{page}/activate")
    db.session.expire_all()
    assert target.active
    admin_actions = [action for action in actions() if action.startswith("admin.")]
    assert admin_actions == ["admin.user_role", "admin.user_deactivate", "admin.user_activate"]


def test_password_reset_shows_a_new_password_once(app: Flask, client: FlaskClient, superadmin: User) -> None:
    target = make_user("target@example.com")
    response = post_form(client, f"/admin/users/{target.id}", f"/admin/users/{target.id}/reset-password")
    assert response.status_code == 200
    password = re.search(r'<code class="secret">([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert login(app.test_client(), "target@example.com", DEFAULT_PASSWORD).status_code == 401
    assert login(app.test_client(), "target@example.com", password).status_code == 302
    assert "admin.user_password_reset" in actions()
    assert password not in str([e.details for e in db.session.scalars(db.select(AuditLog))])


def test_nobody_demotes_or_deactivates_themselves(client: FlaskClient, superadmin: User) -> None:
    page = f"/admin/users/{superadmin.id}"
    response = post_form(client, page, f"{page}/role", {"role": "trader"})
    assert response.status_code == 302
    assert "You cannot change your own role." in client.get(page).get_data(as_text=True)
    post_form(client, page, f"{page}/deactivate")
    db.session.expire_all()
    assert (superadmin.role, superadmin.active) == (Role.SUPERADMIN, True)


def test_a_superadmin_can_demote_another_while_one_remains(client: FlaskClient, superadmin: User) -> None:
    second = make_user("second@example.com", Role.SUPERADMIN)
    page = f"/admin/users/{second.id}"
    post_form(client, page, f"{page}/role", {"role": "trader"})
    db.session.expire_all()
    assert second.role == Role.TRADER


def test_the_last_active_superadmin_cannot_be_demoted_or_deactivated(app: Flask) -> None:
    from utils.exceptions import ConflictError
    from utils.services import users

    last = make_user("last@example.com", Role.SUPERADMIN)
    operator = make_user("ops@example.com", Role.ADMIN)
    with pytest.raises(ConflictError, match="last active superadmin"):
        users.change_role(operator, last.id, Role.TRADER)
    with pytest.raises(ConflictError, match="last active superadmin"):
        users.set_active(operator, last.id, False)
    db.session.expire_all()
    assert (last.role, last.active) == (Role.SUPERADMIN, True)


def test_system_page_shows_readiness_and_heartbeats(client: FlaskClient, superadmin: User) -> None:
    from utils.services.system import record_heartbeat

    record_heartbeat("beat", "beat-host-1")
    page = client.get("/admin/system/").get_data(as_text=True)
    assert "beat-host-1" in page
    assert "database" in page


def test_audit_page_lists_entries(client: FlaskClient, superadmin: User) -> None:
    page = client.get("/admin/system/audit").get_data(as_text=True)
    assert "auth.login" in page


def test_system_page_shows_the_last_monitor_runs(client: FlaskClient, superadmin: User) -> None:
    assert "No monitor run yet" in client.get("/admin/system/").get_data(as_text=True)
    result = monitor.run_cycle()
    page = client.get("/admin/system/").get_data(as_text=True)
    assert result.cycle_key[:8] in page and "No monitor run yet" not in page


def test_the_audit_log_filters_and_exports_csv(client: FlaskClient, superadmin: User) -> None:
    other = make_user("someone@example.com")
    audit.record("risk.limits_changed", actor=superadmin, subject=other, details={"to": {"x": "=1+1"}})
    audit.record("connection.create", actor=other, subject=other)
    db.session.commit()
    page = client.get("/admin/system/audit?action=risk.&actor=root").get_data(as_text=True)
    assert "risk.limits_changed" in page and "connection.create" not in page
    page = client.get(f"/admin/system/audit?subject=User+{other.id}&action=connection").get_data(as_text=True)
    assert "connection.create" in page and "risk.limits_changed" not in page
    assert "No entries match" in client.get("/admin/system/audit?since=2999-01-01").get_data(as_text=True)
    exported = client.get("/admin/system/audit?format=csv&action=risk.")
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    lines = exported.get_data(as_text=True).splitlines()
    assert lines[0].startswith("created_at,actor,action") and len(lines) == 2 and "risk.limits_changed" in lines[1]


def test_every_admin_page_has_a_plain_text_title(client: FlaskClient, superadmin: User) -> None:
    for path in ("/admin/system/", f"/admin/users/{superadmin.id}", "/admin/trading/", "/admin/brokers/"):
        page = client.get(path).get_data(as_text=True)
        title = page.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "<" not in title, f"markup leaked into the title of {path}"
