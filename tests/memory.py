"""In-memory stand-ins behind farm's Store and Membership interfaces, for
logic tests of the worker's sync, the coordinator's step and the result
writer (as dramatiq's StubBroker). Integration tests use the real Redis.

The lease and publish fences here mirror hold_lease.lua and publish.lua so
the coordinator's logic can be driven in milliseconds; what guards a farm
is the scripts, tested on a real Redis in
tests/integration/test_coordination.py (test_the_leader_fence_is_redis_own_scripts)."""

import collections

from farm.errors import BackendUnavailable


class MemoryStore:
    def __init__(self):
        self.version, self.nodes = 0, []
        self.generation, self._assignment = 0, None
        self.lease, self.epoch = None, 0
        self.partitions = None
        self.results, self.reports = [], {}
        self.down = False  # every call raises BackendUnavailable while True
        self.now = 1000.0
        self.control, self.control_version = {}, 0
        self.learned = {}

    def _check(self):
        if self.down:
            raise BackendUnavailable("memory store is down")

    # inventory
    def set_nodes(self, nodes):
        self.nodes, self.version = list(nodes), self.version + 1

    def upgrade(self):
        self.upgraded = getattr(self, "upgraded", 0) + 1  # (always the current layout)
        return False

    def site_counts(self):
        self._check()
        return dict(collections.Counter(n.site for n in self.nodes))

    def load_nodes(self, passwords=False):
        self._check()
        return self.version, list(self.nodes)

    # worker side
    def ping(self):
        self._check()
        return True

    def report_worker(self, member_id, info, ttl):
        self._check()
        self.reports[member_id] = info
        return self.version, self.generation, self.now, self.control_version, 0

    def fleet_steps(self):
        self._check()
        return {}

    def controls(self):
        self._check()
        return self.control_version, dict(self.control)

    def sel_cursors(self, names):
        self._check()
        return {}

    def ipmi_sessions(self, names):
        self._check()
        return {n: self.learned[n] for n in names if n in self.learned}

    def record_ipmi_sessions(self, learned):
        self._check()
        self.learned.update(learned)

    def forget_worker(self, member_id):
        self._check()
        self.reports.pop(member_id, None)

    def subscribe_assignments(self):
        raise BackendUnavailable("no pub/sub in memory")

    def write_results(self, results, worker=""):
        self._check()
        self.results += results
        return len(results)

    def write_any(self, results, worker=""):
        self.write_results(results, worker)

    # coordination
    def fix_partitions(self, partitions):
        self._check()
        self.partitions = self.partitions or partitions
        return self.partitions

    def hold_lease(self, member_id, ttl):
        self._check()
        if self.lease in (None, member_id):
            if self.lease is None:
                self.epoch += 1
            self.lease = member_id
            return self.epoch
        return -1

    def release_lease(self, member_id):
        if self.lease == member_id:
            self.lease = None

    def publish_assignment(self, member_id, epoch, members, placements, now):
        self._check()
        if self.lease != member_id:
            return -1  # the fence: only the lease holder publishes
        new = _shaped(members, placements)
        if self._assignment and all(self._assignment[k] == v for k, v in new.items()):
            return 0
        self.generation += 1
        self._assignment = dict(new, generation=self.generation, epoch=epoch, leader=member_id,
                                published_at=now)
        return self.generation

    def publish(self, members, placement):
        """As a coordinator would (for worker tests)."""
        self.generation += 1
        self._assignment = {**_shaped(members, {"default": placement}),
                            "generation": self.generation, "epoch": 1, "leader": "c",
                            "published_at": self.now}

    def assignment(self):
        self._check()
        return self._assignment

    def assignment_generation(self):
        return self.generation


def _shaped(members, placements):
    """What Store.assignment() returns besides its generation and lease."""
    placements = {s: tuple(p) for s, p in placements.items()}
    return {"members": list(members), "sites": sorted(placements), "placements": placements,
            "placement": placements.get("default", ())}


class MemoryMembership:
    """Groups and an election, in memory; `elect` decides who wins."""

    def __init__(self, member_id, groups=None, elect=True):
        self.member_id = member_id
        self.groups = groups if groups is not None else {}
        self.started = False
        self._elect = elect
        self._running = set()

    def start(self):
        self.started = True

    def ensure_joined(self, group, capabilities):
        members = self.groups.setdefault(group, {})
        if self.member_id in members:
            return False
        members[self.member_id] = capabilities
        return True

    def members(self, group):
        return dict(self.groups.get(group, {}))

    def run_for_leader(self, group):
        self._running.add(group)

    def tick(self):
        pass

    def elected(self, group):
        return group in self._running and self._elect

    def stand_down(self, group):
        self._elect = False

    def leave(self, group):
        self.groups.get(group, {}).pop(self.member_id, None)

    def stop(self):
        self.started = False
