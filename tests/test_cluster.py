"""Scale-out: the same code against a real 3-master Redis Cluster, broadcast by two workers at once."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import redis

from core.keys import SHARDS
from nabaa.embedded_redis import find_redis_server
from tests.conftest import api_client, auth, drain
from tests.fakepush import FakePushService

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free and valid too."""
    import random
    import socket

    for _ in range(200):
        port = random.randint(20000, 50000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture
def cluster(tmp_path):
    """Three masters on free ports, slots split in three, joined with CLUSTER MEET."""
    ports = [cluster_port() for _ in range(3)]
    processes = []
    for port in ports:
        directory = tmp_path / f"node{port}"
        directory.mkdir()
        processes.append(subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory), "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        clients = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        deadline = time.monotonic() + 10
        while True:
            try:
                [client.ping() for client in clients]
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        share = SLOTS // 3
        for index, client in enumerate(clients):
            last = SLOTS - 1 if index == 2 else (index + 1) * share - 1
            client.execute_command("CLUSTER", "ADDSLOTS", *range(index * share, last + 1))
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        deadline = time.monotonic() + 20
        while not all(c.execute_command("CLUSTER", "INFO").decode().find("cluster_state:ok") >= 0 for c in clients):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        yield f"redis+cluster://127.0.0.1:{ports[0]}/0", clients
    finally:
        for process in processes:
            process.kill()
            process.wait()


async def test_broadcast_through_a_three_master_cluster_with_two_workers(cluster, make_settings):
    url, clients = cluster
    async with FakePushService() as fake:
        settings = make_settings(redis_url=url, push_allowed_hosts=[f"127.0.0.1:{fake.port}"])
        subscribers = [fake.new_subscriber() for _ in range(150)]
        async with api_client(settings) as client:
            for sub in subscribers:
                answer = await client.post("/api/v1/subscriptions", json=sub.subscription_json())
                assert answer.status_code == 201, answer.text
            stats = (await client.get("/api/v1/stats", headers=auth())).json()
            assert stats["subscriptions"] == 150
            alert_id = (await client.post("/api/v1/alerts", headers=auth(), json={"title": "عبر العنقود"})).json()["id"]
            await asyncio.gather(drain(settings), drain(settings))
            alert = (await client.get(f"/api/v1/alerts/{alert_id}", headers=auth())).json()
    assert alert["status"] == "done", alert
    assert alert["counts"]["targeted"] == alert["counts"]["sent"] == 150
    for sub in subscribers:
        assert [m["title"] for m in fake.messages_for(sub)] == ["عبر العنقود"]
    # The subscription shards really are spread over the three masters.
    holders = [sum(1 for _ in c.scan_iter(match=f"{{{settings.redis_prefix}:s*}}:subs", count=1000)) for c in clients]
    assert all(holders) and sum(holders) <= SHARDS, holders
