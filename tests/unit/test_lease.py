"""The acting lease (farm.power.lease): its bound runs out before any other worker
can be handed the node, and the lease fences, logs once and renews."""

from hypothesis import given
from hypothesis import strategies as st

from farm.power.lease import MIN_BOUND, ActingLease, acting_bound, renew_every, tooz_heartbeat


@given(membership=st.floats(2.5, 120), leader=st.floats(2, 120), confirm=st.floats(0, 1000),
       share=st.floats(0, 1), late=st.floats(0, 0.99))
def test_the_bound_ends_before_the_membership_can_expire(membership, leader, confirm, share,
                                                         late):
    """tooz beats every `hb` s, each beat up to `late` s behind schedule, so
    the last beat Redis saw before a round trip confirmed at `confirm` is at
    most hb + late older. The member cannot be dropped before that beat plus
    membership_timeout; the lease must be over by then."""
    hb = tooz_heartbeat(membership, leader)
    last_beat = confirm - share * (hb + late)
    earliest_drop = last_beat + membership
    bound = acting_bound(membership, leader)
    assert bound >= MIN_BOUND
    assert confirm + bound < earliest_drop


def test_defaults():
    # the defaults: tooz's beat unchanged (5 s), so a dead worker's nodes move as fast as before
    assert tooz_heartbeat(10.0, 10.0) == 5 and acting_bound(10.0, 10.0) == 4.0
    assert renew_every(4.0) == 1.0
    # short timeouts: the beat comes down so the bound stays usable
    assert tooz_heartbeat(3.0, 4.0) == 1 and acting_bound(3.0, 4.0) == 1.0
    assert abs(renew_every(1.0) - 1 / 3) < 1e-9


def test_fences_once_and_renews():
    now = [100.0]
    lease = ActingLease(4.0, lambda: now[0])
    assert not lease.valid() and lease.until() is None
    lease.confirm(100.0)
    assert lease.valid() and lease.until() == 104.0
    now[0] = 103.9
    assert lease.valid() and not lease.check()
    now[0] = 104.0
    assert not lease.valid()
    assert lease.check() and "for 4.0 s" in lease.reason
    assert not lease.check()           # said once
    lease.confirm(99.0)                # an older round trip never extends the lease
    assert lease.until() == 104.0 and not lease.valid()
    lease.confirm(104.5)
    assert lease.valid() and lease.fenced_since is None
