"""The live board's read: one room's numbers, tiers, chart and tier changes, and its health.

Every read here is a few pipelined counter and bounded-list reads, never a
scan of viewers or tasks, so that a page may call it every second.  The pure
helpers (``conversion``, ``transition_kind`` ...) take plain data and are tested
without Redis; so do those of the board's history (``screens.reads.history``) and
of its health panel (``screens.reads.health``).

``read_board`` only reads; the page then calls ``record_snapshots``, which adds to
the board's own history at most once per ``history.SNAP_EVERY_S`` per shop and per room.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import redis

from fanops import keys, read
from fanops.replies import str_keys, to_float, to_int
from fanops.rules_settings import MINUTE
from fanops.runtime import memory
from fanops.state import TASK_STATES, TIERS
from fanops.templates import clean_text
from screens.reads import history, rooms
from screens.reads.health import Health, assess, beats
from screens.reads.tiktok import TikTokTile, tiles

TRANSITIONS_READ = 200
TRANSITIONS_KEEP = 12
NAME_CHARS = 40
_CURRENCY = re.compile(r"[A-Z]{3}")


# --- pure helpers -----------------------------------------------------------
def conversion(buyers: int, unique: int) -> float | None:
    """Buyers per unique viewer, or None when nobody came."""
    return buyers / unique if unique > 0 else None


@dataclass(frozen=True)
class Transition:
    viewer: str
    name: str
    frm: str
    to: str
    ts: int
    cause: str
    kind: str  # first_order | back | active


def transition_kind(frm: str, to: str, cause: str) -> str | None:
    """The tier changes an operator wants to see live: a first order, a fan back, a fan gone active."""
    if cause == "time":
        return None
    if frm == "dormant" and to != "dormant":
        return "back"
    if frm == "new_fan" and to == "first_buyer":
        return "first_order"
    if frm in ("new_fan", "first_buyer") and to == "active":
        return "active"
    return None


def transitions_that_matter(entries: list[tuple[Any, dict[bytes, bytes]]], room: str,
                            keep: int = TRANSITIONS_KEEP) -> list[Transition]:
    out = []
    for _id, f in entries:
        d = {k.decode(): v.decode("utf-8", "replace") for k, v in f.items()}
        if d.get("room") != room:
            continue
        kind = transition_kind(d.get("from", ""), d.get("to", ""), d.get("cause", ""))
        if kind is None:
            continue
        out.append(Transition(d.get("viewer", ""), clean_text(d.get("name"), NAME_CHARS), d.get("from", ""),
                              d.get("to", ""), to_int(d.get("ts")), d.get("cause", ""), kind))
        if len(out) >= keep:
            break
    return out


def read_transitions(r: redis.Redis, shop: str, room: str) -> list[Transition]:
    """The newest tier changes that matter in the room (from the last 200 of the shop's)."""
    entries: Any = r.xrevrange(keys.transitions(shop), count=TRANSITIONS_READ)
    return transitions_that_matter(entries, room)


# --- the live board -----------------------------------------------------------
@dataclass
class Board:
    shop: str
    room: str
    at: float = 0.0  # the wall clock (s) it was read at
    clock: int = 0
    room_last_ts: int = 0
    live: bool = False
    present: int = 0
    unique: int = 0
    new: int = 0
    reactivated: int = 0
    orders: int = 0
    buyers: int = 0
    gmv: dict[str, float] = field(default_factory=dict)
    conversion: float | None = None
    events_per_s: float | None = None
    room_events: int = 0
    room_tiers: dict[str, int] = field(default_factory=dict)
    shop_tiers: dict[str, int] = field(default_factory=dict)
    room_change: dict[str, int] | None = None
    shop_change: dict[str, int] | None = None
    change_span_s: float = 0.0
    followups: dict[str, int] = field(default_factory=dict)
    accepted: int = 0  # the shop's events accepted and applied
    applied: int = 0
    health: Health = field(default_factory=Health)
    rules_version: int = 0
    known: bool = True  # False: the room has no counters at all
    tiktok: list[TikTokTile] = field(default_factory=list)  # the shop's TikTok LIVE sources


def _read_counters(r: redis.Redis, shop: str, room: str, minute: int) -> tuple[list[Any], list[Any], list[Any]]:
    """The board's first round trip: the counters, the board's history, the heartbeats of the
    consumers and of the scorers, as read."""
    beat_keys = [read.heartbeat_keys(r, "consumer"), read.heartbeat_keys(r, "scorer")]
    p = r.pipeline(transaction=False)
    p.hgetall(keys.stats(shop))
    p.hgetall(keys.tiers(shop))
    p.hgetall(keys.room(shop, room))
    p.hmget(keys.rules(shop), ["present_minutes", "version"])
    p.zscore(keys.rooms(shop), room)
    p.lrange(keys.board_snaps(shop), 0, history.SNAP_KEEP - 1)
    p.lrange(keys.board_room_snaps(shop, room), 0, history.SNAP_KEEP - 1)
    p.get(keys.dead_minute(minute))  # GETs, not MGET: a cluster client's pipeline takes no MGET
    p.get(keys.dead_minute(minute - 1))
    p.hget(keys.room_minutes(shop, room), f"e:{minute - 1}")  # events/s before the board has history
    for ks in beat_keys:
        for k in ks:
            p.get(k)  # not MGET: heartbeats sit in different slots of a Redis Cluster
    res = p.execute()
    got = iter(res[10:])
    consumers, scorers = ([next(got) for _ in ks] for ks in beat_keys)
    return [*res[:7], res[7:9], res[9]], consumers, scorers


def _memory(r: redis.Redis) -> memory.Memory | None:
    """The fullest primary that has a maxmemory (None: none has one, or INFO is not allowed to this user)."""
    ms = memory.read_allowed(r)
    return memory.fullest(ms) if ms is not None else None


def _room_counters(b: Board, rh: dict[str, bytes]) -> None:
    """Fill ``b`` from the room's counters hash (HGETALL, field names decoded)."""
    b.unique, b.new, b.reactivated = to_int(rh.get("unique")), to_int(rh.get("new")), to_int(rh.get("reactivated"))
    b.orders, b.buyers = to_int(rh.get("orders")), to_int(rh.get("buyers"))
    b.gmv = dict(sorted(((k[4:], to_float(v)) for k, v in rh.items()
                         if k.startswith("gmv:") and _CURRENCY.fullmatch(k[4:])),
                        key=lambda kv: -kv[1]))
    b.conversion = conversion(b.buyers, b.unique)
    b.room_events = sum(to_int(v) for k, v in rh.items() if k.startswith("n:"))
    b.room_tiers = {t: to_int(rh.get(f"t:{t}")) for t in TIERS}
    b.followups = {s: to_int(rh.get(f"f:{s}")) for s in TASK_STATES}


def read_board(r: redis.Redis, shop: str, room: str, now: float | None = None) -> Board:
    """The live board's numbers for one room, in two pipelined round trips (one if the room is unknown).

    Reads only: ``record_snapshots`` writes the board's history.
    """
    now = rooms.wall_clock() if now is None else now
    res, consumers, scorers = _read_counters(r, shop, room, int(now // 60))
    st, tiers, rh = str_keys(res[0]), str_keys(res[1]), str_keys(res[2])
    present_minutes, version = res[3]
    shop_snaps, room_snaps = history.parse(res[5]), history.parse(res[6])
    b = Board(shop=shop, room=room, at=now, clock=to_int(st.get("clock")), room_last_ts=to_int(res[4]),
              known=bool(rh), rules_version=to_int(version))
    if rh:
        since = b.clock - rooms.present_ms(present_minutes)
        b.present = int(r.zcount(keys.present(shop, room), since, "+inf"))
    b.live = bool(b.room_last_ts) and now * 1000 - b.room_last_ts <= rooms.LIVE_MS
    _room_counters(b, rh)
    b.shop_tiers = {t: to_int(tiers.get(t)) for t in TIERS}
    b.room_change, b.change_span_s = history.tier_change(room_snaps, now, b.room_tiers, "t")
    b.shop_change, _ = history.tier_change(shop_snaps, now, b.shop_tiers)
    rate = history.events_rate(room_snaps, now, b.room_events)
    b.events_per_s = rate if rate is not None else (to_int(res[8]) / 60 if b.live else 0.0)
    b.accepted, b.applied = to_int(st.get("accepted")), to_int(st.get("applied"))
    dead = (to_int(res[7][0]), to_int(res[7][1]))
    feeds = beats(consumers)
    b.health = assess(feeds, beats(scorers), b.accepted, b.applied, dead, shop_snaps, now, _memory(r))
    b.tiktok = tiles(feeds, shop)
    return b


def record_snapshots(r: redis.Redis, b: Board) -> None:
    """Add board ``b`` to the board's history of its shop and of its room (``screens.reads.history``),
    each at most once per ``SNAP_EVERY_S``: whichever page refreshes first writes it.  Not while
    Redis is full: the board, which says so, is shown all the same."""
    if b.health.memory is not None and b.health.memory.full:
        return
    try:
        _record(r, b)
    except redis.exceptions.OutOfMemoryError:
        return  # it filled since the read: the next refresh says so


def _record(r: redis.Redis, b: Board) -> None:
    guard_ms = int(history.SNAP_EVERY_S * 1000)
    p = r.pipeline(transaction=False)
    p.set(keys.board_guard(b.shop), 1, nx=True, px=guard_ms)
    p.set(keys.board_guard(b.shop, b.room), 1, nx=True, px=guard_ms)
    shop_due, room_due = p.execute()
    if not (shop_due or room_due):
        return
    at = round(b.at, 3)
    p = r.pipeline(transaction=False)
    if shop_due:
        history.push(p, keys.board_snaps(b.shop), {
            "at": at, "applied": b.applied, "accepted": b.accepted, "lag": b.health.lag,
            "frames": b.health.frames, "tiers": b.shop_tiers})
    if room_due and b.known:
        history.push(p, keys.board_room_snaps(b.shop, b.room), {
            "at": at, "clock": b.clock, "ev": b.room_events, "present": b.present, "t": b.room_tiers})
    p.execute()


# --- the chart ------------------------------------------------------------------
@dataclass
class Chart:
    minutes: list[int]  # minute numbers (ms // 60000) of the shop clock
    present: list[int | None]
    orders: list[int]
    joins: list[int]


def read_chart(r: redis.Redis, shop: str, room: str, end_ts: int, span_minutes: int = 90) -> Chart:
    """Per-minute viewers present, orders and joins over the last ``span_minutes`` of the room."""
    end = end_ts // MINUTE
    mins = list(range(end - span_minutes + 1, end + 1))
    p = r.pipeline(transaction=False)
    p.hmget(keys.room_minutes(shop, room), [f"{k}:{m}" for m in mins for k in ("o", "j", "e", "p")])
    counts4 = p.execute()[0]
    counts = [c for i, c in enumerate(counts4) if i % 4 != 3]
    pres = counts4[3::4]  # the scorer records the viewers present at each batch, by shop-clock minute
    first = next((i for i, m in enumerate(mins) if any(counts[3 * i:3 * i + 3]) or pres[i] is not None),
                 len(mins))
    out = Chart([], [], [], [])
    for i in range(first, len(mins)):
        out.minutes.append(mins[i])
        out.orders.append(to_int(counts[3 * i]))
        out.joins.append(to_int(counts[3 * i + 1]))
        out.present.append(to_int(pres[i]) if pres[i] is not None else None)
    return out
