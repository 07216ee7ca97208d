"""Redis goes away mid-show and comes back: nothing exits, and the final state is the one of an
undisturbed run (spec/events.md "Ordering and repeats").

The whole product runs as real processes on a server of this test alone: a paced replay of a
simulated show (``python -m realtime replay --speed``), ``python -m realtime consume`` and
``python -m scoring run``.  Mid-feed the server is stopped (it saves its data, as a restart or a
failover does) for a while and started again on the same port.  The consumer holds what it has
read meanwhile (the feed waits behind TCP back-pressure); the scorer waits with back-off.
Once the feed is over and the lag is 0, ``status`` for the shop and every room, every tier and
every follow-up equal those of an in-process run of the same feed that nothing disturbed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fanops import keys
from fanops.read import heartbeats, status
from fanops.runtime import server
from tests.conftest import wait_for
from tests.pipeline import differences
from tests.scoring.test_scorer_crash import FEED, SHOP, frames, snapshot, uninterrupted  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
FEED_SECONDS = 24  # the replay's pace: the outage falls in the middle of the feed


class Product:
    """Feed, consumer and scorer processes on one private server that a test may stop."""

    def __init__(self, tmp: Path, feed: Path, n_frames: int) -> None:
        self.tmp, self.feed, self.n_frames = tmp, feed, n_frames
        self.redis_dir, self.port = tmp / "redis", server.free_port()
        self.url = server.ensure_running(self.redis_dir, port=self.port).url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), FANOPS_DATA_DIR=str(self.tmp / "data"), FANOPS_LOG="INFO",
                   FANOPS_FLUSH_MS="5", FANOPS_FLUSH_EVENTS="50")
        env.pop("REDIS_URL", None)
        return env

    def start(self, name: str, *args: str) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=self.env(),
                                                stdout=log, stderr=subprocess.STDOUT)

    def start_all(self) -> None:
        feed_port = server.free_port()
        self.start("feed", "realtime", "replay", str(self.feed), "--port", str(feed_port),
                   "--speed", str(max(1, self.n_frames // FEED_SECONDS)))
        wait_for(lambda: _listening(feed_port), 30, "the feed server")
        self.start("consumer", "realtime", "consume", "--url", f"ws://127.0.0.1:{feed_port}", "--redis", self.url)
        self.start("scorer", "scoring", "run", "--name", "s1", "--redis", self.url)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.tmp.glob("*.log")))

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop(self.redis_dir)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    from realtime.simulator import encode_frame, generate

    path = tmp_path_factory.mktemp("feed") / "show.jsonl"
    lines = [encode_frame(f).decode("utf-8") for f in generate(FEED)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(lines)


@pytest.fixture
def product(tmp_path: Path, feed_file: tuple[Path, int]) -> Iterator[Product]:
    p = Product(tmp_path, *feed_file)
    yield p
    p.close()


def _accepted(p: Product) -> int:
    try:
        r = redis.Redis.from_url(p.url, socket_timeout=2)
        try:
            return int(status(r, SHOP)["events_applied"] + status(r, SHOP)["lag"])
        finally:
            r.close()
    except redis.RedisError:
        return 0


def _applied(p: Product) -> int:
    try:
        r = redis.Redis.from_url(p.url, socket_timeout=2)
        try:
            return int(status(r, SHOP)["events_applied"])
        finally:
            r.close()
    except redis.RedisError:
        return 0


def _archived(p: Product) -> int:
    r = redis.Redis.from_url(p.url, socket_timeout=2)
    try:
        return len([1 for _, ts in r.zrange(keys.rooms(SHOP), 0, -1, withscores=True)
                    if r.hexists(keys.room(SHOP, _.decode()), "archived")])
    finally:
        r.close()


def _settled(p: Product) -> dict[str, Any] | None:
    r = redis.Redis.from_url(p.url, socket_timeout=2)
    try:
        st = status(r, SHOP)
        done = p.procs["consumer"].poll() is None and st["lag"] == 0 and _accepted(p) > 0
        return snapshot(r) if done else None
    finally:
        r.close()


@pytest.mark.parametrize("outage_s", [
    10,
    # past the websocket keepalive the feed drops and, on reconnect, sends again from its start; the
    # scorer, back after 2 minutes, archives the earlier shows first: their resent events come late
    120,
])
def test_redis_stopped_mid_feed_then_back_gives_the_state_of_an_undisturbed_run(
        product: Product, outage_s: float, uninterrupted: dict[str, Any]) -> None:  # noqa: F811
    product.start_all()
    # under way: events accepted and the scorer at work (on a loaded machine a process can take
    # seconds to start; one that first meets no server at all exits with one line, by design)
    wait_for(lambda: _accepted(product) > 5_000 and _applied(product) > 0, 60, "the show to be under way")
    server.stop(product.redis_dir)
    time.sleep(outage_s)  # the outage itself: every process meets a server that is not there
    assert product.alive() == ["feed", "consumer", "scorer"], product.logs()
    server.ensure_running(product.redis_dir, port=product.port)
    wait_for(lambda: _accepted(product) >= uninterrupted["shop"]["events_applied"], 120,
             "every event of the feed accepted")
    got = wait_for(lambda: _settled(product), 120, "lag 0")
    assert product.alive() == ["feed", "consumer", "scorer"], product.logs()
    want = uninterrupted
    if _consumer_frames(product) > product.n_frames:
        # past the keepalive the feed dropped and was sent again from its start: its repeats and its
        # bad event count again (spec/cli.md), every other field is the undisturbed run's
        assert got["shop"].pop("duplicates") > uninterrupted["shop"]["duplicates"]
        got["shop"].pop("dead_letters")
        want = {**uninterrupted, "shop": {k: v for k, v in uninterrupted["shop"].items()
                                          if k not in ("duplicates", "dead_letters")}}
    diff = differences(got, want)
    assert not diff, f"{len(diff)} differences from the undisturbed run:\n" + "\n".join(diff[:30]) + product.logs()


def _consumer_frames(p: Product) -> int:
    """Frames read by the running consumer process (from its heartbeat)."""
    pid = p.procs["consumer"].pid
    r = redis.Redis.from_url(p.url, socket_timeout=2)
    try:
        return max((b["frames"] for b in heartbeats(r, "consumer") if b["name"].endswith(f":{pid}")), default=0)
    finally:
        r.close()


@pytest.mark.parametrize("when", [
    # a race: the restarted scorer may archive the earlier shows before their resent events come
    "mid_feed",
    "after_archiving",
])
def test_kill_9_of_everything_then_a_restart_with_the_feed_resent_gives_the_same_state(
        product: Product, when: str, uninterrupted: dict[str, Any]) -> None:  # noqa: F811
    """SIGKILL of the consumer, the scorer and the server at once (the server may lose its last
    second: append-only file, fsync every second); everything restarts and the feed is sent again
    from its start (a new connection to the replay gets every frame): repeats are no-ops, also
    those of shows archived before the crash (spec/events.md "Ordering and repeats")."""
    product.start_all()
    if when == "mid_feed":
        wait_for(lambda: _accepted(product) > 8_000, 60, "the show to be under way")
    else:
        wait_for(lambda: _archived(product) >= 3, 120, "the feed applied and the three earlier shows archived")
    pid = server.ensure_running(product.redis_dir, port=product.port).pid
    for name in ("consumer", "scorer"):
        product.procs[name].kill()
    os.kill(pid, signal.SIGKILL)
    for name in ("consumer", "scorer"):
        product.procs[name].wait(timeout=10)
    wait_for(lambda: not _listening(product.port), 10, "the server to be gone")
    server.ensure_running(product.redis_dir, port=product.port)
    product.start("scorer", "scoring", "run", "--name", "s1", "--redis", product.url)
    feed_port = int(product.procs["feed"].args[-3])  # type: ignore[index]
    product.start("consumer", "realtime", "consume", "--url", f"ws://127.0.0.1:{feed_port}", "--redis", product.url)
    wait_for(lambda: _consumer_frames(product) >= product.n_frames, 120, "the whole feed sent again")
    got = wait_for(lambda: _settled(product), 120, "lag 0")
    # the resent feed's repeats are counted as such, and its bad event is dead-lettered again (it
    # has no id to be known by): the two counts that rightly differ
    resent = got["shop"].pop("duplicates") - uninterrupted["shop"]["duplicates"]
    got["shop"].pop("dead_letters")
    diff = differences(got, {**uninterrupted, "shop": {k: v for k, v in uninterrupted["shop"].items()
                                                       if k not in ("duplicates", "dead_letters")}})
    assert not diff, f"{len(diff)} differences from the undisturbed run:\n" + "\n".join(diff[:30]) + product.logs()
    if when == "after_archiving":  # every event came twice: the second time, each one is a repeat
        assert resent == uninterrupted["shop"]["events_applied"] + uninterrupted["shop"]["duplicates"]
