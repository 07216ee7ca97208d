"""Test fixtures: a real embedded Redis server per test session, a clean database per test.

Every test gets one layer marker, so that ``pytest -m pure`` runs in seconds:
``browser`` (drives Chromium), ``process`` (starts the product's processes), ``redis``
(needs the test server), ``pure`` (none of these).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fanops.config import Config
from fanops.runtime import server

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
REDIS_FIXTURES = frozenset({"redis_server", "redis_url", "r", "cfg", "cluster", "cr", "ccfg"})
_SPAWNS = ("subprocess", "Popen")


def _spawning_helpers(module: object) -> frozenset[str]:
    """The module's own functions that start a process (the tests that call one are ``process``)."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                     and any(w in ast.unparse(n) for w in _SPAWNS))


def _layer(item: pytest.Function, helpers: frozenset[str]) -> str:
    if "browser" in item.fixturenames or item.module.__name__.endswith("test_browser"):
        return "browser"
    src = inspect.getsource(item.function)
    if any(w in src for w in _SPAWNS) or any(f"{h}(" in src for h in helpers):
        return "process"
    return "redis" if REDIS_FIXTURES & set(item.fixturenames) else "pure"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    helpers: dict[str, frozenset[str]] = {}
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        mod = item.module
        if mod.__name__ not in helpers:
            helpers[mod.__name__] = _spawning_helpers(mod)
        item.add_marker(_layer(item, helpers[mod.__name__]))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[server.ServerInfo]:
    """A private server on a free port for the whole session, stopped at the end."""
    d = Path(tempfile.mkdtemp(prefix="fanops-test-"))
    info = server.ensure_running(d, port=server.free_port())
    yield info
    server.stop(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: server.ServerInfo) -> str:
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.script_flush()
    r.close()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def cfg(redis_url: str, tmp_path: Path) -> Config:
    return Config.from_env({}, redis_url=redis_url, data_dir=tmp_path / "data", flush_ms=5)


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition",
             poll: float = 0.02) -> object:
    """Poll ``cond`` every ``poll`` s until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


async def await_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def stream_entries(r: redis.Redis, shop: str) -> list[tuple[str, bytes, dict[bytes, bytes]]]:
    """Every entry of a shop's event streams (all partitions): (stream, id, fields)."""
    from fanops import keys

    return [(s, i, f) for s in keys.streams(shop) for i, f in r.xrange(s)]
