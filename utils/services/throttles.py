"""Order-write limits shared by every process of the platform (Redis), not just one process.

Schwab allows about 120 order writes a minute per app; web workers and Celery workers all write
through the same app, so the window must be counted in one place. A Lua script keeps the
check-and-count atomic: a sliding 60-second window in a sorted set of write times.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis

WINDOW_SECONDS = 60
_SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""


class SharedWriteThrottle:
    """At most ``per_minute`` writes in any 60 s across every process using ``key``; waits when full."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.key, self.per_minute = key, per_minute
        self._script = client.register_script(_SLIDING_WINDOW)
        self._clock, self._sleep = clock, sleep

    def __call__(self) -> None:
        """Return once one more write fits in the shared window (sleeping if needed), and count it."""
        while True:
            wait = float(
                self._script(keys=[self.key], args=[self._clock(), WINDOW_SECONDS, self.per_minute, uuid.uuid4().hex])
            )
            if wait <= 0:
                return
            self._sleep(wait)
