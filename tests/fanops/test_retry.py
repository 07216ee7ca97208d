"""The one retry policy: what a wait fixes, how long it waits, and that an outage of a real
server ends in the call going through (never in an exception the process dies of)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions as rexc
from redis._parsers.base import BaseParser

from fanops import retry
from fanops.runtime import server


@pytest.mark.parametrize(("error", "retryable"), [
    (redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused."), True),
    (redis.TimeoutError("Timeout reading from socket"), True),
    (redis.BusyLoadingError("LOADING Redis is loading the dataset in memory"), True),
    (redis.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"), True),
    (redis.ResponseError("LOADING Redis is loading the dataset in memory"), True),
    (redis.ResponseError("MASTERDOWN Link with MASTER is down"), True),
    (redis.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"), True),
    (redis.ResponseError("CLUSTERDOWN The cluster is down"), True),
    (redis.ResponseError("READONLY You can't write against a read only replica."), True),
    (ConnectionResetError("Connection reset by peer"), True),
    # as redis-py parses the server's replies: a class of its own, the code cut off the text
    *((BaseParser.parse_error(reply), True) for reply in (
        "CLUSTERDOWN The cluster is down", "MASTERDOWN Link with MASTER is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "READONLY You can't write against a read only replica.", "LOADING Redis is loading the dataset")),
    (rexc.SlotNotCoveredError("Command # 1 (GET) of pipeline caused error: slot 5 not covered"), True),
    (rexc.ClusterError("Cluster error: TTL exhausted."), True),
    (BaseParser.parse_error("CROSSSLOT Keys in request don't hash to the same slot"), False),
    (rexc.CrossSlotTransactionError("All keys involved in a cluster transaction must map to the same slot"),
     False),
    (redis.ResponseError("BUSYGROUP Consumer Group name already exists"), False),
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (redis.ResponseError("NOSCRIPT No matching script"), False),
    (redis.AuthenticationError("invalid username-password pair"), False),
    (ValueError("bad"), False),
])
def test_only_a_server_away_busy_or_starting_is_waited_for(error: Exception, retryable: bool) -> None:
    assert retry.is_retryable(error) is retryable


def test_backoff_grows_to_its_cap_with_jitter_and_starts_again_after_a_success() -> None:
    b = retry.Backoff(initial=0.5, cap=8, rng=random.Random(7))
    delays = [b.next() for _ in range(10)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 8 for d in delays) and max(delays) >= 4
    b.reset()
    assert b.next() <= 0.5


def test_an_outage_is_dated_from_its_first_failure_and_cleared_by_a_success() -> None:
    o = retry.Outage()
    assert o.as_fields() == {} and o.ended(now=5.0) is None
    assert o.failed(redis.ConnectionError("refused"), now=100.0) is True
    assert o.failed(redis.ConnectionError("refused again"), now=103.0) is False
    assert o.as_fields() == {"redis_down_since": 100.0, "redis_error": "ConnectionError: refused again"}
    assert o.ended(now=110.0) == 10.0
    assert o.as_fields() == {} and o.failures == 0


def test_an_error_a_wait_cannot_fix_is_raised_at_once() -> None:
    calls = []

    def wrongtype() -> None:
        calls.append(1)
        raise redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        retry.call(wrongtype, "test", outage=retry.Outage(), backoff=retry.Backoff(), sleep=lambda s: None)
    assert calls == [1]


def test_a_process_asked_to_stop_during_an_outage_stops_waiting() -> None:
    def down() -> None:
        raise redis.ConnectionError("refused")

    with pytest.raises(InterruptedError, match="stopped while Redis was unreachable"):
        retry.call(down, "test", outage=retry.Outage(), backoff=retry.Backoff(), stopping=lambda: True,
                   sleep=lambda s: None)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A server of this test alone, so that the test can stop and restart it."""
    d, port = tmp_path / "redis", server.free_port()
    server.ensure_running(d, port=port)
    yield d, port
    server.stop(d)


def test_a_call_during_a_server_restart_goes_through_once_the_server_is_back(own_server) -> None:
    d, port = own_server
    r = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)
    r.set("n", 41)
    server.stop(d)
    restart = threading.Timer(1.5, lambda: server.ensure_running(d, port=port))
    restart.start()
    outage, t0 = retry.Outage(), time.monotonic()
    try:
        got = retry.call(lambda: r.incr("n"), "test", outage=outage, backoff=retry.Backoff(initial=0.1, cap=0.5))
    finally:
        restart.join()
    assert got == 42  # the data survived the restart (append-only file) and the increment ran once
    assert time.monotonic() - t0 >= 1.0
    assert outage.since is None  # over, and said so
    r.close()


def test_backoff_waits_at_its_cap_however_long_an_outage_or_a_full_backlog_lasts() -> None:
    """A writer held for hours (a full backlog, Redis away) retries thousands of times: each
    wait stays at the cap, never an overflow that would stop the consumer holding the events."""
    b = retry.Backoff(initial=0.01, cap=0.05, rng=random.Random(3))
    delays = [b.next() for _ in range(5000)]
    assert all(0.025 <= d <= 0.05 for d in delays[10:])


def test_a_pause_of_the_collector_lasts_until_the_last_thread_that_paused_it_ends():
    """A scorer's batches and its archiving (a thread of their own) each pause the cyclic collector:
    it must stay off while either runs, and come back on when both have ended."""
    import gc
    import threading

    from fanops.runtime.gcpause import gc_paused

    assert gc.isenabled()
    in_b, a_done = threading.Event(), threading.Event()
    seen = []

    def b() -> None:
        with gc_paused():
            in_b.set()
            a_done.wait(5)
            seen.append(gc.isenabled())  # A's pause ended while B's runs

    t = threading.Thread(target=b)
    with gc_paused():
        t.start()
        in_b.wait(5)
    a_done.set()
    t.join(5)
    assert seen == [False] and gc.isenabled()
