"""farm-worker as a real process polling a simulated fleet, both executors."""

import os
import signal
import subprocess
import time

import pytest

from farm.fleet import inventory
from farm.sim.fleet import pick
from tests.conftest import metrics_of, script, wait_for, write_config


def start_worker(tmp_path, cfg, log_name="worker.log"):
    log = open(tmp_path / log_name, "w")
    proc = subprocess.Popen([script("farm-worker"), "--config-file", cfg],
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, tmp_path / log_name


def stop_worker(proc, timeout=15):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("farm-worker did not stop on SIGTERM") from None


def import_sim(sim, store):
    with open(sim.inventory) as f:
        nodes = inventory.parse(f.read(), sim.inventory)
    store.import_nodes(nodes)
    return nodes


def states(store, nodes):
    return store.node_states([n.name for n in nodes])


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_polls_every_node_and_sees_power_flips(executor, make_sim, store, redis_server,
                                               namespace, tmp_path):
    sim = make_sim(30, off_fraction=0.2)
    nodes = import_sim(sim, store)
    off = {nodes[i].name for i in pick(30, 0.2, 1)}
    interval = 1.0
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, executor=executor,
                       poll_interval=interval, bmc_timeout=1.0)
    proc, log = start_worker(tmp_path, cfg)
    try:
        def all_polled():
            s = states(store, nodes)
            return all(v.get("power_state") for v in s.values()) and s
        s = wait_for(all_polled, 60, what="every node polled")
        assert {n for n, v in s.items() if v["power_state"] == "off"} == off
        assert all(v["reachable"] == "1" and v["consecutive_failures"] == "0" for v in s.values())
        target = sorted(set(n.name for n in nodes) - off)[0]
        index = [n.name for n in nodes].index(target)
        assert sim.ipmitool(index, "chassis", "power", "off").returncode == 0
        flipped_at = time.monotonic()
        wait_for(lambda: store.node_states([target])[target]["power_state"] == "off",
                 interval * 3 + 2, what="the power flip to show")
        seen_after = time.monotonic() - flipped_at
        events = [f for _, f in store.read_events(count=10000) if f["node"] == target]
        assert [(e["type"], e["from"], e["to"]) for e in events] == [("power", "", "on"),
                                                                     ("power", "on", "off")]
        # one interval, plus the result flush and this test's own polling
        assert seen_after <= interval + 1.0, seen_after
    finally:
        rc = stop_worker(proc)
    assert rc == 0, log.read_text()[-2000:]


def test_hung_bmcs_do_not_delay_healthy_ones(make_sim, store, redis_server, namespace, tmp_path):
    """10 % never answer; every healthy node is still polled every interval."""
    sim = make_sim(100, hung_fraction=0.1)
    nodes = import_sim(sim, store)
    hung = {nodes[i].name for i in pick(100, 0.1, 0)}
    healthy = [n for n in nodes if n.name not in hung]
    interval = 2.0
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, executor="threads",
                       poll_interval=interval, bmc_timeout=1.5)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(v.get("polled_at") for v in states(store, nodes).values()), 30,
                 what="a first poll of every node")
        seen = {n.name: [] for n in healthy}
        end = time.monotonic() + 5 * interval
        while time.monotonic() < end:
            for name, v in states(store, healthy).items():
                at = float(v["polled_at"])
                if not seen[name] or seen[name][-1] != at:
                    seen[name].append(at)
            time.sleep(0.1)
        gaps = [b - a for times in seen.values() for a, b in zip(times, times[1:], strict=False)]
        assert min(len(t) for t in seen.values()) >= 4
        assert max(gaps) <= interval + 0.5, f"longest gap {max(gaps):.2f}s"
        s = states(store, nodes)
        assert {n for n, v in s.items() if v.get("error_kind") == "timeout"} == hung
        assert all(s[n.name]["power_state"] == "on" for n in healthy)
    finally:
        rc = stop_worker(proc)
    assert rc == 0


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _is_pool_child(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            cmdline = f.read()
    except OSError:
        return False
    return "spawn_main" in cmdline and "resource_tracker" not in cmdline


def test_killed_child_is_replaced(make_sim, store, redis_server, namespace, tmp_path):
    sim = make_sim(10)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, executor="processes",
                       poll_interval=0.5, bmc_timeout=1.0, processes=2)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(v.get("power_state") for v in states(store, nodes).values()), 60,
                 what="every node polled")
        victims = wait_for(lambda: [c for c in _children(proc.pid) if _is_pool_child(c)],
                           10, what="pool children")
        os.kill(victims[0], signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: "died with exit code" in log.read_text(), 10,
                 what="the child to be replaced")

        def all_polled_since():
            return all(float(v["polled_at"]) > killed_at + 0.2 and v["reachable"] == "1"
                       for v in states(store, nodes).values())
        wait_for(all_polled_since, 20, what="every node polled after the kill")
        assert proc.poll() is None
    finally:
        rc = stop_worker(proc)
    assert rc == 0


def test_worker_survives_redis_down_at_start(make_sim, tmp_path, namespace):
    from farm.store import Store
    from tests.conftest import RedisServer
    server = RedisServer(tmp_path)
    cfg = write_config(tmp_path / "farm.conf", server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1.0)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: "cannot reach Redis" in log.read_text(), 15, what="an outage logged")
        assert proc.poll() is None
        server.start()
        sim = make_sim(3)
        store = Store(server.url, namespace)
        nodes = import_sim(sim, store)
        wait_for(lambda: all(v.get("power_state") for v in states(store, nodes).values()), 45,
                 what="polling once Redis is up")
    finally:
        rc = stop_worker(proc)
        server.stop()
    assert rc == 0


def test_inventory_changes_reach_a_running_worker(make_sim, store, redis_server, namespace, tmp_path):
    sim = make_sim(6)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1.0)
    with open(cfg, "a") as f:
        f.write("[metrics]\nper_node_series = true\n")
    store.import_nodes(nodes[:3], replace=True)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(v.get("power_state") for v in states(store, nodes[:3]).values()), 30,
                 what="the first three nodes polled")
        store.import_nodes(nodes[2:], replace=True)
        wait_for(lambda: all(v.get("power_state") for v in states(store, nodes[2:]).values()), 30,
                 what="the added nodes polled")
        # positive signal: the worker's own series follow the new set (it
        # dropped the removed nodes; their state stays empty)
        def follows():
            series = metrics_of(log)
            return (all(f'farm_node_power_state{{node="{n.name}"}}' in series for n in nodes[2:])
                    and not any(f'farm_node_power_state{{node="{n.name}"}}' in series for n in nodes[:2]))
        wait_for(follows, 20, what="the worker's series to drop the removed nodes")
        assert states(store, nodes[:2]) == {nodes[0].name: {}, nodes[1].name: {}}
        assert "polling 4 nodes" in log.read_text()
    finally:
        assert stop_worker(proc) == 0


def test_redis_restart_without_persistence(make_sim, tmp_path, namespace):
    """Redis dies (SIGKILL) and comes back empty: the worker keeps its nodes,
    never exits, and writes again once the inventory is re-imported."""
    from farm.store import Store
    from tests.conftest import RedisServer
    server = RedisServer(tmp_path)
    server.start()
    sim = make_sim(4)
    store = Store(server.url, namespace)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1.0)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(v.get("power_state") for v in states(store, nodes).values()), 30,
                 what="every node polled")
        server.stop(signal.SIGKILL)
        wait_for(lambda: "cannot" in log.read_text(), 15, what="the outage to be noticed")
        # positive signal that it lives on through the outage: its metrics still answer
        ok = 'farm_polls_total{driver="ipmi",result="ok"}'
        polls = metrics_of(log).get(ok, 0)
        wait_for(lambda: metrics_of(log).get(ok, 0) > polls + 4, 15,
                 what="polls while Redis is down")
        assert proc.poll() is None
        server.start()
        wait_for(lambda: "Redis lost its data" in log.read_text(), 15, what="the empty inventory noticed")
        back = time.time()
        import_sim(sim, store)
        wait_for(lambda: all(float(v.get("polled_at") or 0) > back for v in states(store, nodes).values()),
                 15, what="polls written after the restart")
        assert proc.poll() is None
    finally:
        rc = stop_worker(proc)
        server.stop()
    assert rc == 0


def test_passwords_never_leak(make_sim, store, redis_server, namespace, tmp_path):
    """Healthy, hung and wrong-password nodes, DEBUG logging: the passwords
    appear in no log line, no stored state, no CLI output."""
    import dataclasses
    sim = make_sim(4, hung_fraction=0.25)
    nodes = import_sim(sim, store)
    wrong = "Wr0ng-" + sim.password[::-1]
    nodes[-1] = dataclasses.replace(nodes[-1], password=wrong)
    store.import_nodes(nodes)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1.0)
    with open(cfg, "a") as f:
        f.write("[logging]\nlevel = DEBUG\n")
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: {v.get("error_kind") for v in states(store, nodes).values()} >= {"auth", "timeout"},
                 30, what="auth and timeout failures")
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            argv = f.read().decode()
    finally:
        assert stop_worker(proc) == 0
    listing = subprocess.run([script("farm"), "nodes", "list", "--config-file", cfg, "--json"],
                             capture_output=True, text=True, timeout=30)
    texts = [log.read_text(), repr(states(store, nodes)), listing.stdout + listing.stderr, argv]
    assert "DEBUG" in texts[0]
    for secret in (sim.password, wrong):
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_one_kept_session_per_bmc(executor, make_sim, store, redis_server, namespace, tmp_path):
    """Many polls per node, one login per BMC: the processes executor routes a
    node to one child, so its session lives there."""
    sim = make_sim(20)
    import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, executor=executor,
                       processes=2, poll_interval=0.3, bmc_timeout=2.0)
    proc, log = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: metrics_of(log).get("farm_polls_total{driver=\"ipmi\",result=\"ok\"}", 0) >= 200, 60,
                 what="ten polls per node")
        values = metrics_of(log)
        assert values["farm_bmc_logins_total"] == 20, values["farm_bmc_logins_total"]
        assert values["farm_bmc_endpoints"] == 20
    finally:
        assert stop_worker(proc) == 0
