"""farm-coordinator: any number run; one leads and places partitions on workers.

Thin daemon around Coordinator.step, which one loop calls every TICK seconds:
tooz's election says who may *try* to lead; farm's lease in Redis (renewed
every tick, fenced in the same Lua call that publishes) says who does. A
leader that was paused finds the lease gone and stands down without having
published anything.
"""

import logging
import os
import socket
import threading
import time

import click

from farm import conf, daemon
from farm.coordination import placement
from farm.coordination.identity import groups, member_id
from farm.metrics import CoordinatorMetrics
from farm.store import Store

LOG = logging.getLogger("farm.coordinator")
TICK = 0.5
STOP_BUDGET = 10.0  # seconds from SIGTERM to exit: loop grace (2 s), leaving (3 s), slack


def weights(members):
    """member id -> ring weight, from the capabilities workers announce (pure)."""
    return {m: placement.weight_of(int(caps.get("pool_size") or 16)) for m, caps in members.items()}


def site_members(members):
    """member id -> (ring weight, sites served, sites backed up), from the
    capabilities workers announce (pure); a worker that names no sites (one
    from before sites) serves the default site."""
    w = weights(members)
    return {m: (w[m], tuple(caps.get("sites") or (placement.DEFAULT_SITE,)),
                tuple(caps.get("backup_sites") or ())) for m, caps in members.items()}


class Coordinator:
    def __init__(self, settings, store, membership, my_id, metrics=None):
        self.metrics = metrics or CoordinatorMetrics()
        self.settings = settings
        self.store = store
        self.membership = membership
        self.my_id = my_id
        self.workers_group, self.group = groups(settings.coordination.namespace)
        self.partitions = None
        self.leading = False
        self.epoch = None
        self.settle_until = 0.0
        self.placement = {}
        self._kept_reported = None
        self._unserved = {}

    def step(self):
        c = self.settings.coordination
        if not self.membership.started:
            self.store.ping()  # fails at once where tooz's start would hang
            self.membership.start()
            self.membership.run_for_leader(self.group)
        if self.partitions is None:
            # a farm from before sites gets its site sets (which the leader
            # counts per site) before the first placement, once
            self.store.upgrade()
            self.partitions = self.store.fix_partitions(c.partitions)
            if self.partitions != c.partitions:
                LOG.warning("this farm has %d partitions (recorded in Redis); ignoring "
                            "[coordination] partitions = %d", self.partitions, c.partitions)
        self.membership.ensure_joined(self.group, {"host": socket.gethostname(), "pid": os.getpid()})
        self.membership.tick()
        if not self.membership.elected(self.group):
            return self._follow("not elected")
        epoch = self.store.hold_lease(self.my_id, c.leader_timeout / 2)
        if epoch < 0:
            return self._follow("another coordinator holds the lease")
        if epoch != self.epoch:
            LOG.info("leading (epoch %d)", epoch)
            # Workers may still be re-joining (after a Redis restart, or while
            # the old leader was away): for one membership timeout publish no
            # placement that drops a member of the current assignment.
            self.settle_until = time.monotonic() + c.membership_timeout
        self.leading, self.epoch = True, epoch
        self.metrics.leader.set(1)
        members = self.membership.members(self.workers_group)
        self.metrics.workers.set(len(members))
        if time.monotonic() < self.settle_until and not self._settled(members):
            return
        counts = self.store.site_counts()
        new = placement.place_sites(site_members(members), counts, self.partitions)
        generation = self.store.publish_assignment(self.my_id, epoch, sorted(members), new, time.time())
        if generation < 0:
            return self._follow("fenced out while publishing")
        self._report_sites(counts, new)  # what was published, by the leader that published it
        if generation == 0 and self._kept_reported != epoch:
            self._kept_reported = epoch  # said once per epoch: operators (and tests) see it settled
            LOG.info("placement unchanged: generation %s kept (epoch %d)",
                     self.store.assignment_generation(), epoch)
        if generation > 0:
            self.metrics.generation.set(generation)
            self.metrics.published.inc()
            moved = sum(len(placement.moved(self.placement.get(site, ()), owners))
                        for site, owners in new.items())
            LOG.info("published generation %d (epoch %d): %d workers, %d sites, %d of %d "
                     "partitions moved", generation, epoch, len(members), len(new), moved,
                     self.partitions * len(new))
        self.placement = new

    def _report_sites(self, counts, placements):
        """farm_site_nodes_unserved per site, and a line when a site goes dark
        or comes back: a site with nodes that no worker may serve."""
        unserved = {site: n for site, n in counts.items() if not placements.get(site)}
        for site in set(self._unserved) - set(unserved):
            LOG.info("site %s is served again (%d nodes)", site, counts.get(site, 0))
        for site, n in unserved.items():
            if site not in self._unserved:
                LOG.error("site %s has %d nodes and no live worker to serve them (none with "
                          "it in [worker] sites or backup_sites)", site, n)
        self.metrics.site_nodes(unserved, counts)
        self._unserved = unserved

    def _settled(self, members):
        current = self.store.assignment()
        if current is None:
            return bool(members)
        return set(current["members"]) <= set(members)

    def _follow(self, why):
        if self.leading:
            LOG.warning("no longer leading: %s", why)
            self.membership.stand_down(self.group)
        self.leading = False
        self.metrics.leader.set(0)
        self.metrics.site_nodes({}, {})  # only the leader speaks for the sites
        self._unserved = {}

    def step_down(self):
        """After losing Redis: never assume we still lead."""
        self._follow("lost contact with Redis")

    def shutdown(self):
        """Hand the lease over and leave, bounded whatever Redis does."""
        done = daemon.Shutdown()
        if self.membership.started:
            done.run({"leave": self._leave}, 3.0)
        return done

    def _leave(self):
        if self.leading:
            try:
                self.store.release_lease(self.my_id)
            finally:  # without Redis, tooz's lock must still be let go of
                self.membership.stand_down(self.group)
        self.membership.leave(self.group)
        self.membership.stop()


def run(coordinator, stop):
    daemon.keep_running(coordinator.step, stop.wait, stop.is_set, TICK,
                        lambda: "cannot coordinate", on_trouble=coordinator.step_down)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@conf.config_options
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Override [metrics] coordinator_port (0: a free port, logged).")
def main(config_file, config_dir, metrics_port):
    """Run for leader; while leading, place partitions on live workers."""
    settings = daemon.start(config_file, {"metrics.coordinator_port": metrics_port}
                            if metrics_port is not None else None, config_dir)
    stop = threading.Event()
    daemon.on_stop_signals(stop.set, budget=STOP_BUDGET)
    my_id = member_id("coordinator")
    store = Store(settings.coordination.backend_url, settings.coordination.namespace)
    coordinator = Coordinator(settings, store, daemon.membership(settings, my_id, 5), my_id)
    daemon.serve_metrics(coordinator.metrics.registry, settings, settings.metrics.coordinator_port)
    LOG.info("farm-coordinator %s starting", my_id)
    daemon.serve("farm-coordinator", lambda: run(coordinator, stop), stop, coordinator.shutdown)

