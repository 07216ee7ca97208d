"""A batch's events of shows that were archived (spec/events.md: no accepted event is ever dropped
for arriving late): repeats of what an archive holds are known by its ids, whether the show is
archived or open again; a late event the archive does not hold opens its show again
(``scoring.reopen``); and a viewer whose event is earlier than the end of an archived room they
attended gets that room back in their state, so that the rules see it whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from fanops import keys
from fanops.config import Config
from fanops.schema import Event
from fanops.state import past_numbers, unpack_task, unpack_viewer
from scoring.archive import archived_repeats
from scoring.batch_reads import Archived, ArchivedRooms, Head, read_head
from scoring.reopen import reopen_room, unfold_for_events


def decided_before(r: redis.Redis, shop: str, events: list[Event], head: Head, archived: Archived) -> set[str]:
    """Archived rooms whose open follow-up task a late consent event of its viewer may take back:
    the task was made at a clock value (``task_at``) at or after the consent's ts, so the consent
    the rules saw then was not this one. Only the room's records can say again whether and when
    the task is made (spec/tiers.md: "the first time all of these hold"): the room is opened
    again. (A refusal after ``task_at`` only withdraws the task, which needs no record.)"""
    late = [ev for ev in events if ev.__struct_config__.tag == "consent" and ev.ts <= archived.last]
    if not late:
        return set()
    earliest: dict[str, int] = {}
    for ev in late:
        earliest[ev.viewer.id] = min(ev.ts, earliest.get(ev.viewer.id, ev.ts))
    pairs = []
    for vid in earliest:
        blob = head.viewers.get(vid)
        v = unpack_viewer(blob) if blob else None
        if v is not None:  # its archived rooms, folded into its state or not yet
            pairs += [(rm, vid) for rm in v.rooms if rm in archived.by_room]
            pairs += [(archived.ids[no], vid) for no in past_numbers(v) if no in archived.ids]
    if not pairs:
        return set()
    p = r.pipeline(transaction=False)
    for room, vid in pairs:
        p.hget(keys.tasks(shop, room), vid)
    out = set()
    for (room, vid), b in zip(pairs, cast("list[bytes | None]", p.execute()), strict=True):
        if b:
            t = unpack_task(b)
            if t.state in ("pending", "claimed") and t.task_at >= earliest[vid]:
                out.add(room)
    return out


@dataclass(frozen=True)
class Late:
    head: Head  # read again if a show was opened again
    archived: Archived
    events: list[Event]  # the batch's events but the repeats
    repeats: set[tuple[str, str]]  # (room, id) of the repeats of archived shows' events
    unfolded: dict[str, bytes]  # viewer -> state with archived rooms brought back (scored from it)


def take_late(r: redis.Redis, cfg: Config, shop: str, events: list[Event], head: Head,
              rooms: ArchivedRooms) -> Late:
    archived = rooms.get(shop, (head.room_no_seq, head.archive_epoch), head.clock)
    had = [ev for ev in events if ev.room in archived.by_room or ev.room in archived.reopened]
    repeats = archived_repeats(cfg, shop, had) if had else set()
    if repeats:
        events = [ev for ev in events if (ev.room, ev.id) not in repeats]
    late = sorted({ev.room for ev in events if ev.room in archived.by_room}
                  | decided_before(r, shop, events, head, archived))
    if late and [rm for rm in late if reopen_room(r, cfg, shop, rm)]:
        head = read_head(r, shop, list(dict.fromkeys(ev.viewer.id for ev in events)))
        archived = rooms.get(shop, (head.room_no_seq, head.archive_epoch), head.clock)
    kept = [ev for ev in events if ev.room not in archived.by_room]
    early = [ev for ev in kept if ev.ts <= archived.last]  # the others cannot predate an archived room
    unfolded = unfold_for_events(cfg, shop, head.viewers, early, archived.ids) if early else {}
    return Late(head, archived, events, repeats, unfolded)
