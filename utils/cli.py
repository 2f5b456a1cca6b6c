"""Operator commands: ``flask users …``, ``flask crypto rotate``, ``flask seed demo``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from utils.enums import Role
from utils.exceptions import ArbionError
from utils.services import connections, credentials, users

users_cli = AppGroup("users", help="Manage user accounts.")
crypto_cli = AppGroup("crypto", help="Manage credential encryption.")
seed_cli = AppGroup("seed", help="Create starter data.")
brokers_cli = AppGroup("brokers", help="Check broker connections.")

DEMO_TRADER_EMAIL = "demo@example.com"
LOCAL_SUPERADMIN_EMAIL = "admin@example.com"


def init_cli(app: Flask) -> None:
    """Register the command groups on the app."""
    for group in (users_cli, crypto_cli, seed_cli, brokers_cli):
        app.cli.add_command(group)


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", type=click.Choice([role.value for role in Role]), default=Role.TRADER.value)
@click.password_option("--password", prompt=True, confirmation_prompt=True)
def create_user(email: str, role: str, password: str) -> None:
    """Create a user (the password is prompted for unless --password is given)."""
    try:
        user = users.create_user(email, password, Role(role))
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {user.role.value} {user.email} (id {user.id}).")


@users_cli.command("bootstrap-superadmin")
def bootstrap_superadmin() -> None:
    """Create SUPERADMIN_EMAIL with SUPERADMIN_PASSWORD once; an existing account is left alone."""
    email, password = current_app.config["SUPERADMIN_EMAIL"], current_app.config["SUPERADMIN_PASSWORD"]
    if not (email and password):
        click.echo("SUPERADMIN_EMAIL / SUPERADMIN_PASSWORD not set: nothing to bootstrap.")
        return
    try:
        account = users.bootstrap_superadmin(email, password)
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Superadmin {account.email}: {'created' if account.created else 'already exists, left unchanged'}.")


@crypto_cli.command("rotate")
@click.option("--batch-size", default=200, show_default=True)
def rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret with ENCRYPTION_KEY (resumable; run again if interrupted)."""
    report = credentials.rotate_all(batch_size)
    click.echo(f"Re-encrypted {report.rotated} value(s); {report.already_current} already current.")
    if report.unreadable:
        click.echo(f"Unreadable with every configured key ({len(report.unreadable)}): {', '.join(report.unreadable)}")
        raise SystemExit(1)


@seed_cli.command("demo")
def seed_demo() -> None:
    """Create a superadmin and a demo trader when missing; print generated passwords once."""
    email, password = current_app.config["SUPERADMIN_EMAIL"], current_app.config["SUPERADMIN_PASSWORD"]
    try:
        admin = (
            users.bootstrap_superadmin(email, password)
            if email and password
            else users.ensure_account(LOCAL_SUPERADMIN_EMAIL, Role.SUPERADMIN, "Superadmin")
        )
        trader = users.ensure_account(DEMO_TRADER_EMAIL, Role.TRADER, "Demo Trader")
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc
    for account in (admin, trader):
        _echo_account(account)
    if connections.ensure_paper_connection(DEMO_TRADER_EMAIL):
        click.echo(f"{'':<10} {DEMO_TRADER_EMAIL} got a paper account to trade with.")


def _echo_account(account: users.SeededAccount) -> None:
    if not account.created:
        click.echo(f"{account.role.value:<10} {account.email} (exists)")
    elif account.password:
        click.echo(f"{account.role.value:<10} {account.email} password: {account.password}  <- shown once, save it")
    else:
        click.echo(f"{account.role.value:<10} {account.email} (password from SUPERADMIN_PASSWORD)")


@brokers_cli.command("ping")
def ping_brokers() -> None:
    """Call every connection's broker once and print its status (exit 1 if any is unhealthy)."""
    checked = connections.check_all_connections()
    for connection in checked:
        detail = f" ({connection.status_detail})" if connection.status_detail else ""
        owner = f"#{connection.id} {connection.provider.value:<8} user {connection.user_id}"
        click.echo(f"{owner}: {connection.status.value}{detail}")
    click.echo(f"{len(checked)} connection(s) checked.")
    if any(connection.status.value != "connected" for connection in checked):
        raise SystemExit(1)
