"""The independent reference implementation (tests/reference.py) reproduces the sample's expected status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.pipeline import project
from tests.reference import Reference

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"


@pytest.fixture(scope="module")
def sample() -> tuple[Reference, dict]:
    feed, expected = SAMPLES / "weeks-small.jsonl", SAMPLES / "weeks-small.expected.json"
    if not (feed.is_file() and expected.is_file()):
        pytest.fail(f"sample files missing: expected {feed} and {expected}")
    ref = Reference()
    lines = [ln for ln in feed.read_bytes().split(b"\n") if ln.strip()]
    ref.feed(lines, int(time.time() * 1000))
    return ref, json.loads(expected.read_text(encoding="utf-8"))


def test_reference_matches_expected_status_for_every_room(sample: tuple[Reference, dict]) -> None:
    ref, expected = sample
    shop = expected["shop"]
    assert expected["status_by_room"], "expected file lists no rooms"
    for room, want in expected["status_by_room"].items():
        got = project(ref.status(shop, room), want)  # v1's fields; v1.1 adds some (spec/cli.md)
        assert got == want, f"room {room}: got {json.dumps(got)} want {json.dumps(want)}"


def test_reference_viewer_is_consistent_with_status(sample: tuple[Reference, dict]) -> None:
    ref, expected = sample
    shop = expected["shop"]
    viewers = {e["viewer"]["id"] for e in ref.events.values() if e["shop"] == shop}
    tiers = {t: 0 for t in ("new_fan", "first_buyer", "active", "dormant")}
    for vid in viewers:
        v = ref.viewer(shop, vid)
        assert v is not None and v["first_seen"] <= v["last_active"] <= ref.clock(shop)
        tiers[v["tier"]] += 1
    assert tiers == next(iter(expected["status_by_room"].values()))["tiers"]
    assert ref.viewer(shop, "no-such-viewer") is None


def test_reference_is_independent_of_arrival_order(sample: tuple[Reference, dict]) -> None:
    """events.md: the state after a shop's events does not depend on their arrival order."""
    ref, expected = sample
    shop = expected["shop"]
    backwards = Reference()
    lines = [ln for ln in (SAMPLES / "weeks-small.jsonl").read_bytes().split(b"\n") if ln.strip()]
    frames = []
    for ln in reversed(lines):
        try:
            doc = json.loads(ln)
        except ValueError:
            frames.append(ln)
            continue
        frames.append(json.dumps(doc[::-1] if isinstance(doc, list) else doc))
    backwards.feed(frames, int(time.time() * 1000))
    for room in expected["status_by_room"]:
        assert backwards.status(shop, room) == ref.status(shop, room), room
