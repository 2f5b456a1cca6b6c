"""Credential encryption: refusal without a usable key, derivation, rotation, self-test."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from app import create_app
from tests.support import TEST_ENCRYPTION_KEY, base_environ
from utils.encryption import GENERATE_KEY_COMMAND, CredentialDecryptError, build_encryptor
from utils.exceptions import ConfigurationError

SECRET = "a-long-operator-secret-of-at-least-32-chars"
SALT = "0123456789abcdef0123"


def test_app_refuses_to_start_without_an_encryption_key(database_url: str) -> None:
    environ = base_environ(database_url, ENCRYPTION_KEY="")
    with pytest.raises(ConfigurationError) as caught:
        create_app(environ)
    message = caught.value.message
    assert "Encryption is not configured" in message
    assert "ENCRYPTION_KEY" in message and "ENCRYPTION_SECRET" in message and "ENCRYPTION_SALT" in message
    assert GENERATE_KEY_COMMAND in message


@pytest.mark.parametrize("bad_key", ["not-a-key", "A" * 44, Fernet.generate_key().decode()[:-4]])
def test_app_refuses_to_start_with_a_malformed_key(database_url: str, bad_key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_app(base_environ(database_url, ENCRYPTION_KEY=bad_key))
    assert "ENCRYPTION_KEY is malformed" in caught.value.message
    assert GENERATE_KEY_COMMAND in caught.value.message
    assert bad_key not in caught.value.message


def test_fernet_key_round_trips() -> None:
    encryptor = build_encryptor({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY})
    token = encryptor.encrypt("schwab-refresh-token")
    assert "schwab-refresh-token" not in token
    assert encryptor.decrypt(token) == "schwab-refresh-token"


def test_secret_and_salt_derive_a_stable_key() -> None:
    first = build_encryptor({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": SALT})
    second = build_encryptor({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": SALT})
    assert second.decrypt(first.encrypt("x")) == "x"
    other_salt = build_encryptor({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": SALT[::-1]})
    with pytest.raises(CredentialDecryptError):
        other_salt.decrypt(first.encrypt("x"))


def test_session_secret_is_the_backward_compatible_fallback() -> None:
    legacy = build_encryptor({"SESSION_SECRET": SECRET, "ENCRYPTION_SALT": SALT})
    modern = build_encryptor({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": SALT})
    assert modern.decrypt(legacy.encrypt("kept")) == "kept"


def test_encryption_key_wins_over_a_derived_key() -> None:
    both = build_encryptor(
        {"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY, "ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": SALT}
    )
    only_key = build_encryptor({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY})
    assert only_key.decrypt(both.encrypt("v")) == "v"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"ENCRYPTION_SECRET": SECRET}, "needs ENCRYPTION_SALT of at least 16 characters"),
        ({"ENCRYPTION_SECRET": SECRET, "ENCRYPTION_SALT": "short"}, "needs ENCRYPTION_SALT"),
        ({"ENCRYPTION_SECRET": "too-short", "ENCRYPTION_SALT": SALT}, "at least 32 characters"),
        ({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY, "ENCRYPTION_KEYS_OLD": "junk"}, "ENCRYPTION_KEYS_OLD is malformed"),
    ],
)
def test_weak_or_incomplete_settings_are_refused(settings: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        build_encryptor(settings)


def test_old_keys_still_decrypt_and_rotate_to_the_current_key() -> None:
    old_key = Fernet.generate_key().decode()
    before = build_encryptor({"ENCRYPTION_KEY": old_key})
    token = before.encrypt("coinbase-private-key")
    after = build_encryptor({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY, "ENCRYPTION_KEYS_OLD": old_key})
    assert after.decrypt(token) == "coinbase-private-key"
    assert not after.is_current(token)
    rotated = after.rotate(token)
    assert after.is_current(rotated)
    assert build_encryptor({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY}).decrypt(rotated) == "coinbase-private-key"


def test_a_foreign_token_is_a_clear_decrypt_error() -> None:
    encryptor = build_encryptor({"ENCRYPTION_KEY": TEST_ENCRYPTION_KEY})
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    with pytest.raises(CredentialDecryptError):
        encryptor.decrypt(foreign)
    with pytest.raises(CredentialDecryptError):
        encryptor.rotate(foreign)
