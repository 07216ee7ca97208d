"""Archiving a show (scoring.archive, into the files of review.archive_files): the files, what leaves
Redis and what stays, crash safety, shows not ready yet, follow-ups sent after the show, and hostile
ids as folder names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import redis

from fanops import errors, keys, queue
from fanops.config import Config
from fanops.paths import fs_name
from fanops.read import status
from fanops.state import FINAL_TASK_STATES
from realtime.simulator import SimSettings, encode_frame, generate
from review import analysis, archive_files
from scoring import archive, eventlog
from tests.conftest import stream_entries
from tests.feeds import ev, frame
from tests.pipeline import drain, ingest_frames

ROOT = Path(__file__).resolve().parents[2]
BASE = 1_763_856_000_000
NOW = 1_800_000_000_000
SHOP = "default"


def _feed(cfg: Config, r: redis.Redis, seed: int = 3, history: int = 1) -> list[str]:
    """A past show and a live one through the real consumer (and scorer); the rooms, oldest first."""
    s = SimSettings(seed=seed, viewers=160, rate=10, duration=600, start_ms=BASE, history_shows=history,
                    bad_ratio=0.0, dup_ratio=0.01, batch=20)
    frames = [encode_frame(f).decode() for f in generate(s)]
    ingest_frames(cfg, frames)
    drain(r, cfg)
    return [m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1)]


def _room_events_logged(cfg: Config, room: str) -> int:
    """The room's events in the applied-event log (each stream entry once)."""
    from fanops.schema import unpack_events

    recs = {(rec.part, rec.sid): rec.payload for _, rec in eventlog.LogReader(cfg.data_dir, SHOP).read_new()}
    return sum(1 for b in recs.values() for e in unpack_events(b) if e.room == room)


def _cli(cfg: Config, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FANOPS_DATA_DIR": str(cfg.data_dir), "FANOPS_LOG": "WARNING"}
    return subprocess.run([sys.executable, "-m", "scoring", *args, "--redis", cfg.redis_url], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_close_room_archives_the_show_and_frees_its_raw_data(cfg: Config, r: redis.Redis,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    past, live = _feed(cfg, r)
    # applied entries left the streams for the applied-event log
    assert stream_entries(r, SHOP) == []
    live_events = _room_events_logged(cfg, live)
    counted = sum(int(v) for k, v in r.hgetall(keys.room(SHOP, live)).items() if k.startswith(b"n:"))
    assert live_events == counted > 0
    before = {rm: status(r, SHOP, rm) for rm in (past, live)}
    assert all(r.exists(k) for k in archive.raw_keys(SHOP, past)[:4])
    n_tasks = sum(before[past]["room"]["followups"].values())

    res = _cli(cfg, "close-room", "--shop", SHOP, "--room", past)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["room"] == past and out["complete"] and out["events"] > 0 and out["tasks"] == n_tasks

    # the file set: six files named by a manifest, re-read as the show was at close
    a = archive_files.read_room(cfg, SHOP, past)
    assert set(a.paths) == {*archive_files.FILES, *archive_files.OPTIONAL}  # with the Redis data a late event reopens
    assert a.facts["status"] == before[past] and a.facts["complete"]
    ev_df = a.events().collect()
    assert ev_df.height == sum(a.facts["counted"].values()) == out["events"]
    assert ev_df.columns == list(archive_files.EVENT_SCHEMA) and ev_df["ts"].is_sorted()
    h = analysis.headline(analysis.analyse(analysis.load([a])), past)
    want = before[past]["room"]
    assert {k: h[k] for k in want if k != "id"} == {k: v for k, v in want.items() if k != "id"}

    # Redis: the raw data went, the counters, tasks and viewers stayed; the stream keeps the live room
    assert not any(r.exists(k) for k in archive.raw_keys(SHOP, past))
    assert r.keys(keys.seen(SHOP, past) + "*") == []  # every bucket of its dedupe table too
    assert r.keys(keys.seen(SHOP, live) + "*")
    for part in range(keys.PARTITIONS):
        for k in (keys.lurk(SHOP, part), keys.late_window(SHOP, part)):
            assert not [m for m in r.zrange(k, 0, -1) if keys.split_pair(m.decode())[0] == past]
    assert r.hget(keys.room(SHOP, past), "archived") is not None
    # the per-second clock index keeps only what the live room's late events may need
    first_live = int(r.zscore(keys.room_first(SHOP), live))
    for k in (keys.clock_min(SHOP), keys.clock_max(SHOP)):
        assert r.zcard(k) > 0 and min(int(sc) for _, sc in r.zrange(k, 0, 0, withscores=True)) >= first_live
    after = status(r, SHOP, past)
    assert {k: v for k, v in after["room"].items() if k != "present"} == \
        {k: v for k, v in want.items() if k != "present"}
    assert sum(queue.counts(r, SHOP, past).values()) == n_tasks
    assert r.hlen(keys.viewers(SHOP)) == before[live]["tiers"]["new_fan"] + sum(
        v for k, v in before[live]["tiers"].items() if k != "new_fan")
    # the log keeps the live room's events (its files also hold the live room's)
    assert _room_events_logged(cfg, live) == live_events
    assert archive.idle_rooms(r, SHOP) == []  # the live room is not idle; the past one is done

    mem = r.info("memory")["used_memory"]
    monkeypatch.setattr(eventlog, "DELETE_AFTER_MS", 0)  # as if the files were old enough to go
    res2 = archive.archive_room(r, cfg, SHOP, live)
    assert res2.complete and res2.events == live_events and stream_entries(r, SHOP) == []
    assert r.info("memory")["used_memory"] < mem
    # every room in the log's files is archived: the files went
    assert eventlog.LogReader(cfg.data_dir, SHOP).files() == []
    assert [i.room for i in archive_files.list_archived(cfg, SHOP)] == [past, live]
    assert archive_files.list_shops(cfg) == [SHOP]
    # archiving again is a no-op that returns the archive
    again = archive.archive_room(r, cfg, SHOP, past)
    assert again.already and again.generation == 1


def test_a_room_with_events_not_applied_is_left_alone(cfg: Config, r: redis.Redis) -> None:
    ingest_frames(cfg, [frame(ev(1, room="r-late", ts=BASE), ev(2, room="r-late", ts=BASE + 1000, type="like"))])
    drain(r, cfg)  # applies everything so far ...
    ingest_frames(cfg, [frame(ev(3, room="r-late", ts=BASE + 2000, type="comment", text="hi"))])  # ... not this
    with pytest.raises(errors.RoomNotReady, match="not yet applied"):
        archive.archive_room(r, cfg, SHOP, "r-late")
    assert not archive_files.room_dir(cfg, SHOP, "r-late").joinpath("manifest.json").exists()
    assert r.hget(keys.room(SHOP, "r-late"), "archiving") is None  # no mark left behind
    res = _cli(cfg, "close-room", "--shop", SHOP, "--room", "r-late", "--wait", "0")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "python -m scoring run" in res.stderr
    drain(r, cfg)
    assert archive.archive_room(r, cfg, SHOP, "r-late").events == 3
    with pytest.raises(errors.NotFound):
        archive.archive_room(r, cfg, SHOP, "no-such-room")


_CRASH = """
import os, sys
import redis
from scoring import archive
from review import archive_files
from fanops.config import Config
cfg = Config.from_env({{}}, redis_url={url!r}, data_dir={data!r})
def crash(name):
    if name == {at!r}:
        os._exit(3)  # a crash: no cleanup, no finally
if {fileset!r}:
    a = archive_files.read_room(cfg, {shop!r}, {room!r})
    parts = {{n: (pl.read_parquet(p) if n.endswith(".parquet") else json.loads(p.read_text()))
             for n, p in a.paths.items()}}
    parts["viewers.parquet"] = parts["viewers.parquet"].head(1)
    archive_files.write_file_set(a.info.path, {shop!r}, {room!r}, parts, {{}}, on_file_written=crash)
else:
    archive.archive_room(redis.Redis.from_url({url!r}), cfg, {shop!r}, {room!r}, on_file_written=crash)
"""


def _crash(cfg: Config, room: str, at: str, fileset: bool) -> int:
    code = "import json\nimport polars as pl\n" + _CRASH.format(url=cfg.redis_url, data=str(cfg.data_dir), at=at,
                                                                 fileset=fileset, shop=SHOP, room=room)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode


def test_a_crash_mid_archive_leaves_the_previous_state_readable(cfg: Config, r: redis.Redis) -> None:
    past, live = _feed(cfg, r)
    # a crash while archiving from Redis: no archive yet, and Redis untouched
    assert _crash(cfg, past, "transitions.parquet", fileset=False) == 3
    with pytest.raises(errors.NotArchived):
        archive_files.read_room(cfg, SHOP, past)
    assert r.exists(keys.room_viewers(SHOP, past)) and r.hget(keys.room(SHOP, past), "archived") is None
    assert r.hget(keys.room(SHOP, past), "archiving") is not None  # the dead process's mark ...
    first = archive.archive_room(r, cfg, SHOP, past)  # ... is seen to be dead and taken over
    assert first.generation == 1
    v1 = archive_files.read_room(cfg, SHOP, past).viewers().collect()

    # a crash while writing a new generation over it: the old one is still what readers get
    assert _crash(cfg, past, "viewers.parquet", fileset=True) == 3
    d = archive_files.room_dir(cfg, SHOP, past)
    assert len([p for p in d.iterdir() if p.name.startswith("g")]) == 2  # the half-written one is there ...
    a = archive_files.read_room(cfg, SHOP, past)  # ... but not trusted
    assert a.info.generation == 1 and a.viewers().collect().equals(v1)
    # the next complete write commits and clears the leftovers
    archive_files.write_file_set(d, SHOP, past, {"facts.json": {**a.facts, "note": "rewritten"}}, {**json.loads(
        (d / "manifest.json").read_text())["summary"]})
    b = archive_files.read_room(cfg, SHOP, past)
    assert b.info.generation == 2 and b.facts["note"] == "rewritten" and b.viewers().collect().equals(v1)
    named = {ent["path"].split("/")[0] for ent in json.loads((d / "manifest.json").read_text())["files"].values()}
    assert {p.name for p in d.iterdir() if p.name.startswith("g")} == named  # the crashed one is gone

    # altered or truncated files are refused, never half-read
    target = b.paths["events.parquet"]
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(errors.ArchiveCorrupt):
        archive_files.read_room(cfg, SHOP, past)
    (d / "manifest.json").write_text('{"format": 1, "files": {')
    with pytest.raises(errors.ArchiveCorrupt):
        archive_files.read_room(cfg, SHOP, past)
    assert archive_files.list_archived(cfg, SHOP) == []
    assert live


def test_follow_ups_sent_after_the_show_reach_the_archive(cfg: Config, r: redis.Redis) -> None:
    past, _live = _feed(cfg, r)
    archive.archive_room(r, cfg, SHOP, past)
    a = archive_files.read_room(cfg, SHOP, past)
    t = queue.list_tasks(r, SHOP, room=past, now_ms=NOW)[0]
    op = queue.Operator(r, SHOP, "bo")
    op.claim(t.id, now_ms=NOW)
    op.mark_sent(t.id, now_ms=NOW)
    # the report command reads the live outcomes into the archive first
    out = cfg.data_dir / "r.html"
    res = _cli(cfg, "report", "--shop", SHOP, "--room", past, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "<td>Follow-ups sent</td><td>1</td>" in out.read_text(encoding="utf-8")
    assert archive.refresh_followups(r, cfg, SHOP) == []  # nothing new since
    b = archive_files.read_room(cfg, SHOP, past)
    row = b.followups().filter(pl.col("viewer") == t.viewer).collect().row(0, named=True)
    assert row["state"] == "sent" and row["sent_by"] == "bo" and row["sent_clock"] == status(r, SHOP)["clock"]
    assert b.info.generation == 2 and b.paths["events.parquet"] == a.paths["events.parquet"]
    assert not a.paths["followups.parquet"].exists()  # the old copy went once the new manifest was in

    # settled tasks of archived rooms may leave Redis (opt-in); open ones, the counters and the archive stay
    before = status(r, SHOP, past)["room"]["followups"]
    pending = r.zcard(keys.queue(SHOP, "pending"))
    settled = sum(v for k, v in before.items() if k in FINAL_TASK_STATES)
    assert archive.prune_followups(r, cfg, SHOP) == settled > 0
    assert not r.hexists(keys.tasks(SHOP, past), t.viewer) and r.zcard(keys.queue(SHOP, "sent")) == 0
    assert r.zcard(keys.queue(SHOP, "pending")) == pending and status(r, SHOP, past)["room"]["followups"] == before
    assert archive_files.read_room(cfg, SHOP, past).followups().filter(pl.col("state") == "sent").collect().height == 1
    assert archive.prune_followups(r, cfg, SHOP) == 0


@pytest.mark.parametrize("shop,room", [
    ("../../etc", "../passwd"), ("a/b", "x/../../y"), ("%7E~", "."), ("s", ".."),
    ("s", "ш" * 128), ("s", "{tag}:room%"), ("s", "\u202eevil\u202c"),
], ids=["dotdot", "slashes", "escapes", "dotdot-room", "long-unicode", "key-chars", "bidi"])
def test_hostile_shop_and_room_ids_stay_inside_the_archive(cfg: Config, r: redis.Redis, shop: str, room: str) -> None:
    ingest_frames(cfg, [frame(ev(1, room=room, ts=BASE, shop=shop, viewer="v<1>"),
                              ev(2, room=room, ts=BASE + 1, shop=shop, type="order", viewer="v<1>", order_id="o",
                                 amount=3.5, currency="EUR"))])
    drain(r, cfg)
    res = archive.archive_room(r, cfg, shop, room)
    root = archive_files.archive_root(cfg).resolve()
    assert res.path.resolve().parent.parent == root and len(res.path.name) <= 120
    assert res.path.name not in (".", "..") and res.path.parent.name not in (".", "..")
    assert [(i.shop, i.room) for i in archive_files.list_archived(cfg, shop)] == [(shop, room)]
    a = archive_files.read_room(cfg, shop, room)
    assert a.viewers().collect()["viewer"].to_list() == ["v<1>"] and a.facts["gmv"] == {"EUR": 3.5}
    assert fs_name(room) != fs_name(room + "x")


def test_idle_rooms_follow_the_shop_clock(cfg: Config, r: redis.Redis) -> None:
    m = 60_000
    ingest_frames(cfg, [frame(ev(1, room="a", ts=BASE), ev(2, room="b", ts=BASE + 10 * m),
                              ev(3, room="c", ts=BASE + 40 * m))])
    drain(r, cfg)
    assert archive.idle_rooms(r, SHOP, idle_ms=30 * m + 1) == ["a"]
    assert archive.idle_rooms(r, SHOP) == ["a", "b"]  # b's last event is exactly 30 min before the clock
    assert archive.close_idle_rooms(r, SHOP, cfg) == ["a", "b"]
    assert archive.is_archived(r, SHOP, ["a", "b", "c"]) == {"a", "b"}
    assert archive.close_idle_rooms(r, SHOP, cfg) == []


def test_a_room_whose_feed_stopped_a_day_ago_is_archived_though_its_shop_clock_never_moves(
        cfg: Config, r: redis.Redis) -> None:
    """A shop's only show: no later event moves its clock past the show, so the shop clock never
    archives it, and the consumer's dedupe table of it would expire (FANOPS_DEDUPE_TTL_S) and a
    resend then count twice. A day of wall time with no event archives it; a resend is a repeat."""
    frames = [frame(ev(1, room="only", ts=BASE), ev(2, room="only", ts=BASE + 60_000, viewer="v2"))]
    ingest_frames(cfg, frames)
    drain(r, cfg)
    before = status(r, SHOP, "only")
    assert archive.close_idle_rooms(r, SHOP, cfg) == []  # 0 minutes of wall time: open
    # the consumer's last write of the room, 24 h and a second ago (the table's time left says so)
    r.pexpire(keys.seen(SHOP, "only"), (cfg.dedupe_ttl_s - cfg.archive_idle_wall_h * 3600 - 1) * 1000)
    assert archive.close_idle_rooms(r, SHOP, cfg) == ["only"]
    ingest_frames(cfg, frames)  # the feed resent, days later
    drain(r, cfg)
    after = status(r, SHOP, "only")
    assert after["events_applied"] == before["events_applied"] == 2
    assert after["duplicates"] == before["duplicates"] + 2


def test_tier_transitions_of_archived_shows_leave_the_stream_for_their_archive(cfg: Config, r: redis.Redis) -> None:
    """The shop's transitions stream keeps what the open rooms' boards read; older ones, of shows
    archived since, are in those shows' archives."""
    day, mn = 86_400_000, 60_000
    ingest_frames(cfg, [frame(*(ev(f"j{i}", room="past", ts=BASE + i * mn, viewer=f"u{i}") for i in range(6)))])
    drain(r, cfg)
    ingest_frames(cfg, [frame(*(ev(f"p{i}", room="past", ts=BASE + (10 + i) * mn, type="order", viewer=f"u{i}",
                                   order_id=f"o{i}", amount=5, currency="USD") for i in range(6)))])
    drain(r, cfg)  # six new fans become first buyers
    # the live show, a day on: two viewers of the past show order again (first_buyer -> active)
    live = [ev(f"l{i}", room="live", ts=BASE + day + i * mn, type="order", viewer=f"u{i}", order_id=f"q{i}",
               amount=5, currency="USD") for i in range(2)]
    ingest_frames(cfg, [frame(*live)])
    drain(r, cfg)
    before = r.xrange(keys.transitions(SHOP))
    rooms = [f[b"room"].decode() for _, f in before]
    assert rooms.count("past") == 6 and rooms.count("live") == 2
    archive.archive_room(r, cfg, SHOP, "past")
    after = r.xrange(keys.transitions(SHOP))
    assert [f[b"room"].decode() for _, f in after] == ["live", "live"] and after == before[-2:]
    tx = archive_files.read_room(cfg, SHOP, "past").transitions().collect()
    assert tx["to"].to_list().count("first_buyer") == 6  # (and the later changes of its viewers, to the close)
    archive.archive_room(r, cfg, SHOP, "live")
    # no room open: the board still shows the newest room, ended, with its transitions
    assert r.xrange(keys.transitions(SHOP)) == before[-2:]
