"""Where the product keeps its files: one escaping of shop and room ids into folder names, and the
durable writes of its files (replace at once, fsynced; one writer a folder at a time)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def fs_name(part: str) -> str:
    """A shop or room id as one safe folder name: percent-escaped, never ``.``/``..``, at most 120 chars."""
    s = urllib.parse.quote(part, safe="-_.").replace("~", "%7E")
    if s.startswith("."):
        s = "%2E" + s[1:]
    if not s:
        s = "%00empty"
    if len(s) > 120:
        s = s[:100] + "~" + hashlib.sha256(part.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return s


def fsync_dir(d: Path) -> None:
    """Make the folder's entries (a file just put or removed) durable."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def put_atomic(path: Path, write: Callable[[Any], object]) -> None:
    """Replace ``path`` at once by what ``write(file)`` writes: a temp file beside it, fsynced, then
    ``os.replace`` (readers see the old file or the new one, never half of one).  The folder is
    not fsynced: ``fsync_dir`` once after a set of files."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def dir_lock(d: Path) -> Iterator[None]:
    """The folder's lock (``d/.lock``, created with the folder): one process at a time changes its files."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
