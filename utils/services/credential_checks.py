"""Every check of a secret the account holder knows, limited and audited in one place.

The password (at login, password change, email change, turning two-factor off, replacing recovery
codes) and the code of the login's second step all run through ``check``.
Only FAILURES count, in two kinds of bucket (both in the rate limiter's storage: Redis in
production, shared by every process):

- the account from this address (LOGIN_LIMIT_PER_ACCOUNT_ADDRESS), login-like: a guesser at one
  address is stopped quickly, and the owner at another address still gets in;
- the account from everywhere (LOGIN_LIMIT_PER_ACCOUNT), higher and slower, against guesses spread
  over many addresses; one address alone cannot fill it.

A check takes its failure slot BEFORE it runs (check and count are one atomic increment, so
parallel guesses cannot all pass before the first failure lands) and hands it back when it
succeeds, or when it is refused (a refused attempt checks nothing, so it never prolongs a lock).
Each window starts at the first failure. Every failure and every refusal is audited.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, has_request_context, request
from limits import RateLimitItem, parse_many
from limits.storage import Storage

from models import User
from utils.exceptions import TooManyAttemptsError
from utils.extensions import db, limiter
from utils.services import audit

Result = TypeVar("Result")
REFUSED = "too many failed attempts"


@dataclass(frozen=True)
class _Bucket:
    """One failure counter: its limit and its storage key."""

    limit: RateLimitItem
    key: str


def check(
    failure_action: str,
    email: str,
    verify: Callable[[], Result],
    *,
    actor: User | None = None,
    details: dict[str, Any] | None = None,
) -> Result:
    """Run ``verify`` (a password or code check of the account ``email``) under the failure limits
    and return its result; a falsy result is a failure, audited as ``failure_action``.

    TooManyAttemptsError (audited as well) when this address or the account has no failure left.
    """
    buckets = _buckets(email)
    try:
        _reserve(buckets)
    except TooManyAttemptsError:
        _audit(failure_action, actor, {**(details or {}), "refused": REFUSED})
        raise
    result = verify()  # an exception keeps the slot: it counts as a failure
    if result:
        _hand_back(buckets)
    else:
        _audit(failure_action, actor, details or {})
    return result


def _buckets(email: str) -> list[_Bucket]:
    """The account's buckets for this address, then its buckets for every address."""
    account = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]  # no email in Redis keys
    address = (request.remote_addr or "") if has_request_context() else ""
    config = current_app.config
    return [
        *(_Bucket(item, item.key_for("credential-failures", account, address))
          for item in parse_many(config["LOGIN_LIMIT_PER_ACCOUNT_ADDRESS"])),
        *(_Bucket(item, item.key_for("credential-failures", account))
          for item in parse_many(config["LOGIN_LIMIT_PER_ACCOUNT"])),
    ]  # fmt: skip


def _reserve(buckets: list[_Bucket]) -> None:
    """Take one failure slot in every bucket; when one is full, give all back and refuse."""
    storage = _storage()
    for taken, bucket in enumerate(buckets, start=1):
        if storage.incr(bucket.key, bucket.limit.get_expiry()) > bucket.limit.amount:
            retry_after = max(1, math.ceil(storage.get_expiry(bucket.key) - time.time()))
            _hand_back(buckets[:taken])
            raise TooManyAttemptsError(details={"retry_after": retry_after})


def _hand_back(buckets: list[_Bucket]) -> None:
    # A slot handed back after its window expired leaves the counter at -1 until the next window:
    # at most one extra attempt, once, in a rare race; never a lock.
    storage = _storage()
    for bucket in buckets:
        storage.incr(bucket.key, bucket.limit.get_expiry(), amount=-1)


def _storage() -> Storage:
    """The rate limiter's storage (its in-memory fallback while Redis is marked down)."""
    return limiter.limiter.storage


def _audit(action: str, actor: User | None, details: dict[str, Any]) -> None:
    """Record a failed or refused check and commit it, so it survives the error that follows."""
    audit.record(action, actor=actor, subject=actor, details=details)
    db.session.commit()
