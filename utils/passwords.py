"""Password hashing (argon2id at OWASP's recommended parameters) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: argon2id, 19 MiB memory, 2 iterations, 1 lane.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MAX_PASSWORD_LENGTH = 128
_COMMON_PASSWORDS = frozenset(
    {
        "password1234",
        "passwordpassword",
        "123456789012",
        "qwertyuiopas",
        "letmeinletmein",
        "administrator",
        "changemechangeme",
        "iloveyou1234",
        "welcome12345",
        "trustno1trustno1",
    }
)


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with older parameters."""
    return _HASHER.check_needs_rehash(password_hash)


def burn_verification_time() -> None:
    """Spend the time of one verification, so unknown emails answer as slowly as known ones."""
    verify_password(_DUMMY_HASH, "not-the-password")


def password_problems(password: str, email: str, min_length: int) -> list[str]:
    """What is wrong with a proposed password (empty when it is acceptable)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"Use at least {min_length} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    if len(set(password)) < 4:
        problems.append("Use more than three different characters.")
    if password.lower() in _COMMON_PASSWORDS:
        problems.append("That password is too common.")
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in password.lower():
        problems.append("Do not include your email name in the password.")
    return problems


_DUMMY_HASH = hash_password("arbion-dummy-password-for-timing")
