"""What a scorer takes from the shop streams: entries read with the scorers' consumer group (new
ones, or its own still unacknowledged), entries a stalled scorer left pending (XAUTOCLAIM), and
their split into batches of a bounded number of events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import redis

from fanops import keys, replies

Entry = tuple[str, Any, dict[bytes, bytes]]  # (stream, entry id, fields)


def _entry_order(e: Entry) -> tuple[int, int]:
    i = e[1].decode() if isinstance(e[1], bytes) else e[1]
    ms, _, seq = i.partition("-")
    return int(ms), int(seq or 0)


def read_entries(r: redis.Redis, shop: str, consumer: str, parts: list[int], start: str, count: int,
                 block: int | None) -> list[Entry]:
    """Up to ``count`` entries of each of the shop's partitions ``parts`` for ``consumer``: new ones
    (``start`` ">") or its own pending ones ("0"), in order of receipt across the partitions;
    waits up to ``block`` ms for new ones (None: not at all)."""
    res = cast("replies.GroupRead | None", r.xreadgroup(
        keys.GROUP, consumer, {keys.stream(shop, p): start for p in parts}, count=count, block=block))
    if not res:
        return []
    items = res.items() if isinstance(res, dict) else ((k, [v]) for k, v in res)
    entries: list[Entry] = []
    for stream, got in items:
        sname = stream.decode() if isinstance(stream, bytes) else stream
        for batch in got:
            entries.extend((sname, i, f) for i, f in batch if f)
    if len(res) > 1:
        entries.sort(key=_entry_order)
    return entries


def claim_entries(r: redis.Redis, stream: str, consumer: str, min_idle_ms: int, count: int) -> Iterator[list[Entry]]:
    """The entries of ``stream`` pending for longer than ``min_idle_ms`` with any consumer, taken
    over by ``consumer`` ``count`` at a time (each page is taken when the caller asks for it)."""
    cursor = "0-0"
    while True:
        res = r.xautoclaim(stream, keys.GROUP, consumer, min_idle_time=min_idle_ms, start_id=cursor, count=count)
        cursor, got = res[0], res[1]
        entries = [(stream, i, f) for i, f in got if f]
        if entries:
            yield entries
        if cursor in (b"0-0", "0-0"):
            return


def capped(entries: list[Entry], cap: int) -> Iterator[list[Entry]]:
    """``entries`` in batches of at most ``cap`` events (field ``n`` of an entry; an entry is
    never split, so one larger than ``cap`` makes a batch alone)."""
    chunk: list[Entry] = []
    n = 0
    for e in entries:
        k = int(e[2].get(b"n", 1))
        if chunk and n + k > cap:
            yield chunk
            chunk, n = [], 0
        chunk.append(e)
        n += k
    if chunk:
        yield chunk
