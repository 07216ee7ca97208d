"""``python -m fanops.runtime.launcher``: the whole product on one machine, for a demo or a show.

Starts (or finds) the embedded Redis, then the simulated room, the consumer,
the scorer and the Streamlit app as child processes, each with its own log
under ``<data_dir>/logs``.  A child that exits is restarted with a back-off;
Ctrl-C (or SIGTERM) stops them all, newest first, then the embedded server.
With ``--feed URL`` it reads a real feed instead of the simulator, with ``--tiktok @creator`` a TikTok LIVE room.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from fanops import access
from fanops.config import PROJECT_ROOT, Config
from fanops.errors import FanopsError
from fanops.runtime import server
from fanops.runtime.cli import port, positive, run, setup_logging, shop_name

log = logging.getLogger("fanops.runtime.launcher")


# Without a password the app listens on loopback only; `--public` (every interface) needs one (issue 17).
APP_ADDRESS = "127.0.0.1"
PUBLIC_ADDRESS = "0.0.0.0"
SECRETS = PROJECT_ROOT / ".streamlit" / "secrets.toml"


def access_settings(cfg: Config, secrets_file: Path = SECRETS) -> access.AccessSettings:
    """The app's access settings as the app will see them: the environment, else secrets.toml [fanops]."""
    section: dict[str, object] = {}
    if secrets_file.is_file():
        try:
            found = tomllib.loads(secrets_file.read_text(encoding="utf-8")).get("fanops", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise FanopsError(f"cannot read {secrets_file}: {e}") from e
        section = found if isinstance(found, dict) else {}
    return access.settings_from({n: getattr(cfg, n) for n in access.SECRET_NAMES}, section)


PUBLIC_REFUSED = ("error: --public needs a password first: set FANOPS_PASSWORD_OPERATOR or FANOPS_PASSWORD_ADMIN "
                  "(or [fanops] in .streamlit/secrets.toml); without one the app stays on 127.0.0.1")


def listening_note(args: argparse.Namespace, cfg: Config) -> str | None:
    """How the app will listen, for the start line; None when ``--public`` is asked with no password set."""
    signed = access_settings(cfg).sign_in
    if getattr(args, "public", False):
        return "listening on every interface, with sign-in" if signed else None
    return "listening on this machine only" + ("" if signed else ": no sign-in is set up")


def app_address(args: argparse.Namespace) -> str:
    return PUBLIC_ADDRESS if getattr(args, "public", False) else APP_ADDRESS


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    logfile: Path | None = None
    handle: object = field(default=None, repr=False)


def _module_exists(mod: str) -> bool:
    return find_spec(mod) is not None


def plan(args: argparse.Namespace) -> list[Child]:
    py = sys.executable
    children: list[Child] = []
    feed = args.feed
    if getattr(args, "tiktok", None):
        children.append(Child("tiktok", [py, "-m", "realtime", "tiktok", "--unique-id", args.tiktok,
                                         "--shop", args.shop]))
    elif not feed:
        children.append(Child("simulator", [py, "-m", "realtime", "simulate", "--port", str(args.sim_port),
                                            "--rate", str(args.rate), "--viewers", str(args.viewers),
                                            "--seed", str(args.seed), "--shop", args.shop]))
        feed = f"ws://127.0.0.1:{args.sim_port}"
    if feed:
        mapping = ["--mapping", args.mapping] if getattr(args, "mapping", None) and args.feed else []
        children.append(Child("consumer", [py, "-m", "realtime", "consume", "--url", feed, *mapping]))
    if getattr(args, "orders_port", None):
        children.append(Child("orders", [py, "-m", "realtime", "orders", "--port", str(args.orders_port)]))
    if _module_exists("scoring.__main__"):
        for i in range(args.workers):
            children.append(Child(f"scorer-{i + 1}", [py, "-m", "scoring", "run"]))
    if (PROJECT_ROOT / "app.py").exists():
        children.append(Child("app", [py, "-m", "streamlit", "run", str(PROJECT_ROOT / "app.py"),
                                      "--server.port", str(args.app_port), "--server.address", app_address(args),
                                      "--server.headless", "true",
                                      "--browser.gatherUsageStats", "false"]))
    return children


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 dev.py up", description=__doc__)
    p.add_argument("--feed", help="read this WebSocket feed instead of the simulated room")
    p.add_argument("--mapping", metavar="FILE", help="with --feed: another platform's feed, read through this "
                   "mapping (realtime/mappings/)")
    p.add_argument("--tiktok", metavar="@CREATOR", help="read this creator's TikTok LIVE room instead of the "
                   "simulated room (with --feed: both)")
    p.add_argument("--orders-port", type=port, default=None, metavar="P",
                   help="also serve the shop's order webhooks on this port (python -m realtime orders)")
    p.add_argument("--rate", type=positive(float), default=300.0, help="simulated events per second")
    p.add_argument("--viewers", type=positive(int), default=3000, help="simulated viewers in the live show")
    p.add_argument("--seed", type=int, default=int(time.time()) // 86400)
    p.add_argument("--shop", type=shop_name, default="default")
    p.add_argument("--sim-port", type=port, default=8765)
    p.add_argument("--app-port", type=port, default=8501)
    p.add_argument("--workers", type=positive(int), default=1, help="scorer workers")
    p.add_argument("--keep-server", action="store_true", help="leave the embedded Redis running on exit")
    p.add_argument("--public", action="store_true", help="listen on 0.0.0.0 (other machines); needs a password")
    return p.parse_args(argv)


def _stop(children: list[Child]) -> None:
    """SIGTERM to every child, the last started first, then wait for each (SIGKILL after 10 s)."""
    for c in reversed(children):
        if c.proc is not None and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
    for c in reversed(children):
        if c.proc is not None:
            try:
                c.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.proc.kill()
            log.info("%s stopped", c.name)


def main() -> int:
    args = parse_args()
    setup_logging()
    cfg = Config.from_env()
    where = listening_note(args, cfg)
    if where is None:
        print(PUBLIC_REFUSED, file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    embedded = not cfg.redis_url
    if embedded:
        info = server.ensure_running(cfg.data_dir)
        env["REDIS_URL"] = info.url
        log.info("embedded Redis at %s (data in %s)", info.url, info.data_dir)
    logs = cfg.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children = plan(args)

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def start(c: Child) -> None:
        c.logfile = logs / f"{c.name}.log"
        c.handle = open(c.logfile, "ab")
        c.proc = subprocess.Popen(c.args, env=env, stdout=c.handle, stderr=subprocess.STDOUT,
                                  cwd=PROJECT_ROOT, start_new_session=True)
        log.info("started %s (pid %d), log: %s", c.name, c.proc.pid, c.logfile)

    for c in children:
        start(c)
        if c.name == "simulator":
            time.sleep(0.5)
    log.info("live board: http://%s:%d  (%s; Ctrl-C stops everything)", APP_ADDRESS, args.app_port, where)
    try:
        while not stopping:
            time.sleep(0.5)
            for c in children:
                if c.proc is not None and c.proc.poll() is not None:
                    code = c.proc.returncode
                    c.restarts += 1
                    delay = min(30.0, 0.5 * 2 ** min(c.restarts, 6))
                    log.warning("%s exited with code %s; restarting in %.1f s (see %s)",
                                c.name, code, delay, c.logfile)
                    c.proc = None
                    c.next_start = time.monotonic() + delay
                elif c.proc is None and time.monotonic() >= c.next_start:
                    start(c)
    finally:
        _stop(children)
        if embedded and not args.keep_server:
            server.stop(cfg.data_dir)
            log.info("embedded Redis stopped; its data stays in %s", cfg.data_dir / "redis")
    return 0


if __name__ == "__main__":
    run(main)
