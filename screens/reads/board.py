"""Reads for the app's screens: the live board, the host screen and the follow-up queue.

Every read here is a few pipelined counter and bounded-list reads, never a
scan of viewers or tasks, so that a page may call it every second.  The pure
helpers (``tier_change``, ``events_rate``, ``lag_growing``, ``silent_for``,
``host_items`` ...) take plain data and are tested without Redis.

The board keeps a little history of its own, written by whichever page
refreshes first, at most once per ``SNAP_EVERY_S`` seconds per shop and per
room (a ``SET NX PX`` guard), so it costs the same with one or twenty tabs open:

- ``fo:{shop}:board:snap``: capped LIST (newest first, ``SNAP_KEEP`` entries) of
  JSON ``{"at": wall s, "applied", "accepted", "lag", "frames", "tiers": {tier: n}}``.
  It gives the shop's tier change over 5 minutes, "lag growing" and "feed silent".
- ``fo:{shop}:board:rsnap:<room>``: the same for one room,
  ``{"at", "clock", "ev": events in the room, "present", "t": {tier: n}}``: the
  room's tier change and events/s.

Both expire a day after their last write (the chart's per-minute joins, orders, events and
viewers present are the scorer's, in ``keys.room_minutes``); the write guards
are ``fo:{shop}:board:guard`` and ``fo:{shop}:board:guard:<room>``.  (These key builders
belong in ``fanops.keys``; they are here until they move.)
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from fanops import keys, read, rules_store
from fanops.queue import Task, _task_from_rec, finish, read_tasks, split_task_id
from fanops.replies import str_keys, to_float, to_int, to_str
from fanops.rules_settings import MINUTE, RuleSettings
from fanops.state import TASK_STATES, TIERS
from fanops.templates import clean_text

SNAP_EVERY_S = 10.0
SNAP_KEEP = 60  # 10 minutes at one entry per 10 s
SNAP_TTL_S = 86_400
CHANGE_WINDOW_S = 300.0  # "change over the last 5 minutes"
LIVE_MS = 5 * MINUTE  # a room is live if its last event is this recent (wall clock)
SILENT_WARN_S = 30.0
LAG_WINDOW_S = 30.0
LAG_GROWTH_MIN = 500
DEAD_WARN_MIN = 10
TRANSITIONS_READ = 200
TRANSITIONS_KEEP = 12
NAME_CHARS = 40
TEXT_CHARS = 200
_CURRENCY = re.compile(r"[A-Z]{3}")


def wall_clock() -> float:
    """Seconds since the epoch; tests replace it to pin the board's notion of now."""
    return time.time()


# --- the board's own keys ---------------------------------------------------
def snap_key(shop: str) -> str:
    return f"{keys.tag(shop)}:board:snap"


def room_snap_key(shop: str, room: str) -> str:
    return f"{keys.tag(shop)}:board:rsnap:{keys.esc(room)}"


def snap_guard_key(shop: str, room: str | None = None) -> str:
    return f"{keys.tag(shop)}:board:guard" + (f":{keys.esc(room)}" if room is not None else "")


# --- small conversions ------------------------------------------------------








def _snaps(raw: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for b in raw:
        try:
            s = json.loads(b)
        except ValueError:
            continue
        if isinstance(s, dict) and isinstance(s.get("at"), int | float):
            out.append(s)
    return out


# --- rooms ------------------------------------------------------------------
@dataclass(frozen=True)
class RoomRef:
    id: str
    last_ts: int
    live: bool


def room_list(r: redis.Redis, shop: str, now_ms: int, limit: int = 50) -> list[RoomRef]:
    """The shop's rooms, most recently active first; ``live``: an event in the last 5 minutes."""
    rows: Any = r.zrevrange(keys.rooms(shop), 0, limit - 1, withscores=True)
    return [RoomRef(to_str(m), int(s), now_ms - int(s) <= LIVE_MS) for m, s in rows]


def shops(r: redis.Redis) -> list[str]:
    members: Any = r.smembers(keys.shops())
    return sorted(to_str(s) for s in members)


# --- pure helpers -----------------------------------------------------------
def conversion(buyers: int, unique: int) -> float | None:
    """Buyers per unique viewer, or None when nobody came."""
    return buyers / unique if unique > 0 else None


def _base_snapshot(snaps: list[dict[str, Any]], now: float, window: float) -> dict[str, Any] | None:
    """The newest snapshot at least ``window`` old, else the oldest one at least 30 s old."""
    for s in snaps:  # newest first
        if now - s["at"] >= window - 1:
            return s
    older = [s for s in snaps if now - s["at"] >= 30]
    return older[-1] if older else None


def tier_change(snaps: list[dict[str, Any]], now: float, current: dict[str, int],
                field_name: str = "tiers", window: float = CHANGE_WINDOW_S) -> tuple[dict[str, int] | None, float]:
    """Each tier's change since the snapshot ``window`` seconds ago (or the oldest one, if the
    history is shorter), and the span it covers; ``(None, 0)`` with under 30 s of history."""
    base = _base_snapshot(snaps, now, window)
    if base is None or not isinstance(base.get(field_name), dict):
        return None, 0.0
    before = base[field_name]
    return {t: current.get(t, 0) - to_int(before.get(t)) for t in TIERS}, now - base["at"]


def events_rate(snaps: list[dict[str, Any]], now: float, total_now: int, field_name: str = "ev",
                min_age: float = 5.0) -> float | None:
    """Events per second since the newest snapshot at least ``min_age`` old (None: no such snapshot)."""
    for s in snaps:
        age: float = now - s["at"]
        if age >= min_age and field_name in s:
            return max(0.0, (total_now - to_int(s[field_name])) / age)
    return None


def lag_growing(snaps: list[dict[str, Any]], now: float, lag_now: int, window: float = LAG_WINDOW_S,
                min_growth: int = LAG_GROWTH_MIN) -> bool:
    """True if the scorer lag never fell over the last ``window`` seconds and grew by ``min_growth``."""
    pts = sorted((s["at"], to_int(s.get("lag"))) for s in snaps if 0 < now - s["at"] <= window + SNAP_EVERY_S)
    pts.append((now, lag_now))
    if len(pts) < 3 or pts[-1][0] - pts[0][0] < window * 2 / 3:
        return False
    rising = all(b[1] >= a[1] for a, b in zip(pts, pts[1:], strict=False))
    return rising and pts[-1][1] - pts[0][1] >= min_growth


def silent_for(snaps: list[dict[str, Any]], now: float, frames_now: int | None) -> float | None:
    """Seconds for which the consumers' frame count has not moved (a lower bound); None: no consumer."""
    if frames_now is None:
        return None
    since = now
    for s in snaps:  # newest first
        if s.get("frames") != frames_now:
            break
        since = s["at"]
    return now - since


def dead_last_minute(this_minute: int, last_minute: int, now: float) -> int:
    """Dead letters in the last 60 s, from the per-minute counters (the older minute pro rata)."""
    into = (now % 60) / 60
    return int(round(this_minute + last_minute * (1 - into)))


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


# --- health -----------------------------------------------------------------
@dataclass
class Health:
    consumers: int = 0
    connected: bool = False
    scorers: int = 0
    lag: int = 0
    lag_growing: bool = False
    silent_s: float | None = None
    dead_last_minute: int = 0
    problems: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (i18n key, params)

    @property
    def ok(self) -> bool:
        return not self.problems


def judge_health(h: Health, accepted_per_s: float | None) -> Health:
    """Fill ``h.problems`` with what an operator should be warned about, most serious first."""
    p = h.problems
    p.clear()
    if h.consumers == 0:
        p.append(("health.no_consumer", {}))
    elif not h.connected:
        p.append(("health.disconnected", {}))
    elif h.silent_s is not None and h.silent_s >= SILENT_WARN_S:
        p.append(("health.silent", {"s": int(h.silent_s)}))
    if h.scorers == 0 and h.lag > 0:
        p.append(("health.no_scorer", {"lag": h.lag}))
    elif h.lag_growing:
        p.append(("health.lag_growing", {"lag": h.lag}))
    accepted_min = (accepted_per_s or 0.0) * 60
    if h.dead_last_minute >= DEAD_WARN_MIN and h.dead_last_minute >= 0.01 * (h.dead_last_minute + accepted_min):
        p.append(("health.dead", {"n": h.dead_last_minute}))
    return h


def heartbeat_keys(r: redis.Redis, kind: str, force: bool = False) -> list[bytes]:
    """The heartbeat keys of one kind of process, from the heartbeat index (no scan)."""
    return [k.encode() for k in read.heartbeat_keys(r, kind)]


def _beats(raw: list[bytes | None]) -> list[dict[str, Any]]:
    out = []
    for b in raw:
        if not b:
            continue
        try:
            d = json.loads(b)
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


# --- the live board -----------------------------------------------------------
@dataclass
class Board:
    shop: str
    room: str
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
    health: Health = field(default_factory=Health)
    rules_version: int = 0
    known: bool = True  # False: the room has no counters at all


def read_board(r: redis.Redis, shop: str, room: str, now: float | None = None,
               record: bool = True) -> Board:
    """The live board's numbers for one room, in two or three pipelined round trips.

    ``record``: also write the board's snapshot history (at most once per 10 s, see module doc).
    """
    now = wall_clock() if now is None else now
    consumer_keys = heartbeat_keys(r, "consumer")
    scorer_keys = heartbeat_keys(r, "scorer")
    minute = int(now // 60)
    p = r.pipeline(transaction=False)
    p.hgetall(keys.stats(shop))
    p.hgetall(keys.tiers(shop))
    p.hgetall(keys.room(shop, room))
    p.hmget(keys.rules(shop), ["present_minutes", "version"])
    p.zscore(keys.rooms(shop), room)
    p.lrange(snap_key(shop), 0, SNAP_KEEP - 1)
    p.lrange(room_snap_key(shop, room), 0, SNAP_KEEP - 1)
    p.mget([keys.dead_minute(minute), keys.dead_minute(minute - 1)])
    p.hget(keys.room_minutes(shop, room), f"e:{minute - 1}")  # events/s before the board has history
    if consumer_keys:
        p.mget(consumer_keys)
    if scorer_keys:
        p.mget(scorer_keys)
    res = p.execute()
    st, tiers, rh = str_keys(res[0]), str_keys(res[1]), str_keys(res[2])
    present_minutes, version = res[3]
    last_ts = to_int(res[4])
    shop_snaps, room_snaps = _snaps(res[5]), _snaps(res[6])
    dead_now, dead_prev = (to_int(x) for x in res[7])
    last_minute_events = to_int(res[8])
    rest = res[9:]
    consumers = _beats(rest.pop(0)) if consumer_keys else []
    scorers = _beats(rest.pop(0)) if scorer_keys else []
    if not consumers:  # a restarted process has a new key: look again (throttled)
        heartbeat_keys(r, "consumer", force=True)
    if not scorers:
        heartbeat_keys(r, "scorer", force=True)

    clock = to_int(st.get("clock"))
    present_ms = int(to_float(present_minutes or RuleSettings.present_minutes) * MINUTE)
    p = r.pipeline(transaction=False)
    p.zcount(keys.present(shop, room), clock - present_ms, "+inf")
    if record:
        p.set(snap_guard_key(shop), 1, nx=True, px=int(SNAP_EVERY_S * 1000))
        p.set(snap_guard_key(shop, room), 1, nx=True, px=int(SNAP_EVERY_S * 1000))
    res2 = p.execute()
    present = int(res2[0]) if rh else 0

    b = Board(shop=shop, room=room, clock=clock, room_last_ts=last_ts, known=bool(rh))
    b.live = bool(last_ts) and now * 1000 - last_ts <= LIVE_MS
    b.present = present
    b.unique, b.new, b.reactivated = to_int(rh.get("unique")), to_int(rh.get("new")), to_int(rh.get("reactivated"))
    b.orders, b.buyers = to_int(rh.get("orders")), to_int(rh.get("buyers"))
    b.gmv = dict(sorted(((k[4:], to_float(v)) for k, v in rh.items()
                         if k.startswith("gmv:") and _CURRENCY.fullmatch(k[4:])),
                        key=lambda kv: -kv[1]))
    b.conversion = conversion(b.buyers, b.unique)
    b.room_events = sum(to_int(v) for k, v in rh.items() if k.startswith("n:"))
    b.room_tiers = {t: to_int(rh.get(f"t:{t}")) for t in TIERS}
    b.shop_tiers = {t: to_int(tiers.get(t)) for t in TIERS}
    b.followups = {s: to_int(rh.get(f"f:{s}")) for s in TASK_STATES}
    b.rules_version = to_int(version)
    b.room_change, b.change_span_s = tier_change(room_snaps, now, b.room_tiers, "t")
    b.shop_change, _ = tier_change(shop_snaps, now, b.shop_tiers)
    rate = events_rate(room_snaps, now, b.room_events)
    if rate is None:
        rate = last_minute_events / 60 if b.live else 0.0
    b.events_per_s = rate

    accepted, applied = to_int(st.get("accepted")), to_int(st.get("applied"))
    frames = sum(to_int(c.get("frames")) for c in consumers) if consumers else None
    h = Health(consumers=len(consumers), connected=any(c.get("connected") for c in consumers),
               scorers=sum(1 for s in scorers if s.get("running", True)), lag=max(0, accepted - applied))
    h.lag_growing = lag_growing(shop_snaps, now, h.lag)
    h.silent_s = silent_for(shop_snaps, now, frames)
    h.dead_last_minute = dead_last_minute(dead_now, dead_prev, now)
    b.health = judge_health(h, events_rate(shop_snaps, now, accepted, "accepted"))

    if record and (res2[1] or res2[2]):
        p = r.pipeline(transaction=False)
        if res2[1]:
            _push(p, snap_key(shop), {"at": round(now, 3), "applied": applied, "accepted": accepted,
                                      "lag": h.lag, "frames": frames, "tiers": b.shop_tiers})
        if res2[2] and rh:
            _push(p, room_snap_key(shop, room), {"at": round(now, 3), "clock": clock, "ev": b.room_events,
                                                 "present": present, "t": b.room_tiers})
        p.execute()
    return b


def _push(p: Any, key: str, entry: dict[str, Any]) -> None:
    p.lpush(key, json.dumps(entry, separators=(",", ":")))
    p.ltrim(key, 0, SNAP_KEEP - 1)
    p.expire(key, SNAP_TTL_S)


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


# --- the host screen --------------------------------------------------------------
GREET_MS, THANK_MS, QUESTION_MS = 5 * MINUTE, 15 * MINUTE, 10 * MINUTE
HOST_KEEP = 5
HOST_NAME_CHARS = 22
HOST_TEXT_CHARS = 90


@dataclass(frozen=True)
class HostItem:
    viewer: str
    name: str
    ts: int
    tag: str = ""  # greet: vip | back; thank: first | ""
    text: str = ""  # questions: the question


def host_items(raw: list[bytes], kind: str, clock: int, keep: int = HOST_KEEP) -> list[HostItem]:
    """A host list from its feed LIST: newest first, one line per viewer, old ones dropped."""
    max_age = {"greet": GREET_MS, "thank": THANK_MS, "questions": QUESTION_MS}[kind]
    rows: list[dict[str, Any]] = []
    for b in raw:
        try:
            d = json.loads(b)
        except ValueError:
            continue
        if isinstance(d, dict) and clock - to_int(d.get("ts")) <= max_age:
            rows.append(d)
    rows.sort(key=lambda d: -to_int(d.get("ts")))  # the list is in arrival order, not event order
    out: list[HostItem] = []
    seen: set[str] = set()
    for d in rows:
        vid = str(d.get("viewer", ""))
        if vid in seen:
            continue
        seen.add(vid)
        if kind == "greet":
            tag = "vip" if d.get("tier") == "active" else "back"
        elif kind == "thank":
            tag = "first" if d.get("first_time") else ""
        else:
            tag = ""
        text = clean_text(str(d.get("text", "")), HOST_TEXT_CHARS) if kind == "questions" else ""
        out.append(HostItem(vid, clean_text(str(d.get("name") or ""), HOST_NAME_CHARS), to_int(d.get("ts")), tag, text))
        if len(out) >= keep:
            break
    return out


@dataclass
class Host:
    room: str
    clock: int
    present: int
    orders: int
    greet: list[HostItem]
    thank: list[HostItem]
    questions: list[HostItem]
    known: bool


def read_host(r: redis.Redis, shop: str, room: str) -> Host:
    """The host screen: two numbers and three short lists, in two round trips."""
    n = 20
    p = r.pipeline(transaction=False)
    p.hget(keys.stats(shop), "clock")
    p.hmget(keys.room(shop, room), ["orders", "unique"])
    p.hget(keys.rules(shop), "present_minutes")
    for kind in ("greet", "thank", "questions"):
        p.lrange(keys.room_feed(shop, room, kind), 0, n - 1)
    clock_raw, (orders, unique), pm, greet, thank, questions = p.execute()
    clock = to_int(clock_raw)
    present_ms = int(to_float(pm or RuleSettings.present_minutes) * MINUTE)
    present = int(r.zcount(keys.present(shop, room), clock - present_ms, "+inf")) if unique else 0
    return Host(room, clock, present, to_int(orders), host_items(greet, "greet", clock),
                host_items(thank, "thank", clock), host_items(questions, "questions", clock), unique is not None)


# --- settings -----------------------------------------------------------------------
def rules_meta(r: redis.Redis, shop: str) -> tuple[str, int]:
    """Who saved the shop's rule settings last (operator text) and when (wall ms); ("", 0) if never."""
    res: Any = r.hmget(keys.rules(shop), ["changed_by", "changed_at"])
    return to_str(res[0]), to_int(res[1])


# --- the follow-up queue ---------------------------------------------------------------
QUEUE_SCAN = 200  # tasks read per state per refresh, highest priority first
OPEN = "open"  # pending and claimed together
STATE_FILTERS = (OPEN, *TASK_STATES)


def task_page(r: redis.Redis, shop: str, state: str = OPEN, *, tier: str | None = None,
              lang: str | None = None, sendable_now: bool = False, limit: int = 20,
              now_ms: int | None = None, scan: int = QUEUE_SCAN) -> list[Task]:
    """One page of tasks for the queue screen, by priority (ties: longer dwell, then viewer id).

    ``open`` is pending and claimed tasks together (a lapsed claim counts as pending), so an
    operator sees the tasks others hold.  Reads at most ``scan`` tasks per state.
    """
    now = now_ms if now_ms is not None else int(wall_clock() * 1000)
    states = ["pending", "claimed"] if state in (OPEN, "pending", "claimed") else [state]
    p = r.pipeline(transaction=False)
    for s in states:
        p.zrevrange(keys.queue(shop, s), 0, scan - 1)
    ids: list[str] = []
    for m in (m for ms in p.execute() for m in ms):
        tid = to_str(m)
        try:
            split_task_id(tid)
        except ValueError:
            continue  # not a task id of this version
        ids.append(tid)
    if not ids:
        return []
    hashes = read_tasks(r, shop, ids)
    settings, _ = rules_store.load(r, shop)
    templates = rules_store.load_templates(r, shop)
    out: list[Task] = []
    for tid, h in zip(ids, hashes, strict=True):
        if h is None:
            continue
        # the local time only if the filter needs it, the message only for the page shown (below)
        t = _task_from_rec(tid, h, now, settings, templates, local=sendable_now, message=False)
        if state != OPEN and t.state != state:
            continue
        if tier and t.tier != tier:
            continue
        if lang and not (t.lang or "").lower().startswith(lang.lower()):
            continue
        if sendable_now and not t.sendable_now:
            continue
        out.append(t)
    out.sort(key=lambda t: (-t.priority, -t.dwell_ms, t.viewer))
    return [finish(t, now, settings, templates, local=not sendable_now) for t in out[:limit]]

