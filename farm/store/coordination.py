"""Coordination in Redis: the partition count, the leader's lease (fenced by
its epoch), the published assignment, and each worker's own report."""

import json

from farm.coordination import placement


class Coordination:
    def fix_partitions(self, partitions):
        """Record the partition count once; return the farm's count."""
        key = self._key("partitions")
        self._do("partition count", self._redis.set, key, partitions, nx=True)
        return int(self._do("partition count", self._redis.get, key))

    def hold_lease(self, member_id, ttl):
        """Take or renew the leader lease: our epoch, or -1 if another holds it."""
        return int(self._do("leader lease", self._scripts["hold_lease"],
                            keys=[self._key("leader"), self._key("leader", "epoch")],
                            args=[member_id, int(ttl * 1000)]))

    def release_lease(self, member_id):
        return self._do("leader lease", self._scripts["release_lease"], keys=[self._key("leader")],
                        args=[member_id])

    def leader(self):
        return self._do("leader read", self._redis.get, self._key("leader"))

    def publish_assignment(self, member_id, epoch, members, placements, now):
        """Publish each site's placement (site -> member ids by partition,
        () for a site placed on nobody) if we hold the lease and it changed.

        Returns the new generation, 0 if unchanged, -1 if fenced out.
        """
        index = {m: i for i, m in enumerate(members)}
        fields = []
        for site in sorted(placements):
            fields += [placement.field_of(site),
                       json.dumps([index[o] for o in placements[site]], separators=(",", ":"))]
        return int(self._do("assignment publish", self._scripts["publish"],
                            keys=[self._key("leader"), self._key("assignment")],
                            args=[member_id, epoch, json.dumps(list(members)),
                                  json.dumps(sorted(placements)), repr(now), *fields]))

    def assignment_generation(self):
        return int(self._do("assignment read", self._redis.hget, self._key("assignment"),
                            "generation") or 0)

    def assignment(self):
        """The published assignment, or None if none yet: generation,
        members, sites, placements (site -> tuple of member ids by
        partition; () for a site placed on nobody), leader, epoch,
        published_at."""
        raw = self._do("assignment read", self._redis.hgetall, self._key("assignment"))
        if not raw or "generation" not in raw:
            return None
        members = json.loads(raw["members"])
        # a farm published before sites has one placement, the default site's
        sites = json.loads(raw.get("sites") or json.dumps([placement.DEFAULT_SITE]))
        placements = {site: tuple(members[i] for i in json.loads(
            raw.get(placement.field_of(site)) or "[]")) for site in sites}
        return {"generation": int(raw["generation"]), "members": members, "sites": sites,
                "placements": placements,
                # the default site's, as a farm without sites has it
                "placement": placements.get(placement.DEFAULT_SITE, ()),
                "leader": raw.get("leader"), "epoch": int(raw.get("epoch") or 0),
                "published_at": float(raw.get("published_at") or 0)}

    def assignment_channel(self):
        return self._key("assignment")

    def subscribe_assignments(self):
        """A redis PubSub on the assignment channel (messages carry the
        generation) and the actions channel (an action's id when its steps
        appear or go)."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._do("subscribe", pubsub.subscribe, self._key("assignment"), self._key("actions"))
        return pubsub

    def report_worker(self, member_id, info, ttl):
        """Refresh a worker's own report and read what it follows, in one round
        trip (a worker does this every second): (inventory version, generation,
        Redis's clock, control version, actions version)."""
        fields = [x for k, v in info.items() for x in (k, json.dumps(v))]
        keys = [self._key("worker", member_id), self._key("workers"),
                self._key("inventory", "version"), self._key("assignment"),
                self._key("control", "version"), self._key("actions", "version")]
        version, generation, sec, usec, control, actions = self._do(
            "worker report", self._scripts["report_worker"], keys=keys,
            args=[int(ttl * 1000), member_id, *fields])
        return (int(version), int(generation), int(sec) + int(usec) / 1e6, int(control),
                int(actions))

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
