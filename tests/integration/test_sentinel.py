"""Redis Sentinel: a real master, a replica and three redis-sentinel
processes. The master is killed (SIGKILL) under a running farm: the worker
keeps polling, state writes resume on the promoted replica, a coordinator
leads and publishes, no two coordinators publish for one epoch, nothing exits."""

import os
import re
import signal
import subprocess
import time

import pytest
import redis

from farm.errors import BackendUnavailable
from farm.store import Store
from tests.conftest import RedisServer, free_tcp_port, metrics_of, wait_for, write_config
from tests.integration.test_shutdown import start
from tests.integration.test_worker import import_sim

MASTER = "farmmaster"


class Sentinel:
    def __init__(self, tmp_path, master_port, index):
        self.port = free_tcp_port()
        path = tmp_path / f"sentinel-{index}.conf"
        path.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 10000\n")
        self.proc = subprocess.Popen(["redis-sentinel", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=1, decode_responses=True)

    def replicas(self):
        try:
            return self.client.sentinel_slaves(MASTER)
        except redis.RedisError:
            return []

    def master_port(self):
        try:
            return int(self.client.sentinel_get_master_addr_by_name(MASTER)[1])
        except (redis.RedisError, TypeError):
            return None


def scrape_polls(log_path):
    return sum(v for k, v in metrics_of(log_path).items() if k.startswith("farm_polls_total{"))


def tolerant(predicate):
    """The test's own reads may hit the failover window too."""
    def check():
        try:
            return predicate()
        except BackendUnavailable:
            return False
    return check


@pytest.fixture
def sentinel_redis(tmp_path):
    master = RedisServer(tmp_path / "m", ["repl-diskless-sync-delay 0"])
    replica = RedisServer(tmp_path / "r", [])
    for server in (master, replica):
        os.makedirs(server.tmpdir, exist_ok=True)
    master.start()
    replica.config = [f"replicaof 127.0.0.1 {master.port}"]
    replica.start()
    sentinels = [Sentinel(tmp_path, master.port, i) for i in range(3)]
    try:
        wait_for(lambda: all(s.replicas() for s in sentinels), 30, interval=0.2,
                 what="the sentinels to see the replica")
        replica_client = redis.Redis(port=replica.port, socket_timeout=1, decode_responses=True)
        wait_for(lambda: replica_client.info("replication").get("master_link_status") == "up", 30,
                 what="the replica's first sync")
        yield master, replica, sentinels
    finally:
        for s in sentinels:
            s.proc.kill()
            s.proc.wait(5)
        for server in (master, replica):
            server.stop(signal.SIGKILL)


def test_master_failover_under_a_running_farm(sentinel_redis, make_sim, tmp_path, namespace):
    master, replica, sentinels = sentinel_redis
    s1, s2, s3 = (s.port for s in sentinels)
    url = (f"redis://127.0.0.1:{s1}?sentinel={MASTER}&sentinel_fallback=127.0.0.1:{s2}"
           f"&sentinel_fallback=127.0.0.1:{s3}")
    sim = make_sim(4)
    store = Store(url, namespace)
    import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", url, namespace,
                       {"membership_timeout": 5, "leader_timeout": 4}, poll_interval=1, bmc_timeout=2)
    for d in ("w1", "w2", "c1", "c2"):
        os.makedirs(tmp_path / d)
    procs = [start("worker", cfg, tmp_path / "w1"), start("coordinator", cfg, tmp_path / "c1"),
             start("coordinator", cfg, tmp_path / "c2")]
    try:
        wait_for(lambda: store.assignment() is not None, 30, what="a first assignment")
        name = "bmc-%d" % sim.port(0)
        wait_for(lambda: store.node_states([name])[name].get("seen_at"), 30, what="a first write")
        polls_before = scrape_polls(procs[0].log_path)
        # Replication is asynchronous: what the master acknowledged but had
        # not sent yet is lost with it (docs/operations.md). The inventory
        # must have reached the replica for this test to be about failover.
        assert redis.Redis(port=master.port).wait(1, 5000) == 1

        killed = time.time()
        master.stop(signal.SIGKILL)
        procs.append(start("worker", cfg, tmp_path / "w2"))  # needs a new placement published
        polls_during = wait_for(lambda: (p := scrape_polls(procs[0].log_path)) > polls_before + 8 and p,
                                20, interval=0.2, what="polls while the master is down")
        wait_for(lambda: sentinels[0].master_port() == replica.port, 60, interval=0.2,
                 what="the sentinels to promote the replica")
        def written():
            t = float(store.node_states([name])[name].get("seen_at") or 0)
            return t > killed and t

        def published():
            a = store.assignment()
            return a and a["published_at"] > killed and len(a["members"]) == 2 and a
        first_write = wait_for(tolerant(written), 60, interval=0.1, what="a state write after the failover")
        published = wait_for(tolerant(published), 60, interval=0.1,
                             what="a generation published after the failover")
        print(f"master killed: first state write after {first_write - killed:.2f} s, first "
              f"generation published after {published['published_at'] - killed:.2f} s "
              f"({polls_during - polls_before:.0f} polls meanwhile)")
        assert all(p.poll() is None for p in procs), "a farm process exited"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        store.close()
    publishes = {}
    for p in procs:
        for epoch in re.findall(r"published generation \d+ \(epoch (\d+)\)", p.log_path.read_text()):
            publishes.setdefault(epoch, set()).add(str(p.log_path))
    assert publishes and all(len(who) == 1 for who in publishes.values()), publishes


def test_farm_api_async_reads_find_the_master_through_sentinel(sentinel_redis, namespace):
    """farm.store.aio (farm-api's /ipmi reads) asks the sentinels for the master."""
    import asyncio

    from farm.model import Node
    from farm.store.aio import AsyncReader
    master, replica, sentinels = sentinel_redis
    s1, s2 = sentinels[0].port, sentinels[1].port
    url = f"redis://127.0.0.1:{s1}?sentinel={MASTER}&sentinel_fallback=127.0.0.1:{s2}"
    Store(url, namespace).import_nodes([Node("n1", "127.0.0.1", 1623, "u", "p")])

    async def read():
        reader = AsyncReader(url, namespace)
        try:
            return await reader.exporter_view("n1"), await reader.exporter_view("absent")
        finally:
            await reader.close()
    (entry, _, _, _), (absent, _, _, _) = asyncio.run(read())
    assert entry["port"] == 1623 and absent is None
