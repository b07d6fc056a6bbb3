"""farm's own keys on a Redis Cluster: a redis-server in cluster mode (one
node owning every slot) refuses any script or transaction whose keys hash to
different slots (CROSSSLOT), as a real Cluster does. With the namespace
written as a hash tag (`{farm}`) every Store operation must pass it; with a
plain namespace the same operations are refused, which shows the check
bites. (tooz, which farm's membership runs on, has no Cluster client: see
docs/operations.md.)"""

import json

import pytest
import redis

from farm.errors import BackendUnavailable
from farm.model import Node, PollResult, PowerState, SelResult, SensorResult
from farm.sim.harness import RedisServer, wait_for
from farm.sim.ports import free_tcp_port
from farm.store import Store


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    # the cluster bus port defaults to port + 10000, past 65535 for high free ports
    server = RedisServer(work, config=["cluster-enabled yes", f"cluster-port {free_tcp_port()}",
                                       f"cluster-config-file {work}/nodes.conf"])
    server.start()
    r = redis.Redis(port=server.port)
    r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_for(lambda: b"cluster_state:ok" in r.execute_command("CLUSTER", "INFO"), 20,
             what="the one-node cluster to own every slot")
    yield server
    server.stop()


def every_operation(store):
    """Each Store call that takes several keys at once, as the daemons and
    the CLI make them."""
    nodes = [Node(f"n{i}", "127.0.0.1", 1000 + i, "u", "p") for i in range(3)]
    store.import_nodes(nodes)
    store.import_nodes(nodes[:2], replace=True)
    store.upgrade(force=True)
    store.write_results([PollResult("n0", 1.0, 0.01, PowerState.ON),
                         PollResult("n1", 1.0, 0.01, None, "timeout", "no answer")], worker="w")
    reading = {"key": "cpu", "name": "CPU Temp", "status": "ok", "value": 40.0, "unit": "C",
               "type": "temperature"}
    store.write_any([SensorResult("n0", 1.0, 0.01, (reading,)),
                     SelResult("n0", 1.0, 0.01, ({"id": 1, "at": 5, "description": "x"},),
                               (1, 5, 0, 0))], worker="w")
    assert store.sel_cursors(["n0", "n1"]) == {"n0": (1, 5, 0, 0)}
    assert store.set_control("n0", "desired", "me", desired="on")
    assert store.controls()[1]["n0"]["desired"] == "on"
    store.send_command("w", {"id": "c1"}, 5)
    raw, command = store.next_command("w", timeout=0.1)
    assert command == {"id": "c1"} and store.next_command("w", timeout=0.1)[1] == command
    store.ack_command("w", raw)
    assert store.next_command("w", timeout=0.1) is None
    store.reply("c1", {"ok": True})
    assert store.wait_reply("c1", 1) == {"ok": True}
    store.append_event({"node": "n0", "type": "action"})
    assert store.node_detail("n0")["sensors"]
    assert store.counts()["power"] == {"on": 1}
    assert store.name_page(limit=10) == (["n0", "n1"], 2)
    store.import_nodes([Node("n9", "127.0.0.1", 1009, "u", "p")])
    assert store.stale_names(store.server_time() + 1) == ["n0", "n1", "n9"]
    assert store.load_nodes()[0] >= 1
    assert store.fix_partitions(16) == 16
    epoch = store.hold_lease("c", 5)
    assert epoch >= 1
    assert store.publish_assignment("c", epoch, ["w"], {"default": ["w"] * 16}, 1.0) >= 1
    assert store.report_worker("w", {"host": "h"}, 5)[1] >= 1
    assert "w" in store.worker_reports()
    # a bulk action, its step taken, finished; another cancelled; a slot
    from farm.power.plan import Step
    now = store.server_time()
    store.create_action("a1", {"action": "on", "by": "me", "batch": 2, "interval": 1,
                               "waves": 1}, [Step("n0", 0, now - 1)])
    assert store.fleet_steps()["n0"][:2] == ("a1", "on")
    assert [t[:2] for t in store.claim_steps("a1", "w", 16, [("n0", 0)], 5, 0.3, 0.1)[0]] == [
        ("n0", 1)]
    assert store.finish_step("a1", "n0", "w", 1, "done", power_after="on")
    assert store.action("a1")["state"] == "done" and store.actions()[0]["id"] == "a1"
    store.create_action("a2", {"action": "off", "by": "me", "batch": 2, "interval": 1,
                               "waves": 1}, [Step("n9", 0, now + 60)])
    assert store.cancel_action("a2", "me") == ("running", 1)
    assert store.take_slots(3, 2, 1, "w:1")[0] == 2
    store.release_lease("c")
    assert store.remove_nodes(["n1"]) == 1


def test_every_operation_keeps_to_one_slot_with_a_tagged_namespace(cluster):
    store = Store(cluster.url, "{farm}")
    try:
        every_operation(store)
        assert json.loads(store.node_detail("n0")["state"].get("sel_cursor"))
    finally:
        store.close()


def test_a_plain_namespace_is_refused_by_a_cluster(cluster):
    store = Store(cluster.url, "plain")
    try:
        with pytest.raises(BackendUnavailable, match="CROSSSLOT|slot"):
            every_operation(store)
    finally:
        store.close()


def test_a_command_taken_when_redis_failed_is_taken_again(store):
    """The worker's command loop on a real Redis: the read of the control
    version right after the take fails once (a Redis blip); the command is
    not lost (it was popped, and gone, before LMOVE), it reaches the actor
    once, and leaves the taken list."""
    import threading
    import types

    from farm import errors
    from farm.worker import Worker
    handed, stopping = [], threading.Event()

    class Blip:
        failed = False

        def __getattr__(self, name):
            return getattr(store, name)

        def control_version(self):
            if not Blip.failed:
                Blip.failed = True
                raise errors.BackendUnavailable("Redis at x failed during control read")
            return store.control_version()

    def take_command(command, now, power):
        handed.append(command)
        stopping.set()
    me = types.SimpleNamespace(
        store=Blip(), stopping=stopping, my_id="w-blip", clock_skew=0.0, tasks={"power": 1},
        _follow_controls=lambda version: None, _drop_command=None,
        actor=types.SimpleNamespace(take_command=take_command))
    store.send_command("w-blip", {"id": "c9", "node": "n0"}, 30)
    loop = threading.Thread(target=Worker._watch_commands, args=(me,), daemon=True)
    loop.start()
    loop.join(20)
    assert not loop.is_alive() and Blip.failed
    assert handed == [{"id": "c9", "node": "n0"}]
    assert store.next_command("w-blip", timeout=0.1) is None
