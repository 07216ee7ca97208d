"""Customer history import: rows/s of ``python -m scoring import`` into Redis, beside its ceiling.

``python -m bench.import [--rows N] [--apply]``

A generic CSV of N customers (default 1,000,000; seeded: 35% with no order, the others 1-6
orders, 70% with an email, 30% a phone, consent flags on half) is imported three ways, each
into an empty private server:

- ceiling: ``--dry-run`` (read, check and validate every row and event; nothing written);
- product: the import as the command runs it (events through ``fanops.ingest``, the consumer's
  writer, 1,000 events a call; the ``Imported`` records; a note per 2,000 rows);
- again: the same file imported a second time after the notes are removed (every event a repeat).

``--apply`` also times one scorer (``python -m scoring run --burst``) applying the imported events.
Target: 1,000,000 rows imported in under 60 s. Exit code 0 whatever the figures say.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench._util import cpu_seconds, fresh, machine_note, private_server, ratio, table, tree_note, verdict
from fanops import keys
from fanops.config import Config
from scoring.importer import COLUMNS
from scoring.importer_run import import_file

TARGET_S = 60.0  # for 1,000,000 rows
SHOP = "bench"


def write_csv(path: Path, n: int, seed: int = 7) -> int:
    """N customer rows; returns the number of order events they stand for."""
    rng = random.Random(seed)
    events = 0
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(COLUMNS) + "\n")
        for i in range(n):
            orders = 0 if rng.random() < .35 else rng.randint(1, 6)
            events += orders
            day = rng.randint(1, 28)
            first = f"2025-{rng.randint(1, 6):02d}-{day:02d}T10:00:00Z" if orders else ""
            last = f"2025-{rng.randint(7, 11):02d}-{day:02d} 18:30:00" if orders > 1 else ""
            email = f"c{i}@example.com" if rng.random() < .7 else ""
            phone = f"+1555{i:07d}" if rng.random() < .3 else ""
            flags = [rng.choice(("true", "false", "")) if rng.random() < .5 else "" for _ in range(3)]
            spend = f"{orders * rng.uniform(5, 80):.2f}" if orders else ""
            f.write(",".join([f"c{i}", f"Customer {i}", email, phone, rng.choice(("US", "DE", "BR", "")), "", "",
                              str(orders), spend, "USD" if orders else "", first, last, *flags]) + "\n")
    return events


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.import", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--apply", action="store_true", help="also time one scorer applying the events")
    p.add_argument("--product-only", action="store_true", help="only the product run (no dry run, no second import)")
    args = p.parse_args()
    with private_server() as (info, d):
        path = d / "customers.csv"
        t0 = time.perf_counter()
        n_events = write_csv(path, args.rows)
        print(f"wrote {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB, {n_events:,} order events) "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        cfg = Config.from_env({}, redis_url=info.url, data_dir=d / "data")
        r = fresh(info.url)
        rows: list[list[object]] = []
        if not args.product_only:
            _run(cfg, path, True, "ceiling: --dry-run (no Redis)", rows, args.rows, info.pid)
        t_imp = _run(cfg, path, False, "product: import", rows, args.rows, info.pid)
        accepted = int(r.hget(keys.stats(SHOP), "accepted") or 0)
        if not args.product_only:
            shutil.rmtree(d / "data" / "imports", ignore_errors=True)
            _run(cfg, path, False, "again (notes removed: all repeats)", rows, args.rows, info.pid)
        dups = int(r.hget(keys.stats(SHOP), "duplicates") or 0)
        if args.apply:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "scoring", "run", "--burst", "--timeout", "3600",
                            "--redis", info.url],
                           check=True, env={"FANOPS_DATA_DIR": str(d / "data"), "PATH": "/usr/bin:/bin"})
            dt = time.perf_counter() - t0
            rows.append(["scorer: apply the events (1 scorer)", args.rows, dt, args.rows / dt, "-", "-", "-", "-"])
        print(f"\n{machine_note()} (at the end); {tree_note()}")
        print(table(["run", "rows", "seconds", "rows/s", "vs ceiling", "CPU s (import)", "CPU s (Redis)",
                     "rows/s of the busier"], rows, "Customer history import"))
        print(f"\nevents accepted {accepted:,} (expected {n_events:,}); repeats on the second import {dups:,}")
        goal = TARGET_S * args.rows / 1_000_000
        print(table(["target", "measured", "goal", "ratio", ""],
                    [[f"{args.rows:,} rows imported (s)", t_imp, goal, ratio(t_imp, goal), verdict(t_imp < goal)]]))
    return 0


def _run(cfg: Config, path: Path, dry_run: bool, what: str, rows: list[list[object]], n: int, pid: int) -> float:
    """One import, timed: wall seconds, and the CPU seconds of this process and of the server (on a
    shared machine the CPU figures are the ones to compare: wall time grows with others' load)."""
    t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_seconds(pid) or 0.0
    summary = import_file(cfg, path, SHOP, dry_run=dry_run, progress=False)
    dt, cpu, srv = time.perf_counter() - t0, time.process_time() - c0, (cpu_seconds(pid) or 0.0) - s0
    ceiling = rows[0][2] if rows else dt
    rows.append([what, summary["rows"], dt, n / dt, ratio(dt, float(ceiling)), cpu, srv,  # type: ignore[arg-type]
                 n / max(cpu, srv, 1e-9)])
    print(f"{what}: {dt:.1f} s ({len(summary['skipped'])} skipped)", file=sys.stderr)
    return dt


if __name__ == "__main__":
    sys.exit(main())
