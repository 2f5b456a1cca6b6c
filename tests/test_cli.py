"""Operator commands: creating users, bootstrapping the superadmin, seeding the demo."""

from __future__ import annotations

import re

from flask import Flask

from app import create_app
from models import AuditLog, BrokerConnection, User
from tests.support import base_environ
from utils.enums import Role
from utils.extensions import db
from utils.passwords import verify_password


def run(app: Flask, *args: str, input: str | None = None) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    return result.exit_code, result.output


def test_users_create_with_a_prompted_password(app: Flask) -> None:
    code, output = run(
        app, "users", "create", "--email", "Ops@Example.com", "--role", "admin", input="a long enough passphrase\n" * 2
    )
    assert code == 0, output
    user = db.session.scalar(db.select(User).where(User.email == "ops@example.com"))
    assert user.role == Role.ADMIN
    assert verify_password(user.password_hash, "a long enough passphrase")
    assert "a long enough passphrase" not in output.split("\n", 2)[-1]


def test_users_create_explains_refusals(app: Flask) -> None:
    code, output = run(app, "users", "create", "--email", "x@example.com", "--password", "short")
    assert code == 1
    assert "Use at least 12 characters." in output
    code, output = run(app, "users", "create", "--email", "not-an-email", "--password", "a long enough passphrase")
    assert code == 1 and "Invalid email address" in output


def test_superadmin_bootstrap_creates_once_and_never_overwrites(app: Flask, database_url: str) -> None:
    environ = base_environ(
        database_url, SUPERADMIN_EMAIL="Boss@Example.com", SUPERADMIN_PASSWORD="initial boot passphrase"
    )
    booted = create_app(environ)
    with booted.app_context():
        code, output = run(booted, "users", "bootstrap-superadmin")
        assert code == 0 and "created" in output
        assert "initial boot passphrase" not in output
        boss = db.session.scalar(db.select(User).where(User.email == "boss@example.com"))
        assert boss.role == Role.SUPERADMIN
        boss.password_hash = "changed-by-the-user"
        db.session.commit()
        code, output = run(booted, "users", "bootstrap-superadmin")
        assert code == 0 and "already exists, left unchanged" in output
        db.session.expire_all()
        assert boss.password_hash == "changed-by-the-user"
        assert db.session.scalar(db.select(db.func.count(User.id))) == 1
        db.session.remove()


def test_superadmin_bootstrap_without_settings_does_nothing(app: Flask) -> None:
    code, output = run(app, "users", "bootstrap-superadmin")
    assert code == 0 and "nothing to bootstrap" in output
    assert db.session.scalar(db.select(db.func.count(User.id))) == 0


def test_seed_demo_prints_generated_passwords_once(app: Flask) -> None:
    code, first = run(app, "seed", "demo")
    assert code == 0, first
    passwords = dict(re.findall(r"(\S+@example\.com) password: (\S+)", first))
    assert set(passwords) == {"admin@example.com", "demo@example.com"}
    for email, password in passwords.items():
        assert verify_password(db.session.scalar(db.select(User.password_hash).where(User.email == email)), password)
    assert "demo@example.com got a paper account" in first
    code, second = run(app, "seed", "demo")
    assert code == 0 and "password:" not in second and second.count("(exists)") == 2
    assert "paper account" not in second
    owners = list(db.session.scalars(db.select(BrokerConnection.user_id)))
    demo_id = db.session.scalar(db.select(User.id).where(User.email == "demo@example.com"))
    assert owners == [demo_id], "one paper connection, for the demo trader only"
    assert db.session.scalar(db.select(db.func.count(AuditLog.id)).where(AuditLog.action == "user.create")) == 2
