"""Bad input at volume: random and mutated frames through a real consumer process into Redis.

``python -m bench.fuzz [--frames N] [--seed S]``  (default 1,000,000 frames, ~2-4 min)

The feed (this process, a WebSocket server on a free port) sends frames made by ``Fuzz``:
valid events from the simulator, alone and in batches, with events broken in every way
``spec/events.md`` names (missing and wrongly typed fields, unknown types and versions,
negative amounts, ``ts`` far ahead, strings over their limits, ``NaN``/``Infinity``, nested
junk, truncations, stray commas), unicode edge cases and duplicate keys that must pass,
byte-level mutations (bit flips, cuts, splices) of whole frames, garbage, and the wire's own
bad frames (binary, over the size limit, and text that is not UTF-8, which ends the connection).
The consumer is
``python -m realtime consume``; a drain task stands in for the scorer (it counts and removes
the stream entries, so Redis holds no backlog).

It prints frames/s, the consumer's RSS at start, middle and end, and the dead-letter stream's
length beside its counter, and checks the count: every event sent is accepted, a duplicate
or a dead letter, exactly. ``Fuzz`` is also what ``tests/realtime/test_fuzz.py`` sends.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aredis
from websockets.asyncio.server import ServerConnection, serve

from bench._util import ROOT, Child, fresh, machine_note, private_server, ratio, sim_settings, table, tree_note, verdict
from fanops import keys
from fanops.schema import RAW_LIMIT, parse_frame
from realtime import writer
from realtime.simulator import HOSTILE_NAMES, generate

NAN = "__fuzz_nan__"  # a placeholder replaced by a bare literal in the element's text
CYCLE_TAG = "~0000-"  # in every id: the bench sends a pool of frames again with this tag changed

# names and texts that must be accepted as they are (within their limits)
GOOD_STRINGS = (*HOSTILE_NAMES, "👨‍👩‍👧‍👦" * 20, "\u202eevil\u202c", "e\u0301" * 128, "\x00nul\x00",
                "\u2028\u2029", "𝕏" * 256, "\ufeffbom", "\\\"quoted\\\"", "ʕ•ᴥ•ʔ", "\U0010ffff", "  ")


@dataclass
class Frame:
    """One frame to send: ``kind`` text, binary, not_utf8 (a text frame of bytes that are not UTF-8) or
    oversize; ``units`` the events it counts as; ``good`` the ids built to be accepted; ``bad`` the raw
    text (cut as a dead letter keeps it) -> a fragment its reason must hold, for the events built bad."""

    kind: str
    data: str | bytes
    units: int
    good: list[str] = field(default_factory=list)
    bad: dict[bytes, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # id -> viewer name, for the unicode cases

    @property
    def ends_connection(self) -> bool:
        # websockets ends it on text that is not UTF-8; an oversize frame (up to the consumer's hard
        # cap, 16 times the limit) is dead-lettered and the connection goes on
        return self.kind == "not_utf8"


def templates(seed: int = 7, n: int = 4000) -> list[dict[str, Any]]:
    """Valid events of every type, from the simulator."""
    out: list[dict[str, Any]] = []
    for fr in generate(replace(sim_settings(viewers=400, events=n, batch=1, seed=seed, shop="fuzz"))):
        out.extend(fr)
    return out


def raw_key(raw: bytes) -> bytes:
    """What a dead letter's raw text is looked up by (its first RAW_LIMIT bytes, hashed)."""
    return hashlib.sha1(raw[:RAW_LIMIT]).digest()


class Fuzz:
    """A deterministic (per seed) stream of fuzzed frames."""

    def __init__(self, seed: int, now_ms: int, max_frame_bytes: int, skew_ms: int = 24 * 3600 * 1000,
                 wire: float = 0.002, samples: list[str] | None = None,
                 events: list[dict[str, Any]] | None = None) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.now_ms = now_ms
        self.skew_ms = skew_ms
        self.max_frame_bytes = max_frame_bytes
        self.wire = wire
        self.samples = samples or []
        self.events = events or templates()
        self.n = 0
        self.prefix = ""  # set while making a frame to mutate: its ids are neither K... nor B...

    # -- events ------------------------------------------------------------
    def _event(self, prefix: str) -> dict[str, Any]:
        rng = self.rng
        e = json.loads(json.dumps(rng.choice(self.events)))
        self.n += 1
        e["id"] = f"{self.prefix or prefix}{self.seed}{CYCLE_TAG}{self.n}"
        roll = rng.random()
        if roll < 0.25:
            e["room"] = f"room-{rng.randrange(1 << 40):x}"  # ever new rooms
        elif roll < 0.26:
            e["shop"] = f"shop-{rng.randrange(64)}"
        return e

    def _dumps(self, e: dict[str, Any]) -> str:
        return json.dumps(e, ensure_ascii=self.rng.random() < 0.5).replace(f'"{NAN}"', self.rng.choice(
            ("NaN", "Infinity", "-Infinity")))

    def _good(self) -> tuple[str, str, str | None]:
        """A valid event's text, its id, and the name it must keep (unicode cases)."""
        rng = self.rng
        e = self._event("K")
        name = None
        kind = rng.randrange(8)
        if kind == 0:
            name = e["viewer"]["name"] = rng.choice(GOOD_STRINGS)
        elif kind == 1:
            e["junk"] = _nested(rng, rng.randrange(1, 40))  # fields not named are ignored
        elif kind == 2:
            e["ts"] = self.now_ms + self.skew_ms - 3_600_000
        elif kind == 3:
            e["id"] = (e["id"] + "-" * 128)[:128]
        elif kind == 4 and e["type"] == "comment":
            e["text"] = "t" * 2000
        if kind == 5:  # a duplicate key: the last one counts
            return '{"id": "decoy", ' + self._dumps(e)[1:], e["id"], name
        return self._dumps(e), e["id"], name

    def _bad(self) -> tuple[str, str]:
        """An event broken in one of the ways events.md names, and a fragment its reason must hold."""
        rng = self.rng
        e = self._event("B")
        k = rng.randrange(16)
        if k == 0:
            f = rng.choice(("id", "room", "ts", "type", "viewer"))
            del e[f]
            return self._dumps(e), f"missing required field `{f}`"
        if k == 1:
            del e["viewer"]["id"]
            return self._dumps(e), "`$.viewer`"
        if k == 2:
            f = rng.choice(("id", "room", "ts", "viewer", "shop", "type", "v"))
            e[f] = rng.choice(("soon", 1.5, True, None, [], {}, -7)) if f != "ts" else rng.choice(
                ("soon", 1.5, True, None, [], {}))
            if f in ("id", "room", "shop") and isinstance(e[f], str):
                e[f] = 7
            return self._dumps(e), f"$.{f}" if f not in ("type",) else "type"
        if k == 3:
            e["type"] = rng.choice(("teleport", "JOIN", "", "super_like"))
            return self._dumps(e), "$.type"
        if k == 4:
            e["v"] = rng.choice((0, 2, 11))
            return self._dumps(e), "$.v"
        if k == 5:
            e.update(type="order", order_id="o-1", currency="USD", amount=-rng.randrange(1, 10**6) / 100)
            return self._dumps(e), "$.amount"
        if k == 6:
            e.update(type="gift", gift="rose", value=-0.01)
            return self._dumps(e), "$.value"
        if k == 7:
            e["ts"] = self.now_ms + self.skew_ms + rng.randrange(60_000, 10**12)
            return self._dumps(e), "ahead"
        if k == 8:
            e["ts"] = -rng.randrange(1, 10**6)
            return self._dumps(e), "$.ts"
        if k == 9:
            f, limit = rng.choice((("id", 128), ("room", 128), ("shop", 128), ("name", 256), ("text", 2000)))
            big = "é" * (limit + 1) if rng.random() < 0.3 else "x" * rng.randrange(limit + 1, 3 * limit)
            if f == "name":
                e["viewer"]["name"] = big
                return self._dumps(e), "$.viewer.name"
            if f == "text":
                e.update(type="comment", text=big)
            else:
                e[f] = big
            return self._dumps(e), f"$.{f}"
        if k == 10:
            e.update(type="like", count=rng.choice((0, -1, 10001, 10**9)))
            return self._dumps(e), "$.count"
        if k == 11:
            e["viewer"]["country"] = rng.choice(("usa", "us", "U1", "Deutschland"))
            return self._dumps(e), "$.viewer.country"
        if k == 12:
            e.update(type="order", order_id="o-2", currency="USD", amount=NAN)
            return self._dumps(e), "bad JSON"
        if k == 13:
            e.update(type="order", order_id="o-3", currency="USD")
            return self._dumps(e).replace('"currency"', '"amount": 1e999, "currency"', 1), "out of range"
        if k == 14:
            d = rng.randrange(1100, 1600)
            e["junk"] = NAN
            deep = "[" * d + "1" + "]" * d if rng.random() < 0.5 else '{"k":' * d + "1" + "}" * d
            return json.dumps(e).replace(f'"{NAN}"', deep), "nested too deeply"
        return rng.choice(('42', '"join"', 'null', 'true', '[]', '[1, 2]', '3.5e3')), "object"

    # -- frames ------------------------------------------------------------
    def frame(self) -> Frame:
        fr = self._frame()
        if fr.kind == "text" and len(str(fr.data).encode("utf-8")) > self.max_frame_bytes:
            return Frame("oversize", fr.data, 1)  # the consumer refuses it whole: one dead letter
        return fr

    def _frame(self) -> Frame:
        rng = self.rng
        roll = rng.random()
        if roll < self.wire:
            return self._wire()
        if roll < 0.3:
            text, eid, name = self._good()
            return Frame("text", text, 1, [eid], names={eid: name} if name is not None else {})
        if roll < 0.7:
            return self._batch()
        if roll < 0.85 or not self.samples and roll < 0.9:
            self.prefix = "mut"
            base = self._batch() if rng.random() < 0.6 else Frame("text", self._good()[0], 1)
            self.prefix = ""
            return self._counted(_mutate(rng, str(base.data)))
        if roll < 0.9:
            return self._counted(_mutate(rng, rng.choice(self.samples)))
        return self._counted(_garbage(rng, self.max_frame_bytes))

    def _batch(self) -> Frame:
        rng = self.rng
        parts: list[tuple[str, str | None, str | None, str | None]] = []  # text, good id, name, reason
        for _ in range(rng.randrange(1, 16)):
            if rng.random() < 0.6:
                text, eid, name = self._good()
                parts.append((text, eid, name, None))
            else:
                text, reason = self._bad()
                parts.append((text, None, None, reason))
        tail = rng.random()
        if tail < 0.05:  # a stray comma
            parts.insert(rng.randrange(len(parts) + 1), ("", None, None, None))  # its raw is b"", as others
        end = "]"
        last = parts[-1][0]
        if 0.05 <= tail < 0.1 and last.startswith("{"):  # cut inside the last element: the ones before count
            # any reason will do: a cut may fall after a bad value, which is then what is reported
            parts[-1] = (last[: rng.randrange(1, len(last) - 1)], None, None, None)
            end = ""
        fr = Frame("text", "[" + ", ".join(p[0] for p in parts) + end, len(parts))
        for text, eid, name, reason in parts:
            if eid is not None:
                fr.good.append(eid)
                if name is not None:
                    fr.names[eid] = name
            elif reason is not None:
                fr.bad[raw_key(text.encode("utf-8", "surrogatepass"))] = reason
        return fr

    def _counted(self, text: str) -> Frame:
        # the decoder says how many events a frame of unknown shape holds
        return Frame("text", text, len(parse_frame(text, self.now_ms, self.skew_ms)))

    def _wire(self) -> Frame:
        k = self.rng.randrange(3)
        if k == 0:
            return Frame("binary", bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300))), 1)
        if k == 1:
            return Frame("not_utf8", b'{"id": "\xff\xfe", "room": "r"}', 1)
        return Frame("oversize", "[" + " " * self.max_frame_bytes + "]", 1)

    def frames(self, n: int) -> Iterator[Frame]:
        for _ in range(n):
            yield self.frame()


def _nested(rng: random.Random, depth: int) -> Any:
    v: Any = rng.choice((1, "x", None, [], {}))
    for _ in range(depth):
        v = [v] if rng.random() < 0.5 else {"k": v}
    return v


JUNK = '{}[]",:\\0123456789.eE+-truefalsnNaI \t\n' + "é€😀\u2028\ufeff"


def _mutate(rng: random.Random, text: str) -> str:
    """A few character-level mutations: bit flips, cuts, deletions, repeats, insertions."""
    s = text
    for _ in range(rng.randrange(1, 4)):
        if not s:
            break
        i = rng.randrange(len(s))
        op = rng.randrange(5)
        if op == 0:
            c = ord(s[i]) ^ (1 << rng.randrange(7))
            s = s[:i] + (chr(c) if not 0xD800 <= c <= 0xDFFF else "x") + s[i + 1:]
        elif op == 1:
            s = s[:i]
        elif op == 2:
            s = s[:i] + s[i + rng.randrange(1, 40):]
        elif op == 3:
            j = min(len(s), i + rng.randrange(1, 200))
            s = s[:j] + s[i:j] + s[j:]
        else:
            s = s[:i] + "".join(rng.choice(JUNK) for _ in range(rng.randrange(1, 8))) + s[i:]
    return s


def _garbage(rng: random.Random, max_frame_bytes: int) -> str:
    k = rng.randrange(9)
    if k == 0:
        return "".join(rng.choice(JUNK) for _ in range(rng.randrange(0, 200)))
    if k == 1:
        return "".join(chr(rng.choice((rng.randrange(32, 0xD800), rng.randrange(0xE000, 0x110000))))
                       for _ in range(rng.randrange(1, 100)))
    if k == 2:
        return rng.choice(("", " ", "\n\t ", "[]", "{}", "null", "[{}]", "[[]]", "\ufeff{}", '{"a": 1}{"b": 2}'))
    if k == 3:
        d = rng.randrange(500, 3000)
        return rng.choice(("[" * d + "]" * d, "{\"a\":" * d + "1" + "}" * d, "[" * d))
    if k == 4:
        return json.dumps("x" * rng.randrange(1, min(20_000, max_frame_bytes)))
    if k == 5:
        return rng.choice(("NaN", "Infinity", "-Infinity", "[NaN, Infinity]", "1e999", "-0", "9" * 5000))
    if k == 6:
        return "[" + ",".join(rng.choice(("1", '"a"', "null", "{}", "[]")) for _ in range(rng.randrange(1, 60))) + "]"
    if k == 7:
        return '"\\ud800"'
    return "[" + ", ".join(json.dumps(_nested(rng, rng.randrange(1, 30))) for _ in range(rng.randrange(1, 5))) + "]"


# -- the feed ------------------------------------------------------------------
class FuzzFeed:
    """A WebSocket server that sends ``frames`` in order across connections. A frame that ends its
    connection (text that is not UTF-8) is sent once everything before it is settled (``settled()``
    true: the consumer has written what it was sent), and the rest goes on the next connection;
    ``pause_at`` frame counts wait for ``resume`` (a test takes its memory reading there)."""

    def __init__(self, frames: Iterator[Frame], settled: Callable[[int], Awaitable[bool]],
                 pause_at: tuple[int, ...] = ()) -> None:
        self.frames = frames
        self.settled = settled
        self.pause_at = set(pause_at)
        self.sent = 0
        self.units = 0
        self.ended = 0  # frames that ended their connection
        self.gap_s = 0.0  # from settling before such a frame to the consumer's next connection
        self._gap_from: float | None = None
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.done = asyncio.Event()
        self.good: list[str] = []
        self.bad: dict[bytes, str] = {}
        self.names: dict[str, str] = {}
        self.keep = True  # keep the good ids and bad reasons (the bench does not)
        self._server: Any = None

    async def _wait_settled(self) -> None:
        while not await self.settled(self.units):
            await asyncio.sleep(0.002)

    async def handler(self, ws: ServerConnection) -> None:
        if self._gap_from is not None:
            self.gap_s += time.monotonic() - self._gap_from
            self._gap_from = None
        while True:
            if self.sent in self.pause_at:
                self.pause_at.discard(self.sent)
                await self._wait_settled()
                self.paused.set()
                await self.resume.wait()
                self.resume.clear()
            fr = next(self.frames, None)
            if fr is None:
                self.done.set()
                await ws.wait_closed()
                return
            if fr.ends_connection:
                self._gap_from = time.monotonic()
                await self._wait_settled()
            self._record(fr)
            if fr.kind == "not_utf8":
                await ws.send(fr.data, text=True)
            else:
                await ws.send(fr.data)
            if fr.ends_connection:
                self.ended += 1
                await ws.wait_closed()
                return

    def _record(self, fr: Frame) -> None:
        self.sent += 1
        self.units += fr.units
        if self.keep:
            self.good.extend(fr.good)
            self.bad.update(fr.bad)
            self.names.update(fr.names)

    async def start(self) -> str:
        self._server = await serve(self.handler, "127.0.0.1", 0, max_size=None, compression=None)
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# -- the benchmark -------------------------------------------------------------
SAMPLES = ROOT.parent / "shared" / "samples" / "weeks-small.jsonl"


def cycled(pool: list[Frame], n: int) -> Iterator[Frame]:
    """``n`` frames: the pool again and again, each round with its own ids (the tag changed in place,
    same length, so every frame holds the same events as in the pool)."""
    for i in range(n):
        c, k = divmod(i, len(pool))
        fr = pool[k]
        if c == 0 or fr.kind != "text":
            yield fr
        else:
            yield Frame("text", str(fr.data).replace(CYCLE_TAG, f"~{c % 10_000:04d}-"), fr.units)


@dataclass
class Readings:
    rss: dict[str, int] = field(default_factory=dict)
    rss_max: int = 0
    drained: int = 0
    dead_len_max: int = 0


async def _watch(feed: FuzzFeed, ar: aredis.Redis, pid: int, n: int, out: Readings) -> None:
    """Every 0.2 s: the consumer's RSS (at 1% of the frames, half, the end), the dead-letter stream's
    length, and the events in the shop streams counted and removed (a scorer's part)."""
    proc = psutil.Process(pid)
    marks = {"start": n // 100, "middle": n // 2}
    while True:
        rss = proc.memory_info().rss
        out.rss_max = max(out.rss_max, rss)
        for k, at in marks.items():
            if k not in out.rss and feed.sent >= at:
                out.rss[k] = rss
        out.dead_len_max = max(out.dead_len_max, int(await ar.xlen(keys.dead_stream())))
        out.drained += await _drain(ar)
        if feed.done.is_set():
            return
        await asyncio.sleep(0.2)


async def _drain(ar: aredis.Redis) -> int:
    n = 0
    for shop in [s.decode() for s in await ar.smembers(keys.shops())]:
        for st in keys.streams(shop):
            while entries := await ar.xrange(st, count=2000):
                n += sum(int(f[b"n"]) for _i, f in entries)
                await ar.xdel(st, *[i for i, _f in entries])
    return n


async def _counts(ar: aredis.Redis) -> tuple[int, int, int]:
    shops = [s.decode() for s in await ar.smembers(keys.shops())]
    p = ar.pipeline(transaction=False)
    for s in shops:
        p.hmget(keys.stats(s), "accepted", "duplicates")
    p.hget(keys.dead_stats(), "dead_letters")
    res = await p.execute()
    return (sum(int(a or 0) for a, _d in res[:-1]), sum(int(d or 0) for _a, d in res[:-1]), int(res[-1] or 0))


async def _run(redis_url: str, pool: list[Frame], n: int, log_dir: Path) -> dict[str, Any]:
    ar = aredis.Redis.from_url(redis_url)

    async def settled(units: int) -> bool:
        return sum(await _counts(ar)) == units

    feed = FuzzFeed(cycled(pool, n), settled)
    feed.keep = False
    url = await feed.start()
    child = Child("consumer", ["-m", "realtime", "consume", "--url", url, "--redis", redis_url], log_dir)
    out = Readings()
    t0 = time.perf_counter()
    try:
        await _watch(feed, ar, child.pid, n, out)
        while not await settled(feed.units):
            child.check()
            await asyncio.sleep(0.005)
        dt = time.perf_counter() - t0
        alive = child.proc.poll() is None
        out.rss["end"] = psutil.Process(child.pid).memory_info().rss
        out.drained += await _drain(ar)
        accepted, dups, dead = await _counts(ar)
        dead_len = int(await ar.xlen(keys.dead_stream()))
        node = int((await ar.config_get("stream-node-max-entries"))["stream-node-max-entries"])
        used = int((await ar.info("memory"))["used_memory"])
    finally:
        child.stop()
        await feed.stop()
        await ar.aclose()
    return dict(seconds=dt, gap=feed.gap_s, frames=feed.sent, units=feed.units, ended=feed.ended, alive=alive,
                accepted=accepted, dups=dups, dead=dead, dead_len=dead_len, node=node, used=used, out=out,
                log=child.tail(600))


def _decoder_rate(pool: list[Frame], now_ms: int) -> float:
    texts = [str(f.data).encode("utf-8") for f in pool if f.kind == "text"]
    t0 = time.perf_counter()
    for t in texts:
        parse_frame(t, now_ms)
    return len(texts) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--pool", type=int, default=20_000, help="distinct frames made (then sent again, new ids)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--wire", type=float, default=0.0001,
                    help="share of frames that are binary, not UTF-8 or over the size limit (text that is "
                         "not UTF-8 ends the connection: the consumer reconnects after its back-off)")
    args = ap.parse_args(argv)
    now = int(time.time() * 1000)
    samples = SAMPLES.read_text(encoding="utf-8").splitlines() if SAMPLES.exists() else []
    print(f"making {args.pool:,} frames (seed {args.seed}) ...", flush=True)
    pool = list(Fuzz(args.seed, now, 1 << 20, wire=args.wire, samples=samples).frames(args.pool))
    ceiling = _decoder_rate(pool, now)
    with private_server() as (info, d):
        fresh(info.url).close()
        print(f"sending {args.frames:,} frames to a consumer process ...", flush=True)
        res = asyncio.run(_run(info.url, pool, args.frames, d))
    _report(res, ceiling, args)
    return 0


def _report(res: dict[str, Any], ceiling: float, args: argparse.Namespace) -> None:
    out: Readings = res["out"]
    mb = 1 << 20
    busy = res["seconds"] - res["gap"]
    rate, rate_busy = res["frames"] / res["seconds"], res["frames"] / busy
    exact = res["accepted"] + res["dups"] + res["dead"] == res["units"]
    capped = max(res["dead_len"], out.dead_len_max) <= writer.DEAD_MAXLEN + res["node"]
    print(machine_note(), "|", tree_note())
    print(table(["measure", "value"], [
        ["frames sent", res["frames"]], ["events in them", res["units"]],
        ["accepted", res["accepted"]], ["duplicates", res["dups"]], ["dead letters (counter)", res["dead"]],
        ["accepted + duplicates + dead letters - events", res["accepted"] + res["dups"] + res["dead"] - res["units"]],
        ["events taken from the shop streams (a scorer's part)", out.drained],
        ["frames that ended the connection (reconnects)", res["ended"]],
        ["seconds, wall", round(res["seconds"], 1)], ["seconds in reconnect back-off", round(res["gap"], 1)],
        ["dead-letter stream length at the end", res["dead_len"]],
        ["dead-letter stream length, largest seen", out.dead_len_max],
        ["dead-letter stream cap (MAXLEN ~, node size)", f"{writer.DEAD_MAXLEN:,} ~{res['node']}"],
        ["Redis used_memory at the end, MiB", round(res["used"] / mb, 1)],
    ], title="bench.fuzz: what went in and where it went"))
    print()
    print(table(["", "frames/s", "ratio"], [
        ["decoder alone (parse_frame over the pool, one process)", ceiling, "1.00x"],
        ["consumer process, wall", rate, ratio(rate, ceiling)],
        ["consumer process, back-off excluded", rate_busy, ratio(rate_busy, ceiling)],
    ], title="speed, beside the decoder's own"))
    print()
    rss = out.rss
    print(table(["consumer RSS, MiB", "start (1%)", "middle", "end", "largest", "end / middle"], [
        ["", round(rss.get("start", 0) / mb, 1), round(rss.get("middle", 0) / mb, 1), round(rss["end"] / mb, 1),
         round(out.rss_max / mb, 1), ratio(rss["end"], rss.get("middle", 0))]]))
    print()
    print(table(["check", "result"], [
        ["every event accepted, a duplicate or a dead letter, exactly", verdict(exact)],
        ["the consumer never stopped", verdict(res["alive"])],
        ["dead-letter stream within its cap", verdict(capped)],
        ["consumer RSS at the end within 10% of the middle", verdict(rss["end"] <= 1.1 * rss.get("middle", 0))],
    ]))
    if not res["alive"]:
        print(res["log"])


if __name__ == "__main__":
    sys.exit(main())
