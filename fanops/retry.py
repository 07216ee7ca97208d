"""One retry policy for every loop that touches Redis (consumer, scorer, time pass, archiving,
settings rebuild, heartbeats, the app's reads).

``is_retryable`` is the one place that decides what a wait fixes: the server unreachable or
timing out, ``BUSY`` (another client's script is running), ``LOADING`` (a restarted server reads
its data), a shop's backlog full (``BACKLOG``: the scorers catch up), Redis full (``OOM``, its
``maxmemory`` reached: an operator raises the limit, or memory frees as dedupe tables expire; a
script that meets it writes nothing, ``fanops.runtime.memory``), and the
moments of a failover (``MASTERDOWN``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``READONLY`` from a primary
turned replica).  Anything else is a real error of ours and is raised.  ``why`` says which, in words.

``Outage`` remembers since when Redis has been unreachable, for a process's log and heartbeat
and for the live board's plain "Redis unreachable since ..." line.  ``Backoff`` gives the waits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis
import redis.exceptions as rexc

T = TypeVar("T")
log = logging.getLogger(__name__)

# BACKLOG: fanops/lua/ingest.lua's, a shop's stream holds FANOPS_STREAM_MAXLEN entries not yet applied
_TRANSIENT_REPLIES = ("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "BACKLOG", "OOM")
# A Redis Cluster client's errors in a failover: no node serves the slot yet, or its retries ran out.
_FAILOVER = (rexc.ClusterDownError, rexc.TryAgainError, rexc.ReadOnlyError, rexc.SlotNotCoveredError,
             rexc.ClusterError)


def is_retryable(e: BaseException) -> bool:
    """True when waiting and trying again is the fix: the server is away, busy or starting."""
    if isinstance(e, redis.AuthenticationError):
        return False  # a wrong password: no wait fixes it, say so at once
    if isinstance(e, (*_FAILOVER, rexc.OutOfMemoryError)):
        return True  # redis-py's classes of those replies (their text no longer starts with the code)
    if isinstance(e, redis.ResponseError):
        return str(e).startswith(_TRANSIENT_REPLIES) and not str(e).startswith("BUSYGROUP")
    return isinstance(e, redis.ConnectionError | redis.TimeoutError | ConnectionError | TimeoutError)


def why(e: BaseException) -> str:
    """What a retryable failure means for the product, in words (for a log line)."""
    if isinstance(e, rexc.OutOfMemoryError) or str(e).startswith("OOM"):
        return "Redis is full (its maxmemory reached): nothing more is written until memory frees"
    if str(e).startswith("BACKLOG"):
        return "Redis takes no more events until the scorers apply the backlog (is a scorer running?)"
    return "Redis unreachable"


@dataclass
class Backoff:
    """Delays of ``initial * factor**n`` capped at ``cap``, with "full jitter" in [delay/2, delay]
    (pure: the randomness is injected)."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        if base < self.cap:  # once at the cap it stays there (factor**attempt would overflow a float)
            self.attempt += 1
        return base / 2 + self.rng.random() * base / 2

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Outage:
    """Since when (wall clock) the Redis server has been failing this process, if it is."""

    since: float | None = None
    reason: str = ""
    failures: int = 0

    def failed(self, e: BaseException, now: float | None = None) -> bool:
        """Record a retryable failure; True on the first one of an outage (log it once)."""
        first = self.since is None
        if first:
            self.since = time.time() if now is None else now
        self.reason = f"{type(e).__name__}: {e}"[:200]
        self.failures += 1
        return first

    def ended(self, now: float | None = None) -> float | None:
        """Record a success; the outage's length in seconds if one just ended."""
        if self.since is None:
            return None
        lasted = (time.time() if now is None else now) - self.since
        self.since, self.reason, self.failures = None, "", 0
        return lasted

    def as_fields(self) -> dict[str, object]:
        """For a heartbeat: ``redis_down_since`` (epoch s) and the reason, or nothing."""
        return {} if self.since is None else {"redis_down_since": self.since, "redis_error": self.reason}


def _wait_for(e: Exception, what: str, outage: Outage, backoff: Backoff, stopping: Callable[[], bool]) -> float:
    """The wait before the next try after ``e``; raises ``e`` if no wait fixes it, and
    ``InterruptedError`` if the process is stopping."""
    if not is_retryable(e):
        raise e
    delay = backoff.next()
    if outage.failed(e):
        log.warning("%s: %s (%s); retrying with back-off", what, why(e), e)
    else:
        log.debug("%s: still failing (%s); next try in %.1f s", what, e, delay)
    if stopping():
        raise InterruptedError(f"{what}: stopped while Redis was unreachable") from e
    return delay


def _recovered(what: str, outage: Outage, backoff: Backoff) -> None:
    backoff.reset()
    lasted = outage.ended()
    if lasted is not None:
        log.warning("%s: Redis reachable again after %.1f s", what, lasted)


def call(fn: Callable[[], T], what: str, *, outage: Outage, backoff: Backoff,
         stopping: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()`` until it returns; retryable errors wait with capped back-off, others are raised.

    Raises ``InterruptedError`` if ``stopping()`` turns true while waiting (a process asked to stop)."""
    while True:
        try:
            got = fn()
        except Exception as e:
            sleep(_wait_for(e, what, outage, backoff, stopping))
            continue
        _recovered(what, outage, backoff)
        return got


async def acall(fn: Callable[[], Awaitable[T]], what: str, *, outage: Outage, backoff: Backoff,
                stopping: Callable[[], bool] = lambda: False) -> T:
    """The asyncio form of ``call``."""
    while True:
        try:
            got = await fn()
        except Exception as e:
            await asyncio.sleep(_wait_for(e, what, outage, backoff, stopping))
            continue
        _recovered(what, outage, backoff)
        return got
