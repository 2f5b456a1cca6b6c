"""`flask fake-broker schwab|coinbase`: the broker fakes served as a local sandbox, in a real process."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask

from tests.brokers.test_schwab import MemoryTokenStore
from tests.support import base_environ
from utils.brokers.coinbase import CoinbaseClient
from utils.brokers.schwab import SchwabClient, SchwabOAuth, make_pkce_pair

ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).parent / "flask")
SCHWAB = {
    "SCHWAB_CLIENT_ID": "sandbox-app-key",
    "SCHWAB_CLIENT_SECRET": "sandbox-app-secret",
    "SCHWAB_REDIRECT_URI": "https://127.0.0.1:5000/connections/schwab/callback",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sandbox_environ(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A self-contained app environment: the command needs no database, Redis or worker."""
    environ = base_environ(
        f"sqlite:///{tmp_path / 'sandbox.db'}", CELERY_BROKER_URL="memory://", CELERY_RESULT_BACKEND="cache+memory://"
    )
    environ.pop("REDIS_URL", None)
    return {**environ, "HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent), **settings}


def flask_command(*args: str) -> list[str]:
    return [FLASK, "--app", "app", "fake-broker", *args]


@contextmanager
def running_fake(tmp_path: Path, provider: str, **settings: str) -> Iterator[tuple[str, Path]]:
    """Start `flask fake-broker <provider>`, wait until it answers; always stop it. Yields (base URL, output)."""
    port = free_port()
    output = tmp_path / f"{provider}.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            flask_command(provider, "--port", str(port)),
            cwd=ROOT,
            env=sandbox_environ(tmp_path, **settings),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process, output)
            yield f"http://127.0.0.1:{port}", output
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_for_port(port: int, process: subprocess.Popen[bytes], output: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the command exited ({process.returncode}): {output.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)  # still starting
    raise AssertionError(f"nothing listened on {port} within {timeout} s: {output.read_text()}")


def test_schwab_sandbox_runs_the_connect_flow_end_to_end(tmp_path: Path) -> None:
    with running_fake(tmp_path, "schwab", **SCHWAB) as (base_url, output):
        printed = output.read_text()
        assert f"SCHWAB_API_BASE_URL={base_url}" in printed
        oauth = SchwabOAuth(
            SCHWAB["SCHWAB_CLIENT_ID"], SCHWAB["SCHWAB_CLIENT_SECRET"], SCHWAB["SCHWAB_REDIRECT_URI"], base_url
        )
        verifier, challenge = make_pkce_pair()
        login = requests.get(oauth.authorize_url("csrf-state-1", challenge), allow_redirects=False, timeout=5)
        assert login.status_code == 302, "approved at once, no login page"
        callback = urlsplit(login.headers["Location"])
        assert f"{callback.scheme}://{callback.netloc}{callback.path}" == SCHWAB["SCHWAB_REDIRECT_URI"]
        query = parse_qs(callback.query)
        assert query["state"] == ["csrf-state-1"]
        tokens = oauth.exchange_code(query["code"][0], verifier)
        client = SchwabClient(
            MemoryTokenStore(tokens),
            client_id=SCHWAB["SCHWAB_CLIENT_ID"],
            client_secret=SCHWAB["SCHWAB_CLIENT_SECRET"],
            base_url=base_url,
        )
        [account] = client.accounts()
        assert account.display_number == "…5678"
        assert client.balance(account.account_id).cash == Decimal("25000")
        assert [(p.symbol, p.quantity) for p in client.positions(account.account_id)] == [("AAPL", Decimal("10"))]


def test_coinbase_sandbox_prints_a_key_that_signs_real_requests(tmp_path: Path) -> None:
    with running_fake(tmp_path, "coinbase") as (base_url, output):
        printed = output.read_text()
        assert f"COINBASE_API_BASE_URL={base_url}" in printed
        key_name = re.search(r"Key name: (\S+)", printed)
        pem = re.search(r"-----BEGIN EC PRIVATE KEY-----.*?-----END EC PRIVATE KEY-----", printed, re.DOTALL)
        assert key_name and pem, printed
        client = CoinbaseClient(key_name.group(1), pem.group(0), base_url)
        wallets = {account.display_number for account in client.accounts()}
        assert wallets == {"USD", "BTC", "ETH"}
        assert client.balance("USD").cash == Decimal("10000")
        quote = client.quotes(["BTC-USD"])["BTC-USD"]
        assert (quote.bid, quote.ask) == (Decimal("94990.00"), Decimal("95010.00"))


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",  # noqa: S104 - refused, never bound
        "192.168.1.10",
        "example.com",
        "::",
    ],
)
def test_only_loopback_hosts_are_accepted(app: Flask, host: str) -> None:
    result = app.test_cli_runner().invoke(args=["fake-broker", "coinbase", "--port", "0", "--host", host])
    assert result.exit_code == 2
    assert "is not a loopback address" in result.output and "approve every login" in result.output
    assert "listening" not in result.output


def test_schwab_sandbox_says_which_settings_are_missing(app: Flask) -> None:
    app.config["SCHWAB_REDIRECT_URI"] = SCHWAB["SCHWAB_REDIRECT_URI"]
    result = app.test_cli_runner().invoke(args=["fake-broker", "schwab", "--port", "0"])
    assert result.exit_code == 1
    assert "Set SCHWAB_CLIENT_ID, SCHWAB_CLIENT_SECRET first" in result.output
    assert "listening" not in result.output
