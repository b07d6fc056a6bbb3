"""The private parts of other libraries farm relies on (tooz's versions are
pinned in setup.py): each test fails when the part changes shape."""

import inspect
import re

from tooz import hashring
from tooz.drivers import redis as tooz_redis


def test_hashring_points_and_owners():
    """farm.placement looks partitions up by ring position: tooz offers
    lookups by key only, so it reads the sorted points and their owners."""
    ring = hashring.HashRing([], partitions=8)
    ring.add_node("a", weight=1)
    ring.add_node("b", weight=2)
    points = ring._partitions
    assert isinstance(points, list) and points == sorted(points) and len(points) == 8 * 3
    assert {ring._ring[p] for p in points} == {"a", "b"}


def test_leader_lock_name_and_acquired_locks():
    """farm.membership.stand_down releases tooz's leader lock itself (tooz
    has no public 'resign'): it finds it in _acquired_locks by its name."""
    source = inspect.getsource(tooz_redis.RedisLock.__init__)
    assert re.search(r"name = b'%s_%s_lock' % \(coord\.namespace", source), source
    assert "self._acquired_locks" in inspect.getsource(tooz_redis.RedisDriver.__init__)
    assert 'b"leader_of_" + group_id' in inspect.getsource(tooz_redis.RedisDriver._encode_group_leader)
