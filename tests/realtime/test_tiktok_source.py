"""``python -m realtime tiktok``'s run loop: the TikTokLive library's own client, unchanged, against a
fake TikTok on loopback (its room page, its live check, the sign server and the Webcast WebSocket
speaking the library's protobuf frames), into a real Redis through the consumer's path."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from TikTokLive.client.web.web_settings import WebDefaults
from TikTokLive.events import CommentEvent, ControlEvent, GiftEvent, JoinEvent, LikeEvent, RoomUserSeqEvent
from TikTokLive.events import SocialEvent as Social
from TikTokLive.proto import (
    CommonMessageData,
    Gift,
    ProtoMessageFetchResult,
    PushHeader,
    WebcastPushFrame,
)
from TikTokLive.proto import ProtoMessageFetchResultBaseProtoMessage as Envelope
from TikTokLive.proto.custom_proto import ControlAction, ExtendedUser
from TikTokLiveProto.v3.webcast.model.message.common import Text
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from fanops import keys
from fanops.config import Config
from fanops.errors import BadSettings
from fanops.retry import Backoff
from fanops.runtime import server
from fanops.schema import Comment, Follow, Join, Like, Share, unpack_events
from fanops.schema import Gift as GiftEv
from realtime.tiktok import CONNECTED, ENDED, RATE_LIMITED, SIGN_ERROR, TikTokSource, checked_unique_id
from screens.reads import board
from tests.conftest import await_for, stream_entries

ROOM = 7_301_234_567_890
TS = 1_763_856_000_000
ANNA = ExtendedUser(id=6_800_000_000_000_000_001, nickname="Anna K")
BO = ExtendedUser(id=6_800_000_000_000_000_002, nickname="🌸🌸")


def msg(method: str, ev: Any) -> Envelope:
    return Envelope(method=method, payload=bytes(ev), msg_id=ev.common.msg_id if ev.common else 0)


def c(msg_id: int, dt: int = 0) -> CommonMessageData:
    return CommonMessageData(msg_id=msg_id, create_time=TS + dt)


def comment(mid: int, user: ExtendedUser | None, text: str) -> Envelope:
    return msg("WebcastChatMessage", CommentEvent(common=c(mid), user=user, content=text, content_language="en"))


def social(mid: int, user: ExtendedUser, kind: str) -> Envelope:
    # (no local named "common": pydantic resolves the proto's forward references in the caller's frame)
    data = c(mid)
    data.display_text = Text(key=f"pm_mt_guidance_{kind}")  # the library tells a follow by this key
    return msg("WebcastSocialMessage", Social(common=data, user=user))


def gift(mid: int, repeat: int, end: int) -> Envelope:
    rose = Gift(id=5655, name="Rose", diamond_count=1, type=1)
    return msg("WebcastGiftMessage", GiftEvent(common=c(mid), user=BO, gift=rose, gift_id=5655,
                                               repeat_count=repeat, repeat_end=end))


# the recorded show: what the sign server's first fetch carries, then the WebSocket frames
FIRST = [comment(1, ANNA, "hello!")]
FRAMES = [
    [msg("WebcastMemberMessage", JoinEvent(common=c(2), user=BO)),
     msg("WebcastLikeMessage", LikeEvent(common=c(3), user=ANNA, count=15)),
     msg("WebcastRoomUserSeqMessage", RoomUserSeqEvent(common=c(4), total=120, total_user=480))],
    [gift(5, 1, 0), gift(6, 2, 0), gift(7, 3, 1)],  # a streak: only its end counts
    [social(8, BO, "follow"), social(9, ANNA, "share"), comment(10, None, "nobody")],
]
END = [msg("WebcastControlMessage", ControlEvent(common=c(11), action=ControlAction.STREAM_ENDED))]


def push(messages: list[Envelope], gz: bool = False) -> bytes:
    body = bytes(ProtoMessageFetchResult(messages=messages, cursor="c", need_ack=True, internal_ext="x"))
    headers = [PushHeader(key="compress_type", value="gzip")] if gz else []
    return bytes(WebcastPushFrame(payload_type="msg", payload_encoding="pb", log_id=messages[0].msg_id,
                                  payload=gzip.compress(body) if gz else body, headers=headers))


class FakeTikTok:
    """Room page, live check, sign server and Webcast WebSocket on one loopback port.

    ``sign`` is a list of answers of the sign server, one per fetch (the last one repeats):
    "ok", "429", "500"; ``live`` the same for the room page ("live" or "offline"); each
    WebSocket connection sends the frames of ``sessions`` in turn, then closes (or, for the last
    session, ends the live)."""

    def __init__(self, sessions: list[list[bytes]], sign: list[str] | None = None, live: list[str] | None = None):
        self.sessions, self.sign, self.live = sessions, sign or ["ok"], live or ["live"]
        self.fetches = self.pages = self.connections = 0
        self.port = 0
        self.first: list[Envelope] = FIRST
        self.gate: asyncio.Event | None = None  # set: the frames after the first go on

    def _answer(self, script: list[str], n: int) -> str:
        return script[min(n, len(script) - 1)]

    def _http(self, status: int, body: bytes, ctype: str, **extra: str) -> Response:
        h = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Connection", "close"),
                     *extra.items()])
        return Response(status, HTTPStatus(status).phrase, h, body)

    def process_request(self, conn: ServerConnection, req: Request) -> Response | None:
        path = req.path.split("?")[0]
        if path.endswith("/live"):
            self.pages += 1
            status = 4 if self._answer(self.live, self.pages - 1) == "offline" else 2
            sigi = {"LiveRoom": {"liveRoomUserInfo": {"user": {"roomId": str(ROOM), "uniqueId": "creator",
                                                               "status": status}}}}
            html = f'<script id="SIGI_STATE" type="application/json">{json.dumps(sigi)}</script>'
            return self._http(200, html.encode(), "text/html")
        if path == "/webcast/room/check_alive/":
            return self._http(200, json.dumps({"data": [{"alive": True}]}).encode(), "application/json")
        if path == "/webcast/fetch":
            return self._sign()
        return None  # the Webcast WebSocket

    def _sign(self) -> Response:
        self.fetches += 1
        answer = self._answer(self.sign, self.fetches - 1)
        if answer == "429":
            return self._http(429, b'{"message": "slow down", "limit_label": "community"}', "application/json",
                              **{"RateLimit-Remaining": "0", "RateLimit-Reset": "0"})
        if answer == "500":
            return self._http(500, b"upstream down", "text/plain")
        first = ProtoMessageFetchResult(messages=self.first, cursor="c0", is_first=True, need_ack=False,
                                        push_server=f"ws://127.0.0.1:{self.port}/webcast/im/ws",
                                        route_params={"room_id": str(ROOM)})
        return self._http(200, bytes(first), "application/protobuf", **{"X-Set-TT-Cookie": "ttwid=t1; Path=/"})

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        n = self.connections
        frames = self.sessions[min(n, len(self.sessions)) - 1]
        acked = asyncio.Queue[int]()
        reader = asyncio.create_task(self._read(ws, acked))  # acks, enter-room and heartbeat frames
        try:
            for i, f in enumerate(frames):
                if i == 1 and self.gate is not None:
                    await self.gate.wait()
                await ws.send(f)
                # as TikTok does: the next push once the client has taken this one; a client that
                # leaves first (the test stopped it) ends the session, or the server's close would wait
                # on this handler for ever
                if not await self._acked(acked, reader):
                    return
            if n < len(self.sessions):
                await ws.close()  # a dropped connection: the client must come back
            else:
                await ws.send(push(END))
                await ws.wait_closed()
        except ConnectionClosed:
            return
        finally:
            reader.cancel()

    @staticmethod
    async def _acked(acked: asyncio.Queue[int], reader: asyncio.Task[None]) -> bool:
        """Whether the client acked the last push (False: it closed the connection first)."""
        get = asyncio.ensure_future(acked.get())
        await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return True
        get.cancel()
        return False

    async def _read(self, ws: ServerConnection, acked: asyncio.Queue[int]) -> None:
        try:
            async for data in ws:
                if WebcastPushFrame().parse(data).payload_type == "ack":
                    acked.put_nowait(1)
        except ConnectionClosed:
            return  # the client left without a close frame: the session ends as for a clean close


@pytest.fixture
def fake_tiktok(monkeypatch: pytest.MonkeyPatch) -> Callable[[FakeTikTok], Any]:
    """Starts a FakeTikTok on a free loopback port and points the library's URLs at it."""

    def start(fake: FakeTikTok) -> Any:
        server_cm = serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request)
        return server_cm

    def point(port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        monkeypatch.setattr(WebDefaults, "tiktok_app_url", base)
        monkeypatch.setattr(WebDefaults, "tiktok_webcast_url", base + "/webcast")
        monkeypatch.setenv("SIGN_API_URL", base)

    start.point = point  # type: ignore[attr-defined]
    return start


async def run_source(cfg: Config, fake: FakeTikTok, serve_fake: Any, until: Callable[[TikTokSource], object],
                     timeout: float = 20.0, meanwhile: Callable[[TikTokSource], Any] | None = None) -> TikTokSource:
    async with serve_fake(fake) as server:
        fake.port = server.sockets[0].getsockname()[1]
        serve_fake.point(fake.port)
        ar = aredis.Redis.from_url(cfg.redis_url)
        src = TikTokSource("@creator", "s1", ar, cfg, backoff=Backoff(initial=0.01, cap=0.05))
        task = asyncio.create_task(src.run())
        try:
            if meanwhile is not None:
                await meanwhile(src)
            await await_for(lambda: until(src) or task.done(), timeout, "the TikTok source to get there")
            src.stop()
            await asyncio.wait_for(task, 10)
        finally:
            if not task.done():
                task.cancel()
            await ar.aclose()
    return src


def events_in(r: Any) -> list[Any]:
    out = [e for _s, _id, f in stream_entries(r, "s1") for e in unpack_events(f[b"e"])]
    return sorted(out, key=lambda e: e.id)


def beat(r: Any) -> dict[str, Any]:
    [name] = r.zrange(keys.heartbeat_index("consumer"), 0, -1)
    return json.loads(r.get(keys.heartbeat("consumer", name.decode())))


def test_a_recorded_show_with_a_drop_and_a_resend_lands_once_through_the_consumers_path(
        cfg, r, fake_tiktok, caplog) -> None:
    cfg = dataclasses.replace(cfg, tiktok_offline_poll_s=3600)
    caplog.set_level(logging.INFO, logger="realtime")
    first, rest = [push(f) for f in FRAMES[:2]], [push(FRAMES[2], gz=True)]
    fake = FakeTikTok(sessions=[first, rest])  # the connection drops after the gift streak

    src = asyncio.run(run_source(cfg, fake, fake_tiktok, lambda s: s.state == ENDED))

    evs = events_in(r)
    assert [(e.id, type(e)) for e in evs] == [
        ("tt-1", Comment), ("tt-2", Join), ("tt-3", Like), ("tt-7", GiftEv), ("tt-8", Follow),
        ("tt-9", Share)]
    assert evs[1].viewer.name == "🌸🌸" and evs[2].count == 15
    assert (evs[3].count, evs[3].value) == (3, 0.015)  # the streak's end, at 200 diamonds a dollar
    assert {e.room for e in evs} == {f"tiktok-{ROOM}"}
    # the second connection's first fetch resent comment 1: a repeat, counted once
    stats = r.hgetall(keys.stats("s1"))
    assert (int(stats[b"accepted"]), int(stats[b"duplicates"])) == (6, 1)
    [(_, dead)] = r.xrange(keys.dead_stream())
    assert b"without a user id" in dead[b"reason"] and dead[b"source"] == b"tiktok:@creator"
    assert (fake.fetches, fake.connections, src.counters.connects, src.counters.drops) == (2, 2, 2, 1)
    b = beat(r)
    assert (b["source"], b["unique_id"], b["viewers"], b["viewers_total"], b["room"]) == \
        ("tiktok", "creator", 120, 480, f"tiktok-{ROOM}")
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "realtime.tiktok"]
    assert sum("connected" in x for x in lines) == 2 and sum("connection closed" in x for x in lines) == 1
    assert any("the live ended" in x for x in lines)
    [tile] = board.read_board(r, "s1", f"tiktok-{ROOM}").tiktok  # the board's tile, from the last beat
    assert (tile.unique_id, tile.state, tile.viewers, tile.last_error) == ("creator", "stopped", 120, None)


def test_sign_server_errors_and_an_offline_creator_are_waited_out_logged_and_shown(
        cfg, r, fake_tiktok, caplog) -> None:
    cfg = dataclasses.replace(cfg, tiktok_offline_poll_s=0)
    caplog.set_level(logging.INFO, logger="realtime")
    fake = FakeTikTok(sessions=[[push(FRAMES[0])]], sign=["429", "500", "ok"], live=["offline", "live"])

    # (the room's viewer count can come before the last of the frame's events is handed in: wait for both)
    src = asyncio.run(run_source(cfg, fake, fake_tiktok,
                                 lambda s: s.state == CONNECTED and s.viewers == 120 and s.counters.events >= 3))

    lines = [rec.getMessage() for rec in caplog.records if rec.name == "realtime.tiktok"]
    order = [next(i for i, x in enumerate(lines) if what in x)
             for what in ("is not live", f": {RATE_LIMITED} (", f": {SIGN_ERROR} (", "connected")]
    assert order == sorted(order), lines
    assert "slow down" in lines[order[1]] and "status code 500" in lines[order[2]]
    assert all("\n" not in x for x in lines)  # the library's framed sign-server notice, on one line
    assert [e.id for e in events_in(r)] == ["tt-1", "tt-2", "tt-3"]
    # the last error stays on the board after the reconnect, with the state
    assert src.last_error is not None and "500" in src.last_error
    b = beat(r)
    assert "500" in b["last_error"] and b["state"] == "stopped" and b["viewers"] == 120


def test_dev_py_up_with_tiktok_runs_the_tiktok_source_instead_of_the_simulated_room() -> None:
    import argparse

    from fanops.runtime import launcher

    args = argparse.Namespace(tiktok="@creator", feed=None, shop="s1", workers=1, app_port=8599)
    plan = {c.name: c.args for c in launcher.plan(args)}
    assert "simulator" not in plan and "consumer" not in plan
    assert plan["tiktok"][-6:] == ["realtime", "tiktok", "--unique-id", "@creator", "--shop", "s1"]
    both = {c.name for c in launcher.plan(argparse.Namespace(**{**vars(args), "feed": "ws://127.0.0.1:1"}))}
    assert {"tiktok", "consumer"} <= both and "simulator" not in both


def test_events_read_while_redis_is_down_are_held_and_written_when_it_is_back(cfg, tmp_path, fake_tiktok,
                                                                              caplog) -> None:
    own = tmp_path / "own-redis"  # a server of this test alone, stopped mid-show
    port = server.free_port()
    cfg = dataclasses.replace(cfg, redis_url=server.ensure_running(own, port=port).url, tiktok_offline_poll_s=3600)
    caplog.set_level(logging.INFO, logger="realtime")
    fake = FakeTikTok(sessions=[[push(f) for f in FRAMES]])
    fake.gate = asyncio.Event()
    sync = redis.Redis.from_url(cfg.redis_url)

    async def outage(src: TikTokSource) -> None:
        await await_for(lambda: src.counters.accepted == 3, 20, "the first frame written")
        await asyncio.to_thread(server.stop, own)
        fake.gate.set()  # the rest of the show arrives while Redis is away
        await await_for(lambda: any("holding" in rec.getMessage() for rec in caplog.records), 20,
                        "the consumer's path to hold the events")
        await asyncio.to_thread(server.ensure_running, own, port)

    try:
        src = asyncio.run(run_source(cfg, fake, fake_tiktok, lambda s: s.state == ENDED and s.counters.accepted == 6,
                                     meanwhile=outage))
        assert [e.id for e in events_in(sync)] == ["tt-1", "tt-2", "tt-3", "tt-7", "tt-8", "tt-9"]
        assert int(sync.hget(keys.dead_stats(), "dead_letters")) == 1 and src.counters.bad == 1
    finally:
        sync.close()
        server.stop(own)


@pytest.mark.parametrize("unique_id,diamonds,says", [
    ("@", 200, "--unique-id '@': a TikTok username is needed"),
    ("@two words", 200, "a TikTok username is needed"),
    ("@creator", 0, "FANOPS_TIKTOK_DIAMONDS_PER_USD=0: it must be above 0"),
])
def test_settings_that_cannot_work_are_refused_with_the_reason(unique_id, diamonds, says) -> None:
    with pytest.raises(BadSettings, match=re.escape(says)):
        checked_unique_id(unique_id, Config(tiktok_diamonds_per_usd=diamonds))
    assert checked_unique_id("https://www.tiktok.com/@creator/live", Config()) == "creator"


def test_the_command_refuses_a_missing_username_in_one_line_before_anything_starts() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "realtime", "tiktok", "--unique-id", "@",
                           "--redis", "redis://127.0.0.1:1"],  # never reached: the check comes first
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                          text=True, timeout=120)
    err = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert done.returncode == 1 and len(err) == 1 and "a TikTok username is needed" in err[0], done.stderr
