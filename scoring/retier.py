"""Open lingered tasks of viewers whose tier changed in a batch, in rooms the batch did not score (and
those whose reactivated bonus it moved: an earlier show's events that came late).

spec/tiers.md: a task's priority has a tier bonus, and the operator sees the viewer's tier. A tier
changes by time (active to dormant), by an order or a show in another room, or by imported history:
the batch scores only the records of the rooms it touches, so the viewer's open tasks elsewhere would
keep the old tier and priority (the same events in another order, or one batch, would not). After
the batch is scored, the worker reads those records (``pairs``) and ``retier`` rewrites each open
task's priority and card, as a touch of the pair would (pure: the worker does the reads). The
tasks of rooms archived since (most open tasks: a show is archived half an hour after it ends) are
rescored from their cards once the batch is written (``archived_pairs``, ``rescore_archived``).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import redis

from fanops.rules_settings import RuleSettings
from fanops.schema import HISTORY_ROOM
from fanops.state import ViewerState, past_numbers, unpack_room_viewer
from scoring.effects import Effects
from scoring.engine import CARDED, task_effects
from scoring.recompute import rescore_pairs

log = logging.getLogger(__name__)


def _changed(fx: Effects) -> set[str]:
    return {t[0] for t in fx.transitions}


def pairs(fx: Effects) -> dict[str, list[str]]:
    """room -> viewers: the rooms of each viewer whose tier the batch changed, less the ones it scored
    (``retier`` takes those from the batch's own records)."""
    changed = _changed(fx)
    if not changed and not fx.recard:
        return {}
    scored = {(room, vid) for room, vid, _ in fx.records}
    out: dict[str, list[str]] = defaultdict(list)
    for vid, _old, new in fx.viewers:
        if vid in changed:
            for room in new.rooms:
                if room != HISTORY_ROOM and (room, vid) not in scored:
                    out[room].append(vid)
    for room, vid in fx.recard:  # an open task's reactivated bonus
        if vid not in changed and (room, vid) not in scored:
            out[room].append(vid)
    return dict(out)


def retier(fx: Effects, records: dict[tuple[str, str], bytes | None], s: RuleSettings) -> None:
    """The task rewrites for ``records`` (read for ``pairs(fx)``) and for the pairs the batch scored
    but whose task it left as it was (a record read for a consent elsewhere, say): each open task's
    priority and card under its viewer's new tier, or its room's new reactivated flag."""
    changed = _changed(fx)
    if not changed and not fx.recard:
        return
    touched = {(room, vid) for room, vid, *_ in fx.task_prio} | {(room, vid) for room, vid, *_ in fx.task_new}
    recard = set(fx.recard)
    mine = {(room, vid): b for room, vid, b in fx.records
            if (vid in changed or (room, vid) in recard) and (room, vid) not in touched}
    states: dict[str, ViewerState] = {vid: new for vid, _old, new in fx.viewers}
    for (room, vid), b in [*records.items(), *mine.items()]:
        if not b:
            continue
        rv = unpack_room_viewer(b)
        v = states[vid]
        if rv.task in CARDED:  # "pending" is the scorer's open: pending or claimed (an operator's states stay)
            task_effects(fx, room, vid, rv, v, rv.task, v.tier, fx.clock, s)


def archived_pairs(fx: Effects, room_ids: dict[int, str]) -> list[tuple[str, str]]:
    """(room, viewer): the archived (folded) rooms of each viewer whose tier the batch changed. Their
    records are in the archive, so the worker rescores their open tasks from the cards' counts once the
    batch is written (``recompute.rescore_pairs``), as a change of the rules does."""
    changed = _changed(fx)
    return [(room_ids[no], vid) for vid, _old, new in fx.viewers if vid in changed and new.past_nos
            for no in past_numbers(new) if no in room_ids]


def rescore_archived(r: redis.Redis, shop: str, pairs: list[tuple[str, str]], s: RuleSettings) -> None:
    """``archived_pairs``' open tasks rescored, once the batch is written."""
    try:
        rescore_pairs(r, shop, pairs, s)
    except redis.RedisError as e:  # the batch is written: a card left as it was is no reason to fail it
        log.warning("open tasks of %s's archived shows keep their old tier for now: %s", shop, e)
