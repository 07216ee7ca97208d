"""A scorer sizes its batches by Redis's time: as many events as Redis applies in about
``worker_apply_ms`` (bigger batches cost less an event, but Redis serves no one else while it applies
one), never more than ``worker_batch_events``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fanops import keys
from fanops.config import Config
from fanops.read import status
from scoring import intake
from scoring.intake import FLOOR_EVENTS, START_EVENTS, BatchSize, Entry
from scoring.worker import Worker
from tests.feeds import ev, frame
from tests.pipeline import ingest_frames

T0 = 1_763_856_000_000
N = 40_000  # twice a new scorer's first cap (START_EVENTS)


def test_the_cap_doubles_while_full_batches_are_quick_and_stops_at_the_most() -> None:
    size = BatchSize(target_ms=250, most=100_000, most_entries=200)
    assert size() == START_EVENTS
    size.took(START_EVENTS, 0.050)  # a fifth of the target: it could take 5x, it takes 2x
    assert size() == 2 * START_EVENTS
    size.took(2 * START_EVENTS, 0.050)
    assert size() == 80_000
    size.took(80_000, 0.050)
    assert size() == 100_000  # the most, whatever Redis could take


def test_a_slow_batch_shrinks_the_cap_to_what_fits_the_target_at_most_to_a_quarter_a_call() -> None:
    size = BatchSize(target_ms=250, most=100_000, most_entries=200)
    size.took(START_EVENTS, 0.500)  # twice the target: half of it fits
    assert size() == START_EVENTS // 2
    size.took(START_EVENTS // 2, 100.0)  # a stall (a retry inside the client): a quarter, not the floor
    assert size() == START_EVENTS // 8
    for _ in range(5):
        size.took(size(), 100.0)
    assert size() == FLOOR_EVENTS  # a Redis that stays that slow: never below the floor


def test_a_batch_far_below_the_cap_leaves_it_as_it_is() -> None:
    """A few events take a call's own time (the round trip): they say nothing of a full batch."""
    size = BatchSize(target_ms=250, most=100_000, most_entries=200)
    size.took(100, 0.200)
    size.took(4_000, 0.240)
    assert size() == START_EVENTS
    size.took(0, 0.0)
    assert size() == START_EVENTS


def test_a_read_takes_about_two_batches_whatever_an_entry_holds() -> None:
    """A live entry holds a consumer's flush (~100-500 events), an import's ~2,500: a read counted in
    entries alone could take minutes to apply, past the scorer's heartbeat and the claim of its entries."""
    size = BatchSize(target_ms=250, most=100_000, most_entries=200, entry_guess=500)
    assert size.entries_to_read(4) == 20  # 2 x 20,000 events over 4 streams of 500-event entries
    size.read([("s", b"1-0", {b"n": b"2500"})] * 3)
    assert size.entries_to_read(4) == 4
    assert size.entries_to_read(1) == 16
    size.read([("s", b"1-0", {b"n": b"25"})] * 3)
    assert size.entries_to_read(4) == 200  # at most FANOPS_WORKER_BATCH


def test_a_most_below_the_start_and_the_floor_is_kept() -> None:
    size = BatchSize(target_ms=250, most=300, most_entries=200)
    assert size() == 300
    size.took(300, 10.0)
    assert size() == 300


class Recording(Worker):
    """A scorer that notes the events of each batch it applies, by shop; ``slow``: each of its writes
    takes that much longer (a Redis that is busy)."""

    def __init__(self, *a: Any, slow: float = 0.0, **k: Any) -> None:
        super().__init__(*a, **k)
        self.sizes: dict[str, list[int]] = {}
        self.slow = slow

    def apply_batch(self, shop: str, entries: list[Entry]) -> int:
        self.sizes.setdefault(shop, []).append(sum(map(intake.events_in, entries)))
        return super().apply_batch(shop, entries)

    def write(self, shop: str, batch: Any, acks: list[list[str]]) -> list[Any]:
        res = super().write(shop, batch, acks)
        time.sleep(self.slow)
        return res


def show(shop: str, n: int) -> list[str]:
    return [frame(*[ev(f"{shop}-{i}", viewer=f"u-{i % 3000}", ts=T0 + i, type="comment", text="hi", shop=shop)
                    for i in range(k, min(n, k + 500))]) for k in range(0, n, 500)]


def test_a_backlog_is_applied_in_batches_that_fit_the_time_and_the_status_is_the_same(r, cfg: Config) -> None:
    """A Redis that takes every call slowly (30 ms over a 1 ms target) gets smaller batches at once; a
    quick one bigger ones; either way every event is applied once, with the same status."""
    frames = show("batches", N)
    runs = {}
    for apply_ms, slow in ((1, 0.03), (600_000, 0.0)):
        r.flushall()
        busy = dataclasses.replace(cfg, worker_apply_ms=apply_ms)
        ingest_frames(busy, frames)
        w = Recording(r, busy, name="w1", slow=slow)
        w.drain(timeout=120)
        runs[apply_ms] = (w.sizes["batches"], status(r, "batches", "r-1"))
    (slow_sizes, slow_status), (quick_sizes, quick_status) = runs[1], runs[600_000]
    assert slow_status == quick_status and slow_status["events_applied"] == N and slow_status["lag"] == 0
    assert sum(slow_sizes) == sum(quick_sizes) == N
    # the first read takes two first batches' worth of the entries it guesses (a flush, 500 events)
    assert slow_sizes[0] <= START_EVENTS and quick_sizes[0] <= START_EVENTS
    assert len(slow_sizes) >= 4 and max(slow_sizes[1:]) <= START_EVENTS // 4, slow_sizes
    assert len(quick_sizes) == 2 and quick_sizes[1] > START_EVENTS, quick_sizes  # the cap doubled


def test_each_shop_has_its_own_batches(r, cfg: Config) -> None:
    """A shop whose calls are quick grows its batches; another shop's first batch is still a new
    scorer's: one cap for both would send a big show's Redis a batch sized on a small one."""
    quick = dataclasses.replace(cfg, worker_apply_ms=600_000)
    ingest_frames(quick, show("small-show", N))
    w = Recording(r, quick, name="w1", shops=["small-show"])
    w.drain(timeout=120)
    assert max(w.sizes["small-show"]) > START_EVENTS, w.sizes
    ingest_frames(quick, show("big-show", N))
    w.fixed_shops = ["small-show", "big-show"]
    w.drain(timeout=120)
    assert w.sizes["big-show"][0] <= START_EVENTS, w.sizes


def read_then_died(r: Any, cfg: Config, shop: str) -> tuple[Config, list[Entry], int]:
    """A show of ``N`` events whose every entry the scorer "w1" read, before it died applying none.
    Returns the settings (a claim idle of an hour: only a restart under the name takes them), the
    entries and how many a restarted scorer's first read of its own pending ones takes a partition."""
    patient = dataclasses.replace(cfg, claim_idle_ms=3_600_000)
    ingest_frames(patient, show(shop, N))
    for stream in keys.streams(shop):
        r.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
    read = intake.read_entries(r, shop, "w1", list(range(keys.PARTITIONS)), ">", 1_000_000, None)
    fresh = BatchSize(patient.worker_apply_ms, patient.worker_batch_events, patient.worker_batch,
                      patient.flush_events)
    return patient, read, fresh.entries_to_read(keys.PARTITIONS)


def test_a_scorer_restarted_under_its_name_applies_every_entry_it_had_read_at_once(r, cfg: Config) -> None:
    """It reads its own unacknowledged entries first, every one of them, not only a first read's worth
    (a read is counted in events now): the rest would wait ``claim_idle_ms`` (30 s) to be taken over."""
    patient, read, first = read_then_died(r, cfg, "restart")
    assert len(read) > keys.PARTITIONS * first

    w = Recording(r, patient, name="w1", shops=["restart"])
    assert w.step() == N and w.stats.claimed == 0
    st = status(r, "restart")
    assert (st["events_applied"], st["lag"]) == (N, 0)


def test_pending_entries_deleted_from_outside_do_not_hold_back_the_live_ones(r, cfg: Config, caplog) -> None:
    """An entry XDEL'd while pending comes back from a read of "0" with no fields: it is acknowledged
    and said, and the pending entries behind it are applied at once (not after the claim idle)."""
    patient, read, first = read_then_died(r, cfg, "restart")
    gone: list[Entry] = []
    for stream in keys.streams("restart"):  # a first read's worth of each partition, deleted
        mine = [e for e in read if e[0] == stream][:first]
        r.xdel(stream, *[i for _, i, _ in mine])
        gone += mine
    lost = sum(int(f[b"n"]) for _, _, f in gone)

    w = Recording(r, patient, name="w1", shops=["restart"])
    assert w.step() == N - lost
    assert sum(int(r.xpending(s, keys.GROUP)["pending"]) for s in keys.streams("restart")) == 0
    assert "were deleted from the stream before a scorer applied them" in caplog.text
