"""The applied-event log: the shop streams' entries, on disk, so that Redis need not keep them.

A scorer appends every stream entry it is about to apply to a file of its own, and makes it
durable (``fsync``) before the apply script acknowledges the entry. Once acknowledged, an entry
can leave the stream (``trim_applied``): while a show runs, Redis holds only the entries no
scorer has applied yet, not the show's every event. The archive reads a room's events from
these files and the stream together (``scoring.archive_scan``; an entry may be in both, or twice
in the files when a scorer was taken over mid-batch: it is read once, by stream id), and deletes
a file once every room with an event in it is archived (``scoring.archive``).

Layout: ``<data_dir>/eventlog/<shop>/<created ms>-<writer>.log``, one file per writer process
and shop at a time, a new one every ``ROTATE_S`` seconds or ``ROTATE_BYTES``. A record is a
16-byte header (payload length, stream partition, stream id ms, stream id seq) and the
entry's payload as the stream holds it (a msgpack array of events). A crash can leave a torn
last record: it was not acknowledged (the fsync comes first), so the entry is still pending in
the stream and is written again by whoever applies it; readers stop at a torn tail.

Several machines running scorers (or archiving) for one shop need one shared data folder, as
the archive does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import redis

from fanops import keys
from fanops.errors import LogWriteError as LogWriteError  # worker.py catches eventlog.LogWriteError
from fanops.paths import fs_name

log = logging.getLogger(__name__)

ROTATE_S = 60.0  # a writer starts a new file after this long...
ROTATE_BYTES = 64 << 20  # ...or this many bytes
# a file is deleted only once older than this (its writer moved on to a new file long before)
DELETE_AFTER_MS = 10 * 60_000
HEADER = struct.Struct(">IIQQ")  # payload length, partition, stream id ms, stream id seq
SUFFIX = ".log"


def shop_dir(data_dir: Path, shop: str) -> Path:
    return Path(data_dir) / "eventlog" / fs_name(shop)


def stream_id(x: bytes | str) -> tuple[int, int]:
    """A stream entry id ("ms-seq") as a pair that sorts as the stream does."""
    s = x.decode() if isinstance(x, bytes) else x
    a, _, b = s.partition("-")
    return int(a), int(b or 0)


def stream_id_text(i: tuple[int, int]) -> str:
    """A pair from ``stream_id`` as the stream writes it ("ms-seq")."""
    return f"{i[0]}-{i[1]}"


@dataclass
class _Open:
    path: Path
    f: BinaryIO
    opened: float
    size: int = 0


class EventLogWriter:
    """Appends stream entries to this process's current file of each shop, durably."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.data_dir = Path(data_dir)
        raw = f"{name}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.writer = "".join(c if c.isalnum() or c in "-_" else "_" for c in raw)[:80]
        self._files: dict[str, _Open] = {}
        self._parts: dict[str, dict[str, int]] = {}

    def _part(self, shop: str, stream: str) -> int:
        by_name = self._parts.get(shop)
        if by_name is None:
            by_name = self._parts[shop] = {s: p for p, s in enumerate(keys.streams(shop))}
        return by_name[stream]

    def _file(self, shop: str, now: float) -> _Open:
        cur = self._files.get(shop)
        if cur is not None:
            fresh = now - cur.opened < ROTATE_S and cur.size < ROTATE_BYTES
            if fresh and os.fstat(cur.f.fileno()).st_nlink > 0:
                return cur
            cur.f.close()
        d = shop_dir(self.data_dir, shop)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{int(time.time() * 1000):013d}-{self.writer}{SUFFIX}"
        f = cast(BinaryIO, open(path, "ab"))  # noqa: SIM115 - kept open across batches, closed on rotation
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)  # the new file's name is durable too
        finally:
            os.close(fd)
        cur = self._files[shop] = _Open(path, f, now)
        return cur

    def write(self, shop: str, entries: list[tuple[str, Any, dict[bytes, bytes]]]) -> None:
        """Append the entries (stream key, entry id, fields) and fsync: on return they are on disk."""
        if not entries:
            return
        try:
            self._write(shop, entries)
        except OSError as e:
            cur = self._files.pop(shop, None)
            if cur is not None:
                with contextlib.suppress(OSError):
                    cur.f.close()  # a new file next time: this one may end in a partial record
            raise LogWriteError(f"cannot write the applied-event log under {shop_dir(self.data_dir, shop)}: {e}") from e

    def _write(self, shop: str, entries: list[tuple[str, Any, dict[bytes, bytes]]]) -> None:
        out = self._file(shop, time.monotonic())
        chunks: list[bytes] = []
        for stream, sid, f in entries:
            payload = f.get(b"e")
            if not payload:
                continue
            ms, seq = stream_id(sid)
            chunks.append(HEADER.pack(len(payload), self._part(shop, stream), ms, seq))
            chunks.append(payload)
        body = b"".join(chunks)
        out.f.write(body)
        out.f.flush()
        os.fsync(out.f.fileno())
        out.size += len(body)

    def close(self) -> None:
        for o in self._files.values():
            o.f.close()
        self._files.clear()


@dataclass(frozen=True)
class Record:
    part: int
    sid: tuple[int, int]
    payload: bytes


@dataclass
class LogReader:
    """Reads a shop's log files, each from where the last call stopped (files may grow)."""

    data_dir: Path
    shop: str
    offsets: dict[Path, int] = field(default_factory=dict)

    def files(self) -> list[Path]:
        d = shop_dir(self.data_dir, self.shop)
        try:
            return sorted(p for p in d.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def read_new(self) -> Iterator[tuple[Path, Record]]:
        for path in self.files():
            start = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read()
            except FileNotFoundError:
                continue  # deleted meanwhile: every room in it was archived
            pos = 0
            while pos + HEADER.size <= len(data):
                n, part, ms, seq = HEADER.unpack_from(data, pos)
                end = pos + HEADER.size + n
                if end > len(data):
                    break  # a torn tail (or a record being written): read again next time
                yield path, Record(part, (ms, seq), data[pos + HEADER.size:end])
                pos = end
            self.offsets[path] = start + pos


def rewrite_in_place(path: Path, change: Callable[[Record], bytes | None]) -> int:
    """Write over the payload of each complete record of ``path`` for which ``change`` returns new
    bytes, of the same length (``ValueError`` otherwise); returns the records changed, fsynced.

    In place, not a new file swapped in: the file's writer may still be appending to it, and its
    appends would go to the replaced file and be lost. Bytes are only written over, never moved,
    so every record keeps its place and length: a reader, or a crash part-way, meets each record
    whole, old or new (a page torn by a crash inside one string may leave both halves: a repeat
    of the same rewrite finishes it)."""
    n = 0
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0  # deleted meanwhile: every room in it was archived
    with f:
        data = f.read()
        pos = 0
        while pos + HEADER.size <= len(data):
            size, part, ms, seq = HEADER.unpack_from(data, pos)
            end = pos + HEADER.size + size
            if end > len(data):
                break  # a torn tail, or a record being written: not applied yet
            new = change(Record(part, (ms, seq), data[pos + HEADER.size:end]))
            if new is not None:
                if len(new) != size:
                    raise ValueError(f"a rewritten record of {path} must keep its length ({size} bytes)")
                f.seek(pos + HEADER.size)
                f.write(new)
                n += 1
            pos = end
        if n:
            f.flush()
            os.fsync(f.fileno())
    return n


def created_ms(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[0])
    except ValueError:
        return 0


def delete_files(paths: list[Path], now_ms: int | None = None) -> int:
    """Delete the given log files that are old enough (by their name and by their last write) that no
    writer appends to them; returns how many."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    n = 0
    for p in paths:
        try:
            # the name holds its creation on its writer's clock, mtime its last write: the later counts,
            # so a file still being written is kept even when the machines' clocks disagree
            if now - max(created_ms(p), int(p.stat().st_mtime * 1000)) < DELETE_AFTER_MS:
                continue
            p.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


Progress = tuple[tuple[int, int], "tuple[int, int] | None"]


def group_progress(r: redis.Redis, streams: list[str]) -> list[Progress | None]:
    """Per stream: (the last entry delivered to the scorers' group, its oldest entry not yet
    acknowledged, or None), or None where the stream or the group does not exist. One round trip."""
    p = r.pipeline(transaction=False)
    for s in streams:
        p.xinfo_groups(s)
        p.xpending(s, keys.GROUP)
    got = p.execute(raise_on_error=False)
    out: list[Progress | None] = []
    for i in range(len(streams)):
        groups, pend = got[2 * i], got[2 * i + 1]
        g = None if isinstance(groups, Exception) or isinstance(pend, Exception) else next(
            (g for g in groups if _text(g.get("name", g.get(b"name"))) == keys.GROUP), None)
        if g is None:
            out.append(None)
            continue
        last = stream_id(cast(Any, g.get("last-delivered-id", g.get(b"last-delivered-id"))))
        out.append((last, stream_id(pend["min"]) if pend and pend.get("pending") else None))
    return out


def applied_below(prog: Progress) -> tuple[int, int]:
    """The first entry id of a stream not known to be applied: every entry before it is acknowledged."""
    (ms, seq), oldest_pending = prog
    return (ms, seq + 1) if oldest_pending is None else min((ms, seq + 1), oldest_pending)


def trim_applied(r: redis.Redis, streams: list[str]) -> int:
    """Remove from each stream the entries every scorer has applied (acknowledged): they are in the
    log. Keeps every entry not yet delivered and every one still pending. Returns entries removed."""
    cuts = [(s, applied_below(prog)) for s, prog in zip(streams, group_progress(r, streams), strict=True)
            if prog is not None]
    cuts = [(s, cut) for s, cut in cuts if cut > (0, 1)]
    if not cuts:
        return 0
    p = r.pipeline(transaction=False)
    for s, cut in cuts:
        p.xtrim(s, minid=stream_id_text(cut), approximate=False)
    return sum(int(x) for x in p.execute())


class AppliedTrim:
    """A scorer's trims of the streams it applied from (``trim_applied``): every ``every_s`` at most a
    shop while it is busy, at once when it is idle."""

    def __init__(self, r: redis.Redis, monotonic: Callable[[], float], every_s: float) -> None:
        self._r = r
        self._monotonic = monotonic
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._untrimmed: dict[str, set[str]] = {}  # shop -> streams applied from since their last trim

    def applied(self, shop: str, streams: Iterable[str]) -> None:
        """Entries of ``streams`` were applied: trim them now if the shop's last trim is old enough."""
        self._untrimmed.setdefault(shop, set()).update(streams)
        self.trim(shop)

    def trim(self, shop: str, now_too: bool = False) -> None:
        now = self._monotonic()
        streams = self._untrimmed.get(shop)
        if not streams or (not now_too and now - self._last.get(shop, -math.inf) < self._every_s):
            return
        self._last[shop] = now
        self._untrimmed[shop] = set()
        try:
            trim_applied(self._r, sorted(streams))
        except redis.ResponseError as e:
            log.warning("could not trim the applied entries of %s: %s", shop, e)

    def idle(self) -> None:
        for shop in list(self._untrimmed):
            self.trim(shop, now_too=True)


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)
