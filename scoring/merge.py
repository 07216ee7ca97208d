"""Merging one event into a viewer's shop-wide state and into its (room, viewer) record.

Pure, and commutative up to profile fields: the states merged from a shop's events in any
order, in any batches, are the same (``scoring.engine`` derives every counter from them).
"""

from __future__ import annotations

from msgspec import UNSET

from fanops.rules_settings import RuleSettings
from fanops.schema import HISTORY_ROOM, Event, Viewer, consent_flags, event_type
from fanops.state import REACH_ADDRESSES, Consent, RoomViewer, ViewerState, mark
from scoring.followups import EARLY_CAP

SKU_KEEP = 5
SAID_KEEP = 3
CONSENT_KEEP = 16


def _insort_early(rv: RoomViewer, ts: int, leave: int, horizon: int) -> None:
    """Keep the viewer's events up to ``horizon`` (first + dwell threshold), the next one in ``after``."""
    if ts > horizon:
        if rv.after < 0 or ts < rv.after:
            rv.after = ts
        return
    item = [ts, leave]
    e = rv.early
    if not e or ts > e[-1][0]:
        e.append(item)  # the usual case: events of a viewer come in order, so the list stays sorted
    elif item in e:
        return
    else:
        e.append(item)
        e.sort()
    if len(e) > EARLY_CAP:
        del e[1:len(e) - EARLY_CAP + 1]  # keep the first event and the latest ones


def _rehorizon(rv: RoomViewer, horizon: int) -> None:
    """``first`` moved earlier: events past the new horizon leave the early window."""
    keep = [x for x in rv.early if x[0] <= horizon]
    for x in rv.early:
        if x[0] > horizon and (rv.after < 0 or x[0] < rv.after):
            rv.after = x[0]
    rv.early = keep


def _push_recent(lst: list[str], value: str, keep: int) -> list[str]:
    out = [value] + [x for x in lst if x != value]
    return out[:keep]


def merge_viewer(v: ViewerState | None, ev: Event) -> ViewerState:
    """A viewer's shop-wide state with one more event (commutative up to profile fields)."""
    ts, room = ev.ts, ev.room
    if v is None:
        # the history room is never a room attended (spec/tiers.md v1.1)
        v = ViewerState(first_seen=ts, last_active=ts, rooms={} if room == HISTORY_ROOM else {room: [ts, ts]})
    else:
        if ts < v.first_seen:
            v.first_seen = ts
        if ts > v.last_active:
            v.last_active = ts
        r = v.rooms.get(room) if room != HISTORY_ROOM else [ts, ts]
        if r is None:
            v.rooms[room] = [ts, ts]
        else:
            if ts < r[0]:
                r[0] = ts
            if ts > r[1]:
                r[1] = ts
    t = event_type(ev)
    if t == "order":
        oid = ev.order_id  # type: ignore[union-attr]
        if oid not in v.orders:
            v.orders.append(oid)
            v.spend[ev.currency] = v.spend.get(ev.currency, 0.0) + ev.amount  # type: ignore[union-attr]
    elif t == "consent":
        _merge_consent(v, ev)
    elif t == "contact":
        for what in REACH_ADDRESSES:
            value = getattr(ev, what)
            if value is not UNSET:
                mark(v, what, ts, ev.id, value)
    vw: Viewer = ev.viewer
    if ts >= v.profile_ts and (vw.name is not UNSET or vw.country or vw.lang or vw.tz):
        v.profile_ts = ts
        if vw.name is not UNSET:
            v.name = vw.name
        if vw.country:
            v.country = vw.country
        if vw.lang:
            v.lang = vw.lang
        if vw.tz:
            v.tz = vw.tz
    return v


def _merge_consent(v: ViewerState, ev: Event) -> None:
    """A consent event: its dm (if it names it) joins the viewer's consents, each channel flag it
    names is kept if it is the latest to name that channel (spec/events.md v1.1)."""
    flags = consent_flags(ev)  # type: ignore[arg-type]
    dm = flags.pop("dm", None)
    if dm is not None:
        c = Consent(ev.ts, ev.id, dm)
        if c not in v.consents:
            v.consents.append(c)
            v.consents.sort(key=lambda x: (x.ts, x.id))
            if len(v.consents) > CONSENT_KEEP:
                del v.consents[: len(v.consents) - CONSENT_KEEP]
    for channel, flag in flags.items():
        mark(v, "c:" + channel, ev.ts, ev.id, flag)


def merge_room_viewer(rv: RoomViewer | None, ev: Event, s: RuleSettings) -> RoomViewer:
    """A viewer's record in one room with one more event: its span, its early events (up to the
    dwell threshold ``s``), its last leave and other event, what it did there."""
    ts = ev.ts
    t = event_type(ev)
    leave = 1 if t == "leave" else 0
    if rv is None:
        rv = RoomViewer(first=ts, last=ts)
    else:
        if ts < rv.first:
            rv.first = ts
            _rehorizon(rv, ts + s.dwell_ms)
        if ts > rv.last:
            rv.last = ts
    _insort_early(rv, ts, leave, rv.first + s.dwell_ms)
    if leave:
        rv.last_leave = max(rv.last_leave, ts)
    else:
        rv.last_other = max(rv.last_other, ts)
    if t == "comment":
        rv.comments += 1
        text = ev.text  # type: ignore[union-attr]
        if text:
            rv.said = ([text[:300]] + rv.said)[:SAID_KEEP]
    elif t == "like":
        rv.likes += ev.count  # type: ignore[union-attr]
    elif t == "share":
        rv.shares += 1
    elif t == "follow":
        rv.follows += 1
    elif t == "gift":
        rv.gift_value += ev.value  # type: ignore[union-attr]
    elif t == "product_view":
        rv.views += 1
        rv.skus_viewed = _push_recent(rv.skus_viewed, ev.sku, SKU_KEEP)  # type: ignore[union-attr]
    elif t == "cart_add":
        rv.carts += 1
        rv.skus_carted = _push_recent(rv.skus_carted, ev.sku, SKU_KEEP)  # type: ignore[union-attr]
    elif t == "order":
        oid = ev.order_id  # type: ignore[union-attr]
        if oid not in rv.orders:
            rv.orders.append(oid)
            rv.amount[ev.currency] = rv.amount.get(ev.currency, 0.0) + ev.amount  # type: ignore[union-attr]
        if rv.first_order < 0 or ts < rv.first_order:
            rv.first_order = ts
    return rv
