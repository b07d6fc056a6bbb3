"""farm's data in Redis: inventory, per-node state and the event stream.

This is the only module that imports redis; every redis error leaves it as
BackendUnavailable with a message that never contains the URL's password.

Keys, all under the namespace `ns`:
  {ns}:inventory          hash  node name -> JSON {address, port, username, [driver,
                                system_id, verify_tls for redfish nodes], and one of
                                password_sealed (Fernet, see farm.credentials), password_file
                                (a path on the worker hosts) or password (test farms only)}
  {ns}:inventory:version  int   bumped by every change of the inventory
  {ns}:state:{name}       hash  power_state, polled_at, latency, last_ok_at (the
                                worker's clock), seen_at (Redis's clock when written),
                                reachable, consecutive_failures, error_kind, last_error,
                                worker (member id of the worker that polled)
                                the other tasks add sensors_* and sel_* fields (polled_at,
                                error_kind, error; sel_cursor)
  {ns}:sensors:{name}     hash  sensor key -> JSON reading (farm.tasks.sensors)
  {ns}:sel:{name}         list  the newest SEL entries (JSON), newest first
  {ns}:control            hash  node name -> JSON {desired, maintenance (a reason), and who/when}
  {ns}:control:version    int   bumped by every change of control
  {ns}:commands:{id}      list  power and SEL commands for worker {id} (JSON, with expiry)
  {ns}:reply:{cmd}        list  the outcome of command {cmd}, for the CLI waiting on it
  {ns}:counts             hash  power:<state> and failing:<error kind> -> how many nodes (their
                                last power result), kept by the scripts that write and remove
  {ns}:polled             zset  node name -> seen_at of its last power result
  {ns}:names              zset  every node's name (score 0), for pages in name order
  {ns}:layout             int   LAYOUT once counts, polled and names were built (recount.lua)
  {ns}:events             stream of changes: power, recovered, failing, sensor, sel,
                                sel-cleared, action, desired, maintenance (docs/tasks.md)
  {ns}:partitions         int   the partition count, fixed at the first coordinator's start
  {ns}:leader             string the leader's member id, with a TTL (the lease)
  {ns}:leader:epoch       int   bumped each time a new leader takes the lease
  {ns}:worker:{id}        hash  a worker's own report (host, pid, executor, pool_size,
                                nodes, last_heartbeat), expiring when it stops reporting
  {ns}:workers            zset  member id -> Redis time of its last report (ids silent
                                for a day leave it): which reports `farm status` reads
  {ns}:assignment         hash  generation, epoch, leader, members (JSON list),
                                placement (JSON list: member index per partition),
                                published_at; PUBLISHed on channel {ns}:assignment
"""

import json
from importlib.resources import files

import redis
import redis.sentinel

from farm import backend
from farm.credentials import Credentials
from farm.errors import BackendRefused, BackendUnavailable, ConfigError, CredentialsError
from farm.model import Node

EVENTS_MAXLEN = 100_000
# Lua scripts, one file each in farm/lua/, loaded once; every key through KEYS
SCRIPT_NAMES = ("write_results", "hold_lease", "release_lease", "publish", "write_sensors",
                "write_sel", "set_control", "remove_nodes", "recount", "report_worker")
# 2: counts, polled and names kept beside the inventory and state; a farm
# written by an older version gets them built once (Store.upgrade)
LAYOUT = 2
SCRIPTS = {name: (files("farm.lua") / f"{name}.lua").read_text() for name in SCRIPT_NAMES}
REPLY_TTL = 120  # seconds a command's outcome waits for the CLI
MAX_ERROR = 300  # characters of last_error kept: every per-node key stays small
_OPEN_ONLY = Credentials()  # without a key: opens plaintext and password_file entries







def _node(name, fields, password):
    """A Node from its stored inventory entry (with `password` opened, or '')."""
    return Node(name=name, address=fields["address"], port=int(fields["port"]),
                username=fields["username"], password=password,
                password_file=fields.get("password_file", ""),
                driver=fields.get("driver", "ipmi"), system_id=fields.get("system_id", ""),
                verify_tls=fields.get("verify_tls", ""))


class Store:
    def __init__(self, url, namespace, socket_timeout=5.0, credentials=None,
                 events_max_len=EVENTS_MAXLEN, sel_recent=20):
        """`url`: [coordination] backend_url (see farm.backend); a URL that is
        not one raises ConfigError. `credentials` (farm.credentials) seals
        and opens BMC passwords; without it they are stored as given."""
        self.namespace = namespace
        self.credentials = credentials
        self.events_max_len = events_max_len
        self.sel_recent = sel_recent
        b = backend.parse(url)
        self._where = b.where
        timeouts = {"socket_timeout": socket_timeout,
                    "socket_connect_timeout": min(socket_timeout, 3.0)}
        try:
            if b.sentinel:
                sentinels = redis.sentinel.Sentinel(
                    list(b.sentinels), sentinel_kwargs=dict(timeouts, password=b.sentinel_password),
                    **timeouts, health_check_interval=30, decode_responses=True, **b.redis_kwargs())
                self._redis = sentinels.master_for(b.sentinel)
            else:
                self._redis = redis.Redis(**timeouts, health_check_interval=30, decode_responses=True,
                                          **b.redis_kwargs())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"backend URL {self._where}: {exc}") from None
        self._scripts = {name: self._redis.register_script(SCRIPTS[name]) for name in SCRIPT_NAMES}
        self._write_results, self._hold_lease, self._release_lease, self._publish = (
            self._scripts[name] for name in ("write_results", "hold_lease", "release_lease", "publish"))

    def _key(self, *parts):
        return ":".join((self.namespace,) + parts)

    def _do(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            raise BackendRefused(
                f"Redis at {self._where} refused farm during {what} (check the user, password "
                f"and ACL in backend_url): {type(exc).__name__}: {backend.redact(str(exc))}") from exc
        except redis.RedisError as exc:
            raise BackendUnavailable(
                f"Redis at {self._where} failed during {what}: "
                f"{type(exc).__name__}: {backend.redact(str(exc))}") from exc

    def ping(self):
        return self._do("ping", self._redis.ping)

    def close(self):
        self._redis.close()

    # -- inventory ----------------------------------------------------------
    def import_nodes(self, nodes, replace=False, progress=None):
        """Upsert nodes in one transaction; with replace, drop absent ones.

        Returns (added, updated, unchanged, removed) counts. `progress(n)` is
        called as the transaction is assembled (it is sent as one MULTI, so a
        failure changes nothing).
        """
        self.upgrade()  # a new farm starts with layout 2; an older one gets it built
        inv = self._key("inventory")
        given = {n.name: n for n in nodes}
        counts = {}

        def txn(pipe):
            current = pipe.hgetall(inv)
            added = [n for n in given if n not in current]
            updated = [n for n in given if n in current and not self._same(given[n], current[n])]
            # sealing is random (a new IV each time): seal only what changed
            wanted = {n: self._stored(given[n]) for n in added + updated}
            removed = [n for n in current if n not in given] if replace else []
            counts.update(added=len(added), updated=len(updated),
                          unchanged=len(given) - len(added) - len(updated),
                          removed=len(removed))
            pipe.multi()
            changed = {n: wanted[n] for n in added + updated}
            names = list(changed)
            for i in range(0, len(names), 1000):
                pipe.hset(inv, mapping={n: changed[n] for n in names[i:i + 1000]})
                if progress:
                    progress(len(names[i:i + 1000]))
            for i in range(0, len(added), 1000):
                pipe.zadd(self._key("names"), dict.fromkeys(added[i:i + 1000], 0))
            for i in range(0, len(removed), 1000):
                self._remove(removed[i:i + 1000], pipe)
            if changed:
                pipe.incr(self._key("inventory", "version"))

        self._do("inventory import", self._redis.transaction, txn, inv)
        return counts

    def _stored(self, node):
        fields = {"address": node.address, "port": node.port, "username": node.username,
                  **node.extra()}
        if node.password_file:
            fields["password_file"] = node.password_file
        elif self.credentials is not None:
            fields.update(self.credentials.seal(node.password))
        else:
            fields["password"] = node.password
        return json.dumps(fields, sort_keys=True)

    def _same(self, node, raw):
        """Whether the stored entry `raw` already says what `node` says."""
        fields = json.loads(raw)
        public = (fields["address"], int(fields["port"]), fields["username"],
                  fields.get("password_file", ""), fields.get("driver", "ipmi"),
                  fields.get("system_id", ""), fields.get("verify_tls", ""))
        if public != (node.address, node.port, node.username, node.password_file, node.driver,
                      node.system_id, node.verify_tls):
            return False
        if node.password_file:
            return True
        if "password_sealed" in fields and self.credentials is None:
            return False
        try:
            opened = (self.credentials.open(fields, node.name) if self.credentials
                      else fields.get("password"))
        except CredentialsError:
            return False  # sealed with a key we lack: store it anew
        return opened == node.password

    def reseal(self, new_keys, progress=None):
        """Seal every stored password under new_keys[0], in one transaction
        (`farm keys rotate`); returns how many entries were rewritten."""
        inv = self._key("inventory")
        count = {}

        def txn(pipe):
            current = pipe.hgetall(inv)
            fresh = {}
            for name, raw in current.items():
                fields = json.loads(raw)
                if "password_file" not in fields:
                    fresh[name] = json.dumps(self.credentials.reseal(fields, name, new_keys),
                                             sort_keys=True)
            pipe.multi()
            names = list(fresh)
            for i in range(0, len(names), 1000):
                pipe.hset(inv, mapping={n: fresh[n] for n in names[i:i + 1000]})
                if progress:
                    progress(len(names[i:i + 1000]))
            if fresh:
                pipe.incr(self._key("inventory", "version"))
            count["n"] = len(fresh)

        self._do("key rotation", self._redis.transaction, txn, inv)
        return count["n"]

    def remove_nodes(self, names):
        """Remove nodes and their state, atomically; the count removed."""
        return self._do("node removal", self._remove, names)

    def _remove(self, names, client=None):
        """remove_nodes.lua on `names`, directly or queued on a pipeline."""
        keys = [self._key(k) for k in ("inventory", "control", "counts", "polled", "names")]
        return self._scripts["remove_nodes"](
            keys=keys + [self._key("inventory", "version")] + self._node_keys(names),
            args=list(names), client=client)

    def inventory_version(self):
        return int(self._do("inventory read", self._redis.get,
                            self._key("inventory", "version")) or 0)

    def load_nodes(self, passwords=False):
        """(version, nodes sorted by name), read consistently in one transaction.
        With `passwords`, each Node carries its opened password (a worker);
        without, none (the CLI never needs one)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(self._key("inventory", "version"))
        pipe.hgetall(self._key("inventory"))
        version, raw = self._do("inventory read", pipe.execute)
        nodes = []
        for name in sorted(raw):
            fields = json.loads(raw[name])
            password = (self.credentials or _OPEN_ONLY).open(fields, name) if passwords else ""
            nodes.append(_node(name, fields, password))
        return int(version or 0), nodes

    # -- state --------------------------------------------------------------
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
        return self._do("result write", self._write_results, keys=keys, args=args)

    def write_sensor_results(self, results, worker=""):
        """Write a batch of SensorResults and their threshold events."""
        keys = [self._key("inventory"), self._key("events")]
        args = [self.events_max_len, worker]
        for r in results:
            keys += [self._key("state", r.node), self._key("sensors", r.node)]
            args += [r.node, repr(r.polled_at), f"{r.latency:.6f}", r.error_kind or "",
                     (r.error or "")[:MAX_ERROR], len(r.readings)]
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
                     len(r.entries)]
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

    def sel_cursors(self, names):
        """name -> the stored SEL cursor (a tuple) of those that have one."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hget(self._key("state", name), "sel_cursor")
        out = {}
        for name, raw in zip(names, self._do("state read", pipe.execute), strict=True):
            cursor = json.loads(raw) if raw else None
            if cursor:
                out[name] = tuple(cursor)
        return out

    # -- control: desired power state, maintenance, commands -----------------
    def set_control(self, name, event, who, **fields):
        """Set (or with '' clear) control fields of a node; records an event
        of type `event` by `who`. False if the node is not in the inventory."""
        args = [name, self.events_max_len, event, who]
        for field, value in fields.items():
            args += [field, value]
        got = self._do("control write", self._scripts["set_control"],
                       keys=[self._key("inventory"), self._key("control"),
                             self._key("control", "version"), self._key("events")], args=args)
        return int(got) >= 0

    def controls(self):
        """(version, name -> control dict) for every node with any."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(self._key("control", "version"))
        pipe.hgetall(self._key("control"))
        version, raw = self._do("control read", pipe.execute)
        return int(version or 0), {n: json.loads(v) for n, v in raw.items()}

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
        """The next command for this worker, or None after `timeout` seconds."""
        got = self._do("command read", self._redis.blpop, [self._key("commands", worker_id)],
                       timeout=timeout)
        return json.loads(got[1]) if got else None

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

    def append_event(self, fields):
        """One event (a dict of strings) on the stream, stamped by Redis."""
        return self._do("event write", self._redis.xadd, self._key("events"), fields,
                        maxlen=self.events_max_len, approximate=True)

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
        return {"node": _node(name, json.loads(entry), "").public(), "state": state,
                "control": json.loads(control) if control else {},
                "sensors": {k: json.loads(v) for k, v in sensors.items()},
                "sel": [json.loads(e) for e in sel]}

    def events_before(self, count, before="+"):
        """Up to `count` events, newest first, older than id `before`."""
        return self._do("event read", self._redis.xrevrange, self._key("events"),
                        max=before if before == "+" else f"({before}", count=count)

    def events_after(self, after, block_ms, count=1000):
        """Events newer than id `after` ('$': from now), waiting up to block_ms."""
        got = self._do("event read", self._redis.xread, {self._key("events"): after},
                       count=count, block=block_ms)
        return got[0][1] if got else []

    def nodes_named(self, names):
        """The inventory entries of `names` (in that order; missing ones
        skipped), without passwords: one HMGET."""
        if not names:
            return []
        raw = self._do("inventory read", self._redis.hmget, self._key("inventory"), names)
        out = []
        for name, entry in zip(names, raw, strict=True):
            if entry is not None:
                out.append(_node(name, json.loads(entry), ""))
        return out

    def _node_keys(self, names):
        """Every per-node key of `names` (dropped with the node)."""
        return [self._key(kind, n) for n in names for kind in ("state", "sensors", "sel")]

    def node_count(self):
        return self._do("inventory read", self._redis.hlen, self._key("inventory"))

    def counts(self):
        """What `farm nodes summary` shows, from the counts the scripts keep,
        in one round trip whatever the node count: {nodes, polled, power
        {state: n}, failing {kind: n}, oldest_seen_at (Redis's clock) or
        None, now (Redis's clock)}."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hlen(self._key("inventory"))
        pipe.zcard(self._key("polled"))
        pipe.hgetall(self._key("counts"))
        pipe.zrange(self._key("polled"), 0, 0, withscores=True)
        pipe.time()
        nodes, polled, raw, oldest, (sec, usec) = self._do("counts read", pipe.execute)
        out = {"nodes": nodes, "polled": polled, "power": {}, "failing": {},
               "oldest_seen_at": oldest[0][1] if oldest else None, "now": sec + usec / 1e6}
        for field, n in raw.items():
            kind, _, value = field.partition(":")
            if int(n) and kind in ("power", "failing"):
                out[kind][value] = int(n)
        return out

    def name_page(self, after=None, limit=1000):
        """(up to `limit` names (0: all) sorted, after `after`; the node count)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrangebylex(self._key("names"), f"({after}" if after else "-", "+",
                         *((0, limit) if limit else ()))
        pipe.zcard(self._key("names"))
        return tuple(self._do("inventory read", pipe.execute))

    def upgrade(self, force=False, attempts=5):
        """Build the counts, polled and names keys from the inventory and the
        states (recount.lua) when this farm has none yet (written by an older
        version) or `force` (`farm nodes summary --recount`). Atomic; True if
        it ran. Costs about a second per 100,000 nodes, once."""
        layout = self._key("layout")
        if not force and int(self._do("layout read", self._redis.get, layout) or 0) >= LAYOUT:
            return False
        for _ in range(attempts):
            pipe = self._redis.pipeline(transaction=True)
            pipe.get(self._key("inventory", "version"))
            pipe.hkeys(self._key("inventory"))
            version, names = self._do("inventory read", pipe.execute)
            keys = [self._key(k) for k in ("inventory", "inventory:version", "counts", "polled",
                                           "names", "layout")]
            got = self._do("recount", self._scripts["recount"],
                           keys=keys + [self._key("state", n) for n in names],
                           args=[int(version or 0), LAYOUT, *names])
            if int(got) >= 0:
                return True
        raise BackendUnavailable(f"the inventory changed during each of {attempts} recounts; "
                                 f"retry when imports are done")

    def node_states(self, names):
        """name -> state dict (empty when never polled), in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._key("state", name))
        return dict(zip(names, self._do("state read", pipe.execute), strict=True))

    def read_events(self, count=1000, after="0-0"):
        entries = self._do("event read", self._redis.xrange,
                           self._key("events"), min=f"({after}" if after != "0-0" else "-",
                           count=count)
        return [(entry_id, fields) for entry_id, fields in entries]

    # -- coordination -------------------------------------------------------
    def fix_partitions(self, partitions):
        """Record the partition count once; return the farm's count."""
        key = self._key("partitions")
        self._do("partition count", self._redis.set, key, partitions, nx=True)
        return int(self._do("partition count", self._redis.get, key))

    def hold_lease(self, member_id, ttl):
        """Take or renew the leader lease: our epoch, or -1 if another holds it."""
        return int(self._do("leader lease", self._hold_lease,
                            keys=[self._key("leader"), self._key("leader", "epoch")],
                            args=[member_id, int(ttl * 1000)]))

    def release_lease(self, member_id):
        return self._do("leader lease", self._release_lease, keys=[self._key("leader")],
                        args=[member_id])

    def leader(self):
        return self._do("leader read", self._redis.get, self._key("leader"))

    def publish_assignment(self, member_id, epoch, members, placement, now):
        """Publish a placement if we hold the lease and it changed.

        Returns the new generation, 0 if unchanged, -1 if fenced out.
        """
        index = {m: i for i, m in enumerate(members)}
        return int(self._do("assignment publish", self._publish,
                            keys=[self._key("leader"), self._key("assignment")],
                            args=[member_id, epoch,
                                  json.dumps([index[o] for o in placement], separators=(",", ":")),
                                  json.dumps(list(members)), repr(now)]))

    def assignment_generation(self):
        return int(self._do("assignment read", self._redis.hget, self._key("assignment"),
                            "generation") or 0)

    def assignment(self):
        """(generation, members, placement tuple of member ids), or None if none yet."""
        raw = self._do("assignment read", self._redis.hgetall, self._key("assignment"))
        if not raw or "placement" not in raw:
            return None
        members = json.loads(raw["members"])
        placement = tuple(members[i] for i in json.loads(raw["placement"]))
        return {"generation": int(raw["generation"]), "members": members, "placement": placement,
                "leader": raw.get("leader"), "epoch": int(raw.get("epoch") or 0),
                "published_at": float(raw.get("published_at") or 0)}

    def assignment_channel(self):
        return self._key("assignment")

    def subscribe_assignments(self):
        """A redis PubSub on the assignment channel (messages carry the generation)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._do("subscribe", pubsub.subscribe, self._key("assignment"))
        return pubsub

    def report_worker(self, member_id, info, ttl):
        """Refresh a worker's own report and read what it follows, in one round
        trip (a worker does this every second): (inventory version, generation,
        Redis's clock, control version)."""
        fields = [x for k, v in info.items() for x in (k, json.dumps(v))]
        keys = [self._key("worker", member_id), self._key("workers"),
                self._key("inventory", "version"), self._key("assignment"),
                self._key("control", "version")]
        version, generation, sec, usec, control = self._do(
            "worker report", self._scripts["report_worker"], keys=keys,
            args=[int(ttl * 1000), member_id, *fields])
        return int(version), int(generation), int(sec) + int(usec) / 1e6, int(control)

    def server_time(self):
        """Redis's clock (epoch seconds): the one clock every farm process shares."""
        sec, usec = self._do("time", self._redis.time)
        return sec + usec / 1e6

    def forget_worker(self, member_id):
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._key("worker", member_id))
        pipe.zrem(self._key("workers"), member_id)
        self._do("worker report", pipe.execute)

    def worker_reports(self):
        """member id -> the worker's own report, for workers still reporting
        (the index, then their reports: no scan of the keyspace)."""
        ids = self._do("worker reports", self._redis.zrange, self._key("workers"), 0, -1)
        pipe = self._redis.pipeline(transaction=False)
        for member in ids:
            pipe.hgetall(self._key("worker", member))
        raw = self._do("worker reports", pipe.execute)
        return {member: {f: json.loads(v) for f, v in r.items()}
                for member, r in zip(ids, raw, strict=True) if r}
