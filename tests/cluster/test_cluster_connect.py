"""Connecting to a Redis Cluster, the calls that span slots, and what a bad URL gets."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis.cluster

from fanops import heartbeat, keys, queue, read, rules_store
from fanops.config import Config
from fanops.errors import RedisUnavailable
from fanops.read import status
from fanops.runtime import db, server
from scoring import forget
from tests.pipeline import drain, ingest_frames
from tests.scoring.test_expiry import HOUR_S, _lurk, _pass
from tests.scoring.test_forget import SHOP, VID, _viewer_frames, hits
from tests.scoring.test_scoring_scenarios import Story


def _shops_on_every_primary(cluster) -> list[str]:
    """Shop ids whose slots sit on different primaries (one a primary)."""
    by_node: dict[int, str] = {}
    for i in range(200):
        by_node.setdefault(cluster.primary_of(keys.rules(f"shop-{i}")), f"shop-{i}")
    assert len(by_node) == 3
    return sorted(by_node.values())


def test_a_cluster_url_serves_shops_on_every_primary_and_reads_across_them(cluster, cr, ccfg):
    r = db.connect(ccfg)
    assert isinstance(r, redis.cluster.RedisCluster)
    shops = _shops_on_every_primary(cluster)
    for n, shop in enumerate(shops):  # a guarded save: WATCH and MULTI on the shop's node
        rules_store.save(r, shop, {"active_orders": 3 + n}, expected_version=0, by="op")
    assert [rules_store.load(r, s)[0].active_orders for s in shops] == [3, 4, 5]
    p = r.pipeline(transaction=False)
    for shop in shops:  # heartbeats named like the shops: their keys sit on different nodes too
        heartbeat.queue_beat(p, "scorer", shop, {"name": shop}, 60)
    p.execute()
    assert len({cluster.primary_of(keys.heartbeat("scorer", s)) for s in shops}) > 1
    assert sorted(b["name"] for b in read.heartbeats(r, "scorer")) == shops


def test_a_cluster_url_naming_a_single_server_is_refused_with_a_clear_error(redis_url, tmp_path):
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    url = f"redis+cluster://127.0.0.1:{port}"
    with pytest.raises(RedisUnavailable, match="no cluster, use redis://"):
        db.connect(Config.from_env({}, redis_url=url, data_dir=tmp_path))


@pytest.mark.parametrize("scheme", ["redis+cluster", "rediss+cluster"])
def test_an_unreachable_cluster_is_one_line_without_the_password(scheme, tmp_path):
    url = f"{scheme}://:s3cret@127.0.0.1:{server.free_port()}"
    cfg = Config.from_env({}, redis_url=url, data_dir=tmp_path)
    for attempt in (lambda: db.connect(cfg), lambda: asyncio.run(db.connect_async(cfg))):
        with pytest.raises(RedisUnavailable) as e:
            attempt()
        assert "s3cret" not in str(e.value) and f"{scheme}://***@127.0.0.1" in str(e.value)
        assert "\n" not in str(e.value)


def test_forget_on_a_cluster_leaves_the_viewer_on_no_node_and_in_no_nodes_files(cluster, cr, ccfg):
    ingest_frames(ccfg, list(_viewer_frames()))
    drain(cr, ccfg)
    folders = [Path(ccfg.data_dir), cluster.root]
    found = hits(cr, folders)
    assert any("/appendonlydir/" in h for h in found) and any("redis fo:{!dead}" in h for h in found), found
    got = forget.forget_viewer(cr, ccfg, SHOP, VID)
    assert got["removed"]["viewer_state"] == 1 and got["removed"]["dead_letters"] == 1, json.dumps(got)
    assert got["aof_rewritten"] and got["rdb_saved"]  # on every node: primaries and replicas
    assert hits(cr, folders) == []


def test_a_task_on_a_cluster_is_claimed_released_and_expires(cr, ccfg):
    story = Story(cr, ccfg)
    _lurk(story)
    tid = queue.task_id("r-1", "lurker")
    op = queue.Operator(cr, SHOP, "ana")
    op.claim(tid)
    assert story.task_state("r-1", "lurker") == "claimed"
    op.release(tid)
    _pass(story, time.time() + 73 * HOUR_S)  # expiry: the task script pipelined on the shop's node
    assert story.task_state("r-1", "lurker") == "expired"
    assert status(cr, SHOP, "r-1")["room"]["followups"]["expired"] == 1


def test_a_cluster_url_with_a_database_number_says_a_cluster_has_only_db_0(tmp_path):
    cfg = Config.from_env({}, redis_url=f"redis+cluster://127.0.0.1:{server.free_port()}/1", data_dir=tmp_path)
    with pytest.raises(RedisUnavailable, match="can only be 0 in cluster mode"):
        db.connect(cfg)


def test_a_cluster_whose_primary_would_evict_keys_when_full_is_refused_and_its_fullness_read(cluster, ccfg):
    from fanops.errors import RedisEvicts
    from fanops.runtime import memory

    r = db.connect(ccfg)
    assert len(memory.read(r)) == 3  # every primary, no replica
    node = redis.Redis(port=cluster.primary_of(keys.rules("default")))
    node.config_set("maxmemory", 512 * 2**20)
    try:
        full = memory.fullest(memory.read(r))
        assert full is not None and full.limit == 512 * 2**20 and 0 < full.used < full.limit
        node.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(RedisEvicts, match="allkeys-lru"):
            db.connect(ccfg)
        with pytest.raises(RedisEvicts, match="noeviction"):
            asyncio.run(db.connect_async(ccfg))
    finally:
        node.config_set("maxmemory-policy", "noeviction")
        node.config_set("maxmemory", 0)
    db.connect(ccfg).close()
