"""Connecting to Redis: the one place that turns settings into a client.

``redis://`` and ``rediss://`` (TLS) name one server; ``redis+cluster://`` and
``rediss+cluster://`` name any node of a Redis Cluster, and give a
``redis.cluster.RedisCluster`` (it finds the other nodes, routes each command to
its key's slot, and follows a failover).  Every shop's keys share one slot
(``fanops.keys.tag``), so each script call and each transaction stays on one node.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.cluster as cluster
from redis.exceptions import RedisClusterException

from fanops.config import Config
from fanops.errors import RedisAuthFailed, RedisUnavailable
from fanops.runtime import memory, server

# redis-py 8 times out socket reads after 5 s by default; blocking stream reads
# use BLOCK of 1 s, so a 10 s timeout leaves room and still catches a dead server.
SOCKET_TIMEOUT = 10.0
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def resolve_url(cfg: Config, url: str | None = None) -> str:
    """The URL to use: an explicit one, else REDIS_URL, else the embedded server (started if needed)."""
    if url:
        return url
    if cfg.redis_url:
        return cfg.redis_url
    return server.ensure_running(cfg.data_dir).url


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _plain(url: str) -> str:
    """The URL redis-py reads: a cluster scheme becomes its plain one (``rediss`` keeps TLS)."""
    scheme, _, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES.get(scheme.lower(), scheme)}://{rest}"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _failed(url: str, e: Exception) -> RedisUnavailable:
    """The one-line error for a failed connection; a refused password is said as such (no retry fixes it)."""
    kind = RedisAuthFailed if isinstance(e, redis.AuthenticationError) else RedisUnavailable
    why = str(e) or type(e).__name__
    if "Cluster mode is not enabled" in why:
        why += ": the server is no cluster, use redis:// (or rediss://)"
    return kind(_redact(url), why)


def client(url: str, socket_timeout: float | None = SOCKET_TIMEOUT, **kw: Any) -> redis.Redis:
    """A synchronous client for ``url`` without a check: ``RedisCluster`` for the cluster schemes.
    A cluster client reaches its nodes on the first command (a bad address raises then)."""
    if is_cluster(url):
        return cluster.RedisCluster.from_url(_plain(url), socket_timeout=socket_timeout, **kw)  # type: ignore[return-value]
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, **kw)


def async_client(url: str, socket_timeout: float | None = SOCKET_TIMEOUT, **kw: Any) -> aredis.Redis:
    """An asyncio client for ``url``, as ``client``."""
    if is_cluster(url):
        return acluster.RedisCluster.from_url(_plain(url), socket_timeout=socket_timeout, **kw)  # type: ignore[return-value]
    return aredis.Redis.from_url(url, socket_timeout=socket_timeout, **kw)


def slot_pipeline(r: redis.Redis, key: str) -> redis.client.Pipeline:
    """A pipeline (no transaction) for commands on ``key``'s slot only, scripts among them: on a
    Redis Cluster, the pipeline of the node that serves the slot (redis-py's cluster pipeline takes
    no script call); else ``r``'s own."""
    if isinstance(r, cluster.RedisCluster):
        node = r.get_node_from_key(key)
        if node is not None and node.redis_connection is not None:
            return node.redis_connection.pipeline(transaction=False)
    return r.pipeline(transaction=False)


def connect(cfg: Config, url: str | None = None, check: bool = True) -> redis.Redis:
    """A synchronous client; raises RedisUnavailable with a one-line reason.  With ``check``, also
    RedisEvicts if the server would delete keys when full (``fanops.runtime.memory``)."""
    u = resolve_url(cfg, url)
    try:
        r = client(u, socket_connect_timeout=5, health_check_interval=30)
        if check:
            r.ping()
            memory.check_policy(r, _redact(u))
    except (redis.RedisError, RedisClusterException, ValueError, OSError) as e:
        raise _failed(u, e) from e
    return r


async def connect_async(cfg: Config, url: str | None = None) -> aredis.Redis:
    u = resolve_url(cfg, url)
    try:
        r = async_client(u, socket_connect_timeout=5, health_check_interval=30)
        await r.ping()
        await memory.check_policy_async(r, _redact(u))
    except (redis.RedisError, RedisClusterException, ValueError, OSError) as e:
        raise _failed(u, e) from e
    return r
