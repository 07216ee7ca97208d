"""Running scorers split a shop's viewer partitions between them: they never score the same
viewer, and a scorer whose partitions go quiet still moves its viewers with the shop clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from fanops import keys
from fanops.config import Config
from scoring.partitions import MEMBERS_EVERY_S, MEMBERS_UNSETTLED_S
from scoring.worker import Worker
from tests.conftest import wait_for
from tests.feeds import ev, frame
from tests.pipeline import ingest_frames, lag

T0 = 1_763_856_000_000
MIN = 60_000


def viewer_in(parts: set[int], avoid: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    return next(v for v in (f"u-{i}" for i in range(1000)) if keys.part_of(v) in parts and v not in avoid)


@contextmanager
def running(cfg: Config, *names: str) -> Iterator[list[Worker]]:
    """Scorers in run mode (as ``python -m scoring run``), each in a thread with its own client."""
    workers = [Worker(redis.Redis.from_url(cfg.redis_url), cfg, name=n, block_ms=200) for n in names]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    try:
        yield workers
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(10)
        for w in workers:
            w.r.close()


@contextmanager
def split_in_two(cfg: Config) -> Iterator[list[Worker]]:
    """Two running scorers, once they have split the partitions half and half."""
    with running(cfg, "wa", "wb") as (wa, wb):
        wait_for(lambda: len(wa.partitions()) == len(wb.partitions()) == keys.PARTITIONS // 2, 10,
                 "the scorers to split the partitions")
        yield [wa, wb]


def pending(r: redis.Redis) -> set[tuple[str, str]]:
    return {keys.split_pair(m.decode()) for m in r.zrange(keys.queue("default", "pending"), 0, -1)
            if m[:1].isdigit()}  # the lingered tasks (another kind's id says its kind)


def test_two_running_scorers_split_the_partitions_and_never_conflict(cfg, r):
    with running(cfg, "wa", "wb") as (wa, wb):
        # the first to start takes every partition, then hands half of them over once the second lists
        # itself: never both on one partition
        seen: list[tuple[list[int], list[int]]] = []

        def split() -> bool:
            seen.append((wa.partitions(), wb.partitions()))
            return len(seen[-1][0]) == len(seen[-1][1]) == keys.PARTITIONS // 2

        wait_for(split, 10, "the scorers to split the partitions")
        assert all(not set(a) & set(b) for a, b in seen), seen
        assert wa.partitions() == [p for p in range(keys.PARTITIONS) if p % 2 == 0]
        assert wb.partitions() == [p for p in range(keys.PARTITIONS) if p % 2 == 1]
        # 200 viewers, each joining, commenting and liking: every partition has events
        evs = [ev(f"{v}-{k}", ts=T0 + v * 1000 + k, viewer=f"u-{v}", type=t, **x)
               for v in range(200) for k, (t, x) in enumerate([("join", {}), ("comment", {"text": "hi"}),
                                                               ("like", {"count": 2})])]
        ingest_frames(cfg, [frame(*evs[i:i + 50]) for i in range(0, len(evs), 50)])
        wait_for(lambda: lag(r, "default") == 0, 30, "every event applied")
    assert wa.stats.events > 0 and wb.stats.events > 0
    assert wa.stats.events + wb.stats.events == 600
    assert wa.stats.conflicts == 0 and wb.stats.conflicts == 0
    assert int(r.hget(keys.tiers("default"), "new_fan")) == 200
    assert r.zcard(keys.scorer_members()) == 0  # both left the list when they stopped


def test_a_quiet_partition_still_gets_its_lurkers_follow_up_when_the_clock_moves(cfg, r):
    with split_in_two(cfg) as (wa, wb):
        lurker = viewer_in(set(wb.partitions()))
        chatty = viewer_in(set(wa.partitions()))
        ingest_frames(cfg, [frame(ev("l-join", ts=T0, viewer=lurker))])
        wait_for(lambda: lag(r, "default") == 0, 10, "the lurker's join applied")
        # only the other partition gets events from now on; the shop clock passes the lurker's 3 minutes
        ingest_frames(cfg, [frame(*(ev(f"c-{k}", ts=T0 + k * MIN, viewer=chatty, type="comment", text="so?")
                                    for k in range(1, 6)))])
        wait_for(lambda: ("r-1", lurker) in pending(r), 10, "the lurker's follow-up task")
    assert pending(r) == {("r-1", lurker), ("r-1", chatty)}
    assert wb.stats.events == 1 and wa.stats.events == 5  # wb made the task with no event of its own


def test_a_late_event_in_one_partition_makes_the_task_of_a_lurker_in_another(cfg, r):
    """A late event is a shop-clock value the other scorers never see (it does not move the clock):
    the scorer that applies it re-checks the lurkers of every partition."""
    with split_in_two(cfg) as (wa, wb):
        lurker = viewer_in(set(wb.partitions()))
        other = viewer_in(set(wa.partitions()))
        ingest_frames(cfg, [frame(ev("l-join", ts=T0, viewer=lurker))])
        wait_for(lambda: lag(r, "default") == 0, 10, "the lurker's join applied")
        # 20 minutes on: the lurker is no longer present, and never was at a clock value past 3 minutes
        ingest_frames(cfg, [frame(ev("o-1", ts=T0 + 20 * MIN, viewer=other, type="comment", text="hi"))])
        # wb's time pass: the lurker's dwell moment passed while not present, no task
        wait_for(lambda: r.zscore(keys.late_window("default", keys.part_of(lurker)), keys.pair("r-1", lurker)),
                 10, "the lurker to be looked at again at the new clock")
        assert ("r-1", lurker) not in pending(r)
        # a late event at 4 minutes: the lurker was present then, with 4 minutes of dwell
        ingest_frames(cfg, [frame(ev("o-late", ts=T0 + 4 * MIN, viewer=other, type="like", count=1))])
        wait_for(lambda: ("r-1", lurker) in pending(r), 10, "the lurker's follow-up task")


def test_data_of_the_earlier_layout_is_brought_over_when_a_scorer_starts(cfg, r):
    """Layout 1 kept one time index and one hash per follow-up task: a scorer moves index entries to
    their viewer's partition and repacks the tasks, once; the queue then shows them as before."""
    from fanops import queue

    other, stays = viewer_in({1, 2, 3}), viewer_in({0})
    r.zadd(keys.due("default"), {other: T0 + 30 * 86_400_000, stays: 5})
    r.zadd(keys.lurk("default"), {keys.pair("r-1", other): T0 + 3 * MIN})
    old_task = f"{keys.tag('default')}:task:r-1:{other}"
    r.hset(old_task, mapping={"state": "claimed", "room": "r-1", "viewer": other, "made_at": T0, "task_at": T0,
                              "name": "<b>Ana</b>", "tier": "new_fan", "country": "BR", "lang": "pt",
                              "dwell_ms": 200000, "priority": "1.5", "reactivated": "0", "comments": "2",
                              "said": '["oi?", "quanto custa?"]', "skus_viewed": '["sku-1"]', "product": "sku-1",
                              "holder": "Mei", "lease_until": 10**15})
    r.zadd(keys.queue("default", "claimed"), {keys.pair("r-1", other): 2.0})
    r.sadd(keys.shops(), "default")
    Worker(r, cfg, name="w1").step()
    part = keys.part_of(other)
    assert r.zscore(keys.due("default", part), other) == T0 + 30 * 86_400_000
    assert r.zscore(keys.due("default"), other) is None and r.zscore(keys.due("default"), stays) == 5
    assert r.zscore(keys.lurk("default", part), keys.pair("r-1", other)) == T0 + 3 * MIN
    assert not r.exists(old_task)
    (t,) = queue.list_tasks(r, "default", "claimed", now_ms=10**14)
    assert (t.viewer, t.name, t.holder, t.said, t.priority, t.lang) == (
        other, "<b>Ana</b>", "Mei", ["oi?", "quanto custa?"], 1.5, "pt")
    from scoring import migrate

    assert int(r.hget(keys.stats("default"), "layout")) == migrate.LAYOUT


def test_a_scorer_that_joins_a_busy_show_takes_its_share_at_the_holders_next_round(cfg, r):
    # as `scoring run` does: each lists itself and reads only its share; their rounds go by a clock
    # moved by hand
    now = [1000.0]
    wa, wb = (Worker(redis.Redis.from_url(cfg.redis_url), cfg, name=n, monotonic=lambda: now[0])
              for n in ("wa", "wb"))
    for w in (wa, wb):
        w.join()
    try:
        assert wa.partitions() == [0, 1, 2, 3]  # alone: every partition
        assert wb.partitions() == []  # wa still reads them all: wb waits, so no partition has two readers
        now[0] += MEMBERS_EVERY_S
        assert wa.partitions() == [0, 2]  # wa's next round sees wb and gives up wb's share at once
        now[0] += MEMBERS_UNSETTLED_S
        # wb, short of its share, asks again well before a regular round: the split is whole within
        # a fraction of a second, not after a second of one scorer doing all the work
        assert MEMBERS_UNSETTLED_S < MEMBERS_EVERY_S
        assert wb.partitions() == [1, 3]
    finally:
        for w in (wa, wb):
            w.r.close()


def test_a_scorer_beyond_the_partitions_stays_idle_while_the_clock_moves(cfg, r):
    names = ["wa", "wb", "wc", "wd", "we"]  # five scorers, four partitions: the last has none
    ws = [Worker(redis.Redis.from_url(cfg.redis_url), cfg, name=n) for n in names]
    try:
        for w in ws:
            w.join()
        for w in ws:
            w.partitions()
        extra = ws[-1]
        assert extra.partitions() == []
        ingest_frames(cfg, [frame(ev(1, viewer="u-1", ts=T0), ev(2, viewer="u-2", ts=T0 + 5 * MIN))])
        Worker(r, cfg, name="applier").drain(30)  # another scorer applies them: the shop clock moves
        assert r.hget(keys.stats("default"), "clock") == str(T0 + 5 * MIN).encode()
        calls = int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        extra.time_pass()  # the shop clock moved: it has no viewers of its own to move, so no script call
        assert int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) == calls
    finally:
        for w in ws:
            w.r.close()
