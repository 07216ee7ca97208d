#!/usr/bin/env python3
"""Set-up and entry point on a fresh machine with only Python 3.11+ (stdlib only).

    python3 dev.py up     # the product: simulated room, consumer, scorer, app, on the embedded Redis
    python3 dev.py test   # the whole test suite

Creates ``.venv`` and installs ``requirements.txt`` into it the first time
(again whenever the file changes), then runs the command inside it.  Any
further arguments are passed on (``python3 dev.py up --rate 2000``,
``python3 dev.py test -k consumer``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
STAMP = VENV / ".requirements.sha256"


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on any python3 to say this
        sys.exit("error: Python 3.11 or newer is needed")
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != want:
        print("installing requirements.txt into .venv ...", flush=True)
        subprocess.check_call([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               "-r", str(ROOT / "requirements.txt")])
        STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "test"):
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cmd == "up":
        args = [str(PY), "-m", "fanops.runtime.launcher", *rest]
    else:
        # two workers (pytest-xdist), one per core: the process and browser tests mostly wait
        # on servers, so the suite takes about 6 minutes instead of 10 on this 2-core machine
        workers = [] if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in rest) else ["-n", "2"]
        args = [str(PY), "-m", "pytest", *workers, *rest]
    os.chdir(ROOT)
    os.execve(str(PY), args, env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
