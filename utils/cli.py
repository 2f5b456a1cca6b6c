"""Operator commands: ``flask users …``, ``flask crypto rotate``, ``flask seed demo``, ``flask fake-broker``,
``flask trading halt|resume|status``, ``flask paper shift|reset``, ``flask tokens create``."""

from __future__ import annotations

import importlib
import ipaddress
import uuid
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask, current_app
from flask.cli import AppGroup
from werkzeug.serving import make_server

from utils.enums import Role, TradingState
from utils.exceptions import ArbionError
from utils.services import (
    api_tokens,
    connections,
    credentials,
    execution,
    kill_switch,
    monitor,
    paper_market,
    trading_state,
    users,
)

users_cli = AppGroup("users", help="Manage user accounts.")
crypto_cli = AppGroup("crypto", help="Manage credential encryption.")
seed_cli = AppGroup("seed", help="Create starter data.")
brokers_cli = AppGroup("brokers", help="Check broker connections.")
fake_broker_cli = AppGroup(
    "fake-broker", help="Run a broker's HTTP fake on loopback: a local sandbox that approves every login."
)
trading_cli = AppGroup("trading", help="Platform-wide trading controls: the kill switch and the monitor.")
tokens_cli = AppGroup("tokens", help="Personal API tokens for the REST API (/api/v1).")
paper_cli = AppGroup("paper", help="The paper market: shock a symbol's price to rehearse stop-losses.")

DEMO_TRADER_EMAIL = "demo@example.com"
LOCAL_SUPERADMIN_EMAIL = "admin@example.com"
SCHWAB_SETTINGS = ("SCHWAB_CLIENT_ID", "SCHWAB_CLIENT_SECRET", "SCHWAB_REDIRECT_URI")
SANDBOX_SCHWAB_ACCOUNT = "12345678"
SANDBOX_SCHWAB_QUOTES = (  # symbol, last, bid, ask
    ("AAPL", "190.00", "189.99", "190.01"),
    ("MSFT", "420.00", "419.98", "420.02"),
    ("SPY", "580.00", "579.99", "580.01"),
)
SANDBOX_COINBASE_BALANCES = (("USD", "10000"), ("BTC", "0.25"), ("ETH", "2"))


def init_cli(app: Flask) -> None:
    """Register the command groups on the app."""
    for group in (users_cli, crypto_cli, seed_cli, brokers_cli, fake_broker_cli, trading_cli, paper_cli, tokens_cli):
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


@trading_cli.command("halt")
@click.option("--reason", required=True, help="Why trading stops; shown to every trader and kept in the audit log.")
@click.option("--cancel-working", is_flag=True, help="Also cancel every working entry order at its broker.")
def halt_trading(reason: str, cancel_working: bool) -> None:
    """Stop all new orders platform-wide and cancel the entries waiting to be sent; orders that
    close or reduce positions still go through."""
    restriction = _set_global_state(TradingState.HALTED, reason)
    click.echo(f"Trading HALTED platform-wide: {restriction.status.reason}")
    click.echo(f"{restriction.queued_cancelled} queued entry order(s) cancelled.")
    if cancel_working:
        report = kill_switch.cancel_working_entries(None, restriction.status.reason)
        click.echo(f"Working entry orders: {report.cancelled} cancelled at the broker, {report.failed} failed.")
    click.echo("New orders are refused; protective and closing exits still run. Undo with: flask trading resume")


@trading_cli.command("resume")
@click.option("--reason", default="", help="Optional note for the audit log.")
def resume_trading(reason: str) -> None:
    """Lift the platform-wide halt: trading is ACTIVE again (per-user states still apply)."""
    _set_global_state(TradingState.ACTIVE, reason)
    click.echo("Trading is ACTIVE platform-wide.")


@trading_cli.command("status")
def trading_status() -> None:
    """Print the platform-wide trading state."""
    status = trading_state.global_trading_state()
    detail = f": {status.reason}" if status.reason else ""
    by = f" (set by {status.by})" if status.by else ""
    click.echo(f"Trading is {status.state.value.upper()} platform-wide{detail}{by}.")


@trading_cli.command("monitor")
@click.option("--once", is_flag=True, help="Run one cycle now, in the foreground (required).")
def run_monitor(once: bool) -> None:
    """Run one stop-loss monitor cycle, send the exits it decides, and print its summary.

    The scheduled monitor runs on Celery Beat every STOP_MONITOR_INTERVAL seconds; this is for
    operators and tests.
    """
    if not once:
        raise click.UsageError("Pass --once: the scheduled monitor runs on Celery Beat.")
    result = monitor.run_cycle()
    closed = [exit_id for breach in result.to_close if (exit_id := monitor.close_breached(breach)) is not None]
    for exit_id in closed:
        execution.send(exit_id)
    click.echo(
        f"Monitor cycle {result.cycle_key}: {result.positions} position(s) checked, {result.breaches} breach(es), "
        f"{len(closed)} closed, {result.stale_quotes} unpriced, {result.errors} error(s), "
        f"{result.quote_calls} quote call(s) in {result.duration_ms} ms."
    )
    if result.errors or result.stale_quotes:
        raise SystemExit(1)


@paper_cli.command("shift")
@click.argument("symbol")
@click.option("--percent", required=True, help="The move in percent, e.g. -10 for a 10% drop.")
def shift_paper_price(symbol: str, percent: str) -> None:
    """Move SYMBOL's paper price by --percent for every paper account; audited."""
    try:
        factor = paper_market.shift_price(symbol, percent)
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"Paper {symbol.strip().upper()} now trades at {factor} x its synthetic price. Undo with: flask paper reset"
    )


@paper_cli.command("reset")
def reset_paper_prices() -> None:
    """Remove every price shift: the paper market follows its synthetic prices again."""
    paper_market.reset_prices()
    click.echo("Paper prices follow the synthetic market again.")


def _set_global_state(state: TradingState, reason: str) -> kill_switch.Restriction:
    try:
        return kill_switch.set_platform_state(None, state, reason, source="cli")
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc


def _loopback_host(ctx: click.Context, param: click.Parameter, host: str) -> str:
    """Accept loopback hosts only: the fakes approve any login and accept any order."""
    try:
        loopback = host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise click.BadParameter(
            f"{host!r} is not a loopback address. The fakes approve every login, so they only listen on "
            "127.0.0.1, ::1 or localhost."
        )
    return host.strip("[]")


SANDBOX_PORT = click.IntRange(0, 65535)
sandbox_host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, callback=_loopback_host, help="A loopback address."
)


@fake_broker_cli.command("schwab")
@click.option("--port", default=8700, show_default=True, type=SANDBOX_PORT, help="0 picks a free port.")
@sandbox_host_option
def fake_schwab(port: int, host: str) -> None:
    """Serve a fake Schwab Trader API with one sandbox account (cash and an AAPL position).

    It uses this app's SCHWAB_CLIENT_ID, SCHWAB_CLIENT_SECRET and SCHWAB_REDIRECT_URI. Its
    /v1/oauth/authorize shows no login page: it approves at once and redirects to
    SCHWAB_REDIRECT_URI with a code and the state; /v1/oauth/token exchanges the code (PKCE
    checked) for tokens. Start the app with SCHWAB_API_BASE_URL set to the printed URL and connect
    Schwab from the connections page. Ctrl-C stops it; its state lives in memory only.
    """
    config = current_app.config
    missing = [name for name in SCHWAB_SETTINGS if not config[name]]
    if missing:
        raise click.ClickException(
            f"Set {', '.join(missing)} first: the fake accepts only this app's Schwab client and callback."
        )
    create_schwab_fake = _fake_module("schwab").create_schwab_fake
    app, state = create_schwab_fake(
        config["SCHWAB_CLIENT_ID"], config["SCHWAB_CLIENT_SECRET"], redirect_uri=config["SCHWAB_REDIRECT_URI"]
    )
    account_hash = state.add_account(SANDBOX_SCHWAB_ACCOUNT, cash="25000", buying_power="50000")
    for symbol, last, bid, ask in SANDBOX_SCHWAB_QUOTES:
        state.set_price(symbol, last, bid=bid, ask=ask)
    state.set_position(account_hash, "AAPL", long="10", avg="180.00")
    _serve(
        app,
        (host, port),
        "Schwab Trader API",
        "SCHWAB_API_BASE_URL",
        f"Login is not checked: authorize redirects straight to {config['SCHWAB_REDIRECT_URI']} with a code.",
        f"Sandbox account {SANDBOX_SCHWAB_ACCOUNT}: $25,000 cash, 10 AAPL.",
    )


@fake_broker_cli.command("coinbase")
@click.option("--port", default=8701, show_default=True, type=SANDBOX_PORT, help="0 picks a free port.")
@sandbox_host_option
def fake_coinbase(port: int, host: str) -> None:
    """Serve a fake Coinbase Advanced Trade API with USD, BTC and ETH wallets.

    A fresh EC P-256 API key is made for each run and printed once: paste its name and private
    key into the Coinbase form on the connections page. Every request must carry a JWT signed
    with that key, as at Coinbase. Start the app with COINBASE_API_BASE_URL set to the printed
    URL. Ctrl-C stops it; its state lives in memory only.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    key_name = f"organizations/sandbox/apiKeys/{uuid.uuid4()}"
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    products = {"BTC-USD": ("0.00000001", "0.01", "0.00001"), "ETH-USD": ("0.00000001", "0.01", "0.0001")}
    fake = _fake_module("coinbase").create_coinbase_fake(key_name, public_pem, products=products)
    fake.set_price("BTC-USD", "94990.00", "95010.00")
    fake.set_price("ETH-USD", "3299.50", "3300.50")
    for currency, amount in SANDBOX_COINBASE_BALANCES:
        fake.set_balance(currency, amount)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    _serve(
        fake.app,
        (host, port),
        "Coinbase Advanced Trade API",
        "COINBASE_API_BASE_URL",
        "Sandbox API key (shown once; it works only against this run of the fake):",
        f"Key name: {key_name}",
        f"Private key:\n{private_pem.strip()}",
        "Balances: " + ", ".join(f"{amount} {currency}" for currency, amount in SANDBOX_COINBASE_BALANCES) + ".",
    )


def _fake_module(name: str) -> Any:
    """tests.fakes.<name>, imported only when a sandbox is asked for (it is dev tooling)."""
    try:
        return importlib.import_module(f"tests.fakes.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tests", "tests.fakes", f"tests.fakes.{name}"):
            raise
        raise click.ClickException("The broker fakes live in tests/fakes/: run this from a source checkout.") from exc


def _serve(app: Flask, address: tuple[str, int], title: str, setting: str, *notes: str) -> None:
    """Serve ``app`` threaded until Ctrl-C, after printing where it listens and the ``notes``."""
    host, port = address
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    url = f"http://{f'[{host}]' if ':' in host else host}:{server.port}"
    click.echo(f"Fake {title} listening on {url} (Ctrl-C stops it).")
    click.echo(f"Point the app at it: {setting}={url}")
    for note in notes:
        click.echo(note)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.")
    finally:
        server.server_close()


@tokens_cli.command("create")
@click.option("--user", "email", required=True, help="The e-mail of the user the token acts for.")
@click.option("--name", required=True, help="What the token is for (shown in the token list).")
@click.option("--scope", "scopes", default="read", show_default=True, help="Comma-separated: read, trade, admin.")
@click.option(
    "--expires-days", type=int, default=None, help="Days until the token expires (default: API_TOKEN_DEFAULT_DAYS)."
)
def create_token(email: str, name: str, scopes: str, expires_days: int | None) -> None:
    """Create an API token for a user and print it once (only its hash is stored)."""
    user = users.find_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with e-mail {email}.")
    try:
        issued = api_tokens.create_token(user, name, scopes.split(","), expires_days)
    except ArbionError as exc:
        raise click.ClickException(exc.message) from exc
    token = issued.token
    expires = f"{token.expires_at:%Y-%m-%d %H:%M} UTC"
    click.echo(f"Token {token.name!r} for {user.email} (scopes: {token.scopes}, expires {expires}):")
    click.echo(issued.plaintext)
    click.echo("Shown once: store it now. Send it as 'Authorization: Bearer <token>'.")
