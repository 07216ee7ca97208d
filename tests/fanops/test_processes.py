"""The long-running processes as real subprocesses: heartbeats, health checks, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from fanops import keys
from fanops.runtime.server import free_port
from fanops.schema import unpack_events
from tests.conftest import stream_entries, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), FANOPS_FLUSH_MS="60000", FANOPS_FLUSH_EVENTS="100000")


def health(kind: str, redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fanops.runtime.health", kind, "--redis", redis_url],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=60)


def test_consumer_heartbeat_health_check_and_graceful_sigterm(r, redis_url, tmp_path):
    feed = tmp_path / "feed.jsonl"
    lines = [json.dumps({"id": f"e{i}", "room": "r1", "ts": 1_760_000_000_000 + i, "type": "like",
                         "viewer": {"id": f"u{i % 5}"}}) for i in range(40)]
    feed.write_text("\n".join(lines) + "\n")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "realtime", "replay", str(feed), "--port", str(port)],
                              cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
    consumer = None
    try:
        assert health("consumer", redis_url).returncode == 1
        consumer = subprocess.Popen([sys.executable, "-m", "realtime", "consume", "--url",
                                     f"ws://127.0.0.1:{port}", "--redis", redis_url],
                                    cwd=ROOT, env=ENV, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: health("consumer", redis_url).returncode == 0, 30, "a live consumer")
        beat = json.loads(health("consumer", redis_url).stdout)["processes"][0]
        wait_for(lambda: json.loads(health("consumer", redis_url).stdout)["processes"][0]["frames"] == 40,
                 30, "all frames read")
        # it holds the events (flush after 60 s): SIGTERM must flush them before exiting
        assert not r.exists(*keys.streams("default"))
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0
        err = consumer.stderr.read()
        assert "consumer stopped: 40 frames, 40 events, 40 accepted" in err
        events = [e for _, _, f in stream_entries(r, "default") for e in unpack_events(f[b"e"])]
        assert len(events) == 40
        assert beat["connected"] is True
    finally:
        for p in (consumer, server):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_scorer_health_check(r, redis_url, tmp_path):
    assert health("scorer", redis_url).returncode == 1
    # its own data folder: a scorer writes its applied-event log (and archives) there
    w = subprocess.Popen([sys.executable, "-m", "scoring", "run", "--name", "w-health", "--redis", redis_url],
                         cwd=ROOT, env=dict(ENV, FANOPS_DATA_DIR=str(tmp_path / "data")), stderr=subprocess.PIPE,
                         text=True)
    try:
        wait_for(lambda: health("scorer", redis_url).returncode == 0, 30, "a live scorer")
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=30) == 0
        assert "scorer w-health stopped" in w.stderr.read()
        assert health("scorer", redis_url).returncode == 1
    finally:
        if w.poll() is None:
            w.kill()
