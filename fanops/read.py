"""Reads for the CLIs and the app: a few hash reads and counts, never a scan."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from fanops import keys, replies, rules_store
from fanops.imported import profile_of, reach_of, unpack_imported
from fanops.replies import str_keys, to_int, to_str
from fanops.state import TASK_KINDS, TASK_STATES, TIERS, TaskRec, ViewerState, unpack_task, unpack_viewer

PROFILE_CHUNK = 2000


def status(r: redis.Redis, shop: str, room: str | None = None) -> dict[str, Any]:
    """The ``status`` object of spec/cli.md (v1.1: with ``tasks``, {kind: {state: count}} over the
    shop, from the queues' sizes)."""
    settings, _ = rules_store.load(r, shop)
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(keys.stats(shop))
    pipe.hget(keys.dead_stats(), "dead_letters")
    pipe.hgetall(keys.tiers(shop))
    pipe.zrange(keys.rooms(shop), 0, -1)
    if room is not None:
        pipe.hgetall(keys.room(shop, room))
    res = pipe.execute()
    st, dead, tiers = str_keys(res[0]), res[1], str_keys(res[2])
    accepted, applied = to_int(st.get("accepted")), to_int(st.get("applied"))
    clock = to_int(st.get("clock"))
    out: dict[str, Any] = {
        "shop": shop,
        "clock": clock,
        "lag": max(0, accepted - applied),
        "events_applied": applied,
        "duplicates": to_int(st.get("duplicates")),
        "dead_letters": to_int(dead),
        "tiers": {t: to_int(tiers.get(t)) for t in TIERS},
        # spec/tiers.md v1.1 "Follow-up kinds": lingered from the rooms' counters, the others
        # from their own (keys.kind_counts)
        "tasks": {"lingered": task_counts(r, shop, [to_str(m) for m in res[3]]), **kind_counts(r, shop)},
    }
    if room is not None:
        rh = str_keys(res[-1])
        present = r.zcount(keys.present(shop, room), clock - settings.present_ms, "+inf") if rh else 0
        out["room"] = {
            "id": room,
            "unique_viewers": to_int(rh.get("unique")),
            "present": int(present),
            "new_viewers": to_int(rh.get("new")),
            "reactivated": to_int(rh.get("reactivated")),
            "buyers": to_int(rh.get("buyers")),
            "orders": to_int(rh.get("orders")),
            "tiers": {t: to_int(rh.get(f"t:{t}")) for t in TIERS},
            "followups": {s: to_int(rh.get(f"f:{s}")) for s in TASK_STATES},
        }
    return out


def task_counts(r: redis.Redis, shop: str, rooms: list[str]) -> dict[str, int]:
    """Tasks per state over ``rooms``, from their counters (which stay when settled tasks of
    archived rooms leave Redis)."""
    p = r.pipeline(transaction=False)
    for rm in rooms:
        p.hmget(keys.room(shop, rm), [f"f:{s}" for s in TASK_STATES])
    out = dict.fromkeys(TASK_STATES, 0)
    for got in p.execute() if rooms else []:
        for s, v in zip(TASK_STATES, got, strict=True):
            out[s] += to_int(v)
    return out


def kind_counts(r: redis.Redis, shop: str) -> dict[str, dict[str, int]]:
    """Tasks per state of each kind besides lingered, over the whole shop."""
    p = r.pipeline(transaction=False)
    for k in TASK_KINDS[1:]:
        p.hmget(keys.kind_counts(shop, k), [f"f:{s}" for s in TASK_STATES])
    return {k: {s: to_int(v) for s, v in zip(TASK_STATES, got, strict=True)}
            for k, got in zip(TASK_KINDS[1:], p.execute(), strict=True)}


def viewer_kind_tasks(r: redis.Redis, shop: str, vid: str, v: ViewerState | None) -> list[tuple[str, TaskRec]]:
    """The viewer's tasks of the kinds besides lingered (the ones their state names), as (id, task)."""
    named = [(k, int(occ)) for k, occ, _st in (v.fol[2] if v is not None and v.fol else [])]
    p = r.pipeline(transaction=False)
    for k, occ in named:
        p.hget(keys.kind_tasks(shop, k), f"{occ}:{vid}")
    return [(keys.kind_task_id(k, occ, vid), unpack_task(b))
            for (k, occ), b in zip(named, p.execute() if named else [], strict=True) if b]


def viewer_state(r: redis.Redis, shop: str, viewer_id: str) -> ViewerState | None:
    b = cast("bytes | None", r.hget(keys.viewers(shop), viewer_id))
    return unpack_viewer(b) if b else None


def viewer_reach(r: redis.Redis, shop: str, viewer_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each known viewer's addresses and channel consents (spec/events.md v1.1), by viewer id:
    ``{"email": str | None, "phone": str | None, "consent": {"dm", "email", "whatsapp", "sms":
    True | False | None}}`` (None: unknown), what a history import said included
    (``keys.imported``). A message may go out on email, WhatsApp or SMS only where its consent is
    True, on dm where it is not False (``can_send``). Two HMGETs a chunk."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(viewer_ids), PROFILE_CHUNK):
        chunk = viewer_ids[i:i + PROFILE_CHUNK]
        p = r.pipeline(transaction=False)
        p.hmget(keys.viewers(shop), chunk)
        p.hmget(keys.imported(shop), chunk)
        got, seeds = cast("list[list[bytes | None]]", p.execute())
        for vid, b, seed in zip(chunk, got, seeds, strict=True):
            reach = reach_from(b, seed)
            if reach is not None:
                out[vid] = reach
    return out


def reach_from(state: bytes | None, seed: bytes | None) -> dict[str, Any] | None:
    """One viewer's ``viewer_reach`` entry from its two records as stored (``keys.viewers``,
    ``keys.imported``; an async reader fetches them its own way); None without a state."""
    return reach_of(unpack_viewer(state), unpack_imported(seed) if seed else None) if state else None


def can_send(reach: dict[str, Any], channel: str) -> bool:
    """Whether ``channel`` (dm, email, whatsapp, sms) may carry a message to a viewer with this
    ``viewer_reach`` entry: consent True and an address (email: the email, whatsapp and sms: the
    phone), or for dm consent not False."""
    consent = reach["consent"].get(channel)
    if channel == "dm":
        return consent is not False
    address = reach["email"] if channel == "email" else reach["phone"]
    return consent is True and bool(address)


def shops(r: redis.Redis) -> list[str]:
    """Every shop seen, sorted."""
    return sorted(to_str(s) for s in cast("set[bytes]", r.smembers(keys.shops())))


def rooms(r: redis.Redis, shop: str, limit: int = 50) -> list[tuple[str, int]]:
    """The shop's rooms, the most recently active first, with their last event ts."""
    got = cast(replies.Scored, r.zrevrange(keys.rooms(shop), 0, limit - 1, withscores=True))
    return [(to_str(m), int(s)) for m, s in got]


def heartbeat_keys(r: redis.Redis, kind: str) -> list[str]:
    """The heartbeat keys of the processes of one kind seen in the last hour (from their index)."""
    names = cast(replies.Members,
                 r.zrangebyscore(keys.heartbeat_index(kind), time.time() - keys.HEARTBEAT_INDEX_KEEP_S, "+inf"))
    return [keys.heartbeat(kind, n.decode()) for n in names]


def heartbeats(r: redis.Redis, kind: str) -> list[dict[str, Any]]:
    """The processes of one kind (consumer, scorer) whose heartbeat has not expired."""
    return [json.loads(v) for v in get_each(r, heartbeat_keys(r, kind)) if v]


def get_each(r: redis.Redis, ks: list[str]) -> list[Any]:
    """GET of each key in one round trip: keys of different slots (a Redis Cluster's client sends
    each node its own), where MGET needs one slot."""
    p = r.pipeline(transaction=False)
    for k in ks:
        p.get(k)
    return p.execute() if ks else []


def room_ids(raw: dict[bytes, bytes]) -> dict[int, str]:
    """``keys.room_nos`` as read (HGETALL): archived room number -> room id."""
    return {int(k): v.decode() for k, v in raw.items()}


def archived_room_ids(r: redis.Redis, shop: str) -> dict[int, str]:
    """The shop's archived rooms by number (viewers' states name archived rooms by number)."""
    return room_ids(cast("dict[bytes, bytes]", r.hgetall(keys.room_nos(shop))))


def fill_profiles(r: redis.Redis, shop: str, tasks: list[tuple[str, TaskRec]]) -> None:
    """Give each (viewer, task) the viewer's name, country, language and time zone from its state
    (and a task of the other kinds their tier, and its occasion's room), in place: the scorer does not
    copy them into every task (``scoring.engine._display``). Tasks of earlier versions, which kept a
    copy, are left as they are; so is a task whose viewer has no state."""
    bare = [(vid, t) for vid, t in tasks if not (t.name or t.country or t.lang or t.tz)]
    want = list(dict.fromkeys(vid for vid, _ in bare))
    states: dict[str, bytes] = {}
    seeds: dict[str, bytes] = {}
    for i in range(0, len(want), PROFILE_CHUNK):
        chunk = want[i:i + PROFILE_CHUNK]
        p = r.pipeline(transaction=False)
        p.hmget(keys.viewers(shop), chunk)
        p.hmget(keys.imported(shop), chunk)
        got, imp = cast("list[list[bytes | None]]", p.execute())
        states.update((vid, b) for vid, b in zip(chunk, got, strict=True) if b)
        seeds.update((vid, b) for vid, b in zip(chunk, imp, strict=True) if b)
    profiles = {vid: unpack_viewer(b) for vid, b in states.items()}
    for vid, t in bare:
        v = profiles.get(vid)
        if v is not None:
            prof = profile_of(v, unpack_imported(seeds[vid]) if vid in seeds else None)
            t.name, t.country, t.lang, t.tz = (x or "" for x in prof)
            if t.kind not in ("", "lingered") and v.tier:
                # a task of the other kinds shows the viewer's tier now (a lingered one's is kept so by
                # the scorer, its priority having a tier bonus): the tier it was made under depends on
                # which of the viewer's orders had come by then
                t.tier = v.tier
                if t.kind in ("thank_first_order", "after_sales") and v.fol and v.fol[0]:
                    # the room of the viewer's first order, by (ts, id): an earlier one that came late
                    # is the task's occasion (spec/tiers.md v1.1), whichever was applied first
                    t.room = v.fol[0][0][3]


def seen_keys(r: redis.Redis, shop: str, room: str) -> list[str]:
    """Every key of a room's dedupe table: its meta key and its buckets."""
    meta = cast("bytes | None", r.get(keys.seen(shop, room)))
    n = 1
    if meta:
        level, split = (int(x) for x in meta.split()[:2])
        n = 2 ** level + split
    return [keys.seen(shop, room)] + [keys.seen_bucket(shop, room, i) for i in range(n)]


def rules_applied(r: redis.Redis, shop: str) -> int:
    """The rules version the shop's state was last recounted under (0: the defaults, never changed)."""
    return to_int(r.hget(keys.stats(shop), "rules_applied"))
