"""A scorer sizes its batches by Redis's time: as many events as Redis applies in about
``worker_apply_ms`` (bigger batches cost less an event, but Redis serves no one else while it applies
one), never more than ``worker_batch_events``."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fanops.config import Config
from fanops.read import status
from scoring.intake import FLOOR_EVENTS, START_EVENTS, BatchSize, Entry
from scoring.worker import Worker
from tests.feeds import ev, frame
from tests.pipeline import ingest_frames

T0 = 1_763_856_000_000
SHOP = "batches"
N = 24_000  # more than a new scorer's first batch (START_EVENTS)


def test_the_cap_doubles_while_full_batches_are_quick_and_stops_at_the_most() -> None:
    size = BatchSize(target_ms=250, most=100_000)
    assert size() == START_EVENTS
    size.took(START_EVENTS, 0.050)  # a fifth of the target: it could take 5x, it takes 2x
    assert size() == 2 * START_EVENTS
    size.took(2 * START_EVENTS, 0.050)
    assert size() == 80_000
    size.took(80_000, 0.050)
    assert size() == 100_000  # the most, whatever Redis could take


def test_a_slow_batch_shrinks_the_cap_to_what_fits_the_target_at_once() -> None:
    size = BatchSize(target_ms=250, most=100_000)
    size.took(START_EVENTS, 1.0)  # 4x the target: a quarter of it fits
    assert size() == START_EVENTS // 4
    size.took(START_EVENTS // 4, 100.0)  # a stall: never below the floor
    assert size() == FLOOR_EVENTS


def test_a_batch_far_below_the_cap_leaves_it_as_it_is() -> None:
    """A few events take a call's own time (the round trip): they say nothing of a full batch."""
    size = BatchSize(target_ms=250, most=100_000)
    size.took(100, 0.200)
    size.took(4_000, 0.240)
    assert size() == START_EVENTS
    size.took(0, 0.0)
    assert size() == START_EVENTS


def test_a_most_below_the_start_and_the_floor_is_kept() -> None:
    size = BatchSize(target_ms=250, most=300)
    assert size() == 300
    size.took(300, 10.0)
    assert size() == 300


class Recording(Worker):
    """A scorer that notes the events of each batch it applies."""

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.sizes: list[int] = []

    def apply_batch(self, shop: str, entries: list[Entry]) -> int:
        self.sizes.append(sum(int(f.get(b"n", 1)) for _, _, f in entries))
        return super().apply_batch(shop, entries)


@pytest.fixture(scope="module")
def backlog() -> list[str]:
    return [frame(*[ev(i, viewer=f"u-{i % 3000}", ts=T0 + i, type="comment", text="hi", shop=SHOP)
                    for i in range(k, k + 500)]) for k in range(0, N, 500)]


@pytest.mark.parametrize("apply_ms", [1, 600_000])
def test_a_backlog_is_applied_in_batches_that_fit_the_time_and_the_status_is_the_same(
        r, cfg: Config, backlog: list[str], apply_ms: int) -> None:
    """With a target no call can meet, every batch after the first holds about ``FLOOR_EVENTS``
    events; with one every call meets, the backlog goes in two batches (the first, then the rest).
    Either way every event is applied once."""
    cfg = dataclasses.replace(cfg, worker_apply_ms=apply_ms)
    ingest_frames(cfg, backlog)
    w = Recording(r, cfg, name="w1", shops=[SHOP])
    w.drain(timeout=120)

    st = status(r, SHOP)
    assert (st["events_applied"], st["lag"]) == (N, 0)
    assert sum(w.sizes) == N and w.sizes[0] <= START_EVENTS, w.sizes
    if apply_ms == 1:
        assert len(w.sizes) >= 1 + (N - START_EVENTS) // FLOOR_EVENTS, w.sizes
        assert max(w.sizes[1:]) <= FLOOR_EVENTS, w.sizes
    else:
        assert len(w.sizes) == 2, w.sizes
