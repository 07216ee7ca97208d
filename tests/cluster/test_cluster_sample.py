"""The recorded sample feed on a Redis Cluster (3 primaries, 3 replicas) gives the spec's status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanops import keys
from fanops.read import status
from fanops.runtime import db
from tests.conftest import SAMPLES
from tests.feeds import send_all
from tests.pipeline import drain, lag, project, read_lines, run_consumer


@pytest.fixture
def expected() -> dict:
    path = SAMPLES / "weeks-small.expected.json"
    if not path.exists():
        pytest.fail(f"sample files missing: expected {path}")
    return json.loads(path.read_text())


def test_sample_feed_on_a_cluster_gives_the_expected_status(cluster, cr, ccfg, expected):
    frames = read_lines(SAMPLES / "weeks-small.jsonl")
    run_consumer(ccfg, lambda ws, n: send_all(ws, frames), lambda c: c.counters.frames >= len(frames),
                 connect=lambda: db.connect_async(ccfg))
    drain(cr, ccfg)
    assert lag(cr, "default") == 0
    for room, want in expected["status_by_room"].items():
        assert project(status(cr, "default", room), want) == want, room
    room, want = next(iter(expected["status_by_room"].items()))
    out = subprocess.run([sys.executable, "-m", "scoring", "status", "--shop", "default", "--room", room,
                          "--redis", cluster.url], capture_output=True, text=True, check=True)
    assert project(json.loads(out.stdout), want) == want
    # the shop's keys sit on one node; the dead letters and the scorers' list on their own slots
    assert len({cluster.primary_of(k) for k in (keys.stats("default"), keys.viewers("default"),
                                                 *keys.streams("default"))}) == 1
