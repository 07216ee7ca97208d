"""The consumer: reads a live-room feed over WebSocket and writes it into Redis.

Frames are parsed by the pure ``fanops.schema.parse_frame``; accepted events
are held briefly and written in batches (one script call per shop per flush),
bad ones go to the dead-letter stream.  A dropped feed is reconnected with a
capped, jittered back-off; Redis being down holds the batch and retries, so
nothing received is lost.  SIGINT/SIGTERM: stop reading, flush, log one
summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import redis.asyncio as aredis
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from fanops import heartbeat
from fanops.config import Config
from fanops.ingest import IngestWriter
from fanops.retry import Backoff, is_retryable, why
from fanops.schema import BadInput, Event, parse_frame
from realtime.mapping import Mapping

log = logging.getLogger(__name__)

CLOSE_TOO_BIG = 1009
# frames up to this many times the size limit are read whole and dead-lettered, so the connection
# and the frames after it go on; a bigger one ends the connection (its memory is the bound)
HARD_LIMIT_FACTOR = 16
CLOSE_NOT_UTF8 = 1007  # websockets closes with it on a text frame that is not UTF-8


@dataclass
class Counters:
    frames: int = 0
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    bad: int = 0
    connects: int = 0
    drops: int = 0
    ignored: int = 0  # platform events a mapping says are none of ours (``realtime.mapping``)
    started: float = field(default_factory=time.time)


class Consumer:
    """One feed -> Redis.  ``run()`` returns after ``stop()`` (or when ``max_frames`` is reached)."""

    def __init__(
        self,
        url: str,
        r: aredis.Redis,
        cfg: Config,
        backoff: Backoff | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        mapping: Mapping | None = None,
    ) -> None:
        self.url = url
        self.mapping = mapping  # another platform's frames, translated (``realtime.mapping``)
        self.r = r
        self.cfg = cfg
        self.writer = IngestWriter(r, cfg)
        self.backoff = backoff or Backoff()
        self.redis_backoff = Backoff(initial=backoff.initial if backoff else 0.2, cap=5.0)
        self.name = name or heartbeat.process_name()
        self.clock = clock
        self.counters = Counters()
        self.connected = False
        self._events: list[Event] = []
        self._bad: list[BadInput] = []
        self._oldest = 0.0
        self._flush_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._abandon = asyncio.Event()  # stopped twice: events Redis will not take are given up
        self._ws: ClientConnection | None = None

    # -- control -----------------------------------------------------------
    def stop(self) -> None:
        """Stop reading the feed, write what is held, and end.  While Redis takes nothing (away,
        full), the held events are kept and retried; a second stop gives them up (said in the log:
        the feed must send them again) and ends at once."""
        if self._stopping.is_set():
            self._abandon.set()
        self._stopping.set()
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    # -- main loop ---------------------------------------------------------
    async def run(self) -> Counters:
        flusher = asyncio.create_task(self._flush_timer())
        beat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._read_loop()
        finally:
            flusher.cancel()
            beat.cancel()
            await self.flush()
            await self._heartbeat(final=True)
            c = self.counters
            log.info(
                "consumer stopped: %d frames, %d events, %d accepted, %d duplicates, "
                "%d bad, %d connects, %d drops%s",
                c.frames, c.events, c.accepted, c.duplicates, c.bad, c.connects, c.drops,
                f", {c.ignored} platform events ignored by the mapping" if self.mapping else "",
            )
        return self.counters

    async def _read_loop(self) -> None:
        """Connect, read until the feed drops, wait a back-off, again; until stopped."""
        while not self._stopping.is_set():
            try:
                if await self._session():
                    return
            except ConnectionClosed as e:
                self._dropped(e)
            except InvalidURI:
                raise
            except (OSError, InvalidHandshake, TimeoutError, websockets.WebSocketException) as e:
                log.warning("cannot connect to the feed %s (%s)", self.url, e or type(e).__name__)
            finally:
                self._ws = None
                self.connected = False
            if self._stopping.is_set():
                return
            delay = self.backoff.next()
            log.info("reconnecting to %s in %.2f s", self.url, delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self) -> bool:
        """One connection, read to its end; True if it ended because the consumer is stopping."""
        async with connect(self.url, max_size=self.cfg.max_frame_bytes * HARD_LIMIT_FACTOR, open_timeout=10,
                           ping_interval=20,
                           ping_timeout=20, close_timeout=2) as ws:
            self._ws = ws
            self.connected = True
            self.counters.connects += 1
            self.backoff.reset()
            log.info("feed connected: %s", self.url)
            await self._receive(ws)
            if self._stopping.is_set():
                return True
            self.counters.drops += 1
            log.warning("feed closed by the server: %s", self.url)
            return False

    def _dropped(self, e: ConnectionClosed) -> None:
        """Count a dropped feed; a frame over the size limit (close code 1009) or a text frame that is
        not UTF-8 (1007) ended the connection, and is also bad input."""
        self.counters.drops += 1
        codes = {c.code for c in (e.rcvd, e.sent) if c is not None}
        if CLOSE_TOO_BIG in codes:
            reason = (f"frame over the size limit of {self.cfg.max_frame_bytes} bytes (and over "
                      f"{self.cfg.max_frame_bytes * HARD_LIMIT_FACTOR}: the connection was closed)")
        elif e.sent is not None and e.sent.code == CLOSE_NOT_UTF8:
            reason = f"text frame that is not valid UTF-8 ({e.sent.reason or 'invalid frame payload data'})"
        else:
            log.warning("feed dropped (%s): reconnecting", e)
            return
        self.counters.frames += 1
        self.counters.events += 1
        self.counters.bad += 1
        self._bad.append(BadInput(reason, b""))
        log.warning("feed sent a %s: counted as bad input; reconnecting", reason)

    async def _receive(self, ws: ClientConnection) -> None:
        limit, max_bytes = self.cfg.flush_events, self.cfg.max_frame_bytes
        async for msg in ws:
            c = self.counters
            c.frames += 1
            now_ms = int(self.clock() * 1000)
            if isinstance(msg, bytes):
                items: list[Event | BadInput] = [BadInput("binary frame: the feed sends text frames", msg[:4096])]
            elif len(msg) * 4 > max_bytes and len(raw := msg.encode("utf-8", "surrogatepass")) > max_bytes:
                items = [BadInput(f"frame over the size limit of {max_bytes} bytes ({len(raw)} bytes)", raw[:4096])]
            elif self.mapping is not None:
                items, ignored = self.mapping.parse(msg, now_ms, self.cfg.future_skew_ms)
                c.ignored += ignored
            else:
                items = parse_frame(msg.encode("utf-8", "surrogatepass"), now_ms, self.cfg.future_skew_ms)
            if not self._events and not self._bad:
                self._oldest = time.monotonic()
            for it in items:
                if isinstance(it, BadInput):
                    self._bad.append(it)
                    c.bad += 1
                else:
                    self._events.append(it)
            c.events += len(items)
            if len(self._events) + len(self._bad) >= limit:
                await self.flush()
            if self._stopping.is_set():
                return

    async def _flush_timer(self) -> None:
        period = self.cfg.flush_ms / 1000
        while True:
            await asyncio.sleep(period)
            if (self._events or self._bad) and time.monotonic() - self._oldest >= period:
                # shielded: cancelling the timer at shutdown must not cancel a write half-way
                await asyncio.shield(self.flush())

    async def flush(self) -> None:
        """Write what is held; on a Redis error keep it and retry until written or stopped twice."""
        async with self._flush_lock:
            events, bad = self._events, self._bad
            if not events and not bad:
                return
            self._events, self._bad = [], []
            receipt = int(self.clock() * 1000)
            shops: dict[str, list[Event]] = {}
            for ev in events:
                shops.setdefault(ev.shop, []).append(ev)
            while True:
                try:
                    # shop by shop, each dropped once written: a retry after a failure half-way
                    # writes only the shops not yet written (their repeats are not counted twice)
                    for shop in list(shops):
                        a, d = await self.writer.write_events(shops[shop], receipt)
                        self.counters.accepted += a
                        self.counters.duplicates += d
                        del shops[shop]
                    if bad:
                        await self.writer.write_dead(bad, self.url)
                        bad = []
                    self.redis_backoff.reset()
                    return
                except Exception as e:  # a cluster's failover raises some that are no RedisError
                    if not is_retryable(e):
                        raise  # a real error of ours: not to be retried blindly
                    delay, held = self.redis_backoff.next(), sum(map(len, shops.values())) + len(bad)
                    log.warning("cannot write to Redis: %s (%s): holding %d events, retrying in %.1f s%s", why(e), e,
                                held, delay, " (stop again to give them up)" if self._stopping.is_set() else "")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._abandon.wait(), delay)
                    if self._abandon.is_set():
                        log.error("stopped twice: %d events read from the feed were not written; the feed must "
                                  "send them again", held)
                        return

    # -- health ------------------------------------------------------------
    async def _heartbeat(self, final: bool = False) -> None:
        c = self.counters
        body = {"name": self.name, "url": self.url, "connected": self.connected and not final,
                "frames": c.frames, "events": c.events, "accepted": c.accepted,
                "duplicates": c.duplicates, "bad": c.bad, "drops": c.drops, "ignored": c.ignored}
        try:
            p = self.r.pipeline(transaction=False)
            heartbeat.queue_beat(p, "consumer", self.name, body, self.cfg.heartbeat_ttl_s, final)
            await p.execute()
        except redis.RedisError as e:
            log.debug("heartbeat not written: %s", e)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._heartbeat()
            await asyncio.sleep(1.0)
