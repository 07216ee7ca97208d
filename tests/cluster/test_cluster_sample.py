"""The recorded sample feed on a Redis Cluster (3 primaries, 3 replicas) gives the spec's status,
for its shops and for a copy of its "default" shop whose slot sits on another primary."""

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


def _copy(frames: list[str], shop: str) -> list[str]:
    """The well-formed frames' events of shop "default", as events of ``shop``."""
    out = []
    for ln in frames:
        try:
            x = json.loads(ln)
        except ValueError:
            continue
        evs = x if isinstance(x, list) else [x]
        cp = [{**e, "shop": shop} for e in evs if isinstance(e, dict) and e.get("shop", "default") == "default"]
        if cp:
            out.append(json.dumps(cp))
    return out


def test_sample_feed_on_a_cluster_gives_the_expected_status(cluster, cr, ccfg, expected):
    used = {cluster.primary_of(keys.stats(s)) for s in ("default", "other-shop")}
    copy = next(s for s in (f"copy-{i}" for i in range(100)) if cluster.primary_of(keys.stats(s)) not in used)
    frames = read_lines(SAMPLES / "weeks-small.jsonl")
    frames += _copy(frames, copy)
    run_consumer(ccfg, lambda ws, n: send_all(ws, frames), lambda c: c.counters.frames >= len(frames),
                 connect=lambda: db.connect_async(ccfg))
    drain(cr, ccfg)
    assert lag(cr, "default") == 0 and lag(cr, copy) == 0
    for room, want in expected["status_by_room"].items():
        want = {k: v for k, v in want.items() if k != "dead_letters"}  # one count for all shops
        assert project(status(cr, "default", room), want) == want, room
        assert project(status(cr, copy, room), want) == {**want, "shop": copy}, room
    room, want = next(iter(expected["status_by_room"].items()))
    assert status(cr, "default")["dead_letters"] > want["dead_letters"]  # the copy's bad events too
    out = subprocess.run([sys.executable, "-m", "scoring", "status", "--shop", "default", "--room", room,
                          "--redis", cluster.url], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert project(got, want) == {**want, "dead_letters": got["dead_letters"]}
    # each shop's keys on one node, the two shops' on two
    nodes = [{cluster.primary_of(k) for k in (keys.stats(s), keys.viewers(s), *keys.streams(s))}
             for s in ("default", copy)]
    assert all(len(n) == 1 for n in nodes) and nodes[0] != nodes[1]
