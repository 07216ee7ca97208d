"""What the scorer's core (``scoring.engine``) takes and gives: the reads of a batch (``Inputs``)
and its effects (``Effects``), which ``scoring.writeset`` turns into apply.lua's write set."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fanops.rules_settings import RuleSettings
from fanops.state import ViewerState

Pair = tuple[str, str]  # (room, viewer)


@dataclass
class Inputs:
    """What the worker read for a batch."""

    clock: int  # the shop clock before the batch
    settings: RuleSettings
    rules_version: int
    viewers: dict[str, bytes | None]  # every viewer the batch touches (events, due, lurk)
    room_viewers: dict[Pair, bytes | None]  # (room, viewer) -> packed state
    due: list[str] = field(default_factory=list)  # viewers whose tier may change by time
    lurk: list[Pair] = field(default_factory=list)  # (room, viewer) whose dwell may be reached
    # clock values from before this batch that it may need: the first one after each moment
    # (long past) at which a viewer's dwell in a room reached the threshold
    past_clock: list[int] = field(default_factory=list)
    # the shop's archived rooms by number: their rooms in viewers' states are folded (state.fold)
    archived: dict[str, int] = field(default_factory=dict)
    room_ids: dict[int, str] = field(default_factory=dict)
    open_since: int | None = None  # the first event of the shop's oldest open room (None: unknown)
    # the shop clock of the latest follow-up sent to each viewer of the records read (the sent log)
    sent_at: dict[str, int] = field(default_factory=dict)


def _counts() -> defaultdict[Any, int]:
    return defaultdict(int)


@dataclass
class Effects:
    """What one batch changes, by what it concerns (``scoring.writeset`` makes the writes)."""

    clock: int  # the shop clock after the batch
    # viewers: (viewer, its packed state as read or None, its new state); the new state of a
    # viewer whose time-index entry moves is also in ``due``: (viewer, new state, its next tier
    # change or None, the one its state as read gave, whether it had a state, whether the batch
    # took it from the time index)
    viewers: list[tuple[str, bytes | None, ViewerState]] = field(default_factory=list)
    due: list[tuple[str, ViewerState, int | None, int | None, bool, bool]] = field(default_factory=list)
    records: list[tuple[str, str, bytes]] = field(default_factory=list)  # (room, viewer, packed record)
    # counter deltas: the shop's (applied, dropped_archived), its tiers, each room's (by field
    # name), each room's per-minute ones, and the room's sums (gift value, GMV by currency)
    shop_counts: defaultdict[str, int] = field(default_factory=_counts)
    tier_counts: defaultdict[str, int] = field(default_factory=_counts)
    room_counts: defaultdict[tuple[str, str], int] = field(default_factory=_counts)
    minute_counts: defaultdict[tuple[str, str], int] = field(default_factory=_counts)
    room_sums: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    orders: list[tuple[str, str]] = field(default_factory=list)  # (room, order id): a room's orders, once each
    # index entries: (room, viewer, score) set and (room, viewer) removed
    present: list[tuple[str, str, int]] = field(default_factory=list)
    present_gone: list[Pair] = field(default_factory=list)
    lurk: list[tuple[str, str, int]] = field(default_factory=list)
    lurk_gone: list[Pair] = field(default_factory=list)
    late_window: list[tuple[str, str, int]] = field(default_factory=list)
    late_window_gone: list[Pair] = field(default_factory=list)
    # [g, v, ...]: no shop-clock value may lie in [g, v) but those the batch knew (apply.lua checks)
    late_check: list[int] = field(default_factory=list)
    seconds: dict[int, list[int]] = field(default_factory=dict)  # the batch's clock values by second: [min, max]
    room_last: dict[str, int] = field(default_factory=dict)  # each room's last event of the batch
    room_first: dict[str, int] = field(default_factory=dict)  # ... and first
    # rooms on: (room, its minute's present-count field, present since): the room's viewers present
    # since then are counted into that field; the others leave its present index
    rooms_on: list[tuple[str, str, int]] = field(default_factory=list)
    feeds: list[tuple[str, str, str]] = field(default_factory=list)  # (room, host-screen list, JSON entry)
    # (viewer, room, from, to, ts, cause, rules version, name)
    transitions: list[tuple[str, str, str, str, int, str, int, str]] = field(default_factory=list)
    # (room, viewer) whose reactivated flag the batch moved (an earlier show's events came late): an
    # open task there is rescored (its bonus) even if the batch has no event of the room (scoring.retier)
    recard: list[Pair] = field(default_factory=list)
    # tasks, each of a (room, viewer): new (target, queue score, no task if one was sent since,
    # packed task), moved to a state, new priority (score, packed display fields), deleted,
    # withdrawn if made before a refusal of DMs at the given ts
    task_new: list[tuple[str, str, str, float, int, bytes]] = field(default_factory=list)
    task_move: list[tuple[str, str, str]] = field(default_factory=list)
    task_prio: list[tuple[str, str, float, bytes]] = field(default_factory=list)
    task_del: list[Pair] = field(default_factory=list)
    task_withdraw: list[tuple[str, str, int]] = field(default_factory=list)
    # the viewers of new lingered tasks, with the sent-log mark the batch read (-1: none): apply.lua
    # refuses the batch if one moved since (a send in between: the task is held back, not lost)
    sent_read: dict[str, int] = field(default_factory=dict)
    # the other kinds' tasks (spec/tiers.md v1.1): (viewer, *scoring.kinds.changes' item)
    kind_tasks: list[tuple[Any, ...]] = field(default_factory=list)
