"""``kill -9`` of a scorer process mid-run, then a restart: the final state is the same.

A simulated feed of ~29,000 events (three earlier shows, then a fast live show) is
ingested by the real consumer.  Then ``python -m scoring run`` processes apply it, one
stream entry per batch so that a run lasts long enough to be cut: a process is stopped
while it holds an entry it has read but not acknowledged, killed with SIGKILL, and the
work is finished by a restart under the same name (its own pending entries first), by a
new process under another name (XAUTOCLAIM after ``FANOPS_CLAIM_IDLE_MS``), or by a
second process that was running all along.  Once ``lag`` is 0, ``status`` for the shop
and every room, every viewer's tier and every follow-up task equal those of an
uninterrupted in-process run of the same feed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fanops import keys
from fanops.config import Config
from fanops.read import status
from fanops.runtime import server
from fanops.state import unpack_viewer
from realtime.simulator import SimSettings, encode_frame, generate
from tests.conftest import wait_for
from tests.pipeline import differences, drain, ingest_frames

SHOP = "default"
ROOT = Path(__file__).resolve().parents[2]
CLAIM_IDLE_MS = 500
FEED = SimSettings(seed=3, viewers=2000, rate=2000, duration=10, history_shows=3,
                   start_ms=1_760_000_000_000, bad_ratio=0.001, dup_ratio=0.002)
FOLLOWUP_STATES = ("pending", "claimed", "sent", "skipped", "converted", "withdrawn")


# ---------------------------------------------------------------- the feed and the expected state
@pytest.fixture(scope="module")
def frames() -> list[str]:
    return [encode_frame(f).decode("utf-8") for f in generate(FEED)]


def ingest_config(url: str, data_dir: Path, **kw: Any) -> Config:
    # small flushes: a few hundred stream entries, so that a run can be cut in the middle
    return Config.from_env({}, redis_url=url, data_dir=data_dir, flush_ms=5, flush_events=50, **kw)


def snapshot(r: redis.Redis) -> dict[str, Any]:
    """Everything a user sees of the shop: status (shop, rooms), tiers, follow-up tasks."""
    rooms = sorted(m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1))
    tasks = {}
    for s in FOLLOWUP_STATES:
        for m in r.zrange(keys.queue(SHOP, s), 0, -1):
            tid = m.decode()  # a lingered task's id is a (room, viewer) pair; another kind's says its kind
            tasks["/".join(keys.split_pair(tid)) if tid[:1].isdigit() else tid.replace(":", "/", 2)] = s
    return {"shop": status(r, SHOP),
            "rooms": {room: status(r, SHOP, room)["room"] for room in rooms},
            "tiers": {k.decode(): unpack_viewer(v).tier for k, v in r.hgetall(keys.viewers(SHOP)).items()},
            "tasks": tasks}


@pytest.fixture(scope="module")
def uninterrupted(redis_server: server.ServerInfo, frames: list[str]) -> dict[str, Any]:
    """The state after one in-process worker applied the whole feed without interruption."""
    r = redis.Redis.from_url(redis_server.url)
    try:
        r.flushall()
        with tempfile.TemporaryDirectory() as d:
            ingest_frames(ingest_config(redis_server.url, Path(d)), frames)
            drain(r, Config.from_env({}, redis_url=redis_server.url, data_dir=Path(d), worker_batch=1))
        snap = snapshot(r)
        r.flushall()
    finally:
        r.close()
    assert snap["shop"]["lag"] == 0 and snap["shop"]["events_applied"] > 20_000
    assert len(snap["rooms"]) == 4 and len(snap["tiers"]) > 2_000 and len(snap["tasks"]) > 100
    return snap


# ---------------------------------------------------------------- processes
class Scorers:
    """``python -m scoring run`` processes started by a test; any left are killed at the end."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), FANOPS_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
                   FANOPS_WORKER_BATCH="1", FANOPS_LOG="INFO", FANOPS_DATA_DIR=str(self.logs / "data"))
        env.pop("REDIS_URL", None)
        log = open(self.logs / f"{name}-{len(self.procs)}.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "scoring", "run", "--name", name, "--redis", self.url],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        """SIGTERM: the worker finishes its batch and exits 0."""
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0, self.output()

    def output(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}"
                         for f in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


@pytest.fixture
def scorers(redis_url: str, tmp_path: Path) -> Iterator[Scorers]:
    s = Scorers(redis_url, tmp_path)
    yield s
    s.close()


def counts(r: redis.Redis) -> tuple[int, int]:
    st = status(r, SHOP)
    return st["events_applied"], st["events_applied"] + st["lag"]


def pending_of(r: redis.Redis, name: str) -> list[dict[str, Any]]:
    return [p for s in keys.streams(SHOP)
            for p in r.xpending_range(s, keys.GROUP, "-", "+", 100, consumername=name)]


def stopped(p: subprocess.Popen[bytes]) -> bool:
    """The process is in the stopped state (SIGSTOP has taken effect)."""
    stat = Path(f"/proc/{p.pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


def kill_mid_run(r: redis.Redis, p: subprocess.Popen[bytes], name: str, after_events: int) -> list[bytes]:
    """Once ``after_events`` are applied, SIGKILL ``p`` at a moment when it holds an entry
    it has read but not acknowledged (frozen first with SIGSTOP to look).  Returns the ids
    of the entries it left behind."""
    wait_for(lambda: counts(r)[0] >= after_events, 60, f"{after_events} events applied")
    for _ in range(200):
        os.kill(p.pid, signal.SIGSTOP)
        wait_for(lambda: stopped(p), 10, "the worker to stop")
        r.ping()  # anything it sent before it stopped is executed before the next command
        if pending_of(r, name):
            p.kill()
            p.wait(timeout=10)
            held = [h["message_id"] for h in pending_of(r, name)]
            applied, accepted = counts(r)
            assert held and 0 < applied < accepted, "the worker was not killed in the middle of its run"
            return held
        os.kill(p.pid, signal.SIGCONT)
        seen = counts(r)[0]
        wait_for(lambda seen=seen: counts(r)[0] > seen or p.poll() is not None, 30, "the worker to apply more")
        assert p.poll() is None, "the worker ended before it could be killed mid-run"
    raise AssertionError("never caught the worker holding an unacknowledged entry")


def heartbeat(r: redis.Redis, name: str) -> dict[str, Any]:
    """The last heartbeat of a scorer process (its final one once stopped with SIGTERM)."""
    raw = r.get(keys.heartbeat("scorer", name))
    assert raw, f"no heartbeat from {name}"
    return json.loads(raw)


def finish(r: redis.Redis, scorers: Scorers, timeout: float = 90) -> None:
    wait_for(lambda: status(r, SHOP)["lag"] == 0, timeout, "lag 0 after the restart")
    assert sum(r.xpending(s, keys.GROUP)["pending"] for s in keys.streams(SHOP)) == 0


def assert_same_as(r: redis.Redis, want: dict[str, Any]) -> None:
    diff = differences(snapshot(r), want)
    assert not diff, f"{len(diff)} differences from the uninterrupted run:\n" + "\n".join(diff[:30])


# ---------------------------------------------------------------- the cases
def test_killed_worker_restarted_under_the_same_name_gives_the_same_state(
        r, redis_url, tmp_path, frames, uninterrupted, scorers):
    ingest_frames(ingest_config(redis_url, tmp_path), frames)
    held = kill_mid_run(r, scorers.start("w1"), "w1", after_events=3_000)  # in an earlier show
    assert [h["message_id"] for h in pending_of(r, "w1")] == held
    p = scorers.start("w1")  # its own unacknowledged entries first, then the rest
    finish(r, scorers)
    scorers.stop(p)
    assert_same_as(r, uninterrupted)


def test_killed_worker_is_taken_over_by_another_name_after_the_idle_time(
        r, redis_url, tmp_path, frames, uninterrupted, scorers):
    ingest_frames(ingest_config(redis_url, tmp_path), frames)
    held = kill_mid_run(r, scorers.start("w1"), "w1", after_events=3_000)  # in an earlier show
    # the new process comes up once the dead one's entry is claimable, so that its first round
    # takes it over (a process started at once applies it a second later, after newer entries:
    # the two-worker case below is that situation)
    wait_for(lambda: all(h["time_since_delivered"] >= CLAIM_IDLE_MS for h in pending_of(r, "w1")), 10,
             "the dead worker's entry to be idle for FANOPS_CLAIM_IDLE_MS")
    p = scorers.start("w2")
    finish(r, scorers)
    scorers.stop(p)
    assert pending_of(r, "w1") == []
    # one entry a partition stream at most (FANOPS_WORKER_BATCH=1): each taken over once
    assert heartbeat(r, "w2")["claimed"] == len(held) and 1 <= len(held) <= keys.PARTITIONS, scorers.output()
    assert_same_as(r, uninterrupted)


def test_two_workers_at_once_one_killed_mid_run_gives_the_same_state(
        r, redis_url, tmp_path, frames, uninterrupted, scorers):
    ingest_frames(ingest_config(redis_url, tmp_path), frames)
    w2 = scorers.start("w2")
    held = kill_mid_run(r, scorers.start("w1"), "w1", after_events=12_000)  # in the live show
    finish(r, scorers)
    scorers.stop(w2)
    assert pending_of(r, "w1") == []
    assert heartbeat(r, "w2")["claimed"] >= len(held), scorers.output()
    assert_same_as(r, uninterrupted)
