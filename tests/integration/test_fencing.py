"""One node, one actor: a worker cut off from Redis (a blackholed TCP path,
or SIGSTOP) stops acting on power once its acting lease runs out, while the
worker that took its nodes over keeps their desired state. Counted on the
BMCs' side: ipmi_sim's own log of every power change it made."""

import re
import signal
import subprocess
import time

import pytest

from farm.coordination.placement import partition_of
from farm.power.lease import acting_bound
from tests.conftest import metrics_of, script, wait_for, write_config
from tests.integration.test_openipmi import import_inventory
from tests.integration.test_tasks import events, farm
from tests.integration.test_worker import start_worker, stop_worker
from tests.netcut import NetCut

MEMBERSHIP = 3.0  # bound = 1 s: a takeover within seconds
# the default 1,024 partitions: each worker owns about half of the 10 nodes
# (16 partitions left a worker with none of 8 nodes now and then)
COORD = {"membership_timeout": MEMBERSHIP, "leader_timeout": 2}
COUNT = 10
POWER = {"power": {"settle_time": 1, "max_retries": 3}}


def worker_id(log):
    match = wait_for(lambda: re.search(r"farm-worker (\S+) starting", log.read_text()), 20,
                     what="the worker's id")
    return match.group(1)


def _fenced_at(log):
    """The epoch time of W1's 'fenced' log line (its asctime, local time)."""
    line = next(x for x in log.read_text().splitlines() if "fenced: no round trip" in x)
    stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    return stamp + int(line[20:23]) / 1000


@pytest.mark.parametrize("cut", ["blackhole", "sigstop"])
def test_a_worker_cut_off_from_redis_never_acts_after_its_lease(
        cut, ipmi_sims, store, redis_server, namespace, tmp_path):
    bmcs = ipmi_sims(COUNT, power_on=False)
    proxy = NetCut("127.0.0.1", redis_server.port).start()
    direct = write_config(tmp_path / "direct.conf", redis_server.url, namespace, COORD,
                          sections=POWER, poll_interval=0.5, bmc_timeout=2)
    cut_off = write_config(tmp_path / "cut.conf", f"redis://127.0.0.1:{proxy.port}", namespace,
                           COORD, sections=POWER, poll_interval=0.5, bmc_timeout=2)
    names = import_inventory(tmp_path, direct, bmcs)
    for name in names:
        assert farm(direct, "nodes", "desired", name, "off").returncode == 0
    coord_log = open(tmp_path / "coordinator.log", "w")
    coordinator = subprocess.Popen([script("farm-coordinator"), "--config-file", direct],
                                   stdout=coord_log, stderr=subprocess.STDOUT)
    w1, log1 = start_worker(tmp_path, cut_off, "w1.log")
    w2, log2 = start_worker(tmp_path, direct, "w2.log")
    try:
        id1, id2 = worker_id(log1), worker_id(log2)
        # both workers poll their share of a published assignment (before it
        # each polls everything, as a lone worker does)
        def settled():
            a = store.assignment()
            if not a or set(a["members"]) != {id1, id2}:
                return None
            owner = {n: a["placement"][partition_of(n, len(a["placement"]))] for n in names}
            states = store.node_states(names)
            return all(states[n].get("worker") == owner[n]
                       and float(states[n].get("polled_at", 0)) > a["published_at"]
                       for n in names) and owner
        theirs = wait_for(settled, 60, what="both workers polling their share")
        w1_nodes = [n for n, w in theirs.items() if w == id1]
        assert w1_nodes and len(w1_nodes) < len(names), theirs

        # the operator's command sent just before the cut, to one of W1's nodes
        # (whose desired state it first lets go of, so farm does not undo it)
        assert farm(direct, "nodes", "desired", w1_nodes[0], "none").returncode == 0
        wait_for(lambda: "desired" not in store.controls()[1].get(w1_nodes[0], {}), 10,
                 what="the desired state cleared")
        assert farm(direct, "nodes", "power", w1_nodes[0], "on", "--no-wait").returncode == 0
        t_cut = time.time()
        if cut == "blackhole":
            proxy.blackhole()
        else:
            w1.send_signal(signal.SIGSTOP)

        # W2 takes W1's nodes over
        def taken_over():
            states = store.node_states(w1_nodes)
            return all(s.get("worker") == id2 and float(s.get("polled_at", 0)) > t_cut
                       for s in states.values())
        wait_for(taken_over, 60, what="W2 polling W1's nodes")
        if cut == "blackhole":
            # noticed and logged while cut off
            wait_for(lambda: "fenced: no round trip to Redis" in log1.read_text(), 30,
                     what="W1 to say it is fenced")

        # the operator flips every node on; W2 keeps that
        for name in names:
            assert farm(direct, "nodes", "desired", name, "on").returncode == 0
        wait_for(lambda: all(b.power() == "on" for b in bmcs), 60, what="every node on")
        # W1 (cut off, desired state off in its memory) polls on: positive signal
        # first, every node polled again 3 s after it was on. A blackholed W1
        # is alive and says, from its own metrics, that it holds back
        # (farm_worker_fenced) before and after that window; a SIGSTOPped one
        # cannot act at all until SIGCONT, and after it the BMCs' log speaks.
        if cut == "blackhole":
            assert metrics_of(log1)["farm_worker_fenced"] == 1
        t_on = time.time()
        wait_for(lambda: all(float(s.get("polled_at", 0)) > t_on + 3
                             for s in store.node_states(names).values()),
                 60, what="three more seconds of polls with every node on")
        if cut == "blackhole":
            assert metrics_of(log1)["farm_worker_fenced"] == 1

        # heal: W1 comes back, rejoins, re-reads the assignment
        t_heal = time.time()
        if cut == "blackhole":
            proxy.heal()
        else:
            w1.send_signal(signal.SIGCONT)
        wait_for(lambda: any(s.get("worker") == id1 and float(s.get("polled_at", 0)) > t_heal
                             for s in store.node_states(names).values()), 90,
                 what="W1 polling again after the heal")
        if cut == "blackhole":
            # (a SIGSTOPped worker may renew its lease before its watcher
            # notices it ran out; its renewal reads the generation all the same)
            wait_for(lambda: "no longer fenced" in log1.read_text(), 30, what="W1 acting again")
        wait_for(lambda: all(float(s.get("polled_at", 0)) > time.time() - 2
                             for s in store.node_states(names).values())
                 and time.time() > t_heal + 5, 60, what="polls for a while after the heal")

        # Counted on the BMCs: no change but to on, and each node ends on
        for bmc, name in zip(bmcs, names, strict=True):
            changes = bmc.chassis_log()
            assert [v for _, v in changes if v == "off"] == [], (name, changes)
            assert bmc.power() == "on"
        controls = store.controls()[1]
        assert all(not controls[n].get("maintenance") for n in names), controls
        # no decision of W1's from before the heal was written: it only ever
        # had "off" to decide, and no "off" action event exists
        acted = [e for e in events(direct, "--type", "action") if e.get("action") == "off"]
        assert acted == [], acted
        if cut == "blackhole":
            # fenced within the lease's bound of the cut, plus the watcher's
            # half-second tick and the log's millisecond rounding
            fenced_after = _fenced_at(log1) - t_cut
            bound = acting_bound(MEMBERSHIP, COORD["leader_timeout"])
            assert -0.05 <= fenced_after <= bound + 0.5 + 0.2, (fenced_after, bound)
        assert "Traceback" not in log1.read_text()
    finally:
        if cut == "sigstop":
            w1.send_signal(signal.SIGCONT)
        proxy.heal()
        codes = [stop_worker(w) for w in (w1, w2)]
        coordinator.send_signal(signal.SIGTERM)
        coordinator.wait(20)
        proxy.stop()
        coord_log.close()
        assert codes == [0, 0], log1.read_text()[-3000:] + log2.read_text()[-2000:]
