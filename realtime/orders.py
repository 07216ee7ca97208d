"""``python -m realtime orders --port P``: the shop's order webhooks, an HTTP server (spec/cli.md v1.1).

``POST /webhooks/orders`` (the generic JSON form, ``X-Signature: sha256=<hex>`` under
FANOPS_WEBHOOK_SECRET) and ``POST /webhooks/shopify`` (``orders/create``, ``X-Shopify-Hmac-Sha256``
under SHOPIFY_WEBHOOK_SECRET).  Answers: 200 applied (or a repeat of one), 401 a bad or missing
signature (logged, nothing applied), 400 malformed with the reason (and a dead letter), 202 signed
and well formed but matched to no viewer or room: kept (``realtime.orders_store``), 503 Redis away
while keeping one (the sender retries; a replay is a repeat).

The server is uvicorn (already in the environment as Streamlit's) with a bare ASGI app: two
routes need no framework.  Every accepted order goes through the consumer's path
(``OrdersSource``), and a poll applies kept orders once linked or matched. The same server takes
what fans send back: an unsubscribe link's page, Twilio's inbound SMS and WhatsApp's webhook
(``realtime.inbound``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any, cast

import redis
import redis.asyncio as aredis
import uvicorn

from fanops import keys
from fanops.config import Config
from fanops.errors import BadSettings
from realtime import inbound
from realtime.inbound import Inbound
from realtime.orders_map import ShopOrder, parse_generic, parse_shopify, signature_ok
from realtime.orders_store import APPLIED, KEPT, Orders, OrdersSource

log = logging.getLogger(__name__)
GENERIC, SHOPIFY = "/webhooks/orders", "/webhooks/shopify"
STOP_WAIT_S = 10  # at a stop, what requests under way and the poll's round get to end (a cut request's order: resent)
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the command stops it (and re-raises nothing)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _reply(send: Send, status: int, body: dict[str, Any] | bytes, kind: str = "application/json") -> None:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", f"{kind}; charset=utf-8".encode()),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def _body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        msg = await receive()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks)


class OrdersApp:
    """The ASGI app: checks, parses, hands the order to ``Orders``."""

    def __init__(self, orders: Orders, cfg: Config) -> None:
        self.orders = orders
        self.cfg = cfg
        self.inbound = Inbound(orders.r, cfg, orders.source)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path not in (GENERIC, SHOPIFY, *inbound.PATHS):
            return await _reply(send, 404, {"error": f"no such endpoint {path[:100]!r}: POST {GENERIC} or {SHOPIFY}"})
        if method != "POST" and not (path in inbound.GET_PATHS and method == "GET"):
            return await _reply(send, 405, {"error": "GET or POST only" if path in inbound.GET_PATHS else "POST only"})
        body = await _body(receive, self.cfg.max_frame_bytes)
        if body is None:
            return await _reply(send, 413, {"error": f"body over {self.cfg.max_frame_bytes} bytes"})
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in inbound.PATHS:
            try:
                return await _reply(send, *await self.inbound.handle(
                    path, method, scope["query_string"].decode("latin-1"), body, headers, scope.get("client")))
            except redis.RedisError as e:
                log.warning("%s not recorded: Redis unavailable (%s); the sender may retry", path, e)
                return await _reply(send, 503, {"error": "storage unavailable, retry later"})
        status, out = await self.handle(path, body, headers, scope.get("client"))
        await _reply(send, status, out)

    async def handle(self, path: str, body: bytes, headers: dict[str, str], client: Any) -> tuple[int, dict[str, Any]]:
        cfg = self.cfg
        if path == GENERIC:
            ok = signature_ok(body, headers.get("x-signature"), cfg.webhook_secret, "generic")
        else:
            ok = signature_ok(body, headers.get("x-shopify-hmac-sha256"), cfg.shopify_webhook_secret, "shopify")
        if not ok:
            log.warning("order webhook %s from %s refused: bad or missing signature (%d bytes)",
                        path, client[0] if client else "?", len(body))
            return 401, {"error": "bad or missing signature"}
        parsed = (parse_generic(body, cfg.shop) if path == GENERIC else
                  parse_shopify(body, cfg.shop, cfg.shopify_viewer_attr, cfg.shopify_room_attr))
        if not isinstance(parsed, ShopOrder):
            await self.orders.source.submit_bad(parsed)
            return 400, {"error": parsed.reason}
        try:
            what, why = await self.orders.take(parsed)
        except redis.RedisError as e:
            log.warning("order %s not kept: Redis unavailable (%s); the sender will retry", parsed.event_id, e)
            return 503, {"error": "storage unavailable, retry later"}
        if what == APPLIED:
            return 200, {"status": "applied", "event_id": parsed.event_id}
        if what == KEPT:
            return 202, {"status": "kept", "event_id": parsed.event_id, "reason": why}
        return 400, {"error": why}


class OrdersServer:
    """The whole command: the source (flush timer, heartbeat), the HTTP server, the kept orders' poll."""

    def __init__(self, r: aredis.Redis, cfg: Config, name: str | None = None) -> None:
        self.r = r
        self.cfg = cfg
        self.source = OrdersSource(r, cfg, name=name)
        self.orders = Orders(r, self.source)
        self.http: _Server | None = None
        self.port = 0
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: a free port); returns the port."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise BadSettings([f"--host {host} --port {port}: cannot listen there ({e.strerror or e}): "
                               "is another process on that port? pick another"]) from e
        self.port = sock.getsockname()[1]
        conf = uvicorn.Config(OrdersApp(self.orders, self.cfg), lifespan="off", log_config=None,
                              access_log=False, backlog=2048, timeout_keep_alive=30,
                              timeout_graceful_shutdown=STOP_WAIT_S)
        self.http = _Server(conf)
        self._tasks = [asyncio.create_task(self.source.run()), asyncio.create_task(self.http.serve(sockets=[sock])),
                       asyncio.create_task(self._poll())]
        while not self.http.started:
            if self._tasks[1].done():
                self._tasks[1].result()  # raises why it could not start
            await asyncio.sleep(0.01)
        self.source.connected = True  # listening: the board's health counts it as a connected source
        log.info("order webhooks on http://%s:%d%s and %s", host, self.port, GENERIC, SHOPIFY)
        return self.port

    async def _poll(self) -> None:
        period = max(self.cfg.orders_poll_ms, 10) / 1000
        while True:
            await asyncio.sleep(period)
            try:
                known = {s.decode() for s in cast("set[bytes]", await self.r.smembers(keys.shops()))}
                for shop in sorted(known | self.orders.shops | {self.cfg.shop}):
                    await self.orders.rematch(shop)
            except redis.RedisError as e:
                log.warning("kept orders not matched this round: %s", e)

    async def stop(self) -> None:
        """Stop taking requests, finish those under way, flush, stop."""
        if self.http is not None:
            self.http.should_exit = True
            await self._tasks[1]
        self.source.connected = False
        poll = self._tasks[2]
        poll.cancel()  # and waited for: a round cut off mid-command must end before the loop does
        if not (await asyncio.wait([poll], timeout=STOP_WAIT_S))[0]:
            log.warning("the kept orders' poll did not end within %d s of being stopped", STOP_WAIT_S)
        self.source.stop()
        await self._tasks[0]

    async def wait(self) -> None:
        """Until the HTTP server ends (``stop``)."""
        await asyncio.gather(self._tasks[1], return_exceptions=True)
