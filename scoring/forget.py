"""``python -m scoring forget``: one viewer erased from Redis, the applied-event log and every archive.

What goes (spec/cli.md v1.1: "it removes the viewer from every record that names them"):

- Redis, in one MULTI: the viewer's state; in every room of the shop, open or archived, their
  room record, presence, follow-up task and its queue and expiry entries, and the host-screen entries that name
  them; their entries in the lurk, late-window and due indexes (and the far-due day lists), in the
  sent log, in the tier-transitions stream; the dead letters whose raw text names their id; the
  order webhooks' records of them (addresses owned, orders linked or matched to them). A kept order
  (matched to no viewer yet) that carries one of their addresses stays kept, with its email and phone
  cleared: the sale is not dropped, an operator can still link it.
- The applied-event log, the archives and the ledger of pruned kind tasks (``scoring.kind_prune``):
  ``scoring.forget_files`` (the viewer's events stay,
  anonymous, so that a show's totals and the repeat check of a resent event stay as they were).
- The disk: the server rewrites its append-only file (BGREWRITEAOF) and its snapshot (BGSAVE),
  and forget waits for both, so that the removed data leaves the server's files too.

What stays: aggregate counts (a room's counters, its distinct order ids, the shop's tier counts,
stats), and the consumer's dedupe tables of open rooms: they hold event ids only, and they are what
makes a resend of the viewer's events a repeat instead of bringing the viewer back.

Events of the viewer not yet applied cannot be taken out of a stream entry (an entry holds a batch
of many viewers' events and cannot be edited): forget waits for the scorers to apply them and
fails (exit 1, nothing removed) if they are still there after ``wait_s``. An event of the viewer
that reaches Redis after forget is a new event like any other and starts a new record of them.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from typing import Any, cast

import msgspec
import redis
from redis.cluster import RedisCluster

from fanops import keys
from fanops.config import Config
from fanops.errors import RoomNotReady
from fanops.scripts import script_source
from fanops.state import TASK_KINDS, TASK_STATES, unpack_viewer
from review.archive_files import list_archived
from scoring import eventlog
from scoring.contacts import kept_order_scrubs, order_records, viewer_addresses
from scoring.forget_files import FEEDS, Scrub, feed_viewer, scrub_archives, scrub_eventlog, scrub_kind_ledger
from scoring.kinds import stored

log = logging.getLogger(__name__)

PAGE = 5000
DISK_TIMEOUT_S = 120.0
# the kinds ``forget`` reports, in its JSON's order (each 0 when nothing of the kind named the viewer)
KINDS = ("viewer_state", "room_records", "presence", "tasks", "queue_entries", "index_entries", "feed_entries",
         "sent_log", "transitions", "dead_letters", "eventlog_events", "eventlog_files", "archive_rooms",
         "archive_events", "archive_viewers", "archive_transitions", "archive_followups", "archive_redis_records",
         "imported_record", "address_owners", "webhook_orders", "kept_order_addresses", "ledger_tasks",
         "whatsapp_inbound")


def forget_viewer(r: redis.Redis, cfg: Config, shop: str, viewer: str, wait_s: float = 10.0,
                  rewrite_disk: bool = True) -> dict[str, Any]:
    """Erase ``viewer`` of ``shop`` (see the module doc); returns ``forget``'s JSON: what was removed,
    by kind, and whether the server's files were rewritten. Idempotent: a second call removes nothing.
    Raises RoomNotReady (nothing removed) while events of the viewer wait for a scorer."""
    wait_applied(r, shop, viewer, wait_s)
    got: Counter[str] = Counter(forget_in_redis(r, shop, viewer))
    s = Scrub(frozenset([viewer]), forget=True)
    got.update(scrub_eventlog(cfg, shop, s))
    got.update(scrub_archives(r, cfg, list_archived(cfg, shop), s))
    got.update(scrub_kind_ledger(cfg, shop, s))  # after Redis: a prune pass meanwhile drops what forget took
    disk = rewrite_server_files(r) if rewrite_disk else {}
    log.info("forgot a viewer of %s: %d records removed", shop, sum(got.values()))
    return {"shop": shop, "viewer": viewer, "removed": {k: got[k] for k in KINDS}, **disk}


# --- events not applied yet --------------------------------------------------------------------
def unapplied_entries(r: redis.Redis, shop: str, viewer: str) -> int:
    """Entries of the viewer's partition stream holding an event of theirs that no scorer has applied
    (applied entries are trimmed first: they are in the applied-event log)."""
    eventlog.trim_applied(r, keys.streams(shop))
    stream, needle = keys.stream(shop, keys.part_of(viewer)), viewer.encode("utf-8", "surrogatepass")
    n, start = 0, "-"
    while True:
        page = cast("list[tuple[bytes, dict[bytes, bytes]]]", r.xrange(stream, start, "+", count=PAGE))
        if not page:
            return n
        for _sid, f in page:
            payload = f.get(b"e") or b""
            if needle in payload and any((e.get("viewer") or {}).get("id") == viewer
                                         for e in msgspec.msgpack.decode(payload)):
                n += 1
        start = "(" + page[-1][0].decode()


def wait_applied(r: redis.Redis, shop: str, viewer: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while (n := unapplied_entries(r, shop, viewer)) > 0:
        if time.monotonic() >= deadline:
            raise RoomNotReady(f"the viewer has events in {n} stream entries of shop {shop!r} not yet applied by a "
                               "scorer: start `python -m scoring run` (or wait for it) and try again; nothing was "
                               "removed")
        time.sleep(0.1)


# --- Redis -------------------------------------------------------------------------------------
def _stream_ids(r: redis.Redis, key: str, names: Any) -> list[bytes]:
    """Ids of the entries of stream ``key`` whose fields ``names(fields)`` says name the viewer."""
    out: list[bytes] = []
    start = "-"
    while True:
        page = cast("list[tuple[bytes, dict[bytes, bytes]]]", r.xrange(key, start, "+", count=PAGE))
        if not page:
            return out
        out += [sid for sid, f in page if names(f)]
        start = "(" + page[-1][0].decode()


def _dead_names(shop: str, viewer: str) -> Any:
    """Whether a dead letter (its raw text, as the consumer received it) names the viewer of the shop:
    their id as a JSON string, and the shop named or none (a bad event may name no shop)."""
    ids = {json.dumps(viewer).encode(), json.dumps(viewer, ensure_ascii=False).encode("utf-8", "surrogatepass")}
    shop_ids = {json.dumps(shop).encode(), json.dumps(shop, ensure_ascii=False).encode("utf-8", "surrogatepass")}

    def names(f: dict[bytes, bytes]) -> bool:
        raw = f.get(b"raw", b"")
        return any(i in raw for i in ids) and (b'"shop"' not in raw or any(s in raw for s in shop_ids))
    return names


def _feed_entries(r: redis.Redis, shop: str, rooms: list[str], viewer: str) -> list[tuple[str, bytes]]:
    p = r.pipeline(transaction=False)
    fkeys = [keys.room_feed(shop, rm, k) for rm in rooms for k in FEEDS]
    for k in fkeys:
        p.lrange(k, 0, -1)
    return [(k, e) for k, got in zip(fkeys, p.execute(), strict=True) for e in got if feed_viewer(e) == viewer]


def _kind_fields(r: redis.Redis, shop: str, viewer: str) -> list[tuple[str, int]]:
    """(kind, occasion) of every task of the viewer in the kind hashes, the ones their state no
    longer names too (a kind switched off keeps the tasks sent; ``scoring.kind_prune`` puts some back)."""
    pat = "*:" + "".join("\\" + c if c in "*?[]\\" else c for c in viewer)
    out = []
    for kind in TASK_KINDS[1:]:
        for f, _b in r.hscan_iter(keys.kind_tasks(shop, kind), match=pat, count=PAGE):
            occ, _, vid = f.decode("utf-8", "surrogateescape").partition(":")
            if vid == viewer:
                out.append((kind, int(occ)))
    return out


def forget_in_redis(r: redis.Redis, shop: str, viewer: str) -> Counter[str]:
    """Every Redis record of the shop that names the viewer removed in one MULTI (see the module doc);
    counts by kind, from what the commands removed."""
    rooms = [m.decode() for m in cast("list[bytes]", r.zrange(keys.rooms(shop), 0, -1))]
    part = keys.part_of(viewer)
    days = cast("list[bytes]", r.zrange(keys.due_days(shop, part), 0, -1))
    feeds = _feed_entries(r, shop, rooms, viewer)
    trans = _stream_ids(r, keys.transitions(shop), lambda f: f.get(b"viewer", b"").decode("utf-8", "replace")
                        == viewer)
    dead = _stream_ids(r, keys.dead_stream(), _dead_names(shop, viewer))
    kept = kept_order_scrubs(r, shop, viewer_addresses(r, shop, viewer))  # read before the state goes
    vb = cast("bytes | None", r.hget(keys.viewers(shop), viewer))
    kind_tasks = sorted(set(stored(unpack_viewer(vb) if vb else None)) | set(_kind_fields(r, shop, viewer)))
    kinds: list[str] = []
    p = r.pipeline(transaction=True)

    def cmd(kind: str, name: str, *args: Any) -> None:
        kinds.append(kind)
        getattr(p, name)(*args)

    # their tasks' expiry entries name them (fanops.expiry): ".<viewer>" in each minute's list, and
    # the task id among the held claims
    for m in cast("list[bytes]", r.zrange(keys.made(shop), 0, -1)):
        cmd("expiry_entries", "lrem", keys.made_bucket(shop, int(m)), 0, "." + viewer)
    tids = [keys.pair(rm, viewer) for rm in rooms] + [keys.kind_task_id(k, occ, viewer) for k, occ in kind_tasks]
    if tids:
        cmd("expiry_entries", "hdel", keys.made_held(shop), *tids)
    cmd("viewer_state", "hdel", keys.viewers(shop), viewer)
    cmd("imported_record", "hdel", keys.imported(shop), viewer)  # a customer history import's name and addresses
    for kind, k, f in order_records(r, shop, viewer):  # the order webhooks' records naming the viewer
        cmd(kind, "hdel", k, f)
    for rm in rooms:
        pair = keys.pair(rm, viewer)
        cmd("room_records", "hdel", keys.room_viewers(shop, rm), viewer)
        cmd("presence", "zrem", keys.present(shop, rm), viewer)
        cmd("tasks", "hdel", keys.tasks(shop, rm), viewer)
        for st in TASK_STATES:
            cmd("queue_entries", "zrem", keys.queue(shop, st), pair)
        cmd("index_entries", "zrem", keys.lurk(shop, part), pair)
        cmd("index_entries", "zrem", keys.late_window(shop, part), pair)
    for kind, occ in kind_tasks:  # spec/tiers.md v1.1's other kinds: their tasks are the viewer's
        tid = keys.kind_task_id(kind, occ, viewer)
        cmd("tasks", "hdel", keys.kind_tasks(shop, kind), f"{occ}:{viewer}")
        for st in TASK_STATES:
            cmd("queue_entries", "zrem", keys.queue(shop, st), tid)
        cmd("index_entries", "zrem", keys.kind_settled(shop), tid)  # a prune pass's note of its settling
    cmd("index_entries", "zrem", keys.due(shop, part), viewer)
    for day in days:
        cmd("index_entries", "lrem", keys.due_far(shop, part, int(day)), 0, viewer)
    for k, entry in feeds:
        cmd("feed_entries", "lrem", k, 0, entry)
    cmd("sent_log", "zrem", keys.sent_log(shop), viewer)
    cmd("whatsapp_inbound", "zrem", keys.wa_inbound(shop), viewer)  # when they last wrote on WhatsApp
    if trans:
        cmd("transitions", "xdel", keys.transitions(shop), *trans)
    out: Counter[str] = Counter()
    for kind, n in zip(kinds, p.execute(), strict=True):
        out[kind] += int(n)
    if dead:  # the dead letters have their own slot: on a Redis Cluster no transaction spans both
        out["dead_letters"] += int(r.xdel(keys.dead_stream(), *dead))
    restream = r.register_script(script_source("scoring", "restream"))
    for key, ids in ((keys.transitions(shop), trans), (keys.dead_stream(), dead)):
        if ids:
            restream(keys=[key])  # the deleted entries' bytes leave the stream's nodes too
    hcas = r.register_script(script_source("scoring", "hcas"))
    for f, old, new in kept:  # compare-and-set: one the orders server applied meanwhile is gone already
        out["kept_order_addresses"] += int(hcas(keys=[keys.orders_waiting(shop)], args=[f, old, new]))
    return out


# --- the server's files ------------------------------------------------------------------------
def _wait_info(r: redis.Redis, done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(r.info("persistence")):
            return True
        time.sleep(0.05)
    return False


def rewrite_server_files(r: redis.Redis, timeout: float = DISK_TIMEOUT_S) -> dict[str, Any]:
    """Have the server rewrite its append-only file and its snapshot from what it holds now, and
    wait for both: ``{"aof_rewritten": bool, "rdb_saved": bool}`` (false where the server has no
    append-only file, or refuses the command: a managed Redis; the reason is logged).  On a Redis
    Cluster every node does, primaries and replicas (each holds a copy of its slots): true where all did."""
    if isinstance(r, RedisCluster):
        outs = [_rewrite_node(n.redis_connection, timeout) for n in r.get_nodes() if n.redis_connection]
        return {k: bool(outs) and all(o[k] for o in outs) for k in ("aof_rewritten", "rdb_saved")}
    return _rewrite_node(r, timeout)


def _rewrite_node(r: redis.Redis, timeout: float) -> dict[str, Any]:
    out = {"aof_rewritten": False, "rdb_saved": False}
    try:
        info = r.info("persistence")
        if int(info.get("aof_enabled", 0)):
            # a rewrite already running forked before our changes: ours is scheduled after it
            before = int(info.get("aof_rewrites", 0)) + int(info.get("aof_rewrite_in_progress", 0))
            r.bgrewriteaof()
            out["aof_rewritten"] = _wait_info(r, lambda i: int(i.get("aof_rewrites", 0)) > before and not int(
                i.get("aof_rewrite_in_progress", 0)) and not int(i.get("aof_rewrite_scheduled", 0))
                and i.get("aof_last_bgrewrite_status") == "ok", timeout)
        info = r.info("persistence")
        before = int(info.get("rdb_saves", 0)) + int(info.get("rdb_bgsave_in_progress", 0))
        r.bgsave(schedule=True)
        out["rdb_saved"] = _wait_info(r, lambda i: int(i.get("rdb_saves", 0)) > before and not int(
            i.get("rdb_bgsave_in_progress", 0)) and i.get("rdb_last_bgsave_status") == "ok", timeout)
    except redis.ResponseError as e:
        log.warning("the server did not rewrite its files (%s): the removed data may stay on its disk until "
                    "it does", e)
    return out
