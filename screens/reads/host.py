"""The host screen's read: two numbers and three short lists, in two round trips.

``host_items`` takes a feed LIST as read and is tested without Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from fanops import keys
from fanops.replies import to_int
from fanops.rules_settings import MINUTE
from fanops.templates import clean_text
from screens.reads.rooms import present_ms

GREET_MS, THANK_MS, QUESTION_MS = 5 * MINUTE, 15 * MINUTE, 10 * MINUTE
HOST_KEEP = 5
HOST_NAME_CHARS = 22
HOST_TEXT_CHARS = 90
FEED_READ = 20  # entries read from each feed LIST


@dataclass(frozen=True)
class HostItem:
    viewer: str
    name: str
    ts: int
    tag: str = ""  # greet: vip | back; thank: first | ""
    text: str = ""  # questions: the question


def _tag(kind: str, d: dict[str, Any]) -> str:
    if kind == "greet":
        return "vip" if d.get("tier") == "active" else "back"
    if kind == "thank":
        return "first" if d.get("first_time") else ""
    return ""


def host_items(raw: list[bytes], kind: str, clock: int, keep: int = HOST_KEEP) -> list[HostItem]:
    """A host list from its feed LIST: newest first, one line per viewer, old ones dropped."""
    max_age = {"greet": GREET_MS, "thank": THANK_MS, "questions": QUESTION_MS}[kind]
    rows: list[dict[str, Any]] = []
    for b in raw:
        try:
            d = json.loads(b)
        except ValueError:
            continue
        if isinstance(d, dict) and clock - to_int(d.get("ts")) <= max_age:
            rows.append(d)
    rows.sort(key=lambda d: -to_int(d.get("ts")))  # the list is in arrival order, not event order
    out: list[HostItem] = []
    seen: set[str] = set()
    for d in rows:
        vid = str(d.get("viewer", ""))
        if vid in seen:
            continue
        seen.add(vid)
        text = clean_text(str(d.get("text", "")), HOST_TEXT_CHARS) if kind == "questions" else ""
        out.append(HostItem(vid, clean_text(str(d.get("name") or ""), HOST_NAME_CHARS), to_int(d.get("ts")),
                            _tag(kind, d), text))
        if len(out) >= keep:
            break
    return out


@dataclass
class Host:
    room: str
    clock: int
    present: int
    orders: int
    greet: list[HostItem]
    thank: list[HostItem]
    questions: list[HostItem]
    known: bool


def read_host(r: redis.Redis, shop: str, room: str) -> Host:
    """The host screen: two numbers and three short lists, in two round trips."""
    p = r.pipeline(transaction=False)
    p.hget(keys.stats(shop), "clock")
    p.hmget(keys.room(shop, room), ["orders", "unique"])
    p.hget(keys.rules(shop), "present_minutes")
    for kind in ("greet", "thank", "questions"):
        p.lrange(keys.room_feed(shop, room, kind), 0, FEED_READ - 1)
    clock_raw, (orders, unique), pm, greet, thank, questions = p.execute()
    clock = to_int(clock_raw)
    present = int(r.zcount(keys.present(shop, room), clock - present_ms(pm), "+inf")) if unique else 0
    return Host(room, clock, present, to_int(orders), host_items(greet, "greet", clock),
                host_items(thank, "thank", clock), host_items(questions, "questions", clock), unique is not None)
