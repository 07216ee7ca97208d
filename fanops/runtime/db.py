"""Connecting to Redis: the one place that turns settings into a client."""

from __future__ import annotations

import redis
import redis.asyncio as aredis

from fanops.config import Config
from fanops.errors import RedisAuthFailed, RedisUnavailable
from fanops.runtime import server

# redis-py 8 times out socket reads after 5 s by default; blocking stream reads
# use BLOCK of 1 s, so a 10 s timeout leaves room and still catches a dead server.
SOCKET_TIMEOUT = 10.0


def resolve_url(cfg: Config, url: str | None = None) -> str:
    """The URL to use: an explicit one, else REDIS_URL, else the embedded server (started if needed)."""
    if url:
        return url
    if cfg.redis_url:
        return cfg.redis_url
    return server.ensure_running(cfg.data_dir).url


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _failed(url: str, e: Exception) -> RedisUnavailable:
    """The one-line error for a failed connection; a refused password is said as such (no retry fixes it)."""
    kind = RedisAuthFailed if isinstance(e, redis.AuthenticationError) else RedisUnavailable
    return kind(_redact(url), str(e) or type(e).__name__)


def connect(cfg: Config, url: str | None = None, check: bool = True) -> redis.Redis:
    """A synchronous client; raises RedisUnavailable with a one-line reason."""
    u = resolve_url(cfg, url)
    try:
        r = redis.Redis.from_url(u, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5,
                                 health_check_interval=30)
        if check:
            r.ping()
    except (redis.RedisError, ValueError, OSError) as e:
        raise _failed(u, e) from e
    return r


async def connect_async(cfg: Config, url: str | None = None) -> aredis.Redis:
    u = resolve_url(cfg, url)
    try:
        r = aredis.Redis.from_url(u, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=5,
                                  health_check_interval=30)
        await r.ping()
    except (redis.RedisError, ValueError, OSError) as e:
        raise _failed(u, e) from e
    return r
