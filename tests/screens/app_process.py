"""The Streamlit app as its own process on the test server, for the browser tests that need no
simulated room (``tests/screens/test_browser.py`` starts the whole launcher instead)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from fanops.runtime import server
from tests.conftest import wait_for
from tests.screens.test_browser import BAD_LOG, _health, _tail

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def app_process(redis_url: str, data_dir: Path, log: Path, **env: str) -> Iterator[str]:
    """``streamlit run app.py`` on a free loopback port with ``env`` (no other ``FANOPS_`` setting
    of this process); yields its URL once healthy; stops it, then fails on any error line in its log."""
    port = server.free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("FANOPS_")}
    full.update(REDIS_URL=redis_url, FANOPS_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), **env)
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port",
                              str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                             cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: p.poll() is not None or _health(url), 60, "the app's /_stcore/health", poll=0.25)
        assert p.poll() is None, _tail(log)
        yield url
    finally:
        p.terminate()
        p.wait(timeout=30)
    bad = [ln for ln in log.read_text(errors="replace").splitlines() if BAD_LOG.search(ln)]
    assert not bad, _tail(log)
