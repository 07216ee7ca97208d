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
