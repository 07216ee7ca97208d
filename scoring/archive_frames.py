"""The archive's tables built from what the scorer keeps in Redis (pure: no Redis, no files).

The stream's events (wire maps), the room's viewer records and viewer states, its tasks and
the tier transitions become the frames of ``review.archive_files`` (their schemas are there).

Derived viewer columns (documented here because they are choices):

- ``tier_entry``: the tier the viewer had just before their first event in the room, by the
  rules of spec/tiers.md at that moment (``now`` = their first ts in the room) over what they
  had done before it: the rooms they attended earlier (their spans cut at that moment), their
  latest earlier activity, and the distinct orders they placed earlier, found in this shop's
  archived events and in the events still in the stream.  A viewer with nothing earlier enters
  as ``new_fan``.  Orders trimmed from the stream before any archive held them are not seen.
- ``tier_close``: the tier the viewer is counted under when the room is archived (the same
  counters ``status`` reports as ``room.tiers``).
- ``present``, ``dwell_ms``, ``new_viewer``, ``reactivated``: the rules of spec/tiers.md at the
  shop clock of the archive.
- transitions: rows of the shop's transitions stream for the room's viewers whose ``ts`` is
  between the room's first event and the clock at close (whatever room caused them).
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from fanops.rules_settings import RuleSettings
from fanops.schema import EVENT_TYPES
from fanops.state import RoomViewer, ViewerState, pack_firsts, past_firsts, rooms_attended
from review.archive_files import (
    EVENT_SCHEMA,
    FOLLOWUP_SCHEMA,
    TASK_INT_FIELDS,
    TASK_STR_FIELDS,
    TRANSITION_SCHEMA,
    VIEWER_SCHEMA,
)
from scoring import rules

# the events as the stream holds them (``fanops.schema``): the viewer nested
_WIRE_VIEWER = pl.Struct({"id": pl.String, "name": pl.String, "country": pl.String, "lang": pl.String,
                          "tz": pl.String})
_WIRE_SCHEMA: dict[str, Any] = {
    "id": pl.String, "room": pl.String, "shop": pl.String, "ts": pl.Int64, "type": pl.String,
    "viewer": _WIRE_VIEWER, "text": pl.String, "count": pl.Int64, "gift": pl.String, "value": pl.Float64,
    "sku": pl.String, "qty": pl.Int64, "order_id": pl.String, "amount": pl.Float64, "currency": pl.String,
    "dm": pl.Boolean,
}


def events_frame(wire: list[dict[str, Any]], shop: str) -> pl.DataFrame:
    """Events as decoded from stream entries (msgpack maps) -> one flat row each, sorted by (ts, id)."""
    if not wire:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    df = pl.from_dicts(wire, schema=_WIRE_SCHEMA)
    v = pl.col("viewer").struct
    t = pl.col("type")
    return (df.with_columns(
        shop=pl.col("shop").fill_null(shop),
        type=t.cast(pl.Enum(EVENT_TYPES)),
        name=v.field("name"), country=v.field("country"), lang=v.field("lang"), tz=v.field("tz"),
        text=pl.when(t == "comment").then(pl.col("text").fill_null("")).otherwise(pl.col("text")),
        count=pl.when(t.is_in(["like", "gift"])).then(pl.col("count").fill_null(1)).otherwise(pl.col("count")),
        qty=pl.when(t == "cart_add").then(pl.col("qty").fill_null(1)).otherwise(pl.col("qty")),
    ).with_columns(viewer=v.field("id"))
        .select(list(EVENT_SCHEMA))
        .sort("ts", "id"))


def tier_at_entry(v: ViewerState, room: str, t0: int, orders_before: int, s: RuleSettings) -> str:
    """The tier the viewer had just before their first event in ``room`` (at ``t0``); see the module doc."""
    prior = {k: [f, min(last, t0 - 1)] for k, (f, last) in v.rooms.items() if k != room and f < t0}
    past = [f for f in past_firsts(v) if f < t0]  # archived rooms: first ts, and the latest ts of all
    if not prior and not past:
        return "new_fan"
    firsts = [f for f, _ in prior.values()] + past
    lasts = [last for _, last in prior.values()] + ([min(v.past_last, t0 - 1)] if past else [])
    before = ViewerState(first_seen=min(firsts), last_active=max(lasts), rooms=prior, orders=["?"] * orders_before,
                         past=pack_firsts(past))
    return rules.tier(before, t0, s)


def viewers_frame(room: str, rvs: dict[str, RoomViewer], vs: dict[str, ViewerState], clock: int,
                  s: RuleSettings, orders_before: dict[str, int], tasks: dict[str, str]) -> pl.DataFrame:
    """One row per viewer of the room, at the shop clock ``clock``."""
    cols: dict[str, list[Any]] = {k: [] for k in VIEWER_SCHEMA}
    for vid in sorted(rvs):
        rv, v = rvs[vid], vs.get(vid)
        if v is None:
            continue  # a record with no viewer state cannot happen unless written by hand
        consent = v.consents[-1].dm if v.consents else None
        row = {
            "room": room, "viewer": vid, "name": v.name, "country": v.country, "lang": v.lang, "tz": v.tz,
            "first_ts": rv.first, "last_ts": rv.last, "last_leave_ts": rv.last_leave if rv.last_leave >= 0 else None,
            "present": rules.is_present(rv, clock, s), "dwell_ms": rules.dwell(rv, clock, s),
            "comments": rv.comments, "likes": rv.likes, "shares": rv.shares, "follows": rv.follows,
            "product_views": rv.views, "cart_adds": rv.carts, "gift_value": rv.gift_value,
            "orders": len(rv.orders), "first_order_ts": rv.first_order if rv.first_order >= 0 else None,
            "spend": json.dumps(rv.amount, sort_keys=True) if rv.amount else "",
            "new_viewer": rules.is_new_viewer(v, room), "reactivated": rules.is_reactivated(v, room, s),
            "tier_entry": tier_at_entry(v, room, rv.first, orders_before.get(vid, 0), s),
            "tier_close": v.tier or rules.tier(v, clock, s), "first_seen": v.first_seen,
            "orders_total": len(v.orders), "rooms_attended": rooms_attended(v), "dm_consent": consent,
            "followup": tasks.get(vid),
        }
        for k, x in row.items():
            cols[k].append(x)
    return pl.DataFrame(cols, schema=VIEWER_SCHEMA)


def followups_frame(room: str, tasks: dict[str, dict[str, str]]) -> pl.DataFrame:
    """One row per task of the room (viewer -> its text fields, ``fanops.state.record_fields``)."""
    cols: dict[str, list[Any]] = {k: [] for k in FOLLOWUP_SCHEMA}
    for vid in sorted(tasks):
        h = tasks[vid]
        cols["room"].append(room)
        cols["viewer"].append(vid)
        for k in TASK_STR_FIELDS:
            cols[k].append(h.get(k) or None)
        for k in TASK_INT_FIELDS:
            cols[k].append(int(float(h[k])) if h.get(k) else None)
        cols["priority"].append(float(h["priority"]) if h.get("priority") else None)
        cols["reactivated"].append(h.get("reactivated") == "1")
    return pl.DataFrame(cols, schema=FOLLOWUP_SCHEMA)


def transitions_frame(room: str, entries: list[tuple[str, dict[bytes, bytes]]]) -> pl.DataFrame:
    """One row per entry of the transitions stream (id, fields) read for the room."""
    cols: dict[str, list[Any]] = {k: [] for k in TRANSITION_SCHEMA}
    for sid, f in entries:
        g = {k.decode(): v.decode("utf-8", "replace") for k, v in f.items()}
        row = {"room": room, "id": sid, "viewer": g.get("viewer"), "name": g.get("name"), "from": g.get("from"),
               "to": g.get("to"), "ts": int(g.get("ts", 0)), "cause": g.get("cause"),
               "event_room": g.get("room") or None, "rules_version": int(g.get("rules_version", 0) or 0)}
        for k, x in row.items():
            cols[k].append(x)
    return pl.DataFrame(cols, schema=TRANSITION_SCHEMA)
