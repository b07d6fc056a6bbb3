"""Which worker owns which partition: pure functions of their inputs.

A node belongs to partition `partition_of(name, P)`, fixed for the life of a
farm. The leader places the P partitions on the live workers with a consistent
hash ring, weighted by each worker's capacity, so that any coordinator
computes the same map from the same members and a join or leave moves only
the partitions it must.

The ring's points are the ones tooz.hashring.HashRing computes (md5 of the
member's name, fed the name once more for each point), so coordinators of
farm versions that used tooz's ring place partitions identically during a
rolling upgrade; tests/unit/test_library_internals.py compares the two.
Written here rather than read from tooz's private `_ring` so this module
stays pure and no tooz release can change a farm's placement.
"""

import bisect
import hashlib

_RING_SIZE = 2**128  # points are md5 digests

# Ring points per unit of weight. tooz's default (32) leaves shares between
# 0.62x and 1.46x of even over 50 members; 256 keeps them within about 15 %.
POINTS_PER_WEIGHT = 256


def partition_of(name, partitions):
    """The partition of a node name (pure; stable across processes and hosts)."""
    digest = hashlib.md5(name.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def place(members, partitions, points=POINTS_PER_WEIGHT):
    """Map every partition to one member.

    `members` maps member id (str) to an integer weight >= 1. The result is a
    tuple of member ids indexed by partition (empty when there are no members).
    Only the members and weights matter, not their order.
    """
    if not members:
        return ()
    ring = ring_points(members, points)
    # Partitions sit at evenly spaced ring positions rather than at hashed
    # ones, which trims the sampling noise on top of the ring's own unevenness
    # (1,024 partitions over 10 members: 0.89-1.22x of even with hashed keys,
    # 0.89-1.10x spaced). Over many members the count of partitions per member
    # still varies by about 1/sqrt(P/members) (50 members: 0.63-1.61x while
    # their ring arcs are 0.86-1.19x); more partitions reduce it.
    points_sorted = sorted(ring)
    owners = []
    for p in range(partitions):
        position = (p * _RING_SIZE) // partitions
        i = bisect.bisect(points_sorted, position)
        owners.append(ring[points_sorted[i if i < len(points_sorted) else 0]])
    return tuple(owners)


def ring_points(members, points=POINTS_PER_WEIGHT):
    """The ring: point (int below 2**128) -> member id, `points` per unit of
    weight. Members are added in name order and a later one takes a point
    that collides (as tooz's ring does when fed in that order)."""
    ring = {}
    for member in sorted(members):
        key = member.encode("utf-8")
        digest = hashlib.md5(key, usedforsecurity=False)
        for _ in range(points * max(1, int(members[member]))):
            digest.update(key)
            ring[int.from_bytes(digest.digest(), "big")] = member
    return ring


def owned(placement, member):
    """The partitions `member` owns in a placement."""
    return frozenset(p for p, owner in enumerate(placement) if owner == member)


def moved(before, after):
    """Partitions whose owner differs between two placements (a partition
    missing on one side counts as moved)."""
    size = max(len(before), len(after))
    return frozenset(p for p in range(size)
                     if p >= len(before) or p >= len(after) or before[p] != after[p])


def weight_of(pool_size, slots_per_weight=16):
    """A worker's ring weight from its pool size: one unit per 16 slots."""
    return max(1, round(pool_size / slots_per_weight))


DEFAULT_SITE = "default"


def place_sites(members, sites, partitions, points=POINTS_PER_WEIGHT):
    """Each site's placement: site -> tuple of member ids by partition, or
    () where nobody may serve the site.

    `members` maps member id to (weight, sites it serves, sites it backs
    up); `sites` are the sites that need a placement (those with nodes;
    the members' own sites are placed too). A site goes to the members that
    serve it, on a ring of their own, so that one site's membership never
    moves another site's partitions (as Ironic's ring per conductor group).
    Only a site with no member of its own goes to its backup members (as a
    MAAS rack that can route to a BMC takes it while the BMC's own rack is
    away), and with neither it is placed on nobody.
    """
    every = set(sites)
    for _, served, _ in members.values():
        every.update(served)
    out = {}
    for site in sorted(every):
        own = {m: w for m, (w, served, _) in members.items() if site in served}
        group = own or {m: w for m, (w, _, backs) in members.items() if site in backs}
        out[site] = place(group, partitions, points) if group else ()
    return out


def field_of(site):
    """The assignment hash field holding a site's placement: the default
    site keeps the field a farm without sites has, so that a farm of one
    site reads the same before and after sites came."""
    return "placement" if site == DEFAULT_SITE else f"placement:{site}"


def owner_of(placements, site, name):
    """The member that owns node `name` of `site`, or None (pure)."""
    owners = placements.get(site) or ()
    return owners[partition_of(name, len(owners))] if owners else None
