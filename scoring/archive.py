"""Archiving an ended show: its file set written (``review.archive_files``), its raw data out of Redis.

Redis after archiving (one MULTI): the room hash gets ``archived`` (the shop clock at close),
``archived_at`` (wall ms) and ``archive_generation``; the room's raw data goes (``raw_keys``: the
room-viewer hash, the present zset, the dedupe set, the per-minute hash, the order-id set, the
feed lists) with its lurk entries (but those of tasks a sent follow-up holds back past the clock: the
scorer opens the room again when one comes due, ``scoring.late.reopen_held``); each partition stream
of the shop is trimmed (XTRIM MINID) up to the oldest entry still holding an event of a room not
archived, and never past an entry a scorer has not applied.  The room hash counters, the tasks, the
viewers and the transitions stream stay.
A room's events are read from the applied-event log (``scoring.eventlog``: the scorers write each
entry there before applying it and then trim it from the stream) and from what the streams still
hold (``scoring.archive_scan``); log files whose every room is archived are deleted once no writer
can append to them.  The tables are built by ``scoring.archive_frames`` (whose docstring says how
the derived viewer columns are chosen).
Operators keep working a show's follow-ups after it: ``refresh_followups`` brings their outcomes
into the archive (a generation holding only a new ``followups.parquet``), and ``prune_followups``
(opt-in) removes settled tasks of archived rooms.
The archive also keeps the room's raw Redis data (``redis.parquet``, ``scoring.reopen.snapshot``),
so that a late event opens the room again (``scoring.reopen``); the next archiving of it writes a
new generation merging the earlier one's events, transitions and settled tasks.  With its dedupe
set gone, a resent event of an archived room passes the consumer: the scorer knows it as a repeat
by the archive's ids (``archived_repeats``); opening the room again gives the dedupe set those ids
back (``scoring.late.still_checked`` says until when the scorer still checks).  A room is archived only once every
stream entry holding its events is applied; the ``archiving`` field of the room hash keeps two
processes from archiving one room at once (a dead holder's mark is taken over).  Several
machines archiving one shop need one shared data folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import polars as pl
import redis

from fanops import keys, read, replies, rules_store
from fanops.config import Config
from fanops.errors import ArchiveError as ArchiveError
from fanops.errors import NotFound, RoomNotReady
from fanops.read import status
from fanops.replies import to_int
from fanops.runtime.gcpause import gc_paused
from fanops.schema import EVENT_TYPES, Event
from fanops.state import FINAL_TASK_STATES, TIERS
from review.archive_files import (
    FORMAT,
    RoomArchive,
    list_archived,
    read_manifest,
    read_room,
    room_dir,
    write_file_set,
)
from scoring import eventlog, reopen
from scoring.archive_frames import events_frame, followups_frame, transitions_frame, viewers_frame
from scoring.archive_idle import IDLE_MS, idle_rooms, is_archived
from scoring.archive_scan import (
    CHUNK,
    Scan,
    orders_before,
    read_room_viewers,
    read_tasks,
    read_transitions,
    scan,
    unapplied,
)
from scoring.eventlog import stream_id_text

log = logging.getLogger(__name__)

LOCK_STALE_MS = 10 * 60_000  # an ``archiving`` mark older than this (wall) was left by a dead process
LATE_RETRIES = 3
FEEDS = ("greet", "thank", "questions")


# --- archiving ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveResult:
    """What ``archive_room`` wrote (or found written before) and trimmed."""

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
    with r.pipeline(transaction=True) as p:  # a cluster client's default is no transaction
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
    with r.pipeline(transaction=True) as p, contextlib.suppress(redis.WatchError):
        p.watch(rk)
        cur: Any = p.hget(rk, "archiving")
        if cur and cur.decode().startswith(token + ":"):
            p.multi()
            p.hdel(rk, "archiving")
            p.execute()


def _previous(cfg: Config, shop: str, room: str) -> RoomArchive | None:
    """The archive of a room opened again by a late event, whose next generation merges it."""
    try:
        return read_room(cfg, shop, room, verify=False)
    except ArchiveError as e:
        log.warning("room %s of %s was archived before, but its archive is not readable (%s): the new "
                    "generation holds only what the log and the streams still have", room, shop, e)
        return None


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
        guard = r.pipeline(transaction=True)
        sc = Scan(room, eventlog.LogReader(cfg.data_dir, shop))
        scan(r, shop, sc)
        for attempt in range(LATE_RETRIES):
            deadline = time.monotonic() + (wait_applied_s if attempt == 0 else max(wait_applied_s, 5.0))
            while unapplied(r, shop, sc):
                if time.monotonic() >= deadline:
                    raise RoomNotReady(f"room {room!r} of shop {shop!r} has events not yet applied by a scorer: "
                                       "start `python -m scoring run` (or wait for it) and try again")
                time.sleep(0.05)
            # what is written must be what goes: a change to the room's data from here to its removal
            # (an event applied, a task made by the time pass) fails the removal, to be archived again
            guard.reset()
            guard.watch(*reopen.dumped_keys(shop, room)[:4])
            with gc_paused():
                manifest, n_tasks, complete, viewers, held = _write(r, cfg, shop, room, sc, on_file_written)
            if not scan(r, shop, sc):  # nothing arrived for the room meanwhile
                break
            log.info("late events for room %s of %s arrived while archiving: writing it again", room, shop)
        trimmed = _drop_raw(r, guard, shop, room, token, sc, viewers, manifest, held)
    finally:
        guard.reset()
        _unlock(r, shop, room, token)
    trim_clock_index(r, shop)
    s = manifest["summary"]
    log.info("archived room %s of %s: %d events, %d viewers, generation %d, %d stream entries trimmed",
             room, shop, s["events"], s["viewers"], manifest["generation"], trimmed)
    return ArchiveResult(shop, room, room_dir(cfg, shop, room), manifest["generation"], s["events"],
                         s["viewers"], n_tasks, complete, trimmed)


def _write(r: redis.Redis, cfg: Config, shop: str, room: str, sc: Scan,
           on_file_written: Callable[[str], None] | None) -> tuple[dict[str, Any], int, bool, list[str], set[str]]:
    settings, version = rules_store.load(r, shop)
    st = status(r, shop, room)  # before anything is removed: the present zset is still there
    clock = st["clock"]
    p = r.pipeline(transaction=False)
    p.hgetall(keys.room(shop, room))
    p.zscore(keys.room_first(shop), room)
    p.zscore(keys.rooms(shop), room)
    rh, first, last = p.execute()
    rvs, vs = read_room_viewers(r, shop, room)
    tasks = read_tasks(r, shop, [room])[room]
    # an event the log holds twice (sent again after Redis lost its last second) is one event
    events = events_frame(sc.events, shop).unique("id", keep="first", maintain_order=True)
    prev = _previous(cfg, shop, room) if b"archive_generation" in rh else None
    if prev is not None:  # opened again by a late event: the earlier generation's events are in its archive
        events = pl.concat([prev.events().collect(), events]).unique("id", keep="first", maintain_order=True) \
            .sort("ts", "id")
    span = events.select(lo=pl.col("ts").min().fill_null(0), hi=pl.col("ts").max().fill_null(0)).row(0)
    first_ts = int(first) if first is not None else int(span[0])
    last_ts = int(last) if last is not None else int(span[1])
    earlier = orders_before(cfg, shop, room, sc.orders, {v: rv.first for v, rv in rvs.items()})
    states = {vid: h.get("state", "") for vid, h in tasks.items()}
    viewers = viewers_frame(room, rvs, vs, clock, settings, earlier, states)
    transitions = transitions_frame(room, read_transitions(r, shop, sc.first_id, set(rvs), first_ts, clock))
    followups = followups_frame(room, tasks)
    if prev is not None:
        transitions = pl.concat([prev.transitions().collect(), transitions]).unique("id", keep="last",
                                                                                   maintain_order=True)
        kept = prev.followups().filter(~pl.col("viewer").is_in(list(tasks))).collect()
        followups = pl.concat([kept, followups]).sort("viewer")
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
    raw = reopen.snapshot(r, shop, room, list(rvs), first_ts, clock)
    manifest = write_file_set(room_dir(cfg, shop, room), shop, room,
                              {"events.parquet": events, "viewers.parquet": viewers,
                               "transitions.parquet": transitions, "followups.parquet": followups,
                               "facts.json": facts, "redis.parquet": raw}, summary, on_file_written=on_file_written)
    # pairs whose task a sent follow-up held back: their lurk entries stay (past the clock, or due and
    # not yet taken by the scorer of their partition), and that scorer opens the room again for them
    held = {vid for vid, rv in rvs.items() if rv.held_by >= 0 and not rv.task and rv.first_order < 0}
    return manifest, followups.height, complete, list(rvs), held


def _trim_points(r: redis.Redis, shop: str, room: str, sc: Scan,
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


def _drop_raw(r: redis.Redis, p: Any, shop: str, room: str, token: str, sc: Scan, viewers: list[str],
              manifest: dict[str, Any], held: set[str]) -> int:
    """Remove the room's raw data in one transaction on ``p`` (a pipeline watching the room's keys
    since its files were written); its lurk entries go, but those of ``held`` viewers."""
    rk = keys.room(shop, room)
    cur: Any = r.hget(rk, "archiving")
    if not cur or not cur.decode().startswith(token + ":"):
        raise RoomNotReady(f"lost the archiving mark of room {room!r} of shop {shop!r} (another process took "
                           "it over): its files are written; run close-room again to remove its raw data")
    others = sorted({rm for pt in sc.parts for _, rooms in pt.entries for rm in rooms} - {room})
    q = r.pipeline(transaction=False)
    for rm in others:
        q.hexists(keys.room(shop, rm), "archived")
    done = {rm for rm, a in zip(others, q.execute() if others else [], strict=True) if a} | {room}
    cuts = _trim_points(r, shop, room, sc, done)
    # the room's shop-wide number, by which viewers' states keep it once archived (state.fold)
    no = to_int(cast("bytes | None", r.hget(rk, "no"))) or int(r.hincrby(keys.stats(shop), "room_no_seq", 1))
    p.multi()
    p.hset(rk, mapping={"archived": manifest["summary"]["clock"], "archived_at": int(time.time() * 1000),
                        "archive_generation": manifest["generation"], "no": no})
    p.hset(keys.room_nos(shop), str(no), room)
    p.hdel(rk, "archiving", "reopened_at", "reopen_marks")
    p.hdel(keys.reopened(shop), room)
    p.hincrby(keys.stats(shop), "archive_epoch", 1)  # the scorers read the archived rooms again
    p.delete(*raw_keys(shop, room), *read.seen_keys(r, shop, room))
    for i in range(0, len(viewers), CHUNK):
        by_part: dict[int, list[str]] = {}
        unheld: dict[int, list[str]] = {}
        for v in viewers[i:i + CHUNK]:
            m = keys.pair(room, v)
            by_part.setdefault(keys.part_of(v), []).append(m)
            if v not in held:
                unheld.setdefault(keys.part_of(v), []).append(m)
        for part, members in by_part.items():
            if part in unheld:
                p.zrem(keys.lurk(shop, part), *unheld[part])
            p.zrem(keys.late_window(shop, part), *members)
    for stream, cut in cuts:
        p.xtrim(stream, minid=stream_id_text(cut), approximate=False)
    try:
        res = p.execute()
    except redis.WatchError as e:
        raise RoomNotReady(f"room {room!r} of shop {shop!r} changed while it was being archived: "
                           "it is archived again at the next idle pass") from e
    # applied-event log files holding only archived rooms' events are no longer needed
    gone = eventlog.delete_files([f for f, rooms in sc.files.items() if rooms <= done])
    if gone:
        log.info("deleted %d applied-event log files of %s: every room in them is archived", gone, shop)
    return sum(int(x) for x in res[len(res) - len(cuts):]) if cuts else 0


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


def close_idle_rooms(r: redis.Redis, shop: str, cfg: Config, idle_ms: int = IDLE_MS,
                     stopping: Callable[[], bool] = lambda: False) -> list[str]:
    """Archive every idle room of the shop (see ``idle_rooms``), until ``stopping``; returns the rooms
    archived now.

    A room whose events are not all applied yet, or that another process is archiving, is left
    for a later call.  Safe to call from every worker: each room is archived once.
    """
    done = []
    for rm in idle_rooms(r, shop, idle_ms, cfg):
        if stopping():
            break
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
    for rm, tasks in read_tasks(r, shop, wanted).items():
        info = infos[rm]
        m = read_manifest(info.path)
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
    for rm, tasks in read_tasks(r, shop, rooms).items():
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


def archived_repeats(cfg: Config, shop: str, events: list[Event]) -> set[tuple[str, str]]:
    """The (room, id) of ``events`` (all of archived rooms) that the rooms' archives already hold:
    repeats, once the consumer's dedupe table of the room has gone with its raw data.  Read from
    each room's ``events.parquet`` (only the ids asked for); a room with no readable archive
    holds none."""
    by_room: dict[str, set[str]] = {}
    for ev in events:
        by_room.setdefault(ev.room, set()).add(ev.id)
    found: set[tuple[str, str]] = set()
    for room, ids in by_room.items():
        try:
            got = read_room(cfg, shop, room, verify=False).events().select("id").filter(
                pl.col("id").is_in(list(ids))).collect()
        except ArchiveError as e:
            log.warning("archive of room %s of %s not readable (%s): its late events cannot be checked for "
                        "repeats", room, shop, e)
            continue
        found.update((room, i) for i in got["id"].to_list())
    return found
