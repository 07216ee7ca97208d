"""Property tests of the scorer: the state is a function of the SET of a shop's events.

Small random event sets of one shop (2-4 rooms, 3-8 viewers, every event type, orders
resent under new event ids, consent flips), with show starts days apart and events
minutes apart so that the 3-minute dwell, the 10-minute presence and the 30-day gaps
all come into play, at and around their boundaries.  The events go through the real
ingest path (``parse_frame`` and ``IngestWriter``: real dedupe, one stream entry per
frame) into the real Redis, and real ``Worker`` objects apply them.

Every arrangement must give what the in-order single-worker run gives and what the
independent reference (tests/reference.py) gives: ``status`` for the shop and every
room, each viewer's tier, and each follow-up task's state.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fanops import keys
from fanops.config import Config
from fanops.read import status, viewer_state
from fanops.schema import BadInput, parse_frame
from realtime.writer import IngestWriter
from scoring.explain import viewer_report
from scoring.worker import Worker
from tests.pipeline import differences, product_tasks, reference_tasks
from tests.reference import Reference

SHOP = "default"
MIN = 60_000
DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z: every event is in the past
# show starts (days after T0): pairs 29/30/31 days apart, three shows within 30 days ...
DAY_OFFSETS = (0, 1, 10, 20, 29, 30, 31, 35, 45, 60, 61)
# ... and events minutes into a show: around 3 min (dwell) and 10 min (presence)
MINUTE_OFFSETS = (0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 15, 20, 30)
TYPES = ("join", "join", "leave", "leave", "comment", "comment", "like", "share", "follow", "gift",
         "product_view", "cart_add", "order", "order", "consent", "consent")
FOLLOWUP_STATES = ("pending", "claimed", "sent", "skipped", "converted", "withdrawn")

PROPS = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---------------------------------------------------------------- event sets
@dataclass(frozen=True)
class Spec:
    """One event: (room, viewer, type, minute, ms jitter, variant) -> an events.md object."""

    room: int
    viewer: int
    type: str
    minute: int
    jitter: int
    variant: int


def build(starts: list[int], specs: list[Spec]) -> list[dict[str, Any]]:
    out = []
    for i, s in enumerate(specs):
        room, vid = f"r{s.room % len(starts)}", f"v{s.viewer}"
        ts = T0 + starts[s.room % len(starts)] * DAY + s.minute * MIN + s.jitter
        e: dict[str, Any] = {"id": f"e{i}", "room": room, "ts": ts, "type": s.type, "viewer": {"id": vid}}
        k = s.variant
        if s.type == "comment":
            e["text"] = ("hi!", "does it come in blue?", "", "¿hay talla M?")[k % 4]
        elif s.type == "like":
            e["count"] = (1, 7, 150)[k % 3]
        elif s.type == "gift":
            e.update(gift="Rose", count=1 + k % 3, value=(0, 0.01, 13.5)[k % 3])
        elif s.type == "product_view":
            e["sku"] = ("lip-tint", "serum")[k % 2]
        elif s.type == "cart_add":
            e.update(sku=("lip-tint", "serum")[k % 2], qty=1 + k % 2)
        elif s.type == "order":
            # few order ids per viewer: the same order is often sent again under a new event id
            e.update(order_id=f"o-{vid}-{k % 2}", amount=(19.9, 5)[k % 2], currency=("USD", "EUR")[k % 2])
        elif s.type == "consent":
            e["dm"] = k % 2 == 0
        if k % 5 == 0:
            e["viewer"] |= {"name": f"Viewer {s.viewer}", "country": "US", "lang": "en"}
        out.append(e)
    return out


@st.composite
def event_sets(draw) -> list[dict[str, Any]]:
    n_rooms = draw(st.integers(2, 4))
    n_viewers = draw(st.integers(3, 8))
    starts = draw(st.lists(st.sampled_from(DAY_OFFSETS), min_size=n_rooms, max_size=n_rooms))
    spec = st.builds(Spec, room=st.integers(0, n_rooms - 1), viewer=st.integers(0, n_viewers - 1),
                     type=st.sampled_from(TYPES), minute=st.sampled_from(MINUTE_OFFSETS),
                     jitter=st.sampled_from((0, 0, 0, 1, -1)), variant=st.integers(0, 9))
    return build(starts, draw(st.lists(spec, min_size=4, max_size=30)))


@dataclass
class Arrival:
    """How one event set reaches the scorer."""

    order: list[int]  # a permutation of the events
    repeats: list[int]  # events sent again (each at some later position)
    chunks: list[int]  # frame sizes: one frame is one IngestWriter call, one stream entry
    workers: int  # 1-4 Worker objects, different names
    worker_batch: int  # stream entries per read
    seed: int  # who steps next


@st.composite
def arrivals(draw, n: int, shuffle: bool = True, repeat: bool = True, max_workers: int = 4) -> Arrival:
    order = draw(st.permutations(range(n))) if shuffle else list(range(n))
    repeats = draw(st.lists(st.integers(0, n - 1), max_size=6)) if repeat else []
    chunks = draw(st.lists(st.integers(1, 5), min_size=1, max_size=8))
    return Arrival(order=list(order), repeats=repeats, chunks=chunks,
                   workers=draw(st.integers(1, max_workers)), worker_batch=draw(st.integers(1, 3)),
                   seed=draw(st.integers(0, 2 ** 16)))


def in_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (e["ts"], e["id"]))


def frames_of(events: list[dict[str, Any]], a: Arrival) -> list[str]:
    """The arrival: events in ``a.order``, repeats spliced in after their first copy, cut into frames."""
    seq = [events[i] for i in a.order]
    rng = random.Random(a.seed)
    for i in a.repeats:
        first = seq.index(events[i])
        seq.insert(rng.randint(first + 1, len(seq)), events[i])
    frames, k, j = [], 0, 0
    while k < len(seq):
        size = a.chunks[j % len(a.chunks)]
        part = seq[k:k + size]
        frames.append(json.dumps(part if len(part) > 1 else part[0]))
        k, j = k + size, j + 1
    return frames


# ---------------------------------------------------------------- the pipeline
def ingest(cfg: Config, frames: list[str]) -> None:
    """The consumer's path minus the socket: parse_frame, then IngestWriter (dedupe, one
    entry per frame), frame by frame."""

    async def main() -> None:
        ar = aredis.Redis.from_url(cfg.redis_url)
        try:
            w = IngestWriter(ar, cfg)
            now = int(time.time() * 1000)
            for f in frames:
                items = parse_frame(f, now)
                assert not any(isinstance(x, BadInput) for x in items), items
                await w.write_events(items)  # type: ignore[arg-type]
        finally:
            await ar.aclose()

    asyncio.run(main())


def apply_all(r: redis.Redis, cfg: Config, n_workers: int, seed: int) -> list[Worker]:
    """Workers with different names take turns (random order) until none finds anything."""
    workers = [Worker(r, cfg, name=f"w{i}") for i in range(n_workers)]
    rng = random.Random(seed)
    idle = 0
    for _ in range(10_000):
        n = rng.choice(workers).step()
        idle = 0 if n else idle + 1
        if idle >= 3 * n_workers and all(w.step() == 0 for w in workers):
            return workers
    raise AssertionError("the workers never ran dry")


def run(r: redis.Redis, redis_url: str, data_dir, frames: list[str], workers: int = 1,
        worker_batch: int = 1, seed: int = 0) -> dict[str, Any]:
    r.flushall()
    cfg = Config.from_env({}, redis_url=redis_url, data_dir=data_dir, worker_batch=worker_batch)
    ingest(cfg, frames)
    apply_all(r, cfg, workers, seed)
    return observe(r)


def observe(r: redis.Redis) -> dict[str, Any]:
    """What the product shows: status (shop and rooms), tiers, follow-up task states."""
    st_ = status(r, SHOP)
    assert st_["lag"] == 0
    rooms = sorted(m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1))
    viewers = sorted(k.decode() for k in r.hkeys(keys.viewers(SHOP)))
    tasks = product_tasks(r, SHOP, FOLLOWUP_STATES)
    return {"shop": st_,
            "rooms": {room: status(r, SHOP, room)["room"] for room in rooms},
            # the tier counted in the counters, and the tier the viewer command explains
            "tiers": {v: viewer_state(r, SHOP, v).tier for v in viewers},  # type: ignore[union-attr]
            "explained": {v: viewer_report(r, SHOP, v)["tier"] for v in viewers},  # type: ignore[index]
            "tasks": tasks}


def expected(frames: list[str]) -> dict[str, Any]:
    ref = Reference()
    ref.feed(frames, int(time.time() * 1000))
    rooms = sorted({room for (_s, room, _i) in ref.events})
    viewers = sorted({e["viewer"]["id"] for e in ref.events.values()})
    tiers = {v: ref.viewer(SHOP, v)["tier"] for v in viewers}  # type: ignore[index]
    return {"shop": ref.status(SHOP),
            "rooms": {room: ref.status(SHOP, room)["room"] for room in rooms},
            "tiers": tiers, "explained": dict(tiers),
            "tasks": reference_tasks(ref, SHOP)}


def assert_same(got: dict[str, Any], want: dict[str, Any], what: str, events=None) -> None:
    diff = differences(got, want)
    if diff:
        story = ""
        if events is not None:
            story = "\nevents (in ts order, minutes after T0):\n" + "\n".join(
                f"  {e['id']:>4} {(e['ts'] - T0) / MIN:>12.4f} {e['room']} {e['viewer']['id']} {e['type']}"
                f" {e.get('dm', e.get('order_id', ''))}" for e in in_order(events))
        raise AssertionError(f"{what}: {len(diff)} differences (got != want):\n" + "\n".join(diff[:30]) + story)


def without_duplicates(obs: dict[str, Any]) -> dict[str, Any]:
    """Repeats are counted in ``duplicates`` and nowhere else."""
    return obs | {"shop": {k: v for k, v in obs["shop"].items() if k != "duplicates"}}


# ---------------------------------------------------------------- a known case
# A lurker's join arrives after the shop clock has passed their 10 minutes, and the one
# event at which their dwell was 3 minutes was applied in an earlier batch.
_LATE_LURKER = build([0, 1], [Spec(0, 0, "join", 0, 0, 1),       # e0: v0 joins r0 and stays silent
                              Spec(0, 1, "comment", 4, 0, 1),    # e1: v1 speaks 4 min later
                              Spec(1, 1, "like", 0, 0, 1)])      # e2: a day later, in r1
_LATE_LURKER_ARRIVAL = Arrival(order=[2, 1, 0], repeats=[], chunks=[1], workers=1, worker_batch=1, seed=0)


# ---------------------------------------------------------------- properties
@PROPS
@given(events=event_sets())
def test_in_order_single_worker_run_equals_the_reference(r, redis_url, tmp_path, events):
    frames = [json.dumps(e) for e in in_order(events)]
    assert_same(run(r, redis_url, tmp_path, frames), expected(frames), "in order, one worker", events)


@PROPS
@given(data=st.data(), events=event_sets())
def test_repeated_events_are_applied_once(r, redis_url, tmp_path, data, events):
    """(b) events sent again, in the same or another frame: the state is that of the set."""
    a = data.draw(arrivals(len(events), shuffle=False, max_workers=1))
    ordered = in_order(events)
    frames = frames_of(ordered, a)
    got = run(r, redis_url, tmp_path, frames, worker_batch=a.worker_batch)
    assert got["shop"]["duplicates"] == len(a.repeats)
    assert_same(got, expected(frames), "with repeats vs the reference", events)
    baseline = run(r, redis_url, tmp_path, [json.dumps(e) for e in ordered])
    assert_same(without_duplicates(got), without_duplicates(baseline), "with repeats vs in order", events)


@PROPS
@given(data=st.data(), events=event_sets())
def test_several_workers_give_the_state_of_one(r, redis_url, tmp_path, data, events):
    """(c) 1-4 workers with different names taking entries in turns."""
    a = data.draw(arrivals(len(events), shuffle=False, repeat=False))
    frames = frames_of(in_order(events), a)
    got = run(r, redis_url, tmp_path, frames, workers=a.workers, worker_batch=a.worker_batch, seed=a.seed)
    assert_same(got, expected(frames), f"{a.workers} workers vs the reference", events)
    baseline = run(r, redis_url, tmp_path, [json.dumps(e) for e in in_order(events)])
    assert_same(got, baseline, f"{a.workers} workers vs one", events)


@PROPS
@given(data=st.data(), events=event_sets())
@example(data=None, events=_LATE_LURKER)  # a late lurker's join: see _LATE_LURKER
def test_arrival_order_does_not_change_the_state(r, redis_url, tmp_path, data, events):
    """(a) events.md: the state after a shop's events does not depend on their arrival order."""
    if data is None:  # the explicit example: the known arrival
        a = _LATE_LURKER_ARRIVAL
    else:
        a = data.draw(arrivals(len(events), repeat=False, max_workers=1))
    frames = frames_of(events, a)
    got = run(r, redis_url, tmp_path, frames, worker_batch=a.worker_batch)
    baseline = run(r, redis_url, tmp_path, [json.dumps(e) for e in in_order(events)])
    assert_same(got, baseline, "shuffled vs in order", events)
    assert_same(got, expected(frames), "shuffled vs the reference", events)


@PROPS
@given(data=st.data(), events=event_sets())
@example(data=None, events=_LATE_LURKER)  # the same late join, plus e1 resent, over two workers
def test_any_order_with_repeats_over_several_workers_gives_the_same_state(r, redis_url, tmp_path, data, events):
    """(a), (b) and (c) at once, against (d) the in-order single-worker run and the reference."""
    if data is None:
        a = Arrival(order=[2, 1, 0], repeats=[1], chunks=[1], workers=2, worker_batch=1, seed=0)
    else:
        a = data.draw(arrivals(len(events)))
    frames = frames_of(events, a)
    got = run(r, redis_url, tmp_path, frames, workers=a.workers, worker_batch=a.worker_batch, seed=a.seed)
    baseline = run(r, redis_url, tmp_path, [json.dumps(e) for e in in_order(events)])
    assert_same(without_duplicates(got), without_duplicates(baseline), "any arrival vs in order", events)
    assert_same(got, expected(frames), "any arrival vs the reference", events)


# ---------------------------------------------------------------- idempotence
def dump(r: redis.Redis) -> dict[bytes, Any]:
    """Every key's value (heartbeats aside: they are wall-clock health, not state)."""
    out: dict[bytes, Any] = {}
    for k in sorted(r.scan_iter(count=1000)):
        if k.startswith(b"fo:hb:"):
            continue
        t = r.type(k)
        if t == b"string":
            out[k] = r.get(k)
        elif t == b"hash":
            out[k] = r.hgetall(k)
        elif t == b"zset":
            out[k] = r.zrange(k, 0, -1, withscores=True)
        elif t == b"set":
            out[k] = r.smembers(k)
        elif t == b"list":
            out[k] = r.lrange(k, 0, -1)
        elif t == b"stream":
            groups = r.xinfo_groups(k)
            pending = [[(p["message_id"], p["consumer"]) for p in
                        r.xpending_range(k, g["name"], "-", "+", 10_000)] for g in groups]
            out[k] = (r.xrange(k), [(g["name"], g["pending"], g["last-delivered-id"]) for g in groups],
                      pending)
        else:
            out[k] = t
    return out


@PROPS
@given(data=st.data(), events=event_sets())
def test_a_batch_applied_twice_changes_nothing(r, redis_url, tmp_path, data, events):
    """The apply script acknowledges in the same atomic step: a batch given again (by the
    worker that applied it, or by another) is refused, returns 0 and writes nothing."""
    r.flushall()
    cfg = Config.from_env({}, redis_url=redis_url, data_dir=tmp_path, worker_batch=1)
    ordered = in_order(events)
    cut = data.draw(st.integers(1, len(ordered)))
    ingest(cfg, [json.dumps(ordered[:cut]), json.dumps(ordered[cut:])] if cut < len(ordered)
         else [json.dumps(ordered)])
    w = Worker(r, cfg, name="w1")
    # the first entry of each partition stream, as one batch
    entries = []
    for s in keys.streams(SHOP):
        r.xgroup_create(s, keys.GROUP, id="0", mkstream=True)
        res = r.xreadgroup(keys.GROUP, "w1", {s: ">"}, count=1)
        if res:
            got = res[0][1] if isinstance(res, list) else next(iter(res.values()))[0]
            entries += [(s, i, f) for i, f in got]
    n = sum(int(f[b"n"]) for _, _, f in entries)
    assert n >= min(cut, 1) and w.apply_batch(SHOP, entries) == n
    before = dump(r)
    assert w.apply_batch(SHOP, entries) == 0
    assert Worker(r, cfg, name="w2").apply_batch(SHOP, entries) == 0
    assert dump(r) == before
    w.drain()  # and the rest still applies normally, to the reference's state
    assert_same(observe(r), expected([json.dumps(e) for e in ordered]), "after the refused repeat", events)
