"""farm's data in Redis: inventory, per-node state and the event stream.

This is the only module that imports redis; every redis error leaves it as
BackendUnavailable with a message that never contains the URL's password.

Keys, all under the namespace `ns`:
  {ns}:inventory          hash  node name -> JSON {address, port, username, and one of
                                password_sealed (Fernet, see farm.credentials), password_file
                                (a path on the worker hosts) or password (test farms only)}
  {ns}:inventory:version  int   bumped by every change of the inventory
  {ns}:state:{name}       hash  power_state, polled_at, latency, last_ok_at (the
                                worker's clock), seen_at (Redis's clock when written),
                                reachable, consecutive_failures, error_kind, last_error,
                                worker (member id of the worker that polled)
  {ns}:events             stream of power and reachability changes
  {ns}:partitions         int   the partition count, fixed at the first coordinator's start
  {ns}:leader             string the leader's member id, with a TTL (the lease)
  {ns}:leader:epoch       int   bumped each time a new leader takes the lease
  {ns}:worker:{id}        hash  a worker's own report (host, pid, executor, pool_size,
                                nodes, last_heartbeat), expiring when it stops reporting
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
SCRIPTS = {name: (files("farm.lua") / f"{name}.lua").read_text()
           for name in ("write_results", "hold_lease", "release_lease", "publish")}
MAX_ERROR = 300  # characters of last_error kept: every per-node key stays small
_OPEN_ONLY = Credentials()  # without a key: opens plaintext and password_file entries







class Store:
    def __init__(self, url, namespace, socket_timeout=5.0, credentials=None):
        """`url`: [coordination] backend_url (see farm.backend); a URL that is
        not one raises ConfigError. `credentials` (farm.credentials) seals
        and opens BMC passwords; without it they are stored as given."""
        self.namespace = namespace
        self.credentials = credentials
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
        self._write_results, self._hold_lease, self._release_lease, self._publish = (
            self._redis.register_script(SCRIPTS[name])
            for name in ("write_results", "hold_lease", "release_lease", "publish"))

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
            for i in range(0, len(removed), 1000):
                chunk = removed[i:i + 1000]
                pipe.hdel(inv, *chunk)
                pipe.delete(*[self._key("state", n) for n in chunk])
            if changed or removed:
                pipe.incr(self._key("inventory", "version"))

        self._do("inventory import", self._redis.transaction, txn, inv)
        return counts

    def _stored(self, node):
        fields = {"address": node.address, "port": node.port, "username": node.username}
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
                  fields.get("password_file", ""))
        if public != (node.address, node.port, node.username, node.password_file):
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
        """Remove nodes and their state in one transaction; the count removed."""
        pipe = self._redis.pipeline()
        pipe.hdel(self._key("inventory"), *names)
        pipe.delete(*[self._key("state", n) for n in names])
        pipe.incr(self._key("inventory", "version"))
        return self._do("node removal", pipe.execute)[0]

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
            nodes.append(Node(name=name, address=fields["address"], port=int(fields["port"]),
                              username=fields["username"], password=password,
                              password_file=fields.get("password_file", "")))
        return int(version or 0), nodes

    # -- state --------------------------------------------------------------
    def write_results(self, results, worker=""):
        """Write a batch of PollResults (polled by `worker`) and their events in
        one round trip."""
        if not results:
            return 0
        keys = [self._key("inventory"), self._key("events")]
        args = [EVENTS_MAXLEN, worker]
        for r in results:
            keys.append(self._key("state", r.node))
            args += [r.node, repr(r.polled_at), f"{r.latency:.6f}",
                     r.power_state.value if r.power_state else "",
                     r.error_kind or "", (r.error or "")[:MAX_ERROR]]
        return self._do("result write", self._write_results, keys=keys, args=args)

    def nodes_named(self, names):
        """The inventory entries of `names` (in that order; missing ones
        skipped), without passwords: one HMGET."""
        if not names:
            return []
        raw = self._do("inventory read", self._redis.hmget, self._key("inventory"), names)
        out = []
        for name, entry in zip(names, raw, strict=True):
            if entry is not None:
                fields = json.loads(entry)
                out.append(Node(name=name, address=fields["address"], port=int(fields["port"]),
                                username=fields["username"],
                                password_file=fields.get("password_file", "")))
        return out

    def node_count(self):
        return self._do("inventory read", self._redis.hlen, self._key("inventory"))

    def node_names(self):
        """Every node's name, without reading its entry (no password, sealed or not)."""
        return self._do("inventory read", self._redis.hkeys, self._key("inventory"))

    def node_freshness(self, names):
        """name -> (power_state, seen_at or polled_at, error_kind): what
        `farm nodes summary` needs, one HMGET per node in one pipeline."""
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hmget(self._key("state", name), "power_state", "seen_at", "polled_at", "error_kind")
        out = {}
        for name, (power, seen, polled, kind) in zip(names, self._do("state read", pipe.execute),
                                                     strict=True):
            out[name] = (power or None, float(seen or polled or 0) or None, kind or None)
        return out

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
        Redis's clock)."""
        key = self._key("worker", member_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in info.items()})
        pipe.pexpire(key, int(ttl * 1000))
        pipe.get(self._key("inventory", "version"))
        pipe.hget(self._key("assignment"), "generation")
        pipe.time()
        _, _, version, generation, (sec, usec) = self._do("worker report", pipe.execute)
        return int(version or 0), int(generation or 0), sec + usec / 1e6

    def server_time(self):
        """Redis's clock (epoch seconds): the one clock every farm process shares."""
        sec, usec = self._do("time", self._redis.time)
        return sec + usec / 1e6

    def forget_worker(self, member_id):
        self._do("worker report", self._redis.delete, self._key("worker", member_id))

    def worker_reports(self):
        """member id -> the worker's own report, for workers still reporting."""
        keys = self._do("worker reports", lambda: list(
            self._redis.scan_iter(match=self._key("worker", "*"), count=1000)))
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        raw = self._do("worker reports", pipe.execute)
        prefix = len(self._key("worker", ""))
        return {k[prefix:]: {f: json.loads(v) for f, v in r.items()}
                for k, r in zip(keys, raw, strict=True) if r}
