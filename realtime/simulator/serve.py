"""Serving the simulated room over WebSocket: the live show paced in real time, fanned out to every client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from realtime.simulator.settings import SimSettings
from realtime.simulator.timeline import Sim, encode_frame

log = logging.getLogger("realtime.simulator")  # the name its log lines have always had
_wslog = logging.getLogger("realtime.simulator.websockets")  # the library's own per-connection lines: quiet
_wslog.setLevel(logging.WARNING)


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
    sim = Sim(settings)
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
