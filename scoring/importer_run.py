"""``python -m scoring import``: a customer file into the shop, through the feed's own path.

Rows are read and checked in chunks (``scoring.importer``); each chunk's order events are
written with ``fanops.ingest.IngestWriter``, the consumer's writer (dedupe by (room, id) and one
stream entry per partition, atomically; a rejected event to the dead letters), and a scorer
applies them like any feed's. What rows say beyond orders goes to ``keys.imported``.

Idempotent: event ids are ``hist:<viewer_id>:<n>``, so a second import of the same file is all
repeats (``duplicates``), and the ``Imported`` records are the same. Resumable: after each chunk
is written, the rows done are noted in ``data_dir/imports/`` under the file's SHA-256; a run
after a crash writes only the chunks not noted (a chunk written but not noted comes again as
repeats), and still reads every row for the summary. The note goes once the whole file is in.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aredis
from tqdm import tqdm

from fanops import keys, retry
from fanops.config import Config
from fanops.imported import Imported, merge_imported, pack_imported
from fanops.ingest import IngestWriter
from fanops.runtime import db
from scoring.importer import Parsed, parse_rows
from scoring.importer_files import generic_rows, shopify_rows

CHUNK_ROWS = 2000
WRITE_EVENTS = 10_000  # events per writer call (a chunk's, usually): one script call, a few ms of Redis


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Checkpoint:
    """The rows of one (file, shop) already written, in a small JSON file (atomic replace)."""

    def __init__(self, cfg: Config, shop: str, digest: str) -> None:
        self.path = cfg.data_dir / "imports" / f"{keys.esc(shop).replace('/', '%2F')}-{digest[:32]}.json"
        try:
            self.done = int(json.loads(self.path.read_text())["rows_done"])
        except (OSError, ValueError, KeyError):
            self.done = 0

    def note(self, rows_done: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows_done": rows_done}))
        tmp.replace(self.path)
        self.done = rows_done

    def clear(self) -> None:
        """The whole file is in: a later import of it is a resend, all repeats (``duplicates``), as
        spec/tiers.md says, not a run to resume."""
        self.path.unlink(missing_ok=True)


def _chunks(rows: Iterator[tuple[int, dict[str, str]]]) -> Iterator[list[tuple[int, dict[str, str]]]]:
    while chunk := list(islice(rows, CHUNK_ROWS)):
        yield chunk


async def _write(r: aredis.Redis, w: IngestWriter, shop: str, parsed: Parsed) -> None:
    # Redis away, full, or the shop's backlog full (the scorers catch up): the import waits; each
    # write is all or nothing, so a retry counts nothing twice
    outage, backoff = retry.Outage(), retry.Backoff(initial=0.2, cap=5.0)
    await retry.acall(lambda: w.write_dead(parsed.dead, source="import", once_in=shop), "import", outage=outage,
                      backoff=backoff)
    events = [ev for row in parsed.good for ev in row.events]
    for i in range(0, len(events), WRITE_EVENTS):
        part = events[i:i + WRITE_EVENTS]
        await retry.acall(lambda: w.write_events(part), "import", outage=outage, backoff=backoff)  # noqa: B023
    if parsed.good:
        imported = {row.viewer_id: row.imported for row in parsed.good}
        await retry.acall(lambda: _write_imported(r, keys.imported(shop), imported), "import",
                          outage=outage, backoff=backoff)


async def _write_imported(r: aredis.Redis, k: str, rows: dict[str, Imported]) -> None:
    """The rows' records over the ones there (``merge_imported``: a consent a webhook order added
    stays), in one optimistic transaction (again if the orders server wrote one meanwhile)."""
    vids = list(rows)
    async with r.pipeline(transaction=True) as p:
        while True:
            try:
                await p.watch(k)
                cur = cast("list[bytes | None]", await p.hmget(k, vids))
                p.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                p.hset(k, mapping={v: pack_imported(merge_imported(c, rows[v]))
                                   for v, c in zip(vids, cur, strict=True)})
                await p.execute()
                return
            except redis.WatchError:
                continue


async def _run(cfg: Config, path: Path, shop: str, fmt: str, dry_run: bool, bar: tqdm | None) -> dict[str, Any]:
    rows = shopify_rows(path) if fmt == "shopify" else generic_rows(path)
    cp = None if dry_run else Checkpoint(cfg, shop, file_digest(path))
    out: dict[str, Any] = {"rows": 0, "imported": 0, "skipped": []}
    seen: dict[str, int] = {}
    now = int(time.time() * 1000)
    r = None if dry_run else await db.connect_async(cfg)
    pending: asyncio.Future[None] | None = None
    try:
        w = IngestWriter(r, cfg) if r is not None else None
        for chunk in _chunks(rows):
            # read and checked in a thread while the loop writes the chunk before (Redis, the
            # writer's requests and this thread overlap; the checks hold the GIL only between I/O)
            parsed = await asyncio.to_thread(parse_rows, chunk, shop, now, seen)
            last = chunk[-1][0]
            if r is not None and w is not None and cp is not None and last > cp.done:
                if pending is not None:
                    await pending  # chunks are written in order: the note after each says so
                # written while the next chunk is read and checked (Redis and this process overlap)
                pending = asyncio.ensure_future(_write_noted(r, w, shop, parsed, cp, last))
                await asyncio.sleep(0)  # the write's first request goes out now
            out["rows"] += parsed.rows
            out["imported"] += len(parsed.good)
            out["skipped"] += parsed.skipped
            if bar is not None:
                bar.update(parsed.rows)
        if pending is not None:
            await pending
        if cp is not None:
            cp.clear()
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
        if r is not None:
            await r.aclose()
    return out


async def _write_noted(r: aredis.Redis, w: IngestWriter, shop: str, parsed: Parsed, cp: Checkpoint,
                       last: int) -> None:
    await _write(r, w, shop, parsed)
    cp.note(last)


def import_file(cfg: Config, path: Path, shop: str, fmt: str = "generic", dry_run: bool = False,
                progress: bool | None = None) -> dict[str, Any]:
    """Import a customer file into ``shop``; returns the summary ``{"rows", "imported", "skipped":
    [{"row", "reason"}]}`` (``imported``: rows whose history is in, written now or before).
    ``progress``: a bar on stderr (default: when stderr is a terminal)."""
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(unit=" rows", desc=f"import {path.name}", file=sys.stderr, disable=not show, mininterval=0.5)
    # no cyclic garbage to speak of is made here, while millions of short-lived events would make
    # the collector walk every tracked object again and again (~30% of the CPU at 1 M rows)
    was_on = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(_run(cfg, path, shop, fmt, dry_run, bar))
    finally:
        if was_on:
            gc.enable()
        bar.close()
