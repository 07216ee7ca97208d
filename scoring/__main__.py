"""``python -m scoring run|status|viewer|close-room|report|forget|import|fans|tasks [send]`` (see spec/cli.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path

import redis

from fanops import fans, queue
from fanops.config import Config
from fanops.errors import FanopsError, NotFound
from fanops.read import status
from fanops.runtime import db
from fanops.runtime.cli import Parser, add_common, run, setup_logging, shop_name
from fanops.state import TASK_STATES, TIERS
from review import analysis
from review.archive_files import list_archived, read_room
from review.report import render_html
from scoring.archive import archive_room, refresh_followups
from scoring.explain import viewer_report
from scoring.forget import forget_viewer
from scoring.worker import Worker

log = logging.getLogger("scoring")


def _run(args: argparse.Namespace, cfg: Config) -> int:
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
    r = db.connect(cfg, args.redis)
    try:  # spec/tiers.md: a claim lapses back to pending after 5 minutes (a running scorer sweeps each minute)
        queue.release_expired(r, args.shop)
    except redis.RedisError as e:  # a read-only user, a full Redis: the counts as the last sweep left them
        logging.getLogger(__name__).debug("lapsed claims not swept: %s", e)
    print(json.dumps(status(r, args.shop, args.room), ensure_ascii=False))
    return 0


def _viewer(args: argparse.Namespace, cfg: Config) -> int:
    r = db.connect(cfg, args.redis)
    rep = viewer_report(r, args.shop, args.id, cfg)
    if rep is None:
        raise NotFound(f"no viewer {args.id!r} in shop {args.shop!r}")
    print(json.dumps(rep, ensure_ascii=False))
    return 0


def _close_room(args: argparse.Namespace, cfg: Config) -> int:
    r = db.connect(cfg, args.redis)
    res = archive_room(r, cfg, args.shop, args.room, wait_applied_s=args.wait)
    print(json.dumps(res.to_json(), ensure_ascii=False))
    return 0


def _report(args: argparse.Namespace, cfg: Config) -> int:
    wanted = [args.room] + ([args.compare] if args.compare else [])
    for rm in wanted:
        read_room(cfg, args.shop, rm, verify=False)  # NotArchived names the command that makes it
    if not args.offline:
        try:
            refresh_followups(db.connect(cfg, args.redis), cfg, args.shop)
        except FanopsError as e:
            print(f"warning: follow-up outcomes as archived (could not refresh them: {e})", file=sys.stderr)
    shows = [read_room(cfg, args.shop, i.room) for i in list_archived(cfg, args.shop)]
    review = analysis.analyse(analysis.load(shows))
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render_html(review, args.room, args.compare), encoding="utf-8")
    tmp.replace(out)
    print(json.dumps({"shop": args.shop, "room": args.room, "compare": args.compare, "out": str(out),
                      "bytes": out.stat().st_size, "shows": len(shows)}, ensure_ascii=False))
    return 0


def _forget(args: argparse.Namespace, cfg: Config) -> int:
    # an unknown viewer is not an error: there is nothing of them to erase, which is what was asked
    # (and a repeat of a forget, a retry after a crash, succeeds)
    r = db.connect(cfg, args.redis)
    print(json.dumps(forget_viewer(r, cfg, args.shop, args.viewer, wait_s=args.wait), ensure_ascii=False))
    return 0


def _import(args: argparse.Namespace, cfg: Config) -> int:
    from scoring.importer_run import import_file  # tqdm and the writer only for this command

    if not args.dry_run:
        db.connect(cfg, args.redis).close()  # reachable, or one line on stderr
        cfg = dataclasses.replace(cfg, redis_url=db.resolve_url(cfg, args.redis))
    print(json.dumps(import_file(cfg, Path(args.file), args.shop, args.format, args.dry_run), ensure_ascii=False))
    return 0


def _fans(args: argparse.Namespace, cfg: Config) -> int:
    df = fans.fans_frame(db.connect(cfg, args.redis), args.shop)
    if args.tier:
        df = fans.filtered(df, fans.FanFilter(tiers=(args.tier,)))
    if args.out is None or args.out == "-":
        fans.write_export(df, args.format, sys.stdout)
        return 0
    out = Path(args.out)
    if out.is_dir():
        raise FanopsError(f"--out {out} is a folder: name a file in it")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        fans.write_export(df, args.format, f)
    tmp.replace(out)
    return 0


def _tasks(args: argparse.Namespace, cfg: Config) -> int:
    if args.tasks_cmd == "send":
        from fanops.channels import send_task  # smtplib and httpx only for this command

        shop = args.send_shop or args.shop
        if not shop:
            raise FanopsError("tasks send needs --shop S")
        r = db.connect(cfg, args.redis)
        print(json.dumps(send_task(r, cfg, shop, args.id, args.operator, args.channel).to_json(),
                         ensure_ascii=False))
        return 0
    if not args.shop:
        raise FanopsError("tasks needs --shop S (or: tasks send --shop S --id TASK --operator NAME)")
    rows = queue.task_rows(db.connect(cfg, args.redis), args.shop, args.state, args.kind, args.limit)
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _add_lists(sub: argparse._SubParsersAction[Parser]) -> None:
    f = sub.add_parser("fans", help="export the shop's viewers (CSV or JSON lines)")
    f.add_argument("--shop", type=shop_name, required=True)
    f.add_argument("--tier", choices=TIERS, default=None, help="only the viewers of this tier")
    f.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    f.add_argument("--out", default=None, metavar="FILE", help="write here (default, or -: standard output)")
    add_common(f)
    t = sub.add_parser("tasks", help="the follow-up queue as JSON lines, by priority; `tasks send` sends one")
    t.add_argument("--shop", type=shop_name, default=None)
    t.add_argument("--state", choices=(queue.OPEN, *TASK_STATES), default=queue.OPEN,
                   help="open (pending and claimed, the default) or one state")
    t.add_argument("--kind", choices=queue.KINDS, default=None)
    t.add_argument("--limit", type=int, default=None, help="at most this many (default: all of them)")
    add_common(t)
    tsub = t.add_subparsers(dest="tasks_cmd")
    sd = tsub.add_parser("send", help="claim and send one task on a channel; prints {id, channel, message_id}")
    sd.add_argument("--shop", type=shop_name, dest="send_shop", default=None,
                    help="the shop (also read from a --shop given before `send`)")
    sd.add_argument("--id", required=True, metavar="TASK", help="the task's id, as `tasks` prints it")
    sd.add_argument("--operator", required=True, metavar="NAME", help="who sends it (recorded on the task)")
    sd.add_argument("--channel", choices=("dm", "email", "whatsapp", "sms"), default="dm",
                    help="dm (sent by hand on the platform, recorded) or a provider's channel (default dm)")
    add_common(sd)


def main() -> int:
    p = Parser(prog="python -m scoring", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the scorer worker (several may run at once)")
    r.add_argument("--name", default=None, help="consumer name in the group (default host:pid)")
    r.add_argument("--shop", type=shop_name, action="append", help="only these shops (default: every shop)")
    r.add_argument("--burst", action="store_true", help="apply what is there, then exit")
    r.add_argument("--timeout", type=float, default=600.0, help="with --burst: give up after this many s")
    add_common(r)
    s = sub.add_parser("status", help="one JSON object: the shop's (and a room's) numbers")
    s.add_argument("--shop", type=shop_name, required=True)
    s.add_argument("--room", default=None)
    add_common(s)
    v = sub.add_parser("viewer", help="one viewer's state, tier and the rule that gave it, as JSON")
    v.add_argument("--shop", type=shop_name, required=True)
    v.add_argument("--id", required=True)
    add_common(v)
    c = sub.add_parser("close-room", help="archive a room that is over (files under the data folder) and "
                                          "remove its raw events from Redis")
    c.add_argument("--shop", type=shop_name, required=True)
    c.add_argument("--room", required=True)
    c.add_argument("--wait", type=float, default=10.0,
                   help="wait up to this many s for a scorer to apply the room's last events (default 10)")
    add_common(c)
    rp = sub.add_parser("report", help="write a self-contained HTML review of an archived show")
    rp.add_argument("--shop", type=shop_name, required=True)
    rp.add_argument("--room", required=True)
    rp.add_argument("--out", required=True, help="the HTML file to write")
    rp.add_argument("--compare", default=None, metavar="ROOM", help="another archived show to set beside it")
    rp.add_argument("--offline", action="store_true",
                    help="use the follow-up outcomes as archived (do not read the live tasks from Redis)")
    add_common(rp)
    fg = sub.add_parser("forget", help="erase one viewer from Redis, the applied-event log and every archive; "
                                       "prints what it removed, as JSON")
    fg.add_argument("--shop", type=shop_name, required=True)
    fg.add_argument("--viewer", required=True, metavar="ID")
    fg.add_argument("--wait", type=float, default=10.0,
                    help="wait up to this many s for a scorer to apply the viewer's last events (default 10)")
    add_common(fg)
    im = sub.add_parser("import", help="seed customer history from a CSV file (spec/tiers.md v1.1); "
                                       "prints {rows, imported, skipped}")
    im.add_argument("file", metavar="FILE.csv")
    im.add_argument("--shop", type=shop_name, required=True)
    im.add_argument("--format", choices=("generic", "shopify"), default="generic",
                    help="generic (spec/cli.md columns) or shopify (its customers export, with the "
                         "orders_export*.csv beside it)")
    im.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
    add_common(im)
    _add_lists(sub)
    args = p.parse_args()
    setup_logging(args.verbose, one_shot=args.cmd != "run")
    cfg = Config.from_env()
    cmds = {"run": _run, "status": _status, "viewer": _viewer, "close-room": _close_room, "report": _report,
            "forget": _forget, "import": _import, "fans": _fans, "tasks": _tasks}
    return cmds[args.cmd](args, cfg)


if __name__ == "__main__":
    run(main)
    sys.exit(0)
