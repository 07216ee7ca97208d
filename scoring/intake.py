"""What a scorer takes from the shop streams: entries read with the scorers' consumer group (new
ones, or its own still unacknowledged), entries a stalled scorer left pending (XAUTOCLAIM), and
their split into batches of a bounded number of events (``BatchSize``: as many as Redis applies
in about ``worker_apply_ms``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, cast

import redis

from fanops import keys, replies

log = logging.getLogger(__name__)

Entry = tuple[str, Any, dict[bytes, bytes]]  # (stream, entry id, fields)


def events_in(e: Entry) -> int:
    """The events an entry holds (its field ``n``, as ``fanops.ingest`` writes it)."""
    return int(e[2].get(b"n", 1))


def _entry_order(e: Entry) -> tuple[int, int]:
    i = e[1].decode() if isinstance(e[1], bytes) else e[1]
    ms, _, seq = i.partition("-")
    return int(ms), int(seq or 0)


def read_entries(r: redis.Redis, shop: str, consumer: str, parts: list[int], start: str, count: int,
                 block: int | None) -> list[Entry]:
    """Up to ``count`` entries of each of the shop's partitions ``parts`` for ``consumer``: new ones
    (``start`` ">") or its own pending ones ("0"), in order of receipt across the partitions;
    waits up to ``block`` ms for new ones (None: not at all)."""
    return _read(r, shop, consumer, parts, start, count, block)[0]


def read_pending(r: redis.Redis, shop: str, consumer: str, count: int) -> tuple[list[Entry], bool]:
    """Up to ``count`` of ``consumer``'s own pending entries of each partition, and whether there
    were any (some may have been deleted from the stream: acknowledged, not returned)."""
    return _read(r, shop, consumer, list(range(keys.PARTITIONS)), "0", count, None)


def _read(r: redis.Redis, shop: str, consumer: str, parts: list[int], start: str, count: int,
          block: int | None) -> tuple[list[Entry], bool]:
    res = cast("replies.GroupRead | None", r.xreadgroup(
        keys.GROUP, consumer, {keys.stream(shop, p): start for p in parts}, count=count, block=block))
    if not res:
        return [], False
    items = res.items() if isinstance(res, dict) else ((k, [v]) for k, v in res)
    entries: list[Entry] = []
    any_read = False
    for stream, got in items:
        sname = stream.decode() if isinstance(stream, bytes) else stream
        for batch in got:
            any_read = any_read or bool(batch)
            entries.extend((sname, i, f) for i, f in batch if f)
            _ack_deleted(r, sname, [i for i, f in batch if not f])
    if len(res) > 1:
        entries.sort(key=_entry_order)
    return entries, any_read


def _ack_deleted(r: redis.Redis, stream: str, ids: list[Any]) -> None:
    """Pending entries whose content left the stream (an XDEL from outside the product) come back
    from a read of "0" with no fields: nothing can apply them, and left pending they would stand
    before the live ones at every such read. They are acknowledged, and said."""
    if ids:
        r.xack(stream, keys.GROUP, *ids)
        log.warning("%d pending entries of %s were deleted from the stream before a scorer applied them: "
                    "acknowledged (their events are gone)", len(ids), stream)


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


def capped(entries: list[Entry], cap: Callable[[], int]) -> Iterator[list[Entry]]:
    """``entries`` in batches of at most ``cap()`` events (field ``n`` of an entry; an entry is
    never split, so one larger than the cap makes a batch alone). The cap is asked again for each
    batch: it may change with the calls before it (``BatchSize``)."""
    chunk: list[Entry] = []
    n = 0
    most = cap()
    for e in entries:
        k = events_in(e)
        if chunk and n + k > most:
            yield chunk
            chunk, n, most = [], 0, cap()
        chunk.append(e)
        n += k
    if chunk:
        yield chunk


START_EVENTS = 20_000  # a new scorer's first cap for a shop, before it has timed a call
FLOOR_EVENTS = 1_000  # the cap never shrinks below this (a live entry holds a consumer's flush, ~500 events)


class BatchSize:
    """How many events a scorer applies in one call of apply.lua for a shop: as many as one call takes
    about ``target_ms`` for (its round trip), and never more than ``most``; and how many entries to read
    for that.

    A bigger batch costs less an event, Python's and Redis's: a viewer that several of its events
    touch is read, scored and written once. On a one-hour show of 20,000 viewers, batches of 100,000
    events cost ~40% less an event than batches of 20,000 (bench/README, "Batches sized by time").
    But Redis runs one script at a time: while apply.lua writes a batch, the consumer's writes, the
    board's reads and the other scorers wait. What an event costs Redis depends on the show: in a
    room of 100,000 viewers an event touches a viewer no other event of its batch does far more
    often than in one of 20,000, and 20,000 events took ~250 ms of Redis there against ~60 ms.
    So the cap follows the measured time of the calls (the round trip of the call that wrote, which
    includes any wait behind another client's command: it errs short): it grows, at most doubling a
    call, while batches of at least a quarter of it take less than the target, and shrinks to fit,
    at most to a quarter a call (one call slowed by a retry inside the client is not taken for the
    show), when one takes more. A smaller batch says nothing of a full one (its time is mostly the
    call's own) and leaves the cap as it is.

    A read takes about two batches' worth of entries (``entries_to_read``): an entry of a live feed
    holds ~100-500 events, one of an import ~2,500, so a count of entries alone would let a read run
    for minutes, past the scorer's heartbeat and the claim of its entries by another."""

    def __init__(self, target_ms: int, most: int, most_entries: int, entry_guess: int = 500) -> None:
        self.target_s = max(1, target_ms) / 1000
        self.most = max(1, most)
        self.most_entries = max(1, most_entries)
        self.cap = min(START_EVENTS, self.most)
        self.per_entry = float(max(1, entry_guess))

    def __call__(self) -> int:
        return self.cap

    def took(self, events: int, seconds: float) -> None:
        """A call applied ``events`` events in ``seconds`` (the round trip of the write)."""
        if events * 4 < self.cap or seconds <= 0:
            return
        fit = int(events * self.target_s / seconds)
        floor = min(FLOOR_EVENTS, self.most)
        self.cap = max(floor, self.cap // 4, min(self.most, fit, 2 * self.cap))

    def entries_to_read(self, streams: int) -> int:
        """Entries to read from each of ``streams`` streams: about two batches' events, at most
        ``most_entries``."""
        return max(1, min(self.most_entries, math.ceil(2 * self.cap / (self.per_entry * max(1, streams)))))

    def read(self, entries: list[Entry]) -> None:
        """Note the events an entry of a read held (the next read's count follows it)."""
        if entries:
            self.per_entry = max(1.0, sum(map(events_in, entries)) / len(entries))
