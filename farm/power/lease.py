"""Who may act on a node's power: the acting lease (pure, clock injected).

A worker may send a power command only while a round trip to Redis, begun
less than `bound` seconds ago, confirmed the assignment it acts on. A worker
cut off from Redis (a partition, a paused process, a call blocked for a
minute) cannot learn that its nodes moved; the coordinator moves them only
after the worker's tooz membership expires. So the bound must run out before
the earliest moment that can happen, counted from the worker's side:

- tooz refreshes a worker's membership key every `heartbeat` seconds (its
  Redis driver beats every min(lock_timeout, membership_timeout)), each time
  with a TTL of `membership_timeout`;
- the last refresh Redis saw may have come up to `heartbeat` seconds *before*
  the worker's last confirmed round trip began, so the key can expire as
  early as `membership_timeout - heartbeat` after that moment;
- only then can the leader publish a placement without the worker, and only
  after that can another worker poll, decide and act.

    bound = membership_timeout - heartbeat - margin

The heartbeat is what it always was, ceil(leader_timeout / 2) (so a dead
worker's nodes move as fast as before), shortened only where that would
leave less than MIN_BOUND. With farm's defaults (membership_timeout and
leader_timeout 10 s): heartbeat 5 s, bound = 10 - 5 - 1 = 4 s, renewed
every second. The check is on a monotonic clock and never waits for a Redis
call to fail; no packet of a power action leaves after the lease it was
decided under ran out.
"""

import math

MARGIN = 1.0      # seconds kept for tooz's heartbeat scheduling and the call itself
MIN_BOUND = 0.5   # below this a worker would renew more often than it can talk to Redis


def tooz_heartbeat(membership_timeout, leader_timeout):
    """How often tooz refreshes a worker's membership key: its lock_timeout
    (an integer for tooz), ceil(leader_timeout / 2) as for every farm member,
    lowered (to 1 s at least) where that would leave the bound under
    MIN_BOUND."""
    usual = max(1, math.ceil(leader_timeout / 2))
    room = math.floor(membership_timeout - MARGIN - MIN_BOUND)
    return min(usual, max(1, room), membership_timeout)


def acting_bound(membership_timeout, leader_timeout, margin=MARGIN):
    """Seconds a confirmed round trip lets a worker act (pure)."""
    return membership_timeout - tooz_heartbeat(membership_timeout, leader_timeout) - margin


def renew_every(bound, tick=1.0):
    """How often the worker renews: its tick, or a third of a short bound."""
    return min(tick, bound / 3)


class ActingLease:
    """When the worker last confirmed its ownership, and whether that still
    lets it act. `confirm` is called by the loop that talks to Redis;
    `until`/`valid` by anything about to act (other threads: plain floats)."""

    def __init__(self, bound, clock):
        self.bound = bound
        self.clock = clock
        self.confirmed_at = None   # monotonic start of the last confirming round trip
        self.fenced_since = None   # monotonic time the lease was found run out
        self.reason = ""

    def confirm(self, sent_at):
        """A round trip begun at `sent_at` read the assignment we now act on."""
        if self.confirmed_at is None or sent_at > self.confirmed_at:
            self.confirmed_at = sent_at
        if self.valid():
            self.fenced_since = None

    def until(self):
        """The monotonic time after which no power packet may leave, or None
        if nothing was ever confirmed."""
        return None if self.confirmed_at is None else self.confirmed_at + self.bound

    def valid(self, now=None):
        until = self.until()
        return until is not None and (self.clock() if now is None else now) < until

    def check(self, now=None):
        """True the first time the lease is found run out (log it then)."""
        now = self.clock() if now is None else now
        if self.valid(now) or self.fenced_since is not None:
            return False
        self.fenced_since = now
        self.reason = ("no round trip to Redis confirmed this worker's nodes for "
                       f"{now - self.confirmed_at:.1f} s (bound {self.bound:g} s)"
                       if self.confirmed_at is not None else "not yet confirmed")
        return True
