"""The fans screen's reads: the shop's fans frame (cached per app process), one fan's record,
and the shop's tier counts over time.

The frame of every known viewer (``fanops.fans.fans_frame``) costs one pass over the viewers
hash, seconds at a million viewers; filtering and paging it costs milliseconds.  So the app
keeps one frame per shop (``FanCache``) and builds it again only when the shop has changed
(events applied, rules, viewers) and the frame is older than ``max_age_s``; the page says how
old it is and has a button to build it now.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import polars as pl
import redis

from fanops import keys, read
from fanops.config import Config
from fanops.errors import ArchiveError
from fanops.fans import fans_frame
from fanops.replies import to_int, to_str
from fanops.state import TIERS, TaskRec, record_fields, unpack_room_viewer, unpack_task
from review.archive_files import list_archived, read_room
from scoring import kind_prune
from scoring.explain import viewer_report

log = logging.getLogger(__name__)
MAX_AGE_S = 60.0  # a frame of a changed shop is built again after this long
DAY_MS = 86_400_000
TRANSITIONS_READ = 10_000  # stream entries per XRANGE call


@dataclass
class Cached:
    frame: pl.DataFrame
    built_at: float  # wall s
    build_s: float
    mark: tuple[int, int, int, int]  # what the shop's state was: applied, clock, rules, viewers


def _mark(r: redis.Redis, shop: str) -> tuple[int, int, int, int]:
    p = r.pipeline(transaction=False)
    p.hmget(keys.stats(shop), ["applied", "clock", "rules_applied"])
    p.hlen(keys.viewers(shop))
    (applied, clock, rules), n = p.execute()
    return to_int(applied), to_int(clock), to_int(rules), int(n)


@dataclass
class FanCache:
    """The fans frame per shop, for every session of one app process.  A frame of a shop that
    changed is built again in a thread while the sessions keep the one they have (``background``);
    only the first frame of a shop is waited for."""

    max_age_s: float = MAX_AGE_S
    background: bool = True
    shops: dict[str, Cached] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    building: dict[str, threading.Thread] = field(default_factory=dict)

    def _build(self, r: redis.Redis, shop: str, now: float) -> Cached:
        mark = _mark(r, shop)
        t0 = time.perf_counter()
        df = fans_frame(r, shop)
        c = Cached(df, now, time.perf_counter() - t0, mark)
        with self.lock:
            self.shops[shop] = c
            self.building.pop(shop, None)
        return c

    def get(self, r: redis.Redis, shop: str, *, fresh: bool = False, now: float | None = None) -> Cached:
        """The shop's frame: as cached while the shop is unchanged or the frame is young; else built
        again (in a thread while a frame is there to show, unless ``fresh``)."""
        now = time.time() if now is None else now
        with self.lock:
            c = self.shops.get(shop)
            busy = shop in self.building
        young = c is not None and c.frame.height > 0 and now - c.built_at < self.max_age_s  # empty: look now
        if c is not None and not fresh and (busy or young or _mark(r, shop) == c.mark):
            return c
        if c is None or fresh or not self.background:
            return self._build(r, shop, now)
        th = threading.Thread(target=self._build, args=(r, shop, now), name=f"fans-{shop}", daemon=True)
        with self.lock:
            if shop in self.building:
                return c
            self.building[shop] = th
        th.start()
        return c


# --- one fan ------------------------------------------------------------------
def _open_rooms(r: redis.Redis, shop: str, vid: str, rooms: list[str]) -> dict[str, dict[str, Any]]:
    """The viewer's record in each open room: orders and amounts, and the room's task for them."""
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.hget(keys.room_viewers(shop, rm), vid)
        p.hget(keys.tasks(shop, rm), vid)
    got = p.execute()
    out: dict[str, dict[str, Any]] = {}
    for i, rm in enumerate(rooms):
        rvb, tb = got[2 * i], got[2 * i + 1]
        rv = unpack_room_viewer(rvb) if rvb else None
        out[rm] = {"orders": list(rv.orders) if rv else [], "amount": dict(rv.amount) if rv else {},
                   "task": record_fields(unpack_task(tb)) if tb else None}
    return out


def _archived_rows(cfg: Config, shop: str, room: str, vid: str) -> dict[str, Any]:
    """The viewer's rows in an archived room: their orders and task, and their tier changes there."""
    try:
        a = read_room(cfg, shop, room, verify=False)
        v = a.viewers().filter(pl.col("viewer") == vid).select("orders", "spend").collect().to_dicts()
        f = a.followups().filter(pl.col("viewer") == vid).collect().to_dicts()
        t = a.transitions().filter(pl.col("viewer") == vid).collect().to_dicts()
    except (ArchiveError, OSError, pl.exceptions.PolarsError):
        return {"orders": None, "spend": None, "task": None, "transitions": []}
    return {"orders": v[0]["orders"] if v else None, "spend": v[0]["spend"] if v else None,
            "task": {k: x for k, x in f[0].items() if x is not None} if f else None, "transitions": t}


def _stream_transitions(r: redis.Redis, shop: str, vid: str | None = None) -> list[dict[str, Any]]:
    """The transitions stream's entries (all, or one viewer's), oldest first."""
    out: list[dict[str, Any]] = []
    start = "-"
    while True:
        got = cast("list[tuple[bytes, dict[bytes, bytes]]]",
                   r.xrange(keys.transitions(shop), start, "+", count=TRANSITIONS_READ))
        for sid, f in got:
            g = {to_str(k): to_str(v) for k, v in f.items()}
            if vid is None or g.get("viewer") == vid:
                out.append({"id": to_str(sid), "viewer": g.get("viewer", ""), "from": g.get("from", ""),
                            "to": g.get("to", ""), "ts": to_int(g.get("ts")), "cause": g.get("cause", ""),
                            "room": g.get("room", ""), "rules_version": to_int(g.get("rules_version"))})
        if len(got) < TRANSITIONS_READ:
            return out
        start = "(" + to_str(got[-1][0])


def kind_tasks(r: redis.Redis, cfg: Config, shop: str, vid: str, v: Any) -> list[tuple[str, TaskRec]]:
    """The viewer's tasks of the kinds besides lingered, as (id, task): those in Redis, then those
    pruned to the shop's ledger (``scoring.kind_prune``) that Redis no longer holds."""
    live = read.viewer_kind_tasks(r, shop, vid, v)
    have = {tid for tid, _ in live}
    try:
        pruned = kind_prune.ledger_tasks(cfg, shop, vid)
    except (OSError, pl.exceptions.PolarsError) as e:
        log.warning("the kind-task ledger of %s is not readable (%s): a fan's page shows the tasks in Redis only",
                    shop, e)
        pruned = []
    return live + [(tid, t) for tid, t in pruned if tid not in have]


def fan_record(r: redis.Redis, cfg: Config, shop: str, vid: str) -> dict[str, Any] | None:
    """Everything known of one fan: the ``viewer`` report (tier and its rule, rooms attended), each
    show with its orders and task, every tier change with its cause, and the messages sent."""
    rep = viewer_report(r, shop, vid, cfg)
    if rep is None:
        return None
    v = read.viewer_state(r, shop, vid)
    archived = set(read.archived_room_ids(r, shop).values())  # the state names some until it folds them
    open_rooms = sorted(rm for rm in (v.rooms if v is not None else {}) if rm not in archived)
    live = _open_rooms(r, shop, vid, open_rooms)
    changes = _stream_transitions(r, shop, vid)
    shows = []
    for x in rep["rooms"]:
        rm = x["room"]
        if x.get("archived") or rm in archived:
            a = _archived_rows(cfg, shop, rm, vid)
            changes += [{**t, "room": t.get("event_room") or rm} for t in a["transitions"]]
            tb = cast("bytes | None", r.hget(keys.tasks(shop, rm), vid))  # tasks stay until pruned
            task = record_fields(unpack_task(tb)) if tb else a["task"]
            shows.append({**x, "archived": True, "orders": a["orders"], "spend": a["spend"], "task": task})
        else:
            o = live.get(rm, {})
            shows.append({**x, "archived": False, "orders": len(o.get("orders", [])),
                          "spend": "; ".join(f"{amt:.2f} {cur}" for cur, amt in sorted(o.get("amount", {}).items())),
                          "task": o.get("task")})
    seen: set[str] = set()
    tier_changes = []
    for t in sorted(changes, key=lambda t: (t["ts"], t["id"])):
        if t["id"] not in seen:
            seen.add(t["id"])
            tier_changes.append({k: t.get(k) for k in ("ts", "from", "to", "cause", "room", "rules_version")})
    tasks = [{**s["task"], "room": s["room"], "kind": "lingered"} for s in shows if s.get("task")]
    tasks += [{**record_fields(t), "id": tid} for tid, t in kind_tasks(r, cfg, shop, vid, v)]
    sent = [t for t in tasks if t.get("state") == "sent"]
    return {**rep, "shows": shows, "tier_changes": tier_changes, "tasks": tasks, "sent": sent}


# --- the shop over time ---------------------------------------------------------
def tier_history(r: redis.Redis, cfg: Config, shop: str) -> pl.DataFrame:
    """day (ms, UTC midnight), tier, viewers: the shop's tier counts at the end of each day with a
    tier change, from today's counts walked back through the changes (the transitions stream and
    the archives' transitions.parquet): changes that left the stream unarchived shift only the
    days before them."""
    rows = _stream_transitions(r, shop)
    for info in list_archived(cfg, shop):
        try:
            t = read_room(cfg, shop, info.room, verify=False).transitions()
            rows += t.select("id", "from", "to", "ts").collect().to_dicts()
        except (ArchiveError, OSError, pl.exceptions.PolarsError):
            continue
    now = {t: to_int(x) for t, x in read.status(r, shop)["tiers"].items()}
    if not rows:
        return pl.DataFrame({"day": [], "tier": [], "viewers": []},
                            schema={"day": pl.Int64, "tier": pl.String, "viewers": pl.Int64})
    ch = pl.DataFrame({k: [x.get(k) for x in rows] for k in ("id", "from", "to", "ts")},
                      schema={"id": pl.String, "from": pl.String, "to": pl.String, "ts": pl.Int64}).unique("id")
    ch = ch.with_columns(day=(pl.col("ts") // DAY_MS) * DAY_MS)
    days = ch["day"].unique().sort(descending=True).to_list()
    delta = {t: dict(zip(*_net(ch, t), strict=True)) for t in TIERS}
    out: list[tuple[int, str, int]] = []
    counts = dict(now)
    for d in days:  # counts at the end of day d; then undo day d's changes for the day before
        for t in TIERS:
            out.append((d, t, counts[t]))
        for t in TIERS:
            counts[t] -= delta[t].get(d, 0)
    return pl.DataFrame(out, schema={"day": pl.Int64, "tier": pl.String, "viewers": pl.Int64},
                        orient="row").sort("day", "tier")


def _net(ch: pl.DataFrame, tier: str) -> tuple[list[int], list[int]]:
    """Per day, the viewers who entered ``tier`` minus those who left it."""
    g = ch.group_by("day").agg(((pl.col("to") == tier).cast(pl.Int64) - (pl.col("from") == tier).cast(pl.Int64))
                               .sum().alias("n"))
    return g["day"].to_list(), g["n"].to_list()
