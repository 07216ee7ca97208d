"""The follow-up queue screen's read: one page of tasks, by priority."""

from __future__ import annotations

import redis

from fanops import keys, rules_store
from fanops.queue import Task, _task_from_rec, finish, read_tasks, split_task_id
from fanops.replies import to_str
from fanops.state import TASK_STATES
from screens.reads import rooms

QUEUE_SCAN = 200  # tasks read per state per refresh, highest priority first
OPEN = "open"  # pending and claimed together
STATE_FILTERS = (OPEN, *TASK_STATES)
TEXT_CHARS = 200  # what a viewer said, as a card shows it


def task_page(r: redis.Redis, shop: str, state: str = OPEN, *, tier: str | None = None,
              lang: str | None = None, sendable_now: bool = False, limit: int = 20,
              now_ms: int | None = None, scan: int = QUEUE_SCAN) -> list[Task]:
    """One page of tasks for the queue screen, by priority (ties: longer dwell, then viewer id).

    ``open`` is pending and claimed tasks together (a lapsed claim counts as pending), so an
    operator sees the tasks others hold.  Reads at most ``scan`` tasks per state.
    """
    now = now_ms if now_ms is not None else int(rooms.wall_clock() * 1000)
    states = ["pending", "claimed"] if state in (OPEN, "pending", "claimed") else [state]
    p = r.pipeline(transaction=False)
    for s in states:
        p.zrevrange(keys.queue(shop, s), 0, scan - 1)
    ids: list[str] = []
    for m in (m for ms in p.execute() for m in ms):
        tid = to_str(m)
        try:
            split_task_id(tid)
        except ValueError:
            continue  # not a task id of this version
        ids.append(tid)
    if not ids:
        return []
    hashes = read_tasks(r, shop, ids)
    settings, _ = rules_store.load(r, shop)
    templates = rules_store.load_templates(r, shop)
    out: list[Task] = []
    for tid, h in zip(ids, hashes, strict=True):
        if h is None:
            continue
        # the local time only if the filter needs it, the message only for the page shown (below)
        t = _task_from_rec(tid, h, now, settings, templates, local=sendable_now, message=False)
        if state != OPEN and t.state != state:
            continue
        if tier and t.tier != tier:
            continue
        if lang and not (t.lang or "").lower().startswith(lang.lower()):
            continue
        if sendable_now and not t.sendable_now:
            continue
        out.append(t)
    out.sort(key=lambda t: (-t.priority, -t.dwell_ms, t.viewer))
    return [finish(t, now, settings, templates, local=not sendable_now) for t in out[:limit]]
