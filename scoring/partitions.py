"""Which partitions of the shop streams a scorer reads: its share among the running scorers.

A shop's events come in ``keys.PARTITIONS`` streams split by viewer.  Running scorers
(``Worker.run``) list themselves in ``keys.scorer_members()`` with ``scoring/lua/members.lua``
and split the partitions between them by their sorted names (partition p goes to the k-th of n
when p % n == k), so two scorers never score the same viewer and never conflict.  A scorer gives
up a partition at once when the split moves it away, and takes one only once no other running
scorer lists it as its own: a partition changes hands without two scorers reading it at the same
time (which would make their batches conflict over the same viewers).  A scorer driven step by
step (``Worker.drain``, tests) reads every partition.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import cast

import redis

from fanops import keys
from fanops.scripts import script_source

log = logging.getLogger(__name__)

# how often a running scorer renews its place among the running ones (its heartbeat in the list), and
# how often while it is short of its share of the partitions (one holds a partition it must give up)
MEMBERS_EVERY_S = 0.25
MEMBERS_UNSETTLED_S = 0.05

ALL = list(range(keys.PARTITIONS))


class Share:
    """The partitions one scorer reads: every one, a fixed list (``pinned``), or, once it has
    joined the running scorers (``join``), its share of the split, renewed every
    ``MEMBERS_EVERY_S`` on the clock ``monotonic``."""

    def __init__(self, r: redis.Redis, name: str, alive_s: float, monotonic: Callable[[], float],
                 pinned: list[int] | None = None) -> None:
        self._r = r
        self._name = name
        self._alive_s = alive_s
        self._monotonic = monotonic
        self._script = r.register_script(script_source("scoring", "members"))
        self.member = False  # listed in keys.scorer_members(): reads only its share
        self.pinned = pinned is not None
        self.mine: list[int] = list(ALL if pinned is None else pinned)
        self.settled = False  # holds its whole share of the partitions
        self._last_round = -math.inf  # none yet, whatever the clock's origin

    def join(self) -> None:
        """Take part in the split among the running scorers: from the next ``current`` on, this
        scorer reads only its share, and none until its first round."""
        self.member = True
        self.mine = []

    def current(self) -> list[int]:
        """The partitions to read now; a member renews its place first when its round is due."""
        if not self.member or self.pinned:
            return self.mine
        now = self._monotonic()
        if now - self._last_round >= (MEMBERS_EVERY_S if self.settled else MEMBERS_UNSETTLED_S):
            self._last_round = now
            self._round()
        return self.mine

    def _round(self) -> None:
        res = cast(list[int], self._script(
            keys=[keys.scorer_members(), keys.scorer_parts()],
            args=[self._name, self._alive_s, keys.HEARTBEAT_INDEX_KEEP_S, keys.PARTITIONS]))
        n, k, mine = int(res[0]), int(res[1]), [int(x) for x in res[2:]]
        # short of its share: another scorer still holds a partition the split gives this one
        # (it drops it at its next round): ask again soon, so that a scorer that joins a
        # running show takes its share within a fraction of a second
        self.settled = mine == [p for p in ALL if p % n == k]
        if mine != self.mine:
            log.info("scorer %s now reads partitions %s (%d scorers running)", self._name, mine, n)
            self.mine = mine

    def leave(self) -> None:
        """Leave the running scorers' list (their next rounds split the partitions without it)."""
        if self.member:
            try:
                p = self._r.pipeline(transaction=False)
                p.zrem(keys.scorer_members(), self._name)
                p.hdel(keys.scorer_parts(), self._name)
                p.execute()
            except redis.RedisError as e:
                log.debug("could not leave the scorer list: %s", e)
