"""``python -m realtime orders`` as a process, and ``dev.py up --orders-port``."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from fanops import read
from fanops.runtime import launcher
from fanops.runtime.server import free_port
from tests.conftest import stream_entries, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_dev_py_up_with_an_orders_port_runs_the_orders_server_beside_the_feed() -> None:
    args = launcher.parse_args(["--orders-port", "8088"])
    plan = {c.name: c.args for c in launcher.plan(args)}
    assert plan["orders"][-4:] == ["realtime", "orders", "--port", "8088"]
    assert {"simulator", "consumer", "orders"} <= set(plan)
    assert "orders" not in {c.name for c in launcher.plan(launcher.parse_args([]))}


def _post(port: int, body: bytes, secret: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    try:
        conn.request("POST", "/webhooks/orders", body, {"X-Signature": sig})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def test_the_command_takes_a_signed_order_and_stops_cleanly_on_sigterm(redis_url, r, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FANOPS_DATA_DIR": str(tmp_path), "FANOPS_WEBHOOK_SECRET": "s3",
           "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "realtime", "orders", "--port", str(port)], cwd=ROOT, env=env,
                         stderr=subprocess.PIPE, text=True)
    try:
        body = json.dumps({"room": "r-1", "viewer_id": "u-1", "order_id": "o-1", "amount": 5, "currency": "EUR",
                           "ts": 1_763_856_000_000}).encode()
        assert wait_for(lambda: _post(port, body, "s3") == 200, 30, "the server to take the order")
        assert len(stream_entries(r, "default")) == 1
        # its heartbeat: a connected source for the board's health, with what it took
        beat = wait_for(lambda: [b for b in read.heartbeats(r, "consumer") if b.get("accepted") == 1], 10, "beat")
        assert beat[0]["connected"] is True and beat[0]["url"] == "webhook:orders"
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        assert "consumer stopped" in p.stderr.read()  # its one summary line
    finally:
        if p.poll() is None:
            p.kill()


def test_a_port_in_use_is_refused_in_one_line(redis_url, tmp_path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        env = {**os.environ, "REDIS_URL": redis_url, "FANOPS_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-m", "realtime", "orders", "--port", str(port)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(f"error: --host 127.0.0.1 --port {port}: cannot listen")
