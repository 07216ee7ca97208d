"""One simulated viewer: a profile (as complete as platforms give it), a kind of behaviour and per-show state."""

from __future__ import annotations

import random
from typing import Any

from realtime.simulator.tables import CHAT_LANGS, GEO, KIND_P, KINDS, NAMES


class Viewer:
    __slots__ = ("vid", "full", "short", "kind", "lk", "cur", "consent", "flip", "repeat", "orders", "cart",
                 "viewed", "followed", "pos", "sends_leave")
    consent: bool | None  # None until the viewer first says
    viewed: list[str]  # skus
    cart: list[tuple[str, int]]  # (sku, qty)

    def __init__(self, rng: random.Random, vid: str, name: str | None) -> None:
        self.vid, self.kind = vid, rng.choices(KINDS, KIND_P)[0]
        full: dict[str, Any] = {"id": vid}
        self.short = {"id": vid}
        r, lang, country = rng.random(), None, None
        if r >= .12:
            country = rng.choices(tuple(GEO), tuple(g[3] for g in GEO.values()))[0]
            tag, zones, self.cur, _ = GEO[country]
            lang = tag if rng.random() < .6 else tag.split("-")[0]
            if r >= .20:
                full |= {"country": country, "lang": lang, "tz": rng.choice(zones)}
            else:  # partial profiles, as platforms give them
                full |= {"lang": lang} if r < .16 else {"country": country}
        else:
            self.cur = "USD"
        self.lk = lang.split("-")[0] if lang else rng.choices(CHAT_LANGS, (8,) + (1,) * (len(CHAT_LANGS) - 1))[0]
        if name is None and rng.random() < .95:
            if rng.random() < .25:
                name = rng.choice(("user", "fan_", "shopper", "")) + str(rng.randrange(10 ** 5, 10 ** 10))
            else:
                name = rng.choice(NAMES.get(self.lk, NAMES["en"]))
                name += str(rng.randrange(100)) if rng.random() < .2 else ""  # drawn after the name, as always
        if name is not None:
            full = {"id": vid, "name": name, **{k: v for k, v in full.items() if k != "id"}}
        self.full, self.consent, self.flip, self.repeat = full, None, rng.random() < .12, rng.random() < .3
        self.reset(rng)

    def reset(self, rng: random.Random) -> None:
        self.orders, self.cart, self.viewed, self.followed, self.pos = 0, [], [], False, -1
        self.sends_leave = rng.random() < .35
