"""Redis's memory limit, as the product needs it set: a limit that is reached refuses writes, never
drops a key.

A Redis with ``maxmemory`` set and an evicting ``maxmemory-policy`` (``allkeys-lru``, ``volatile-lru``,
..., the default of several hosted services) deletes keys when it is full: a viewer's state, a
room's dedupe table, a stream of events not yet applied. Events would then be lost, or a resend
counted twice, with no error anywhere. So every process refuses such a server at connect
(``check_policy``), with the one-line fix. With ``noeviction`` (Redis's own default, and the
embedded server's) a full Redis refuses writes with ``OOM``: the processes wait and retry
(``fanops.retry``), the consumer holding its events, and the live board says why (``read``).
A script that meets ``OOM`` writes nothing: Redis refuses only a script's first write, once one
has gone through the rest may (``tests/realtime/test_redis_full.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio.cluster as acluster

from fanops.errors import RedisEvicts

NEARLY_FULL = 0.9  # the board warns from this share of ``maxmemory`` on


@dataclass(frozen=True)
class Memory:
    """One server's (a cluster's: one primary's) memory: bytes used, its limit (0: none), its policy."""

    used: int
    limit: int
    policy: str

    @property
    def share(self) -> float | None:
        """``used`` of ``limit`` (None: no limit)."""
        return self.used / self.limit if self.limit > 0 else None

    @property
    def full(self) -> bool:
        return self.limit > 0 and self.used >= self.limit

    @property
    def evicts(self) -> bool:
        """Would this server delete keys when full?  (A server that names no policy is not judged.)"""
        return self.limit > 0 and self.policy not in ("noeviction", "")


def _parse(d: dict[str, Any]) -> Memory:
    # what Redis compares with maxmemory: its use less the replication and AOF buffers
    used = int(d.get("used_memory", 0)) - int(d.get("mem_not_counted_for_evict", 0))
    return Memory(used, int(d.get("maxmemory", 0)), str(d.get("maxmemory_policy", "")))


def _nodes(info: dict[str, Any]) -> list[dict[str, Any]]:
    """INFO's answer as one dict a node: a server gives one, a cluster client one a node it asked."""
    if "used_memory" in info:
        return [info]
    return [d for d in info.values() if isinstance(d, dict) and "used_memory" in d]


def _info_nodes(r: Any) -> dict[str, Any]:
    """INFO's arguments for ``r``: a cluster client (sync or asyncio) asks every primary."""
    return {"target_nodes": "primaries"} if isinstance(r, redis.RedisCluster | acluster.RedisCluster) else {}


def _memories(info: Any) -> list[Memory]:
    return [_parse(d) for d in _nodes(info)]


def read(r: redis.Redis) -> list[Memory]:
    """Every primary's memory (one on a single server).  Raises as the client does."""
    return _memories(r.info("memory", **_info_nodes(r)))


def read_allowed(r: redis.Redis) -> list[Memory] | None:
    """``read``, or None where the server does not let this user read INFO (an ACL's NOPERM)."""
    try:
        return read(r)
    except redis.ResponseError:
        return None


def fullest(ms: list[Memory]) -> Memory | None:
    """The node closest to its limit (None: no node has a limit)."""
    limited = [m for m in ms if m.limit > 0]
    return max(limited, key=lambda m: m.share or 0.0) if limited else None


def refuse_evicting(ms: list[Memory], url: str) -> None:
    """Raise ``RedisEvicts`` if a node would delete keys when full."""
    for m in ms:
        if m.evicts:
            raise RedisEvicts(url, m.policy, m.limit)


def check_policy(r: redis.Redis, url: str) -> None:
    """``refuse_evicting`` on the server's INFO; a server that does not let us read INFO (an ACL)
    is not checked."""
    ms = read_allowed(r)
    if ms is not None:
        refuse_evicting(ms, url)


async def check_policy_async(r: Any, url: str) -> None:
    """``check_policy`` for an asyncio client."""
    try:
        info = await r.info("memory", **_info_nodes(r))
    except redis.ResponseError:
        return
    refuse_evicting(_memories(info), url)
