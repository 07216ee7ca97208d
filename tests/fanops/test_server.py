"""The embedded server: started once per data folder, shared, persistent, stopped cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from fanops.config import Config
from fanops.runtime import db, server

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_server_is_shared_persistent_and_stops(tmp_path):
    info = server.ensure_running(tmp_path, port=server.free_port())
    try:
        again = server.ensure_running(tmp_path)
        assert again.url == info.url and again.pid == info.pid
        r = redis.Redis.from_url(info.url)
        cfg = r.config_get("appendonly") | r.config_get("appendfsync") | r.config_get("bind")
        assert cfg["appendonly"] == "yes" and cfg["appendfsync"] == "everysec"
        assert cfg["bind"].split()[0] in ("127.0.0.1", "127.0.0.1 -::1")
        assert Path(r.config_get("dir")["dir"]).resolve() == (tmp_path / "redis").resolve()
        r.set("kept", "yes")
        r.close()
        # another process of the product finds the same server instead of starting one
        out = subprocess.run([sys.executable, "-c",
                              "import sys; from pathlib import Path; from fanops.runtime import server;"
                              "print(server.ensure_running(Path(sys.argv[1])).url)", str(tmp_path)],
                             capture_output=True, text=True, cwd=ROOT, check=True)
        assert out.stdout.strip() == info.url
    finally:
        assert server.stop(tmp_path)
    assert server.running(tmp_path) is None
    # data survives a restart
    info2 = server.ensure_running(tmp_path)
    try:
        assert redis.Redis.from_url(info2.url).get("kept") == b"yes"
    finally:
        server.stop(tmp_path)


def test_with_redis_url_nothing_is_started(tmp_path, redis_url):
    cfg = Config.from_env({"REDIS_URL": redis_url, "FANOPS_DATA_DIR": str(tmp_path)})
    r = db.connect(cfg)
    assert r.ping()
    assert not (tmp_path / "redis").exists()


def test_unreachable_server_is_one_line_naming_the_url(tmp_path):
    port = server.free_port()
    for cmd in (["scoring", "status", "--shop", "s"], ["scoring", "run", "--burst"],
                ["realtime", "consume", "--url", "ws://127.0.0.1:1"]):
        out = subprocess.run([sys.executable, "-m", *cmd, "--redis", f"redis://:secret@127.0.0.1:{port}/0"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode != 0, cmd
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], out.stderr
        assert "secret" not in out.stderr


def test_replay_of_a_missing_file_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "realtime", "replay", str(tmp_path / "nope.jsonl"),
                          "--port", "0"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1 and "nope.jsonl" in out.stderr


def test_a_command_that_starts_the_embedded_server_and_then_fails_says_only_why(tmp_path):
    """The first command on a fresh data folder starts the server: that start is no line of a one-shot
    command's stderr, which is its one-line error (spec/cli.md)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FANOPS_LOG")}
    env["FANOPS_DATA_DIR"] = str(tmp_path)
    try:
        out = subprocess.run([sys.executable, "-m", "scoring", "viewer", "--shop", "s1", "--id", "nobody"],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert server.running(tmp_path) is not None  # it did start the server
        assert out.returncode == 1 and out.stdout == ""
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "nobody" in lines[0], out.stderr
    finally:
        server.stop(tmp_path)
