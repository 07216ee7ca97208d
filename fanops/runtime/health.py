"""``python -m fanops.runtime.health consumer|scorer``: exit 0 if such a process is alive (its heartbeat
is fresh), 1 if not; prints what the heartbeats say.  For monitors and process supervisors."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fanops.config import Config
from fanops.read import heartbeats
from fanops.runtime import db
from fanops.runtime.cli import add_common, run


def alive(beats: list[dict[str, Any]], max_age_s: float) -> list[dict[str, Any]]:
    now = time.time()
    return [b for b in beats if now - float(b.get("at", 0)) <= max_age_s and b.get("running", True)
            and b.get("connected", True)]


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m fanops.runtime.health", description=__doc__)
    p.add_argument("kind", choices=["consumer", "scorer"])
    p.add_argument("--max-age", type=float, default=5.0, help="seconds a heartbeat stays fresh")
    add_common(p)
    args = p.parse_args()
    cfg = Config.from_env()
    r = db.connect(cfg, args.redis)
    beats = heartbeats(r, args.kind)
    ok = alive(beats, args.max_age)
    print(json.dumps({"kind": args.kind, "alive": len(ok), "processes": beats}, ensure_ascii=False))
    if not ok:
        print(f"error: no live {args.kind} (heartbeats older than {args.max_age:g} s or none)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run(main)
