"""One broadcast of the simulated room: arrivals, departures and actions, one event per time slot."""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Iterator
from typing import Any

from realtime.simulator.bad import Bad, Garbled, bad_event
from realtime.simulator.settings import SimSettings
from realtime.simulator.tables import ACTIONS, ACTIVITY, CHAT, CUM, FX, GIFTS, HOSTILE_TEXT, KINDS, PRICE, SKU_W, SKUS
from realtime.simulator.viewers import Viewer


class Show:
    """One broadcast: arrivals, departures and actions, one event per slot; slot k has ts start+k/rate."""

    def __init__(self, rng: random.Random, s: SimSettings, *, room: str, prefix: str, start_ms: int, length_s: float,
                 total: int | None, rate: float, cast: list[Viewer], batch: int, exact_batch: bool) -> None:
        self.rng, self.s, self.room, self.prefix, self.start = rng, s, room, prefix, start_ms
        self.total, self.step, self.batch, self.exact = total, 1000.0 / rate, batch, exact_batch
        self.len_ms = length_s * 1000
        rng.shuffle(cast)
        at = sorted(self.len_ms * (rng.random() * .03 if rng.random() < .08 else rng.betavariate(1.6, 2.6))
                    for _ in cast)
        self.arrivals = deque(zip(at, cast, strict=True))
        self.departures: list[tuple[float, int, Viewer]] = []
        self.present: dict[str, list[Viewer]] = {k: [] for k in KINDS}
        self.gone: list[Viewer] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=512)
        self.cast, self.n_order, self.n_bad, self.n_dep, self.wave = cast, 0, 0, 0, 0
        self.bad_from = rng.randrange(64)
        self.rng_reach = random.Random(f"{s.seed}/{prefix}/reach")  # v1.1 events: the v1 timeline stays as it is

    def _ev(self, ts: int, typ: str, viewer: dict[str, Any], k: int) -> dict[str, Any]:
        return {"id": f"{self.prefix}{k}", "room": self.room, "shop": self.s.shop, "ts": ts, "type": typ,
                "viewer": viewer}

    def _join(self, v: Viewer, ts: int, k: int) -> dict[str, Any]:
        v.pos = len(self.present[v.kind])
        self.present[v.kind].append(v)
        rng, stay = self.rng, (.35 if v.kind == "lurker" else .25)
        if rng.random() >= stay:  # the rest stay to the end of the show
            dwell = rng.lognormvariate(-3.0 if v.kind == "lurker" else -1.4, 1.0) * self.len_ms
            if self.total is None or ts - self.start + dwell < self.len_ms:
                self.n_dep += 1
                heapq.heappush(self.departures, (ts - self.start + dwell, self.n_dep, v))
        return self._ev(ts, "join", v.full, k)

    def _remove(self, v: Viewer) -> None:
        lst = self.present[v.kind]
        last = lst.pop()
        if last is not v:
            lst[v.pos], last.pos = last, v.pos
        v.pos = -1
        self.gone.append(v)

    def _pick(self) -> Viewer | None:
        p, rng = self.present, self.rng
        total = sum(ACTIVITY[k] * len(p[k]) for k in KINDS)
        if total <= 0:
            return None
        x = rng.random() * total
        for k in KINDS[1:]:
            x -= ACTIVITY[k] * len(p[k])
            if x < 0 and p[k]:
                return rng.choice(p[k])
        return rng.choice(p[KINDS[-1]] or p["liker"] or p["chatter"] or p["shopper"])

    def event(self, ts: int, k: int) -> dict[str, Any]:
        """The event in slot ``k``: a due arrival, a due departure's leave, or an action of someone present."""
        off, rng = ts - self.start, self.rng
        v: Viewer | None
        if self.total is None and off >= (self.wave + 1) * self.len_ms:
            self._next_wave()
        while True:
            if self.arrivals and self.arrivals[0][0] <= off:
                return self._join(self.arrivals.popleft()[1], ts, k)
            if self.departures and self.departures[0][0] <= off:
                v = heapq.heappop(self.departures)[2]
                if v.pos >= 0:
                    self._remove(v)
                    if v.sends_leave:
                        return self._ev(ts, "leave", v.short, k)
                continue
            break
        v = self._pick()
        if v is None:
            if self.arrivals:  # nobody active yet: the next arrival comes a little early
                return self._join(self.arrivals.popleft()[1], ts, k)
            if self.gone:  # a long show: someone who left comes back
                v = self.gone.pop(rng.randrange(len(self.gone)))
                v.sends_leave = rng.random() < .35
                return self._join(v, ts, k)
            lurkers = self.present["lurker"]
            return self._ev(ts, "like", rng.choice(lurkers).short, k) | {"count": 1}
        return self._act(v, ts, k)

    def _next_wave(self) -> None:
        """An endless show: each nominal show length, those who left come back and some stayers go."""
        rng, self.wave = self.rng, self.wave + 1
        back, self.gone = self.gone, []
        rng.shuffle(back)
        at = sorted((self.wave + rng.betavariate(1.6, 2.6)) * self.len_ms for _ in back)
        self.arrivals.extend(zip(at, back, strict=True))
        for v in back:
            v.orders, v.sends_leave = 0, rng.random() < .35
        for lst in self.present.values():
            for v in rng.sample(lst, len(lst) // 2):
                self.n_dep += 1
                heapq.heappush(self.departures, ((self.wave + rng.random()) * self.len_ms, self.n_dep, v))

    def _act(self, v: Viewer, ts: int, k: int) -> dict[str, Any]:
        rng, r = self.rng, self.rng.random()
        if v.kind != "liker" and (v.consent is None and r < .05 or v.flip and v.consent is not None and r < .01):
            v.consent = (rng.random() < .78) if v.consent is None else not v.consent
            v.flip = v.flip and r >= .01
            return self._ev(ts, "consent", v.full, k) | {"dm": v.consent}
        x, cum = rng.random(), CUM[v.kind]
        act = next((a for a, c in zip(ACTIONS, cum, strict=True) if x < c), "like")
        if act == "order" and (not v.cart or v.orders >= (2 if v.repeat else 1)):
            act = "cart" if v.viewed else "view"
        if act == "cart" and not v.viewed:
            act = "view"
        if act == "follow" and v.followed:
            act = "like"
        if act == "like":
            n = 1 if rng.random() < .3 else min(10000, int(rng.paretovariate(1.2) * 3))
            return self._ev(ts, "like", v.short, k) | {"count": n}
        if act == "comment":
            r = rng.random()
            stmts, qs = CHAT[v.lk]
            text = rng.choice(HOSTILE_TEXT) if r < .01 else rng.choice(qs if r < .36 else stmts)
            return self._ev(ts, "comment", v.full, k) | {"text": text}
        if act in ("share", "follow"):
            v.followed = v.followed or act == "follow"
            return self._ev(ts, act, v.full if act == "follow" else v.short, k)
        if act == "gift":
            g, unit, _ = rng.choices(GIFTS, tuple(g[2] for g in GIFTS))[0]
            n = rng.choice((1, 1, 1, 5, 10, 99)) if unit < 1 else 1
            return self._ev(ts, "gift", v.full, k) | {"gift": g, "count": n, "value": round(unit * n, 2)}
        if act == "view":
            sku = rng.choices(SKUS, SKU_W)[0][0]
            v.viewed.append(sku)
            return self._ev(ts, "product_view", v.short, k) | {"sku": sku}
        if act == "cart":
            sku, qty = rng.choice(v.viewed), (1 if rng.random() < .85 else rng.randint(2, 4))
            v.cart.append((sku, qty))
            return self._ev(ts, "cart_add", v.short, k) | {"sku": sku, "qty": qty}
        usd = sum(PRICE[s] * q for s, q in v.cart)
        fx, unit = FX[v.cur]
        amount = round(round(usd * fx / unit) * unit, 2)
        amount = int(amount) if unit >= 1 else amount
        v.cart, v.orders, self.n_order = [], v.orders + 1, self.n_order + 1
        return self._ev(ts, "order", v.full, k) | {"order_id": f"o-{self.prefix}{self.n_order}-{self.s.seed}",
                                                   "amount": amount, "currency": v.cur}

    def _reach(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        """v1.1: the buyer's addresses and channel consents, as a shop order brings them, at the order's ts."""
        rng, vid = self.rng_reach, order["viewer"]["id"]
        base = {"room": order["room"], "shop": order["shop"], "ts": order["ts"], "viewer": {"id": vid}}
        contact: dict[str, Any] = {}
        if rng.random() < .85:
            contact["email"] = f"{vid.replace('@', '')[:60]}@example.com"
        if not contact or rng.random() < .4:
            contact["phone"] = f"+1555{rng.randrange(10 ** 7):07d}"
        flags = {c: rng.random() < p for c, p in (("email", .6), ("whatsapp", .4), ("sms", .3)) if rng.random() < .8}
        out = [base | {"id": order["id"] + "-c", "type": "contact"} | contact]
        # a consent event names dm (spec/events.md: required): the buyer's DM answer as it stands,
        # or, for a buyer who has not given one, the checkout's yes (DMs were allowed anyway: not false)
        buyer = next((v for v in self.cast if v.vid == vid), None)
        if flags and buyer is not None:
            dm = buyer.consent if buyer.consent is not None else True
            out.append(base | {"id": order["id"] + "-k", "type": "consent", "dm": dm} | flags)
        return out

    def _bad(self, ts: int) -> Bad:
        """A deliberately invalid event, each time for the next reason on events.md's bad-input list."""
        self.n_bad += 1
        return bad_event(self.n_bad, self.n_bad + self.bad_from, prefix=self.prefix, room=self.room,
                         shop=self.s.shop, ts=ts)

    def frames(self) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """(due offset in ms from the show start, frame) until ``total`` slots are used (forever if None)."""
        rng, k, s, b = self.rng, 0, self.s, self.batch
        lo, hi = (b, b) if self.exact or b == 1 else (max(1, b // 2), b + b // 2)
        for v in self.cast:  # per-show state starts afresh (consent carries over)
            v.reset(rng)
        while self.total is None or k < self.total:
            n = rng.randint(lo, hi) if self.total is None else min(rng.randint(lo, hi), self.total - k)
            frame: list[dict[str, Any]] = []
            ts = self.start
            for _ in range(n):
                ts = self.start + int(k * self.step)
                k += 1
                e = self.event(ts, k)
                if s.dup_ratio and self.recent and rng.random() < s.dup_ratio:
                    frame.append(rng.choice(self.recent))
                frame.append(e)
                self.recent.append(e)
                if s.contacts and e["type"] == "order" and self.rng_reach.random() < s.contacts:
                    frame += self._reach(e)
            extra: list[dict[str, Any]] | None = None
            if s.bad_ratio and rng.random() < s.bad_ratio:
                bad = self._bad(ts)
                if isinstance(bad, Garbled):
                    extra = [bad]
                else:
                    frame.insert(rng.randrange(len(frame) + 1), bad)
            yield ts - self.start, frame
            if extra:
                yield ts - self.start, extra

