"""A batch's events of shows that were archived (spec/events.md: no accepted event is ever dropped
for arriving late): repeats of what an archive holds are known by its ids while the show is
archived, and while it is open again until the stream entries accepted before it opened are
applied (from then on the consumer knows them: ``still_checked``); a late event the archive
does not hold opens its show again (``scoring.reopen``), and so does a late consent event of a
viewer who attended it (their task there may change: ``consent_rooms``); and a viewer whose
event is earlier than the end of an archived room they attended gets that room back in their
state, so that the rules see it whole."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from fanops import keys
from fanops.config import Config
from fanops.schema import Event, event_type
from fanops.state import past_numbers, unpack_viewer
from scoring.archive import archived_repeats
from scoring.batch_reads import Archived, ArchivedRooms, Head, read_head
from scoring.eventlog import applied_below, group_progress, stream_id
from scoring.reopen import reopen_room, unfold_for_events

log = logging.getLogger(__name__)


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
    checking = still_checked(r, shop, {ev.room for ev in events if ev.room in archived.reopened})
    had = [ev for ev in events if ev.room in archived.by_room or ev.room in checking]
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


def reopen_held(r: redis.Redis, cfg: Config, shop: str, pairs: list[tuple[str, str]], archived: Archived) -> bool:
    """Open again the archived shows of ``pairs`` taken from the lurk index (the tasks a sent
    follow-up held back past the show's end: ``scoring.archive`` keeps their entries), so that they
    are scored like any other; True if one was (the batch reads again).  The entries of a show
    that cannot be opened again (an archive of an earlier version) are dropped, with a warning."""
    rooms = sorted({rm for rm, _ in pairs if rm in archived.by_room})
    if not rooms:
        return False
    opened = [rm for rm in rooms if reopen_room(r, cfg, shop, rm)]
    lost = [(rm, vid) for rm, vid in pairs if rm in rooms and rm not in opened]
    p = r.pipeline(transaction=False)
    for rm, vid in lost:
        p.zrem(keys.lurk(shop, keys.part_of(vid)), keys.pair(rm, vid))
    p.execute()
    if lost:
        log.warning("%d follow-up tasks held back by the 7-day rule in archived shows of %s that cannot be "
                    "opened again are not made: %s", len(lost), shop, lost[:10])
    return bool(opened)


def still_checked(r: redis.Redis, shop: str, rooms: set[str]) -> set[str]:
    """Of ``rooms`` (opened again), those whose events must still be checked against their archive
    for repeats: opening a room gives its dedupe table its archive's ids back, so the consumer knows
    a resend accepted after that; one accepted before (while the room was archived) may lie in a
    stream entry up to the room's ``reopen_marks`` (each stream's last entry then) that no scorer
    has applied yet.  A room opened by a version that kept no marks is always checked."""
    if not rooms:
        return set()
    order = sorted(rooms)
    p = r.pipeline(transaction=False)
    for rm in order:
        p.hget(keys.room(shop, rm), "reopen_marks")
    marks = p.execute()
    progress = group_progress(r, keys.streams(shop))
    out = set()
    for rm, m in zip(order, marks, strict=True):
        if not m:
            out.add(rm)
            continue
        for mark, prog in zip(m.split(), progress, strict=True):
            at = stream_id(mark)
            if at != (0, 0) and (prog is None or applied_below(prog) <= at):
                out.add(rm)  # an entry up to the mark may be unapplied
                break
    return out


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
