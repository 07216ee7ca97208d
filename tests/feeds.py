"""Scripted WebSocket feed servers for tests (real sockets on port 0)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.server import ServerConnection, serve


def ev(i: int | str, room: str = "r-1", ts: int = 1_763_856_000_000, type: str = "join",
       viewer: str = "u-1", shop: str | None = None, **extra: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"id": f"e-{i}", "room": room, "ts": ts, "type": type, "viewer": {"id": viewer}}
    if shop is not None:
        e["shop"] = shop
    e.update(extra)
    return e


def frame(*events: dict[str, Any]) -> str:
    return json.dumps(list(events)) if len(events) != 1 else json.dumps(events[0])


class Feed:
    """A feed server whose behaviour per connection is a script (an async function)."""

    def __init__(self, script: Callable[[ServerConnection, int], Awaitable[None]], port: int = 0):
        self.script = script
        self.port = port
        self.connections = 0
        self._server: Any = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        n = self.connections
        await self.script(ws, n)
        # keep the connection open until the client goes (unless the script closed it)
        try:
            await ws.wait_closed()
        except Exception:
            pass

    async def start(self) -> Feed:
        self._server = await serve(self.handler, "127.0.0.1", self.port, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def send_all(ws: ServerConnection, frames: list[str | bytes]) -> None:
    for f in frames:
        await ws.send(f)
        await asyncio.sleep(0)
