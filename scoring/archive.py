"""Archive of ended shows: a room's events, viewers, facts, tier transitions and follow-ups as files.

One file set per shop and room, under ``<data_dir>/archive/<shop>/<room>/`` (names escaped
by ``fs_name``)::

    manifest.json                 the commit point: names every file, its size and sha256
    g000001-1a2b3c4d/             one generation of the file set
        events.parquet            one row per event of the room, flat columns (EVENT_SCHEMA)
        viewers.parquet           one row per viewer of the room (VIEWER_SCHEMA)
        transitions.parquet       the shop's tier transitions of the room's viewers during the room
        followups.parquet         every follow-up task of the room, as it stood when written
        facts.json                the ``status`` room object at close, clock, GMV per currency ...

Crash safety: a new generation is written into a fresh folder (each file to a temp name,
fsync, ``os.replace``), then ``manifest.json`` is replaced in one ``os.replace``.  A reader
trusts only what a complete manifest names, with matching sizes and checksums, so a crash at
any point leaves the previous file set readable; the previous generation is deleted only once
the new manifest is in place.  ``refresh_followups`` writes a generation holding only a new
``followups.parquet`` and a manifest naming it beside the unchanged older files.

Redis after archiving (one MULTI): the room hash gets ``archived`` (the shop clock at close),
``archived_at`` (wall ms) and ``archive_generation``; the room's raw data goes (``raw_keys``: the
room-viewer hash, the present zset, the dedupe set, the per-minute hash, the order-id set, the
feed lists) with its lurk entries; each partition stream of the shop is trimmed (XTRIM MINID) up to the oldest
entry still holding an event of a room not archived, and never past an entry a scorer has not
applied.  The room hash counters, the tasks, the viewers and the transitions stream stay.
A room's events are read from the applied-event log (``scoring.eventlog``: the scorers write each
entry there before applying it and then trim it from the stream) and from what the streams still
hold; log files whose every room is archived are deleted once no writer can append to them.
Operators keep working a show's follow-ups after it: ``refresh_followups`` brings their outcomes
into the archive, and ``prune_followups`` (opt-in) removes settled tasks of archived rooms.
With its dedupe set gone, a late or resent event of an archived room passes the consumer: the
scorer drops events of rooms that ``is_archived`` names.  A room is archived only once every
stream entry holding its events is applied; the ``archiving`` field of the room hash keeps two
processes from archiving one room at once (a dead holder's mark is taken over).  Several
machines archiving one shop need one shared data folder.

Derived viewer columns (documented here because they are choices):

- ``tier_entry``: the tier the viewer had just before their first event in the room, by the
  rules of spec/tiers.md at that moment (``now`` = their first ts in the room) over what they
  had done before it: the rooms they attended earlier (their spans cut at that moment), their
  latest earlier activity, and the distinct orders they placed earlier, found in this shop's
  archived events and in the events still in the stream.  A viewer with nothing earlier enters
  as ``new_fan``.  Orders trimmed from the stream before any archive held them are not seen.
- ``tier_close``: the tier the viewer is counted under when the room is archived (the same
  counters ``status`` reports as ``room.tiers``).
- ``present``, ``dwell_ms``, ``new_viewer``, ``reactivated``: the rules of spec/tiers.md at the
  shop clock of the archive.
- transitions: rows of the shop's transitions stream for the room's viewers whose ``ts`` is
  between the room's first event and the clock at close (whatever room caused them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import msgspec
import polars as pl
import redis

from fanops import keys, read, replies, rules_store
from fanops.config import Config
from fanops.errors import ArchiveCorrupt, NotArchived, NotFound, RoomNotReady
from fanops.errors import ArchiveError as ArchiveError
from fanops.paths import fs_name
from fanops.read import status
from fanops.replies import to_int
from fanops.rules_settings import RuleSettings
from fanops.runtime.gcpause import gc_paused
from fanops.schema import EVENT_TYPES
from fanops.state import (
    FINAL_TASK_STATES,
    TIERS,
    RoomViewer,
    TaskRec,
    ViewerState,
    pack_firsts,
    past_firsts,
    record_fields,
    rooms_attended,
    unpack_room_viewer,
    unpack_task,
    unpack_viewer,
)
from scoring import eventlog
from scoring.eventlog import stream_id

log = logging.getLogger(__name__)

FORMAT = 1
FILES = ("events.parquet", "viewers.parquet", "transitions.parquet", "followups.parquet", "facts.json")
IDLE_MS = 30 * 60_000  # a room with no event for this long (shop clock) is over
LOCK_STALE_MS = 10 * 60_000  # an ``archiving`` mark older than this (wall) was left by a dead process
SCAN_COUNT = 200  # stream entries per XRANGE (each holds up to a few hundred events)
CHUNK = 2000
LATE_RETRIES = 3
FEEDS = ("greet", "thank", "questions")


# --- schemas ------------------------------------------------------------------
EVENT_SCHEMA: dict[str, Any] = {
    "room": pl.String, "shop": pl.String, "id": pl.String, "ts": pl.Int64, "type": pl.Enum(EVENT_TYPES),
    "viewer": pl.String, "name": pl.String, "country": pl.String, "lang": pl.String, "tz": pl.String,
    "text": pl.String, "count": pl.Int64, "gift": pl.String, "value": pl.Float64, "sku": pl.String,
    "qty": pl.Int64, "order_id": pl.String, "amount": pl.Float64, "currency": pl.String, "dm": pl.Boolean,
}
_WIRE_VIEWER = pl.Struct({"id": pl.String, "name": pl.String, "country": pl.String, "lang": pl.String,
                          "tz": pl.String})
_WIRE_SCHEMA: dict[str, Any] = {
    "id": pl.String, "room": pl.String, "shop": pl.String, "ts": pl.Int64, "type": pl.String,
    "viewer": _WIRE_VIEWER, "text": pl.String, "count": pl.Int64, "gift": pl.String, "value": pl.Float64,
    "sku": pl.String, "qty": pl.Int64, "order_id": pl.String, "amount": pl.Float64, "currency": pl.String,
    "dm": pl.Boolean,
}
VIEWER_SCHEMA: dict[str, Any] = {
    "room": pl.String, "viewer": pl.String, "name": pl.String, "country": pl.String, "lang": pl.String,
    "tz": pl.String, "first_ts": pl.Int64, "last_ts": pl.Int64, "last_leave_ts": pl.Int64,
    "present": pl.Boolean, "dwell_ms": pl.Int64, "comments": pl.Int64, "likes": pl.Int64, "shares": pl.Int64,
    "follows": pl.Int64, "product_views": pl.Int64, "cart_adds": pl.Int64, "gift_value": pl.Float64,
    "orders": pl.Int64, "first_order_ts": pl.Int64, "spend": pl.String, "new_viewer": pl.Boolean,
    "reactivated": pl.Boolean, "tier_entry": pl.String, "tier_close": pl.String, "first_seen": pl.Int64,
    "orders_total": pl.Int64, "rooms_attended": pl.Int64, "dm_consent": pl.Boolean, "followup": pl.String,
}
TRANSITION_SCHEMA: dict[str, Any] = {
    "room": pl.String, "id": pl.String, "viewer": pl.String, "name": pl.String, "from": pl.String,
    "to": pl.String, "ts": pl.Int64, "cause": pl.String, "event_room": pl.String, "rules_version": pl.Int64,
}
_TASK_STR = ("state", "name", "tier", "country", "lang", "product", "holder", "sent_by", "skipped_by",
             "skip_reason")
_TASK_INT = ("made_at", "dwell_ms", "claimed_at", "lease_until", "sent_at", "sent_clock", "skipped_at",
             "updated_at", "comments", "carts", "views")
FOLLOWUP_SCHEMA: dict[str, Any] = {
    "room": pl.String, "viewer": pl.String, **{k: pl.String for k in _TASK_STR},
    **{k: pl.Int64 for k in _TASK_INT}, "priority": pl.Float64, "reactivated": pl.Boolean,
}


# --- paths --------------------------------------------------------------------


def archive_root(cfg: Config) -> Path:
    return Path(cfg.data_dir) / "archive"


def room_dir(cfg: Config, shop: str, room: str) -> Path:
    return archive_root(cfg) / fs_name(shop) / fs_name(room)


# --- reading --------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveInfo:
    """What a manifest says of an archived room (no file opened)."""

    shop: str
    room: str
    first_ts: int
    last_ts: int
    clock: int
    events: int
    viewers: int
    tasks: int
    complete: bool
    archived_at: int
    generation: int
    path: Path


@dataclass(frozen=True)
class RoomArchive:
    """One archived room: its facts, and lazy frames over its verified files."""

    info: ArchiveInfo
    facts: dict[str, Any]
    paths: dict[str, Path]

    @property
    def shop(self) -> str:
        return self.info.shop

    @property
    def room(self) -> str:
        return self.info.room

    def events(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.paths["events.parquet"])

    def viewers(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.paths["viewers.parquet"])

    def transitions(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.paths["transitions.parquet"])

    def followups(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.paths["followups.parquet"])


_verified: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _verified[k] = h.hexdigest()
    return _verified[k]


def _manifest(d: Path) -> dict[str, Any] | None:
    p = d / "manifest.json"
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ArchiveCorrupt(f"unreadable archive manifest {p} ({e}): archive the room again") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT or set(m.get("files", {})) != set(FILES):
        raise ArchiveCorrupt(f"incomplete archive manifest {p}: archive the room again")
    return m


def _info(m: dict[str, Any], d: Path) -> ArchiveInfo:
    s = m["summary"]
    return ArchiveInfo(shop=m["shop"], room=m["room"], first_ts=int(s["first_ts"]), last_ts=int(s["last_ts"]),
                       clock=int(s["clock"]), events=int(s["events"]), viewers=int(s["viewers"]),
                       tasks=int(s["tasks"]), complete=bool(s["complete"]), archived_at=int(s["archived_at"]),
                       generation=int(m["generation"]), path=d)


def read_room(cfg: Config, shop: str, room: str, verify: bool = True) -> RoomArchive:
    """The archived room, its files checked against the manifest; raises NotArchived or ArchiveCorrupt."""
    d = room_dir(cfg, shop, room)
    m = _manifest(d)
    if m is None:
        raise NotArchived(f"room {room!r} of shop {shop!r} is not archived (no {d / 'manifest.json'}): "
                          f"run `python -m scoring close-room --shop {shop} --room {room}`")
    if m["shop"] != shop or m["room"] != room:
        raise ArchiveCorrupt(f"{d} holds room {m['room']!r} of shop {m['shop']!r}, not {room!r} of {shop!r}")
    paths: dict[str, Path] = {}
    for name, ent in m["files"].items():
        p = (d / ent["path"]).resolve()
        if d.resolve() not in p.parents:
            raise ArchiveCorrupt(f"manifest of {d} names a file outside its folder: {ent['path']!r}")
        try:
            size = p.stat().st_size
        except OSError as e:
            raise ArchiveCorrupt(f"{p} named by the manifest is missing: archive the room again") from e
        if size != ent["bytes"] or (verify and _sha256(p) != ent["sha256"]):
            raise ArchiveCorrupt(f"{p} does not match its manifest (altered or half written)")
        paths[name] = p
    facts = json.loads(paths["facts.json"].read_text(encoding="utf-8"))
    return RoomArchive(info=_info(m, d), facts=facts, paths=paths)


def list_archived(cfg: Config, shop: str) -> list[ArchiveInfo]:
    """The shop's archived rooms, oldest show first (manifests only; unreadable ones are skipped)."""
    out = []
    base = archive_root(cfg) / fs_name(shop)
    if not base.is_dir():
        return []
    for d in base.iterdir():
        try:
            m = _manifest(d) if d.is_dir() else None
        except ArchiveCorrupt as e:
            log.warning("%s", e)
            continue
        if m is not None and m["shop"] == shop:
            out.append(_info(m, d))
    return sorted(out, key=lambda i: (i.first_ts, i.room))


def list_shops(cfg: Config) -> list[str]:
    """Shops with at least one archived room."""
    root = archive_root(cfg)
    shops = set()
    if root.is_dir():
        for sd in root.iterdir():
            for d in sd.iterdir() if sd.is_dir() else ():
                with contextlib.suppress(ArchiveCorrupt, KeyError):
                    m = _manifest(d) if d.is_dir() else None
                    if m is not None:
                        shops.add(m["shop"])
                        break
    return sorted(shops)


# --- writing a file set -----------------------------------------------------------
def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(path: Path, write: Callable[[Any], object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _writer(body: bytes) -> Callable[[Any], object]:
    return lambda f: f.write(body)


@contextlib.contextmanager
def _dir_lock(d: Path) -> Iterator[None]:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_file_set(d: Path, shop: str, room: str, parts: dict[str, pl.DataFrame | dict[str, Any]],
                   summary: dict[str, Any], *,
                   on_file_written: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``parts`` (a subset of FILES) as a new generation and commit it with a new manifest.

    Files not in ``parts`` are carried over from the current manifest (which must then exist).
    ``on_file_written(name)`` is called after each file is in place and before the manifest
    (progress; the tests crash there).  Returns the new manifest.
    """
    with _dir_lock(d):
        old = _manifest(d)
        missing = set(FILES) - set(parts) - set(old["files"] if old else ())
        if missing:
            raise ArchiveError(f"cannot write {d}: no {', '.join(sorted(missing))} to keep")
        gen = (old["generation"] if old else 0) + 1
        gdir = d / f"g{gen:06d}-{secrets.token_hex(4)}"
        gdir.mkdir()
        files: dict[str, Any] = dict(old["files"]) if old else {}
        for name in FILES:
            if name not in parts:
                continue
            part = parts[name]
            target = gdir / name
            rows: int
            if isinstance(part, pl.DataFrame):
                _put(target, part.write_parquet)
                rows = part.height
            else:
                body = json.dumps(part, ensure_ascii=False, indent=1, sort_keys=True).encode()
                _put(target, _writer(body))
                rows = 1
            files[name] = {"path": f"{gdir.name}/{name}", "bytes": target.stat().st_size,
                           "sha256": _sha256(target), "rows": rows}
            if on_file_written is not None:
                on_file_written(name)
        _fsync_dir(gdir)
        manifest = {"format": FORMAT, "shop": shop, "room": room, "generation": gen,
                    "written_at": int(time.time() * 1000), "summary": summary, "files": files}
        _put(d / "manifest.json", _writer(json.dumps(manifest, ensure_ascii=False, indent=1).encode()))
        _fsync_dir(d)
        named = {ent["path"] for ent in files.values()}
        keep = {p.split("/", 1)[0] for p in named}
        for child in d.iterdir():
            if child.is_dir() and child.name.startswith("g") and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_dir() and child.name.startswith("g"):
                for f in child.iterdir():
                    if f"{child.name}/{f.name}" not in named:
                        f.unlink(missing_ok=True)
            elif child.name.endswith(".tmp"):
                child.unlink(missing_ok=True)
        return manifest


# --- frames from Redis data (pure) ----------------------------------------------------
def events_frame(wire: list[dict[str, Any]], shop: str) -> pl.DataFrame:
    """Events as decoded from stream entries (msgpack maps) -> one flat row each, sorted by (ts, id)."""
    if not wire:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    df = pl.from_dicts(wire, schema=_WIRE_SCHEMA)
    v = pl.col("viewer").struct
    t = pl.col("type")
    return (df.with_columns(
        shop=pl.col("shop").fill_null(shop),
        type=t.cast(pl.Enum(EVENT_TYPES)),
        name=v.field("name"), country=v.field("country"), lang=v.field("lang"), tz=v.field("tz"),
        text=pl.when(t == "comment").then(pl.col("text").fill_null("")).otherwise(pl.col("text")),
        count=pl.when(t.is_in(["like", "gift"])).then(pl.col("count").fill_null(1)).otherwise(pl.col("count")),
        qty=pl.when(t == "cart_add").then(pl.col("qty").fill_null(1)).otherwise(pl.col("qty")),
    ).with_columns(viewer=v.field("id"))
        .select(list(EVENT_SCHEMA))
        .sort("ts", "id"))


def tier_at_entry(v: ViewerState, room: str, t0: int, orders_before: int, s: RuleSettings) -> str:
    """The tier the viewer had just before their first event in ``room`` (at ``t0``); see the module doc."""
    from scoring import rules

    prior = {k: [f, min(last, t0 - 1)] for k, (f, last) in v.rooms.items() if k != room and f < t0}
    past = [f for f in past_firsts(v) if f < t0]  # archived rooms: first ts, and the latest ts of all
    if not prior and not past:
        return "new_fan"
    firsts = [f for f, _ in prior.values()] + past
    lasts = [last for _, last in prior.values()] + ([min(v.past_last, t0 - 1)] if past else [])
    before = ViewerState(first_seen=min(firsts), last_active=max(lasts), rooms=prior, orders=["?"] * orders_before,
                         past=pack_firsts(past))
    return rules.tier(before, t0, s)


def viewers_frame(room: str, rvs: dict[str, RoomViewer], vs: dict[str, ViewerState], clock: int,
                  s: RuleSettings, orders_before: dict[str, int], tasks: dict[str, str]) -> pl.DataFrame:
    """One row per viewer of the room, at the shop clock ``clock``."""
    from scoring import rules

    cols: dict[str, list[Any]] = {k: [] for k in VIEWER_SCHEMA}
    for vid in sorted(rvs):
        rv, v = rvs[vid], vs.get(vid)
        if v is None:
            continue  # a record with no viewer state cannot happen unless written by hand
        consent = v.consents[-1].dm if v.consents else None
        row = {
            "room": room, "viewer": vid, "name": v.name, "country": v.country, "lang": v.lang, "tz": v.tz,
            "first_ts": rv.first, "last_ts": rv.last, "last_leave_ts": rv.last_leave if rv.last_leave >= 0 else None,
            "present": rules.is_present(rv, clock, s), "dwell_ms": rules.dwell(rv, clock, s),
            "comments": rv.comments, "likes": rv.likes, "shares": rv.shares, "follows": rv.follows,
            "product_views": rv.views, "cart_adds": rv.carts, "gift_value": rv.gift_value,
            "orders": len(rv.orders), "first_order_ts": rv.first_order if rv.first_order >= 0 else None,
            "spend": json.dumps(rv.amount, sort_keys=True) if rv.amount else "",
            "new_viewer": rules.is_new_viewer(v, room), "reactivated": rules.is_reactivated(v, room, s),
            "tier_entry": tier_at_entry(v, room, rv.first, orders_before.get(vid, 0), s),
            "tier_close": v.tier or rules.tier(v, clock, s), "first_seen": v.first_seen,
            "orders_total": len(v.orders), "rooms_attended": rooms_attended(v), "dm_consent": consent,
            "followup": tasks.get(vid),
        }
        for k, x in row.items():
            cols[k].append(x)
    return pl.DataFrame(cols, schema=VIEWER_SCHEMA)


def followups_frame(room: str, tasks: dict[str, dict[str, str]]) -> pl.DataFrame:
    """One row per task of the room (viewer -> its text fields, ``fanops.state.record_fields``)."""
    cols: dict[str, list[Any]] = {k: [] for k in FOLLOWUP_SCHEMA}
    for vid in sorted(tasks):
        h = tasks[vid]
        cols["room"].append(room)
        cols["viewer"].append(vid)
        for k in _TASK_STR:
            cols[k].append(h.get(k) or None)
        for k in _TASK_INT:
            cols[k].append(int(float(h[k])) if h.get(k) else None)
        cols["priority"].append(float(h["priority"]) if h.get("priority") else None)
        cols["reactivated"].append(h.get("reactivated") == "1")
    return pl.DataFrame(cols, schema=FOLLOWUP_SCHEMA)


def transitions_frame(room: str, entries: list[tuple[str, dict[bytes, bytes]]]) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {k: [] for k in TRANSITION_SCHEMA}
    for sid, f in entries:
        g = {k.decode(): v.decode("utf-8", "replace") for k, v in f.items()}
        row = {"room": room, "id": sid, "viewer": g.get("viewer"), "name": g.get("name"), "from": g.get("from"),
               "to": g.get("to"), "ts": int(g.get("ts", 0)), "cause": g.get("cause"),
               "event_room": g.get("room") or None, "rules_version": int(g.get("rules_version", 0) or 0)}
        for k, x in row.items():
            cols[k].append(x)
    return pl.DataFrame(cols, schema=TRANSITION_SCHEMA)


# --- reading a room from Redis ------------------------------------------------------------
def _fmt(i: tuple[int, int]) -> str:
    return f"{i[0]}-{i[1]}"


@dataclass
class _Part:
    """What a pass over one partition stream of the shop found."""

    entries: list[tuple[tuple[int, int], frozenset[str]]] = field(default_factory=list)  # id, rooms in it
    rooms_of: dict[tuple[int, int], frozenset[str]] = field(default_factory=dict)  # every entry read: its rooms
    first_id: tuple[int, int] | None = None  # the room's first and last entries in this stream
    last_id: tuple[int, int] | None = None
    end: tuple[int, int] | None = None  # the last entry read


@dataclass
class _Scan:
    """What a pass over the shop's streams found."""

    room: str
    log: eventlog.LogReader
    events: list[dict[str, Any]] = field(default_factory=list)  # the room's events (wire maps)
    files: dict[Path, set[str]] = field(default_factory=dict)  # applied-event log file -> rooms in it
    orders: list[tuple[str, str, int]] = field(default_factory=list)  # every order: viewer, order id, ts
    parts: list[_Part] = field(default_factory=lambda: [_Part() for _ in range(keys.PARTITIONS)])

    @property
    def first_id(self) -> tuple[int, int] | None:
        ids = [pt.first_id for pt in self.parts if pt.first_id is not None]
        return min(ids) if ids else None


def _scan(r: redis.Redis, shop: str, sc: _Scan) -> int:
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


def _take(sc: _Scan, pt: _Part, sid: tuple[int, int], payload: bytes) -> frozenset[str] | None:
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


def _count_mine(sc: _Scan, pt: _Part, sid: tuple[int, int], rooms: frozenset[str]) -> int:
    if sc.room not in rooms:
        return 0
    pt.first_id = sid if pt.first_id is None else min(pt.first_id, sid)
    pt.last_id = sid if pt.last_id is None else max(pt.last_id, sid)
    return 1


def _scan_part(r: redis.Redis, stream: str, sc: _Scan, pt: _Part) -> int:
    found = 0
    start = "-" if pt.end is None else "(" + _fmt(pt.end)
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
            start = "(" + _fmt(pt.end)  # type: ignore[arg-type]
    return found


def _unapplied(r: redis.Redis, shop: str, sc: _Scan) -> bool:
    """Whether an entry holding an event of the room is not yet applied by a scorer, in any partition."""
    progs = eventlog.group_progress(r, keys.streams(shop))
    for pt, prog in zip(sc.parts, progs, strict=True):
        if pt.last_id is not None and (prog is None or pt.last_id >= eventlog.applied_below(prog)):
            return True
    return False


def _read_room_viewers(r: redis.Redis, shop: str, room: str) -> tuple[dict[str, RoomViewer], dict[str, ViewerState]]:
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


def _read_tasks(r: redis.Redis, shop: str, rooms: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """Every task of each room, as text fields (``fanops.state.record_fields``): room -> viewer -> fields."""
    recs: dict[str, list[tuple[str, TaskRec]]] = {rm: [] for rm in rooms}
    for rm in rooms:
        for vid, b in r.hscan_iter(keys.tasks(shop, rm), count=CHUNK):
            recs[rm].append((vid.decode("utf-8", "surrogateescape"), unpack_task(b)))
    read.fill_profiles(r, shop, [x for got in recs.values() for x in got])  # the viewers' names, countries ...
    return {rm: {vid: record_fields(t) for vid, t in got} for rm, got in recs.items()}


def _read_transitions(r: redis.Redis, shop: str, since: tuple[int, int] | None, viewers: set[str],
                      lo: int, hi: int) -> list[tuple[str, dict[bytes, bytes]]]:
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


def _orders_before(cfg: Config, shop: str, room: str, live: list[tuple[str, str, int]],
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


# --- archiving ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveResult:
    shop: str
    room: str
    path: Path
    generation: int
    events: int
    viewers: int
    tasks: int
    complete: bool  # every event the scorer counted for the room is in events.parquet
    trimmed: int  # stream entries removed
    already: bool = False  # the room was archived before: nothing done

    def to_json(self) -> dict[str, Any]:
        return {"shop": self.shop, "room": self.room, "path": str(self.path), "generation": self.generation,
                "events": self.events, "viewers": self.viewers, "tasks": self.tasks, "complete": self.complete,
                "trimmed_entries": self.trimmed, "already_archived": self.already}




def _holder_gone(mark: bytes, now_ms: int) -> bool:
    """An ``archiving`` mark left by a process that is dead (same host) or silent for LOCK_STALE_MS."""
    token, _, at = mark.decode("utf-8", "replace").rpartition(":")
    host, _, rest = token.partition("|")
    if now_ms - int(at or 0) > LOCK_STALE_MS:
        return True
    if host == socket.gethostname():
        try:
            os.kill(int(rest.partition("|")[0]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
    return False


def _lock(r: redis.Redis, shop: str, room: str, token: str, now_ms: int) -> None:
    rk = keys.room(shop, room)
    if r.hsetnx(rk, "archiving", f"{token}:{now_ms}"):
        return
    with r.pipeline() as p:
        try:
            p.watch(rk)
            cur: Any = p.hget(rk, "archiving")
            if not cur or _holder_gone(cur, now_ms):
                p.multi()
                p.hset(rk, "archiving", f"{token}:{now_ms}")
                p.execute()
                return
        except redis.WatchError:
            pass
    raise RoomNotReady(f"room {room!r} of shop {shop!r} is being archived by another process: try again later")


def _unlock(r: redis.Redis, shop: str, room: str, token: str) -> None:
    rk = keys.room(shop, room)
    with r.pipeline() as p, contextlib.suppress(redis.WatchError):
        p.watch(rk)
        cur: Any = p.hget(rk, "archiving")
        if cur and cur.decode().startswith(token + ":"):
            p.multi()
            p.hdel(rk, "archiving")
            p.execute()


def _already(cfg: Config, shop: str, room: str) -> ArchiveResult:
    try:
        a = read_room(cfg, shop, room, verify=False)
    except ArchiveError as e:
        raise ArchiveError(f"room {room!r} of shop {shop!r} was archived and its raw data removed from Redis, "
                           f"but its files cannot be read: {e}") from e
    i = a.info
    return ArchiveResult(shop, room, i.path, i.generation, i.events, i.viewers, i.tasks, i.complete, 0, True)


def archive_room(r: redis.Redis, cfg: Config, shop: str, room: str, *,
                 on_file_written: Callable[[str], None] | None = None,
                 wait_applied_s: float = 0.0) -> ArchiveResult:
    """Write the room's file set, then remove its raw data from Redis (see the module doc).

    Raises RoomNotReady if some of the room's events are not applied by a scorer yet (waiting up
    to ``wait_applied_s``) or another process is archiving it, NotFound for an unknown room.
    A room archived before is not archived again: its existing archive is returned.
    """
    rk = keys.room(shop, room)
    p = r.pipeline(transaction=False)
    p.hgetall(rk)
    p.zscore(keys.rooms(shop), room)
    rh, last_ts = p.execute()
    if not rh and last_ts is None:
        raise NotFound(f"no room {room!r} in shop {shop!r}")
    if b"archived" in rh:
        return _already(cfg, shop, room)
    token = f"{socket.gethostname()}|{os.getpid()}|{secrets.token_hex(6)}"
    _lock(r, shop, room, token, int(time.time() * 1000))
    try:
        sc = _Scan(room, eventlog.LogReader(cfg.data_dir, shop))
        _scan(r, shop, sc)
        for attempt in range(LATE_RETRIES):
            deadline = time.monotonic() + (wait_applied_s if attempt == 0 else max(wait_applied_s, 5.0))
            while _unapplied(r, shop, sc):
                if time.monotonic() >= deadline:
                    raise RoomNotReady(f"room {room!r} of shop {shop!r} has events not yet applied by a scorer: "
                                       "start `python -m scoring run` (or wait for it) and try again")
                time.sleep(0.05)
            with gc_paused():
                manifest, n_tasks, complete, viewers = _write(r, cfg, shop, room, sc, on_file_written)
            if not _scan(r, shop, sc):  # nothing arrived for the room meanwhile
                break
            log.info("late events for room %s of %s arrived while archiving: writing it again", room, shop)
        trimmed = _drop_raw(r, shop, room, token, sc, viewers, manifest)
    finally:
        _unlock(r, shop, room, token)
    trim_clock_index(r, shop)
    s = manifest["summary"]
    log.info("archived room %s of %s: %d events, %d viewers, generation %d, %d stream entries trimmed",
             room, shop, s["events"], s["viewers"], manifest["generation"], trimmed)
    return ArchiveResult(shop, room, room_dir(cfg, shop, room), manifest["generation"], s["events"],
                         s["viewers"], n_tasks, complete, trimmed)


def _write(r: redis.Redis, cfg: Config, shop: str, room: str, sc: _Scan,
           on_file_written: Callable[[str], None] | None) -> tuple[dict[str, Any], int, bool, list[str]]:
    settings, version = rules_store.load(r, shop)
    st = status(r, shop, room)  # before anything is removed: the present zset is still there
    clock = st["clock"]
    p = r.pipeline(transaction=False)
    p.hgetall(keys.room(shop, room))
    p.zscore(keys.room_first(shop), room)
    p.zscore(keys.rooms(shop), room)
    rh, first, last = p.execute()
    rvs, vs = _read_room_viewers(r, shop, room)
    tasks = _read_tasks(r, shop, [room])[room]
    events = events_frame(sc.events, shop)
    span = events.select(lo=pl.col("ts").min().fill_null(0), hi=pl.col("ts").max().fill_null(0)).row(0)
    first_ts = int(first) if first is not None else int(span[0])
    last_ts = int(last) if last is not None else int(span[1])
    orders_before = _orders_before(cfg, shop, room, sc.orders, {v: rv.first for v, rv in rvs.items()})
    states = {vid: h.get("state", "") for vid, h in tasks.items()}
    viewers = viewers_frame(room, rvs, vs, clock, settings, orders_before, states)
    transitions = transitions_frame(room, _read_transitions(r, shop, sc.first_id, set(rvs), first_ts, clock))
    followups = followups_frame(room, tasks)
    h = {k.decode(): v for k, v in rh.items()}
    counted = {t: to_int(h.get(f"n:{t}")) for t in EVENT_TYPES}
    complete = sum(counted.values()) == events.height
    facts = {
        "format": FORMAT, "shop": shop, "room": room, "clock": clock, "first_ts": first_ts, "last_ts": last_ts,
        "archived_at": int(time.time() * 1000), "status": st,
        "gmv": {k[4:]: float(v) for k, v in h.items() if k.startswith("gmv:")},
        "gift_value": float(h.get("gift_value") or 0), "likes": to_int(h.get("likes")), "counted": counted,
        "events": events.height, "complete": complete, "rules_version": version,
        "rules": settings.to_mapping(), "tiers": list(TIERS),
    }
    summary = {"first_ts": first_ts, "last_ts": last_ts, "clock": clock, "events": events.height,
               "viewers": viewers.height, "tasks": followups.height, "complete": complete,
               "archived_at": facts["archived_at"]}
    manifest = write_file_set(room_dir(cfg, shop, room), shop, room,
                              {"events.parquet": events, "viewers.parquet": viewers,
                               "transitions.parquet": transitions, "followups.parquet": followups,
                               "facts.json": facts}, summary, on_file_written=on_file_written)
    return manifest, followups.height, complete, list(rvs)


def _trim_points(r: redis.Redis, shop: str, room: str, sc: _Scan,
                 done: set[str]) -> list[tuple[str, tuple[int, int]]]:
    """Per partition stream, the oldest entry that must stay: it holds an event of a room not
    archived (``done``: the archived rooms), or a scorer has not applied it (streams to keep whole
    are left out)."""
    out = []
    progs = eventlog.group_progress(r, keys.streams(shop))
    for i, (pt, prog) in enumerate(zip(sc.parts, progs, strict=True)):
        cut = next((sid for sid, rooms in sorted(pt.entries) if not rooms <= done), None)
        if cut is None and pt.end is not None:
            cut = (pt.end[0], pt.end[1] + 1)
        if prog is None or cut is None:
            continue
        out.append((keys.stream(shop, i), min(cut, eventlog.applied_below(prog))))
    return out


def raw_keys(shop: str, room: str) -> list[str]:
    """The room's raw data, removed once it is archived (its lurk entries go too)."""
    return [keys.room_viewers(shop, room), keys.present(shop, room), keys.seen(shop, room),
            keys.room_minutes(shop, room), keys.room_orders(shop, room), keys.seen_v1(shop, room),
            *(keys.room_feed(shop, room, k) for k in FEEDS)]


def _drop_raw(r: redis.Redis, shop: str, room: str, token: str, sc: _Scan, viewers: list[str],
              manifest: dict[str, Any]) -> int:
    rk = keys.room(shop, room)
    cur: Any = r.hget(rk, "archiving")
    if not cur or not cur.decode().startswith(token + ":"):
        raise RoomNotReady(f"lost the archiving mark of room {room!r} of shop {shop!r} (another process took "
                           "it over): its files are written; run close-room again to remove its raw data")
    others = sorted({rm for pt in sc.parts for _, rooms in pt.entries for rm in rooms} - {room})
    p = r.pipeline(transaction=False)
    for rm in others:
        p.hexists(keys.room(shop, rm), "archived")
    done = {rm for rm, a in zip(others, p.execute() if others else [], strict=True) if a} | {room}
    cuts = _trim_points(r, shop, room, sc, done)
    # the room's shop-wide number, by which viewers' states keep it once archived (state.fold)
    no = to_int(cast("bytes | None", r.hget(rk, "no"))) or int(r.hincrby(keys.stats(shop), "room_no_seq", 1))
    p = r.pipeline(transaction=True)
    p.hset(rk, mapping={"archived": manifest["summary"]["clock"], "archived_at": int(time.time() * 1000),
                        "archive_generation": manifest["generation"], "no": no})
    p.hset(keys.room_nos(shop), str(no), room)
    p.hdel(rk, "archiving")
    p.delete(*raw_keys(shop, room), *read.seen_keys(r, shop, room))
    for i in range(0, len(viewers), CHUNK):
        by_part: dict[int, list[str]] = {}
        for v in viewers[i:i + CHUNK]:
            by_part.setdefault(keys.part_of(v), []).append(keys.pair(room, v))
        for part, members in by_part.items():
            p.zrem(keys.lurk(shop, part), *members)
            p.zrem(keys.late_window(shop, part), *members)
    for stream, cut in cuts:
        p.xtrim(stream, minid=_fmt(cut), approximate=False)
    res = p.execute()
    # applied-event log files holding only archived rooms' events are no longer needed
    gone = eventlog.delete_files([f for f, rooms in sc.files.items() if rooms <= done])
    if gone:
        log.info("deleted %d applied-event log files of %s: every room in them is archived", gone, shop)
    return sum(int(x) for x in res[len(res) - len(cuts):]) if cuts else 0


def is_archived(r: redis.Redis, shop: str, rooms: list[str]) -> set[str]:
    """Which of ``rooms`` are archived (their raw data gone; a scorer should drop late events of them)."""
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.hexists(keys.room(shop, rm), "archived")
    return {rm for rm, a in zip(rooms, p.execute() if rooms else [], strict=True) if a}


def idle_rooms(r: redis.Redis, shop: str, idle_ms: int = IDLE_MS) -> list[str]:
    """Rooms whose last event is ``idle_ms`` or more before the shop clock, not archived yet."""
    clock = int(r.hget(keys.stats(shop), "clock") or 0)
    found: Any = r.zrangebyscore(keys.rooms(shop), "-inf", clock - idle_ms)
    cands = [m.decode() for m in found]
    done = is_archived(r, shop, cands)
    return [rm for rm in cands if rm not in done]


TRIM_PAGE = 1000


def trim_clock_index(r: redis.Redis, shop: str) -> None:
    """Drop the per-second shop-clock index (``keys.clock_min``/``clock_max``) below the first event
    of the oldest room still open: only late events of open rooms look it up. The tier transitions
    from before then go too (``trim_transitions``)."""
    firsts = cast(replies.Scored, r.zrange(keys.room_first(shop), 0, -1, withscores=True))
    rooms = [(m.decode(), int(sc)) for m, sc in firsts]
    gone = is_archived(r, shop, [rm for rm, _ in rooms])
    open_firsts = [f for rm, f in rooms if rm not in gone]
    below = min(open_firsts) if open_firsts else int(r.hget(keys.stats(shop), "clock") or 0)
    p = r.pipeline(transaction=False)
    p.zremrangebyscore(keys.clock_min(shop), "-inf", f"({below}")
    p.zremrangebyscore(keys.clock_max(shop), "-inf", f"({below}")
    p.zrevrange(keys.rooms(shop), 0, 0)
    newest = cast("list[bytes]", p.execute()[-1])
    # the live board shows the newest room, live or ended: its transitions stay too
    newest_first = dict(rooms).get(newest[0].decode()) if newest else None
    trim_transitions(r, shop, below if newest_first is None else min(below, newest_first))


def trim_transitions(r: redis.Redis, shop: str, below: int) -> int:
    """Drop the oldest tier transitions, up to the first one at or after ``below`` (the first event
    of the oldest room still open): those before it are of archived rooms (in their archives'
    transitions tables) or time-driven. Returns how many left the stream."""
    tk = keys.transitions(shop)
    start = "-"
    while True:
        page = cast("list[tuple[bytes, dict[bytes, bytes]]]", r.xrange(tk, start, "+", count=TRIM_PAGE))
        if not page:
            return int(r.xtrim(tk, minid=_next_id(start), approximate=False)) if start != "-" else 0
        for sid, f in page:
            if to_int(f.get(b"ts")) >= below:
                return int(r.xtrim(tk, minid=sid, approximate=False))
        start = "(" + page[-1][0].decode()


def _next_id(excl: str) -> str:
    """The stream id just after ``(ms-seq``."""
    ms, seq = excl[1:].split("-")
    return f"{ms}-{int(seq) + 1}"


def close_idle_rooms(r: redis.Redis, shop: str, cfg: Config, idle_ms: int = IDLE_MS) -> list[str]:
    """Archive every idle room of the shop (see ``idle_rooms``); returns the rooms archived now.

    A room whose events are not all applied yet, or that another process is archiving, is left
    for a later call.  Safe to call from every worker: each room is archived once.
    """
    done = []
    for rm in idle_rooms(r, shop, idle_ms):
        try:
            res = archive_room(r, cfg, shop, rm)
        except RoomNotReady as e:
            log.info("room %s of %s not archived yet: %s", rm, shop, e)
            continue
        if not res.already:
            done.append(rm)
    return done


def refresh_followups(r: redis.Redis, cfg: Config, shop: str, rooms: list[str] | None = None) -> list[str]:
    """Rewrite archived rooms' followups.parquet from the live tasks (operators keep sending DMs after
    the show); ``rooms`` default: every archived room of the shop.  Returns the rooms changed.
    A room whose tasks are gone from Redis keeps the last copy it had."""
    infos = {i.room: i for i in list_archived(cfg, shop)}
    wanted = [rm for rm in (rooms if rooms is not None else list(infos)) if rm in infos]
    changed = []
    for rm, tasks in _read_tasks(r, shop, wanted).items():
        info = infos[rm]
        m = _manifest(info.path)
        if not tasks or m is None:
            continue
        new = followups_frame(rm, tasks)
        if new.equals(pl.read_parquet(info.path / m["files"]["followups.parquet"]["path"])):
            continue
        write_file_set(info.path, shop, rm, {"followups.parquet": new}, {**m["summary"], "tasks": new.height})
        changed.append(rm)
    return changed




def prune_followups(r: redis.Redis, cfg: Config, shop: str) -> int:
    """Remove from Redis the follow-up tasks of archived rooms that are settled: ``sent``, ``skipped``,
    ``converted`` or ``withdrawn`` (once a room is archived nothing moves them any more), after their
    room's followups.parquet has been brought up to date.  Open tasks stay for the operators; the
    room counters (``status``), the sent log (the cooldown) and the archive are unchanged.
    Opt-in: call it on a schedule (see the module doc).  Returns the tasks removed."""
    infos = list_archived(cfg, shop)
    rooms = sorted(is_archived(r, shop, [i.room for i in infos]))
    refresh_followups(r, cfg, shop, rooms)
    n = 0
    for rm, tasks in _read_tasks(r, shop, rooms).items():
        states = {vid: h.get("state", "") for vid, h in tasks.items()}
        done = [(vid, st) for vid, st in states.items() if st in FINAL_TASK_STATES]
        for i in range(0, len(done), CHUNK):
            p = r.pipeline(transaction=True)
            for vid, state in done[i:i + CHUNK]:
                p.hdel(keys.tasks(shop, rm), vid)
                p.zrem(keys.queue(shop, state), keys.pair(rm, vid))
            p.execute()
        n += len(done)
    return n
