"""The show on air while the scorer archives a big earlier show: how long its events wait.

``python -m bench.archive_live [--viewers 100000] [--rate 2000] [--seconds 20]``

A shop's earlier show of N viewers (``bench.reopen.build_show``: simulated, scored, the shop clock
31 minutes past its end) is due for archiving; a running scorer (``Worker.run``, looking for idle
rooms every second) meets it while a live room's events arrive at ``--rate`` events a second, in
50-event entries written by the consumer's writer.  Reported: the live events' receipt -> applied
latency over the run (the scorer's own figures: p50, p99, the largest; the archive runs through most
of it), and how long the archive took (its ``archived`` log line).  Run it on two trees to compare
(``PYTHONPATH`` of the other tree, this file from this one).  Exit code 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from bench._util import private_server, write_frames
from bench.reopen import SHOP, build_show
from fanops.config import Config
from scoring.worker import Worker

FRAME = 50


class _Archived(logging.Handler):
    """The moment the scorer logs the big show archived."""

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("archived room"):
            self.at = time.monotonic()


def _paced(rate: int, seconds: float) -> Iterator[list[dict[str, Any]]]:
    """The live room's frames, ``FRAME`` events each, each handed out when ``rate`` a second makes it due."""
    n, t0, ts0 = 0, time.monotonic(), int(time.time() * 1000)
    while time.monotonic() - t0 < seconds:
        wait = t0 + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        yield [{"id": f"live-{n + i}", "shop": SHOP, "room": "on-air", "ts": ts0 + n + i, "type": "like",
                "viewer": {"id": f"fan-{(n + i) % 5000}"}} for i in range(FRAME)]
        n += FRAME


def run(url: str, data: Any, viewers: int, rate: int, seconds: float) -> dict[str, float]:
    import redis

    r = redis.Redis.from_url(url, socket_timeout=120)
    cfg = dataclasses.replace(Config.from_env({}, redis_url=url, data_dir=data / "data"), archive_every_s=1)
    _room, events, _end, _who = build_show(r, cfg, viewers, 6, seed=7)
    seen = _Archived()
    logging.getLogger("scoring").addHandler(seen)
    logging.getLogger("scoring").setLevel(logging.INFO)
    w = Worker(r, cfg, name="live", shops=[SHOP])
    thread = threading.Thread(target=w.run, daemon=True)
    t0 = time.monotonic()
    thread.start()
    n = write_frames(cfg, _paced(rate, seconds), FRAME)  # one writer: an entry a frame, as they come
    deadline = time.monotonic() + 120
    while w.stats.events < n and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop()
    thread.join(60)
    return {"show events": events, "live events": n, "archive s": (seen.at - t0) if seen.at else float("nan"),
            "p50 ms": w.stats.percentile(50), "p99 ms": w.stats.percentile(99), "max ms": w.stats.percentile(100)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.archive_live", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--viewers", type=int, default=100_000)
    p.add_argument("--rate", type=int, default=2000, help="the live room's events a second")
    p.add_argument("--seconds", type=float, default=20.0)
    a = p.parse_args(argv)
    with private_server() as (info, d):
        got = run(info.url, d, a.viewers, a.rate, a.seconds)
    print(f"earlier show {a.viewers:,} viewers ({got['show events']:,} events); live room {a.rate:,} events/s "
          f"for {a.seconds:g} s ({got['live events']:,} events)")
    print(f"archive done {got['archive s']:.1f} s after the scorer started; live events receipt -> applied: "
          f"p50 {got['p50 ms']:.0f} ms, p99 {got['p99 ms']:.0f} ms, max {got['max ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
