"""The inventory in Redis: import (one transaction), removal, key rotation,
reads without passwords, and the counts and name index kept beside it
(`farm nodes summary`, pages of `farm nodes list`)."""

import json

from farm.coordination.placement import DEFAULT_SITE
from farm.credentials import Credentials
from farm.errors import BackendUnavailable, CredentialsError
from farm.model import Node
from farm.store.actions import ActionConflict

# 2: counts, polled and names kept beside the inventory and state; 3: every
# node's site in the label index (site=<site>); a farm written by an older
# version gets them built once (Inventory.upgrade)
LAYOUT = 3
_OPEN_ONLY = Credentials()  # without a key: opens plaintext and password_file entries
_PLAIN = Credentials(allow_plaintext=True)  # a Store without credentials stores as given


def node_from_entry(name, fields, password, kg=""):
    """A Node from its stored inventory entry (with `password` and `kg`
    opened, or '')."""
    return Node(name=name, address=fields["address"], port=int(fields["port"]),
                username=fields["username"], password=password,
                password_file=fields.get("password_file", ""),
                driver=fields.get("driver", "ipmi"), system_id=fields.get("system_id", ""),
                verify_tls=fields.get("verify_tls", ""),
                cipher_suites=tuple(fields.get("cipher_suites", ())),
                privilege=fields.get("privilege", ""), kg=kg,
                workarounds=tuple(fields.get("workarounds", ())),
                labels=tuple(sorted(fields.get("labels", {}).items())),
                site=fields.get("site", DEFAULT_SITE))


class Inventory:
    def import_nodes(self, nodes, replace=False, progress=None):
        """Upsert nodes in one transaction; with replace, drop absent ones.

        Returns (added, updated, unchanged, removed) counts. `progress(n)` is
        called as the transaction is assembled (it is sent as one MULTI, so a
        failure changes nothing). A replace that would drop a node in an
        unfinished bulk action changes nothing (ActionConflict names it).
        """
        self.upgrade()  # a new farm starts with layout 2; an older one gets it built
        inv, step_of = self._key("inventory"), self._key("step-of")
        given = {n.name: n for n in nodes}
        counts = {}

        def txn(pipe):
            current = pipe.hgetall(inv)
            added = [n for n in given if n not in current]
            updated = [n for n in given if n in current and not self._same(given[n], current[n])]
            # sealing is random (a new IV each time): seal only what changed
            wanted = {n: self._stored(given[n]) for n in added + updated}
            removed = [n for n in current if n not in given] if replace else []
            _refuse_busy(pipe, step_of, removed)
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
            # the label index beside the name index: name -> labels JSON, and
            # a set of names per key=value (what a selection's label term reads)
            labelled = {n: json.dumps(dict(given[n].labels), sort_keys=True)
                        for n in names if given[n].labels}
            unlabelled = [n for n in updated if not given[n].labels]
            if labelled:
                pipe.hset(self._key("labels"), mapping=labelled)
            if unlabelled:
                pipe.hdel(self._key("labels"), *unlabelled)
            for n in names:
                self._relabel(pipe, n, _indexed(current.get(n)), _node_indexed(given[n]))
            for n in removed:
                self._relabel(pipe, n, _indexed(current[n]), {})
            for i in range(0, len(removed), 1000):
                self._remove(removed[i:i + 1000], pipe)
            if changed:
                pipe.incr(self._key("inventory", "version"))

        self._do("inventory import", self._redis.transaction, txn, inv, step_of)
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
        if node.kg:
            fields.update((self.credentials or _PLAIN).seal(node.kg, "kg"))
        return json.dumps(fields, sort_keys=True)

    def _same(self, node, raw):
        """Whether the stored entry `raw` already says what `node` says."""
        fields = json.loads(raw)
        if node_from_entry(node.name, fields, node.password, node.kg) != node:
            return False  # anything but the secrets differs
        try:
            if (self.credentials or _OPEN_ONLY).open_kg(fields, node.name) != node.kg:
                return False
        except CredentialsError:
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
        """Seal every stored password, and every Redfish session token kept
        for the farm, under new_keys[0], in one transaction (`farm keys
        rotate`); returns (passwords, sessions) rewritten. A session no key
        opens is dropped: its node's next poll logs in anew."""
        inv, held = self._key("inventory"), self._key("redfish-sessions")
        count = {}

        def txn(pipe):
            current = pipe.hgetall(inv)
            fresh = {}
            for name, raw in current.items():
                fields = json.loads(raw)
                if "password_file" not in fields:
                    fresh[name] = json.dumps(self.credentials.reseal(fields, name, new_keys),
                                             sort_keys=True)
            sessions, unusable = {}, []
            for name, sealed in pipe.hgetall(held).items():
                try:
                    token = self.credentials.open_text(sealed, name, "Redfish session")
                except CredentialsError:
                    unusable.append(name)
                    continue
                sessions[name] = new_keys[0].encrypt(token.encode("utf-8")).decode("ascii")
            pipe.multi()
            names = list(fresh)
            for i in range(0, len(names), 1000):
                pipe.hset(inv, mapping={n: fresh[n] for n in names[i:i + 1000]})
                if progress:
                    progress(len(names[i:i + 1000]))
            if fresh:
                pipe.incr(self._key("inventory", "version"))
            if sessions:
                pipe.hset(held, mapping=sessions)
            if unusable:
                pipe.hdel(held, *unusable)
            count.update(n=len(fresh), sessions=len(sessions))

        self._do("key rotation", self._redis.transaction, txn, inv, held)
        return count["n"], count["sessions"]

    def remove_nodes(self, names):
        """Remove nodes and their state, atomically (their labels' index
        entries too); the count removed. Nothing is removed if one is in an
        unfinished bulk action (ActionConflict names it)."""
        inv, step_of = self._key("inventory"), self._key("step-of")
        out = {}

        def txn(pipe):
            entries = pipe.hmget(inv, names) if names else []
            _refuse_busy(pipe, step_of, names)
            pipe.multi()
            for name, entry in zip(names, entries, strict=True):
                self._relabel(pipe, name, _indexed(entry), {})
            self._remove(names, pipe)
        results = self._do("node removal", self._redis.transaction, txn, inv, step_of)
        out["removed"] = results[-1] if results else 0
        return int(out["removed"])

    def _relabel(self, pipe, name, old, new):
        """Move `name` in the key=value sets from labels `old` to `new` (queued)."""
        for key, value in old.items():
            if new.get(key) != value:
                pipe.srem(self._key("label", f"{key}={value}"), name)
        for key, value in new.items():
            if old.get(key) != value:
                pipe.sadd(self._key("label", f"{key}={value}"), name)
                pipe.sadd(self._key("label-values", key), value)

    def label_members(self, key, value):
        """The names with label key=value."""
        return set(self._do("label read", self._redis.smembers,
                            self._key("label", f"{key}={value}")))

    def label_values(self, key):
        """The values label `key` has had (a value whose last node left may
        stay: it then selects nobody)."""
        return set(self._do("label read", self._redis.smembers, self._key("label-values", key)))

    def _remove(self, names, client=None):
        """remove_nodes.lua on `names`, directly or queued on a pipeline."""
        keys = [self._key(k) for k in ("inventory", "control", "counts", "polled", "names")]
        return self._scripts["remove_nodes"](
            keys=keys + [self._key("inventory", "version"), self._key("labels"),
                         self._key("redfish-sessions")]
            + self._node_keys(names),
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
            opener = self.credentials or _OPEN_ONLY
            password = opener.open(fields, name) if passwords else ""
            kg = opener.open_kg(fields, name) if passwords else ""
            nodes.append(node_from_entry(name, fields, password, kg))
        return int(version or 0), nodes

    def nodes_named(self, names):
        """The inventory entries of `names` (in that order; missing ones
        skipped), without passwords: one HMGET."""
        if not names:
            return []
        raw = self._do("inventory read", self._redis.hmget, self._key("inventory"), names)
        out = []
        for name, entry in zip(names, raw, strict=True):
            if entry is not None:
                out.append(node_from_entry(name, json.loads(entry), ""))
        return out

    def _node_keys(self, names):
        """Every per-node key of `names` (dropped with the node)."""
        return [self._key(kind, n) for n in names for kind in ("state", "sensors", "sel")]

    def all_names(self):
        """Every node's name, sorted (the name index)."""
        return self._do("inventory read", self._redis.zrange, self._key("names"), 0, -1)

    def existing_names(self, names):
        """Those of `names` in the inventory (the name index), 10,000 a call."""
        names, found = sorted(names), []
        for i in range(0, len(names), 10_000):
            chunk = names[i:i + 10_000]
            scores = self._do("inventory read", self._redis.zmscore, self._key("names"), chunk)
            found += [n for n, score in zip(chunk, scores, strict=True) if score is not None]
        return found

    def labels_of(self, names):
        """name -> labels (a dict) of `names` ({} for a node without)."""
        if not names:
            return {}
        raw = self._do("inventory read", self._redis.hmget, self._key("labels"), names)
        return {n: json.loads(v) if v else {} for n, v in zip(names, raw, strict=True)}

    def labels(self):
        """name -> labels (a dict) of every node that has any (the label index)."""
        raw = self._do("inventory read", self._redis.hgetall, self._key("labels"))
        return {n: json.loads(v) for n, v in raw.items()}

    def site_counts(self):
        """site -> its node count, for every site with nodes (the site sets
        of the label index: one round trip per 1,000 sites, whatever the
        node count)."""
        sites = sorted(self.label_values("site"))
        pipe = self._redis.pipeline(transaction=False)
        for site in sites:
            pipe.scard(self._key("label", f"site={site}"))
        counts = self._do("site counts", pipe.execute) if sites else []
        return {s: n for s, n in zip(sites, counts, strict=True) if n}

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

    def stale_names(self, before):
        """Sorted names of the nodes whose last power result Redis saw before
        `before` (its clock), or never: from the poll index, without reading
        the nodes that are fresh (ZDIFF: Redis 6.2 or later)."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrangebyscore(self._key("polled"), "-inf", f"({before!r}")
        pipe.zcard(self._key("names"))
        pipe.zcard(self._key("polled"))
        old, names, polled = self._do("poll index read", pipe.execute)
        never = []
        if names > polled:
            never = self._do("poll index read", self._redis.zdiff,
                             [self._key("names"), self._key("polled")])
        return sorted(set(old) | set(never))

    def upgrade(self, force=False, attempts=5):
        """Build the counts, polled and names keys from the inventory and the
        states (recount.lua) when this farm has none yet (written by an older
        version) or `force` (`farm nodes summary --recount`). Atomic; True if
        it ran. Costs about a second per 100,000 nodes, once."""
        layout = self._key("layout")
        was = int(self._do("layout read", self._redis.get, layout) or 0)
        if not force and was >= LAYOUT:
            return False
        if was < 3:
            self._index_sites()
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


    def _index_sites(self):
        """Put every node in its site's set (a farm from before sites: each
        in site=default). Idempotent; an import meanwhile indexes what it
        changes itself."""
        raw = self._do("inventory read", self._redis.hgetall, self._key("inventory"))
        by_site = {}
        for name, entry in raw.items():
            by_site.setdefault(json.loads(entry).get("site", DEFAULT_SITE), []).append(name)
        pipe = self._redis.pipeline(transaction=False)
        for site, names in by_site.items():
            for i in range(0, len(names), 1000):
                pipe.sadd(self._key("label", f"site={site}"), *names[i:i + 1000])
            pipe.sadd(self._key("label-values", "site"), site)
        self._do("site index", pipe.execute)


def _refuse_busy(pipe, step_of, names):
    """ActionConflict if one of `names` is in an unfinished bulk action (read
    inside a WATCHed transaction, before its MULTI)."""
    if not names:
        return
    busy = [(n, a) for n, a in zip(names, pipe.hmget(step_of, names), strict=True) if a]
    if busy:
        raise ActionConflict(f"{busy[0][0]} is in action {busy[0][1]}, not finished "
                             f"(`farm actions cancel {busy[0][1]}`, or wait for it)")


def _indexed(entry):
    """What the label index holds of a stored inventory entry: its labels
    and its site (a dict), or {} (None: no entry)."""
    if not entry:
        return {}
    fields = json.loads(entry)
    return {**fields.get("labels", {}), "site": fields.get("site", DEFAULT_SITE)}


def _node_indexed(node):
    """What the label index holds of a Node: its labels and its site."""
    return {**dict(node.labels), "site": node.site}
