"""Encryption of stored credentials: Fernet keys, key derivation, rotation, startup self-test.

Key priority (the original system's, kept for compatibility):
1. ENCRYPTION_KEY: a Fernet key (recommended);
2. ENCRYPTION_SECRET + ENCRYPTION_SALT: a key derived with scrypt;
3. SESSION_SECRET + ENCRYPTION_SALT: the same derivation (backward compatibility).
ENCRYPTION_KEYS_OLD (comma-separated Fernet keys) still decrypt, so keys can be rotated with
``flask crypto rotate``. There is no default key or salt anywhere.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from utils.exceptions import ArbionError, ConfigurationError

MIN_SALT_LENGTH = 16
MIN_SECRET_LENGTH = 32
GENERATE_KEY_COMMAND = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
GENERATE_SALT_COMMAND = 'python -c "import secrets; print(secrets.token_hex(16))"'
_SELF_TEST_PROBE = "arbion-encryption-self-test"


class CredentialDecryptError(ArbionError):
    """A stored value could not be decrypted with any configured key."""

    code = "credential_decrypt_failed"
    default_message = "A stored credential could not be decrypted."


class Encryptor:
    """Encrypts and decrypts credential strings with the current key; old keys still decrypt."""

    def __init__(self, primary: Fernet, old: list[Fernet]):
        self._primary = primary
        self._all = MultiFernet([primary, *old])

    def encrypt(self, plaintext: str) -> str:
        """Encrypt with the current key."""
        return self._all.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt with any configured key; CredentialDecryptError when none fits."""
        try:
            return self._all.decrypt(token.encode()).decode()
        except (InvalidToken, UnicodeDecodeError) as exc:
            raise CredentialDecryptError() from exc

    def is_current(self, token: str) -> bool:
        """True when the token is already encrypted with the current key."""
        try:
            self._primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt a token with the current key (CredentialDecryptError if unreadable)."""
        try:
            return self._all.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise CredentialDecryptError() from exc

    def self_test(self) -> None:
        """Encrypt and decrypt a probe; raise ConfigurationError if the round trip fails."""
        if self.decrypt(self.encrypt(_SELF_TEST_PROBE)) != _SELF_TEST_PROBE:
            raise ConfigurationError("Encryption self-test failed: the probe did not round-trip.")


def build_encryptor(settings: Mapping[str, str]) -> Encryptor:
    """Build the Encryptor from ENCRYPTION_* settings; ConfigurationError says what to fix."""
    problems = configuration_problems(settings)
    if problems:
        raise ConfigurationError("Encryption is not configured correctly:\n  - " + "\n  - ".join(problems))
    primary = _primary_key(settings)
    old = [_fernet(key, "ENCRYPTION_KEYS_OLD") for key in _split(settings.get("ENCRYPTION_KEYS_OLD", ""))]
    encryptor = Encryptor(primary, old)
    encryptor.self_test()
    return encryptor


def configuration_problems(settings: Mapping[str, str]) -> list[str]:
    """Readable problems with the encryption settings (empty when they are usable)."""
    try:
        _primary_key(settings)
        for key in _split(settings.get("ENCRYPTION_KEYS_OLD", "")):
            _fernet(key, "ENCRYPTION_KEYS_OLD")
    except _KeyProblem as problem:
        return [str(problem)]
    return []


class _KeyProblem(Exception):
    pass


def _primary_key(settings: Mapping[str, str]) -> Fernet:
    if settings.get("ENCRYPTION_KEY"):
        return _fernet(settings["ENCRYPTION_KEY"], "ENCRYPTION_KEY")
    for secret_name in ("ENCRYPTION_SECRET", "SESSION_SECRET"):
        if settings.get(secret_name):
            return Fernet(_derive(settings[secret_name], _salt(settings, secret_name), secret_name))
    raise _KeyProblem(
        "Encryption is not configured: set ENCRYPTION_KEY (recommended), or ENCRYPTION_SECRET "
        f"with ENCRYPTION_SALT. Generate a key with: {GENERATE_KEY_COMMAND}"
    )


def _salt(settings: Mapping[str, str], secret_name: str) -> str:
    salt = settings.get("ENCRYPTION_SALT", "")
    if len(salt) < MIN_SALT_LENGTH:
        raise _KeyProblem(
            f"{secret_name} needs ENCRYPTION_SALT of at least {MIN_SALT_LENGTH} characters. "
            f"Generate one with: {GENERATE_SALT_COMMAND} (or set ENCRYPTION_KEY instead: {GENERATE_KEY_COMMAND})"
        )
    return salt


def _fernet(key: str, name: str) -> Fernet:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) != 32:
            raise ValueError("wrong length")
        return Fernet(key.encode())
    except (ValueError, binascii.Error) as exc:
        raise _KeyProblem(
            f"{name} is malformed: a Fernet key is 32 url-safe base64-encoded bytes (44 characters). "
            f"Generate one with: {GENERATE_KEY_COMMAND}"
        ) from exc


@functools.lru_cache(maxsize=8)
def _derive(secret: str, salt: str, name: str) -> bytes:
    """scrypt (n=2**15, r=8, p=1): memory-hard, about 0.1 s once per process (cached)."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise _KeyProblem(f"{name} must be at least {MIN_SECRET_LENGTH} characters long.")
    kdf = Scrypt(salt=salt.encode(), length=32, n=2**15, r=8, p=1)
    return base64.urlsafe_b64encode(kdf.derive(secret.encode()))


def _split(keys: str) -> list[str]:
    return [key.strip() for key in keys.split(",") if key.strip()]
