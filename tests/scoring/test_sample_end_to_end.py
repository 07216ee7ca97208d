"""The recorded sample feed through the real consumer and scorer gives the spec's status per room."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanops.read import status
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, lag, project, read_lines


@pytest.fixture
def expected() -> dict:
    path = SAMPLES / "weeks-small.expected.json"
    if not path.exists():
        pytest.fail(f"sample files missing: expected {path}")
    return json.loads(path.read_text())


def test_sample_feed_gives_the_expected_status_for_every_room(cfg, r, expected):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    assert lag(r, "default") == 0
    for room, want in expected["status_by_room"].items():
        got = status(r, "default", room)
        assert project(got, want) == want, room  # the v1 fields, exactly
        assert got["room"]["followups"]["expired"] == 0  # v1.1: nothing expires in a feed's time alone
    assert got["tasks"]["lingered"] == {s: sum(status(r, "default", rm)["room"]["followups"][s]
                                               for rm in expected["status_by_room"]) for s in got["tasks"]["lingered"]}


def test_status_command_prints_the_same_json(cfg, r, expected, redis_url):
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    room, want = next(iter(expected["status_by_room"].items()))
    out = subprocess.run([sys.executable, "-m", "scoring", "status", "--shop", "default", "--room", room,
                          "--redis", redis_url], capture_output=True, text=True, check=True)
    assert project(json.loads(out.stdout), want) == want


@pytest.mark.parametrize("flush_events,worker_batch", [(1, 1), (7, 3), (64, 1)])
def test_small_batches_give_the_same_status(r, redis_url, tmp_path, expected, flush_events, worker_batch):
    from fanops.config import Config

    cfg = Config.from_env({}, redis_url=redis_url, data_dir=tmp_path, flush_ms=5,
                          flush_events=flush_events, worker_batch=worker_batch)
    ingest_frames(cfg, read_lines(SAMPLES / "weeks-small.jsonl"))
    drain(r, cfg)
    assert lag(r, "default") == 0
    for room, want in expected["status_by_room"].items():
        assert project(status(r, "default", room), want) == want, room
