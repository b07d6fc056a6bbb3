"""What a worker does to its nodes' power, and when it may (one node, one
actor): corrections that keep a desired state (farm.power.control decides them)
and operators' commands, each sent only within the acting lease
(farm.power.lease) and carrying its end, so no packet of it leaves after the
worker could have lost the node. Decisions that reach Redis late (a
maintenance verdict, an action's event) are written only if the current
assignment still gives this worker the node.
"""

import logging

from farm import errors
from farm.coordination import placement
from farm.power import control

LOG = logging.getLogger("farm.worker")
# Seconds enforcement leaves a node alone while an operator's command for it
# runs: its outcome ends the hold; this bounds it should none come (a process
# pool's child that died with the job)
COMMAND_HOLD = 120.0


def _finish_steps(store, outcomes):
    # one module-level function: the writer batches consecutive outcomes by
    # the identity of this function (a lambda per call would never batch)
    store.finish_steps(outcomes)


class Actor:
    def __init__(self, my_id, power, lease, executor, writer, store, metrics):
        """`power`: the [power] settings; `lease`: the worker's ActingLease,
        renewed by its loop."""
        self.my_id, self.power, self.lease = my_id, power, lease
        self.executor, self.writer, self.store, self.metrics = executor, writer, store, metrics
        self.enforcer = control.Enforcer(power.max_retries, power.settle_time)
        self.by_name = {}       # the nodes the worker polls now
        self.assignment = None  # the assignment they come from (None: no coordinator yet)
        self.steps = None       # farm.power.steps.StepRunner: actions' steps, spaced corrections
        self.commanding = {}    # name -> (action, hold until): an operator's command on its way

    def enforce(self, results):
        """Keep desired power states after these power polls, within the lease."""
        now = self.lease.clock()
        if not self.lease.valid(now):
            self.note_fenced(now)
            return  # no decision at all while fenced: none counts toward maintenance
        until = self.lease.until()
        for r in results:
            if (self.commanding.get(r.node, ("", 0))[1] > now
                    or (self.steps is not None and self.steps.busy(r.node))):
                continue  # an action (or a correction) is on its way: never fight it
            power = r.power_state.value if r.power_state else None
            verdict = self.enforcer.decide(r.node, r.ok, power, now)
            if isinstance(verdict, control.Correct):
                node = self.by_name.get(r.node)
                if node is not None:
                    LOG.warning("%s is %s, desired %s: powering it %s (attempt %d of %d)",
                                r.node, power, verdict.action, verdict.action,
                                verdict.attempt, self.power.max_retries)
                    if verdict.action == "on" and self.steps is not None:
                        self.steps.correct(r.node, verdict.action)  # waits for a fleet-wide slot
                        continue
                    self.executor.submit([("power-action", node, control.Action(
                        verdict.action, "", control.ENFORCER, until))])
            elif isinstance(verdict, control.Maintenance):
                LOG.error("%s: %s; in maintenance now, farm stops acting on it", r.node,
                          verdict.reason)
                self.metrics.actions.labels("maintenance", "set", "farm").inc()
                self.writer.defer(lambda store, name, why, owner: store.set_control(
                    name, "maintenance", control.ENFORCER, owner=owner, maintenance=why),
                    r.node, verdict.reason, self.owner(r.node))

    def owner(self, name):
        """(this worker, the node's partition, partitions) for writes that
        must land only while the assignment still gives us the node (the
        scripts read the node's site from the inventory, not from us: a
        worker's idea of it may be older than an import)."""
        placements = self.assignment["placements"] if self.assignment else {}
        partitions = max(map(len, placements.values()), default=0)
        return (self.my_id, placement.partition_of(name, partitions) if partitions else 0,
                partitions)

    def note_fenced(self, now=None):
        """Log once, and show in metrics, that the acting lease ran out."""
        if self.lease.check(now):
            LOG.error("fenced: %s; farm stops acting on power (polling goes on) until it "
                      "has read the assignment again", self.lease.reason)
        self.metrics.fenced.set(0 if self.lease.valid(now) else 1)

    def watch_lease(self, stopping):
        """Notice a run-out lease within half a second, even while the loop
        that would renew it is blocked on Redis."""
        while not stopping.wait(0.5):
            if self.lease.confirmed_at is not None:
                self.note_fenced()

    def command_done(self, outcome):
        """A power action or SEL clear ended: count it, record it, reply."""
        action, command_id, who = outcome.arg[:3]
        ok = outcome.ok
        step = getattr(outcome.arg, "step", None)
        if step is not None:
            self.step_done(outcome, action, *step)
            return
        if who != control.ENFORCER and self.commanding.pop(outcome.node, ("",))[0] in (
                "cycle", "reset"):
            # as after an action's cycle: the server may read off for a while
            self.enforcer.settle(outcome.node, self.lease.clock())
        if outcome.error_kind == errors.Fenced.kind:
            # nothing reached the BMC: no event, no count toward maintenance
            self.metrics.actions.labels(action, "fenced", "farm" if who == control.ENFORCER
                                        else "operator").inc()
            self.enforcer.forget(outcome.node)
            if command_id:
                self.writer.defer(lambda store, cid, reply: store.reply(cid, reply), command_id,
                                  {"ok": False, "node": outcome.node, "action": action,
                                   "worker": self.my_id, "error": outcome.error})
            return
        if not ok and who == control.ENFORCER:
            if outcome.error_kind == errors.BmcPrivilegeError.kind:
                LOG.error("%s: %s; farm stops keeping its power state until its control "
                          "changes", outcome.node, outcome.error)
                self.enforcer.cannot_act(outcome.node, outcome.error)
            else:
                self.enforcer.failed(outcome.node)
        kind = "sel-clear" if outcome.task == "sel-clear" else "power"
        self.metrics.actions.labels(action, "ok" if ok else "failed",
                                    "farm" if who == control.ENFORCER else "operator").inc()
        event = {"node": outcome.node, "type": "action", "action": action, "by": who,
                 "outcome": "ok" if ok else "failed", "worker": self.my_id,
                 "error": outcome.error or "", "latency": f"{outcome.latency:.3f}"}
        reply = {"ok": ok, "node": outcome.node, "action": action, "kind": kind,
                 "worker": self.my_id, "error": outcome.error, "latency": outcome.latency}

        def record(store, event, command_id, reply, owner):
            store.append_owned_event(event, owner)
            if command_id:
                store.reply(command_id, reply)
        self.writer.defer(record, event, command_id, reply, self.owner(outcome.node))

    def step_done(self, outcome, action, action_id, attempt):
        """An action's step ended: its outcome to the plan in Redis; one that
        never left (fenced) goes back to wait for the node's owner."""
        name = outcome.node
        self.steps.ended(name)
        if outcome.error_kind == errors.Stopping.kind:
            return  # cut short by our stop, sent or not: left running, its hold runs out and
            #         the node's next owner takes it over as if this worker had died
        if outcome.error_kind == errors.Fenced.kind:
            result, error = "pending", ""
        else:
            result, error = ("done" if outcome.ok else "failed"), outcome.error or ""
            if action in ("cycle", "reset"):
                self.enforcer.settle(name, self.lease.clock())
        self.metrics.actions.labels(action, {"pending": "fenced", "done": "ok"}.get(result, result),
                                    "operator").inc()
        after = getattr(outcome.value, "value", "") if outcome.ok else ""
        self.writer.defer_many(_finish_steps, (action_id, name, self.my_id, attempt, result,
                                               error, after or "", outcome.latency))
        if result == "pending":  # after the write: the re-read then finds it waiting
            self.writer.defer(lambda store: self.steps.reload())

    def take_command(self, command, redis_now, power_enabled=True):
        """Run a command from the CLI, or say at once why not."""
        why = control.check_command(command, self.by_name, redis_now)
        if why is None and command["kind"] == "power" and not power_enabled:
            why = "the power task is not enabled on this worker"
        if why is None and not self.lease.valid():
            self.note_fenced()
            why = (f"this worker cannot confirm it still owns {command['node']} "
                   f"(fenced: {self.lease.reason})")
        if why is not None:
            LOG.warning("command %s refused: %s", command.get("id"), why)
            self.store.reply(command.get("id", "?"), {"ok": False, "error": why,
                                                      "node": command.get("node"),
                                                      "worker": self.my_id})
            return
        action = command.get("action") or "sel-clear"
        LOG.info("%s asked for %s on %s", command.get("by"), action, command["node"])
        if command["kind"] == "power":
            self.commanding[command["node"]] = (action, self.lease.clock() + COMMAND_HOLD)
        self.executor.submit([(control.COMMAND_PROGRAMS[command["kind"]],
                               self.by_name[command["node"]],
                               control.Action(action, command["id"], command.get("by") or "unknown",
                                              self.lease.until()))])
