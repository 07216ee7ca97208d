"""One way for a long-running process (consumer, scorer) to say it is alive.

Each process writes ``keys.heartbeat(kind, name)`` with a TTL and its name into the kind's
index, so readers (``fanops.read.heartbeats``, the live board, ``fanops.runtime.health``) find
the processes without a scan.  The same calls serve a sync and an async pipeline: only queued.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from fanops import keys

FINAL_TTL_S = 5  # a process that stops says so, then its beat goes soon


def process_name() -> str:
    """The default name of a process: host and pid, unique on a shared Redis."""
    return f"{socket.gethostname()}:{os.getpid()}"


def queue_beat(p: Any, kind: str, name: str, body: dict[str, Any], ttl_s: int, final: bool = False) -> None:
    """Queue on pipeline ``p`` the beat of one process, with ``body`` as its JSON (``at`` added)."""
    now = time.time()
    p.set(keys.heartbeat(kind, name), json.dumps({**body, "at": now}), ex=FINAL_TTL_S if final else ttl_s)
    p.zadd(keys.heartbeat_index(kind), {name: now})
    p.zremrangebyscore(keys.heartbeat_index(kind), "-inf", now - keys.HEARTBEAT_INDEX_KEEP_S)
