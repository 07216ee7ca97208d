"""``python -m realtime consume|simulate|replay|tiktok|orders`` (see spec/cli.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable

from fanops.config import Config, cli_help
from fanops.runtime import db
from fanops.runtime.cli import Parser, add_common, port, positive, run, setup_logging, shop_name, ws_url

log = logging.getLogger("realtime")


def _install_stop(loop: asyncio.AbstractEventLoop, on_stop: Callable[[], object]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop)


async def _consume(args: argparse.Namespace) -> int:
    from realtime.consumer import Consumer
    from realtime.mapping import load

    cfg = Config.from_env(max_frame_bytes=args.max_frame_bytes or None)
    mapping = load(args.mapping) if args.mapping else None  # a bad file: one line, before anything starts
    r = await db.connect_async(cfg, args.redis)
    c = Consumer(args.url, r, cfg, mapping=mapping)
    _install_stop(asyncio.get_running_loop(), c.stop)
    try:
        await c.run()
    finally:
        await r.aclose()
    return 0


async def _tiktok(args: argparse.Namespace) -> int:
    from realtime.tiktok import TikTokSource, checked_unique_id

    cfg = Config.from_env()
    checked_unique_id(args.unique_id, cfg)  # before anything starts
    r = await db.connect_async(cfg, args.redis)
    try:
        src = TikTokSource(args.unique_id, args.shop, r, cfg)
        _install_stop(asyncio.get_running_loop(), src.stop)
        await src.run()
    finally:
        await r.aclose()
    return 0


async def _orders(args: argparse.Namespace) -> int:
    from realtime.orders import OrdersServer

    cfg = Config.from_env()
    r = await db.connect_async(cfg, args.redis)
    srv = OrdersServer(r, cfg)
    try:
        await srv.start(args.host, args.port)
        if not (cfg.webhook_secret or cfg.shopify_webhook_secret):  # (once it runs: a failure is one line)
            log.warning("neither FANOPS_WEBHOOK_SECRET nor SHOPIFY_WEBHOOK_SECRET is set: "
                        "every order will be refused (401)")
        stop = asyncio.Event()
        _install_stop(asyncio.get_running_loop(), stop.set)
        await stop.wait()
        await srv.stop()
    finally:
        await r.aclose()
    return 0


def _fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return x


async def _simulate(args: argparse.Namespace) -> int:
    from realtime.simulator import SimSettings, serve_simulation

    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop.set)
    s = SimSettings(seed=args.seed, viewers=args.viewers, rate=args.rate, duration=args.duration,
                    shop=args.shop, room=args.room, history_shows=args.history, bad_ratio=args.bad_ratio)
    await serve_simulation(s, args.host, args.port,
                           ready=lambda p: log.info("simulated room on ws://%s:%d", args.host, p),
                           stop=stop)
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from realtime.replay import send_replay, serve_replay

    if args.url:
        n = await send_replay(args.file, args.url, speed=args.speed)
        log.info("sent %d frames to %s", n, args.url)
        return 0
    stop = asyncio.Event()
    _install_stop(asyncio.get_running_loop(), stop.set)
    await serve_replay(args.file, args.host, args.port or 0, speed=args.speed,
                       ready=lambda p: log.info("replaying %s on ws://%s:%d", args.file, args.host, p),
                       stop=stop)
    return 0


def main() -> int:
    p = Parser(prog="python -m realtime", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("consume", help="read a feed into Redis until stopped")
    c.add_argument("--url", required=True, type=ws_url, help="the feed's WebSocket URL (ws:// or wss://)")
    c.add_argument("--max-frame-bytes", type=positive(int), default=None, help=cli_help("max_frame_bytes"))
    c.add_argument("--mapping", default=None, metavar="FILE",
                   help="another platform's feed: a TOML mapping of its fields to ours (realtime/mappings/)")
    add_common(c)

    tk = sub.add_parser("tiktok", help="read a TikTok LIVE room into Redis until stopped; reconnects",
                        description="Reads the creator's TikTok LIVE room with the TikTokLive library. Its sign "
                                    "server: $SIGN_API_KEY (an Euler Stream API key; empty: the free community "
                                    "limits) and $SIGN_API_URL (empty: Euler Stream).")
    tk.add_argument("--unique-id", required=True, help="the creator's TikTok username, e.g. @creator")
    tk.add_argument("--shop", type=shop_name, default="default", help="the shop the room's viewers belong to")
    add_common(tk)

    o = sub.add_parser("orders", help="serve the shop's order webhooks (generic and Shopify) until stopped",
                       description="POST /webhooks/orders (X-Signature under $FANOPS_WEBHOOK_SECRET) and "
                                   "POST /webhooks/shopify (orders/create, X-Shopify-Hmac-Sha256 under "
                                   "$SHOPIFY_WEBHOOK_SECRET; shop: $FANOPS_SHOP).")
    o.add_argument("--port", type=port, required=True)
    o.add_argument("--host", default="127.0.0.1")
    add_common(o)

    s = sub.add_parser("simulate", help="serve a simulated live room over WebSocket")
    s.add_argument("--port", type=port, required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--viewers", type=positive(int), default=2000)
    s.add_argument("--rate", type=positive(float), default=200.0, help="events per second")
    s.add_argument("--duration", type=positive(float), default=None, help="seconds (default: until stopped)")
    s.add_argument("--shop", type=shop_name, default="default")
    s.add_argument("--room", default=None)
    s.add_argument("--history", type=int, default=3, help="earlier shows sent first")
    s.add_argument("--bad-ratio", type=_fraction, default=0.0,
                   help="share of frames that carry a malformed event, to try the dead letters (default 0: "
                        "spec/events.md, the simulator emits exactly the wire format)")
    add_common(s)

    rp = sub.add_parser("replay", help="serve or send a recorded feed (one frame per line)")
    rp.add_argument("file")
    g = rp.add_mutually_exclusive_group()
    g.add_argument("--url", type=ws_url, help="send the frames to this WebSocket server")
    g.add_argument("--port", type=port, help="serve the frames on this port")
    rp.add_argument("--host", default="127.0.0.1")
    rp.add_argument("--speed", type=positive(float), default=None, help="frames per second (default: as fast as read)")
    add_common(rp)

    args = p.parse_args()
    setup_logging(args.verbose)
    fn = {"consume": _consume, "simulate": _simulate, "replay": _replay, "tiktok": _tiktok,
          "orders": _orders}[args.cmd]
    return asyncio.run(fn(args))


if __name__ == "__main__":
    run(main)
