"""Retention: what a viewer said, and how to reach them, is kept only while they are active.

A viewer with no event for ``retention_days`` (a process setting, default 90) of shop clock loses,
by a scorer's periodic pass (``Worker.archive_idle``, on the prune schedule):

- their comment text: the last comments kept in their room records (``RoomViewer.said``) and in
  their follow-up tasks (``TaskRec.said``), their entries in the host screen's questions list, the
  ``text`` of their comments in the applied-event log and in every archive (``events.parquet``;
  ``redis.parquet``'s room records and questions lists), and ``said`` in the ledger of pruned kind
  tasks (``scoring.kind_prune``: the scorer gives kind tasks no ``said`` today, so there is none);
- their contact details: ``clear_contact`` below is the one place that empties them in the
  viewer's state, and ``scoring.forget_files.CONTACT_FIELDS`` names them in the files; the
  addresses their customer-history row gave and their entries in the address owners' table go too.
  (A history row with no order makes no event and no state: it is the seller's own list, kept
  until the viewer appears or is forgotten.)

Their name, tier, history and counts stay (a returning fan is still greeted by name); their
comments still count. ``python -m scoring forget`` erases a viewer entirely. Records are written
compare-and-set (``lua/hcas.lua``): one a scorer changed meanwhile is left for the next pass.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, cast

import msgspec
import redis

from fanops import keys
from fanops.config import Config
from fanops.imported import pack_imported, unpack_imported
from fanops.scripts import script_source
from fanops.state import REACH_ADDRESSES, ViewerState, pack, pack_task, unpack_room_viewer, unpack_task, unpack_viewer
from review.archive_files import list_archived
from scoring.forget_files import CONTACT_FIELDS, Scrub, feed_viewer, scrub_archives, scrub_eventlog, scrub_kind_ledger

log = logging.getLogger(__name__)

CHUNK = 500
_DEFAULTS = {f.name: (None if f.default is msgspec.NODEFAULT else f.default)
             for f in msgspec.structs.fields(ViewerState)}


def clear_contact(v: ViewerState) -> bool:
    """Empty the viewer's contact details (the fields of ``CONTACT_FIELDS`` the state has: email,
    phone ...), in place; returns whether there were any. The one place retention clears them:
    a contact field added to ``ViewerState`` is cleared here once its name is in ``CONTACT_FIELDS``."""
    changed = False
    for f in CONTACT_FIELDS:
        if f in _DEFAULTS and getattr(v, f) != _DEFAULTS[f]:
            setattr(v, f, _DEFAULTS[f])
            changed = True
    # the addresses a contact event gave (``ViewerState.reach``: one mark per address or channel flag);
    # the channel consents stay (they are the viewer's answer, not a way to reach them)
    kept = [m for m in v.reach if m.what not in REACH_ADDRESSES]
    if len(kept) != len(v.reach):
        v.reach = kept
        changed = True
    return changed


def _cas(r: redis.Redis, key: str, field: str | bytes, old: bytes, new: bytes | None) -> int:
    """Set (``new`` None: delete) ``field`` if it still holds ``old``; 1 if done."""
    args = [field, old] if new is None else [field, old, new]
    return int(r.register_script(script_source("scoring", "hcas"))(keys=[key], args=args))


def _addresses_elsewhere(r: redis.Redis, shop: str, vids: set[str], out: Counter[str]) -> None:
    """The addresses of ``vids`` outside their state: the ones their customer-history row gave
    (``keys.imported``: the consents stay) and their entries in ``keys.contact_owners`` (an order
    kept for want of a viewer is no longer matched to them by address)."""
    k, ordered = keys.imported(shop), sorted(vids)
    for i in range(0, len(ordered), CHUNK):
        chunk = ordered[i:i + CHUNK]
        for vid, b in zip(chunk, cast("list[bytes | None]", r.hmget(k, chunk)), strict=True):
            rec = unpack_imported(b) if b else None
            if rec is not None and any(m.what in REACH_ADDRESSES for m in rec.reach):
                rec.reach = [m for m in rec.reach if m.what not in REACH_ADDRESSES]
                out["contact_details"] += _cas(r, k, vid, cast("bytes", b), pack_imported(rec))
    owners = keys.contact_owners(shop)
    want = {v.encode("utf-8", "surrogateescape") for v in vids}
    for f, owner in r.hscan_iter(owners, count=CHUNK):
        if owner in want:
            out["address_owners"] += _cas(r, owners, f, owner, None)


def _expired(r: redis.Redis, shop: str, cutoff: int, out: Counter[str]) -> set[str]:
    """The shop's viewers with no event since ``cutoff``; their contact details cleared on the way."""
    found: set[str] = set()
    for vid_b, b in r.hscan_iter(keys.viewers(shop), count=CHUNK):
        v = unpack_viewer(b)
        if v.last_active >= cutoff:
            continue
        vid = vid_b.decode("utf-8", "surrogateescape")
        found.add(vid)
        if clear_contact(v):
            out["contact_details"] += _cas(r, keys.viewers(shop), vid, b, pack(v))
    return found


def _said(r: redis.Redis, key: str, vids: list[str], unpack: Any, repack: Any) -> int:
    """Empty ``said`` of the records of ``vids`` in hash ``key`` (room records or tasks)."""
    n = 0
    for i in range(0, len(vids), CHUNK):
        chunk = vids[i:i + CHUNK]
        for vid, b in zip(chunk, cast("list[bytes | None]", r.hmget(key, chunk)), strict=True):
            if b:
                rec = unpack(b)
                if rec.said:
                    rec.said = []
                    n += _cas(r, key, vid, b, repack(rec))
    return n


def _in_redis(r: redis.Redis, shop: str, vids: set[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    ordered = sorted(vids)
    for rm in (m.decode() for m in cast("list[bytes]", r.zrange(keys.rooms(shop), 0, -1))):
        out["room_records"] += _said(r, keys.room_viewers(shop, rm), ordered, unpack_room_viewer, pack)
        out["tasks"] += _said(r, keys.tasks(shop, rm), ordered, unpack_task, pack_task)
        qk = keys.room_feed(shop, rm, "questions")
        for entry in cast("list[bytes]", r.lrange(qk, 0, -1)):
            if feed_viewer(entry) in vids:
                out["feed_entries"] += int(r.lrem(qk, 0, entry))  # type: ignore[arg-type]  # bytes as read
    return out


def retention_pass(r: redis.Redis, cfg: Config, shop: str, clock: int | None = None) -> dict[str, int]:
    """Drop the comment text and contact details of the shop's viewers inactive for
    ``cfg.retention_days`` before ``clock`` (default: the shop clock); returns what changed, by
    kind (kinds with none left out)."""
    if clock is None:
        clock = int(r.hget(keys.stats(shop), "clock") or 0)
    out: Counter[str] = Counter()
    vids = _expired(r, shop, clock - cfg.retention_days * keys.DAY_MS, out)
    if vids:
        _addresses_elsewhere(r, shop, vids, out)
        out.update(_in_redis(r, shop, vids))
        s = Scrub(frozenset(vids), forget=False)
        out.update(scrub_eventlog(cfg, shop, s))
        out.update(scrub_archives(r, cfg, list_archived(cfg, shop), s))
        out.update(scrub_kind_ledger(cfg, shop, s))
    if sum(out.values()):
        log.info("retention: dropped the comment text or contact details of viewers of %s inactive for %d days "
                 "(%d records)", shop, cfg.retention_days, sum(out.values()))
    return {k: n for k, n in out.items() if n}
