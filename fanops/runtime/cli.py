"""Shared command-line plumbing: logging, ``--redis``, and errors turned into one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from fanops.config import cli_help
from fanops.errors import FanopsError


def setup_logging(verbose: bool = False) -> None:
    level = os.environ.get("FANOPS_LOG", "DEBUG" if verbose else "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", metavar="URL", default=None, help=cli_help("redis_url"))
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")


def run(main: Callable[[], int]) -> None:
    """Run a CLI entry point: a FanopsError is one line on stderr and exit code 1."""
    try:
        code = main()
    except FanopsError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
