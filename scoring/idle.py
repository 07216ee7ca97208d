"""A scorer's look at its shops' idle rooms and old tasks, every minute: archive the rooms idle
long enough, expire the tasks pending too long, and now and then prune settled tasks and apply
retention.

Run by ``Worker.run`` in a thread of its own (``IdleLook.start``): archiving a show of 100,000
viewers takes seconds of work (bench/reopen.py), and a live show's batches must not wait behind
it.  This is safe as archiving from another process is: a room is archived under a lock, and
the removal of its data fails (and is tried again) if a scorer wrote to it meanwhile
(``scoring.archive``); expiry and the prunes are compare-and-set against operators and scorers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from fanops import expiry, queue, retry
from fanops.config import Config
from scoring import archive, kind_prune, retention
from scoring.worker_stats import WorkerStats

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 6 * 3600.0  # how often settled tasks of archived rooms leave Redis (kept in the archive)


class IdleLook:
    def __init__(self, r: redis.Redis, cfg: Config, shops: Callable[[], list[str]], stats: WorkerStats,
                 clock: Callable[[], float], monotonic: Callable[[], float]) -> None:
        self.r, self.cfg, self.shops, self.stats = r, cfg, shops, stats
        self.clock, self.monotonic = clock, monotonic
        self._last_prune = monotonic()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def look(self) -> list[tuple[str, str]]:
        """Archive the rooms idle long enough (safe from every worker), expire the tasks pending too
        long (on the wall ``clock``), and every ``PRUNE_EVERY_S`` (``monotonic``) prune the settled
        tasks of archived rooms and of the other kinds (``scoring.kind_prune``) from Redis and apply
        retention (``scoring.retention``).  Returns the (shop, room) archived."""
        done = []
        prune = self.monotonic() - self._last_prune > PRUNE_EVERY_S
        for shop in self.shops():
            if self._stopping.is_set():
                break
            try:
                for room in archive.close_idle_rooms(self.r, shop, self.cfg, idle_ms=self.cfg.archive_idle_min * 60_000,
                                                     stopping=self._stopping.is_set):
                    log.info("archived room %s of %s", room, shop)
                    done.append((shop, room))
                if n := expiry.expire_old(self.r, shop, now_ms=int(self.clock() * 1000)):
                    log.info("%d follow-up tasks of %s expired (pending too long)", n, shop)
                if n := queue.release_expired(self.r, shop, now_ms=int(self.clock() * 1000)):
                    log.info("%d claims of %s lapsed back to pending (5 minutes unsent)", n, shop)
                if prune:
                    n = archive.prune_followups(self.r, self.cfg, shop)
                    log.info("%d settled tasks of archived rooms of %s left Redis (kept in the archive)", n, shop)
                    retention.retention_pass(self.r, self.cfg, shop)  # FANOPS_RETENTION_DAYS
                    kind_prune.prune_kind_tasks(self.r, self.cfg, shop, now_ms=int(self.clock() * 1000))  # a ledger
            except (archive.ArchiveError, OSError, redis.ResponseError) as e:
                log.warning("archiving the idle rooms of %s failed: %s", shop, e)
        if prune and not self._stopping.is_set():
            self._last_prune = self.monotonic()
        self.stats.idle_looks += 1
        return done

    def start(self) -> bool:
        """``look`` in a thread of its own; False (and nothing started) while the last one runs."""
        if self.running():
            return False
        self._thread = threading.Thread(target=self._look_logged, name="idle-look", daemon=True)
        self._thread.start()
        return True

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        """Ask a look under way to end after the room it archives, and wait for it up to ``timeout`` s
        (an archive cut short is crash-safe: its room is archived again later)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _look_logged(self) -> None:
        try:
            self.look()
        except Exception as e:
            if retry.is_retryable(e):  # Redis away or full: the next look tries again
                log.warning("the look for idle rooms failed (%s: %s): the next one tries again", type(e).__name__, e)
            else:  # a fault of ours: said in full, and the scorer goes on with its batches
                log.exception("the look for idle rooms failed: the next one tries again")
