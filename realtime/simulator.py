"""A simulated live-shopping room: a deterministic-per-seed event timeline, served over WebSocket.

``generate(settings)`` is the whole timeline as frames (lists of event dicts in the
``spec/events.md`` format): the shop's earlier shows first, then the live show.
``serve_simulation`` paces the live part in real time and fans it out to every
client; each new connection first gets the history (fast), then the last ~5 s of
live frames (a resend, as real feeds do on reconnect), then the live stream.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)
_wslog = logging.getLogger(f"{__name__}.websockets")  # the library's own per-connection lines: quiet
_wslog.setLevel(logging.WARNING)

DAY_MS = 86_400_000
NOMINAL_SHOW_S = 3600.0  # show length used for the arrival curve when duration is None
FAR_FUTURE_MS = 32_503_680_000_000  # year 3000: "ts far in the future" for any clock

# country: (lang tag, IANA zones, currency, weight)
_GEO: dict[str, tuple[str, tuple[str, ...], str, int]] = {
    "US": ("en-US", ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"), "USD", 22),
    "GB": ("en-GB", ("Europe/London",), "GBP", 6), "PH": ("en-PH", ("Asia/Manila",), "PHP", 3),
    "MX": ("es-MX", ("America/Mexico_City", "America/Monterrey", "America/Tijuana"), "MXN", 8),
    "ES": ("es-ES", ("Europe/Madrid",), "EUR", 4), "AR": ("es-AR", ("America/Argentina/Buenos_Aires",), "ARS", 2),
    "BR": ("pt-BR", ("America/Sao_Paulo", "America/Manaus", "America/Recife"), "BRL", 8),
    "PT": ("pt-PT", ("Europe/Lisbon",), "EUR", 2), "SA": ("ar-SA", ("Asia/Riyadh",), "SAR", 5),
    "AE": ("ar-AE", ("Asia/Dubai",), "AED", 2), "EG": ("ar-EG", ("Africa/Cairo",), "EGP", 2),
    "DE": ("de-DE", ("Europe/Berlin",), "EUR", 5), "AT": ("de-AT", ("Europe/Vienna",), "EUR", 1),
    "ID": ("id-ID", ("Asia/Jakarta", "Asia/Makassar"), "IDR", 8), "JP": ("ja-JP", ("Asia/Tokyo",), "JPY", 4),
    "TW": ("zh-TW", ("Asia/Taipei",), "TWD", 2), "SG": ("zh-SG", ("Asia/Singapore",), "SGD", 2),
    "FR": ("fr-FR", ("Europe/Paris",), "EUR", 4), "CA": ("fr-CA", ("America/Toronto",), "CAD", 2),
    "TH": ("th-TH", ("Asia/Bangkok",), "THB", 3), "VN": ("vi-VN", ("Asia/Ho_Chi_Minh",), "VND", 3),
    "IL": ("he-IL", ("Asia/Jerusalem",), "ILS", 1)}
# currency: (units per USD, rounding step)
_FX: dict[str, tuple[float, float]] = {
    "USD": (1, .01), "GBP": (.79, .01), "EUR": (.92, .01), "PHP": (58, 1), "MXN": (18.5, 1), "ARS": (980, 10),
    "BRL": (5.6, .1), "SAR": (3.75, .05), "AED": (3.67, .05), "EGP": (49, 1), "IDR": (16000, 1000),
    "JPY": (150, 10), "TWD": (32, 1), "SGD": (1.34, .01), "CAD": (1.38, .01), "THB": (35, 1), "VND": (25000, 1000),
    "ILS": (3.7, .1)}
# lang: (statements, questions) - questions end in ?, ？, ؟ or are ¿...?
_CHAT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("love this!!", "just ordered 🛒", "hi from Texas 👋", "that color is so pretty 😍", "first time here", "🔥🔥🔥", "omg yes"),
           ("does it come in blue?", "how much is shipping?", "is it true to size?", "can you show the back please?", "do you ship to Canada?")),
    "es": (("me encanta 😍", "saludos desde CDMX", "ya lo compré", "qué bonito color"),
           ("¿cuánto cuesta el envío?", "¿hay talla M?", "¿lo tienen en negro?", "¿envían a Colombia?")),
    "pt": (("amei demais ❤️", "oi de São Paulo", "já comprei o meu"), ("tem tamanho P?", "quanto custa o frete?", "chega antes do Natal?")),
    "ar": (("جميل جداً 😍", "مرحبا من الرياض", "اشتريت واحد"), ("كم السعر؟", "هل يوجد توصيل إلى جدة؟", "هل يوجد لون أسود?")),
    "de": (("sieht super aus!", "Grüße aus Berlin 👋", "hab gerade bestellt"), ("Gibt es das auch in Blau?", "Wie lange dauert der Versand?", "Ist das waschbar?")),
    "id": (("bagus banget kak 😍", "halo dari Jakarta", "udah checkout ya"), ("ready size L kak?", "ongkirnya berapa kak?", "bisa COD ga?")),
    "ja": (("かわいい！", "こんばんは〜", "買いました✨"), ("青はありますか？", "サイズ感はどうですか？", "送料はいくらですか？")),
    "zh": (("好漂亮 😍", "大家好", "已下单"), ("有蓝色的吗？", "运费多少？", "什么时候发货?")),
    "fr": (("trop beau 😍", "coucou de Lyon", "je viens de commander"), ("c'est combien la livraison ?", "il existe en bleu ?", "ça taille grand ?")),
    "th": (("สวยมากค่ะ 😍", "สวัสดีค่ะ", "สั่งแล้วค่ะ"), ("มีสีฟ้าไหมคะ?", "ส่งฟรีไหม?")),
    "vi": (("đẹp quá 😍", "chào shop", "đã đặt hàng rồi"), ("còn size M không ạ?", "ship về Hà Nội bao lâu?")),
    "he": (("מהמם 😍", "שלום מתל אביב"), ("יש משלוח לישראל?", "כמה זה עולה?"))}
_CHAT_LANGS = tuple(_CHAT)
_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Anna K", "jess💖", "Mike_T", "Taylor ✨", "brittany.shops", "Kayla 🦋"), "es": ("María José", "Zoë 🦊", "Carlos 🇲🇽", "Lupita"),
    "pt": ("João Pedro", "Bia 🌻", "Luana"), "ar": ("نورة 🌙", "محمد", "عبدالله ✨", "ريم"), "he": ("דנה", "יוסי 🎧"),
    "de": ("Jürgen", "Lena 🌿", "Jörg M."), "id": ("Putri Ayu", "Rina❤️", "Dewi"), "ja": ("さくら🌸", "ゆうき", "ハルカ"),
    "zh": ("小红", "王芳🌷", "阿杰"), "fr": ("Chloé", "Émile", "Maëlle ✿"), "th": ("น้ำฝน", "ต้นข้าว"), "vi": ("Nguyễn Thảo", "Trần Minh 🍜")}
HOSTILE_NAMES: tuple[str, ...] = (
    "<script>alert(1)</script>", "<b>bold</b> buyer", "\u202eevil\u202c name", "{name}", "{product} {{x}} {0}",
    "Robert'); DROP TABLE viewers;--", "%s%n%x", "Z̷a̷l̷g̷o̷ ̷t̷e̷x̷t̷", "\u200b", "", "👨‍👩‍👧‍👦🔥💯",
    "\u200fمريم\u200e RTL mix", "שרה <i>כהן</i>", ("Lorem ipsum dolor sit amet 🌟 " * 10)[:256])
_HOSTILE_TEXT = ("<script>alert(1)</script>", "<b>SALE</b> <img src=x onerror=alert(1)>", "hi {name}, use {product}!",
                 "\u202egnp.exe\u202c", "'; DROP TABLE viewers;--", "z̴̢a̸l̷g̶o̵", "so good " * 240, "", "💖" * 60)
_SKUS: tuple[tuple[str, float], ...] = tuple(zip(
    ("lip-tint-rose", "lip-tint-coral", "glow-serum-30ml", "sunscreen-spf50", "cushion-21", "cushion-23", "brow-pencil",
     "mascara-black", "hair-clip-set", "silk-scrunchie", "tote-canvas", "phone-strap", "mini-fan", "led-mirror",
     "nail-kit", "perfume-10ml", "sheet-mask-10", "hoodie-m", "hoodie-l", "socks-3pack"),
    (12.99, 12.99, 24.5, 17.99, 29.99, 29.99, 8.99, 11.5, 6.99, 9.99, 19.99, 7.99, 14.99, 39.9, 21.0, 34.99, 15.99,
     44.99, 44.99, 9.5)))
_PRICE = dict(_SKUS)
_SKU_W = tuple(1 / (i + 1) for i in range(len(_SKUS)))
_GIFTS = (("Rose", .01, 50), ("Finger Heart", .07, 20), ("Doughnut", .4, 8), ("Hat and Mustache", 1.3, 4),
          ("Galaxy", 13.5, 1), ("Lion", 400.0, .1))
_KINDS = ("lurker", "liker", "chatter", "shopper", "fan")
_KIND_P = (.40, .22, .18, .12, .08)
_ACTIVITY = {"lurker": 0.0, "liker": 3.0, "chatter": 2.0, "shopper": 1.5, "fan": 1.2}
# kind: cumulative thresholds over (like, comment, share, follow, gift, view, cart, order)
_ACTIONS = ("like", "comment", "share", "follow", "gift", "view", "cart", "order")
_MIX = {"liker": (.84, .05, .04, .03, .03, .01, 0, 0), "chatter": (.25, .60, .03, .03, .02, .05, .02, 0),
        "shopper": (.12, .15, .01, .02, 0, .38, .22, .10), "fan": (.30, .10, .15, .15, .28, .02, 0, 0)}
_CUM = {k: tuple(sum(p[:i + 1]) for i in range(len(p))) for k, p in _MIX.items()}


class Bad(dict[str, Any]):
    """An event dict that breaks the spec on purpose; ``reason`` says how."""
    reason: str = ""


class Garbled(Bad):
    """A frame that is not an event at all (bad JSON, a bare scalar): sent as ``text``, always alone."""
    text: str = ""


@dataclass(frozen=True)
class SimSettings:
    """What to simulate. Same settings (with ``start_ms`` fixed) -> the same timeline."""

    seed: int = 1
    viewers: int = 2000
    rate: float = 200.0  # events/s target
    duration: float | None = None  # seconds of live show; None = until stopped
    shop: str = "default"
    room: str | None = None  # default: f"live-{seed}-{date}"
    history_shows: int = 3  # earlier shows of the same shop, sent first, fast, with past ts
    batch: int | None = None  # events per frame; None = pick by rate (1 at low rate, up to 200 at high)
    start_ms: int | None = None  # ts of the live show's start; None = the wall clock
    bad_ratio: float = 0.002  # fraction of frames that carry a malformed/invalid event
    dup_ratio: float = 0.002  # fraction of events resent


class _Viewer:
    __slots__ = ("vid", "full", "short", "kind", "lk", "cur", "consent", "flip", "repeat", "orders", "cart",
                 "viewed", "followed", "pos", "sends_leave")
    consent: bool | None  # None until the viewer first says
    viewed: list[str]  # skus
    cart: list[tuple[str, int]]  # (sku, qty)

    def __init__(self, rng: random.Random, vid: str, name: str | None) -> None:
        self.vid, self.kind = vid, rng.choices(_KINDS, _KIND_P)[0]
        full: dict[str, Any] = {"id": vid}
        self.short = {"id": vid}
        r, lang, country = rng.random(), None, None
        if r >= .12:
            country = rng.choices(tuple(_GEO), tuple(g[3] for g in _GEO.values()))[0]
            tag, zones, self.cur, _ = _GEO[country]
            lang = tag if rng.random() < .6 else tag.split("-")[0]
            if r >= .20:
                full |= {"country": country, "lang": lang, "tz": rng.choice(zones)}
            else:  # partial profiles, as platforms give them
                full |= {"lang": lang} if r < .16 else {"country": country}
        else:
            self.cur = "USD"
        self.lk = lang.split("-")[0] if lang else rng.choices(_CHAT_LANGS, (8,) + (1,) * (len(_CHAT_LANGS) - 1))[0]
        if name is None and rng.random() < .95:
            if rng.random() < .25:
                name = rng.choice(("user", "fan_", "shopper", "")) + str(rng.randrange(10 ** 5, 10 ** 10))
            else:
                name = rng.choice(_NAMES.get(self.lk, _NAMES["en"])) + (str(rng.randrange(100)) if rng.random() < .2 else "")
        if name is not None:
            full = {"id": vid, "name": name, **{k: v for k, v in full.items() if k != "id"}}
        self.full, self.consent, self.flip, self.repeat = full, None, rng.random() < .12, rng.random() < .3
        self.reset(rng)

    def reset(self, rng: random.Random) -> None:
        self.orders, self.cart, self.viewed, self.followed, self.pos = 0, [], [], False, -1
        self.sends_leave = rng.random() < .35


class _Show:
    """One broadcast: arrivals, departures and actions, one event per slot; slot k has ts start+k/rate."""

    def __init__(self, rng: random.Random, s: SimSettings, *, room: str, prefix: str, start_ms: int, length_s: float,
                 total: int | None, rate: float, cast: list[_Viewer], batch: int, exact_batch: bool) -> None:
        self.rng, self.s, self.room, self.prefix, self.start = rng, s, room, prefix, start_ms
        self.total, self.step, self.batch, self.exact = total, 1000.0 / rate, batch, exact_batch
        self.len_ms = length_s * 1000
        rng.shuffle(cast)
        at = sorted(self.len_ms * (rng.random() * .03 if rng.random() < .08 else rng.betavariate(1.6, 2.6)) for _ in cast)
        self.arrivals = deque(zip(at, cast))
        self.departures: list[tuple[float, int, _Viewer]] = []
        self.present: dict[str, list[_Viewer]] = {k: [] for k in _KINDS}
        self.gone: list[_Viewer] = []
        self.recent: deque[dict[str, Any]] = deque(maxlen=512)
        self.cast, self.n_order, self.n_bad, self.n_dep, self.wave = cast, 0, 0, 0, 0
        self.bad_from = rng.randrange(64)

    def _ev(self, ts: int, typ: str, viewer: dict[str, Any], k: int) -> dict[str, Any]:
        return {"id": f"{self.prefix}{k}", "room": self.room, "shop": self.s.shop, "ts": ts, "type": typ, "viewer": viewer}

    def _join(self, v: _Viewer, ts: int, k: int) -> dict[str, Any]:
        v.pos = len(self.present[v.kind])
        self.present[v.kind].append(v)
        rng, stay = self.rng, (.35 if v.kind == "lurker" else .25)
        if rng.random() >= stay:  # the rest stay to the end of the show
            dwell = rng.lognormvariate(-3.0 if v.kind == "lurker" else -1.4, 1.0) * self.len_ms
            if self.total is None or ts - self.start + dwell < self.len_ms:
                self.n_dep += 1
                heapq.heappush(self.departures, (ts - self.start + dwell, self.n_dep, v))
        return self._ev(ts, "join", v.full, k)

    def _remove(self, v: _Viewer) -> None:
        lst = self.present[v.kind]
        last = lst.pop()
        if last is not v:
            lst[v.pos], last.pos = last, v.pos
        v.pos = -1
        self.gone.append(v)

    def _pick(self) -> _Viewer | None:
        p, rng = self.present, self.rng
        total = sum(_ACTIVITY[k] * len(p[k]) for k in _KINDS)
        if total <= 0:
            return None
        x = rng.random() * total
        for k in _KINDS[1:]:
            x -= _ACTIVITY[k] * len(p[k])
            if x < 0 and p[k]:
                return rng.choice(p[k])
        return rng.choice(p[_KINDS[-1]] or p["liker"] or p["chatter"] or p["shopper"])

    def event(self, ts: int, k: int) -> dict[str, Any]:
        """The event in slot ``k``: a due arrival, a due departure's leave, or an action of someone present."""
        off, rng = ts - self.start, self.rng
        v: _Viewer | None
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
        self.arrivals.extend(zip(at, back))
        for v in back:
            v.orders, v.sends_leave = 0, rng.random() < .35
        for lst in self.present.values():
            for v in rng.sample(lst, len(lst) // 2):
                self.n_dep += 1
                heapq.heappush(self.departures, ((self.wave + rng.random()) * self.len_ms, self.n_dep, v))

    def _act(self, v: _Viewer, ts: int, k: int) -> dict[str, Any]:
        rng, r = self.rng, self.rng.random()
        if v.kind != "liker" and (v.consent is None and r < .05 or v.flip and v.consent is not None and r < .01):
            v.consent = (rng.random() < .78) if v.consent is None else not v.consent
            v.flip = v.flip and r >= .01
            return self._ev(ts, "consent", v.full, k) | {"dm": v.consent}
        x, cum = rng.random(), _CUM[v.kind]
        act = next((a for a, c in zip(_ACTIONS, cum) if x < c), "like")
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
            stmts, qs = _CHAT[v.lk]
            text = rng.choice(_HOSTILE_TEXT) if r < .01 else rng.choice(qs if r < .36 else stmts)
            return self._ev(ts, "comment", v.full, k) | {"text": text}
        if act in ("share", "follow"):
            v.followed = v.followed or act == "follow"
            return self._ev(ts, act, v.full if act == "follow" else v.short, k)
        if act == "gift":
            g, unit, _ = rng.choices(_GIFTS, tuple(g[2] for g in _GIFTS))[0]
            n = rng.choice((1, 1, 1, 5, 10, 99)) if unit < 1 else 1
            return self._ev(ts, "gift", v.full, k) | {"gift": g, "count": n, "value": round(unit * n, 2)}
        if act == "view":
            sku = rng.choices(_SKUS, _SKU_W)[0][0]
            v.viewed.append(sku)
            return self._ev(ts, "product_view", v.short, k) | {"sku": sku}
        if act == "cart":
            sku, qty = rng.choice(v.viewed), (1 if rng.random() < .85 else rng.randint(2, 4))
            v.cart.append((sku, qty))
            return self._ev(ts, "cart_add", v.short, k) | {"sku": sku, "qty": qty}
        usd = sum(_PRICE[s] * q for s, q in v.cart)
        fx, unit = _FX[v.cur]
        amount = round(round(usd * fx / unit) * unit, 2)
        amount = int(amount) if unit >= 1 else amount
        v.cart, v.orders, self.n_order = [], v.orders + 1, self.n_order + 1
        return self._ev(ts, "order", v.full, k) | {"order_id": f"o-{self.prefix}{self.n_order}-{self.s.seed}",
                                                   "amount": amount, "currency": v.cur}

    def _bad(self, ts: int) -> Bad:
        """A deliberately invalid event, each time for the next reason on events.md's bad-input list."""
        self.n_bad += 1
        i, vid = self.n_bad, f"u-bad{self.n_bad % 7}"
        base = {"id": f"{self.prefix}x{i}", "room": self.room, "shop": self.s.shop, "ts": ts, "type": "comment",
                "viewer": {"id": vid}, "text": "hi"}
        kinds: list[tuple[str, dict[str, Any] | str]] = [
            ("bad JSON", '{"id": "%sx%d", "room": "%s", "ts": %d, "type": "comment", "text": "unterminat'
             % (self.prefix, i, self.room, ts)),
            ("unknown type", base | {"type": "super_like"}),
            ("missing field", {k: x for k, x in base.items() if k != "viewer"}),
            ("negative amount", base | {"type": "order", "order_id": f"neg-{i}", "amount": -19.99, "currency": "USD"}),
            ("ts far in the future", base | {"ts": FAR_FUTURE_MS + i}),
            ("over-long string", base | {"text": "spam " * 450}),
            ("wrong type", base | {"ts": "yesterday"}),
            ("unknown version", base | {"v": 2}),
            ("count out of range", base | {"type": "like", "count": 0}),
            ("bad currency", base | {"type": "order", "order_id": f"cur-{i}", "amount": 5, "currency": "usd"}),
            ("empty id", base | {"id": ""}),
            ("not an object", "42"),
            ("over-long viewer name", base | {"viewer": {"id": vid, "name": "x" * 300}}),
        ]
        reason, body = kinds[(i + self.bad_from) % len(kinds)]
        if isinstance(body, str):
            g = Garbled({"_garbled": body})
            g.reason, g.text = reason, body
            return g
        b = Bad(body)
        b.reason = reason
        return b

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


class _Sim:
    """The shop: a fan pool, its earlier shows (history) and the live show, all from one seed."""

    def __init__(self, s: SimSettings) -> None:
        if s.viewers < 1 or s.rate <= 0:
            raise ValueError("viewers must be >= 1 and rate > 0")
        if s.start_ms is None:
            s = replace(s, start_ms=int(time.time() * 1000))
        self.s, rng = s, random.Random(s.seed)
        assert s.start_ms is not None
        day = datetime.fromtimestamp(s.start_ms / 1000, UTC).strftime("%Y-%m-%d")
        self.room = s.room or f"live-{s.seed}-{day}"
        self.batch = s.batch or max(1, min(200, int(s.rate // 100)))
        pool_n = max(4, s.viewers * 3 // 5) if s.history_shows > 0 else 0
        ids = [f"u-{n:09d}" for n in rng.sample(range(10 ** 9), s.viewers + pool_n)]
        n_fresh = s.viewers - int(s.viewers * .3)  # hostile names go to first-time live viewers: always present
        hostile = set(rng.sample(range(pool_n, pool_n + n_fresh), min(len(HOSTILE_NAMES), n_fresh)))
        names = iter(HOSTILE_NAMES)
        people = [_Viewer(rng, vid, next(names) if i in hostile else None) for i, vid in enumerate(ids)]
        self.pool, fresh = people[:pool_n], people[pool_n:]
        back = sorted([33, 12, 45][:s.history_shows] + [45 + 15 * i for i in range(1, s.history_shows - 2)], reverse=True)
        self.shows: list[_Show] = []
        attended: dict[str, _Viewer] = {}
        for j, days in enumerate(back):
            start = s.start_ms - days * DAY_MS + rng.randrange(-3, 4) * 3_600_000
            hday = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d")
            room = f"{s.room[:100]}-past-{hday}" if s.room else f"live-{s.seed}-{hday}"
            cast = rng.sample(self.pool, max(2, s.viewers // 4) if len(self.pool) > 2 else len(self.pool))
            attended.update((v.vid, v) for v in cast)
            total = min(len(cast) * 6, 40_000)
            self.shows.append(_Show(random.Random(f"{s.seed}/{j}"), s, room=room, prefix=f"h{j}-", start_ms=start,
                                    length_s=2700, total=total, rate=total / 2700, cast=cast, batch=100,
                                    exact_batch=False))
        returning = rng.sample(sorted(attended.values(), key=lambda v: v.vid), min(len(attended), int(s.viewers * .3)))
        cast = returning + fresh[:s.viewers - len(returning)]
        length = s.duration if s.duration is not None else NOMINAL_SHOW_S
        live_total = None if s.duration is None else max(1, round(s.rate * s.duration))
        self.live = _Show(random.Random(f"{s.seed}/live"), s, room=self.room, prefix="e-", start_ms=s.start_ms,
                          length_s=length, total=live_total, rate=s.rate, cast=cast, batch=self.batch,
                          exact_batch=s.batch is not None)

    def history(self) -> Iterator[list[dict[str, Any]]]:
        """The earlier shows' frames, oldest show first (call once, before ``live_frames``)."""
        for show in self.shows:
            for _, f in show.frames():
                yield f

    def live_frames(self) -> Iterator[tuple[float, list[dict[str, Any]]]]:
        """The live show's frames with their due offsets (ms after the start)."""
        return self.live.frames()


def generate(settings: SimSettings) -> Iterator[list[dict[str, Any]]]:
    """The whole timeline, history first then live: one list of event dicts per frame.

    Deterministic for a given ``settings`` with ``start_ms`` set. Good events follow events.md
    exactly; deliberate bad ones are ``Bad`` dicts (``Garbled`` ones always alone in a frame and
    sent as ``.text``: use ``encode_frame``). Dicts may be shared between events: read-only.
    """
    sim = _Sim(settings)
    yield from sim.history()
    for _, f in sim.live_frames():
        yield f


_encoder = msgspec.json.Encoder()


def encode_frame(frame: list[dict[str, Any]]) -> bytes:
    """A frame's wire text (UTF-8): one event as an object, several as an array, ``Garbled`` verbatim."""
    if len(frame) == 1:
        e = frame[0]
        return e.text.encode() if isinstance(e, Garbled) else _encoder.encode(e)
    return _encoder.encode(frame)


class _Client:
    def __init__(self, tail: list[bytes]) -> None:
        self.queue, self.wake, self.overflow = deque(tail), asyncio.Event(), False


class _Hub:
    """Fans encoded live frames out to every client; keeps the last ``resend_ms`` of them for newcomers."""

    def __init__(self, history: list[bytes], resend_ms: float, max_backlog: int) -> None:
        self.history, self.resend_ms, self.max_backlog = history, resend_ms, max_backlog
        self.tail: deque[tuple[float, bytes]] = deque()
        self.clients: set[_Client] = set()
        self.done = self.aborted = False
        self.idle = asyncio.Event()
        self.idle.set()

    def publish(self, due: float, payload: bytes) -> None:
        self.tail.append((due, payload))
        while self.tail[0][0] < due - self.resend_ms:
            self.tail.popleft()
        for c in self.clients:
            c.queue.append(payload)
            c.overflow = c.overflow or len(c.queue) > self.max_backlog
            c.wake.set()

    def finish(self, aborted: bool) -> None:
        self.done, self.aborted = True, aborted
        for c in self.clients:
            c.wake.set()

    async def handler(self, ws: ServerConnection) -> None:
        """History (unless ``?history=0``), then the resent tail, then live frames, until the show ends."""
        c = _Client([p for _, p in self.tail])  # registered before any await: no gap, no race
        self.clients.add(c)
        self.idle.clear()
        sent, why = 0, "show over"
        log.info("client %s connected (%d connected)", ws.remote_address, len(self.clients))
        try:
            if "history=0" not in (ws.request.path if ws.request else ""):
                for p in self.history:
                    await ws.send(p, text=True)
                    sent += 1
            while not (self.aborted or c.overflow or self.done and not c.queue):
                while c.queue and not self.aborted and not c.overflow:
                    await ws.send(c.queue.popleft(), text=True)
                    sent += 1
                if not self.done and not c.overflow:
                    c.wake.clear()
                    await c.wake.wait()
            why = "stopped" if self.aborted else "too slow, dropped" if c.overflow else why
            await ws.close(1001 if self.aborted else 1013 if c.overflow else 1000, why)
        except ConnectionClosed:
            why = "closed by client"
        finally:
            self.clients.discard(c)
            if not self.clients:
                self.idle.set()
            log.info("client %s disconnected after %d frames (%s)", ws.remote_address, sent, why)

    async def produce(self, frames: Iterator[tuple[float, list[dict[str, Any]]]], late_s: float) -> None:
        """Publish each frame when due (ms after a start ``late_s`` ago), in ~10 ms ticks, never hogging the loop."""
        loop = asyncio.get_running_loop()
        t0, nxt = loop.time() - late_s, next(frames, None)
        while nxt is not None:
            tick = loop.time()
            while nxt is not None and nxt[0] <= (tick - t0) * 1000 and loop.time() - tick < 0.01:
                self.publish(nxt[0], encode_frame(nxt[1]))
                nxt = next(frames, None)
            if nxt is not None:
                await asyncio.sleep(min(0.01, max(0.0, nxt[0] / 1000 - (loop.time() - t0))))


async def serve_simulation(settings: SimSettings, host: str = "127.0.0.1", port: int = 0, *,
                           ready: Callable[[int], None] | None = None, stop: asyncio.Event | None = None,
                           resend_s: float = 5.0, max_backlog: int = 100_000, compression: str | None = None) -> None:
    """Serve the simulated room on ``ws://host:port``; return once the show is over and every client has
    been sent everything (then closed, 1000), or as soon as ``stop`` is set (clients closed, 1001).

    ``ready(port)`` gets the real port once listening; the live show starts then. Each connection
    gets the history shows (fast; skipped for a path with ``?history=0``), then the last
    ``resend_s`` of live frames, then the live stream. A client more than ``max_backlog`` frames
    behind is closed (1013) and may reconnect.
    """
    wall = settings.start_ms is None  # then ts follows the wall clock: pace from start_ms
    settings = replace(settings, start_ms=int(time.time() * 1000)) if wall else settings
    sim = _Sim(settings)
    hub = _Hub([encode_frame(f) for f in sim.history()], resend_s * 1000, max_backlog)
    async with serve(hub.handler, host, port, compression=compression, max_size=2 ** 20, logger=_wslog) as server:
        real_port = server.sockets[0].getsockname()[1]
        log.info("simulated room %s (%d history frames) on %s:%d", sim.room, len(hub.history), host, real_port)
        if ready is not None:
            ready(real_port)
        late = max(0.0, time.time() - settings.start_ms / 1000) if wall else 0.0  # type: ignore[operator]  # wall: start_ms was just set
        producer = asyncio.ensure_future(hub.produce(sim.live_frames(), late))
        stopped = asyncio.ensure_future(stop.wait() if stop is not None else asyncio.Future())
        drained: asyncio.Future[Any] | None = None
        try:
            await asyncio.wait({producer, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if producer.done():
                producer.result()  # raises what the generator raised
                hub.finish(aborted=False)
                drained = asyncio.ensure_future(hub.idle.wait())
                await asyncio.wait({drained, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (producer, stopped, drained):
                if t is not None:
                    t.cancel()
            hub.finish(aborted=True)  # anyone left (stop): close with 1001
            await asyncio.sleep(0)
