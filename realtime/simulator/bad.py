"""Deliberately invalid events, one for each reason on ``spec/events.md``'s bad-input list, in turn."""

from __future__ import annotations

from typing import Any

FAR_FUTURE_MS = 32_503_680_000_000  # year 3000: "ts far in the future" for any clock


class Bad(dict[str, Any]):
    """An event dict that breaks the spec on purpose; ``reason`` says how."""
    reason: str = ""


class Garbled(Bad):
    """A frame that is not an event at all (bad JSON, a bare scalar): sent as ``text``, always alone."""
    text: str = ""


def bad_event(i: int, turn: int, *, prefix: str, room: str, shop: str, ts: int) -> Bad:
    """The ``i``-th bad event of a show (ids ``{prefix}x{i}``): the reason at ``turn`` in the list, cyclically."""
    vid = f"u-bad{i % 7}"
    base = {"id": f"{prefix}x{i}", "room": room, "shop": shop, "ts": ts, "type": "comment",
            "viewer": {"id": vid}, "text": "hi"}
    kinds: list[tuple[str, dict[str, Any] | str]] = [
        ("bad JSON", f'{{"id": "{prefix}x{i}", "room": "{room}", "ts": {ts}, "type": "comment", "text": "unterminat'),
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
    reason, body = kinds[turn % len(kinds)]
    if isinstance(body, str):
        g = Garbled({"_garbled": body})
        g.reason, g.text = reason, body
        return g
    b = Bad(body)
    b.reason = reason
    return b
