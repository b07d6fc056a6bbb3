"""The power state farm keeps (desired state, maintenance) and operators'
commands to a worker, with their replies."""

import json

REPLY_TTL = 120  # seconds a command's outcome waits for the CLI
TAKEN_TTL = 3600  # a dead worker's taken list goes with its queue


class Control:
    def set_control(self, name, event, who, owner=None, **fields):
        """Set (or with '' clear) control fields of a node; records an event
        of type `event` by `who`. False if the node is not in the inventory,
        or if `owner` (worker id, partition, partitions: a worker's own
        decision) no longer owns it in the current assignment."""
        got = self._do("control write", self._scripts["set_control"],
                       **self._control_call(name, event, who, owner, fields))
        return int(got) >= 0

    def _control_call(self, name, event, who, owner, fields):
        """set_control.lua's keys and arguments for one node."""
        args = [name, self.events_max_len, event, who, *(owner or ("", 0, 0))]
        for field, value in fields.items():
            args += [field, value]
        return {"keys": [self._key("inventory"), self._key("control"),
                         self._key("control", "version"), self._key("events"),
                         self._key("assignment")], "args": args}

    def set_controls(self, names, event, who, **fields):
        """set_control for many nodes, one round trip per 1,000: how many
        were in the inventory."""
        done = 0
        for i in range(0, len(names), 1000):
            pipe = self._redis.pipeline(transaction=False)
            for name in names[i:i + 1000]:
                self._scripts["set_control"](
                    **self._control_call(name, event, who, None, fields), client=pipe)
            done += sum(1 for got in self._do("control write", pipe.execute) if int(got) >= 0)
        return done

    def append_owned_event(self, fields, owner):
        """An event about a node `owner` (worker id, partition, partitions)
        acted on, written only while the assignment still gives it the node;
        its id, or None if it does not."""
        args = [*owner, self.events_max_len, fields.get("node", "")]
        for field, value in fields.items():
            args += [field, value]
        got = self._do("event write", self._scripts["append_owned_event"],
                       keys=[self._key("assignment"), self._key("events"),
                             self._key("inventory")], args=args)
        return got or None

    def controls(self):
        """(version, name -> control dict) for every node with any."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(self._key("control", "version"))
        pipe.hgetall(self._key("control"))
        version, raw = self._do("control read", pipe.execute)
        return int(version or 0), {n: json.loads(v) for n, v in raw.items()}

    def controls_of(self, names):
        """name -> control dict for `names` (empty when none): one HMGET, not
        the whole hash (what one node or one page needs)."""
        if not names:
            return {}
        got = self._do("control read", self._redis.hmget, self._key("control"), names)
        return {n: json.loads(v) if v else {} for n, v in zip(names, got, strict=True)}

    def control_version(self):
        return int(self._do("control read", self._redis.get, self._key("control", "version")) or 0)

    def send_command(self, worker_id, command, ttl):
        """Queue a command (a dict with an `id`) for a worker."""
        key = self._key("commands", worker_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(command))
        pipe.expire(key, int(ttl) + 60)
        self._do("command send", pipe.execute)

    def next_command(self, worker_id, timeout=1.0):
        """(raw, command): the next command for this worker, or None after
        `timeout` seconds. It is moved, not popped, onto the worker's taken
        list and stays there, first in line again, until `ack_command`: a
        command taken when a Redis error or a bug struck is not lost."""
        queue, taken = self._key("commands", worker_id), self._key("commands", worker_id, "taken")
        raw = self._do("command read", self._redis.lindex, taken, 0)
        if raw is None:
            raw = self._do("command read", self._redis.blmove, queue, taken, timeout,
                           "LEFT", "RIGHT")
            if raw is None:
                return None
            self._do("command read", self._redis.expire, taken, TAKEN_TTL)
        return raw, json.loads(raw)

    def ack_command(self, worker_id, raw):
        """The command `raw` was handed to the engine: off the taken list."""
        self._do("command ack", self._redis.lrem, self._key("commands", worker_id, "taken"), 1,
                 raw)

    def reply(self, command_id, outcome):
        key = self._key("reply", command_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(outcome))
        pipe.expire(key, REPLY_TTL)
        self._do("command reply", pipe.execute)

    def wait_reply(self, command_id, timeout):
        got = self._do("command wait", self._redis.blpop, [self._key("reply", command_id)],
                       timeout=max(1, int(timeout + 0.999)))
        return json.loads(got[1]) if got else None
