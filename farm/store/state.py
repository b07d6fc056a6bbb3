"""Per-node results in Redis (power, sensors, SEL: one script call per
batch and kind), what operators read of one node, and the event stream."""

import json

from farm.store.inventory import node_from_entry

MAX_ERROR = 300  # characters of last_error kept: every per-node key stays small


class State:
    def write_results(self, results, worker=""):
        """Write a batch of PollResults (polled by `worker`) and their events in
        one round trip."""
        if not results:
            return 0
        keys = [self._key(k) for k in ("inventory", "events", "counts", "polled")]
        args = [self.events_max_len, worker]
        for r in results:
            keys.append(self._key("state", r.node))
            args += [r.node, repr(r.polled_at), f"{r.latency:.6f}",
                     r.power_state.value if r.power_state else "",
                     r.error_kind or "", (r.error or "")[:MAX_ERROR]]
        return self._do("result write", self._scripts["write_results"], keys=keys, args=args)

    def write_sensor_results(self, results, worker=""):
        """Write a batch of SensorResults and their threshold events."""
        keys = [self._key("inventory"), self._key("events")]
        args = [self.events_max_len, worker]
        for r in results:
            keys += [self._key("state", r.node), self._key("sensors", r.node)]
            watts = ("unsupported" if r.watts is None else
                     r.watts if isinstance(r.watts, str) else repr(float(r.watts)))
            args += [r.node, repr(r.polled_at), f"{r.latency:.6f}", r.error_kind or "",
                     (r.error or "")[:MAX_ERROR], len(r.readings), watts,
                     json.dumps(r.device, sort_keys=True) if r.device else ""]
            for reading in r.readings:
                value = reading["value"]
                args += [reading["key"], reading["status"], "" if value is None else repr(value),
                         reading["unit"], reading["type"],
                         json.dumps(reading, sort_keys=True, separators=(",", ":"))]
        return self._do("sensor write", self._scripts["write_sensors"], keys=keys, args=args)

    def write_sel_results(self, results, worker=""):
        """Write a batch of SelResults: their entries, events and cursors."""
        keys = [self._key("inventory"), self._key("events")]
        args = [self.events_max_len, worker, self.sel_recent]
        for r in results:
            keys += [self._key("state", r.node), self._key("sel", r.node)]
            args += [r.node, repr(r.polled_at), f"{r.latency:.6f}", r.error_kind or "",
                     (r.error or "")[:MAX_ERROR], json.dumps(r.cursor), "1" if r.cleared else "",
                     json.dumps(r.sizes), len(r.entries)]
            for e in r.entries:
                args += [e["id"], "" if e.get("at") is None else e["at"], e.get("sensor_type", ""),
                         e.get("sensor", ""), e.get("direction", ""), e.get("description", ""),
                         json.dumps(e, sort_keys=True, separators=(",", ":"))]
        return self._do("SEL write", self._scripts["write_sel"], keys=keys, args=args)

    def write_any(self, results, worker=""):
        """Write a batch of results of any task, one call per kind."""
        by_kind = {}
        for r in results:
            by_kind.setdefault(r.kind, []).append(r)
        # SEL last: the writer retries a whole batch, and SEL entries must
        # not be written twice (power and sensor writes may be, harmlessly)
        for kind, write in (("power", self.write_results), ("sensors", self.write_sensor_results),
                            ("sel", self.write_sel_results)):
            if kind in by_kind:
                write(by_kind[kind], worker)

    def _state_field(self, names, field):
        """name -> one field of each node's state (None where absent), in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("state", name), field)
        return dict(zip(names, self._do("state read", pipe.execute), strict=True))

    def sel_cursors(self, names):
        """name -> the stored SEL cursor (a tuple) of those that have one."""
        out = {}
        for name, raw in self._state_field(names, "sel_cursor").items():
            cursor = json.loads(raw) if raw else None
            if cursor:
                out[name] = tuple(cursor)
        return out

    def ipmi_sessions(self, names):
        """name -> (cipher suite, privilege level) each BMC last accepted."""
        out = {}
        for name, raw in self._state_field(names, "ipmi_session").items():
            parts = (raw or "").split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                out[name] = (int(parts[0]), int(parts[1]))
        return out

    def record_ipmi_sessions(self, learned):
        """Keep what each BMC accepted at its last login ({name: (suite,
        privilege)}), for the next worker to ask for first."""
        pipe = self._redis.pipeline(transaction=False)
        for name, (suite, privilege) in learned.items():
            pipe.hset(self._key("state", name), "ipmi_session", f"{suite} {privilege}")
        self._do("state write", pipe.execute)

    def node_states(self, names):
        """name -> state dict (empty when never polled), in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key("state", name))
        return dict(zip(names, self._do("state read", pipe.execute), strict=True))

    def node_detail(self, name, recent=10):
        """Everything farm holds of one node but its password, in one round
        trip: (inventory entry JSON or None, state, control, sensors, recent SEL)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._key("inventory"), name)
        pipe.hgetall(self._key("state", name))
        pipe.hget(self._key("control"), name)
        pipe.hgetall(self._key("sensors", name))
        pipe.lrange(self._key("sel", name), 0, recent - 1)
        entry, state, control, sensors, sel = self._do("node read", pipe.execute)
        if entry is None:
            return None
        fields = json.loads(entry)
        shown = node_from_entry(name, fields, "", "?" if {"kg", "kg_sealed"} & set(fields) else "")
        return {"node": shown.public(), "state": state,
                "control": json.loads(control) if control else {},
                "sensors": {k: json.loads(v) for k, v in sensors.items()},
                "sel": [json.loads(e) for e in sel]}

    def append_event(self, fields):
        """One event (a dict of strings) on the stream, stamped by Redis."""
        return self._do("event write", self._redis.xadd, self._key("events"), fields,
                        maxlen=self.events_max_len, approximate=True)

    def events_before(self, count, before="+"):
        """Up to `count` events, newest first, older than id `before`."""
        return self._do("event read", self._redis.xrevrange, self._key("events"),
                        max=before if before == "+" else f"({before}", count=count)

    def events_after(self, after, block_ms, count=1000):
        """Events newer than id `after` ('$': from now), waiting up to block_ms."""
        got = self._do("event read", self._redis.xread, {self._key("events"): after},
                       count=count, block=block_ms)
        return got[0][1] if got else []

    def read_events(self, count=1000, after="0-0"):
        entries = self._do("event read", self._redis.xrange,
                           self._key("events"), min=f"({after}" if after != "0-0" else "-",
                           count=count)
        return [(entry_id, fields) for entry_id, fields in entries]
