"""An unsubscribe becomes a ``consent`` event (spec/events.md v1.1), written through the one ingest
writer (``fanops.ingest.IngestWriter``), so that the scorer applies it like any consent.

The event is in the ``history`` room (``fanops.schema.HISTORY_ROOM``: it counts for the viewer's
state and the shop clock, and is never a show). ``dm`` is required in a consent event: it carries
the viewer's current dm answer (unknown counts as "not refused", spec/events.md, and stays so), so
that saying no to email changes nothing else.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import redis

from fanops import read
from fanops.channels.compose import SEND_CHANNELS, read_token
from fanops.config import Config
from fanops.errors import FanopsError
from fanops.ingest import IngestWriter
from fanops.runtime import db
from fanops.schema import HISTORY_ROOM, Consent, Viewer

# Twilio's default opt-out keywords (an SMS reply of one of them alone)
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})


class BadUnsubscribe(FanopsError):
    """An unsubscribe link whose token this shop did not sign (or a secret that changed since)."""


def is_stop(body: str) -> bool:
    """Whether an SMS reply is an opt-out (one of Twilio's keywords, any case, alone)."""
    return re.sub(r"[^A-Za-z]", "", body or "").upper() in STOP_WORDS


def consent_event(shop: str, viewer: str, channel: str, dm_now: bool | None, now_ms: int) -> Consent:
    """The consent event of an unsubscribe from ``channel`` (dm: a refusal of DMs)."""
    if channel not in SEND_CHANNELS:
        raise FanopsError(f"unknown channel {channel!r}: one of {', '.join(SEND_CHANNELS)}")
    dm = False if channel == "dm" else dm_now is not False
    flags: dict[str, Any] = {} if channel == "dm" else {channel: False}
    return Consent(id=f"unsub:{channel}:{viewer}:{now_ms}", room=HISTORY_ROOM, ts=now_ms, viewer=Viewer(id=viewer),
                   shop=shop, dm=dm, **flags)


async def _write(cfg: Config, ev: Consent) -> None:
    ar = await db.connect_async(cfg)
    try:
        await IngestWriter(ar, cfg).write_events([ev])
    finally:
        await ar.aclose()


def unsubscribe(r: redis.Redis, cfg: Config, shop: str, viewer: str, channel: str,
                now_ms: int | None = None) -> Consent:
    """Write the viewer's refusal of ``channel`` as a consent event; returns it."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    reach = read.viewer_reach(r, shop, [viewer]).get(viewer)
    dm_now = reach["consent"]["dm"] if reach else None
    ev = consent_event(shop, viewer, channel, dm_now, now)
    asyncio.run(_write(cfg, ev))
    return ev


def unsubscribe_link(r: redis.Redis, cfg: Config, token: str, now_ms: int | None = None) -> Consent:
    """The unsubscribe of a List-Unsubscribe link's token (``?t=``): checked, then written."""
    got = read_token(cfg.unsubscribe_secret, token)
    if got is None:
        raise BadUnsubscribe("this unsubscribe link is not one of ours (or FANOPS_UNSUBSCRIBE_SECRET changed)")
    shop, viewer, channel = got
    return unsubscribe(r, cfg, shop, viewer, channel, now_ms)
