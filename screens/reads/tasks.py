"""The follow-up queue screen's read: one page of tasks, by priority (``fanops.queue.list_tasks``)."""

from __future__ import annotations

import redis

from fanops import queue
from fanops.queue import OPEN, Task
from fanops.state import TASK_STATES
from screens.reads import rooms

QUEUE_SCAN = 200  # tasks read per state per refresh, highest priority first
STATE_FILTERS = (OPEN, *TASK_STATES)
TEXT_CHARS = 200  # what a viewer said, as a card shows it


def task_page(r: redis.Redis, shop: str, state: str = OPEN, *, tier: str | None = None,
              lang: str | None = None, sendable_now: bool = False, limit: int = 20,
              scan: int = QUEUE_SCAN) -> list[Task]:
    """One page of the queue screen: ``queue.list_tasks`` on the screens' clock, reading at most
    ``scan`` tasks per state at each refresh."""
    return queue.list_tasks(r, shop, state, tier=tier, lang=lang, sendable_now=sendable_now, limit=limit,
                            now_ms=int(rooms.wall_clock() * 1000), scan=scan)
