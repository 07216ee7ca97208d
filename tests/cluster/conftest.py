"""A real Redis Cluster for the tests under tests/cluster: 3 primaries, 3 replicas, on loopback.

Started once per session from the embedded server's binary (``fanops.runtime.cluster``), each
test gets it emptied; a test that kills a node gets a fresh cluster afterwards.  Select these
tests with ``pytest -m cluster``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fanops.config import Config
from fanops.runtime import db
from fanops.runtime.cluster import LocalCluster, start_cluster

NODE_TIMEOUT_MS = 1000  # a killed primary's replica takes over after about this long


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.path).replace("\\", "/"):
            item.add_marker("cluster")


class Clusters:
    """The session's cluster; a test that broke it (killed a node) asks for a new one."""

    def __init__(self) -> None:
        self.current: LocalCluster | None = None

    def get(self) -> LocalCluster:
        if self.current is None or len(self.current.alive()) < len(self.current.ports):
            self.close()
            self.current = start_cluster(Path(tempfile.mkdtemp(prefix="fanops-cluster-")) / "c",
                                         node_timeout_ms=NODE_TIMEOUT_MS)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="session")
def clusters() -> Iterator[Clusters]:
    cs = Clusters()
    yield cs
    cs.close()


@pytest.fixture
def cluster(clusters: Clusters) -> LocalCluster:
    lc = clusters.get()
    c = db.client(lc.url)
    c.flushall()  # every primary
    c.script_flush()
    c.close()
    return lc


@pytest.fixture
def cr(cluster: LocalCluster) -> Iterator[redis.Redis]:
    c = db.client(cluster.url)
    yield c
    c.close()


@pytest.fixture
def ccfg(cluster: LocalCluster, tmp_path: Path) -> Config:
    return Config.from_env({}, redis_url=cluster.url, data_dir=tmp_path / "data", flush_ms=5)
