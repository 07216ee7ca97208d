"""The follow-up queue: what operators see and do (list, claim, mark sent, skip, release).

One listing, ``list_tasks``, for every reader: the queue screen, the command line, the tests.

Each action is one atomic script call (``lua/task.lua``): two operators
claiming one task get one winner, and the other a ``TaskClaimedByOther``
naming the holder.  A claim lapses back to ``pending`` after the lease
(``claim_lease_minutes`` of wall time): a lapsed claim is treated as pending by
every action and swept back by ``release_expired``.  A task still pending
``followup_expire_hours`` of wall time after it was made becomes ``expired``
(spec/tiers.md v1.1), a final state: ``fanops.expiry.expire_old``, called by the
scorer's periodic pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from fanops import fans, keys, presence, read, replies, rules_store
from fanops.errors import TaskClaimedByOther, TaskError, TaskNotFound, TaskStateError
from fanops.geo import is_decent_hour, local_time
from fanops.scripts import script_source
from fanops.state import TASK_KINDS, TASK_STATES, TaskRec, unpack_room_viewer, unpack_task
from fanops.templates import suggest

SCAN_LIMIT = 500  # tasks read per state per list call, highest priority first
OPEN = "open"  # the state filter for pending and claimed tasks together


task_id = keys.pair


def split_task_id(tid: str) -> tuple[str, str]:
    """(room, viewer) of a lingered task's id; ("", viewer) of another kind's (its room is in
    the task).  ValueError if ``tid`` is no task id."""
    k = keys.split_kind_task_id(tid)
    return keys.split_pair(tid) if k is None else ("", k[2])


def kind_of(tid: str) -> str:
    k = keys.split_kind_task_id(tid)
    return "lingered" if k is None else k[0]


def where(shop: str, tid: str) -> tuple[str, str, str, str]:
    """Where a task lives: (its hash, its counters' hash, its field there, the viewer).  Lingered
    tasks are per room (``keys.tasks``, the room's hash); the other kinds per kind."""
    k = keys.split_kind_task_id(tid)
    if k is None:
        room, viewer = keys.split_pair(tid)
        return keys.tasks(shop, room), keys.room(shop, room), viewer, viewer
    kind, fld, viewer = k
    if kind not in TASK_KINDS:
        raise ValueError(f"not a task id: {tid!r}")
    return keys.kind_tasks(shop, kind), keys.kind_counts(shop, kind), fld, viewer


def _label(tid: str) -> str:
    k = keys.split_kind_task_id(tid)
    if k is not None:
        return f"{k[0]}/{k[2]}"
    room, viewer = split_task_id(tid)
    return f"{room}/{viewer}"


@dataclass
class Task:
    id: str
    room: str
    viewer: str
    state: str
    name: str
    tier: str
    country: str
    lang: str
    tz: str
    dwell_ms: int
    priority: float
    reactivated: bool
    comments: int
    likes: int
    views: int
    carts: int
    said: list[str]
    skus_viewed: list[str]
    skus_carted: list[str]
    product: str
    holder: str = ""
    lease_until: int = 0
    skip_reason: str = ""
    local: str = ""  # the viewer's local time, "HH:MM (Zone)"
    decent_hour: bool | None = None
    message: str = ""
    sent_by: str = ""
    sent_at: int = 0  # wall ms
    channel: str = ""  # the channel it was sent on (fanops.channels), "" before v1.1
    message_id: str = ""  # the provider's message id ("" for dm)
    kind: str = "lingered"  # spec/tiers.md v1.1 "Follow-up kinds"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sendable_now(self) -> bool:
        return self.state in ("pending", "claimed") and self.decent_hour is not False


def read_tasks(r: redis.Redis, shop: str, tids: list[str]) -> list[TaskRec | None]:
    """The packed tasks of ``tids`` (room/viewer pairs), None where there is none."""
    if not tids:
        return []
    p = r.pipeline(transaction=False)
    for tid in tids:
        hk, _ck, fld, _v = where(shop, tid)
        p.hget(hk, fld)
    recs = [unpack_task(b) if b else None for b in p.execute()]
    read.fill_profiles(r, shop, [(split_task_id(tid)[1], h) for tid, h in zip(tids, recs, strict=True) if h])
    return recs


def _task_from_rec(tid: str, h: TaskRec, now_ms: int, settings: Any, templates: dict[str, Any],
                   *, local: bool = True, message: bool = True) -> Task:
    """A task as the operator sees it; ``local`` (the viewer's local time) and ``message`` (the
    suggested text) can be left out for tasks that may not be shown, and added by ``finish``."""
    room, viewer = split_task_id(tid)
    room = room or h.room
    state = h.state
    lease = int(h.lease_until)
    if state == "claimed" and lease < now_ms:
        state = "pending"
    t = Task(
        id=tid, room=room, viewer=viewer, state=state, name=h.name, tier=h.tier,
        country=h.country, lang=h.lang, tz=h.tz, dwell_ms=int(h.dwell_ms), priority=float(h.priority),
        reactivated=bool(h.reactivated), comments=h.comments, likes=h.likes, views=h.views, carts=h.carts,
        said=list(h.said), skus_viewed=list(h.skus_viewed), skus_carted=list(h.skus_carted), product=h.product,
        holder=h.holder if state == "claimed" else "", lease_until=lease, skip_reason=h.skip_reason,
        sent_by=h.sent_by, sent_at=int(h.sent_at), channel=h.channel, message_id=h.message_id,
        kind=h.kind or "lingered",
    )
    return finish(t, now_ms, settings, templates, local=local, message=message)


def finish(t: Task, now_ms: int, settings: Any, templates: dict[str, Any], *, local: bool = True,
           message: bool = True) -> Task:
    """Add the viewer's local time (and whether it is a decent hour there) and the suggested message."""
    if local:
        lt = local_time(now_ms, t.tz or None, t.country or None)
        if lt is not None:
            t.local = f"{lt:%H:%M} ({lt.tzname()})"
            t.decent_hour = is_decent_hour(lt, int(settings.decent_hour_start), int(settings.decent_hour_end))
    if message:
        t.message = suggest(templates, t.tier, t.lang or None, t.name, t.product or None,
                            reactivated=t.reactivated, kind=t.kind)
    return t


def _queued(r: redis.Redis, shop: str, states: tuple[str, ...], scan: int) -> list[str]:
    """The ids of the ``scan`` tasks of highest priority in each of ``states``' queues; members
    that are not a task id of this version are left out."""
    p = r.pipeline(transaction=False)
    for s in states:
        p.zrevrange(keys.queue(shop, s), 0, scan - 1)
    ids: list[str] = []
    for m in (m for ms in p.execute() for m in ms):
        tid = replies.to_str(m)
        try:
            where(shop, tid)
        except ValueError:
            continue
        ids.append(tid)
    return ids


def _wanted(t: Task, state: str, tier: str | None, lang: str | None, country: str | None,
            room: str | None, sendable_now: bool, kind: str | None = None) -> bool:
    return ((state == OPEN or t.state == state)
            and not (kind and t.kind != kind)
            and not (tier and t.tier != tier)
            and not (lang and not (t.lang or "").lower().startswith(lang.lower()))
            and not (country and t.country != country)
            and not (room and t.room != room)
            and not (sendable_now and not t.sendable_now))


def list_tasks(r: redis.Redis, shop: str, state: str = "pending", *, tier: str | None = None,
               lang: str | None = None, country: str | None = None, room: str | None = None,
               sendable_now: bool = False, limit: int = 50, now_ms: int | None = None,
               scan: int = SCAN_LIMIT, kind: str | None = None) -> list[Task]:
    """Tasks in ``state`` by priority (ties: longer dwell, then viewer id), filtered.

    ``open`` is pending and claimed tasks together, so an operator sees the tasks others hold;
    ``pending`` includes lapsed claims.  Reads at most ``scan`` tasks per state, highest priority
    first; works out the viewer's local time only if a filter needs it before the cut, and the
    suggested message only for the tasks returned.
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    states = ("pending", "claimed") if state in (OPEN, "pending") else (state,)
    ids = _queued(r, shop, states, scan)
    if not ids:
        return []
    recs = read_tasks(r, shop, ids)
    settings, _ = rules_store.load(r, shop)
    templates = rules_store.load_templates(r, shop)
    out: list[Task] = []
    for tid, h in zip(ids, recs, strict=True):
        if h is None:
            continue
        t = _task_from_rec(tid, h, now, settings, templates, local=sendable_now, message=False)
        if _wanted(t, state, tier, lang, country, room, sendable_now, kind):
            out.append(t)
    dwell_now(r, shop, out, settings)
    out.sort(key=lambda t: (-t.priority, -t.dwell_ms, t.viewer))
    return [finish(t, now, settings, templates, local=not sendable_now) for t in out[:limit]]


def dwell_now(r: redis.Redis, shop: str, tasks: list[Task], settings: Any) -> None:
    """Each lingered task's dwell at the shop clock now, from its room record (spec/tiers.md: a
    present viewer's dwell runs to now), but for the states an operator closed (sent, skipped,
    expired: their card is what was shown then): the card keeps the dwell of its last write, and
    whether that write came before or after the viewer's presence lapsed depends on when their
    events came. A task whose record has left Redis (its show archived: no one is present there)
    keeps its card's."""
    by_room: dict[str, list[Task]] = {}
    for t in tasks:
        if t.kind == "lingered" and t.state in ("pending", "claimed", "converted", "withdrawn"):
            by_room.setdefault(t.room, []).append(t)
    if not by_room:
        return
    p = r.pipeline(transaction=False)
    p.hget(keys.stats(shop), "clock")
    for rm, ts in by_room.items():
        p.hmget(keys.room_viewers(shop, rm), [t.viewer for t in ts])
    clock, *got = p.execute()
    now = int(clock or 0)
    for ts, bs in zip(by_room.values(), got, strict=True):
        for t, b in zip(ts, bs, strict=True):
            if b:
                t.dwell_ms = presence.dwell(unpack_room_viewer(b), now, settings)


def get_task(r: redis.Redis, shop: str, tid: str, now_ms: int | None = None) -> Task:
    try:
        h = read_tasks(r, shop, [tid])[0]
    except ValueError as e:
        raise TaskNotFound(f"{tid!r} is not a task id") from e
    if h is None:
        raise TaskNotFound(f"no follow-up task {_label(tid)}")
    settings, _ = rules_store.load(r, shop)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    t = _task_from_rec(tid, h, now, settings, rules_store.load_templates(r, shop))
    dwell_now(r, shop, [t], settings)
    return t


def counts(r: redis.Redis, shop: str, room: str | None = None) -> dict[str, int]:
    """Tasks per state: for a room from its counters, else from the queue sizes."""
    if room is not None:
        h = r.hgetall(keys.room(shop, room))
        return {s: int(h.get(f"f:{s}".encode(), 0)) for s in TASK_STATES}
    p = r.pipeline(transaction=False)
    for s in TASK_STATES:
        p.zcard(keys.queue(shop, s))
    return dict(zip(TASK_STATES, (int(x) for x in p.execute()), strict=True))


class Operator:
    """The actions of one operator (``name`` is shown to the others as the task's holder)."""

    def __init__(self, r: redis.Redis, shop: str, name: str) -> None:
        if not name.strip():
            raise TaskError("an operator needs a name")
        self.r = r
        self.shop = shop
        self.name = name.strip()[:64]
        self._script = r.register_script(script_source("fanops", "task"))

    def _do(self, action: str, tid: str, reason: str = "", now_ms: int | None = None,
            sent: tuple[str, str] = ("", "")) -> str:
        try:
            hk, ck, fld, viewer = where(self.shop, tid)
        except ValueError as e:
            raise TaskNotFound(f"{tid!r} is not a task id") from e
        settings, _ = rules_store.load(self.r, self.shop)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        clock = int(self.r.hget(keys.stats(self.shop), "clock") or 0)
        res = self._script(
            keys=[hk, ck, keys.sent_log(self.shop)],
            args=[action, self.name, now, int(settings.claim_lease_minutes * 60_000),
                  keys.queue(self.shop, ""), tid, reason, clock, viewer, *sent, fld])
        res = [x.decode() if isinstance(x, bytes) else x for x in res]
        if res[0] == "ok":
            return str(res[1])
        code, state, holder = res[1], res[2], res[3]
        if code == "not_found":
            raise TaskNotFound(f"no follow-up task {_label(tid)}")
        if code == "claimed":
            raise TaskClaimedByOther(_label(tid), holder)
        verb = {"claim": "claim", "sent": "mark as sent", "skip": "skip", "release": "release"}[action]
        if code == "not_claimed":
            raise TaskStateError(_label(tid), state if state != "pending" else "not claimed by you",
                                 verb)
        raise TaskStateError(_label(tid), state, verb)

    def claim(self, tid: str, now_ms: int | None = None) -> str:
        return self._do("claim", tid, now_ms=now_ms)

    def mark_sent(self, tid: str, now_ms: int | None = None, *, channel: str = "dm", message_id: str = "") -> str:
        """Record the task as sent by this operator on ``channel`` (``dm``: by hand on the platform),
        with the provider's ``message_id`` where a provider sent it (``fanops.channels``)."""
        return self._do("sent", tid, now_ms=now_ms, sent=(channel, message_id[:200]))

    def skip(self, tid: str, reason: str, now_ms: int | None = None) -> str:
        if not reason.strip():
            raise TaskError("say why the task is skipped (a reason is required)")
        return self._do("skip", tid, reason=reason.strip()[:200], now_ms=now_ms)

    def release(self, tid: str, now_ms: int | None = None) -> str:
        return self._do("release", tid, now_ms=now_ms)


def release_expired(r: redis.Redis, shop: str, now_ms: int | None = None) -> int:
    """Move lapsed claims back to pending; returns how many."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    script = r.register_script(script_source("fanops", "task"))
    n = 0
    for m in cast(replies.Members, r.zrange(keys.queue(shop, "claimed"), 0, -1)):
        tid = m.decode()
        try:
            hk, ck, fld, viewer = where(shop, tid)
        except ValueError:
            continue
        res = script(keys=[hk, ck, keys.sent_log(shop)],
                     args=["expire", "", now, 0, keys.queue(shop, ""), tid, "", 0, viewer, "", "", fld])
        if res[0] in (b"ok", "ok") and res[1] in (b"pending", "pending"):
            n += 1
    return n


KINDS = TASK_KINDS


def task_rows(r: redis.Redis, shop: str, state: str = OPEN, kind: str | None = None, limit: int | None = None,
              now_ms: int | None = None) -> list[dict[str, Any]]:
    """``python -m scoring tasks``: the tasks in ``state`` by priority as JSON-ready objects with
    spec/cli.md's fields (id, kind, state, viewer_id, room, tier, priority, lang, channels) and
    what an operator reads (name, country, dwell, local time, suggested message). ``limit`` None:
    every one of them."""
    if kind is not None and kind not in KINDS:
        raise TaskError(f"unknown task kind {kind!r} (one of: {', '.join(KINDS)})")
    if state != OPEN and state not in TASK_STATES:
        raise TaskError(f"unknown task state {state!r} (one of: {OPEN}, {', '.join(TASK_STATES)})")
    if limit is None:
        states = ("pending", "claimed") if state in (OPEN, "pending") else (state,)
        p = r.pipeline(transaction=False)
        for st in states:
            p.zcard(keys.queue(shop, st))
        limit = max(1, sum(cast("list[int]", p.execute())))
    if limit < 1:
        raise TaskError(f"--limit must be at least 1, not {limit}")
    got = list_tasks(r, shop, state, limit=limit, now_ms=now_ms, scan=max(limit, SCAN_LIMIT), kind=kind)
    # the channels each viewer can be sent on now: consent and address (what an import said included)
    reach = read.viewer_reach(r, shop, list(dict.fromkeys(t.viewer for t in got)))
    chans = {v: [c for c, ok in fans.CHANNELS.items() if ok(x)] for v, x in reach.items()}
    return [{"id": t.id, "kind": t.kind, "state": t.state, "viewer_id": t.viewer, "room": t.room,
             "tier": t.tier, "priority": t.priority, "lang": t.lang,
             "channels": chans.get(t.viewer, []) if t.state in ("pending", "claimed") else [],
             "name": t.name, "country": t.country, "dwell_ms": t.dwell_ms, "holder": t.holder,
             "local": t.local, "decent_hour": t.decent_hour, "message": t.message} for t in got]
