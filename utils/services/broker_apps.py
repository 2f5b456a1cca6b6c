"""The platform's broker app registrations (Schwab's app key, secret and callback URL).

The environment (SCHWAB_CLIENT_ID, SCHWAB_CLIENT_SECRET, SCHWAB_REDIRECT_URI) wins when it sets
the app; otherwise the registration the superadmin saved is used, its secret decrypted only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app

from models import BrokerApp, User
from utils.brokers.http import DEFAULT_TIMEOUT, HttpPolicy
from utils.encryption import CredentialDecryptError
from utils.enums import Provider
from utils.exceptions import BrokerNotConfiguredError, CredentialUnavailableError, InvalidInputError
from utils.extensions import db
from utils.services import audit, credentials

ENVIRONMENT, ADMIN = "environment", "superadmin"
CALLBACK_PATH = "/connections/schwab/callback"


@dataclass(frozen=True)
class SchwabApp:
    """A usable Schwab app registration and where it came from."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    base_url: str
    source: str


@dataclass(frozen=True)
class SchwabAppSummary:
    """What the admin page shows: never the secret, only whether one is set."""

    source: str | None
    client_id: str
    redirect_uri: str
    secret_set: bool


def http_policy() -> HttpPolicy:
    """Timeouts of the platform's broker clients: BROKER_READ_TIMEOUT for answers."""
    return HttpPolicy(timeout=(DEFAULT_TIMEOUT[0], float(current_app.config["BROKER_READ_TIMEOUT"])))


def schwab_app() -> SchwabApp:
    """The Schwab app to use; BrokerNotConfiguredError when neither source sets it."""
    base_url = current_app.config["SCHWAB_API_BASE_URL"]
    if environment := _from_environment():
        client_id, client_secret, redirect_uri = environment
        return SchwabApp(client_id, client_secret, redirect_uri, base_url, ENVIRONMENT)
    row = _stored(Provider.SCHWAB)
    if row is None or row.client_secret_encrypted is None:
        raise BrokerNotConfiguredError(
            "Schwab is not set up on this platform: the superadmin must enter the Schwab app's key, secret "
            "and callback URL (or set SCHWAB_CLIENT_ID, SCHWAB_CLIENT_SECRET and SCHWAB_REDIRECT_URI)."
        )
    try:
        secret = credentials.encryptor().decrypt(row.client_secret_encrypted)
    except CredentialDecryptError as exc:
        raise CredentialUnavailableError(
            "The stored Schwab app secret cannot be decrypted with the configured keys; the superadmin must "
            "enter it again."
        ) from exc
    return SchwabApp(row.client_id, secret, row.redirect_uri, base_url, ADMIN)


def schwab_app_summary() -> SchwabAppSummary:
    """The registration in effect, for display."""
    if environment := _from_environment():
        client_id, _, redirect_uri = environment
        return SchwabAppSummary(ENVIRONMENT, client_id, redirect_uri, True)
    row = _stored(Provider.SCHWAB)
    if row is None:
        return SchwabAppSummary(None, "", "", False)
    return SchwabAppSummary(ADMIN, row.client_id, row.redirect_uri, row.client_secret_encrypted is not None)


def save_schwab_app(actor: User, client_id: str, client_secret: str, redirect_uri: str) -> BrokerApp:
    """Store the Schwab app registration (secret encrypted); an empty secret keeps the stored one."""
    client_id, client_secret, redirect_uri = client_id.strip(), client_secret.strip(), redirect_uri.strip()
    _check_callback(redirect_uri)
    if not client_id:
        raise InvalidInputError("The Schwab app key is required.", details={"field": "client_id"})
    row = _stored(Provider.SCHWAB) or BrokerApp(provider=Provider.SCHWAB)
    if not client_secret and row.client_secret_encrypted is None:
        raise InvalidInputError("The Schwab app secret is required.", details={"field": "client_secret"})
    row.client_id, row.redirect_uri, row.updated_by_id = client_id, redirect_uri, actor.id
    if client_secret:
        row.client_secret_encrypted = credentials.encryptor().encrypt(client_secret)
    db.session.add(row)
    audit.record(
        "broker_app.save",
        actor=actor,
        subject=row,
        details={"provider": "schwab", "secret_changed": bool(client_secret)},
    )
    db.session.commit()
    return row


def _check_callback(redirect_uri: str) -> None:
    parts = urlsplit(redirect_uri)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not loopback) or not parts.hostname:
        raise InvalidInputError(
            "The callback URL must be an https:// URL (http:// only on 127.0.0.1).", details={"field": "redirect_uri"}
        )
    if not parts.path.endswith(CALLBACK_PATH) or parts.query or parts.fragment:
        raise InvalidInputError(
            f"The callback URL must end in {CALLBACK_PATH}, exactly as registered with Schwab.",
            details={"field": "redirect_uri"},
        )


def _from_environment() -> tuple[str, str, str] | None:
    """(client id, secret, redirect URI) when the environment sets all three."""
    config = current_app.config
    values = (config["SCHWAB_CLIENT_ID"], config["SCHWAB_CLIENT_SECRET"], config["SCHWAB_REDIRECT_URI"])
    return values if all(values) else None


def _stored(provider: Provider) -> BrokerApp | None:
    return db.session.scalar(db.select(BrokerApp).where(BrokerApp.provider == provider))
