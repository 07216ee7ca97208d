"""With no sign-in, the app listens on this machine only (issue 17 "safe defaults")."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from fanops.runtime import launcher
from fanops.runtime.server import free_port
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_the_launcher_starts_the_app_on_loopback() -> None:
    args = argparse.Namespace(feed="ws://127.0.0.1:1", workers=1, app_port=8599)
    (app,) = [c for c in launcher.plan(args) if c.name == "app"]
    i = app.args.index("--server.address")
    assert app.args[i + 1] == "127.0.0.1"


def _listening(port: int) -> list[str]:
    """The addresses a TCP socket listens on ``port`` at (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, _, p = local.rpartition(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.append("127.0.0.1" if addr == "0100007F" else
                             "::1" if addr == "00000000000000000000000001000000" else f"other:{addr}")
    return found


def test_streamlit_run_app_alone_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), FANOPS_DATA_DIR=str(tmp_path / "data"))
    p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                          "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        addrs = wait_for(lambda: _listening(port), 60, "the app to listen")
        assert addrs == ["127.0.0.1"]
    finally:
        p.terminate()
        p.wait(timeout=30)

