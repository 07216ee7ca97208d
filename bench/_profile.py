"""Optional sampling profiles of the benchmarks' child processes, with py-spy (not a dependency).

``pip install py-spy`` into the venv, then pass ``--profile DIR`` to a benchmark: each profiled
process gets ``DIR/<name>.txt`` (py-spy's collapsed stacks, idle time included, so that time
spent waiting on Redis shows) and a short summary of where its wall time went.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r" \(.*")


class Profiler:
    """``py-spy record`` attached to one process until ``stop()``."""

    def __init__(self, name: str, pid: int, out_dir: Path, rate: int = 100) -> None:
        # the venv's own, when the venv is not on PATH (python run as .venv/bin/python)
        exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if exe is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy (into the venv; not a requirement)")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out = out_dir / f"{name}.txt"
        self.proc = subprocess.Popen([exe, "record", "--idle", "-f", "raw", "-r", str(rate), "-o", str(self.out),
                                      "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return summarize(self.out, self.name)


# where a worker or consumer can be: the first frame (from the leaf up) that matches names the bucket
BUCKETS = (
    ("waiting on apply.lua (Redis)", ("ScriptCommands._evalsha",), "Worker._apply_batch"),
    ("score_batch (pure Python)", ("score_batch",), None),
    ("reads: pipelines, XREADGROUP (incl. BLOCK idle)",
     ("Pipeline.execute", "CoreCommands.xreadgroup", "StreamCommands.xreadgroup", "Redis.execute_command"), "Worker"),
    ("to_wire + encode_wire", ("to_wire", "encode_wire"), None),
    ("unpack_events", ("unpack_events",), None),
    ("worker glue (pairs, settings, decode)", ("Worker.score", "Worker._apply_batch"), None),
    ("ingest.lua call: build + send", ("IngestWriter.write_events", "AbstractConnection._send_packed_command"), None),
    ("parse_frame", ("parse_frame",), None),
    ("websocket receive + inflate", ("Protocol.receive_data", "Connection.__aiter__", "Connection.recv",
                                     "_SelectorSocketTransport._read_ready"), None),
    ("event loop idle (waiting on Redis or the feed)", ("EpollSelector.select",), None),
)


def summarize(path: Path, name: str, top: int = 6) -> str:
    """Share of the samples in a few named buckets, then the heaviest self frames."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return f"{name}: no profile"
    total = 0
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in lines:
        stack, _, n_s = line.rpartition(" ")
        if not n_s.isdigit():
            continue
        n = int(n_s)
        total += n
        frames = [_FRAME.sub("", f) for f in stack.split(";")]
        leaves[frames[-1]] += n
        joined = set(frames)
        for label, names, within in BUCKETS:
            if any(f in joined for f in names) and (within is None or any(within in f for f in frames)):
                buckets[label] += n
                break
        else:
            buckets["other"] += n
    if not total:
        return f"{name}: no samples"
    b = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in buckets.most_common())
    lf = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in leaves.most_common(top))
    return f"{name} ({total} samples, wall time): {b}\n    heaviest frames: {lf}"
