"""Independent reference implementation (test oracle) of events.md and tiers.md.

Plain Python over the whole set of events: no Redis, no third-party libraries,
nothing imported from the project's packages.  Speed is irrelevant.

It reproduces /work/shared/samples/weeks-small.expected.json exactly for every room.
Decisions (S = forced by the sample, s = consistent with the sample but not tested
by it, - = our choice, sample silent):

Input (parse_frame)
  S every rejected event counts once per arrival (a resent bad event counts again);
    a line that is not JSON is 1 bad; a JSON value that is neither object nor array
    (e.g. ``42``) is 1 bad; each element of an array is validated on its own.
  S rejected in the sample: non-JSON, ``42``, like count 0, order amount -5,
    type "teleport", viewer name of 257+ code points.
  - ``[]`` is 0 good, 0 bad.  Bytes are the UTF-8 text of the frame (invalid UTF-8:
    1 bad); a frame over 1 MiB (UTF-8 bytes) is 1 bad.  NaN/Infinity are not JSON.
  - ints are JSON integers only: ``true``/``false`` and ``1.0`` are not ints; numbers
    (amount, value) are int or float, not bool, finite.
  - ``null`` is never a valid value: an optional field present as null is bad.
  - ``v``: absent or exactly 1.  ``shop``: absent -> "default", else 1-128 chars.
  - lengths in code points: id, room, shop, viewer.id 1-128; name 0-256; text 0-2000.
    gift, sku, order_id, currency, lang, tz: any string (no length rule stated).
  - country: exactly two characters A-Z.  ts: int, 0 <= ts <= now_ms + 24 h.
  - like count 1..10000; gift count >= 1 (no upper bound), value >= 0 required;
    cart_add qty >= 1; order needs order_id, amount >= 0, currency; consent dm bool.
  - unknown fields are ignored; validated events are returned normalised with
    v, shop, and the type's defaults filled (text "", count 1, qty 1).

Dedupe and counters
  s the key is (shop, room, id); the first arrival wins.  The sample cannot tell
    (shop, room, id) from (room, id) or id (other-shop ids do not collide); the
    shop is in the key because duplicates are counted per shop.
  S dedupe happens after validation: a bad event never enters the seen set.
  S events_applied and duplicates per shop; dead_letters global.

Shop state (everything below reads only the shop's own accepted events)
  S now = clock = max ts of the shop's events.
  s every event type counts for first_seen/last_active/rooms attended, including
    leave and consent (the sample is indifferent); a consent event is attendance in
    the room it names.
  S tier at now: dormant if now - last_active >= 30 d; active if orders >= 2 or
    >= 3 rooms whose first ts by the viewer is >= now - 30 d; first_buyer if orders
    == 1; else new_fan.  orders = distinct order_id (over the shop's orders).
    (The >= at the 30-day boundaries is from tiers.md; no viewer in the sample is
    within a day of either boundary, so it is not tested.)
  - dm_consent(t) = dm of the viewer's consent event with the largest (ts, id) among
    those with ts <= t (unknown -> None).  spend counts each distinct order_id once.

Room facts (for viewer V in room R; E = V's events in R, all types)
  S unique_viewers = viewers with >= 1 event in R.
  S new_viewer: min ts(E) == first_seen(V) (ties between rooms: new in both).
  S reactivated: P = {ts of V's events in other rooms with ts < min ts(E)} non-empty
    and min ts(E) - max(P) >= 30 d.
  S present(t): E_t = events of E with ts <= t, non-empty; L = max leave ts in E_t,
    O = max non-leave ts in E_t; not (L exists and (O missing or L > O)) and
    t - max ts(E_t) <= 10 min (`<=` untested: `<` also matches).  A leave tied
    with another event does not count as leaving (untested).
  S dwell(t) = (present(t) ? t : max ts(E_t)) - min ts(E); the max includes leave
    events (forced by one viewer of show-1-3).
  S buyers = viewers with an order in R; orders = distinct order_id in R.

Follow-up tasks (event-time, over the set; S unless marked)
  T = sorted set of ts of the shop's accepted events in every room (the values the
  shop clock takes; other shops' events are not in T - untested).  For (R, V):
    cond(t) = dwell(t) >= 3 min (`>=` untested)
              and no order of V in R with ts <= t
              and dm_consent(t) is not False
  S t0 = the smallest t in T with cond(t) (t <= now by construction); no such t:
    no task.  Lurkers get tasks: t need not be V's own event (591 of 624 tasks in the
    sample are made at another viewer's event); t need not be in R's show (3 tasks
    are made when V's consent turns true in a later show).  An order at exactly t
    blocks (forced by v1-538 in show-1-3).  Checking at every real time t, or only
    at the ts of R's events, or only at V's own events, does not match.
  S state: c = first order ts of V in R with ts > t0; w = first consent ts > t0 at
    which dm_consent is False (later consent true does not undo it).
    c and (no w or c <= w): converted; else w: withdrawn; else pending.
    Converting/withdrawing is decided by time order (not by final consent).
  - c == w tie: converted (sample silent).

v1.1 (spec/events.md contact and channel consent; spec/tiers.md customer history)
  - consent: optional bool dm, email, whatsapp, sms, at least one of them; contact:
    optional email (3-254 chars, exactly one @) and phone ("+" and 8-15 digits), at
    least one.  dm_consent reads only the consents that name dm.
  - each channel's consent and each address: the value of the event with the largest
    (ts, id) among those that name it; None until one does.
  - room "history" is never a show: not a room attended (tiers by rooms), never the
    earlier room of reactivated, no task; its events count for first_seen,
    last_active, orders, spend, the clock and events_applied.
  - claimed/sent/skipped are operator actions, not events: always 0 here, and so
    the "no follow-up sent in the last 7 days" condition is never in play.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from typing import Any

from tests.reference_kinds import kind_tasks

MIN = 60_000
DAY = 86_400_000
ACTIVE_WINDOW = 30 * DAY
DORMANT_AFTER = 30 * DAY
REACTIVATE_GAP = 30 * DAY
PRESENT_WINDOW = 10 * MIN
DWELL_MIN = 3 * MIN
FUTURE_SLACK = DAY
MAX_FRAME = 1 << 20
# not in events.md: the product's ceilings on an amount or value and on a count or qty, far above any
# real order or gift, so that no sum of them overflows a counter (fanops.schema.MAX_AMOUNT)
MAX_AMOUNT = 1e15
MAX_COUNT = 1_000_000_000

TYPES = {"join", "leave", "comment", "like", "share", "follow", "gift",
         "product_view", "cart_add", "order", "consent", "contact"}
HISTORY = "history"
CHANNELS = ("dm", "email", "whatsapp", "sms")
TIERS = ("new_fan", "first_buyer", "active", "dormant")


# ---------------------------------------------------------------- validation
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)
            and x == x and x not in (float("inf"), float("-inf")))


def _is_str(x: Any, lo: int | None = None, hi: int | None = None) -> bool:
    if not isinstance(x, str):
        return False
    return (lo is None or len(x) >= lo) and (hi is None or len(x) <= hi)


def validate(e: Any, now_ms: int) -> dict | None:
    """One event object -> normalised dict, or None if it is bad input."""
    if not isinstance(e, dict):
        return None
    v = e.get("v", 1)
    if not _is_int(v) or v != 1:
        return None
    if not _is_str(e.get("id"), 1, 128) or not _is_str(e.get("room"), 1, 128):
        return None
    shop = e.get("shop", "default")
    if not _is_str(shop, 1, 128):
        return None
    ts = e.get("ts")
    if not _is_int(ts) or ts < 0 or ts > now_ms + FUTURE_SLACK:
        return None
    t = e.get("type")
    if t not in TYPES:
        return None
    vw = e.get("viewer")
    if not isinstance(vw, dict) or not _is_str(vw.get("id"), 1, 128):
        return None
    viewer = {"id": vw["id"]}
    if "name" in vw:
        if not _is_str(vw["name"], 0, 256):
            return None
        viewer["name"] = vw["name"]
    if "country" in vw:
        c = vw["country"]
        if not (_is_str(c, 2, 2) and all("A" <= ch <= "Z" for ch in c)):
            return None
        viewer["country"] = c
    for k in ("lang", "tz"):
        if k in vw:
            if not _is_str(vw[k]):
                return None
            viewer[k] = vw[k]
    out = {"v": 1, "id": e["id"], "room": e["room"], "shop": shop, "ts": ts,
           "type": t, "viewer": viewer}
    if t == "comment":
        text = e.get("text", "")
        if not _is_str(text, 0, 2000):
            return None
        out["text"] = text
    elif t == "like":
        n = e.get("count", 1)
        if not _is_int(n) or not 1 <= n <= 10000:
            return None
        out["count"] = n
    elif t == "gift":
        n, val = e.get("count", 1), e.get("value")
        if (not _is_str(e.get("gift")) or not _is_int(n) or not 1 <= n <= MAX_COUNT or not _is_num(val)
                or not 0 <= val <= MAX_AMOUNT):
            return None
        out.update(gift=e["gift"], count=n, value=val)
    elif t == "product_view":
        if not _is_str(e.get("sku")):
            return None
        out["sku"] = e["sku"]
    elif t == "cart_add":
        q = e.get("qty", 1)
        if not _is_str(e.get("sku")) or not _is_int(q) or not 1 <= q <= MAX_COUNT:
            return None
        out.update(sku=e["sku"], qty=q)
    elif t == "order":
        a = e.get("amount")
        if (not _is_str(e.get("order_id")) or not _is_num(a) or not 0 <= a <= MAX_AMOUNT
                or not _is_str(e.get("currency"))):
            return None
        out.update(order_id=e["order_id"], amount=a, currency=e["currency"])
    elif t == "consent":
        named = [c for c in CHANNELS if c in e]
        if not isinstance(e.get("dm"), bool) or not all(isinstance(e[c], bool) for c in named):
            return None  # spec/events.md: dm is required, the channel flags optional
        out.update((c, e[c]) for c in named)
    elif t == "contact":
        return _contact(e, out)
    return out


def _contact(e: dict, out: dict) -> dict | None:
    if "email" not in e and "phone" not in e:
        return None
    if "email" in e:
        m = e["email"]
        if not _is_str(m, 3, 254) or m.count("@") != 1:
            return None
        out["email"] = m
    if "phone" in e:
        p = e["phone"]
        if not _is_str(p) or p[:1] != "+" or not 8 <= len(p) - 1 <= 15 or not all("0" <= c <= "9" for c in p[1:]):
            return None
        out["phone"] = p
    return out


def reach(evs: list[dict]) -> dict:
    """Addresses and channel consents: each from the event with the largest (ts, id) naming it."""
    out: dict = {"email": None, "phone": None, "consent": {c: None for c in CHANNELS}}
    for e in sorted(evs, key=lambda e: (e["ts"], e["id"])):
        if e["type"] == "contact":
            out.update((k, e[k]) for k in ("email", "phone") if k in e)
        elif e["type"] == "consent":
            out["consent"].update((c, e[c]) for c in CHANNELS if c in e)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_frame(line: str | bytes, now_ms: int) -> tuple[list[dict], int]:
    """A text frame -> (good events with defaults filled, number of bad events)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return [], 1
    if len(line.encode("utf-8", "surrogatepass")) > MAX_FRAME:
        return [], 1
    try:
        doc = json.loads(line, parse_constant=_no_constant)
    except ValueError:
        return [], 1
    items = doc if isinstance(doc, list) else [doc]
    good = [g for g in (validate(x, now_ms) for x in items) if g is not None]
    return good, len(items) - len(good)


# ---------------------------------------------------------------- state
def _last_le(sorted_ts: list[int], t: int) -> int | None:
    """Largest value <= t in a sorted list, or None."""
    i = bisect_right(sorted_ts, t)
    return sorted_ts[i - 1] if i else None


class _Attendance:
    """One viewer's events in one room, asked about at an event time t."""

    def __init__(self, evs: list[dict]) -> None:
        self.all = sorted(e["ts"] for e in evs)
        self.other = sorted(e["ts"] for e in evs if e["type"] != "leave")
        self.leave = sorted(e["ts"] for e in evs if e["type"] == "leave")
        self.orders = sorted(e["ts"] for e in evs if e["type"] == "order")
        self.first = self.all[0]

    def present(self, t: int) -> bool:
        last = _last_le(self.all, t)
        if last is None:
            return False
        lo, ll = _last_le(self.other, t), _last_le(self.leave, t)
        left = ll is not None and (lo is None or ll > lo)
        return not left and t - last <= PRESENT_WINDOW

    def dwell(self, t: int) -> int | None:
        last = _last_le(self.all, t)
        if last is None:
            return None
        return (t if self.present(t) else last) - self.first

    def ordered_by(self, t: int) -> bool:
        return bool(self.orders) and self.orders[0] <= t


class _Consent:
    """One viewer's consent timeline: dm of the consent with the largest (ts, id) at or before t."""

    def __init__(self, evs: list[dict]) -> None:
        cs = sorted((e["ts"], e["id"], e["dm"]) for e in evs if e["type"] == "consent" and "dm" in e)
        self.ts = [c[0] for c in cs]
        self.dm = [c[2] for c in cs]

    def at(self, t: int) -> bool | None:
        i = bisect_right(self.ts, t)
        return self.dm[i - 1] if i else None

    def first_false_after(self, t0: int) -> int | None:
        """The first time t > t0 at which the consent value is false."""
        for t in self.ts:
            if t > t0 and self.at(t) is False:
                return t
        return None


class Reference:
    """Feed frames with ``feed``; then ask ``status`` and ``viewer``."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str, str], dict] = {}   # (shop, room, id) -> first arrival
        self.applied: dict[str, int] = {}
        self.duplicates: dict[str, int] = {}
        self.dead_letters = 0
        self._followups: dict[str, dict] = {}                # cache, cleared by feed

    def feed(self, lines, now_ms: int) -> None:
        self._followups.clear()
        for line in lines:
            good, bad = parse_frame(line, now_ms)
            self.dead_letters += bad
            for e in good:
                key = (e["shop"], e["room"], e["id"])
                if key in self.events:
                    self.duplicates[e["shop"]] = self.duplicates.get(e["shop"], 0) + 1
                else:
                    self.events[key] = e
                    self.applied[e["shop"]] = self.applied.get(e["shop"], 0) + 1

    # -- the set of one shop's events, grouped
    def _shop(self, shop: str) -> list[dict]:
        return [e for e in self.events.values() if e["shop"] == shop]

    def clock(self, shop: str) -> int:
        return max((e["ts"] for e in self._shop(shop)), default=0)

    def _by_viewer(self, shop: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for e in self._shop(shop):
            out.setdefault(e["viewer"]["id"], []).append(e)
        return out

    # -- viewer state and tier
    def _viewer_state(self, evs: list[dict], now: int) -> dict:
        order_evs = sorted((e for e in evs if e["type"] == "order"), key=lambda e: (e["ts"], e["id"]))
        spend: dict[str, float] = {}
        seen_orders: set[str] = set()
        for e in order_evs:                       # each distinct order_id counted once
            if e["order_id"] not in seen_orders:
                seen_orders.add(e["order_id"])
                spend[e["currency"]] = spend.get(e["currency"], 0) + e["amount"]
        rooms: dict[str, int] = {}
        for e in evs:
            if e["room"] != HISTORY:
                rooms[e["room"]] = min(rooms.get(e["room"], e["ts"]), e["ts"])
        last_active = max(e["ts"] for e in evs)
        recent_rooms = sum(1 for t in rooms.values() if t >= now - ACTIVE_WINDOW)
        if now - last_active >= DORMANT_AFTER:
            tier, rule = "dormant", "now - last_active >= 30 days"
        elif len(seen_orders) >= 2:
            tier, rule = "active", "orders >= 2"
        elif recent_rooms >= 3:
            tier, rule = "active", "3 rooms first attended within 30 days"
        elif len(seen_orders) == 1:
            tier, rule = "first_buyer", "orders == 1"
        else:
            tier, rule = "new_fan", "orders == 0"
        return {"id": evs[0]["viewer"]["id"],
                "first_seen": min(e["ts"] for e in evs), "last_active": last_active,
                "orders": len(seen_orders), "spend": spend, "rooms": rooms,
                "dm_consent": _Consent(evs).at(now), "tier": tier, "rule": rule, "reach": reach(evs)}

    def viewer(self, shop: str, viewer_id: str) -> dict | None:
        evs = self._by_viewer(shop).get(viewer_id)
        if not evs:
            return None
        return {"shop": shop, **self._viewer_state(evs, self.clock(shop))}

    # -- follow-up tasks (event-time semantics over the set of events)
    def followups(self, shop: str) -> dict[tuple[str, str], dict]:
        """(room, viewer) -> {"made": t0, "state": ...} for every task that exists."""
        if shop not in self._followups:
            self._followups[shop] = self._compute_followups(shop)
        return self._followups[shop]

    def _compute_followups(self, shop: str) -> dict[tuple[str, str], dict]:
        events = self._shop(shop)
        now = self.clock(shop)
        clock_steps = sorted({e["ts"] for e in events})     # the values the shop clock takes
        tasks = {}
        for vid, evs in self._by_viewer(shop).items():
            consent = _Consent(evs)
            per_room: dict[str, list[dict]] = {}
            for e in evs:
                if e["room"] != HISTORY:
                    per_room.setdefault(e["room"], []).append(e)
            for room, revs in per_room.items():
                att = _Attendance(revs)
                t0 = None
                for t in clock_steps[bisect_left(clock_steps, att.first + DWELL_MIN):]:
                    if t > now or att.ordered_by(t):
                        break                      # an order in the room blocks the task for good
                    if att.dwell(t) >= DWELL_MIN and consent.at(t) is not False:
                        t0 = t
                        break
                if t0 is None:
                    continue
                conv = next((t for t in att.orders if t > t0), None)
                wd = consent.first_false_after(t0)
                if conv is not None and (wd is None or conv <= wd):
                    state = "converted"
                elif wd is not None:
                    state = "withdrawn"
                else:
                    state = "pending"
                tasks[(room, vid)] = {"made": t0, "state": state}
        return tasks

    def kind_tasks(self, shop: str) -> dict[tuple[str, int, str], str]:
        """(kind, occasion, viewer) -> state of the v1.1 kinds besides lingered (reference_kinds)."""
        now = self.clock(shop)
        return {(k, occ, v): st for v, evs in self._by_viewer(shop).items()
                for (k, occ), st in kind_tasks(evs, now, DORMANT_AFTER).items()}

    # -- the status command
    def status(self, shop: str, room: str | None = None) -> dict:
        now = self.clock(shop)
        by_viewer = self._by_viewer(shop)
        vstate = {v: self._viewer_state(evs, now) for v, evs in by_viewer.items()}
        out = {"shop": shop, "clock": now, "lag": 0,
               "events_applied": self.applied.get(shop, 0),
               "duplicates": self.duplicates.get(shop, 0),
               "dead_letters": self.dead_letters,
               "tiers": _tier_counts(s["tier"] for s in vstate.values())}
        # v1.1: expiry is by wall time, which a feed alone never moves
        every = [t["state"] for t in self.followups(shop).values()]
        out["tasks"] = {"lingered": {k: every.count(k) for k in FOLLOWUP_STATES}}
        kinds = self.kind_tasks(shop)
        for kind in ("thank_first_order", "after_sales", "win_back"):
            got = [st for (k, _o, _v), st in kinds.items() if k == kind]
            out["tasks"][kind] = {k: got.count(k) for k in FOLLOWUP_STATES}
        if room is None:
            return out
        viewers = {v: [e for e in evs if e["room"] == room] for v, evs in by_viewer.items()}
        viewers = {v: revs for v, revs in viewers.items() if revs}
        present = new = reactivated = buyers = 0
        for v, revs in viewers.items():
            att = _Attendance(revs)
            present += att.present(now)
            new += att.first == vstate[v]["first_seen"]
            before = [e["ts"] for e in by_viewer[v] if e["room"] not in (room, HISTORY) and e["ts"] < att.first]
            reactivated += bool(before) and att.first - max(before) >= REACTIVATE_GAP
            buyers += bool(att.orders)
        fstates = [t["state"] for (r, _), t in self.followups(shop).items() if r == room]
        out["room"] = {
            "id": room, "unique_viewers": len(viewers), "present": present,
            "new_viewers": new, "reactivated": reactivated, "buyers": buyers,
            "orders": len({e["order_id"] for revs in viewers.values() for e in revs
                           if e["type"] == "order"}),
            "tiers": _tier_counts(vstate[v]["tier"] for v in viewers),
            "followups": {k: fstates.count(k) for k in FOLLOWUP_STATES}}
        return out


FOLLOWUP_STATES = ("pending", "claimed", "sent", "skipped", "converted", "withdrawn", "expired")


def _tier_counts(tiers) -> dict[str, int]:
    out = {t: 0 for t in TIERS}
    for t in tiers:
        out[t] += 1
    return out
