"""Two sites on separate networks (network namespaces this test makes and
removes): each site's BMC network is reachable only from inside the site,
Redis from both. Sites A and B have two workers each; a coordinator runs
beside Redis; a backup worker for A, with a route to A's BMC network, joins
later.

    core: redis, coordinator ---- a: workers A1, A2 ---- bmc-a: A's BMCs
        |    \\----------------- b: workers B1, B2 ---- bmc-b: B's BMCs
        \\---------------------- x: the backup worker --/ (a route to bmc-a)

What reaches the BMCs is counted inside each BMC network from the kernel's
copy of every packet (sniff.py), by source address; which worker read a
node, by farm in Redis."""

import dataclasses
import json
import os
import re
import signal
import sys
import time

import redis

from farm.fleet import inventory, views
from farm.sim.hardware import ControlJournal
from farm.store import Store
from farm.store.connection import SCRIPT_NAMES, SCRIPTS
from tests.conftest import free_tcp_port, script, wait_for, write_config
from tests.integration.netns import Networks

MEMBERSHIP_TIMEOUT, LEADER_TIMEOUT, INTERVAL = 3.0, 4.0, 1.0
NET = "10.251"


class UnixStore(Store):
    """A Store on Redis's unix socket: the test (outside every namespace)
    reads the Redis the namespaces reach over their links."""

    def __init__(self, path, password, namespace):
        super().__init__("redis://127.0.0.1:1", namespace)  # parsed only; replaced below
        self._redis = redis.Redis(unix_socket_path=path, password=password, decode_responses=True,
                                  socket_timeout=5)
        self._scripts = {name: self._redis.register_script(SCRIPTS[name]) for name in SCRIPT_NAMES}


class Sniffer:
    """sniff.py in a BMC network: packets received there by source."""

    def __init__(self, net, host, tmp_path):
        self.path = str(tmp_path / f"packets-{host}.json")
        net.spawn(host, [sys.executable, os.path.join(os.path.dirname(__file__), "sniff.py"),
                         self.path], tmp_path / f"sniff-{host}.log")
        wait_for(lambda: os.path.exists(self.path), 10, what=f"the packet counter in {host}")

    def counts(self):
        with open(self.path) as f:
            return json.load(f)

    def sources(self, prefix):
        """Packets from addresses starting with `prefix`."""
        return sum(n for src, n in self.counts().items() if src.startswith(prefix))


def topology():
    net = Networks(["core", "a", "b", "x", "bmca", "bmcb"])
    try:
        net.link("core", f"{NET}.1.1/24", "a", f"{NET}.1.2/24")
        net.link("core", f"{NET}.2.1/24", "b", f"{NET}.2.2/24")
        net.link("core", f"{NET}.3.1/24", "x", f"{NET}.3.2/24")
        net.link("a", f"{NET}.11.2/24", "bmca", f"{NET}.11.1/24")
        net.link("b", f"{NET}.21.2/24", "bmcb", f"{NET}.21.1/24")
        net.link("x", f"{NET}.12.2/24", "bmca", f"{NET}.12.1/24")
        net.route("x", f"{NET}.11.0/24", f"{NET}.12.1")  # the backup's route to A's BMCs
    except Exception:
        net.close()
        raise
    return net


def start_sim(net, tmp_path, host, address, count):
    """farm-sim's BMCs in `host`, journaling every power command they receive
    (tmp_path/controls-<host>.log)."""
    path = tmp_path / f"inventory-{host}.yaml"
    env = dict(os.environ, FARM_SIM_PASSWORD="sites-Pw-1")
    proc = net.spawn(host, [script("farm-sim"), "--count", str(count), "--address", address,
                            "--base-port", "16230", "--inventory", str(path),
                            "--control-log", str(tmp_path / f"controls-{host}.log")],
                     tmp_path / f"sim-{host}.log", env)
    wait_for(lambda: path.exists() or proc.poll() is not None, 30, what=f"farm-sim in {host}")
    assert proc.poll() is None, proc.log_path.read_text()
    return path


def test_each_site_is_served_only_from_where_its_bmcs_are_reachable(tmp_path):
    net = topology()
    try:
        run_sites(net, tmp_path)
    finally:
        net.close()


A_WORKERS, BACKUP, B_WORKERS = f"{NET}.11.2", f"{NET}.12.2", f"{NET}.21.2"


def run_sites(net, tmp_path):
    at_a, at_b = Sniffer(net, "bmca", tmp_path), Sniffer(net, "bmcb", tmp_path)

    def strangers():
        """Packets into each BMC network from anyone but its own site's
        workers (and, for A, its backup's address); the simulator's own
        traffic on the BMC host's loopback aside."""
        return (sum(n for src, n in at_a.counts().items()
                    if src not in (A_WORKERS, BACKUP) and not src.startswith("127.")),
                sum(n for src, n in at_b.counts().items()
                    if src != B_WORKERS and not src.startswith("127.")))

    sock, port = str(tmp_path / "redis.sock"), free_tcp_port()
    conf = tmp_path / "redis.conf"
    password = "sites-" + os.urandom(6).hex()  # off the loopback, Redis wants one
    conf.write_text(f"port {port}\nbind {NET}.1.1 {NET}.2.1 {NET}.3.1\nunixsocket {sock}\n"
                    f"unixsocketperm 700\nrequirepass {password}\nsave \"\"\nappendonly no\n"
                    f"dir {tmp_path}\n")
    net.spawn("core", ["redis-server", str(conf)], tmp_path / "redis.log")
    wait_for(lambda: os.path.exists(sock), 10, what="redis-server")
    store = UnixStore(sock, password, "sites")
    wait_for(lambda: store._redis.ping(), 10, what="redis-server to answer")

    # the two sites' BMCs, each on its own network, imported with their site
    nodes = []
    for host, address, site in (("bmca", f"{NET}.11.1", "A"), ("bmcb", f"{NET}.21.1", "B")):
        path = start_sim(net, tmp_path, host, address, 4)
        nodes += [dataclasses.replace(n, name=f"{site.lower()}-{n.name}", site=site)
                  for n in inventory.parse(path.read_text(), str(path))]
    store.import_nodes(nodes)
    site_of = {n.name: n.site for n in nodes}
    a_nodes = [n for n in nodes if n.site == "A"]
    b_nodes = [n for n in nodes if n.site == "B"]
    # with a desired state, a node whose polls fail goes into maintenance:
    # a dark site's nodes must not (nobody polls them)
    store.set_controls([n.name for n in nodes], "desired", "test", desired="on")

    coordination = {"membership_timeout": MEMBERSHIP_TIMEOUT, "leader_timeout": LEADER_TIMEOUT,
                    "partitions": 64}

    def config(name, via, **worker):
        return write_config(tmp_path / f"{name}.conf", f"redis://:{password}@{NET}.{via}.1:{port}",
                            "sites",
                            coordination, poll_interval=INTERVAL, bmc_timeout=1, **worker)

    core_cfg = config("core", 1)
    coordinator = net.spawn("core", [script("farm-coordinator"), "--config-file", core_cfg],
                            tmp_path / "coordinator.log")

    def worker(host, n, via, **sites):
        cfg = config(f"{host}{n}", via, **sites)
        return net.spawn(host, [script("farm-worker"), "--config-file", cfg],
                         tmp_path / f"worker-{host}{n}.log")

    a1, a2 = (worker("a", i, 1, sites="A") for i in (1, 2))
    b1, b2 = (worker("b", i, 2, sites="B") for i in (1, 2))

    def scrape():
        """The coordinator's metrics, fetched inside its namespace."""
        port = wait_for(lambda: re.search(r"metrics on http://127.0.0.1:(\d+)/",
                                          coordinator.log_path.read_text()), 20,
                        what="the coordinator's metrics port").group(1)
        return net.run("core", sys.executable, "-c", "import sys, urllib.request; print(urllib."
                       "request.urlopen(sys.argv[1], timeout=5).read().decode())",
                       f"http://127.0.0.1:{port}/metrics")

    def member(proc):
        return next((m for m in store.worker_reports() if f"-{proc.pid}-" in m), None)

    def states():
        return store.node_states([n.name for n in nodes])

    def read_by(group, workers, since, power="on"):
        """Every node of `group` read `power` after `since` (Redis's clock)
        by one of `workers`' members."""
        ids = {member(p) for p in workers}
        s = states()
        return all(float(s[n.name].get("seen_at") or 0) > since and s[n.name].get("worker") in ids
                   and s[n.name].get("power_state") == power for n in group)

    a = wait_for(lambda: (a := store.assignment()) and len(a["members"]) == 4 and a, 60,
                 what="an assignment of the four workers")
    assert set(a["placements"]["A"]) == {member(a1), member(a2)}
    assert set(a["placements"]["B"]) == {member(b1), member(b2)}
    since = store.server_time()
    wait_for(lambda: read_by(a_nodes, (a1, a2), since) and read_by(b_nodes, (b1, b2), since), 30,
             what="each site's nodes read by its own workers")
    report = views.status_report(store, INTERVAL, store.server_time())
    assert report["dark"] == [] and {r["site"]: r["nodes"] for r in report["sites"]} == {
        "A": 4, "B": 4}
    b_placement = a["placements"]["B"]

    # -- A's both workers killed: A is loud, its nodes unread, B untouched --
    for proc in (a1, a2):
        proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    dark = wait_for(lambda: views.status_report(store, INTERVAL, store.server_time())["dark"],
                    MEMBERSHIP_TIMEOUT + INTERVAL + 20, what="site A named dark")
    loud_after = time.monotonic() - killed
    assert dark == [{"site": "A", "nodes": 4}]
    out = net.run("core", script("farm"), "status", "--config-file", core_cfg)
    assert out.splitlines()[0].startswith("DARK SITE A: 4 nodes"), out
    # the gauge the alert reads, from the leader, once A's workers left the group
    wait_for(lambda: 'farm_site_nodes_unserved{site="A"} 4.0' in scrape(), MEMBERSHIP_TIMEOUT + 20,
             what="the leader's gauge for A")
    gauge_after = time.monotonic() - killed
    assert 'farm_site_nodes_unserved{site="B"} 0.0' in scrape()
    assert "site A has 4 nodes and no live worker" in coordinator.log_path.read_text()
    assert store.assignment()["placements"]["A"] == ()  # published before the gauge was set
    # nobody reads A's nodes while B's are read on (a positive signal first)
    since = store.server_time()
    a_seen = {n.name: states()[n.name].get("seen_at") for n in a_nodes}
    for _ in range(3):
        wait_for(lambda since=since: read_by(b_nodes, (b1, b2), since), 30, what="B read on")
        since = store.server_time()
    s = states()
    assert {n.name: s[n.name].get("seen_at") for n in a_nodes} == a_seen
    assert all(s[n.name].get("consecutive_failures") == "0" for n in nodes)
    controls = store.controls()[1]
    assert not any(controls[n.name].get("maintenance") for n in nodes), controls
    assert store.assignment()["placements"]["B"] == b_placement

    # -- a backup for A, routed to A's BMC network, takes A, then hands it back --
    x = worker("x", 1, 3, sites="spare", backup_sites="A")
    since = store.server_time()
    wait_for(lambda: read_by(a_nodes, (x,), since), 30, what="the backup reading A")
    assert views.status_report(store, INTERVAL, store.server_time())["dark"] == []
    assert at_a.sources(BACKUP) > 0
    a3 = worker("a", 3, 1, sites="A")
    since = store.server_time()
    wait_for(lambda: read_by(a_nodes, (a3,), since), 30, what="A's own worker back")
    assert set(store.assignment()["placements"]["A"]) == {member(a3)}
    wait_for(lambda: store.worker_reports()[member(x)].get("nodes") == 0, 30,
             what="the backup to let go of A")
    # its polls still in flight end within bmc_timeout (1 s): from one more
    # read of A by its own worker on, not a packet from the backup reaches A's BMCs
    for _ in range(2):  # (two reads: each node's interval is 1 s)
        since = store.server_time()
        wait_for(lambda since=since: read_by(a_nodes, (a3,), since), 30,
                 what="A read by its own worker")
    quiet = at_a.sources(BACKUP)
    for _ in range(3):
        since = store.server_time()
        wait_for(lambda since=since: read_by(a_nodes, (a3,), since), 30,
                 what="A read by its own worker")
    assert at_a.sources(BACKUP) == quiet
    assert strangers() == (0, 0)
    assert store.assignment()["placements"]["B"] == b_placement

    # -- a bulk power-off over both sites: each step sent by its site's worker --
    store.set_controls([n.name for n in nodes], "desired", "test", desired="")
    out = json.loads("[" + ",".join(net.run(
        "core", script("farm"), "nodes", "power", "all", "off", "--batch", "8", "--interval", "0",
        "--yes", "--json", "--config-file", core_cfg).split("\n")[:-1]) + "]")
    action_id = store.actions()[0]["id"]
    steps = store.action_steps(action_id)
    assert {n: st["state"] for n, st in steps.items()} == dict.fromkeys(site_of, "done"), out
    ours = {"A": {member(a3)}, "B": {member(b1), member(b2)}}
    assert all(steps[n]["worker"] in ours[site] for n, site in site_of.items()), steps
    wait_for(lambda: all(st.get("power_state") == "off" for st in states().values()), 30,
             what="every node read off")
    # as the BMCs' own journals count them: one command a BMC, and only "off"
    sent = [(host, name, action) for host in ("bmca", "bmcb")
            for _, name, action in ControlJournal.read(str(tmp_path / f"controls-{host}.log"))]
    assert sorted(sent) == sorted(("bmc" + n.site.lower(), n.name.split("-", 1)[1], "off")
                                  for n in nodes), sent

    # -- B cut off from Redis: its workers are fenced, nothing of B moves to A --
    a_placement = store.assignment()["placements"]["A"]
    net.run("b", "ip", "route", "add", "blackhole", f"{NET}.2.1/32")
    for proc in (b1, b2):
        wait_for(lambda proc=proc: "fenced:" in proc.log_path.read_text(), 30,
                 what="B's workers fenced")
    wait_for(lambda: store.assignment()["placements"]["B"] == (), MEMBERSHIP_TIMEOUT + 20,
             what="B's workers out of the placement")
    assert store.assignment()["placements"]["A"] == a_placement
    dark = views.status_report(store, INTERVAL, store.server_time())["dark"]
    assert dark == [{"site": "B", "nodes": 4}]
    since = store.server_time()
    wait_for(lambda: read_by(a_nodes, (a3,), since, "off"), 30, what="A read on")
    s = states()
    assert all(s[n.name].get("worker") not in {member(a3), member(x)} for n in b_nodes)
    assert all(s[n.name].get("consecutive_failures") == "0" for n in nodes)
    assert strangers() == (0, 0)
    print(json.dumps({"site A loud after (s)": round(loud_after, 1),
                      "the leader's gauge after (s)": round(gauge_after, 1),
                      "packets into A's BMC network": {
                          "A's BMCs": at_a.counts(), "B's BMCs": at_b.counts()},
                      "sites": site_of}))
