"""The asyncio Redfish engine ([redfish] engine = asyncio): hung and slow
BMCs cost only their own slots, and what it reads equals what the thread
pool reads and what DMTF's Tacklebox reads."""

import asyncio
import os
import signal

import pytest

from farm import errors
from farm.bmc import redfish_data
from farm.bmc.redfish_aio import AsyncRedfishBmc, http_client
from farm.model import Node
from tests.conftest import wait_for, write_config
from tests.integration.test_redfish_dmtf import KINDS, mockup, sensors_of_tacklebox  # noqa: F401
from tests.integration.test_redfish_hostile import PASSWORD, USER, hostile, socket_buffers
from tests.integration.test_redfish_origin import Recorder, bmc_handler, servers  # noqa: F401
from tests.integration.test_tasks import sections, sim_stats
from tests.integration.test_worker import import_sim, start_worker, stop_worker


def loop_config(tmp_path, redis_server, namespace, engine="asyncio", tasks="power,sensors",
                redfish=(), **worker):
    return write_config(tmp_path / "farm.conf", redis_server.url, namespace, sections=sections(
        tasks={"enabled": tasks},
        redfish={"engine": engine, "pool_size": 4, **dict(redfish)}), **worker)


def test_hung_and_slow_bmcs_cost_only_their_slots(make_sim, store, redis_server, namespace,
                                                  tmp_path):
    """40 BMCs answering in 1 s, half of them hung, a pool_size of 4 (the
    threads engine's 4 threads would all wait on hung BMCs): every healthy
    node is read, and again, within a few intervals."""
    sim = make_sim(40, protocol="redfish", delay=1, hung_fraction=0.5, session_timeout=3600,
                   redfish_shape="current")
    nodes = import_sim(sim, store)
    cfg = loop_config(tmp_path, redis_server, namespace, poll_interval=3, bmc_timeout=8)
    proc, log = start_worker(tmp_path, cfg)
    try:
        def read_twice():
            states = store.node_states([n.name for n in nodes])
            good = [s for s in states.values() if s.get("power_state")]
            return len(good) == 20 and all(s.get("sensors_seen_at") for s in good) and good
        start = store.server_time()
        wait_for(read_twice, 60, what="every healthy node read")
        wait_for(lambda: all(float(s.get("seen_at") or 0) > start + 6 for s in read_twice() or []),
                 60, what="every healthy node read again")
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-3000:]


def test_a_first_contact_gets_the_login_deadline(make_sim, store, redis_server, namespace,
                                                 tmp_path):
    """Root, session, Systems and the system at 1.5 s each do not fit a
    4 s bmc_timeout; [redfish] login_timeout (30 s by default) holds a first
    contact, so each node's first poll reads it. Later polls (one GET)
    keep the 4 s."""
    sim = make_sim(4, protocol="redfish", delay=1.5, session_timeout=3600)
    nodes = import_sim(sim, store)
    cfg = loop_config(tmp_path, redis_server, namespace, tasks="power", poll_interval=8,
                      bmc_timeout=4)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(s.get("power_state") for s in
                             store.node_states([n.name for n in nodes]).values()),
                 60, what="every node read")
        failing = [f for _, f in store.read_events() if f.get("type") == "failing"]
        assert failing == []  # no first poll timed out
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-3000:]


def test_sensors_equal_tacklebox_and_power_reads(mockup):  # noqa: F811
    server = mockup("public-liquid-cooled-server")
    node = Node("dmtf", server.base, 0, "u", "p", driver="redfish")

    async def read():
        http = http_client(1)
        try:
            bmc = AsyncRedfishBmc(node, http)
            readings, watts = await bmc.sensors()
            again, _ = await bmc.sensors()
            return readings, watts, again, await bmc.power_state()
        finally:
            await http.close()
    readings, watts, again, power = asyncio.run(read())
    ours = {r["name"]: (r["value"], redfish_data.FARM_UNITS[r["unit"]], r["health"])
            for r in readings if redfish_data.FARM_UNITS.get(r["unit"]) in KINDS}
    assert ours == sensors_of_tacklebox(server.base)
    assert again == readings and watts == 374 and power == "on"


def run_async(node, method, timeout=10.0, **limits):
    """`method` of an AsyncRedfishBmc on `node`, on a loop of its own, within
    `timeout` (the engine's deadline does this in the worker)."""
    async def go():
        http = http_client(1)
        try:
            bmc = AsyncRedfishBmc(node, http, **limits)
            return await asyncio.wait_for(getattr(bmc, method)(), timeout)
        finally:
            await http.close()
    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["link", "redirect", "sessions"])
def test_the_aiohttp_client_never_leaves_the_bmcs_origin(servers, mode):  # noqa: F811
    Recorder.seen = []
    other = servers("127.0.0.3", Recorder)
    node = Node("r1", servers("127.0.0.1", bmc_handler(other, mode)), 0, USER, PASSWORD,
                driver="redfish")
    try:
        assert run_async(node, "power_state") == "on"  # it never followed that link
    except errors.BmcProtocolError as exc:
        assert PASSWORD not in str(exc)
    assert Recorder.seen == [], Recorder.seen  # not one request reached the other host


def test_the_aiohttp_client_caps_answers_and_a_drip_meets_the_deadline(servers):  # noqa: F811
    counts = {}
    with pytest.raises(errors.BmcProtocolError, match="max_answer_bytes"):
        run_async(Node("r1", servers("127.0.0.1", hostile("huge", counts)), 0, USER, PASSWORD,
                       driver="redfish"), "power_state", max_bytes=2**20)
    # what the BMC wrote before farm hung up: the cap, aiohttp's read-ahead
    # and what both sockets may buffer (this kernel's limits), not 200 MB
    assert counts["sent"] < 2**20 + socket_buffers() + 4 * 2**20, counts
    counts = {}
    with pytest.raises(asyncio.TimeoutError):
        run_async(Node("r1", servers("127.0.0.1", hostile("drip", counts)), 0, USER, PASSWORD,
                       driver="redfish"), "power_state", timeout=2.0)
    assert counts["sent"] < 100


def test_both_clients_read_dmtfs_log_as_the_server_serves_it(mockup):  # noqa: F811
    """The SEL path on a service nobody here wrote: DMTF's mockup server's
    Log1 (the only log of its system), read by the aiohttp client and the
    sushy one, equals the entries the server serves."""
    from farm.bmc.redfish import RedfishBmc
    server = mockup("public-liquid-cooled-server")
    node = Node("dmtf", server.base, 0, "u", "p", driver="redfish")
    log = "/redfish/v1/Systems/437XR1138R2/LogServices/Log1"
    served = [server.get(m["@odata.id"]) if set(m) == {"@odata.id"} else m
              for m in server.get(f"{log}/Entries")["Members"]]
    capacity = server.get(log).get("MaxNumberOfRecords")
    assert served
    entries, got_capacity = run_async(node, "log_entries")
    sync = RedfishBmc(node, 10.0)
    try:
        assert sync.log_entries() == (entries, got_capacity)
    finally:
        sync.close()
    assert [e["Id"] for e in entries] == [e["Id"] for e in served]
    assert [e.get("Message") for e in entries] == [e.get("Message") for e in served]
    assert got_capacity == capacity
    new, _, _ = redfish_data.new_entries(entries, None, 100, got_capacity)
    assert len(new) == len(served)


def bmc_connections(pid, ports):
    """The remote ports in `ports` that process `pid` holds TCP
    connections to (its socket inodes matched in /proc/net/tcp)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            port = int(fields[2].split(":")[1], 16)
            if fields[9] in inodes and fields[3] == "01" and port in ports:  # ESTABLISHED
                found.add(port)
    return found


def children_of(pid):
    """The poll processes of worker `pid` (spawned from any of its threads)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:  # a thread, or a child, may end while we look
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    with open(f"/proc/{child}/cmdline", "rb") as cmd:
                        if b"spawn_main" in cmd.read():
                            found.append(int(child))
        except OSError:
            continue
    return sorted(found)


def test_the_processes_executor_spreads_redfish_nodes_over_its_children(
        make_sim, store, redis_server, namespace, tmp_path):
    """executor = processes: each Redfish BMC is polled from one child
    (its kept connection there, none in the worker itself), the children
    share the BMCs, and a child's SIGKILL is replaced and its BMCs read
    again."""
    sim = make_sim(16, protocol="redfish", session_timeout=3600)
    nodes = import_sim(sim, store)
    ports = {sim.port(i) for i in range(sim.count)}
    cfg = loop_config(tmp_path, redis_server, namespace, tasks="power", poll_interval=1,
                      executor="processes", processes=2)
    proc, log = start_worker(tmp_path, cfg)
    try:
        names = [n.name for n in nodes]
        wait_for(lambda: all(s.get("power_state") for s in store.node_states(names).values()),
                 60, what="every node read")
        kids = wait_for(lambda: len(children_of(proc.pid)) >= 2 and children_of(proc.pid), 30,
                        what="two poll processes")
        held = wait_for(lambda: (lambda h: sum(map(len, h)) == sim.count and h)(
            [bmc_connections(k, ports) for k in kids]), 30, what="a connection to every BMC")
        assert all(held) and not held[0] & held[1]  # both serve; each BMC from one
        assert bmc_connections(proc.pid, ports) == set()  # none from the worker itself
        os.kill(kids[0], signal.SIGKILL)
        killed_at = store.server_time()
        wait_for(lambda: all(float(s.get("last_ok_at") or 0) > killed_at + 1
                             for s in store.node_states(names).values()),
                 60, what="every node read after the SIGKILL")
        assert "poll process 0" in log.read_text() or "poll process 1" in log.read_text()
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-3000:]


def test_a_worker_raises_its_open_files_to_the_hard_limit(redis_server, namespace, tmp_path):
    """A connection per Redfish BMC: a worker started from a shell whose
    soft limit is 256 runs with its hard limit (4,096 here)."""
    import resource
    import subprocess

    from tests.conftest import script
    cfg = loop_config(tmp_path, redis_server, namespace)
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen(
        [script("farm-worker"), "--config-file", cfg], stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096)))
    try:
        def soft_limit():
            with open(f"/proc/{proc.pid}/limits") as f:
                line = next(x for x in f if x.startswith("Max open files"))
            return int(line.split()[3])
        wait_for(lambda: "joined group" in (tmp_path / "worker.log").read_text(), 30,
                 what="the worker's start")  # its signal handlers are set by then
        assert "open files: at most 4096" in (tmp_path / "worker.log").read_text()
        assert soft_limit() == 4096
    finally:
        assert stop_worker(proc) == 0, (tmp_path / "worker.log").read_text()[-3000:]


@pytest.mark.parametrize("keep_alive", [True, False])
def test_keep_alive_keeps_one_connection_per_bmc_or_none_between_polls(
        keep_alive, make_sim, store, redis_server, namespace, tmp_path):
    """Counted at the BMCs: kept, a connection per BMC for many polls;
    [redfish] keep_alive = false, a connection per request (nothing held
    between polls)."""
    sim = make_sim(4, protocol="redfish", session_timeout=3600)
    nodes = import_sim(sim, store)
    cfg = loop_config(tmp_path, redis_server, namespace, tasks="power", poll_interval=0.5,
                      redfish={"keep_alive": str(keep_alive).lower()})
    proc, log = start_worker(tmp_path, cfg)
    try:
        start = store.server_time()
        wait_for(lambda: all(float(s.get("last_ok_at") or 0) > start + 3 for s in
                             store.node_states([n.name for n in nodes]).values()),
                 60, what="every node read for 3 s")
    finally:
        assert stop_worker(proc) == 0, log.read_text()[-3000:]
    stats = sim_stats(sim)
    assert stats["requests"] >= 4 * 6
    if keep_alive:
        assert stats["connections"] <= 4 + 2, stats
    else:
        assert stats["connections"] >= stats["requests"] - 4, stats


def test_a_node_whose_client_cannot_be_made_gets_its_poll_reported():
    """A verify_tls naming no file fails while its client is made: the poll
    is reported as failed, and the node's slot freed for the next one,
    never left running."""
    from farm.polling.redfish_engines import RedfishConfig, build
    from farm.polling.redfish_pool import SharedSessions
    got = []
    executor = build(RedfishConfig(), got.extend, SharedSessions(None))
    executor.start()
    try:
        node = Node("r1", "https://127.0.0.1:9", 0, USER, PASSWORD, driver="redfish",
                    verify_tls="/nonexistent/ca.pem")
        executor.submit([("power", node)])
        wait_for(lambda: len(got) == 1, 10, what="the poll reported")
        executor.submit([("power", node)])
        wait_for(lambda: len(got) == 2, 10, what="the next poll reported")
        assert all(o.error_kind for o in got) and executor.in_flight() == 0
    finally:
        executor.stop(5)
