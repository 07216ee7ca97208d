"""Settled follow-up tasks of the kinds besides lingered leave Redis for a per-shop ledger on disk.

A lingered task belongs to a room: once the room is archived its settled tasks leave Redis for the
room's ``followups.parquet`` (``scoring.archive.prune_followups``).  The other kinds
(thank_first_order, after_sales, win_back: ``keys.kind_tasks``) belong to no show, so without this a
shop's Redis would keep one to three records per buyer forever.  A scorer's prune pass
(``Worker.archive_idle``, every ``PRUNE_EVERY_S``) moves each one settled for
``FANOPS_KIND_TASKS_KEEP_DAYS`` of wall time into the shop's ledger::

    <data_dir>/kind_tasks/<shop>/YYYY-MM.parquet   the tasks pruned in that month (UTC), LEDGER_SCHEMA

A row holds every field of the task (``fanops.state.TaskRec``) and its id, occasion and viewer.
When a task was settled: ``sent_at`` (sent), ``skipped_at`` (skipped), ``updated_at`` (expired: the
age-out stamps it); the scorer settles withdrawn and converted tasks and stamps no time, so the first
pass that finds one settled notes the moment (``keys.kind_settled``) and counts from there.

Order: under the ledger folder's lock, a pass reads the kind hashes (HSCAN), writes the tasks due
into the month's file (a temp file, fsync, ``os.replace``, fsync of the folder, as
``review.archive_files`` writes) and only then removes them from Redis, each compare-and-delete
against the bytes the ledger got (``lua/kind_prune.lua``): a task changed or removed meanwhile (a
scorer made it again, ``forget`` erased it) stays as it is, and its row leaves the ledger again, so
the ledger holds exactly what left Redis.  Open tasks (pending, claimed) are never pruned.  What
stays in Redis: the kind's counters (``keys.kind_counts``: ``status``'s tasks counts), the sent log
(the 7-day rule), and the viewer's ``fol``, which keeps the kind tasks the data last gave, so that the
scorer does not make a pruned task again.  Readers: ``ledger_tasks`` (one viewer: the fan's page);
``erase_viewers`` and ``clear_said`` (forget and retention, through ``scoring.forget_files``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
import polars as pl
import redis

from fanops import keys, rules_store
from fanops.config import Config
from fanops.errors import ArchiveError
from fanops.paths import dir_lock, fs_name, fsync_dir, put_atomic
from fanops.replies import to_int
from fanops.rules_settings import RuleSettings
from fanops.scripts import script_source
from fanops.state import FINAL_TASK_STATES, TASK_KINDS, TaskRec, pack_task, unpack_task, unpack_viewer
from scoring import kinds, rules

log = logging.getLogger(__name__)

LEDGER = "kind_tasks"  # the ledgers' folder under data_dir
KINDS = TASK_KINDS[1:]
SCAN = 1000  # hash fields per HSCAN call
BATCH = 20_000  # tasks written to the ledger, then removed from Redis, at a time
CAS_CHUNK = 500  # tasks per script call
DAY_MS = 86_400_000
_FIELDS = msgspec.structs.fields(TaskRec)
_TYPES: dict[Any, Any] = {str: pl.String, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}
LEDGER_SCHEMA: dict[str, Any] = {
    "id": pl.String, "occasion": pl.Int64, "viewer": pl.String, "settled_at": pl.Int64, "pruned_at": pl.Int64,
    **{f.name: _TYPES.get(f.type, pl.List(pl.String)) for f in _FIELDS},
}


def ledger_dir(cfg: Config, shop: str) -> Path:
    """The shop's ledger folder: ``<data_dir>/kind_tasks/<shop>`` (the id escaped by ``fs_name``)."""
    return Path(cfg.data_dir) / LEDGER / fs_name(shop)


def ledger_files(cfg: Config, shop: str) -> list[Path]:
    """The shop's month files, oldest first."""
    d = ledger_dir(cfg, shop)
    return sorted(d.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet")) if d.is_dir() else []


def _month_file(d: Path, ms: int) -> Path:
    return d / (datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m") + ".parquet")


def _write(path: Path, df: pl.DataFrame) -> None:
    """Replace ``path`` by ``df`` at once (``fanops.paths.put_atomic``, then the folder fsynced);
    an empty frame deletes the file."""
    if df.height == 0:
        path.unlink(missing_ok=True)
    else:
        put_atomic(path, df.write_parquet)
    fsync_dir(path.parent)


def own_settle_time(rec: TaskRec) -> int:
    """The wall ms at which a settled task was settled, as its record says (0: it does not say)."""
    return {"sent": rec.sent_at, "skipped": rec.skipped_at, "expired": rec.updated_at}.get(rec.state, 0)


@dataclass(frozen=True)
class Due:
    """A settled task to prune: where it is, its bytes as read, and its ledger row's values."""

    kind: str
    field: bytes
    raw: bytes
    rec: TaskRec
    settled_at: int

    @property
    def occasion_viewer(self) -> tuple[int, str]:
        occ, _, vid = self.field.decode("utf-8", "surrogateescape").partition(":")
        return int(occ), vid

    @property
    def tid(self) -> str:
        occ, vid = self.occasion_viewer
        return keys.kind_task_id(self.kind, occ, vid)


def _frame(due: list[Due], pruned_at: int) -> pl.DataFrame:
    cols: dict[str, list[Any]] = {name: [] for name in LEDGER_SCHEMA}
    for d in due:
        occ, vid = d.occasion_viewer
        for name, x in (("id", d.tid), ("occasion", occ), ("viewer", vid), ("settled_at", d.settled_at),
                        ("pruned_at", pruned_at)):
            cols[name].append(x)
        for f in _FIELDS:
            cols[f.name].append(d.kind if f.name == "kind" else getattr(d.rec, f.name))
    return pl.DataFrame(cols, schema=LEDGER_SCHEMA)


def _settled(r: redis.Redis, shop: str, kind: str, page: list[tuple[bytes, bytes]], now: int,
             noted: set[str]) -> list[Due]:
    """The settled tasks of one HSCAN page with the moment each was settled; the first sighting of
    one that does not say is noted now (``keys.kind_settled``), and its id added to ``noted``."""
    got = [(f, b, rec) for f, b in page if (rec := unpack_task(b)).state in FINAL_TASK_STATES]
    unknown = [(f, b, rec) for f, b, rec in got if own_settle_time(rec) <= 0]
    seen: dict[bytes, int] = {}
    if unknown:
        sk = keys.kind_settled(shop)
        ids = [Due(kind, f, b, rec, 0).tid for f, b, rec in unknown]
        noted.update(ids)
        scores = r.zmscore(sk, ids)
        fresh = {tid: now for tid, sc in zip(ids, scores, strict=True) if sc is None}
        if fresh:
            r.zadd(sk, fresh, nx=True)
        seen = {f: int(sc) if sc is not None else now for (f, _b, _r), sc in zip(unknown, scores, strict=True)}
    return [Due(kind, f, b, rec, own_settle_time(rec) or seen[f]) for f, b, rec in got]


def _given(r: redis.Redis, shop: str, due: list[Due], clock: int, s: RuleSettings) -> list[Due]:
    """The tasks of ``due`` that the data still gives as it last gave them: their viewer's state
    names them (``fol``), in the state the current settings at ``clock`` give too (no redo pending).
    Only those may leave Redis: one the data no longer gives (a kind switched off, a longer
    ``after_sales_days``) stays, as its hash field is what keeps the scorer from making it again
    should the data give it again.  (A data state of these kinds never goes back from withdrawn:
    their events only add a refusal or a return, never take one back; so no later move is missed.)"""
    if not due:
        return []
    vids = list(dict.fromkeys(d.occasion_viewer[1] for d in due))
    raw = cast("list[bytes | None]", r.hmget(keys.viewers(shop), vids))
    given: dict[str, set[tuple[str, int]]] = {}
    for vid, b in zip(vids, raw, strict=True):
        v = unpack_viewer(b) if b else None
        if v is None:
            given[vid] = set()
            continue
        was = kinds.stored(v)  # the data's state of each task (pending, withdrawn), not the operator's
        given[vid] = {key for key, (st, _room, _at) in kinds.targets(v, clock, s).items() if was.get(key) == st}
    return [d for d in due if (d.kind, d.occasion_viewer[0]) in given[d.occasion_viewer[1]]]


def due_tasks(r: redis.Redis, cfg: Config, shop: str, now: int, keep_ms: int,
              noted: set[str]) -> Iterator[list[Due]]:
    """The shop's kind tasks settled at least ``keep_ms`` before ``now`` that the data still gives
    (``_given``), in lists of ``BATCH`` at most; ``noted`` gets the ids whose settling is noted in
    ``keys.kind_settled``."""
    s, _ = rules_store.load(r, shop)
    clock = to_int(cast("bytes | None", r.hget(keys.stats(shop), "clock")))
    batch: list[Due] = []
    for kind in KINDS:
        cursor = 0
        while True:
            cursor, page = cast("tuple[int, dict[bytes, bytes]]",
                                r.hscan(keys.kind_tasks(shop, kind), cursor, count=SCAN))
            old = [d for d in _settled(r, shop, kind, list(page.items()), now, noted)
                   if d.settled_at + keep_ms <= now]
            batch += _given(r, shop, old, clock, s)
            if len(batch) >= BATCH:
                yield batch
                batch = []
            if cursor == 0:
                break
    if batch:
        yield batch


def _forget_in_redis(r: redis.Redis, shop: str, due: list[Due]) -> set[str]:
    """Compare-and-delete each task (``lua/kind_prune.lua``); the ids of those that left Redis."""
    script = r.register_script(script_source("scoring", "kind_prune"))
    qp = keys.queue(shop, "")
    gone: set[str] = set()
    for kind in KINDS:
        mine = [d for d in due if d.kind == kind]
        for i in range(0, len(mine), CAS_CHUNK):
            chunk = mine[i:i + CAS_CHUNK]
            args: list[Any] = [qp]
            for d in chunk:
                args += [d.field, d.raw, d.tid]
            res = script(keys=[keys.kind_tasks(shop, kind), keys.kind_settled(shop)],
                         args=args)
            gone.update(d.tid for d, x in zip(chunk, cast("list[int]", res), strict=True) if int(x) == 1)
    return gone


def _drop_notes(r: redis.Redis, shop: str, noted: set[str]) -> None:
    """The notes of ``keys.kind_settled`` whose task the whole pass did not find settled any more
    (the scorer deleted it: a kind switched off) leave."""
    sk = keys.kind_settled(shop)
    gone = [m for m, _ in r.zscan_iter(sk, count=SCAN) if m.decode("utf-8", "surrogateescape") not in noted]
    for i in range(0, len(gone), CAS_CHUNK):
        r.zrem(sk, *gone[i:i + CAS_CHUNK])


def _ledger_add(path: Path, new: pl.DataFrame) -> None:
    old = pl.read_parquet(path) if path.exists() else None
    if old is not None:  # a task written before by a pass that stopped before Redis forgot it
        new = pl.concat([old.filter(~pl.col("id").is_in(new["id"].implode())), new])
    _write(path, new)


def prune_kind_tasks(r: redis.Redis, cfg: Config, shop: str, now_ms: int | None = None,
                     keep_days: int | None = None,
                     on_ledger_written: Callable[[list[str]], None] | None = None) -> int:
    """Move the shop's kind tasks settled for ``keep_days`` (default ``cfg.kind_tasks_keep_days``) of
    wall time before ``now_ms`` (default this machine's clock) from Redis into the ledger (see the
    module doc); returns how many left Redis.  ``on_ledger_written(ids)`` runs after the ledger
    holds a batch and before Redis forgets it (the tests act there as an operator would).  Raises
    ArchiveError, nothing removed from Redis, when the ledger cannot be written."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    keep_ms = (cfg.kind_tasks_keep_days if keep_days is None else keep_days) * DAY_MS
    d = ledger_dir(cfg, shop)
    n = kept = 0
    try:
        with dir_lock(d):
            path = _month_file(d, now)
            noted: set[str] = set()
            for due in due_tasks(r, cfg, shop, now, keep_ms, noted):
                rows = _frame(due, now)
                _ledger_add(path, rows)
                if on_ledger_written is not None:
                    on_ledger_written(rows["id"].to_list())
                gone = _forget_in_redis(r, shop, due)
                stay = [dd.tid for dd in due if dd.tid not in gone]
                if stay:  # changed or removed meanwhile: Redis keeps (or dropped) it, the ledger does not
                    _write(path, pl.read_parquet(path).filter(
                        ~(pl.col("id").is_in(stay) & (pl.col("pruned_at") == now))))
                n += len(due) - len(stay)
                kept += len(stay)
            _drop_notes(r, shop, noted)
    except OSError as e:
        raise ArchiveError(f"cannot write the kind-task ledger of shop {shop!r} under {d} ({e}): no task left "
                           "Redis; check that the data folder (FANOPS_DATA_DIR) is writable") from e
    except pl.exceptions.PolarsError as e:
        raise ArchiveError(f"a file of the kind-task ledger of shop {shop!r} under {d} is not readable ({e}): no "
                           "task left Redis; move the damaged month file aside (its tasks are lost to the "
                           "fan's page) and the next pass starts it again") from e
    if n or kept:
        log.info("%d settled follow-up tasks of kinds besides lingered of %s left Redis for the ledger "
                 "(%d changed meanwhile and stayed)", n, shop, kept)
    return n


# --- readers -----------------------------------------------------------------------------------
def _task(row: dict[str, Any]) -> TaskRec:
    return TaskRec(**{f.name: row[f.name] if row[f.name] is not None else [] for f in _FIELDS})


def ledger_tasks(cfg: Config, shop: str, viewer: str) -> list[tuple[str, TaskRec]]:
    """The viewer's pruned kind tasks, as (id, task), oldest pruning first (a task pruned twice:
    its last row); a month file that cannot be read is logged and left out."""
    parts = []
    for path in ledger_files(cfg, shop):
        try:
            parts.append(pl.scan_parquet(path).filter(pl.col("viewer") == viewer).collect())
        except (OSError, pl.exceptions.PolarsError) as e:  # one damaged month hides only its own tasks
            log.warning("a file of the kind-task ledger of %s is not readable (%s): its tasks are not shown", shop, e)
    if not parts:
        return []
    df = pl.concat(parts).sort("pruned_at").unique("id", keep="last", maintain_order=True)
    return [(row["id"], _task(row)) for row in df.iter_rows(named=True)]


def _rewrite(cfg: Config, shop: str, hit: pl.Expr, change: Callable[[pl.DataFrame], pl.DataFrame]) -> int:
    """Rewrite each month file holding rows that match ``hit`` with ``change`` applied; the rows matched."""
    d = ledger_dir(cfg, shop)
    if not d.is_dir():
        return 0
    n = 0
    with dir_lock(d):
        for path in ledger_files(cfg, shop):
            try:
                m = int(pl.scan_parquet(path).filter(hit).select(pl.len()).collect().item())
                if m:
                    _write(path, change(pl.read_parquet(path)))
            except pl.exceptions.PolarsError as e:
                raise ArchiveError(f"{path} of the kind-task ledger is not readable ({e}): the viewers' rows in it "
                                   "cannot be taken out; delete the file (its tasks leave the fans' pages) and run "
                                   "again") from e
            n += m
    return n


def erase_viewers(cfg: Config, shop: str, viewers: frozenset[str]) -> int:
    """Every ledger row of ``viewers`` deleted (``forget``); returns the rows deleted."""
    hit = pl.col("viewer").is_in(list(viewers))
    return _rewrite(cfg, shop, hit, lambda df: df.filter(~hit))


def clear_said(cfg: Config, shop: str, viewers: frozenset[str]) -> int:
    """``said`` (comment text) emptied in the ledger rows of ``viewers`` (retention); returns the
    rows changed.  The scorer gives kind tasks no ``said`` today: this finds none until it does."""
    hit = pl.col("viewer").is_in(list(viewers)) & (pl.col("said").list.len() > 0)
    return _rewrite(cfg, shop, hit, lambda df: df.with_columns(
        said=pl.when(hit).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(pl.col("said"))))


def restore_dropped(r: redis.Redis, cfg: Config, shop: str) -> int:
    """Put back into Redis (HSETNX: a task Redis holds wins) the pruned tasks that the current
    settings no longer give: called before a rebuild under new settings (``Worker``), so that when
    the scorer's redo drops them from the viewers' ``fol`` their hash fields are there, as without
    pruning, and a later change that gives them again makes no second task.  The counters are not
    touched (pruning never moved them).  Returns the tasks put back; an unreadable ledger is
    logged and puts back none."""
    files = ledger_files(cfg, shop)
    if not files:
        return 0
    try:
        df = pl.read_parquet(files).sort("pruned_at").unique("id", keep="last")
    except (OSError, pl.exceptions.PolarsError) as e:
        log.warning("the kind-task ledger of %s is not readable (%s): its tasks are not put back before the "
                    "rebuild; a kind switched off and on again may make them again", shop, e)
        return 0
    s, _ = rules_store.load(r, shop)
    clock = to_int(cast("bytes | None", r.hget(keys.stats(shop), "clock")))
    n = 0
    rows = list(df.iter_rows(named=True))
    for i in range(0, len(rows), BATCH):
        chunk = rows[i:i + BATCH]
        vids = list(dict.fromkeys(row["viewer"] for row in chunk))
        given = {vid: None if b is None else set(kinds.targets(unpack_viewer(b), clock, s))
                 for vid, b in zip(vids, cast("list[bytes | None]", r.hmget(keys.viewers(shop), vids)), strict=True)}
        p = r.pipeline(transaction=False)
        back = 0
        for row in chunk:
            got = given[row["viewer"]]
            if got is None or (row["kind"], row["occasion"]) in got:
                continue  # a forgotten viewer; or the data still gives it: it stays in the ledger alone
            rec = _task(row)
            p.hsetnx(keys.kind_tasks(shop, row["kind"]), f"{row['occasion']}:{row['viewer']}", pack_task(rec))
            p.zadd(keys.queue(shop, rec.state), {row["id"]: rules.queue_score(rec.priority, 0)}, nx=True)
            back += 1
        if back:
            n += sum(int(x) for x in p.execute()[::2])
    if n:
        log.info("%d pruned follow-up tasks of %s the new settings no longer give are back in Redis", n, shop)
    return n
