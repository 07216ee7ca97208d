"""Shared command-line plumbing: logging, ``--redis``, and errors turned into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import redis

from fanops import retry
from fanops.config import cli_help
from fanops.errors import FanopsError


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (spec/cli.md: a command that
    cannot do its job exits non-zero with a one-line reason on standard error); exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())} (see --help)\n")

N = TypeVar("N", int, float)


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    n = _number(int, text)
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return n


def positive(kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type: a number above 0 of ``kind`` (int or float)."""

    def check(text: str) -> N:
        n = _number(kind, text)
        if not n > 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return n

    return check


def _number(kind: Callable[[str], N], text: str) -> N:
    try:
        n = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if n != n or n in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return n


def shop_name(text: str) -> str:
    """An argparse type: a shop as events.md names one (1-128 characters)."""
    if not 1 <= len(text) <= 128:
        raise argparse.ArgumentTypeError(f"a shop is 1-128 characters, not {len(text)}")
    return text


def ws_url(text: str) -> str:
    """An argparse type: a WebSocket URL (ws:// or wss:// and a host)."""
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    try:
        parse_uri(text)
    except InvalidURI as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a WebSocket URL: {e.msg}") from None
    return text


def setup_logging(verbose: bool = False, one_shot: bool = False) -> None:
    """Log to stderr at ``FANOPS_LOG``, else DEBUG with ``-v``, else INFO for a process that runs until
    stopped and WARNING for a ``one_shot`` command (status, tasks, import...): its stderr is then its
    one-line error, if any (spec/cli.md), not the embedded server's start or an HTTP client's request."""
    level = os.environ.get("FANOPS_LOG", "DEBUG" if verbose else "WARNING" if one_shot else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not verbose:
        # httpx logs every request at INFO (a provider's send, a failed one included)
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", metavar="URL", default=None, help=cli_help("redis_url"))
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run(main: Callable[[], int]) -> None:
    """Run a CLI entry point: a FanopsError, a file that cannot be written or read, or a Redis
    server that fails mid-way is one line on stderr and exit code 1 (the traceback at DEBUG)."""
    try:
        code = main()
    except BrokenPipeError:
        # the reader went away (`... | head -1`): no error to tell, as a tool killed by SIGPIPE;
        # stdout goes to /dev/null so that its flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except FanopsError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        code = 1
    except (OSError, redis.RedisError) as e:
        logging.getLogger(__name__).debug("failed", exc_info=True)
        why = _one_line(str(e)) or type(e).__name__
        if isinstance(e, redis.exceptions.OutOfMemoryError):
            why = f"{retry.why(e)}: raise its maxmemory and run this again ({why})"
        print(f"error: Redis failed: {why}" if isinstance(e, redis.RedisError) else f"error: {why}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
