"""Reading a room for its archive: one pass over the shop's applied-event log and partition
streams (``Scan``), and the room's viewers, tasks and tier transitions as Redis holds them.

A pass finds the room's events, every order of the shop (for ``tier_entry``), which rooms each
entry and each log file hold (what may be trimmed or deleted once the room is archived), and
where the room's entries are in each stream (whether a scorer has applied them all).  Passes
over one ``Scan`` go on where the last ended: archiving reads again what arrived meanwhile.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import redis

from fanops import keys, read
from fanops.config import Config
from fanops.errors import ArchiveError
from fanops.runtime.gcpause import gc_paused
from fanops.state import RoomViewer, TaskRec, ViewerState, record_fields, unpack_room_viewer, unpack_task, unpack_viewer
from review.archive_files import list_archived, read_room
from scoring import eventlog
from scoring.eventlog import stream_id, stream_id_text

SCAN_COUNT = 200  # stream entries per XRANGE (each holds up to a few hundred events)
CHUNK = 2000  # hash fields per HSCAN page and viewers per HMGET


# --- one pass over the log and the streams ---------------------------------------------------
@dataclass
class Part:
    """What a pass over one partition stream of the shop found."""

    entries: list[tuple[tuple[int, int], frozenset[str]]] = field(default_factory=list)  # id, rooms in it
    rooms_of: dict[tuple[int, int], frozenset[str]] = field(default_factory=dict)  # every entry read: its rooms
    first_id: tuple[int, int] | None = None  # the room's first and last entries in this stream
    last_id: tuple[int, int] | None = None
    end: tuple[int, int] | None = None  # the last entry read


@dataclass
class Scan:
    """What the passes over the shop's applied-event log and streams found, for one room."""

    room: str
    log: eventlog.LogReader
    events: list[dict[str, Any]] = field(default_factory=list)  # the room's events (wire maps)
    files: dict[Path, set[str]] = field(default_factory=dict)  # applied-event log file -> rooms in it
    orders: list[tuple[str, str, int]] = field(default_factory=list)  # every order: viewer, order id, ts
    parts: list[Part] = field(default_factory=lambda: [Part() for _ in range(keys.PARTITIONS)])

    @property
    def first_id(self) -> tuple[int, int] | None:
        ids = [pt.first_id for pt in self.parts if pt.first_id is not None]
        return min(ids) if ids else None


def scan(r: redis.Redis, shop: str, sc: Scan) -> int:
    """Read what is new in the applied-event log and in every partition stream after where the
    last pass ended into ``sc``; returns how many of the entries read hold events of the room. An
    entry in both (or twice in the log) is read once."""
    found = 0
    with gc_paused():
        for path, rec in sc.log.read_new():
            pt = sc.parts[rec.part]
            rooms = _take(sc, pt, rec.sid, rec.payload)
            # a file's rooms count every record in it, read before or not (else the file could go
            # while the only copy of another room's entry is in it)
            sc.files.setdefault(path, set()).update(pt.rooms_of[rec.sid])
            if rooms is not None:
                found += _count_mine(sc, pt, rec.sid, rooms)
    return found + sum(_scan_part(r, keys.stream(shop, i), sc, pt) for i, pt in enumerate(sc.parts))


def _take(sc: Scan, pt: Part, sid: tuple[int, int], payload: bytes) -> frozenset[str] | None:
    """Record one entry (once): its rooms, its orders, the room's events in it; the rooms, or None
    if read before."""
    if sid in pt.rooms_of:
        return None
    evs = msgspec.msgpack.decode(payload)
    rooms = frozenset(e["room"] for e in evs)
    pt.rooms_of[sid] = rooms
    pt.entries.append((sid, rooms))
    for e in evs:
        if e["type"] == "order":
            sc.orders.append((e["viewer"]["id"], e["order_id"], e["ts"]))
    if sc.room in rooms:
        sc.events.extend(e for e in evs if e["room"] == sc.room)
    return rooms


def _count_mine(sc: Scan, pt: Part, sid: tuple[int, int], rooms: frozenset[str]) -> int:
    if sc.room not in rooms:
        return 0
    pt.first_id = sid if pt.first_id is None else min(pt.first_id, sid)
    pt.last_id = sid if pt.last_id is None else max(pt.last_id, sid)
    return 1


def _scan_part(r: redis.Redis, stream: str, sc: Scan, pt: Part) -> int:
    found = 0
    start = "-" if pt.end is None else "(" + stream_id_text(pt.end)
    with gc_paused():
        while True:
            got: Any = r.xrange(stream, start, "+", count=SCAN_COUNT)
            if not got:
                return found
            for raw_id, f in got:
                sid = stream_id(raw_id)
                pt.end = sid
                payload = f.get(b"e")
                if not payload:
                    continue
                rooms = _take(sc, pt, sid, payload)
                if rooms is not None:
                    found += _count_mine(sc, pt, sid, rooms)
            start = "(" + stream_id_text(pt.end)  # type: ignore[arg-type]
    return found


def unapplied(r: redis.Redis, shop: str, sc: Scan) -> bool:
    """Whether an entry holding an event of the room is not yet applied by a scorer, in any partition."""
    progs = eventlog.group_progress(r, keys.streams(shop))
    for pt, prog in zip(sc.parts, progs, strict=True):
        if pt.last_id is not None and (prog is None or pt.last_id >= eventlog.applied_below(prog)):
            return True
    return False


# --- the room's records -------------------------------------------------------------------------
def read_room_viewers(r: redis.Redis, shop: str, room: str) -> tuple[dict[str, RoomViewer], dict[str, ViewerState]]:
    """The room's viewer records, and the shop-wide state of each of those viewers."""
    rvs = {k.decode(): unpack_room_viewer(b)
           for k, b in r.hscan_iter(keys.room_viewers(shop, room), count=CHUNK)}
    vids = list(rvs)
    vs: dict[str, ViewerState] = {}
    p = r.pipeline(transaction=False)
    for i in range(0, len(vids), CHUNK):
        p.hmget(keys.viewers(shop), vids[i:i + CHUNK])
    for i, blobs in enumerate(p.execute() if vids else []):
        for vid, b in zip(vids[i * CHUNK:(i + 1) * CHUNK], blobs, strict=True):
            if b:
                vs[vid] = unpack_viewer(b)
    return rvs, vs


def read_tasks(r: redis.Redis, shop: str, rooms: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """Every task of each room, as text fields (``fanops.state.record_fields``): room -> viewer -> fields."""
    recs: dict[str, list[tuple[str, TaskRec]]] = {rm: [] for rm in rooms}
    for rm in rooms:
        for vid, b in r.hscan_iter(keys.tasks(shop, rm), count=CHUNK):
            recs[rm].append((vid.decode("utf-8", "surrogateescape"), unpack_task(b)))
    read.fill_profiles(r, shop, [x for got in recs.values() for x in got])  # the viewers' names, countries ...
    return {rm: {vid: record_fields(t) for vid, t in got} for rm, got in recs.items()}


def read_transitions(r: redis.Redis, shop: str, since: tuple[int, int] | None, viewers: set[str],
                      lo: int, hi: int) -> list[tuple[str, dict[bytes, bytes]]]:
    """The transitions stream's entries (id, fields) of ``viewers`` with ``lo <= ts <= hi``, from
    the time of the stream entry ``since`` (the room's first) on."""
    out: list[tuple[str, dict[bytes, bytes]]] = []
    start = "-" if since is None else f"{since[0]}-0"  # applied after it was received
    while True:
        got: Any = r.xrange(keys.transitions(shop), start, "+", count=5000)
        if not got:
            return out
        for raw_id, f in got:
            if f.get(b"viewer", b"").decode() in viewers and lo <= int(f.get(b"ts", 0)) <= hi:
                out.append((raw_id.decode(), f))
        start = "(" + got[-1][0].decode()


def orders_before(cfg: Config, shop: str, room: str, live: list[tuple[str, str, int]],
                   firsts: dict[str, int]) -> dict[str, int]:
    """Distinct orders each viewer placed before their first ts in the room (archives + stream)."""
    if not firsts:
        return {}
    frames = [pl.LazyFrame({"viewer": [o[0] for o in live], "order_id": [o[1] for o in live],
                            "ts": [o[2] for o in live]}, schema={"viewer": pl.String, "order_id": pl.String,
                                                                 "ts": pl.Int64})]
    for info in list_archived(cfg, shop):
        if info.room == room:
            continue
        with contextlib.suppress(ArchiveError):
            a = read_room(cfg, shop, info.room, verify=False)
            frames.append(a.events().filter(pl.col("type") == "order").select("viewer", "order_id", "ts"))
    entry = pl.LazyFrame({"viewer": list(firsts), "t0": list(firsts.values())},
                         schema={"viewer": pl.String, "t0": pl.Int64})
    got = (pl.concat(frames).join(entry, on="viewer").filter(pl.col("ts") < pl.col("t0"))
           .group_by("viewer").agg(pl.col("order_id").n_unique().alias("n")).collect())
    return dict(zip(got["viewer"].to_list(), got["n"].to_list(), strict=True))
