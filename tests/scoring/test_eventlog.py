"""The applied-event log (scoring.eventlog): scorers write each stream entry to disk before applying
it, applied entries leave Redis, and the archive still finds every event of a room exactly once."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from fanops import keys
from fanops.config import Config
from review import archive_files
from scoring import archive, eventlog
from scoring.worker import Worker
from tests.conftest import stream_entries
from tests.feeds import ev, frame
from tests.pipeline import drain, ingest_frames

SHOP = "default"
BASE = 1_763_856_000_000


def _show(room: str, n: int = 24, start: int = 0) -> list[dict[str, Any]]:
    """``n`` events of ``room`` by eight viewers (so every partition gets some), one a second."""
    kinds = [{"type": "join"}, {"type": "like"}, {"type": "comment", "text": "hi"}]
    return [ev(f"{room}-{i}", room=room, ts=BASE + (start + i) * 1000, viewer=f"u{i % 8}", **kinds[i % 3])
            for i in range(n)]


def _counted(r: redis.Redis, room: str) -> int:
    """The events the scorer counted for the room (what ``status`` reports)."""
    h: Any = r.hgetall(keys.room(SHOP, room))
    return sum(int(v) for k, v in h.items() if k.startswith(b"n:"))


def _archived_ids(r: redis.Redis, cfg: Config, room: str) -> list[str]:
    """Archive the room; the event ids of its events.parquet (checked against the result first)."""
    res = archive.archive_room(r, cfg, SHOP, room)
    ids: list[str] = archive_files.read_room(cfg, SHOP, room).events().collect()["id"].to_list()
    assert res.complete and res.events == len(ids) == _counted(r, room)
    return sorted(ids)


def _records(cfg: Config) -> list[tuple[int, tuple[int, int], bytes]]:
    return [(rec.part, rec.sid, rec.payload) for _, rec in eventlog.LogReader(cfg.data_dir, SHOP).read_new()]


def _entry(i: int) -> tuple[str, str, dict[bytes, bytes]]:
    return keys.stream(SHOP, i % keys.PARTITIONS), f"{BASE + i}-0", {b"e": msgspec.msgpack.encode([ev(i)])}


def _read_group(r: redis.Redis, consumer: str, streams: list[str],
                count: int | None = None) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
    """XREADGROUP of new entries as ``consumer``, left unacknowledged: (stream, id, fields)."""
    got: Any = r.xreadgroup(keys.GROUP, consumer, {s: ">" for s in streams}, count=count)
    items = got.items() if isinstance(got, dict) else ((k, [v]) for k, v in got)
    return [(s.decode(), i, f) for s, batches in items for batch in batches for i, f in batch]


def _ids(r: redis.Redis, stream: str) -> list[bytes]:
    got: Any = r.xrange(stream)
    return [i for i, _ in got]


def _xlen(r: redis.Redis) -> list[int]:
    return [int(r.xlen(s)) for s in keys.streams(SHOP)]


def test_a_torn_last_record_is_read_once_it_is_complete(cfg: Config) -> None:
    w = eventlog.EventLogWriter(cfg.data_dir, "w1")
    w.write(SHOP, [_entry(1), _entry(2)])
    w.close()
    reader = eventlog.LogReader(cfg.data_dir, SHOP)
    [path] = reader.files()
    payload = msgspec.msgpack.encode([ev(3, type="like")])
    record = eventlog.HEADER.pack(len(payload), 3, BASE + 3, 7) + payload
    first = [(rec.part, rec.sid) for _, rec in reader.read_new()]
    assert first == [(1, (BASE + 1, 0)), (2, (BASE + 2, 0))]
    # a crash mid-write leaves part of the header, then part of the payload: not a record yet
    done = 0
    for upto in (5, eventlog.HEADER.size + len(payload) // 2, len(record)):
        assert list(reader.read_new()) == []
        with open(path, "ab") as f:
            f.write(record[done:upto])
        done = upto
    assert [(p, rec.part, rec.sid, rec.payload) for p, rec in reader.read_new()] == [(path, 3, (BASE + 3, 7), payload)]
    assert list(reader.read_new()) == []  # nothing is read twice
    assert [sid for _, sid, _ in _records(cfg)] == [(BASE + 1, 0), (BASE + 2, 0), (BASE + 3, 7)]


def test_entries_logged_twice_are_archived_once(cfg: Config, r: redis.Redis) -> None:
    ingest_frames(cfg, [frame(*_show("show"))])
    # a scorer reads every entry and logs it, then is killed before its apply acknowledges them
    for s in keys.streams(SHOP):
        r.xgroup_create(s, keys.GROUP, id="0", mkstream=True)
    held = _read_group(r, "w-dead", keys.streams(SHOP))
    assert len({s for s, _, _ in held}) > 1
    dead = eventlog.EventLogWriter(cfg.data_dir, "w-dead")
    dead.write(SHOP, held)
    dead.close()
    # another scorer takes them over, logs them again (its own file) and applies them
    w2 = drain(r, dataclasses.replace(cfg, claim_idle_ms=0), name="w2")
    assert w2.stats.claimed == len(held) and w2.stats.events == 24
    recs = _records(cfg)
    assert len(eventlog.LogReader(cfg.data_dir, SHOP).files()) == 2
    assert len(recs) == 2 * len(held) == 2 * len({(p, sid) for p, sid, _ in recs})
    assert stream_entries(r, SHOP) == []
    assert _archived_ids(r, cfg, "show") == sorted(e["id"] for e in _show("show"))


def test_trim_keeps_entries_not_yet_applied(cfg: Config, r: redis.Redis) -> None:
    def one_entry(i: int) -> None:  # one consumer run: one stream entry, all in u1's partition
        ingest_frames(cfg, [frame(ev(i, room="show", ts=BASE + i * 1000, viewer="u1", type="like"))])

    stream = keys.stream(SHOP, keys.part_of("u1"))
    one_entry(1)
    drain(r, cfg, name="w1")  # applied, then trimmed
    assert r.xlen(stream) == 0
    for i in (2, 3, 4):
        one_entry(i)
    ids = _ids(r, stream)
    assert len(ids) == 3
    # entry 2 is pending with a stalled scorer; entry 3 is applied by another; entry 4 is not delivered
    assert [i for _, i, _ in _read_group(r, "w-stalled", [stream], count=1)] == ids[:1]
    third = _read_group(r, "w2", [stream], count=1)
    assert [i for _, i, _ in third] == ids[1:2]
    assert Worker(r, cfg, name="w2").apply_batch(SHOP, third) == 1  # applies, then trims what it may
    assert eventlog.trim_applied(r, keys.streams(SHOP)) == 0
    assert _ids(r, stream) == ids
    assert r.xpending(stream, keys.GROUP)["pending"] == 1
    # the stalled scorer comes back: it applies its entry and the undelivered one, then trims
    drain(r, cfg, name="w-stalled")
    assert _xlen(r) == [0] * keys.PARTITIONS and eventlog.trim_applied(r, keys.streams(SHOP)) == 0
    assert _archived_ids(r, cfg, "show") == ["e-1", "e-2", "e-3", "e-4"]


def test_a_drained_show_leaves_redis_and_is_archived_from_the_log(cfg: Config, r: redis.Redis,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_frames(cfg, [frame(*_show("a")), frame(*_show("b", start=100))])
    assert sum(_xlen(r)) > 0
    drain(r, cfg)
    assert _xlen(r) == [0] * keys.PARTITIONS  # every event is now only in the log
    files = eventlog.LogReader(cfg.data_dir, SHOP).files()
    assert files
    monkeypatch.setattr(eventlog, "DELETE_AFTER_MS", 0)  # as if the files were old enough to go
    assert _archived_ids(r, cfg, "a") == sorted(e["id"] for e in _show("a"))
    assert eventlog.LogReader(cfg.data_dir, SHOP).files() == files  # they still hold room b
    assert _archived_ids(r, cfg, "b") == sorted(e["id"] for e in _show("b", start=100))
    assert eventlog.LogReader(cfg.data_dir, SHOP).files() == []  # every room in them is archived


def test_a_writer_whose_file_was_deleted_starts_a_new_one(cfg: Config) -> None:
    w = eventlog.EventLogWriter(cfg.data_dir, "w1")
    w.write(SHOP, [_entry(1)])
    [old] = eventlog.LogReader(cfg.data_dir, SHOP).files()
    old.unlink()
    w.write(SHOP, [_entry(2)])
    w.write(SHOP, [_entry(3)])
    files: list[Path] = eventlog.LogReader(cfg.data_dir, SHOP).files()
    assert len(files) == 1  # a new file, which both later writes went to
    assert [sid for _, sid, _ in _records(cfg)] == [(BASE + 2, 0), (BASE + 3, 0)]
    w.close()


def test_archiving_one_room_keeps_the_log_file_holding_another_rooms_late_entry(
        cfg: Config, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry of room y first read from the stream, then applied (so logged into the file that
    holds room x's events, and trimmed) while x is archived: the file must stay for y."""
    monkeypatch.setattr(eventlog, "DELETE_AFTER_MS", 0)  # every file old enough to go
    ingest_frames(cfg, [frame(ev(1, room="x", ts=BASE), ev(2, room="x", ts=BASE + 1000, type="like"))])
    w = Worker(r, cfg, name="w1")
    w.drain()
    ingest_frames(cfg, [frame(ev(3, room="y", ts=BASE + 2000))])  # y: still in the stream
    def apply_meanwhile(_name: str) -> None:
        w.drain()

    archive.archive_room(r, cfg, SHOP, "x", on_file_written=apply_meanwhile)
    assert all(r.xlen(s) == 0 for s in keys.streams(SHOP))  # y's entry is only in the log now
    res = archive.archive_room(r, cfg, SHOP, "y")
    assert res.complete and res.events == 1


def test_a_show_applied_by_the_earlier_version_is_archived_whole_after_the_upgrade(
        cfg: Config, r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The earlier version left applied entries in the streams and wrote no log: the first scorer
    of this one writes them to the log before it trims anything (data layout 4)."""
    from scoring import migrate

    with monkeypatch.context() as old:  # the earlier version: no log, no trim, layout 3
        old.setattr(eventlog.EventLogWriter, "write", lambda *_a, **_k: None)
        old.setattr(eventlog, "trim_applied", lambda *_a, **_k: 0)
        ingest_frames(cfg, [frame(*_show("before"))])
        drain(r, cfg)
        r.hset(keys.stats(SHOP), "layout", 3)
    assert sum(r.xlen(s) for s in keys.streams(SHOP)) > 0 and not eventlog.LogReader(cfg.data_dir, SHOP).files()
    ingest_frames(cfg, [frame(*_show("after", start=100))])
    drain(r, cfg)  # this version: the layout step logs what the streams hold, then applies and trims
    assert int(r.hget(keys.stats(SHOP), "layout")) == migrate.LAYOUT
    assert all(r.xlen(s) == 0 for s in keys.streams(SHOP))
    assert sorted(_archived_ids(r, cfg, "before")) == sorted(e["id"] for e in _show("before"))


def test_a_scorer_that_cannot_write_its_log_applies_nothing_and_goes_on_once_it_can(
        cfg: Config, r: redis.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full, folder gone: the scorer keeps running, applies nothing it could not log (so
    nothing is trimmed unlogged), and applies it all once the log can be written."""
    import threading

    from fanops.read import status
    from scoring import worker as worker_mod
    from tests.conftest import wait_for

    monkeypatch.setattr(worker_mod, "LOG_RETRY_S", 0.05)
    cfg = dataclasses.replace(cfg, claim_idle_ms=200)
    blocker = eventlog.shop_dir(cfg.data_dir, SHOP)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the shop's log folder should be")
    ingest_frames(cfg, [frame(*_show("show"))])
    w = Worker(r, cfg, name="w1", shops=[SHOP])
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: "cannot write the applied-event log" in caplog.text, 20, "the scorer to report it")
        assert t.is_alive() and status(r, SHOP)["lag"] == 24
        blocker.unlink()
        wait_for(lambda: status(r, SHOP)["lag"] == 0, 30, "every event applied once the log can be written")
    finally:
        w.stop()
        t.join(15)
    assert _archived_ids(r, cfg, "show") == sorted(e["id"] for e in _show("show"))
