"""``python -m scoring run|status|viewer|close-room|report`` (see spec/cli.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from fanops import db
from fanops.cli import add_common, run, setup_logging
from fanops.config import Config
from fanops.errors import NotFound

log = logging.getLogger("scoring")


def _run(args: argparse.Namespace, cfg: Config) -> int:
    from scoring.worker import Worker

    r = db.connect(cfg, args.redis)
    w = Worker(r, cfg, name=args.name, shops=args.shop or None)
    signal.signal(signal.SIGTERM, lambda *_: w.stop())
    signal.signal(signal.SIGINT, lambda *_: w.stop())
    if args.burst:
        w.drain(timeout=args.timeout)
    else:
        w.run()
    return 0


def _status(args: argparse.Namespace, cfg: Config) -> int:
    from fanops.read import status

    r = db.connect(cfg, args.redis)
    print(json.dumps(status(r, args.shop, args.room), ensure_ascii=False))
    return 0


def _viewer(args: argparse.Namespace, cfg: Config) -> int:
    from scoring.explain import viewer_report

    r = db.connect(cfg, args.redis)
    rep = viewer_report(r, args.shop, args.id)
    if rep is None:
        raise NotFound(f"no viewer {args.id!r} in shop {args.shop!r}")
    print(json.dumps(rep, ensure_ascii=False))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m scoring", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the scorer worker (several may run at once)")
    r.add_argument("--name", default=None, help="consumer name in the group (default host:pid)")
    r.add_argument("--shop", action="append", help="only these shops (default: every shop)")
    r.add_argument("--burst", action="store_true", help="apply what is there, then exit")
    r.add_argument("--timeout", type=float, default=600.0, help="with --burst: give up after this many s")
    add_common(r)
    s = sub.add_parser("status", help="one JSON object: the shop's (and a room's) numbers")
    s.add_argument("--shop", required=True)
    s.add_argument("--room", default=None)
    add_common(s)
    v = sub.add_parser("viewer", help="one viewer's state, tier and the rule that gave it, as JSON")
    v.add_argument("--shop", required=True)
    v.add_argument("--id", required=True)
    add_common(v)
    args = p.parse_args()
    setup_logging(args.verbose)
    cfg = Config.from_env()
    return {"run": _run, "status": _status, "viewer": _viewer}[args.cmd](args, cfg)


if __name__ == "__main__":
    run(main)
    sys.exit(0)
