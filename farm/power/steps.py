"""A worker's share of bulk power actions, and the spacing of farm's own
power-on corrections, on one thread.

The plans live in Redis (farm.store.actions). The runner knows when each
step of its own nodes is due, re-read when actions appear or go or its
nodes change. When a step is due it asks Redis to take it: Redis spaces the
steps fleet-wide (at most `batch` started in any `interval` seconds, a late
wave never stacking onto the next) and gives a step only to the worker the
current assignment names. Taken steps go to the executor within the acting
lease (farm.power.lease), as every power packet does. A node whose worker dies
moves, and its step is read by the new owner; a step left running by a dead
worker is taken over once its hold runs out (on and off only: a cycle or
reset repeated is not safe, so it fails instead).

Corrections of a desired state to `on` wait for a fleet-wide slot the same
way ([power] wave_size in any wave_interval): after a power outage a
fleet-wide `desired on` does not switch the room on at once.
"""

import itertools
import logging
import threading

from farm.power import control, plan

LOG = logging.getLogger("farm.worker")
IDLE = 1.0  # seconds between looks when nothing is due (a wake comes sooner)
# Seconds before its time a step is taken, so that it leaves at the moment
# Redis set even when the claim itself runs late (a busy process): up to a
# second, and at most a third of the acting lease, which must still hold
# when the command leaves.
LEAD = 1.0
# Steps asked for in one claim: a Redis script runs alone, so a claim of a
# whole 10,000-node wave at once held every other client (the worker's own
# lease included) for seconds. 100 a call keep each call to a millisecond or
# two, and the claims of a 10,000-node wave to a few tenths of a second.
CLAIM_PAGE = 100


class StepRunner:
    def __init__(self, actor, store, server_now, hold_extra):
        """`server_now`: Redis's time as this host estimates it; `hold_extra`:
        seconds past the acting lease a step may take before another worker
        may take it over (the BMC timeout and some)."""
        self.actor, self.store, self.server_now = actor, store, server_now
        self.hold_extra = hold_extra
        self.lead = min(LEAD, actor.lease.bound / 3)
        self.due = {}          # name -> [when due, action id, action]
        self.running = {}      # name -> (action id, attempt), sent from here
        self.corrections = {}  # name -> power action waiting for a fleet-wide slot
        self.corrections_at = 0.0
        self.reload_wanted = True
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._tags = itertools.count()

    # -- called from other threads --------------------------------------------
    def busy(self, name):
        """True while an action's step or a correction waits or runs for
        `name`: enforcement leaves it alone (it never fights an action)."""
        return name in self.due or name in self.running or name in self.corrections

    def reload(self):
        self.reload_wanted = True
        self.wake.set()

    def correct(self, name, action):
        with self._lock:
            self.corrections[name] = action
        self.wake.set()

    def ended(self, name):
        """A step sent from here ended (its outcome is on its way to Redis)."""
        self.running.pop(name, None)

    # -- the thread -----------------------------------------------------------
    def run(self, stopping):
        backoff = 0.5
        while not stopping.is_set():
            try:
                if self.reload_wanted:
                    self.reload_wanted = False
                    self._reload()
                wait = min(self._take_due(), self._take_corrections())
                backoff = 0.5
            except Exception:  # Redis away: steps wait, as do their plans
                LOG.debug("action steps unavailable", exc_info=True)
                self.reload_wanted = True
                wait, backoff = backoff, min(backoff * 2, 10.0)
            self.wake.wait(max(0.0, wait))
            self.wake.clear()

    def _reload(self):
        mine = self.actor.by_name
        self.due = {name: [due, action_id, action]
                    for name, (action_id, action, due) in self.store.fleet_steps().items()
                    if name in mine and name not in self.running}

    def _take_due(self):
        now = self.server_now()
        due = sorted((d[0], name) for name, d in list(self.due.items()) if d[0] - self.lead <= now)
        if due and not self.actor.lease.valid():
            self.actor.note_fenced()
            return 0.5
        by_action = {}
        for _, name in due:
            by_action.setdefault(self.due[name][1], []).append(name)
        for action_id, names in by_action.items():
            self._take(action_id, self.due[names[0]][2], names)
        later = [d[0] - self.lead for d in self.due.values()]
        return min([IDLE] + [at - self.server_now() for at in later])

    def _take(self, action_id, action, names):
        names = [n for n in names if n in self.actor.by_name]
        for start in range(0, len(names), CLAIM_PAGE):
            page = names[start:start + CLAIM_PAGE]
            taken, retry = self._claim(action_id, action, page)
            if retry is not None and taken < len(page):
                # the spacing is full (or Redis knows a later time): the rest
                # of this action's due steps wait for the same moment
                for name in names[start + CLAIM_PAGE:]:
                    if name in self.due:
                        self.due[name][0] = retry
                return

    def _claim(self, action_id, action, names):
        """Claim one page of due steps and send those taken: (how many were
        taken, Redis's retry time or None)."""
        actor, lease = self.actor, self.actor.lease
        owners = [actor.owner(n) for n in names]
        hold = max(0.0, lease.until() - lease.clock()) + self.hold_extra
        taken, retry = self.store.claim_steps(
            action_id, actor.my_id, owners[0][2] if owners else 0,
            [(n, o[1]) for n, o in zip(names, owners, strict=True)], hold, self.lead, plan.GUARD / 2)
        until, jobs = lease.until(), []
        # Redis's send times on this host's monotonic clock
        offset = lease.clock() - self.server_now()
        for name, attempt, send_at in taken:
            self.running[name] = (action_id, attempt)
            jobs.append(("power-action", actor.by_name[name], control.Action(
                action, "", f"action {action_id}", until, (action_id, attempt),
                send_at + offset)))
        for name in set(self.due) & set(names):
            if name in self.running or retry is None:
                del self.due[name]  # taken, or not ours to take (cancelled, moved, done)
            else:
                self.due[name][0] = retry
        if jobs:
            LOG.info("action %s: %d steps (power %s) sent", action_id, len(jobs), action)
            actor.executor.submit(jobs)
        return len(taken), retry

    def _take_corrections(self):
        if not self.corrections:
            return IDLE
        now = self.server_now()
        if now < self.corrections_at:
            return self.corrections_at - now
        lease, p = self.actor.lease, self.actor.power
        if not lease.valid():
            with self._lock:  # decided under a lease that ran out: decide again later
                for name in self.corrections:
                    self.actor.enforcer.forget(name)
                self.corrections.clear()
            return IDLE
        with self._lock:
            names = sorted(self.corrections)
        granted, retry = self.store.take_slots(len(names), p.wave_size, p.wave_interval,
                                               f"{self.actor.my_id}:{next(self._tags)}")
        until, jobs = lease.until(), []
        with self._lock:
            for name in names[:granted]:
                action = self.corrections.pop(name)
                node = self.actor.by_name.get(name)
                if node is not None:
                    self.actor.enforcer.settle(name, lease.clock())
                    jobs.append(("power-action", node,
                                 control.Action(action, "", control.ENFORCER, until)))
        self.actor.executor.submit(jobs)
        self.corrections_at = retry or 0.0
        return (retry - now) if retry else IDLE
