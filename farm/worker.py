"""farm-worker: polls its nodes' BMCs in parallel on futurist, keeps their
desired power state (farm.power.control) and runs operators' commands.

Thin daemon: Worker wires membership, the inventory, the assignment, the
tasks, the executor and the result writer; main() reads configuration,
installs signal handlers that only set a flag, and runs Worker until then.

A worker polls the nodes whose partition the published assignment gives it.
Until a coordinator has ever published one in this namespace it polls the
whole inventory (one worker, no coordinator: the simplest farm).
"""

import logging
import os
import socket
import threading
import time

import click

from farm import conf, daemon, errors
from farm.bmc.engine import SESSION_HINT
from farm.bmc.negotiation import level_name
from farm.coordination import placement
from farm.coordination.identity import groups, member_id
from farm.credentials import Credentials
from farm.metrics import WorkerMetrics
from farm.polling.executors import ByDriver, ChildPool, InProcess, LazyRedfish
from farm.polling.results import ResultWriter
from farm.polling.scheduling import Scheduler, Wheel, bucket_width
from farm.power import control
from farm.power.acting import Actor
from farm.power.lease import ActingLease, acting_bound, renew_every, tooz_heartbeat
from farm.power.steps import StepRunner
from farm.store import Store
from farm.tasks import load_tasks, programs

LOG = logging.getLogger("farm.worker")
TICK = 1.0  # the safety-net re-read; pub/sub makes changes reach us sooner
TALLY_EVERY = 2.0  # seconds between this worker's counts for `farm status`
CREDENTIALS_RETRY = 30.0  # seconds between attempts to open passwords that did not open
CLOCK_SKEW_WARN = 2.0  # seconds between our clock and Redis's worth a warning
STOP_MARGIN = 12.0  # exit budget beyond bmc_timeout: steps (7 s), loop grace (2 s), slack
STEP_HOLD = 3.0  # seconds beyond bmc_timeout an action's step may run before another worker
#                  may take it over (its not_after ends any packet of it sooner)


class Worker:
    def __init__(self, settings, store, membership=None, my_id=None, task_names=None, metrics=None):
        self.settings = settings
        self.store = store
        self.membership = membership
        self.my_id = my_id or member_id("worker")
        self.group, _ = groups(settings.coordination.namespace)
        w = settings.worker
        self.capabilities = {"host": socket.gethostname(), "pid": os.getpid(),
                             "executor": w.executor, "pool_size": w.workers_pool_size,
                             "sites": list(w.sites), "backup_sites": list(w.backup_sites),
                             "started_at": time.time()}
        self.writer = ResultWriter(store, w.result_flush_interval, worker=self.my_id)
        enabled = task_names or settings.tasks.enabled
        self.tasks = {name: cls(settings) for name, cls in load_tasks(enabled).items()}
        engine = conf.engine_config(w, settings)
        # every task's programs, enabled or not: actions (power, sel-clear) run on request
        if w.executor == "processes":  # Redfish nodes spread over the children as IPMI ones
            self.executor = ChildPool(w.processes or os.cpu_count() or 1, engine, None,
                                      self._on_results,
                                      redfish=conf.redfish_config(settings, engine, True))
        else:
            from farm.polling.redfish_engines import build
            from farm.polling.redfish_pool import SharedSessions  # sushy: workers only
            self.executor = ByDriver(
                InProcess(engine, programs(load_tasks().values()), self._on_results),
                LazyRedfish(lambda: build(conf.redfish_config(settings, engine),
                                          self._on_results, SharedSessions(self.store))))
        self.wheels = {name: Wheel(t.interval, width=bucket_width(t.interval))
                       for name, t in self.tasks.items()}
        self.scheduler = Scheduler(self.wheels, self._dispatch)
        self._reread_assignment = False
        self.control_version = None
        self._controls_lock = threading.Lock()
        self.sel_cursors = {}  # name -> the SEL cursor of the last pass written or read
        self.ipmi_sessions = {}  # name -> (suite, privilege) its BMC accepted last
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.inventory_version = None
        self.inventory = []
        self.generation = None
        self.assignment = None
        self.nodes = []
        self._by_name = {}
        self.metrics = metrics or WorkerMetrics(per_node=settings.metrics.per_node_series,
                                                per_sensor=settings.metrics.per_sensor_series)
        c = settings.coordination
        self.actor = Actor(self.my_id, settings.power, ActingLease(
            acting_bound(c.membership_timeout, c.leader_timeout), time.monotonic), self.executor,
            self.writer,
            store, self.metrics)
        self.steps = self.actor.steps = StepRunner(
            self.actor, store, lambda: time.time() - self.clock_skew, w.bmc_timeout + STEP_HOLD)
        self.actions_version = None
        self.tick = renew_every(self.actor.lease.bound, TICK)
        self.clock_skew = 0.0
        self._inventory_retry_at = 0.0
        self._tally, self._tallied_at = None, 0.0
        self._skew_warned = False

    def _dispatch(self, jobs):
        """The scheduler's due (task, node) pairs to the executor; a SEL pass
        takes its node's cursor along."""
        sel = self.tasks.get("sel")
        if sel is not None and jobs and jobs[0][0] == "sel":
            jobs = [(t, n, (self.sel_cursors.get(n.name), sel.limit)) for t, n in jobs]
        self.executor.submit(jobs)

    def _on_results(self, outcomes):
        """Poll outcomes, in batches, from the engine (or the process pool's
        reader); handed on as batches too (one lock each, not one per poll)."""
        results, power = [], []
        for outcome in outcomes:
            if outcome.login is not None:
                self._note_login(outcome.node, outcome.login)
            task = self.tasks.get(outcome.task)
            if task is None:
                if outcome.task in control.COMMAND_PROGRAMS.values():
                    self.actor.command_done(outcome)
                    read_back = self._read_back(outcome)
                    if read_back is not None:
                        results.append(read_back)
                        power.append(read_back)
                continue
            if outcome.error_kind == errors.Stopping.kind:
                continue  # cut short by our own stop: the node's last result stands
            self.wheels[outcome.task].done(outcome.node, outcome.ok)
            result = task.to_result(outcome)
            results.append(result)
            if result.kind == "power":
                power.append(result)
            elif result.kind == "sel" and result.cursor is not None:
                self.sel_cursors[result.node] = result.cursor
        self.writer.add_many(results)
        self.metrics.observe_many(power, self._driver_of)
        self.metrics.observe_tasks(r for r in results if r.kind != "power")
        if power and self.actor.enforcer.controls:
            self.actor.enforce(power)

    def _read_back(self, outcome):
        """The power state read right after an on or off, as a power result:
        a correction that took ends its node's settle window at once."""
        if (outcome.task != "power-action" or not outcome.ok or "power" not in self.tasks
                or outcome.arg[0] not in ("on", "off") or outcome.value is None):
            return None
        return self.tasks["power"].to_result(outcome)

    def _note_login(self, name, login):
        """What a BMC accepted (suite, privilege): counted, and kept in Redis
        when it changed, so a restarted worker asks for it first."""
        suite, privilege = login
        self.metrics.session_logins.labels(str(suite), level_name(privilege)).inc()
        if self.ipmi_sessions.get(name) != login:
            self.ipmi_sessions[name] = login
            self.writer.defer(lambda store, learned: store.record_ipmi_sessions(learned),
                              {name: login})

    def _driver_of(self, name):
        node = self._by_name.get(name)
        return node.driver if node is not None else "ipmi"

    def _watch_commands(self):
        """Take the commands the CLI queues for this worker, one at a time.
        A command stays on this worker's taken list until it reached the
        engine: one that met a Redis error is taken again; one that meets a
        bug three times is dropped, said in the log (no hot loop)."""
        backoff, failing = 0.5, (None, 0)
        while not self.stopping.is_set():
            raw = None
            try:
                taken = self.store.next_command(self.my_id, timeout=1.0)
                backoff = 0.5
                if taken is not None:
                    raw, command = taken
                    # A command may follow a control change this loop has not
                    # read yet (`desired X none` then `power X on`): read it
                    # first, or the enforcer would undo the command.
                    self._follow_controls(self.store.control_version())
                    self.actor.take_command(command, time.time() - self.clock_skew,
                                            "power" in self.tasks)
                    self.store.ack_command(self.my_id, raw)
                    failing = (None, 0)
            except (errors.BackendUnavailable, errors.BackendRefused):
                # Redis away (or refusing us: the main loop ends the daemon on
                # that): keep trying, the CLI's wait is bounded
                LOG.debug("command queue unavailable", exc_info=True)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            except Exception:
                failing = (raw, failing[1] + 1 if raw == failing[0] else 1)
                LOG.exception("taking a command failed (%d of 3)", failing[1])
                if raw is not None and failing[1] >= 3:
                    self._drop_command(raw)
                self.stopping.wait(backoff)

    def _drop_command(self, raw):
        LOG.error("dropped a command that failed three times: %s", raw[:200])
        try:
            self.store.ack_command(self.my_id, raw)
        except (errors.BackendUnavailable, errors.BackendRefused):
            pass  # taken again, and dropped again, once Redis is back

    def _follow_controls(self, version):
        """Read the nodes' controls if Redis's control version is not ours
        (from the sync loop and the command thread)."""
        with self._controls_lock:
            if version == self.control_version:
                return
            self.control_version, controls = self.store.controls()
            self.actor.enforcer.set_controls(controls)
        self.metrics.maintenance.set(sum(1 for c in controls.values() if c.get("maintenance")))

    # -- what to poll ---------------------------------------------------------
    def _read_inventory(self):
        try:
            version, nodes = self.store.load_nodes(passwords=True)
        except errors.CredentialsError as exc:
            if not self.inventory:
                raise  # at start: exit with one line (a worker without the key)
            # after a key rotation this host's key file may lag: keep polling
            LOG.error("%s; polling the last known %d nodes, retrying in %g s",
                      exc, len(self.inventory), CREDENTIALS_RETRY)
            self._inventory_retry_at = time.monotonic() + CREDENTIALS_RETRY
            return
        if not nodes and self.inventory and version < (self.inventory_version or 0):
            # An empty inventory under an older version is what a Redis that
            # restarted without persistence looks like, not an operator's
            # choice (an import with --replace bumps the version): keep polling.
            LOG.error("the inventory in Redis is empty and its version went back from %d "
                      "to %d (Redis lost its data?); polling the last known %d nodes "
                      "until it is imported again", self.inventory_version, version,
                      len(self.inventory))
        else:
            self.inventory = nodes
        self.inventory_version = version

    def mine(self):
        """The nodes this worker polls (pure given inventory and assignment)."""
        if self.assignment is None:  # no coordinator: a lone worker serves its own sites
            sites = set(self.settings.worker.sites)
            return [n for n in self.inventory if n.site in sites]
        placements = self.assignment["placements"]
        return [n for n in self.inventory
                if placement.owner_of(placements, n.site, n.name) == self.my_id]

    def sync(self):
        """Stay in the group; follow inventory and assignment changes. True if
        the set of polled nodes changed. A pass that read the assignment we
        act on renews the acting lease from the moment it began."""
        lease = self.actor.lease
        began, was_fenced = lease.clock(), lease.fenced_since is not None
        changed = self._sync()
        lease.confirm(began)
        valid = lease.valid()
        self.metrics.fenced.set(0 if valid else 1)
        if was_fenced and valid:
            LOG.warning("no longer fenced: the assignment was read again; acting on the %d "
                        "nodes it gives this worker", len(self.nodes))
        return changed

    def _sync(self):
        if self.writer.refused is not None:
            raise self.writer.refused
        if self.membership is not None:
            if not self.membership.started:
                self.store.ping()  # fails at once where tooz's start would hang
                self.membership.start()
            if self.membership.ensure_joined(self.group, self.capabilities) and self.generation:
                LOG.warning("(re)joined %s as %s", self.group, self.my_id)
        sent = time.time()
        if sent - self._tallied_at >= TALLY_EVERY:  # O(nodes): not every tick at 100,000
            self._tally, self._tallied_at = self.metrics.tally(
                sent, 2 * self.settings.worker.poll_interval), sent
        tally = self._tally
        version, generation, server_now, control_version, actions = self.store.report_worker(
            self.my_id, dict(self.capabilities, nodes=len(self.nodes), last_heartbeat=sent,
                             clock_skew=round(self.clock_skew, 3), tally=tally),
            ttl=self.settings.coordination.membership_timeout)
        self._note_skew(sent + (time.time() - sent) / 2 - server_now)
        # controls first: a plan sent after a control change must not run
        # against the controls from before it
        self._follow_controls(control_version)
        if actions != self.actions_version:
            self.actions_version = actions
            self.steps.reload()
        if self.actor.lease.fenced_since is not None:
            # fenced: know which nodes are still ours before acting again
            self._reread_assignment = True
        if (version == self.inventory_version and generation == self.generation
                and not self._reread_assignment):
            return False
        if version != self.inventory_version and time.monotonic() >= self._inventory_retry_at:
            self._read_inventory()
        if generation != self.generation or self._reread_assignment:
            self._reread_assignment = False
            assignment = self.store.assignment()
            if assignment is not None or self.assignment is None:
                # no assignment after having one = Redis lost it: keep ours
                self.assignment = self.actor.assignment = assignment
            self.generation = generation
        owned = (sum(len(placement.owned(owners, self.my_id))
                     for owners in self.assignment["placements"].values())
                 if self.assignment else "all")
        self.metrics.partitions.set(owned if isinstance(owned, int) else -1)
        self.metrics.generation.set(self.generation or 0)
        nodes = self.mine()
        if nodes == self.nodes:
            return False
        # No rebuild, no wait: the next tick polls the new set; polls of
        # nodes dropped meanwhile finish and their results are discarded.
        known = {n.name for n in self.nodes}
        new = {n.name: n for n in nodes if n.name not in known}
        if "sel" in self.tasks:
            self.sel_cursors.update(self.store.sel_cursors(list(new)))
        # what each new node's BMC accepted before (another worker, or before
        # a restart): its first login here asks for that first
        learned = self.store.ipmi_sessions([n for n, node in new.items() if node.driver == "ipmi"])
        if learned:
            self.ipmi_sessions.update(learned)
            self.executor.submit([(SESSION_HINT, new[name], hint)
                                  for name, hint in learned.items()])
        for name, wheel in self.wheels.items():
            drivers = self.tasks[name].drivers
            wheel.set_nodes([n for n in nodes if n.driver in drivers])
        self._by_name = self.actor.by_name = {n.name: n for n in nodes}
        self.executor.retain(self._by_name)
        self.sel_cursors = {n: c for n, c in self.sel_cursors.items() if n in self._by_name}
        LOG.info("polling %d nodes (inventory version %d, assignment generation %s, "
                 "partitions %s) on the %s executor", len(nodes), self.inventory_version,
                 self.generation or "none", owned, self.settings.worker.executor)
        self.nodes = nodes
        self.steps.reload()
        self.metrics.own([n.name for n in nodes], time.time(), {n.name: n.site for n in nodes})
        return True

    def _note_skew(self, skew):
        """Our clock minus Redis's. Staleness never trusts it (Redis stamps
        results), but poll phases and last_ok_at do: say so when it is off."""
        self.clock_skew = skew
        self.metrics.clock_skew.set(skew)
        off = abs(skew) > CLOCK_SKEW_WARN
        if off and not self._skew_warned:
            LOG.warning("this host's clock is %+.1f s off Redis's; fix NTP (poll phases and "
                        "last_ok_at use it; staleness does not)", skew)
        self._skew_warned = off

    # -- loops ----------------------------------------------------------------
    def _watch_assignments(self):
        """Wake the main loop as soon as a new generation is published, and
        the step runner as soon as an action's steps appear or go."""
        backoff = 0.5
        actions = self.store.actions_channel()
        while not self.stopping.is_set():
            try:
                pubsub = self.store.subscribe_assignments()
                backoff = 0.5
                while not self.stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("channel") == actions:
                        self.steps.reload()
                    elif message:
                        self.wake.set()
            except Exception:  # Redis away: the main loop's re-read covers us
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def run(self):
        """Poll until stop(); survives Redis being away (keeps polling the last
        assignment, retries with backoff, re-joins when it is back)."""
        self.writer.start()
        self.executor.start()
        self.scheduler.start()
        threading.Thread(target=self._watch_assignments, name="farm-assignments",
                         daemon=True).start()
        threading.Thread(target=self._watch_commands, name="farm-commands", daemon=True).start()
        threading.Thread(target=self.steps.run, args=(self.stopping,), name="farm-steps",
                         daemon=True).start()
        threading.Thread(target=self.actor.watch_lease, args=(self.stopping,), name="farm-lease",
                         daemon=True).start()
        daemon.keep_running(self.sync, self._wait, self.stopping.is_set, self.tick,
                            lambda: f"cannot reach Redis, polling the last {len(self.nodes)} nodes known")

    def _wait(self, seconds):
        self.metrics.refresh(time.time(), self.executor.in_flight(), self.executor.stats())
        self.wake.wait(seconds)
        self.wake.clear()

    def stop(self):
        self.stopping.set()
        self.wake.set()
        self.steps.wake.set()

    def shutdown(self):
        """In order: stop taking new polls; end in-flight ones and log out of
        BMC sessions; then side by side: leave the group (so our partitions
        move now), drop our worker record, write the last results. Each step
        has a deadline (at most bmc_timeout + 7 s in all, whatever Redis
        does); returns the daemon.Shutdown that says whether all went well."""
        w = self.settings.worker
        done = daemon.Shutdown()
        done.run({"scheduler": lambda: self.scheduler.stop(1.0)}, 2.0)
        done.run({"engine": lambda: self.executor.stop(w.bmc_timeout + 1)}, w.bmc_timeout + 2)
        steps = {"results": lambda: self.writer.stop(timeout=2.5),
                 "worker-record": lambda: self.store.forget_worker(self.my_id)}
        if self.membership is not None and self.membership.started:
            steps["membership"] = self._leave
        done.run(steps, 3.0)
        LOG.info("wrote %d poll results; %d batches failed; process restarts: %d",
                 self.writer.written, self.writer.failed_writes, self.executor.restarts)
        return done

    def _leave(self):
        self.membership.leave(self.group)
        self.membership.stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@conf.config_options
@click.option("--executor", type=click.Choice(["threads", "processes"]),
              help="Override [worker] executor.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Override [metrics] port (0: a free port, logged).")
def main(config_file, config_dir, executor, metrics_port):
    """Poll the power state of the nodes assigned to this worker."""
    overrides = {}
    if executor:
        overrides["worker.executor"] = executor
    if metrics_port is not None:
        overrides["metrics.port"] = metrics_port
    settings = daemon.start(config_file, overrides, config_dir)
    my_id = member_id("worker")
    try:
        store = Store(settings.coordination.backend_url, settings.coordination.namespace,
                      credentials=Credentials.from_settings(settings.security),
                      events_max_len=settings.events.max_len, sel_recent=settings.sel.recent)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    c = settings.coordination
    heartbeat = tooz_heartbeat(c.membership_timeout, c.leader_timeout)
    worker = Worker(settings, store, daemon.membership(settings, my_id, 3, heartbeat), my_id)
    daemon.serve_metrics(worker.metrics.registry, settings, settings.metrics.port)
    daemon.on_stop_signals(worker.stop, budget=settings.worker.bmc_timeout + STOP_MARGIN)
    LOG.info("farm-worker %s starting (executor=%s, in flight<=%d, interval=%gs, bmc_timeout=%gs)",
             my_id, settings.worker.executor, settings.worker.workers_pool_size,
             settings.worker.poll_interval, settings.worker.bmc_timeout)
    daemon.serve("farm-worker", worker.run, worker.stopping, worker.shutdown)
