"""A batch's events of shows that were archived (spec/events.md: no accepted event is ever dropped
for arriving late): repeats of what an archive holds are known by its ids, whether the show is
archived or open again; a late event the archive does not hold opens its show again
(``scoring.reopen``), and so does a late consent event of a viewer who attended it (their task
there may change: see ``consent_rooms``); and a viewer whose event is earlier than the end of an
archived room they attended gets that room back in their state, so that the rules see it whole."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from fanops import keys
from fanops.config import Config
from fanops.schema import Event, event_type
from fanops.state import past_numbers, unpack_viewer
from scoring.archive import archived_repeats
from scoring.batch_reads import Archived, ArchivedRooms, Head, read_head
from scoring.reopen import reopen_room, unfold_for_events


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
                  | set(consent_rooms(r, cfg, shop, events, head, archived)))
    if late and [rm for rm in late if reopen_room(r, cfg, shop, rm)]:
        head = read_head(r, shop, list(dict.fromkeys(ev.viewer.id for ev in events)))
        archived = rooms.get(shop, (head.room_no_seq, head.archive_epoch), head.clock)
    kept = [ev for ev in events if ev.room not in archived.by_room]
    early = [ev for ev in kept if ev.ts <= archived.last]  # the others cannot predate an archived room
    unfolded = unfold_for_events(cfg, shop, head.viewers, early, archived.ids) if early else {}
    return Late(head, archived, events, repeats, unfolded)


def consent_rooms(r: redis.Redis, cfg: Config, shop: str, events: list[Event], head: Head,
                  archived: Archived) -> list[str]:
    """The archived rooms whose follow-up tasks a consent event of the batch may change: rooms its
    viewer attended that were still open, in an in-order run, when it came (its ts is less than
    ``FANOPS_ARCHIVE_IDLE_MIN`` after the room's last event).  In order, the scorer derived the
    viewer's task there again from every consent up to the task's moment; arriving once the room
    is archived, only a refusal after an open task could still withdraw it, and a refusal (or a
    grant) before the task's moment would be lost: the task made when it should not be, or not
    made.  Such rooms are opened again, like the rooms of a late event.  Only consents earlier
    than that bound of the last archived show are looked at: nothing on the live path."""
    idle = cfg.archive_idle_min * 60_000
    since: dict[str, int] = {}  # room -> the earliest such consent of one of its viewers
    for ev in events:
        if ev.ts >= archived.last + idle or event_type(ev) != "consent":
            continue
        b = head.viewers.get(ev.viewer.id)
        if not b:
            continue
        s = unpack_viewer(b)
        rooms = [rm for rm in s.rooms if rm in archived.by_room]
        rooms += [archived.ids[n] for n in past_numbers(s) if n in archived.ids]
        for rm in rooms:
            since[rm] = min(since.get(rm, ev.ts), ev.ts)
    if not since:
        return []
    lasts = r.zmscore(keys.rooms(shop), list(since))
    return [rm for (rm, ts), last in zip(since.items(), lasts, strict=True) if last is not None and ts < last + idle]
