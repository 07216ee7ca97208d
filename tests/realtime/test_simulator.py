"""The simulated room (realtime.simulator) and the recorded-feed replay (realtime.replay)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from fanops.schema import BadInput, parse_frame
from realtime.replay import send_replay, serve_replay
from realtime.simulator import HOSTILE_NAMES, Bad, Garbled, SimSettings, encode_frame, generate, serve_simulation

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
START = 1_763_856_000_000  # 2025-11-23
DAY = 86_400_000
SMALL = SimSettings(seed=7, viewers=300, rate=5000, duration=2.0, start_ms=START, bad_ratio=0.2, dup_ratio=0.01)


def _good(frames: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for f in frames for e in f if not isinstance(e, Bad)]


@pytest.fixture(scope="module")
def small() -> list[list[dict[str, Any]]]:
    return list(generate(SMALL))


def _live_id(e: dict[str, Any]) -> int | None:
    i = e.get("id", "")
    return int(i[2:]) if isinstance(i, str) and i.startswith("e-") and i[2:].isdigit() else None


async def _run_server(start: Callable[[Callable[[int], None]], Awaitable[None]]) -> tuple[asyncio.Task[None], int]:
    """Start a server coroutine that reports its port via ``ready``; wait (with a deadline) for the port."""
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(start(port.set_result))
    done, _ = await asyncio.wait({port, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert port in done, "server did not become ready"
    return task, port.result()


def test_same_seed_same_timeline_different_seed_different() -> None:
    s = SimSettings(seed=3, viewers=200, rate=2000, duration=1.0, start_ms=START)
    a = [encode_frame(f) for f in generate(s)]
    assert a == [encode_frame(f) for f in generate(s)]
    assert a != [encode_frame(f) for f in generate(SimSettings(seed=4, viewers=200, rate=2000, duration=1.0,
                                                               start_ms=START))]


def test_good_events_validate_and_bad_ones_fail_each_for_its_reason(small: list[list[dict[str, Any]]]) -> None:
    now = int(time.time() * 1000)
    good = bad = 0
    reasons: Counter[str] = Counter()
    for frame in small:
        out = parse_frame(encode_frame(frame), now)
        assert len(out) == len(frame)
        for e, r in zip(frame, out, strict=True):
            if isinstance(e, Bad):
                assert isinstance(r, BadInput), (e.reason, e)
                reasons[e.reason] += 1
                bad += 1
            else:
                assert not isinstance(r, BadInput), (r, e)
                good += 1
    assert good > 9000 and bad > 10
    assert len(reasons) >= 10, reasons  # bad JSON, unknown type, missing field, negative amount, future ts...
    assert {"bad JSON", "unknown type", "missing field", "negative amount", "ts far in the future",
            "over-long string"} <= set(reasons)
    assert all(len(f) == 1 for f in small if any(isinstance(e, Garbled) for e in f))


def test_the_room_is_believable(small: list[list[dict[str, Any]]]) -> None:
    evs = _good(small)
    live = [e for e in evs if e["id"].startswith("e-")]
    hist = [e for e in evs if not e["id"].startswith("e-")]
    room = live[0]["room"]
    assert room == "live-7-2025-11-23" and all(e["room"] == room and e["shop"] == "default" for e in live)
    assert len({e["room"] for e in hist}) == 3 and max(e["ts"] for e in hist) < START
    # the population: N distinct live viewers, who arrive; many never leave
    joins = Counter(e["viewer"]["id"] for e in live if e["type"] == "join")
    assert len({e["viewer"]["id"] for e in live}) == SMALL.viewers == len(joins)
    assert 0 < sum(e["type"] == "leave" for e in live) < len(joins) / 2
    # ts: the live show in time order, ts = start + elapsed
    firsts = {}
    for e in live:
        if _live_id(e) is not None:  # a slot's event (not the contact and consent an order brings)
            firsts.setdefault(e["id"], e["ts"])
    ts = [firsts[f"e-{i}"] for i in range(1, len(firsts) + 1)]
    assert ts == sorted(ts) and START <= ts[0] and ts[-1] <= START + 2000
    # returning fans after a 30+ day gap, with the same ids
    last_hist: dict[str, int] = {}
    for e in hist:
        last_hist[e["viewer"]["id"]] = max(e["ts"], last_hist.get(e["viewer"]["id"], 0))
    first_live: dict[str, int] = {}
    for e in live:
        first_live.setdefault(e["viewer"]["id"], e["ts"])
    back = [v for v in first_live if v in last_hist]
    assert len(back) >= SMALL.viewers // 5
    assert any(first_live[v] - last_hist[v] >= 30 * DAY for v in back)
    assert any(first_live[v] - last_hist[v] < 30 * DAY for v in back)
    # questions in several languages
    langs = {e["viewer"]["id"]: e["viewer"].get("lang", "?").split("-")[0] for e in evs if e["type"] == "join"}
    q = [e for e in evs if e["type"] == "comment" and e["text"].rstrip().endswith(("?", "？", "؟"))]
    assert any(e["text"].startswith("¿") for e in q)
    assert len({langs[e["viewer"]["id"]] for e in q} - {"?"}) >= 5
    # orders, gifts, likes, consent
    orders = [e for e in evs if e["type"] == "order"]
    assert len({e["currency"] for e in orders}) >= 3 and all(e["amount"] > 0 for e in orders)
    assert Counter(e["viewer"]["id"] for e in orders).most_common(1)[0][1] >= 2  # someone orders twice
    assert {e["dm"] for e in evs if e["type"] == "consent" and "dm" in e} == {True, False}
    assert {"like", "share", "follow", "gift", "product_view", "cart_add"} <= {e["type"] for e in evs}
    assert max(e["count"] for e in evs if e["type"] == "like") > 1
    # profiles: countries with lang and tz, some with none; hostile names
    viewers = [e["viewer"] for e in evs if e["type"] == "join"]
    assert any("country" in v and "tz" in v and "lang" in v for v in viewers)
    assert any(set(v) <= {"id", "name"} for v in viewers)
    names = {v.get("name") for v in viewers}
    assert {"<script>alert(1)</script>", "{name}", "\u202eevil\u202c name"} <= names
    assert any(n and len(n) == 256 for n in names) and set(HOSTILE_NAMES) <= names
    assert any(n and any("\u0600" <= c <= "\u06ff" for c in n) for n in names)


def test_orders_bring_contacts_and_channel_consents_and_without_them_the_v1_timeline_stays(
        small: list[list[dict[str, Any]]]) -> None:
    evs = _good(small)
    orders = {e["id"]: e for e in evs if e["type"] == "order"}
    contacts = [e for e in evs if e["type"] == "contact"]
    channel = [e for e in evs if e["type"] == "consent" and {"email", "whatsapp", "sms"} & e.keys()]
    assert len(orders) / 2 < len(contacts) <= len(orders) and channel
    # spec/events.md: dm is required; a buyer's channel consents carry their DM answer as it stands
    assert all(isinstance(e["dm"], bool) for e in channel)
    for e in contacts + channel:  # each follows an order of the same viewer at the same ts
        o = orders[e["id"][:-2]]
        assert (o["viewer"]["id"], o["ts"], o["room"]) == (e["viewer"]["id"], e["ts"], e["room"])
    assert any("email" in e for e in contacts) and any("phone" in e for e in contacts)
    assert {e.get("sms") for e in channel} >= {True, False}
    v1 = _good(list(generate(SimSettings(**{**SMALL.__dict__, "contacts": 0.0}))))
    assert v1 == [e for e in evs if not (e["type"] == "contact" or e in channel)]


def test_served_stream_equals_generate() -> None:
    s = SimSettings(seed=11, viewers=300, rate=20000, duration=0.5, start_ms=START, history_shows=2, bad_ratio=0.05)
    expected = [encode_frame(f).decode() for f in generate(s)]

    async def main() -> list[str]:
        task, port = await _run_server(lambda ready: serve_simulation(s, port=0, ready=ready))
        got: list[str] = []
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            async for m in ws:  # ends when the server closes after the show
                assert isinstance(m, str)
                got.append(m)
        await asyncio.wait_for(task, 10)
        return got

    got = asyncio.run(main())
    assert got == expected


def test_reconnect_resends_the_tail_without_gap() -> None:
    """A client drops 5 s into the show and comes back: it gets the last 3 s again, then the live
    stream. (Seconds of slack both ways: a reader on a busy machine lags the live show, and the show
    must not end, its server closing, before the reconnect: it lasts 60 s, stopped once checked.)"""
    s = SimSettings(seed=5, viewers=300, rate=5000, duration=60.0, start_ms=START, bad_ratio=0.0, history_shows=1)
    dec = msgspec.json.Decoder()

    def ids(m: str) -> list[int]:
        d = dec.decode(m)
        return [i for e in (d if isinstance(d, list) else [d]) if (i := _live_id(e)) is not None]

    async def main() -> tuple[list[int], list[int]]:
        stop = asyncio.Event()
        task, port = await _run_server(
            lambda ready: serve_simulation(s, port=0, ready=ready, resend_s=3.0, stop=stop))
        first: list[int] = []
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            async for m in ws:
                first += ids(m)
                if first and max(first) >= 25000:  # 5 s into the show: the 3 s tail starts after e-1
                    break
        second: list[int] = []
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            async for m in ws:
                second += ids(m)
                if max(second, default=0) >= 35000:
                    break
        stop.set()
        await asyncio.wait_for(task, 10)
        return first, second

    first, second = asyncio.run(main())
    assert second[0] > 1, "the resend is a tail, not the whole show"
    assert second[0] <= max(first) + 1, "the resend covers what the dropped connection missed"
    assert set(range(1, 35001)) <= set(first) | set(second)


def test_stop_ends_an_endless_show() -> None:
    s = SimSettings(seed=2, viewers=100, rate=1000, start_ms=START, history_shows=0)

    async def main() -> int:
        stop = asyncio.Event()
        task, port = await _run_server(lambda ready: serve_simulation(s, port=0, ready=ready, stop=stop))
        n = 0
        async with connect(f"ws://127.0.0.1:{port}") as ws:
            async for _ in ws:  # ends when the server closes (1001: going away)
                n += 1
                if n == 5:
                    stop.set()
            assert ws.close_code == 1001
        await asyncio.wait_for(task, 10)
        return n

    assert asyncio.run(main()) >= 5


SAMPLE = SAMPLES / "weeks-small.jsonl"


def _lines() -> list[str]:
    return [ln.rstrip("\r\n") for ln in SAMPLE.read_text("utf-8").splitlines() if ln.strip()]


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_replay_server_sends_the_lines_verbatim(compression: str | None) -> None:
    """Uncompressed by default, as the simulator (deflating every frame cost a local replay ~1.7 us an
    event of CPU, more than the consumer's own parsing); permessage-deflate when asked for."""
    lines = _lines()

    async def main() -> tuple[list[str], str]:
        stop = asyncio.Event()
        task, port = await _run_server(lambda ready: serve_replay(SAMPLE, port=0, ready=ready, stop=stop,
                                                                  compression=compression))
        got: list[str] = []
        async with connect(f"ws://127.0.0.1:{port}") as ws:  # offers permessage-deflate, as the consumer does
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
            while len(got) < len(lines):
                got.append(str(await asyncio.wait_for(ws.recv(), 5)))
        stop.set()
        await asyncio.wait_for(task, 5)
        return got, extensions

    got, extensions = asyncio.run(main())
    assert got == lines and len(lines) == 574
    assert ("permessage-deflate" in extensions) == (compression == "deflate")


def test_send_replay_sends_every_line(tmp_path: Path) -> None:
    lines = _lines()[:50]
    f = tmp_path / "feed.jsonl"
    f.write_text("\n".join(lines[:25]) + "\n\n  \n" + "\r\n".join(lines[25:]) + "\n", "utf-8")

    async def main() -> tuple[int, list[str]]:
        got: list[str] = []
        done = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            async for m in ws:
                got.append(str(m))
            done.set()

        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            n = await send_replay(f, f"ws://127.0.0.1:{port}")
            await asyncio.wait_for(done.wait(), 5)
        return n, got

    n, got = asyncio.run(main())
    assert n == 50 and got == lines


def test_replay_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="replay file not found"):
        asyncio.run(send_replay(tmp_path / "nope.jsonl", "ws://127.0.0.1:9"))
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        asyncio.run(serve_replay(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("bad_ratio", [None, "0.2"])
def test_the_simulate_command_emits_exactly_the_wire_format_unless_asked_for_bad_frames(bad_ratio: str | None) -> None:
    """spec/events.md: the simulator must emit exactly this. ``--bad-ratio`` asks for malformed frames."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "realtime", "simulate", "--port", str(port), "--seed", "7", "--viewers", "50",
           "--rate", "2000", "--duration", "1", "--history", "1"] + (["--bad-ratio", bad_ratio] if bad_ratio else [])
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.DEVNULL)

    async def main() -> list[str]:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{port}") as ws:
                    return [m async for m in ws if isinstance(m, str)]  # the server closes after the show
            except OSError:
                assert time.monotonic() < deadline, "simulate did not listen"
                await asyncio.sleep(0.1)

    try:
        frames = asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
    got = [x for f in frames for x in parse_frame(f, int(time.time() * 1000))]
    bad = [x for x in got if isinstance(x, BadInput)]
    assert len(got) > 1000
    assert (len(bad) > 0) == (bad_ratio is not None), bad[:3]
