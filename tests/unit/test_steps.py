"""The worker's step runner (farm.power.steps) against an in-memory store: which
steps it asks Redis for and when, what it sends, and that it sends nothing
outside the acting lease. Redis's own side (spacing, ownership) is covered
by tests/integration/test_actions.py."""

from farm.cli.actions import progress
from farm.conf import Power
from farm.model import Node
from farm.power import control
from farm.power.lease import ActingLease
from farm.power.steps import StepRunner


class Store:
    def __init__(self, steps):
        self.steps = steps        # name -> (action id, action, due)
        self.claims = []
        self.grant = None         # names Redis gives; None: all asked
        self.retry = None
        self.slots = 10

    def fleet_steps(self):
        return dict(self.steps)

    def claim_steps(self, action_id, worker, partitions, named, hold, lead, guard):
        self.claims.append((action_id, [n for n, _ in named], hold))
        names = [n for n, _ in named if self.grant is None or n in self.grant]
        return [(n, 1, 100.5) for n in names], self.retry

    def take_slots(self, wanted, batch, interval, tag):
        granted = min(wanted, self.slots)
        self.slots -= granted
        return granted, (None if granted == wanted else 150.0)


class Actor:
    def __init__(self, names, clock):
        self.my_id = "w1"
        self.by_name = {n: Node(n, "127.0.0.1", 623, "u", "p") for n in names}
        self.lease = ActingLease(4.0, lambda: clock[0])
        self.power = Power(wave_size=2, wave_interval=10.0)
        self.enforcer = control.Enforcer(3, 30.0)
        self.jobs = []
        self.executor = self
        self.fenced = 0

    def submit(self, jobs):
        self.jobs.extend(jobs)

    def owner(self, name):
        return self.my_id, 0, 16

    def note_fenced(self):
        self.fenced += 1


def runner(steps, names, now=100.0):
    clock, server = [10.0], [now]
    actor = Actor(names, clock)
    store = Store(steps)
    r = StepRunner(actor, store, lambda: server[0], hold_extra=4.0)
    r._reload()
    return r, actor, store, clock, server


def test_due_steps_of_its_own_nodes_are_taken_and_sent_within_the_lease():
    r, actor, store, clock, server = runner(
        {"a": ("x1", "on", 99.0), "b": ("x1", "on", 100.2), "c": ("x1", "on", 105.0),
         "other": ("x1", "on", 99.0)}, ["a", "b", "c"])
    assert set(r.due) == {"a", "b", "c"}  # not another worker's node
    actor.lease.confirm(10.0)
    wait = r._take_due()
    assert store.claims == [("x1", ["a", "b"], 4.0 + 4.0)]  # earliest first; hold = lease + extra
    # each leaves at the moment Redis set (100.5 on its clock: 10.5 on this host's)
    assert [(j[1].name, j[2].action, j[2].step, j[2].not_after, j[2].start_at)
            for j in actor.jobs] == [("a", "on", ("x1", 1), 14.0, 10.5),
                                     ("b", "on", ("x1", 1), 14.0, 10.5)]
    assert 0 < wait <= 1.0 and set(r.due) == {"c"} and r.busy("a") and r.busy("c")
    r.ended("a")
    assert not r.busy("a")


def test_nothing_is_taken_while_fenced():
    r, actor, store, clock, server = runner({"a": ("x1", "on", 99.0)}, ["a"])
    assert r._take_due() == 0.5  # never confirmed
    actor.lease.confirm(10.0)
    clock[0] = 14.0               # ran out
    r._take_due()
    assert store.claims == [] and actor.jobs == [] and actor.fenced == 2


def test_steps_redis_holds_back_wait_and_the_ones_it_refuses_are_dropped():
    r, actor, store, clock, server = runner(
        {"a": ("x1", "cycle", 99.0), "b": ("x1", "cycle", 99.5)}, ["a", "b"])
    actor.lease.confirm(10.0)
    store.grant, store.retry = {"a"}, 101.0  # the spacing is full for b until 101
    r._take_due()
    assert r.due == {"b": [101.0, "x1", "cycle"]}
    store.grant, store.retry = set(), None   # b was cancelled meanwhile
    server[0] = 101.0
    r._take_due()
    assert r.due == {} and [j[1].name for j in actor.jobs] == ["a"]


def test_power_on_corrections_wait_for_fleet_wide_slots():
    r, actor, store, clock, server = runner({}, ["a", "b", "c"])
    actor.lease.confirm(10.0)
    store.slots = 2
    for name in ("a", "b", "c"):
        r.correct(name, "on")
    assert r._take_corrections() == 50.0  # ask again when Redis says
    assert [j[1].name for j in actor.jobs] == ["a", "b"] and r.busy("c")
    assert all(j[2].who == control.ENFORCER and j[2].not_after == 14.0 for j in actor.jobs)
    assert actor.enforcer.settling["a"] == 10.0 + 30.0  # settles from when it was sent
    clock[0] = 15.0  # the lease ran out before c's slot came: dropped, decided afresh later
    server[0] = 151.0
    r._take_corrections()
    assert not r.busy("c") and len(actor.jobs) == 2


def test_progress_line():
    record = {"action": "on", "total": 10, "done": 4, "failed": 1, "cancelled": 0, "pending": 5,
              "running": 0, "interval": 2.0, "waves": 5, "last_at": 108.0}
    assert progress(record, 101.0) == (
        "[###############...............] power on: 4/10 done, 1 failed, 5 left, 4 waves left")
