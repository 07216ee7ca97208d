"""The archive's files: one file set per ended show, written by the scorer, read by the review.

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
the new manifest is in place.  A generation may carry files over: one that holds only a new
``followups.parquet`` names the unchanged older files beside it.  Writers of one room's folder
take its lock file in turn.

What goes into the files, and when, is the scorer's (``scoring.archive``; how the viewer
columns are derived: ``scoring.archive_frames``); this module knows only the format, and
imports nothing of ``scoring``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from fanops.config import Config
from fanops.errors import ArchiveCorrupt, ArchiveError, NotArchived
from fanops.paths import dir_lock, fs_name, fsync_dir, put_atomic
from fanops.schema import EVENT_TYPES

log = logging.getLogger(__name__)

FORMAT = 1
FILES = ("events.parquet", "viewers.parquet", "transitions.parquet", "followups.parquet", "facts.json")
# files a generation may hold beside FILES: ``redis.parquet``, the room's raw Redis data as it was
# removed (``scoring.archive``), by which a late event reopens the show (``scoring.reopen``)
OPTIONAL = ("redis.parquet",)


# --- schemas: the columns of each table ------------------------------------------
EVENT_SCHEMA: dict[str, Any] = {
    "room": pl.String, "shop": pl.String, "id": pl.String, "ts": pl.Int64, "type": pl.Enum(EVENT_TYPES),
    "viewer": pl.String, "name": pl.String, "country": pl.String, "lang": pl.String, "tz": pl.String,
    "text": pl.String, "count": pl.Int64, "gift": pl.String, "value": pl.Float64, "sku": pl.String,
    "qty": pl.Int64, "order_id": pl.String, "amount": pl.Float64, "currency": pl.String, "dm": pl.Boolean,
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
# a follow-up task's text fields (``fanops.state.record_fields``) as text and as whole numbers
TASK_STR_FIELDS = ("state", "name", "tier", "country", "lang", "product", "holder", "sent_by", "skipped_by",
                   "skip_reason")
TASK_INT_FIELDS = ("made_at", "dwell_ms", "claimed_at", "lease_until", "sent_at", "sent_clock", "skipped_at",
                   "updated_at", "comments", "carts", "views")
# the raw Redis data of a room: a key's DUMP (``payload``), or one member of a shared sorted set
# (``member``, ``score``) that held the room's entries
REDIS_SCHEMA: dict[str, Any] = {
    "kind": pl.String, "key": pl.String, "payload": pl.Binary, "member": pl.Binary, "score": pl.Float64,
}
FOLLOWUP_SCHEMA: dict[str, Any] = {
    "room": pl.String, "viewer": pl.String, **{k: pl.String for k in TASK_STR_FIELDS},
    **{k: pl.Int64 for k in TASK_INT_FIELDS}, "priority": pl.Float64, "reactivated": pl.Boolean,
}


# --- paths --------------------------------------------------------------------
def archive_root(cfg: Config) -> Path:
    """Where every shop's archived shows are: ``<data_dir>/archive``."""
    return Path(cfg.data_dir) / "archive"


def room_dir(cfg: Config, shop: str, room: str) -> Path:
    """The folder of one room's file set (the ids escaped by ``fs_name``)."""
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

    def redis_data(self) -> pl.DataFrame | None:
        """The room's raw Redis data as archiving removed it (``REDIS_SCHEMA``), None in archives
        written before it was kept."""
        p = self.paths.get("redis.parquet")
        return pl.read_parquet(p) if p is not None else None


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


def read_manifest(d: Path) -> dict[str, Any] | None:
    """The room folder's manifest, None if it has none; raises ArchiveCorrupt if it is unreadable
    or does not name every file of FILES."""
    p = d / "manifest.json"
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ArchiveCorrupt(f"unreadable archive manifest {p} ({e}): archive the room again") from e
    names = set(m.get("files", {})) if isinstance(m, dict) else set()
    if not isinstance(m, dict) or m.get("format") != FORMAT or not set(FILES) <= names <= {*FILES, *OPTIONAL}:
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
    m = read_manifest(d)
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
            m = read_manifest(d) if d.is_dir() else None
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
                    m = read_manifest(d) if d.is_dir() else None
                    if m is not None:
                        shops.add(m["shop"])
                        break
    return sorted(shops)


# --- writing a file set -----------------------------------------------------------
def _writer(body: bytes) -> Callable[[Any], object]:
    return lambda f: f.write(body)


def write_file_set(d: Path, shop: str, room: str, parts: dict[str, pl.DataFrame | dict[str, Any]],
                   summary: dict[str, Any], *,
                   on_file_written: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``parts`` (a subset of FILES) as a new generation and commit it with a new manifest.

    Files not in ``parts`` are carried over from the current manifest (which must then exist).
    ``on_file_written(name)`` is called after each file is in place and before the manifest
    (progress; the tests crash there).  Returns the new manifest.
    """
    with dir_lock(d):
        old = read_manifest(d)
        missing = set(FILES) - set(parts) - set(old["files"] if old else ())
        if missing:
            raise ArchiveError(f"cannot write {d}: no {', '.join(sorted(missing))} to keep")
        gen = (old["generation"] if old else 0) + 1
        gdir = d / f"g{gen:06d}-{secrets.token_hex(4)}"
        gdir.mkdir()
        files: dict[str, Any] = dict(old["files"]) if old else {}
        for name in (*FILES, *OPTIONAL):
            if name not in parts:
                continue
            part = parts[name]
            target = gdir / name
            rows: int
            if isinstance(part, pl.DataFrame):
                put_atomic(target, part.write_parquet)
                rows = part.height
            else:
                body = json.dumps(part, ensure_ascii=False, indent=1, sort_keys=True).encode()
                put_atomic(target, _writer(body))
                rows = 1
            files[name] = {"path": f"{gdir.name}/{name}", "bytes": target.stat().st_size,
                           "sha256": _sha256(target), "rows": rows}
            if on_file_written is not None:
                on_file_written(name)
        fsync_dir(gdir)
        manifest = {"format": FORMAT, "shop": shop, "room": room, "generation": gen,
                    "written_at": int(time.time() * 1000), "summary": summary, "files": files}
        put_atomic(d / "manifest.json", _writer(json.dumps(manifest, ensure_ascii=False, indent=1).encode()))
        fsync_dir(d)
        _drop_unnamed(d, {ent["path"] for ent in files.values()})
        return manifest


def _drop_unnamed(d: Path, named: set[str]) -> None:
    """Delete what the manifest no longer names: older generations, files carried out of them, temp files."""
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
