"""A viewer taken out of the files under the data folder: the applied-event log and the archives.

Shared by ``scoring.forget`` (one viewer, everything that names them) and ``scoring.retention``
(viewers inactive for ``retention_days``: their comment text and contact details). A ``Scrub``
says which of the two.

- The applied-event log (``scoring.eventlog``): the viewer's events stay, each at its place and
  of its length, with every text that names the viewer written over (``fill``): the archive of a
  show still open reads its events from these files, and the show's totals (events, orders, GMV)
  must come out as counted. Written over in place: a scorer may be appending to the file.
- An archived show: a new generation of its file set (``review.archive_files``). ``events``
  keeps the viewer's events, anonymous (the viewer's id written over, name, country, language,
  time zone, comment text and contact details emptied): the show's totals, and the check of a
  resent event against the archive (``scoring.archive.archived_repeats``), stay as they were.
  ``viewers``, ``transitions`` and ``followups`` lose the viewer's rows. ``redis.parquet``
  (``scoring.reopen.snapshot``) loses the viewer's record, presence, host-screen entries and
  index entries: each DUMP is restored into a scratch key of the server, changed, dumped again.
  ``facts.json`` holds only the show's totals and stays.
- The ledger of pruned follow-up tasks of the kinds besides lingered (``scoring.kind_prune``): the
  viewer's rows go (forget), or their comment text (retention).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import polars as pl
import redis

from fanops import keys
from fanops.config import Config
from fanops.state import pack, unpack_room_viewer
from review.archive_files import ArchiveInfo, read_room, write_file_set
from scoring import eventlog, kind_prune, msgpack_spans

# Contact details a viewer's records may carry (events, the viewer's state, the archive's viewer
# rows). The one list that says which fields retention and forget clear as contact details: a
# field named here is emptied wherever it is found (see ``scoring.retention.clear_contact``).
CONTACT_FIELDS: tuple[str, ...] = ("email", "phone")
PROFILE_FIELDS: tuple[str, ...] = ("name", "country", "lang", "tz")
FEEDS = ("greet", "thank", "questions")
SCRATCH_TTL_MS = 60_000  # a scratch key outlives a crash of forget by this long at most


@dataclass(frozen=True)
class Scrub:
    """What to take out of the files: everything that names ``viewers`` (``forget``), or only their
    comment text and contact details (retention)."""

    viewers: frozenset[str]
    forget: bool


def fill(text: str, country: bool = False) -> str:
    """A text written over: as many bytes, none of it left ("ZZ", unknown, for a country code:
    it still parses)."""
    return fill_bytes(text.encode("utf-8", "surrogatepass"), country).decode()


def fill_bytes(b: bytes, country: bool = False) -> bytes:
    return b"ZZ" if country and len(b) == 2 else b"~" * len(b)


def _targets(ev: msgpack_spans.EventSpans, s: Scrub) -> list[str]:
    names = [*CONTACT_FIELDS, *(f"viewer.{c}" for c in CONTACT_FIELDS), "text"]
    if s.forget:
        names += [f"viewer.{k}" for k in PROFILE_FIELDS] + ["viewer.id"]
    return [n for n in names if n in ev.spans]


def scrub_payload(payload: bytes, s: Scrub) -> tuple[bytes | None, int]:
    """A stream entry's payload (as the applied-event log holds it) with what ``s`` takes out of
    its events written over, byte for byte (``fill``), and the events changed; None if none."""
    buf: bytearray | None = None
    n = 0
    for ev in msgpack_spans.events(payload):
        if ev.values.get("viewer.id") not in s.viewers:
            continue
        changed = False
        for name in _targets(ev, s):
            off, size = ev.spans[name]
            new = fill_bytes(payload[off:off + size], country=name == "viewer.country")
            if new != payload[off:off + size]:
                buf = buf if buf is not None else bytearray(payload)
                buf[off:off + size] = new
                changed = True
        n += changed
    return (bytes(buf) if buf is not None else None), n


def scrub_eventlog(cfg: Config, shop: str, s: Scrub) -> Counter[str]:
    """``s`` applied to every applied-event log file of the shop, in place; counts
    ``eventlog_events`` and ``eventlog_files`` changed."""
    out: Counter[str] = Counter()
    needles = [v.encode("utf-8", "surrogatepass") for v in s.viewers] if len(s.viewers) <= 16 else None
    for path in eventlog.LogReader(cfg.data_dir, shop).files():
        changed = 0

        def change(rec: eventlog.Record) -> bytes | None:
            nonlocal changed
            if needles is not None and not any(x in rec.payload for x in needles):
                return None
            new, k = scrub_payload(rec.payload, s)
            changed += k
            return new

        if eventlog.rewrite_in_place(path, change):
            out["eventlog_files"] += 1
            out["eventlog_events"] += changed
    return out


# --- an archived show ---------------------------------------------------------------------------
def _events(ev: pl.DataFrame, s: Scrub) -> tuple[pl.DataFrame, int]:
    hit = pl.col("viewer").is_in(list(s.viewers))
    none = pl.lit(None, dtype=pl.String)
    contact = [c for c in CONTACT_FIELDS if c in ev.columns]
    comment = pl.col("type") == "comment"
    if s.forget:
        cond = hit
        placeholder = fill(next(iter(s.viewers))) if len(s.viewers) == 1 else "~"
        cols = {"viewer": pl.when(hit).then(pl.lit(placeholder)).otherwise(pl.col("viewer")),
                **{c: pl.when(hit).then(none).otherwise(pl.col(c)) for c in (*PROFILE_FIELDS, *contact)},
                "text": pl.when(hit & comment).then(pl.lit("")).when(hit).then(none).otherwise(pl.col("text"))}
    else:
        has = [pl.col("text").fill_null("") != ""] + [pl.col(c).is_not_null() for c in contact]
        cond = hit & pl.any_horizontal(has)
        cols = {"text": pl.when(hit & comment).then(pl.lit("")).when(hit).then(none).otherwise(pl.col("text")),
                **{c: pl.when(hit).then(none).otherwise(pl.col(c)) for c in contact}}
    n = ev.filter(cond).height
    return (ev.with_columns(**cols) if n else ev), n


def _rows_out(df: pl.DataFrame, s: Scrub) -> tuple[pl.DataFrame, int]:
    """Forget: the rows of the viewer go; retention: their contact details, where the table has any."""
    hit = pl.col("viewer").is_in(list(s.viewers))
    if s.forget:
        kept = df.filter(~hit)
        return kept, df.height - kept.height
    contact = [c for c in CONTACT_FIELDS if c in df.columns]
    if not contact:
        return df, 0
    n = df.filter(hit & pl.any_horizontal([pl.col(c).is_not_null() for c in contact])).height
    none = pl.lit(None, dtype=pl.String)
    return (df.with_columns(**{c: pl.when(hit).then(none).otherwise(pl.col(c)) for c in contact}) if n else df), n


def _scrub_key(r: redis.Redis, scratch: str, kind: str, s: Scrub) -> int:
    """Take ``s`` out of the restored key ``scratch`` (``kind``: rv, present or a feed); returns what went."""
    vids = sorted(s.viewers)
    if kind == "rv":
        if s.forget:
            return int(r.hdel(scratch, *vids))
        n = 0
        for vid, b in zip(vids, cast("list[bytes | None]", r.hmget(scratch, vids)), strict=True):
            if b:
                rv = unpack_room_viewer(b)
                if rv.said:
                    rv.said = []
                    r.hset(scratch, vid, pack(rv))
                    n += 1
        return n
    if kind == "present":
        return int(r.zrem(scratch, *vids)) if s.forget else 0
    if not s.forget and kind != "questions":
        return 0  # retention: only the questions list holds comment text
    n = 0
    for entry in cast("list[bytes]", r.lrange(scratch, 0, -1)):
        if feed_viewer(entry) in s.viewers:
            n += int(r.lrem(scratch, 0, entry))  # type: ignore[arg-type]  # bytes as read
    return n


def feed_viewer(entry: bytes) -> str | None:
    """The viewer a host-screen list entry (JSON, ``scoring.engine``) is of."""
    try:
        got = json.loads(entry)
    except ValueError:
        return None
    return got.get("viewer") if isinstance(got, dict) else None


def scrub_dumps(r: redis.Redis, shop: str, room: str, df: pl.DataFrame, s: Scrub) -> tuple[pl.DataFrame, int]:
    """``redis.parquet`` of the room without what ``s`` takes out; returns it and the records taken."""
    kinds = {keys.room_viewers(shop, room): "rv", keys.present(shop, room): "present",
             **{keys.room_feed(shop, room, k): k for k in FEEDS}}
    pairs = {keys.pair(room, v).encode() for v in s.viewers}
    rows: list[dict[str, Any]] = []
    n = 0
    scratch = keys.scratch(shop, f"forget-{secrets.token_hex(8)}")
    try:
        for row in df.iter_rows(named=True):
            if row["kind"] == "zset" and s.forget and row["member"] in pairs:
                n += 1
                continue
            kind = kinds.get(row["key"]) if row["kind"] == "dump" else None
            if kind is not None:
                r.restore(scratch, SCRATCH_TTL_MS, row["payload"], replace=True)
                k = _scrub_key(r, scratch, kind, s)
                if k:
                    n += k
                    payload = r.dump(scratch)
                    if payload is None:
                        continue  # the key held only the viewer
                    row = {**row, "payload": payload}
            rows.append(row)
    finally:
        r.delete(scratch)
    return (pl.DataFrame(rows, schema=df.schema) if n else df), n


def scrub_room(r: redis.Redis, cfg: Config, info: ArchiveInfo, s: Scrub) -> Counter[str]:
    """A new generation of the archived show without what ``s`` takes out (none if nothing names
    the viewers); counts ``archive_*`` by table."""
    shop, room = info.shop, info.room
    a = read_room(cfg, shop, room)
    out: Counter[str] = Counter()
    parts: dict[str, pl.DataFrame | dict[str, Any]] = {}
    ev, n = _events(a.events().collect(), s)
    if n:
        parts["events.parquet"], out["archive_events"] = ev, n
    for name, frame in (("viewers", a.viewers()), ("transitions", a.transitions()), ("followups", a.followups())):
        df, n = _rows_out(frame.collect(), s)
        if n:
            parts[f"{name}.parquet"], out[f"archive_{name}"] = df, n
    raw = a.redis_data()
    if raw is not None:
        df, n = scrub_dumps(r, shop, room, raw, s)
        if n:
            parts["redis.parquet"], out["archive_redis_records"] = df, n
    if not parts:
        return out
    m = write_file_set(info.path, shop, room, parts, _summary(a.info, parts))
    _follow_generation(r, shop, room, info.generation, int(m["generation"]))
    out["archive_rooms"] += 1
    return out


def _summary(info: ArchiveInfo, parts: dict[str, Any]) -> dict[str, Any]:
    """The manifest's summary: the show's numbers as archived; the row counts of the tables changed."""
    s = dict(json.loads((info.path / "manifest.json").read_text(encoding="utf-8"))["summary"])
    if "viewers.parquet" in parts:
        s["viewers"] = parts["viewers.parquet"].height
    if "followups.parquet" in parts:
        s["tasks"] = parts["followups.parquet"].height
    return s


def _follow_generation(r: redis.Redis, shop: str, room: str, old: int, new: int) -> None:
    """The room hash names the generation whose ``redis.parquet`` a late event reopens the room from
    (``scoring.reopen``): the new one, where it named the one replaced."""
    rk = keys.room(shop, room)
    with r.pipeline(transaction=True) as p:  # a cluster client's default is no transaction
        try:
            p.watch(rk)
            if p.hget(rk, "archive_generation") == str(old).encode():
                p.multi()
                p.hset(rk, "archive_generation", new)
                p.execute()
        except redis.WatchError:
            pass  # archived again meanwhile: that generation is the one to follow


def scrub_archives(r: redis.Redis, cfg: Config, infos: Iterable[ArchiveInfo], s: Scrub) -> Counter[str]:
    out: Counter[str] = Counter()
    for info in infos:
        out.update(scrub_room(r, cfg, info, s))
    return out


def scrub_kind_ledger(cfg: Config, shop: str, s: Scrub) -> Counter[str]:
    """The shop's ledger of pruned kind tasks (``scoring.kind_prune``): the viewers' rows deleted
    (forget), or their ``said`` emptied (retention: kind tasks carry none today, so it finds none)."""
    if s.forget:
        return Counter(ledger_tasks=kind_prune.erase_viewers(cfg, shop, s.viewers))
    return Counter(ledger_said=kind_prune.clear_said(cfg, shop, s.viewers))
