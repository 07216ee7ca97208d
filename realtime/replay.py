"""Replay a recorded feed: one frame per line (an event object or a batch), sent verbatim in order.

``serve_replay`` is a feed server: every client that connects gets every line of the file as
one text frame, then the connection stays open until the client closes it or ``stop`` is set.
``send_replay`` is the other direction: it connects to a WebSocket server and sends the lines.
Blank lines are skipped; a line's bytes are sent as they are (its line ending removed).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger(__name__)
_wslog = logging.getLogger(f"{__name__}.websockets")  # the library's own per-connection lines: quiet
_wslog.setLevel(logging.WARNING)


def _check(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"replay file not found: {p}")
    return p


def read_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The file's frames: each non-blank line's bytes without its line ending (FileNotFoundError if missing)."""
    p = _check(path)
    with p.open("rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


class _Pacer:
    """Spaces frames ``1/speed`` s apart on average (None: no pacing), sleeping in ~10 ms ticks."""

    def __init__(self, speed: float | None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 frames per second")
        self.speed, self.n, self.t0 = speed, 0, 0.0

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        if self.speed is None:
            self.n += 1
            if self.n % 256 == 0:
                await asyncio.sleep(0)  # let other clients and tasks run
            return
        if self.n == 0:
            self.t0 = loop.time()
        due = self.t0 + self.n / self.speed
        self.n += 1
        while (wait := due - loop.time()) > 0:
            await asyncio.sleep(min(wait, 0.01))


async def serve_replay(path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, *,
                       speed: float | None = None, ready: Callable[[int], None] | None = None,
                       stop: asyncio.Event | None = None, compression: str | None = None) -> None:
    """Serve the file's lines to every client that connects, until ``stop`` is set (forever without one).

    Raises FileNotFoundError at once if ``path`` is missing. ``speed`` is frames per second per
    client (None: as fast as the client takes them). ``ready(port)`` gets the real port.
    ``compression``: "deflate" offers permessage-deflate; None (the default, as the simulator's)
    sends frames as they are.
    """
    _check(path)

    async def handler(ws: ServerConnection) -> None:
        sent, pacer = 0, _Pacer(speed)
        log.info("replay client %s connected", ws.remote_address)
        try:
            for line in read_lines(path):
                await pacer.tick()
                await ws.send(line, text=True)
                sent += 1
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        except FileNotFoundError as e:
            log.error("%s", e)
            await ws.close(1011, "replay file gone")
        finally:
            log.info("replay client %s disconnected after %d frames", ws.remote_address, sent)

    async with serve(handler, host, port, max_size=2 ** 20, logger=_wslog, compression=compression) as server:
        real_port = server.sockets[0].getsockname()[1]
        if ready is not None:
            ready(real_port)
        await (stop.wait() if stop is not None else asyncio.Future())


async def send_replay(path: str | os.PathLike[str], url: str, *, speed: float | None = None) -> int:
    """Connect to ``url`` and send every line of the file as a text frame, in order; returns how many.

    Closes the connection cleanly after the last frame (the frames are delivered first).
    Raises FileNotFoundError before connecting if ``path`` is missing.
    """
    _check(path)
    sent, pacer = 0, _Pacer(speed)
    async with connect(url, max_size=2 ** 20, logger=_wslog) as ws:
        for line in read_lines(path):
            await pacer.tick()
            await ws.send(line, text=True)
            sent += 1
    log.info("sent %d frames from %s to %s", sent, path, url)
    return sent
