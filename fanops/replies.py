"""The shapes of the Redis replies the project reads, for the type checker.

Clients come from ``fanops.runtime.db`` without ``decode_responses`` and with redis-py's default
reply shapes, so strings come back as bytes.  redis-py 8 types its replies for every
mode at once (``bytes | str``, RESP2 and RESP3 shapes); ``cast(replies.X, r.cmd(...))``
says which one we are in.  A cast checks nothing at run time.
"""

from __future__ import annotations

Members = list[bytes]  # ZRANGE, ZRANGEBYSCORE
Scored = list[tuple[bytes, float]]  # ZRANGE ... WITHSCORES: (member, score)
Hash = dict[bytes, bytes]  # HGETALL
StreamEntries = list[tuple[bytes, Hash]]  # XRANGE, XREVRANGE: (entry id, fields)
# XREADGROUP: (stream, entries) per stream; an entry deleted since it was delivered has
# no fields.  RESP3 gives {stream: [entries]}.
GroupEntries = list[tuple[bytes, Hash | None]]
GroupRead = list[tuple[bytes, GroupEntries]] | dict[bytes, list[GroupEntries]]


def to_int(v: object) -> int:
    """A counter or timestamp read from Redis (bytes, str, int or float) as an int: missing,
    empty or not a number reads as 0, so that a screen never fails on one odd field."""
    if v is None or v == b"" or v == "":
        return 0
    try:
        return int(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def to_float(v: object) -> float:
    """As ``to_int``, for a float field."""
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def to_str(v: object) -> str:
    """A text field read from Redis: bytes decoded (bad UTF-8 replaced), missing as ''."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")


def str_keys(h: Hash | None) -> dict[str, bytes]:
    """A hash read from Redis with its field names decoded."""
    return {k.decode(): v for k, v in (h or {}).items()}
