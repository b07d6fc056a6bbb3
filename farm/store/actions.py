"""Bulk power actions in Redis: the plan the CLI writes, the steps the
owning workers take when due (spaced fleet-wide), their outcomes, and
cancelling. A node is in at most one unfinished action (as a node lock).

  {ns}:actions            zset  action id -> Redis time it was created
  {ns}:action:{id}        hash  id, action, by, batch, interval, spread_by, waves,
                                created, first_at, last_at, state (running, done,
                                cancelled), total, pending, running, done, failed,
                                cancelled, finished_at, cancelled_by
  {ns}:action:{id}:nodes  hash  node -> JSON {wave, not_before, state, worker, attempt,
                                started_at, ended_at, error, power_after, latency}
  {ns}:action:{id}:grants zset  each step's send time (the spacing's window)
  {ns}:steps              zset  node -> not_before of its pending step
  {ns}:steps:running      zset  node -> when its running step may be taken over
  {ns}:step-of            hash  node -> the unfinished action it is in
  {ns}:actions:version    int   bumped when steps appear or go (create, cancel);
                                PUBLISHed on channel {ns}:actions
  {ns}:corrections        zset  when farm's own power-on corrections started
"""

import json

ACTION_TTL = 7 * 86400  # seconds a finished action stays readable
CREATE_PAGE = 1000     # steps written by one script call (a few milliseconds)
STAGING_TIME = 60      # seconds a large plan's pages may take to write


class ActionConflict(Exception):
    """A node in the plan is not in the inventory (code node_not_found), or
    is in another action (node_busy)."""

    def __init__(self, message, code="node_busy"):
        super().__init__(message)
        self.code = code


class Actions:
    def _action_keys(self, action_id):
        return (self._key("action", action_id), self._key("action", action_id, "nodes"),
                self._key("action", action_id, "grants"))

    def create_action(self, action_id, record, steps):
        """Write a plan (`steps`: farm.power.plan.Step, earliest first) or nothing:
        ActionConflict names the node that stops it. Redis's creation time.

        Up to CREATE_PAGE steps in one script call. A larger plan is staged a
        page a call (a script runs alone: one call of 10,000 steps held
        Redis for 36 ms) and started by one more; if a page is refused the
        pages before it are let go of. A writer that dies while staging holds
        its nodes for STAGING_TIME seconds at most."""
        pages = [steps[i:i + CREATE_PAGE] for i in range(0, len(steps), CREATE_PAGE)] or [[]]
        state = "running" if len(pages) == 1 else "preparing"
        written = []
        try:
            for page in pages:
                created = self._create_page(action_id, record, page, state)
                written.append(page)
            if state == "preparing":
                self._finish_create(action_id, "start")
        except ActionConflict:
            if written:
                self._abort_create(action_id, written)
            raise
        return created

    def _create_page(self, action_id, record, page, state):
        args = [action_id, record["action"], record["by"], record["batch"], record["interval"],
                record.get("spread_by") or "", record["waves"], self._key("actions"), state,
                STAGING_TIME]
        for s in page:
            args += [s.node, s.wave, repr(s.not_before)]
        head, nodes, _ = self._action_keys(action_id)
        got = self._do("action create", self._scripts["create_action"], keys=[
            self._key("names"), self._key("step-of"), self._key("steps"), self._key("actions"),
            head, nodes, self._key("actions", "version"), self._key("actions", "staging")],
            args=args)
        if got[0] == "unknown":
            raise ActionConflict(f"no node named {got[1]}", "node_not_found")
        if got[0] == "invalid":
            raise ValueError(f"the send time of {got[1]} is not a finite number")
        if got[0] == "expired":
            raise ActionConflict(f"writing action {action_id} took longer than {STAGING_TIME} s; "
                                 f"nothing of it runs", "action_expired")
        if got[0] == "busy":
            raise ActionConflict(f"{got[1]} is in action {got[2]}, not finished "
                                 f"(`farm actions cancel {got[2]}` drops its steps not started)")
        return float(got[1])

    def _finish_create(self, action_id, how, names=(), last=False):
        head, nodes, _ = self._action_keys(action_id)
        got = self._do("action create", self._scripts["finish_create"], keys=[
            self._key("step-of"), self._key("steps"), self._key("actions"), head, nodes,
            self._key("actions", "version"), self._key("actions", "staging")],
            args=[action_id, how, "last" if last else "", self._key("actions"), *names])
        if got[0] == "expired":
            self._abort_create(action_id, None)
            raise ActionConflict(f"writing action {action_id} took longer than {STAGING_TIME} s; "
                                 f"nothing of it runs", "action_expired")

    def _abort_create(self, action_id, pages):
        """Let go of the nodes a staging holds (`pages` written, or all of its
        own nodes hash when None), a page a call, then drop it."""
        if pages is None:
            names = sorted(self._do("action read", self._redis.hkeys,
                                    self._key("action", action_id, "nodes")))
            pages = [names[i:i + CREATE_PAGE] for i in range(0, len(names), CREATE_PAGE)]
        else:
            pages = [[s.node for s in page] for page in pages]
        for i, page in enumerate(pages or [[]]):
            self._finish_create(action_id, "abort", page, last=i == len(pages or [[]]) - 1)

    def actions_channel(self):
        return self._key("actions")

    def actions_version(self):
        return int(self._do("actions read", self._redis.get, self._key("actions", "version")) or 0)

    def fleet_steps(self):
        """Every unfinished step, for the workers to pick their nodes':
        name -> (action id, action, when it is due: its not_before while
        pending, its takeover time while running)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrange(self._key("steps"), 0, -1, withscores=True)
        pipe.zrange(self._key("steps", "running"), 0, -1, withscores=True)
        pipe.hgetall(self._key("step-of"))
        pending, running, step_of = self._do("steps read", pipe.execute)
        ids = sorted(set(step_of.values()))
        pipe = self._redis.pipeline(transaction=False)
        for action_id in ids:
            pipe.hget(self._key("action", action_id), "action")
        kinds = dict(zip(ids, self._do("steps read", pipe.execute), strict=True))
        out = {}
        for name, due in (*pending, *running):
            action_id = step_of.get(name)
            if action_id and kinds.get(action_id):
                out[name] = (action_id, kinds[action_id], due)
        return out

    def claim_steps(self, action_id, worker, partitions, named, hold, lead, guard):
        """Take the steps of one action due within `lead` seconds (`named`:
        (name, partition), earliest first): ([(name, attempt, send_at)]
        taken, each with the moment (Redis's clock) to send it; the earliest
        send time for the rest, or None)."""
        head, nodes, grants = self._action_keys(action_id)
        args = [worker, partitions, hold, action_id, ACTION_TTL, lead, guard, self.events_max_len]
        for name, partition in named:
            args += [name, partition]
        got = self._do("steps claim", self._scripts["claim_steps"], keys=[
            self._key("assignment"), self._key("step-of"), self._key("steps"),
            self._key("steps", "running"), head, nodes, grants, self._key("events"),
            self._key("inventory")], args=args)
        taken = [(got[i], int(got[i + 1]), float(got[i + 2])) for i in range(1, len(got), 3)]
        return taken, float(got[0]) if got[0] else None

    def finish_step(self, action_id, name, worker, attempt, outcome, error="", power_after="",
                    latency=0.0):
        """Record a step's outcome ('done', 'failed', or 'pending' to put it
        back); False if the step is no longer that run's."""
        head, nodes, grants = self._action_keys(action_id)
        return bool(self._do("step finish", self._scripts["finish_step"], keys=[
            self._key("step-of"), self._key("steps"), self._key("steps", "running"), head, nodes,
            self._key("events"), grants], args=[
            action_id, name, worker, attempt, outcome, error or "", power_after or "",
            self.events_max_len, f"{latency:.3f}", ACTION_TTL]))

    def finish_steps(self, outcomes):
        """finish_step for many steps in one round trip (pipelined, not one
        transaction: each script is atomic alone); [True/False] each."""
        if not outcomes:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for (action_id, name, worker, attempt, outcome, error, power_after, latency) in outcomes:
            head, nodes, grants = self._action_keys(action_id)
            self._scripts["finish_step"](keys=[
                self._key("step-of"), self._key("steps"), self._key("steps", "running"), head,
                nodes, self._key("events"), grants], args=[
                action_id, name, worker, attempt, outcome, error or "", power_after or "",
                self.events_max_len, f"{latency:.3f}", ACTION_TTL], client=pipe)
        return [bool(x) for x in self._do("step finish", pipe.execute)]

    def cancel_action(self, action_id, who):
        """(its state before, how many steps not started were dropped)."""
        head, nodes, _ = self._action_keys(action_id)
        state, dropped = self._do("action cancel", self._scripts["cancel_action"], keys=[
            self._key("step-of"), self._key("steps"), head, nodes, self._key("actions", "version")],
            args=[action_id, who, ACTION_TTL, self._key("actions")])
        return state or None, int(dropped)

    def action(self, action_id):
        """The action's record, or None."""
        raw = self._do("action read", self._redis.hgetall, self._key("action", action_id))
        return _record(raw) if raw else None

    def action_steps(self, action_id):
        """name -> its step (a dict), in name order."""
        raw = self._do("action read", self._redis.hgetall, self._key("action", action_id, "nodes"))
        return {n: json.loads(raw[n]) for n in sorted(raw)}

    def actions(self, limit=50):
        """The newest actions' records, newest first (expired ones leave the index)."""
        ids = self._do("actions read", self._redis.zrevrange, self._key("actions"), 0, limit - 1)
        pipe = self._redis.pipeline(transaction=False)
        for action_id in ids:
            pipe.hgetall(self._key("action", action_id))
        raw = self._do("actions read", pipe.execute)
        gone = [i for i, r in zip(ids, raw, strict=True) if not r]
        if gone:
            self._do("actions read", self._redis.zrem, self._key("actions"), *gone)
        return [_record(r) for r in raw if r]

    def nodes_in_actions(self, names):
        """name -> the unfinished action it is in, for those of `names` that are."""
        if not names:
            return {}
        got = self._do("steps read", self._redis.hmget, self._key("step-of"), names)
        return {n: a for n, a in zip(names, got, strict=True) if a}

    def take_slots(self, wanted, batch, interval, tag):
        """Fleet-wide spacing of farm's power-on corrections: (how many of
        `wanted` may start now, when to ask again for the rest or None)."""
        granted, retry = self._do("corrections", self._scripts["take_slots"],
                                  keys=[self._key("corrections")],
                                  args=[wanted, batch, interval, tag])
        return int(granted), float(retry) if retry else None


def _record(raw):
    out = dict(raw)
    for k in ("batch", "total", "pending", "running", "done", "failed", "cancelled", "waves"):
        out[k] = int(raw.get(k) or 0)
    for k in ("interval", "created", "first_at", "last_at", "finished_at", "cancelled_at"):
        if raw.get(k):
            out[k] = float(raw[k])
    return out
