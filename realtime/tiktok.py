"""``python -m realtime tiktok --unique-id @creator``: a TikTok LIVE room read into Redis.

The ``TikTokLive`` library connects (it scrapes the room id, asks its sign server for a signed
WebSocket URL, then reads TikTok's protobuf frames); ``realtime.tiktok_map`` turns each of its
events into an events.md event, and from there every event takes the WebSocket consumer's own
path: ``TikTokSource`` is a ``Consumer`` whose feed is the library instead of a socket, so the
validation (``fanops.schema.parse_frame``), the held batches, the writer (dedupe, dead letters)
and the holding of writes while Redis is away are the consumer's, unchanged.

The library does not reconnect by itself (a signed URL expires within 30 s): each connection is a
new client.  Between two, the wait depends on why the last one ended (``retry_delay``): a
creator not live is checked every FANOPS_TIKTOK_OFFLINE_POLL_S; a sign-server rate limit waits
the time the server asks for; anything else backs off.  Each is one log line, and the heartbeat
(kind ``consumer``, ``source: tiktok``) carries the connection state, the viewer count and the
last error for the live board.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis
import redis.asyncio as aredis
from TikTokLive import TikTokLiveClient
from TikTokLive.client.errors import (
    AgeRestrictedError,
    SignAPIError,
    SignatureRateLimitError,
    UserNotFoundError,
    UserOfflineError,
    WebcastBlockedError,
)
from TikTokLive.events import ConnectEvent

from fanops import heartbeat
from fanops.config import Config
from fanops.errors import BadSettings
from fanops.retry import Backoff
from fanops.schema import BadInput
from realtime.consumer import Consumer
from realtime.tiktok_map import MAPPED_EVENTS, Context, LiveEnd, RoomViewers, map_event, room_id

log = logging.getLogger(__name__)

# connection states shown on the board (``screens.reads.tiktok``)
STARTING, CONNECTING, CONNECTED, OFFLINE, ENDED, RATE_LIMITED, SIGN_ERROR, BLOCKED, NOT_FOUND, DROPPED, ERROR = (
    "starting", "connecting", "connected", "offline", "ended", "rate_limited", "sign_error", "blocked",
    "not_found", "dropped", "error")
_END = object()
MAX_RATE_WAIT_S = 3600.0
CLOSE_WAIT_S = 5.0

ClientFactory = Callable[[str, Config], TikTokLiveClient]


def default_client(unique_id: str, cfg: Config) -> TikTokLiveClient:
    """The library's client; its sign server from SIGN_API_KEY / SIGN_API_URL (read by the library)."""
    return TikTokLiveClient(unique_id=unique_id)


def retry_delay(e: BaseException | None, ended: bool, backoff: Backoff, offline_poll_s: float) -> tuple[str, float]:
    """Why a connection ended (a state) and how long to wait before the next one.

    ``e`` is what the library raised (None: the connection closed); ``ended``: the live ended."""
    if e is None:
        return (ENDED, offline_poll_s) if ended else (DROPPED, backoff.next())
    if isinstance(e, UserOfflineError):
        return OFFLINE, offline_poll_s
    if isinstance(e, SignatureRateLimitError):
        try:
            asked = float(e.retry_after)
        except (TypeError, ValueError):  # the server gave no RateLimit-Remaining header
            asked = 0.0
        return RATE_LIMITED, max(min(asked, MAX_RATE_WAIT_S), backoff.next())
    if isinstance(e, SignAPIError):
        return SIGN_ERROR, backoff.next()
    if isinstance(e, WebcastBlockedError):
        return BLOCKED, backoff.next()
    if isinstance(e, UserNotFoundError | AgeRestrictedError):
        # the library: "can be a captcha issue" too, so it is checked again, slowly
        return NOT_FOUND, offline_poll_s
    return ERROR, backoff.next()


def checked_unique_id(unique_id: str, cfg: Config) -> str:
    """The creator's username as the library wants it (no ``@``); BadSettings for what cannot work."""
    problems = []
    if cfg.tiktok_diamonds_per_usd <= 0:
        problems.append(f"FANOPS_TIKTOK_DIAMONDS_PER_USD={cfg.tiktok_diamonds_per_usd}: it must be above 0")
    name = str(TikTokLiveClient.parse_unique_id(unique_id))
    if not name or any(ch.isspace() for ch in name):
        problems.append(f"--unique-id {unique_id!r}: a TikTok username is needed, e.g. @creator")
    if problems:
        raise BadSettings(problems)
    return name


def one_line(e: BaseException) -> str:
    """An error as one log line: the library's messages span lines (a framed sign-server notice)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:500]


class TikTokSource(Consumer):
    """One creator's TikTok LIVE room -> Redis.  ``run()`` (the consumer's) returns after ``stop()``."""

    def __init__(self, unique_id: str, shop: str, r: aredis.Redis, cfg: Config, backoff: Backoff | None = None,
                 name: str | None = None, clock: Callable[[], float] = time.time,
                 client_factory: ClientFactory = default_client) -> None:
        self.unique_id = checked_unique_id(unique_id, cfg)
        super().__init__(f"tiktok:@{self.unique_id}", r, cfg, backoff=backoff, name=name, clock=clock)
        self.shop = shop
        self.client_factory = client_factory
        self.state = STARTING
        self.room: str | None = None
        self.viewers: int | None = None
        self.viewers_total: int | None = None
        self.live_ended = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._queue: asyncio.Queue[object] | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._queue is not None:
            self._queue.put_nowait(_END)  # the session ends its client itself

    # -- the library's events ----------------------------------------------
    def _on_event(self, ev: Any, frames: asyncio.Queue[object]) -> None:
        ctx = Context(self.shop, self.room or "", self.cfg.tiktok_diamonds_per_usd, int(self.clock() * 1000))
        try:
            out = map_event(ev, ctx)
        except Exception as e:  # noqa: BLE001 (a message the mapping cannot read is kept, not fatal)
            out = BadInput(f"TikTok {type(ev).__name__} could not be mapped ({one_line(e)})",
                           repr(ev).encode("utf-8", "replace")[:4096])
        if isinstance(out, dict):
            frames.put_nowait(json.dumps(out, ensure_ascii=False))
        elif isinstance(out, BadInput):
            frames.put_nowait(out)
        elif isinstance(out, RoomViewers):
            self.viewers, self.viewers_total = out.viewers, out.total
        elif isinstance(out, LiveEnd):
            self.live_ended = True
            log.info("TikTok LIVE @%s: the live %s (room %s)", self.unique_id, out.reason, self.room)

    def _on_connect(self, ev: ConnectEvent) -> None:
        self.state = CONNECTED
        self.connected = True
        self.counters.connects += 1
        self.backoff.reset()
        log.info("TikTok LIVE @%s connected: room %s", self.unique_id, self.room)

    async def _frames(self, frames: asyncio.Queue[object]) -> AsyncIterator[str]:
        """The mapped events as the text frames the consumer reads; a dead letter goes straight to
        the consumer's held dead letters."""
        while True:
            item = await frames.get()
            if item is _END:
                return
            if isinstance(item, BadInput):
                if not self._events and not self._bad:
                    self._oldest = time.monotonic()
                self._bad.append(item)
                self.counters.bad += 1
                self.counters.events += 1
                continue
            yield item  # type: ignore[misc]  # the queue holds str frames, BadInput or _END

    # -- connections ---------------------------------------------------------
    async def _read_loop(self) -> None:
        """Connect, read until the connection ends, wait as ``retry_delay`` says; until stopped."""
        while not self._stopping.is_set():
            error = await self._connect_once()
            if self._stopping.is_set():
                return
            self.state, delay = retry_delay(error, self.live_ended, self.backoff, self.cfg.tiktok_offline_poll_s)
            if error is not None:
                self.last_error, self.last_error_at = one_line(error), time.time()
            self._log_end(error, delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    def _log_end(self, error: BaseException | None, delay: float) -> None:
        u, s = self.unique_id, self.state
        if s == OFFLINE:
            log.info("TikTok LIVE @%s is not live; checking again in %.0f s", u, delay)
        elif s == ENDED:
            log.info("TikTok LIVE @%s: the live ended; checking for the next one in %.0f s", u, delay)
        elif s == DROPPED:
            self.counters.drops += 1
            log.warning("TikTok LIVE @%s: connection closed; reconnecting in %.1f s", u, delay)
        else:
            log.warning("TikTok LIVE @%s: %s (%s); retrying in %.1f s", u, s, self.last_error, delay)

    async def _connect_once(self) -> BaseException | None:
        """One connection with a new client, read to its end: what ended it (None: closed, or stopping)."""
        frames: asyncio.Queue[object] = asyncio.Queue()
        self._queue = frames
        client = self.client_factory(self.unique_id, self.cfg)
        for cls in MAPPED_EVENTS:
            client.add_listener(cls, lambda ev: self._on_event(ev, frames))
        client.add_listener(ConnectEvent, self._on_connect)
        self.state, self.live_ended = CONNECTING, False
        try:
            try:
                task = await client.start(fetch_live_check=True)
            except Exception as e:  # noqa: BLE001 (whatever stops a connection is logged and retried)
                return e
            self.room = room_id(client.room_id or 0)
            task.add_done_callback(lambda _t: frames.put_nowait(_END))
            if not self._stopping.is_set():
                await self._receive(self._frames(frames))  # type: ignore[arg-type]  # any async iterable of text
            if not task.done():  # stopping: the library closes its socket and ends its loop
                try:
                    await asyncio.wait_for(client.disconnect(), CLOSE_WAIT_S)
                except TimeoutError:
                    task.cancel()  # still in its handshake: nothing was read yet
            if task.cancelled():
                return None
            ended: BaseException | None = task.exception()
            return ended
        finally:
            self.connected = False
            self._queue = None
            await self._close(client)

    async def _close(self, client: TikTokLiveClient) -> None:
        try:
            await client.disconnect()
            await client.web.close()
            await client.web.signer.client.aclose()
        except Exception as e:  # noqa: BLE001 (closing a client that never opened may fail: nothing is lost)
            log.debug("closing the TikTok client: %s", e)

    # -- health ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What the board's TikTok tile shows (``screens.reads.tiktok``)."""
        return {"source": "tiktok", "shop": self.shop, "unique_id": self.unique_id, "state": self.state,
                "room": self.room, "viewers": self.viewers, "viewers_total": self.viewers_total,
                "last_error": self.last_error, "last_error_at": self.last_error_at}

    async def _heartbeat(self, final: bool = False) -> None:
        c = self.counters
        body = {"name": self.name, "url": self.url, "connected": self.connected and not final,
                "frames": c.frames, "events": c.events, "accepted": c.accepted,
                "duplicates": c.duplicates, "bad": c.bad, "drops": c.drops, **self.status()}
        if final:
            body["state"] = "stopped"
        try:
            p = self.r.pipeline(transaction=False)
            heartbeat.queue_beat(p, "consumer", self.name, body, self.cfg.heartbeat_ttl_s, final)
            await p.execute()
        except redis.RedisError as e:
            log.debug("heartbeat not written: %s", e)
