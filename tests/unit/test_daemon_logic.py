"""The worker's sync, the coordinator's step and the result writer, run
in-process against in-memory stand-ins (tests/memory.py)."""

import pytest

from farm import conf, errors
from farm.coordination import placement
from farm.coordination.identity import groups
from farm.coordinator import Coordinator
from farm.model import Node, PollResult, PowerState
from farm.polling.results import ResultWriter
from farm.worker import Worker
from tests.memory import MemoryMembership, MemoryStore

NODES = [Node(f"n{i}", "127.0.0.1", 1000 + i, "u", "p") for i in range(40)]


def settings(tmp_path, **coordination):
    f = tmp_path / "farm.conf"
    lines = ["[coordination]", "namespace = t", "partitions = 16", "membership_timeout = 5"]
    lines += [f"{k} = {v}" for k, v in coordination.items()]
    f.write_text("\n".join(lines) + "\n[metrics]\nenabled = false\n")
    return conf.load(str(f))


def worker(tmp_path, store, my_id="w1"):
    return Worker(settings(tmp_path), store, MemoryMembership(my_id), my_id=my_id)


def test_sync_polls_everything_until_an_assignment_then_only_its_share(tmp_path):
    store = MemoryStore()
    store.set_nodes(NODES)
    w = worker(tmp_path, store)
    assert w.sync() is True and w.nodes == NODES  # no coordinator yet: the whole inventory
    assert w.sync() is False  # nothing changed: nothing recomputed
    owners = tuple("w1" if p % 2 else "w2" for p in range(16))
    store.publish(["w1", "w2"], owners)
    assert w.sync() is True
    assert w.nodes == [n for n in NODES if owners[placement.partition_of(n.name, 16)] == "w1"]
    assert 0 < len(w.nodes) < len(NODES)


def test_sync_keeps_what_it_knows_when_redis_lost_its_data(tmp_path):
    store = MemoryStore()
    store.set_nodes(NODES)
    store.publish(["w1"], ("w1",) * 16)
    w = worker(tmp_path, store)
    w.sync()
    polled = list(w.nodes)
    # Redis restarted empty: version back to 0, no inventory, no assignment
    store.version, store.nodes, store._assignment, store.generation = 0, [], None, 0
    w.sync()
    assert w.nodes == polled and w.assignment is not None


def test_sync_stops_on_refused_credentials_and_keeps_nodes_on_a_lagging_key(tmp_path, monkeypatch):
    store = MemoryStore()
    store.set_nodes(NODES)
    w = worker(tmp_path, store)
    refused = errors.CredentialsError("node n1: its password is sealed with a key not in k")
    calls = []

    def load(passwords=False):
        calls.append(1)
        raise refused
    monkeypatch.setattr(store, "load_nodes", load)
    with pytest.raises(errors.CredentialsError):
        w.sync()  # at start: the daemon exits with one line
    monkeypatch.undo()
    w.sync()
    known = list(w.nodes)
    store.set_nodes(NODES[:5])
    monkeypatch.setattr(store, "load_nodes", load)
    w.sync()  # a rotation this host's key file missed: keep polling, retry later
    w.sync()
    assert w.nodes == known and len(calls) == 2  # one attempt, then the retry waits
    w.writer.refused = errors.BackendRefused("NOPERM")
    with pytest.raises(errors.BackendRefused):
        w.sync()


def coordinator(tmp_path, store, member, shared, elect=True):
    s = settings(tmp_path, leader_timeout=4)
    return Coordinator(s, store, MemoryMembership(member, shared, elect=elect), member)


def test_coordinator_settles_then_publishes_and_is_fenced(tmp_path):
    store, shared = MemoryStore(), {}
    workers_group, _ = groups("t")
    shared[workers_group] = {"w1": {"pool_size": 16}, "w2": {"pool_size": 16}}
    store.publish(["w1", "w2", "w3"], ("w1",) * 16)  # w3 is re-joining after a restart
    c = coordinator(tmp_path, store, "c1", shared)
    generation = store.generation
    c.step()
    assert c.leading and store.generation == generation  # settling: w3 may be back soon
    c.settle_until = 0.0  # the membership timeout passed
    c.step()
    assert store.generation == generation + 1
    assert set(store.assignment()["members"]) == {"w1", "w2"}
    c.step()
    assert store.generation == generation + 1  # nothing changed: nothing published
    store.lease = "c2"  # paused past its lease; another coordinator took it
    shared[workers_group]["w3"] = {"pool_size": 16}
    c.step()
    assert not c.leading and store.generation == generation + 1  # fenced out


def test_the_leader_places_each_site_and_counts_a_dark_sites_nodes(tmp_path, caplog):
    caplog.set_level("INFO", "farm.coordinator")
    store, shared = MemoryStore(), {}
    workers_group, _ = groups("t")
    shared[workers_group] = {"a1": {"sites": ["dcA"]}, "b1": {"sites": ["dcB"]}}
    store.set_nodes([Node(f"n{i}", "10.0.0.1", 1000 + i, "u", "p", site=site)
                        for i, site in enumerate(["dcA"] * 3 + ["dcB"] * 2)])
    c = coordinator(tmp_path, store, "c1", shared)
    c.step()
    assert store.upgraded == 1  # a farm from before sites: its site sets built first
    c.settle_until = 0.0  # the membership timeout passed
    a = store.assignment()
    assert set(a["placements"]["dcA"]) == {"a1"} and set(a["placements"]["dcB"]) == {"b1"}

    def unserved(site):
        return c.metrics.registry.get_sample_value("farm_site_nodes_unserved", {"site": site})
    assert (unserved("dcA"), unserved("dcB")) == (0, 0)
    del shared[workers_group]["b1"]  # dcB's last worker left; a1 does not back it up
    c.step()
    a = store.assignment()
    assert a["placements"]["dcB"] == () and set(a["placements"]["dcA"]) == {"a1"}
    assert (unserved("dcA"), unserved("dcB")) == (0, 2)
    assert "site dcB has 2 nodes and no live worker" in caplog.text
    shared[workers_group]["a1"] = {"sites": ["dcA"], "backup_sites": ["dcB"]}
    c.step()
    assert set(store.assignment()["placements"]["dcB"]) == {"a1"} and unserved("dcB") == 0
    assert "site dcB is served again" in caplog.text
    store.lease = "c2"  # no longer leading: the gauge speaks for nobody
    c.step()
    assert unserved("dcB") is None


def test_a_coordinator_not_elected_never_publishes(tmp_path):
    store, shared = MemoryStore(), {}
    workers_group, _ = groups("t")
    shared[workers_group] = {"w1": {}}
    c = coordinator(tmp_path, store, "c2", shared, elect=False)
    c.step()
    assert not c.leading and store.generation == 0 and store.lease is None


def test_result_writer_keeps_the_newest_per_node_through_an_outage():
    store = MemoryStore()
    writer = ResultWriter(store, flush_interval=0.01)
    store.down = True
    writer.add_many([PollResult("n1", float(t), 0.1, PowerState.ON) for t in range(5)])
    writer.add_many([PollResult("n2", 1.0, 0.1, PowerState.OFF)])
    assert writer.flush() is False and not writer.backend_ok
    store.down = False
    assert writer.flush() is True
    assert sorted((r.node, r.polled_at) for r in store.results) == [("n1", 4.0), ("n2", 1.0)]
    store.down = True
    writer.add_many([PollResult("n3", 9.0, 0.1, PowerState.ON)])
    assert writer.stop(timeout=0.3) is False  # Redis still down: the last result is lost, said so


def test_tally_while_the_engine_thread_adds_first_results():
    """tally() runs on the sync thread while results of never-polled nodes
    arrive on the engine thread: it must count a copy, not a dict that grows."""
    import threading

    from farm.metrics import WorkerMetrics
    m = WorkerMetrics()
    names = [f"n{i}" for i in range(200_000)]
    m.own(names, 0.0)
    done = threading.Event()

    def engine():
        for i in range(0, len(names), 50):
            m.observe_many([PollResult(n, 1.0, 0.01, PowerState.ON) for n in names[i:i + 50]])
        done.set()
    t = threading.Thread(target=engine)
    t.start()
    tallies = 0
    while not done.is_set():
        m.tally(2.0, 10.0)  # raised "dictionary changed size during iteration" before
        tallies += 1
    t.join()
    assert tallies > 1 and m.tally(2.0, 10.0)["power"] == {"on": len(names)}


def test_polls_cut_short_by_our_own_stop_are_not_recorded(tmp_path):
    """A stop ends in-flight polls; they say nothing about the BMC, so the
    node's last result stands (no 'failing' state or event on a restart)."""
    from farm.bmc.engine import Outcome
    store = MemoryStore()
    store.set_nodes(NODES[:2])
    w = worker(tmp_path, store)
    w.sync()
    w._on_results([Outcome("power", "n0", None, errors.Stopping.kind, "worker stopping", 0.0, 1.0),
                   Outcome("power", "n1", PowerState.ON, None, None, 0.01, 1.0)])
    assert w.writer.flush() is True
    assert [(r.node, r.ok) for r in store.results] == [("n1", True)]


class Recorder:
    """An executor that records what the worker submits."""

    def __init__(self):
        self.jobs = []

    def submit(self, jobs):
        self.jobs.extend(jobs)

    def retain(self, names):
        pass


def test_a_fenced_worker_decides_nothing_and_rereads_the_assignment(tmp_path):
    from farm.power.lease import ActingLease
    store = MemoryStore()
    store.set_nodes(NODES[:4])
    store.control = {n.name: {"desired": "off"} for n in NODES[:4]}  # off: sent at once
    store.control_version = 1
    w = worker(tmp_path, store)
    clock = [50.0]
    w.actor.lease = ActingLease(w.actor.lease.bound, lambda: clock[0])
    w.executor = w.actor.executor = Recorder()
    on = [PollResult(n.name, 1.0, 0.01, PowerState.ON) for n in NODES[:4]]
    w.actor.enforce(on)
    assert w.executor.jobs == []          # never confirmed: no action
    w.sync()
    w.actor.enforce(on[:1])
    (job,) = w.executor.jobs
    assert job[0] == "power-action" and job[2].action == "off"
    assert job[2].not_after == 50.0 + w.actor.lease.bound  # the lease it was decided under
    clock[0] += w.actor.lease.bound              # no round trip since: fenced
    w.actor.enforce(on[1:])
    assert len(w.executor.jobs) == 1 and w.actor.lease.fenced_since is not None
    assert all(w.actor.enforcer.attempts.get(n.name) is None for n in NODES[1:4])  # none counted
    # back: the assignment itself is read again, not just its generation (here
    # Redis lost it and a new leader's first one has the same number)
    store.publish(["w2"], tuple("w2" for _ in range(16)))
    store.generation -= 1
    store._assignment["generation"] = store.generation
    assert w.sync() is True and w.nodes == []
    w.actor.enforce(on[1:])
    assert len(w.executor.jobs) == 1       # none of them is ours any more


def test_what_a_bmc_accepted_is_kept_and_seeds_the_next_worker(tmp_path):
    from farm.bmc.engine import SESSION_HINT, Outcome
    store = MemoryStore()
    store.set_nodes(NODES[:3])
    w = worker(tmp_path, store)
    w.executor = w.actor.executor = Recorder()
    w.sync()
    w._on_results([Outcome("power", "n1", PowerState.ON, None, None, 0.01, 1.0, None, (3, 2))])
    w.writer.flush()
    assert store.learned == {"n1": (3, 2)}
    fresh = worker(tmp_path, store, "w9")
    fresh.executor = fresh.actor.executor = Recorder()
    fresh.sync()
    assert [(j[0], j[1].name, j[2]) for j in fresh.executor.jobs] == [(SESSION_HINT, "n1", (3, 2))]


def test_a_correction_read_back_ends_its_settle_window(tmp_path):
    """The state read right after a correction that took clears the settle
    window: a change out of band before the next poll is corrected at once,
    not settle_time later."""
    from farm.bmc.engine import Outcome
    from farm.power.control import Action
    store = MemoryStore()
    store.set_nodes(NODES[:1])
    store.control = {"n0": {"desired": "off"}}
    store.control_version = 1
    w = worker(tmp_path, store)
    w.executor = w.actor.executor = Recorder()
    w.sync()
    on = PollResult("n0", 1.0, 0.01, PowerState.ON)
    w.actor.enforce([on])
    (job,) = w.executor.jobs
    assert job[2].action == "off"
    w._on_results([Outcome("power-action", "n0", PowerState.OFF, None, None, 0.01, 2.0,
                           Action("off", "", job[2].who, job[2].not_after))])
    w.actor.enforce([on])  # switched on out of band before the next poll
    assert [j[2].action for j in w.executor.jobs] == ["off", "off"]


def test_enforcement_never_fights_an_action_in_flight(tmp_path):
    """A node whose bulk-action step waits or runs is not corrected; once the
    step ended it is (its desired state still stands)."""
    store = MemoryStore()
    store.set_nodes(NODES[:2])
    store.control = {n.name: {"desired": "on"} for n in NODES[:2]}
    store.control_version = 1
    w = worker(tmp_path, store)
    w.executor = w.actor.executor = Recorder()
    w.sync()
    w.steps.due["n0"] = [0.0, "a1", "off"]       # n0's step is waiting
    w.steps.running["n1"] = ("a1", 1)            # n1's is on its way
    off = [PollResult(n.name, 1.0, 0.01, PowerState.OFF) for n in NODES[:2]]
    w.actor.enforce(off)
    assert w.executor.jobs == [] and w.steps.corrections == {}
    assert w.actor.enforcer.attempts == {}       # nothing counted toward maintenance
    w.steps.ended("n1")
    w.actor.enforce(off)
    assert list(w.steps.corrections) == ["n1"]   # on waits for its fleet-wide slot


def test_a_failing_wait_does_not_stop_a_daemons_loop():
    """keep_running's wait (the worker's refreshes its metrics there) raised
    outside the loop's try once, and the worker's main loop ended."""
    from farm import daemon
    steps, waits = [], []

    def step():
        steps.append(1)

    def wait(seconds):
        waits.append(seconds)
        if len(waits) == 1:
            raise RuntimeError("dictionary changed size during iteration")
    daemon.keep_running(step, wait, lambda: len(steps) >= 3, 0.0, lambda: "x")
    assert len(steps) == 3 and len(waits) == 3


def test_deferred_writes_are_kept_in_order_through_an_outage():
    """Step outcomes, replies and maintenance marks queued while Redis is
    away are all written once it is back, in order: the cap that dropped the
    oldest past 20,000 (a one-wave off of 10,000 nodes makes ~20,000) is gone."""
    store = MemoryStore()
    writer = ResultWriter(store, flush_interval=0.01)
    written = []

    def record(s, i):
        if s.down:
            raise errors.BackendUnavailable("Redis at x failed during step finish")
        written.append(i)
    store.down = True
    for i in range(25_000):
        writer.defer(record, i)
    assert writer.flush() is False and written == []
    store.down = False
    assert writer.flush() is True
    assert written == list(range(25_000))


def test_step_outcomes_go_out_in_batches_in_order():
    """Consecutive step outcomes are one store call each run (pipelined in
    the real Store), other deferred writes keep their place between them."""
    store = MemoryStore()
    writer = ResultWriter(store, flush_interval=0.01)
    calls = []

    def many(s, items):
        calls.append(("many", list(items)))

    def one(s, x):
        calls.append(("one", x))
    for i in range(1200):
        writer.defer_many(many, i)
    writer.defer(one, "reply")
    writer.defer_many(many, 1200)
    assert writer.flush() is True
    from farm.polling.results import MAX_BATCH
    runs = -(-1200 // MAX_BATCH)  # each run of outcomes in calls of at most MAX_BATCH
    assert [kind for kind, _ in calls] == ["many"] * runs + ["one", "many"]
    flat = [x for kind, items in calls if kind == "many" for x in items]
    assert flat == list(range(1201)) and max(len(i) for k, i in calls if k == "many") == MAX_BATCH
