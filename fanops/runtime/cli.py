"""Shared command-line plumbing: logging, ``--redis``, and errors turned into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

import redis

from fanops.config import cli_help
from fanops.errors import FanopsError


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (spec/cli.md: a command that
    cannot do its job exits non-zero with a one-line reason on standard error); exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {' '.join(message.split())} (see --help)\n")


def setup_logging(verbose: bool = False) -> None:
    level = os.environ.get("FANOPS_LOG", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


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
    except FanopsError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        code = 1
    except (OSError, redis.RedisError) as e:
        logging.getLogger(__name__).debug("failed", exc_info=True)
        why = _one_line(str(e)) or type(e).__name__
        print(f"error: Redis failed: {why}" if isinstance(e, redis.RedisError) else f"error: {why}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
