"""Archiving is a snapshot, never a tombstone: a late event of an archived show opens it again.

Archiving keeps the room's raw Redis data in its archive (``redis.parquet``, ``snapshot``): the
DUMP of each of its keys (viewer records, presence, per-minute counts, order ids, host feeds) and
its entries in the shop-wide sorted sets (the lurk and late-window indexes, and the shop-clock
index over the show's span).  A scorer that meets a late event of an archived room, one the
archive does not hold (a repeat is a repeat: ``scoring.archive.archived_repeats``), calls
``reopen_room`` before scoring it: one script (``lua/reopen.lua``) puts that data back exactly as it
was removed, brings the room back into the state of each of its viewers whose state had folded it
(``fanops.state.fold``: its first and last ts again, the other archived rooms' firsts and latest
ts recomputed from their archives, and the consent events the fold had cut), and clears the
room's ``archived`` mark.  The event is then applied like any other; the idle pass archives the
room again, a new generation merging the previous one's events with the new ones.

Opening it also gives the room's dedupe table (gone with its raw data) its archive's event ids
back, so that the consumer knows a resend of them again, and keeps in the room hash
(``reopen_marks``) each stream's last entry at that moment: while an entry up to it is unapplied
(accepted while the room was archived), the room's events are still checked against its
archive's ids (``scoring.late.still_checked``), so that a resend applied before archiving stays a
repeat.  The room's number stays in ``keys.reopened`` until it is archived again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import msgspec
import polars as pl
import redis

from fanops import keys, read
from fanops.config import Config
from fanops.errors import ArchiveError
from fanops.ingest import dedupe_record
from fanops.replies import str_keys, to_str
from fanops.schema import Event
from fanops.scripts import script_source
from fanops.state import (
    Consent,
    ViewerState,
    pack,
    pack_firsts,
    pack_runs,
    packed_past_numbers,
    past_numbers,
    unpack_viewer,
)
from review.archive_files import REDIS_SCHEMA, read_room
from scoring.merge import CONSENT_KEEP

log = logging.getLogger(__name__)

FEEDS = ("greet", "thank", "questions")
CHUNK = 2000
DEDUPE_CHUNK = 5000  # archive event ids put back into the dedupe table per call
TRIES = 20  # a warning every this many conflicts in a row (a viewer written by another scorer meanwhile)


def dumped_keys(shop: str, room: str) -> list[str]:
    """The room's keys whose DUMP the archive keeps (the dedupe table is not among them: the
    archive's event ids take its place)."""
    return [keys.room_viewers(shop, room), keys.present(shop, room), keys.room_minutes(shop, room),
            keys.room_orders(shop, room), *(keys.room_feed(shop, room, k) for k in FEEDS)]


def snapshot(r: redis.Redis, shop: str, room: str, viewers: list[str], first_ts: int, clock: int) -> pl.DataFrame:
    """The room's raw Redis data, as ``redis.parquet`` keeps it (``REDIS_SCHEMA``)."""
    rows: dict[str, list[Any]] = {k: [] for k in REDIS_SCHEMA}

    def add(kind: str, key: str, payload: bytes | None = None, member: bytes | None = None,
            score: float | None = None) -> None:
        for k, x in (("kind", kind), ("key", key), ("payload", payload), ("member", member), ("score", score)):
            rows[k].append(x)

    for key in dumped_keys(shop, room):
        got = r.dump(key)
        if got is not None:
            add("dump", key, payload=got)
    by_part: dict[int, list[str]] = {}
    for v in viewers:
        by_part.setdefault(keys.part_of(v), []).append(keys.pair(room, v))
    for part, members in by_part.items():
        for zkey in (keys.lurk(shop, part), keys.late_window(shop, part)):
            for i in range(0, len(members), CHUNK):
                chunk = members[i:i + CHUNK]
                for m, sc in zip(chunk, r.zmscore(zkey, chunk), strict=True):
                    if sc is not None:
                        add("zset", zkey, member=m.encode(), score=sc)
    for zkey in (keys.clock_min(shop), keys.clock_max(shop)):
        for mb, sc in cast("list[tuple[bytes, float]]", r.zrangebyscore(zkey, first_ts, clock, withscores=True)):
            add("zset", zkey, member=mb, score=sc)
    return pl.DataFrame(rows, schema=REDIS_SCHEMA)


# --- the viewers' states: the room back out of their folded past --------------------------------
def _spans(cfg: Config, shop: str, nos: Iterable[int], room_ids: dict[int, str],
           vids: list[str]) -> dict[int, dict[str, tuple[int, int]]] | None:
    """For each archived room number of ``nos``: viewer -> (first ts, last ts) there, of ``vids``;
    None if an archive cannot be read (the states then cannot be brought back exactly)."""
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for no in nos:
        rm = room_ids.get(no)
        if rm is None:
            return None
        try:
            df = (read_room(cfg, shop, rm, verify=False).viewers().filter(pl.col("viewer").is_in(vids))
                  .select("viewer", "first_ts", "last_ts").collect())
        except ArchiveError as e:
            log.warning("archive of room %s of %s not readable (%s)", rm, shop, e)
            return None
        out[no] = {v: (f, la) for v, f, la in df.iter_rows()}
    return out


def _consents(cfg: Config, shop: str, rooms: list[str], vids: list[str]) -> dict[str, list[Consent]]:
    """The consent events of ``vids`` in the archived ``rooms`` (what ``fold`` may have cut)."""
    out: dict[str, list[Consent]] = {}
    for rm in rooms:
        with contextlib.suppress(ArchiveError):
            df = (read_room(cfg, shop, rm, verify=False).events()
                  .filter((pl.col("type") == "consent") & pl.col("viewer").is_in(vids))
                  .select("viewer", "ts", "id", "dm").collect())
            for v, ts, i, dm in df.iter_rows():
                out.setdefault(v, []).append(Consent(ts, i, bool(dm)))
    return out


Pick = Callable[[str, int, tuple[int, int]], bool]  # (viewer, room number, its span there) -> unfold it?


def unfold(cfg: Config, shop: str, states: dict[str, ViewerState], room_ids: dict[int, str], pick: Pick) -> list[str]:
    """Bring the archived rooms that ``pick`` names back into ``rooms`` of each state, out of its
    folded past (``fanops.state.fold``): their first and last ts again (from their archives), the
    past of the rooms left folded recomputed exactly from theirs, and the consent events the fold
    had cut.  Changes ``states`` in place; returns the viewers changed.  Where an archive cannot
    be read nothing is changed (and it is logged): the fold is then what the rules read, as before."""
    nos = sorted({n for s in states.values() for n in past_numbers(s)})
    if not nos:
        return []
    vids = list(states)
    spans = _spans(cfg, shop, nos, room_ids, vids)
    if spans is None:
        log.warning("viewers of %s keep their archived rooms folded: an archive is not readable", shop)
        return []
    picked: dict[str, list[int]] = {}
    for vid, s in states.items():
        got = [n for n in past_numbers(s) if vid in spans[n] and pick(vid, n, spans[n][vid])]
        if got:
            picked[vid] = got
    rooms = sorted({n for got in picked.values() for n in got})
    consents = _consents(cfg, shop, [room_ids[n] for n in rooms], list(picked))
    for vid, got in picked.items():
        s = states[vid]
        rest = [n for n in past_numbers(s) if n not in got]
        for n in got:
            s.rooms[room_ids[n]] = list(spans[n][vid])
        kept = [spans[n][vid] for n in rest if vid in spans[n]]
        s.past = pack_firsts([f for f, _ in kept]) if rest else []
        s.past_last = max((la for _, la in kept), default=-1) if rest else -1
        s.past_nos = pack_runs(rest) if rest else []
        known = {(c.ts, c.id) for c in s.consents}
        s.consents = sorted([*s.consents, *(c for c in consents.get(vid, []) if (c.ts, c.id) not in known)],
                            key=lambda c: (c.ts, c.id))
        del s.consents[: max(0, len(s.consents) - CONSENT_KEEP)]
    return list(picked)


def unfold_for_events(cfg: Config, shop: str, blobs: dict[str, bytes | None], events: list[Event],
                      room_ids: dict[int, str]) -> dict[str, bytes]:
    """Before a batch is scored: the viewers with an event earlier than the end of an archived room
    they attended (a late event of a show opened again) get those rooms back in ``rooms``, so that
    the rules see them whole (that room's ``new_viewers`` and ``reactivated`` may change).  Returns
    the new blobs of the viewers changed (the scorer scores those, and compares-and-sets against the
    blobs read)."""
    first: dict[str, int] = {}
    for ev in events:
        vid = ev.viewer.id
        first[vid] = min(first.get(vid, ev.ts), ev.ts)
    states = {}
    for vid, t in first.items():
        b = blobs.get(vid)
        if b:
            s = unpack_viewer(b)
            if s.past_nos and s.past_last >= t:
                states[vid] = s
    if not states:
        return {}
    changed = unfold(cfg, shop, states, room_ids, lambda vid, _no, span: span[1] >= first[vid])
    return {vid: pack(states[vid]) for vid in changed}


# --- opening the room again ----------------------------------------------------------------------
def _states(r: redis.Redis, shop: str, vids: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i in range(0, len(vids), CHUNK):
        got = cast("list[bytes | None]", r.hmget(keys.viewers(shop), vids[i:i + CHUNK]))
        out.update((v, b) for v, b in zip(vids[i:i + CHUNK], got, strict=True) if b)
    return out


def _viewer_writes(r: redis.Redis, cfg: Config, shop: str, room: str, no: int, vids: list[str],
                   room_ids: dict[int, str]) -> list[list[Any]]:
    """[vid, old blob, new blob] for each viewer of the room whose state had folded it."""
    old = _states(r, shop, vids)
    # only the viewers whose state has folded the room (most of a big show's never came back): found
    # without unpacking every state
    states = {v: unpack_viewer(b) for v, b in old.items() if no in packed_past_numbers(b)}
    changed = unfold(cfg, shop, states, {**room_ids, no: room}, lambda _v, n, _span: n == no)
    return [[v, old[v], pack(states[v])] for v in changed]


def _wire(gen: int, room: str, no: int, data: pl.DataFrame,
          writes: list[list[Any]]) -> tuple[dict[str, Any], list[str], list[bytes]]:
    """``reopen.lua``'s ARGV[1] map, the keys it names (KEYS[6 + S] on) and its binary arguments
    (ARGV[2] on: the script's msgpack reader takes no bin type)."""
    names = list(dict.fromkeys(data["key"].to_list()))
    index = {k: i + 6 + keys.PARTITIONS for i, k in enumerate(names)}
    blobs: list[bytes] = []

    def arg(b: bytes) -> int:
        blobs.append(b)
        return len(blobs) + 1

    restore, zadd = [], []
    for kind, k, payload, member, sc in data.select("kind", "key", "payload", "member", "score").iter_rows():
        if kind == "dump":
            restore.append([index[k], arg(payload)])
        else:
            zadd.append([index[k], sc, arg(member)])
    wire = {"gen": gen, "room": room, "no": no, "now": int(time.time() * 1000),
            "viewers": [[arg(v.encode()), arg(old), arg(new)] for v, old, new in writes],
            "restore": restore, "zadd": zadd,
            "streams": keys.PARTITIONS}
    return wire, names, blobs


_REV = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))  # each byte's bits in reverse


def fill_order(rec: bytes) -> int:
    """A dedupe record's place in a fill: the 32 bits of its bucket hash (``dd_h32``, its first 4
    bytes) read from the lowest. A bucket is a range of the hash's low bits, so in this order each
    bucket's records come together, whatever the table's size."""
    return (_REV[rec[3]] << 24) | (_REV[rec[2]] << 16) | (_REV[rec[1]] << 8) | _REV[rec[0]]


def fill_dedupe(r: redis.Redis, shop: str, room: str, ids: list[str], ttl: int) -> int:
    """Put the archive's event ids back into the room's dedupe table, ``DEDUPE_CHUNK`` a call: a
    show of 600,000 events held Redis for 2.4 s in one call (bench/reopen.py). Before the room opens
    they are harmless: they are its applied events, so a resend the consumer refuses for them is a
    repeat, counted as one, as the scorer counts it for an archived room. Returns the ids new to it.

    The table grows towards its final size first, a bounded step a call, and the records go in
    bucket by bucket (``lua/dedupe_fill.lua``): one SADD a bucket a call, not one a record."""
    script = r.register_script(script_source("fanops", "dedupe") + script_source("scoring", "dedupe_fill"))
    recs = sorted((dedupe_record(x) for x in ids), key=fill_order)
    new = 0
    for i in range(0, len(recs), DEDUPE_CHUNK):
        new += int(script(keys=[keys.seen(shop, room)], args=[ttl, len(recs) - i, *recs[i:i + DEDUPE_CHUNK]]))
    return new


def reopen_room(r: redis.Redis, cfg: Config, shop: str, room: str) -> bool:
    """Open the archived ``room`` again (see the module doc).  Returns False where it cannot be
    done: its archive unreadable or written before it kept the room's Redis data (the late events
    are then dropped and counted, as before); True once the room is open (by this call or another)."""
    script = r.register_script(script_source("scoring", "reopen"))
    rk = keys.room(shop, room)
    filled = -1  # the archive generation whose ids are in the dedupe table
    for attempt in itertools.count(1):
        h = {k: to_str(x) for k, x in str_keys(cast("dict[bytes, bytes]", r.hgetall(rk))).items()}
        if "archived" not in h:
            return True
        try:
            a = read_room(cfg, shop, room, verify=False)
        except ArchiveError as e:
            log.warning("room %s of %s cannot be opened again: its archive is not readable (%s)", room, shop, e)
            return False
        data = a.redis_data()
        # later generations than the one archiving wrote (the follow-ups brought up to date) carry its data over
        if data is None or a.info.generation < int(h.get("archive_generation") or 0):
            log.warning("room %s of %s cannot be opened again: its archive (generation %d) does not hold its "
                        "Redis data", room, shop, a.info.generation)
            return False
        if filled != a.info.generation:  # first: the viewers read next are compared-and-set by the script
            fill_dedupe(r, shop, room, a.events().select("id").collect()["id"].to_list(), cfg.dedupe_ttl_s)
            filled = a.info.generation
        no = int(h["no"])
        vids = a.viewers().select("viewer").collect()["viewer"].to_list()
        room_ids = read.room_ids(cast("dict[bytes, bytes]", r.hgetall(keys.room_nos(shop))))
        writes = _viewer_writes(r, cfg, shop, room, no, vids, room_ids)
        wire, names, blobs = _wire(int(h["archive_generation"]), room, no, data, writes)
        got = script(keys=[rk, keys.viewers(shop), keys.stats(shop), keys.room_nos(shop), keys.reopened(shop),
                           *keys.streams(shop), *names],
                     args=[msgspec.msgpack.encode(wire), *blobs])
        verdict = got[0].decode()
        if verdict == "ok":
            log.info("room %s of %s opened again by a late event (archive generation %d; %d viewers' states "
                     "brought back)", room, shop, a.info.generation, len(writes))
            return True
        if verdict == "open":
            return True
        # "conflict": a viewer of the room changed since it was read (another scorer); "moved": archived
        # again meanwhile. Read again: the late event waits, it is never dropped for this
        if attempt % TRIES == 0:
            log.warning("room %s of %s: opening it again conflicted %d times in a row (%s): still trying",
                        room, shop, attempt, verdict)
        time.sleep(min(0.2, 0.001 * 2 ** min(attempt, 8)))
    raise AssertionError("unreachable")  # itertools.count() never ends
