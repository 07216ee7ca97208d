"""Where the text values of a stream entry's events are, byte by byte, in its msgpack payload.

A payload (a msgpack array of event maps, as ``realtime.writer`` packs it: fixed-size headers,
not always the shortest form) cannot be decoded and encoded again byte for byte. To write over
a text in place (``scoring.forget_files``) one needs its offset and length in the bytes as they
are: ``events`` reads them without changing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EventSpans:
    """One event of the payload: its text values (``viewer.id``, ``text`` ...) and where each one's
    bytes are (offset, length)."""

    values: dict[str, str] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)


_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
          0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}
_CONTAINER = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # (size bytes, items per entry)


def _uint(b: bytes, pos: int, n: int) -> int:
    return int.from_bytes(b[pos:pos + n], "big")


def _str_at(b: bytes, pos: int) -> tuple[int, int] | None:
    """(offset, length) of the string at ``pos``, None if it is no string."""
    t = b[pos]
    if 0xA0 <= t <= 0xBF:
        return pos + 1, t & 0x1F
    if t in (0xD9, 0xDA, 0xDB):
        n = _SIZED[t]
        return pos + 1 + n, _uint(b, pos + 1, n)
    return None


def skip(b: bytes, pos: int) -> int:
    """The offset just past the value at ``pos``."""
    t = b[pos]
    if t <= 0x7F or t >= 0xE0:
        return pos + 1
    if 0x80 <= t <= 0x9F:  # fixmap, fixarray
        items = (t & 0x0F) * 2 if t <= 0x8F else t & 0x0F
        pos += 1
        for _ in range(items):
            pos = skip(b, pos)
        return pos
    s = _str_at(b, pos)
    if s is not None:
        return s[0] + s[1]
    if t in _FIXED:
        return pos + 1 + _FIXED[t]
    if t in _SIZED:
        n = _SIZED[t]
        return pos + 1 + n + _uint(b, pos + 1, n) + (1 if t in (0xC7, 0xC8, 0xC9) else 0)
    if t in _CONTAINER:
        n, per = _CONTAINER[t]
        count = _uint(b, pos + 1, n) * per
        pos += 1 + n
        for _ in range(count):
            pos = skip(b, pos)
        return pos
    raise ValueError(f"not msgpack: byte 0x{t:02x} at {pos}")


def _container(b: bytes, pos: int) -> tuple[int, int, bool]:
    """(items, offset of the first, is a map) of the array or map at ``pos``."""
    t = b[pos]
    if 0x80 <= t <= 0x8F:
        return t & 0x0F, pos + 1, True
    if 0x90 <= t <= 0x9F:
        return t & 0x0F, pos + 1, False
    if t in _CONTAINER:
        n, per = _CONTAINER[t]
        return _uint(b, pos + 1, n), pos + 1 + n, per == 2
    raise ValueError(f"no array or map at {pos}")


def _map(b: bytes, pos: int, prefix: str, out: EventSpans) -> int:
    count, pos, is_map = _container(b, pos)
    if not is_map:
        raise ValueError(f"an event is a map (at {pos})")
    for _ in range(count):
        key = _str_at(b, pos)
        pos = skip(b, pos)
        name = prefix + (b[key[0]:key[0] + key[1]].decode("utf-8", "surrogateescape") if key else "?")
        s = _str_at(b, pos)
        if s is not None:
            out.spans[name] = s
            out.values[name] = b[s[0]:s[0] + s[1]].decode("utf-8", "surrogateescape")
        elif name == "viewer" and (0x80 <= b[pos] <= 0x8F or b[pos] in (0xDE, 0xDF)):
            _map(b, pos, "viewer.", out)
        pos = skip(b, pos)
    return pos


def events(payload: bytes) -> list[EventSpans]:
    """The events of a payload (a msgpack array of maps), with their top-level and ``viewer.`` text
    values and spans (``viewer.id``, ``viewer.name``, ``text`` ...)."""
    count, pos, is_map = _container(payload, 0)
    if is_map:
        raise ValueError("a payload is an array of events")
    out = []
    for _ in range(count):
        ev = EventSpans()
        pos = _map(payload, pos, "", ev)
        out.append(ev)
    return out

