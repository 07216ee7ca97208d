"""``python -m scoring forget`` (spec/cli.md v1.1): a viewer of open and archived shows erased from
Redis, the applied-event log, every archive and the server's files; the shop's numbers unchanged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import polars as pl
import pytest
import redis

from fanops import keys
from fanops.errors import RoomNotReady
from fanops.read import status
from realtime.orders_map import ShopOrder, to_record
from review import archive_files
from scoring import eventlog, forget
from scoring.worker import Worker
from tests.conftest import SAMPLES
from tests.pipeline import drain, ingest_frames, read_lines

SHOP = "default"
VID = "vq-Forget-7Q"
NAME = "Frida Forgetme"
SAID = "Frida asks: is the crimson scarf in stock?"
EMAIL, PHONE = "frida.forgetme@example.com", "+4915799912345"
NEEDLES = (VID, NAME, "crimson scarf", EMAIL, PHONE)
ROOT = Path(__file__).resolve().parents[2]


def _viewer_frames() -> tuple[str, str, str]:
    """The viewer in show-1-0 (archived by the test: a question, a cart, a dwell that makes a task)
    and in show-1-7 (open: a returning join, an order), and one bad event of theirs (a dead letter)."""
    v = {"id": VID, "name": NAME, "country": "DE", "lang": "de", "tz": "Europe/Berlin"}
    t0, t7 = 1760352900000, 1765447000000
    show0 = [{"id": "fg-1", "room": "show-1-0", "ts": t0, "type": "join", "viewer": v},
             {"id": "fg-2", "room": "show-1-0", "ts": t0 + 60_000, "type": "comment", "text": SAID, "viewer": v},
             {"id": "fg-3", "room": "show-1-0", "ts": t0 + 120_000, "type": "cart_add", "sku": "SKU-9",
              "viewer": {"id": VID}},
             {"id": "fg-4", "room": "show-1-0", "ts": t0 + 300_000, "type": "product_view", "sku": "SKU-9",
              "viewer": {"id": VID}},
             {"id": "fg-4c", "room": "show-1-0", "ts": t0 + 310_000, "type": "contact", "email": EMAIL,
              "phone": PHONE, "viewer": {"id": VID}},
             {"id": "fg-4k", "room": "show-1-0", "ts": t0 + 310_000, "type": "consent", "dm": True, "email": True,
              "viewer": {"id": VID}}]
    show7 = [{"id": "fg-5", "room": "show-1-7", "ts": t7, "type": "join", "viewer": v},
             {"id": "fg-6", "room": "show-1-7", "ts": t7 + 30_000, "type": "comment", "text": SAID + " again?",
              "viewer": v},
             {"id": "fg-7", "room": "show-1-7", "ts": t7 + 60_000, "type": "order", "order_id": "fg-o1",
              "amount": 12.5, "currency": "USD", "viewer": v}]
    bad = {"id": "fg-8", "room": "show-1-7", "ts": t7, "type": "comment", "text": 5, "viewer": v}
    return json.dumps(show0), json.dumps(show7), json.dumps(bad)


def _feed(cfg) -> list[str]:
    lines = read_lines(SAMPLES / "weeks-small.jsonl")
    show0, show7, bad = _viewer_frames()
    at = next(i for i, ln in enumerate(lines) if '"show-1-1"' in ln)
    return [*lines[:at], show0, *lines[at:], show7, bad]


def _all_status(r: redis.Redis) -> dict:
    rooms = [m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1)]
    return {"shop": status(r, SHOP), **{rm: status(r, SHOP, rm) for rm in rooms}}


# --- the search: every Redis key and value, every file ---------------------------------------------
def _redis_texts(r: redis.Redis) -> list[tuple[str, bytes]]:
    """Every key of the server, its name, its value read by type and its DUMP payload."""
    out = []
    for k in r.scan_iter(count=1000):
        name = k.decode("utf-8", "replace")
        t = r.type(k).decode()
        if t == "string":
            vals = [r.get(k)]
        elif t == "hash":
            vals = [x for kv in r.hgetall(k).items() for x in kv]
        elif t == "list":
            vals = r.lrange(k, 0, -1)
        elif t == "set":
            vals = list(r.smembers(k))
        elif t == "zset":
            vals = [m for m, _ in r.zrange(k, 0, -1, withscores=True)]
        elif t == "stream":
            vals = [x for _, f in r.xrange(k) for kv in f.items() for x in kv]
        elif t == "none":
            continue  # expired since the scan listed it (a heartbeat)
        else:
            raise AssertionError(f"a key of a type the search does not read: {name} ({t})")
        out += [(name, k), (name, r.dump(k) or b"")] + [(name, v or b"") for v in vals]
    return out


def _decoded(b: bytes) -> str:
    """A value as text, and where it is msgpack (packed records, stream payloads), decoded too."""
    text = b.decode("utf-8", "replace")
    try:
        return text + json.dumps(msgspec.msgpack.decode(b), ensure_ascii=False, default=repr)
    except (msgspec.DecodeError, TypeError, ValueError):
        return text


def _file_texts(path: Path) -> list[str]:
    """A file's raw bytes as text; a parquet file read back (its binary cells decoded); an event log
    file's records decoded."""
    raw = path.read_bytes()
    out = [raw.decode("utf-8", "replace")]
    if path.suffix == ".parquet":
        df = pl.read_parquet(path)
        for c in df.columns:
            vals = df[c].to_list()
            out += [_decoded(v) if isinstance(v, bytes) else str(v) for v in vals]
    if path.suffix == eventlog.SUFFIX:
        rd = eventlog.LogReader(path.parent.parent.parent, path.parent.name)
        out += [_decoded(rec.payload) for p, rec in rd.read_new() if p == path]
    return out


def hits(r: redis.Redis, folders: list[Path], needles: tuple[str, ...] = NEEDLES) -> list[str]:
    """Where any of ``needles`` is: every key and value of the server, every file of ``folders``."""
    found = []
    for name, b in _redis_texts(r):
        text = _decoded(b)
        found += [f"redis {name}: {n!r}" for n in needles if n in text or n.encode() in b]
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                for text in _file_texts(p):
                    found += [f"file {p}: {n!r}" for n in needles if n in text]
    return sorted(set(found))


@pytest.fixture
def fed(cfg, r, redis_server, caplog):
    """The sample feed with the viewer in it applied; the idle shows archived (show-1-0 among them);
    show-1-7 still open."""
    caplog.set_level(logging.INFO)
    ingest_frames(cfg, _feed(cfg))
    drain(r, cfg)
    Worker(r, cfg, name="w1").archive_idle()
    assert r.hexists(keys.room(SHOP, "show-1-0"), "archived") and not r.hexists(keys.room(SHOP, "show-1-7"), "archived")
    return [Path(cfg.data_dir), Path(redis_server.data_dir)]


def _keep_order(r: redis.Redis, eid: str, email: str | None, phone: str | None) -> None:
    """A webhook order kept for want of a viewer (as ``realtime.orders`` keeps one), with addresses."""
    o = ShopOrder("shopify", eid, SHOP, f"#{eid}", 49.0, "EUR", 1765447100000, email=email, phone=phone)
    rec = {"order": json.loads(to_record(o)), "why": "two viewers named its email", "received": 1}
    r.hset(keys.orders_waiting(SHOP), eid, json.dumps(rec))


def test_forget_erases_the_viewer_everywhere_and_leaves_the_shops_numbers(cfg, r, fed, caplog):
    folders = fed
    _keep_order(r, "wh-1", EMAIL, PHONE)
    _keep_order(r, "wh-2", "someone.else@example.com", "+4915700000001")
    _keep_order(r, "wh-3", EMAIL.upper(), None)  # the address as the shop typed it
    before = _all_status(r)
    found = hits(r, folders)
    # the search finds them before: in Redis, the archive, the event log and the server's files
    for where in ("redis fo:{default}:viewers", "/archive/", "/eventlog/", "/appendonly/", "redis fo:{!dead}"):
        assert any(where in h for h in found), (where, found)

    rooms = [m.decode() for m in r.zrange(keys.rooms(SHOP), 0, -1)]
    in_feeds = len(forget._feed_entries(r, SHOP, rooms, VID))  # (capped lists: they may have moved on)

    got = forget.forget_viewer(r, cfg, SHOP, VID)

    assert hits(r, folders) == []
    assert _all_status(r) == before
    removed = got["removed"]
    assert got["aof_rewritten"] and got["rdb_saved"]
    assert removed["viewer_state"] == 1 and removed["room_records"] == 1
    assert removed["tasks"] == 2  # the open show's lingered task and the thank-you for their first order
    assert removed["archive_rooms"] == 1 and removed["archive_events"] == 6 and removed["archive_viewers"] == 1
    assert removed["eventlog_events"] == 9 and removed["dead_letters"] == 1
    assert removed["feed_entries"] == in_feeds
    # the kept orders stay kept (no sale dropped), the one with their address without it
    kept = {k.decode(): json.loads(v)["order"] for k, v in r.hgetall(keys.orders_waiting(SHOP)).items()}
    assert removed["kept_order_addresses"] == 2 and set(kept) == {"wh-1", "wh-2", "wh-3"}
    cleared = [(kept[e]["email"], kept[e]["phone"], kept[e]["amount"]) for e in ("wh-1", "wh-3")]
    assert cleared == [(None, None, 49.0)] * 2
    assert (kept["wh-2"]["email"], kept["wh-2"]["phone"]) == ("someone.else@example.com", "+4915700000001")
    # the archived show keeps its totals: every event, the viewer's anonymous
    a = archive_files.read_room(cfg, SHOP, "show-1-0")
    assert a.info.events == a.events().collect().height and a.info.complete
    assert int(r.hget(keys.room(SHOP, "show-1-0"), "archive_generation")) == a.info.generation
    # again: nothing left to remove, no new generation
    again = forget.forget_viewer(r, cfg, SHOP, VID)
    assert set(again["removed"].values()) == {0}
    assert archive_files.read_room(cfg, SHOP, "show-1-0").info.generation == a.info.generation
    # the open show is archived later from the log: complete, without them
    r.hset(keys.stats(SHOP), "clock", before["shop"]["clock"] + 3_600_000)
    Worker(r, cfg, name="w1").archive_idle()
    b = archive_files.read_room(cfg, SHOP, "show-1-7")
    assert b.info.complete and hits(r, folders) == []
    # no log line at INFO or above named them, from the feed to the forget
    logged = [rec.getMessage() for rec in (*caplog.get_records("setup"), *caplog.records)
              if rec.levelno >= logging.INFO]
    assert logged and [m for m in logged if any(n in m for n in NEEDLES)] == []


def test_forget_waits_for_the_viewers_unapplied_events_and_removes_nothing_meanwhile(cfg, r):
    """An event of the viewer still in a stream cannot be taken out of it: forget fails, and leaves
    every record as it was, until a scorer has applied it."""
    show0, _show7, _bad = _viewer_frames()
    ingest_frames(cfg, [show0])
    drain(r, cfg)
    late = {"id": "fg-9", "room": "show-1-0", "ts": 1760353400000, "type": "like", "viewer": {"id": VID}}
    ingest_frames(cfg, [json.dumps(late)])  # no scorer runs
    with pytest.raises(RoomNotReady, match="not yet applied"):
        forget.forget_viewer(r, cfg, SHOP, VID, wait_s=0.2, rewrite_disk=False)
    assert r.hexists(keys.viewers(SHOP), VID)
    drain(r, cfg)
    got = forget.forget_viewer(r, cfg, SHOP, VID, wait_s=0.2, rewrite_disk=False)
    assert got["removed"]["viewer_state"] == 1 and not r.hexists(keys.viewers(SHOP), VID)


def test_the_forget_command_prints_zeros_for_an_unknown_viewer(cfg, redis_url):
    env = {**os.environ, "FANOPS_DATA_DIR": str(cfg.data_dir), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "scoring", "forget", "--shop", SHOP, "--viewer", "nobody",
                        "--redis", redis_url], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["viewer"] == "nobody" and set(out["removed"]) == set(forget.KINDS)
    assert set(out["removed"].values()) == {0}
