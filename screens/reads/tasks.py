"""The follow-up queue screen's read: one page of tasks, by priority (``fanops.queue.list_tasks``)."""

from __future__ import annotations

import redis

from fanops import queue
from fanops.queue import OPEN, Task
from fanops.state import TASK_STATES
from screens.reads import rooms

QUEUE_SCAN = 200  # tasks read per state per refresh, highest priority first
LIVE_SCAN = 1000  # ... when only the live room's are shown
STATE_FILTERS = (OPEN, *TASK_STATES)
TEXT_CHARS = 200  # what a viewer said, as a card shows it


def task_page(r: redis.Redis, shop: str, state: str = OPEN, *, tier: str | None = None,
              lang: str | None = None, sendable_now: bool = False, limit: int = 20,
              scan: int = QUEUE_SCAN, room: str | None = None, kind: str | None = None) -> list[Task]:
    """One page of the queue screen: ``queue.list_tasks`` on the screens' clock, reading at most
    ``scan`` tasks per state at each refresh (``LIVE_SCAN`` for one room's: a live room's tasks
    are among the shop's, and the most recent)."""
    return queue.list_tasks(r, shop, state, tier=tier, lang=lang, sendable_now=sendable_now, limit=limit,
                            now_ms=int(rooms.wall_clock() * 1000), scan=scan if room is None else LIVE_SCAN,
                            room=room, kind=kind)


def live_room(r: redis.Redis, shop: str) -> str | None:
    """The room live now (an event in the last ``rooms.LIVE_MS``), the most recent; None if none."""
    recent = rooms.room_list(r, shop, int(rooms.wall_clock() * 1000), limit=1)
    return recent[0].id if recent and recent[0].live else None
