"""Every Redis key the product uses, built by one function each.

All keys live under the prefix ``fo:``.  A shop's keys carry the shop as a
hash tag (``fo:{shop}:...``) so that they share one Redis Cluster slot and a
single script call can update them atomically.  Parts that come from the feed
(shop, room, viewer ids) are escaped so that no id can forge another key or
break the hash tag.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

PREFIX = "fo:"
GROUP = "scorers"  # the consumer group of the scorer workers on each shop stream
DEAD_TAG = "{!dead}"  # shop ids are escaped, so no shop can collide with this tag
SCORERS_TAG = "{!scorers}"  # the running scorers' list and their partitions: one slot, one script


# A shop's events are split by viewer into PARTITIONS streams (and its time indexes likewise), so
# that scorers working on different partitions never touch the same viewer: up to PARTITIONS
# scorers share a shop's work without conflicting.  Partition 0 keeps the unsuffixed key names.
# Changing it is safe only with every stream drained (the scorers read partitions 0..PARTITIONS-1).
PARTITIONS = 4


@lru_cache(maxsize=1 << 18)
def part_of(viewer: str) -> int:
    """The partition of a viewer: a stable hash of the id (crc32), the same in every process."""
    return zlib.crc32(viewer.encode("utf-8", "surrogatepass")) % PARTITIONS


def _p(name: str, part: int) -> str:
    return name if part == 0 else f"{name}:{part}"


_ESC = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ":": "%3A"})


@lru_cache(maxsize=1 << 16)
def esc(part: str) -> str:
    """Escape an id for use inside a key: no ``{ } :`` or ``%`` left unescaped."""
    return part.translate(_ESC)


def pair(room: str, viewer: str) -> str:
    """One string for a (room, viewer) pair, e.g. a task id or a lurk index member.

    Length-prefixed (``"<len(room)>:<room><viewer>"``), so ids may hold any character."""
    return f"{len(room)}:{room}{viewer}"


def split_pair(member: str) -> tuple[str, str]:
    n, _, rest = member.partition(":")
    k = int(n)
    return rest[:k], rest[k:]


@lru_cache(maxsize=4096)
def tag(shop: str) -> str:
    return f"{PREFIX}{{{esc(shop)}}}"


# --- global -----------------------------------------------------------------
def shops() -> str:
    """SET of every shop seen (not in a shop slot: read and written on its own)."""
    return f"{PREFIX}shops"


def dead_stream() -> str:
    return f"{PREFIX}{DEAD_TAG}:dead"


def dead_stats() -> str:
    """HASH: ``dead_letters`` (all time), ``frames_rejected``."""
    return f"{PREFIX}{DEAD_TAG}:stats"


def dead_once() -> str:
    """ZSET (score 0, by member): a record (``fanops.ingest.dedupe_record``: 10 bytes of SHA-1, as the
    dedupe tables keep, naming no one) of ``<shop> <event id>`` for each rejected event of a customer
    import, recorded once (spec/tiers.md: importing the same file again changes nothing but
    ``duplicates``)."""
    return f"{PREFIX}{DEAD_TAG}:once"


def dead_minute(minute: int) -> str:
    """Counter of dead letters in one wall-clock minute (expires)."""
    return f"{PREFIX}{DEAD_TAG}:deadm:{minute}"


def heartbeat(kind: str, name: str) -> str:
    return f"{PREFIX}hb:{kind}:{esc(name)}"


def heartbeat_pattern(kind: str) -> str:
    return f"{PREFIX}hb:{kind}:*"


def heartbeat_index(kind: str) -> str:
    """ZSET process name -> time (s) of its last heartbeat: finds the heartbeats without a scan."""
    return f"{PREFIX}hbindex:{kind}"


HEARTBEAT_INDEX_KEEP_S = 3600


def scorer_members() -> str:
    """ZSET running scorer name -> time (s) of its last round; a scorer leaves it when it stops.
    The scorers alive split every shop's partitions between them by their sorted names."""
    return f"{PREFIX}{SCORERS_TAG}:members"


def scorer_parts() -> str:
    """HASH running scorer name -> the partitions it reads now ("0,2"): a scorer takes a partition
    only once no other running scorer lists it, so two never read one partition at once."""
    return f"{PREFIX}{SCORERS_TAG}:parts"


# --- per shop ---------------------------------------------------------------
def stream(shop: str, part: int = 0) -> str:
    """STREAM of accepted events of one partition of the viewers; one entry holds a batch (msgpack list)."""
    return _p(f"{tag(shop)}:events", part)


def streams(shop: str) -> list[str]:
    """Every event stream of a shop, by partition."""
    return [stream(shop, p) for p in range(PARTITIONS)]


@lru_cache(maxsize=4096)
def stats(shop: str) -> str:
    """HASH: accepted, applied, duplicates, clock, rules_version ..."""
    return f"{tag(shop)}:stats"


def seen(shop: str, room: str) -> str:
    """STRING "L s n r" naming the buckets (``seen_bucket``) that hold the event ids already accepted
    in a room (dedupe), as records of a linear-hashing table (``fanops/lua/dedupe.lua``)."""
    return f"{tag(shop)}:dedupe:{esc(room)}"


def seen_bucket(shop: str, room: str, i: int) -> str:
    """SET: bucket ``i`` of a room's dedupe table."""
    return f"{seen(shop, room)}:{i}"


def seen_v1(shop: str, room: str) -> str:
    """SET of the event ids accepted in a room, as versions before the dedupe hash kept them
    (moved into ``seen`` by the consumer when it first meets the room)."""
    return f"{tag(shop)}:seen:{esc(room)}"


@lru_cache(maxsize=4096)
def rooms(shop: str) -> str:
    """ZSET room -> the room's latest event ts."""
    return f"{tag(shop)}:rooms"


@lru_cache(maxsize=4096)
def room_first(shop: str) -> str:
    """ZSET room -> the room's first event ts."""
    return f"{tag(shop)}:roomfirst"


def room_nos(shop: str) -> str:
    """HASH room number -> room id, of the archived rooms: viewers' states name an archived room
    by its number (``fanops.state.fold``). The room's hash holds its number as ``no``."""
    return f"{tag(shop)}:roomno"


@lru_cache(maxsize=4096)
def room(shop: str, room_id: str) -> str:
    """HASH of a room's counters (room facts, tiers, follow-up states, GMV)."""
    return f"{tag(shop)}:room:{esc(room_id)}"


@lru_cache(maxsize=4096)
def reopened(shop: str) -> str:
    """HASH room id -> its number, of the archived rooms a late event has opened again
    (``scoring.reopen``): their repeats are still checked against their archive, and the next
    idle pass archives them again (a new generation)."""
    return f"{tag(shop)}:reopened"


def room_minutes(shop: str, room_id: str) -> str:
    """HASH minute -> packed per-minute counts (orders, events) for charts."""
    return f"{tag(shop)}:roommin:{esc(room_id)}"


@lru_cache(maxsize=4096)
def present(shop: str, room_id: str) -> str:
    """ZSET viewer -> last event ts in the room, for viewers with no later leave."""
    return f"{tag(shop)}:present:{esc(room_id)}"


@lru_cache(maxsize=4096)
def room_viewers(shop: str, room_id: str) -> str:
    """HASH viewer id -> the viewer's packed state in the room (fanops.state.RoomViewer)."""
    return f"{tag(shop)}:rv:{esc(room_id)}"


@lru_cache(maxsize=4096)
def viewers(shop: str) -> str:
    """HASH viewer id -> the viewer's packed shop-wide state (fanops.state.ViewerState)."""
    return f"{tag(shop)}:viewers"


@lru_cache(maxsize=4096)
def imported(shop: str) -> str:
    """HASH viewer id -> what a customer history import said of the viewer beyond orders: name,
    addresses, channel consents (packed fanops.state.Imported); read beside the viewer's state."""
    return f"{tag(shop)}:imported"


@lru_cache(maxsize=4096)
def tiers(shop: str) -> str:
    """HASH tier -> number of the shop's viewers in it."""
    return f"{tag(shop)}:tiers"


@lru_cache(maxsize=4096)
def due(shop: str, part: int = 0) -> str:
    """ZSET viewer -> shop-clock time at which the viewer's tier may change by itself (one per partition)."""
    return _p(f"{tag(shop)}:due", part)


DAY_MS = 86_400_000
DUE_NEAR_DAYS = 2  # the due index holds what is due before the next day boundary + this many days


def due_front(clock: int) -> int:
    """The due front a shop clock calls for: the day boundary ``DUE_NEAR_DAYS`` after the clock's day."""
    return (clock // DAY_MS + DUE_NEAR_DAYS) * DAY_MS


def due_front_field(part: int) -> str:
    """Field of ``stats``: the partition's due front (ms, a day boundary; absent: none yet). A
    viewer due before it is in ``due``; one due at or after it is listed in ``due_far`` for the
    day of its due (lists may hold stale entries: a listed viewer is looked at again)."""
    return f"duefront:{part}"


def due_far(shop: str, part: int, day: int) -> str:
    """LIST of viewers due on shop-clock day ``day`` (ms // DAY_MS), beyond the due front: a
    viewer id costs ~12 bytes here, ~85 in the ``due`` zset; moved into ``due`` as the front
    reaches the day."""
    return f"{tag(shop)}:duefar:{part}:{day}"


@lru_cache(maxsize=4096)
def due_days(shop: str, part: int = 0) -> str:
    """ZSET day -> day: the days that have a ``due_far`` list (one per partition)."""
    return _p(f"{tag(shop)}:duedays", part)


@lru_cache(maxsize=4096)
def lurk(shop: str, part: int = 0) -> str:
    """ZSET room/viewer pair -> shop-clock time at which the viewer's dwell reaches the threshold
    (one per partition)."""
    return _p(f"{tag(shop)}:lurk", part)


@lru_cache(maxsize=4096)
def clock_min(shop: str) -> str:
    """ZSET second -> the smallest event ts in that second (with ``clock_max``: the values the
    shop clock took, to find the first one after a moment long past)."""
    return f"{tag(shop)}:clockmin"


@lru_cache(maxsize=4096)
def clock_max(shop: str) -> str:
    """ZSET second -> the largest event ts in that second."""
    return f"{tag(shop)}:clockmax"


@lru_cache(maxsize=4096)
def late_window(shop: str, part: int = 0) -> str:
    """ZSET room/viewer pair -> the moment their dwell reached the threshold (first + dwell), for
    the few pairs whose follow-up a shop-clock value arriving late, between that moment and the
    first clock value known after it, would still change (``scoring.followups.late_moment``):
    a batch with such a value rescores the pairs it finds here (one per partition)."""
    return _p(f"{tag(shop)}:latewin", part)


def open_lurk(shop: str, part: int = 0) -> str:
    """Layout 4 and earlier: ZSET room/viewer pair -> the end of their presence window, for every
    pair past its dwell moment with no task (and some with one). Read only to migrate it to
    ``late_window`` (``scoring.migrate``)."""
    return _p(f"{tag(shop)}:openlurk", part)


@lru_cache(maxsize=4096)
def transitions(shop: str) -> str:
    """STREAM of tier transitions."""
    return f"{tag(shop)}:transitions"


def room_feed(shop: str, room_id: str, kind: str) -> str:
    """Bounded LIST of recent notable events in a room (joins of fans, buyers, questions)."""
    return f"{tag(shop)}:feed:{kind}:{esc(room_id)}"


@lru_cache(maxsize=4096)
def tasks(shop: str, room_id: str) -> str:
    """HASH viewer id -> the room's follow-up task for that viewer, packed (fanops.state.TaskRec)."""
    return f"{tag(shop)}:tasks:{esc(room_id)}"


@lru_cache(maxsize=4096)
def queue(shop: str, state: str) -> str:
    """ZSET task id (``pair(room, viewer)``, or ``kind_task_id``) -> priority score, one per task state."""
    return f"{tag(shop)}:queue:{state}"


@lru_cache(maxsize=64)
def kind_tasks(shop: str, kind: str) -> str:
    """HASH "<occasion>:<viewer>" -> the viewer's follow-up task of a kind other than lingered
    (spec/tiers.md v1.1: thank_first_order, after_sales, win_back), packed (fanops.state.TaskRec)."""
    return f"{tag(shop)}:ktasks:{kind}"


@lru_cache(maxsize=64)
def kind_counts(shop: str, kind: str) -> str:
    """HASH "f:<state>" -> the shop's tasks of that kind in that state (a room hash has these for
    its lingered tasks)."""
    return f"{tag(shop)}:kcounts:{kind}"


def kind_task_id(kind: str, occasion: int, viewer: str) -> str:
    """The id of a task of a kind other than lingered: ``"<kind>:<occasion>:<viewer>"`` (a lingered
    task's id, ``pair``, starts with a digit; a kind never does)."""
    return f"{kind}:{occasion}:{viewer}"


def split_kind_task_id(tid: str) -> tuple[str, str, str] | None:
    """(kind, its field in ``kind_tasks``, viewer) of a kind task's id; None for a lingered one."""
    if tid[:1].isdigit():
        return None
    kind, _, rest = tid.partition(":")
    occ, _, viewer = rest.partition(":")
    if not kind or not occ.lstrip("-").isdigit() or not viewer:
        raise ValueError(f"not a task id: {tid!r}")
    return kind, f"{occ}:{viewer}", viewer


def kind_settled(shop: str) -> str:
    """ZSET kind task id -> wall ms when a pass of ``scoring.kind_prune`` first found it settled with
    no time of its own (withdrawn or converted: the scorer settles those and stamps no time); the
    entry leaves with the task, for the shop's kind-task ledger."""
    return f"{tag(shop)}:ksettled"


def task_made(shop: str) -> str:
    """ZSET task id -> wall ms when the task was made: the making times as versions before the
    buckets (``made``) kept them; ``fanops.expiry`` moves what it finds into the buckets."""
    return f"{tag(shop)}:task_made"


# Expiry (``followup_expire_hours``, fanops.expiry): the tasks' wall-clock making times, kept by
# minute (a zset entry a task took ~100 bytes).  Every batch of the scorer that makes tasks
# appends to the list of its minute a marker ``@<wall ms>`` (Redis's clock) and then the ids of the
# tasks it made.  Each name below is ``made(shop)`` and a suffix: apply.lua derives them from it.
def made(shop: str) -> str:
    """ZSET minute (wall ms, as member and score) that has a bucket (``made_bucket``)."""
    return f"{tag(shop)}:made"


def made_bucket(shop: str, minute_ms: int) -> str:
    """LIST of one minute of wall time: markers ``@<wall ms>``, each followed by the ids of
    the tasks made then (``=<id less its viewer>``, then ``.<viewer>`` a task); read from its
    head and trimmed by the expiry pass."""
    return f"{made(shop)}:{minute_ms}"


def made_held(shop: str) -> str:
    """HASH task id -> its marker: tasks due to expire whose claim was still held at a pass, looked
    at again every pass until the claim lapses (expired) or settles."""
    return f"{made(shop)}:held"


@lru_cache(maxsize=4096)
def sent_log(shop: str) -> str:
    """ZSET viewer -> shop clock of their last follow-up marked sent."""
    return f"{tag(shop)}:sent"


def rules(shop: str) -> str:
    """HASH of the shop's rule settings (thresholds, templates), versioned."""
    return f"{tag(shop)}:rules"


@lru_cache(maxsize=4096)
def room_orders(shop: str, room_id: str) -> str:
    """SET of the distinct order ids seen in a room (``room.orders`` counts them)."""
    return f"{tag(shop)}:roomorders:{esc(room_id)}"


# --- the live board's own history (``screens.reads.history``) ------------------
def board_snaps(shop: str) -> str:
    """Capped LIST of the live board's snapshots of the shop (JSON, newest first; expires)."""
    return f"{tag(shop)}:board:snap"


def board_room_snaps(shop: str, room_id: str) -> str:
    """Capped LIST of the live board's snapshots of one room (JSON, newest first; expires)."""
    return f"{tag(shop)}:board:rsnap:{esc(room_id)}"


def board_guard(shop: str, room_id: str | None = None) -> str:
    """STRING set with NX and a short expiry: the shop's (or a room's) board snapshot was
    written this recently, so no other page writes one."""
    return f"{tag(shop)}:board:guard" + (f":{esc(room_id)}" if room_id is not None else "")


def scratch(shop: str, token: str) -> str:
    """STRING/any, short-lived (an expiry): a key ``scoring.forget`` restores an archived DUMP into to
    take a forgotten viewer out of it, then dumps and deletes again (in the shop's slot)."""
    return f"{tag(shop)}:scratch:{esc(token)}"
# --- the app's sign-in (``fanops.access``, ``screens.access``) -------------------
ACCESS_TAG = "{!access}"  # shop ids are escaped, so no shop can collide with this tag


def access_failures(client: str) -> str:
    """HASH ``n`` (failed sign-ins in a row), ``last`` (ms) of one client (its address); expires."""
    return f"{PREFIX}{ACCESS_TAG}:fail:{esc(client)}"


def access_session(token_hash: str) -> str:
    """HASH ``role``, ``name``, ``since`` of a signed-in browser, by the hash of its cookie's token; expires."""
    return f"{PREFIX}{ACCESS_TAG}:session:{esc(token_hash)}"


# --- order webhooks (``realtime.orders``, ``screens.orders``) --------------------
def orders_waiting(shop: str) -> str:
    """HASH order event id -> a webhook order signed and well formed but matched to no viewer or room
    yet (JSON ``realtime.orders_map.ShopOrder``, with why): kept until applied, never dropped."""
    return f"{tag(shop)}:orders:waiting"


def orders_done(shop: str) -> str:
    """HASH order event id -> JSON ``[viewer, room, how]`` of an order applied to a viewer or room it did
    not name itself (kept, then linked or matched): a replayed body goes to the same viewer and room
    (a repeat, not a second order)."""
    return f"{tag(shop)}:orders:done"


def orders_links(shop: str) -> str:
    """HASH order event id -> JSON ``{"viewer", "room", "operator"}``: an operator's link of a kept order,
    written by the app, applied (and removed) by ``python -m realtime orders``."""
    return f"{tag(shop)}:orders:links"


def wa_inbound(shop: str) -> str:
    """ZSET viewer id -> wall ms of the viewer's latest WhatsApp message to the shop (the Cloud API's
    inbound webhook, ``realtime.inbound``): it opens WhatsApp's 24-hour service window."""
    return f"{tag(shop)}:wa_inbound"


def contact_owners(shop: str) -> str:
    """HASH ``contact_owner_field`` -> the viewer id whose ``contact`` event named that address, or
    ``*`` once two viewers did (no certain match). Written by the scorer (``scoring.contacts``)."""
    return f"{tag(shop)}:contact:owners"


def contact_owner_field(what: str, value: str) -> bytes:
    """A field of ``contact_owners``: the address's kind and the first 12 bytes of its SHA-256 (the
    table holds no address, in 13 bytes; an email compared without regard to case)."""
    import hashlib

    v = value.strip().lower() if what == "email" else value.strip()
    return what[0].encode() + hashlib.sha256(v.encode()).digest()[:12]
