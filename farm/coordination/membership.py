"""Group membership and leader election with tooz: the tooz adapter.

tooz's Redis driver never re-joins a pruned member, has no lost-leadership
event and hangs about a minute in start() against a dead Redis. So: callers
call `ensure_joined` every tick (it re-joins when the member is gone or the
group vanished); `elected` only gates who may try farm's own fenced lease
(store.hold_lease), which is what decides who publishes; `start` is bounded.
Every tooz error leaves this module as BackendUnavailable.
"""

import json
import logging
import math
import threading
import urllib.parse

import tooz
from tooz import coordination
from tooz.drivers import redis as tooz_redis

from farm.coordination import backend
from farm.errors import BackendRefused, BackendUnavailable

LOG = logging.getLogger(__name__)
# Errors retrying cannot fix, as redis-py words them (they reach us through tooz)
_REFUSED = ("WRONGPASS", "NOPERM", "AuthenticationError", "NoPermissionError", "invalid password")


def tooz_options(namespace, membership_timeout, leader_timeout, socket_timeout=5,
                 lock_timeout=None):
    """farm's timeouts as tooz Redis driver options (pure). tooz beats every
    min(lock_timeout, membership_timeout): workers, which hold no lock, pass
    their own lock_timeout where farm.power.lease needs a faster beat."""
    if lock_timeout is None:
        # tooz wants an integer; half the leader timeout, since farm's
        # lease (the other half) starts counting at the same moment.
        lock_timeout = max(1, math.ceil(leader_timeout / 2))
    return {"timeout": str(int(socket_timeout)),
            "membership_timeout": f"{membership_timeout:g}",
            "lock_timeout": str(int(lock_timeout)),
            "namespace": f"{namespace}_tooz"}


def redis_coordinator(b, member_id, defaults):
    """tooz's Redis driver on Backend `b`. Built from parts, not from a URL
    string: tooz reads the password raw from its URL (no percent-decoding, and
    a '#', '?' or '/' in it breaks the parse) and knows no rediss://. The
    driver's constructor (member_id, parsed_url, options as lists) is what
    tooz.coordination.get_coordinator calls; tests/unit/test_backend.py fails
    if that shape changes."""
    host = f"[{b.host}]" if ":" in b.host else b.host
    user = b.username or ""
    userinfo = f"{user}:{b.password}@" if b.password is not None else (f"{user}@" if user else "")
    parsed = urllib.parse.SplitResult("redis", f"{userinfo}{host}:{b.port}", "", "", "")
    options = dict(defaults, **b.tooz_options())
    return tooz_redis.RedisDriver(member_id, parsed,
                                  {k: v if isinstance(v, list) else [v] for k, v in options.items()})


def url_coordinator(url, member_id):
    """tooz on another backend (etcd3, zookeeper...), from its own URL."""
    return coordination.get_coordinator(url, member_id)


class Membership:
    def __init__(self, connect, member_id, where, start_timeout=10.0, call_timeout=5.0):
        """`connect(member_id_bytes)` returns a tooz coordinator; `where`
        names the backend in messages (redacted). Every call on the daemons'
        paths ends within `call_timeout` (see _bounded)."""
        self.member_id = member_id
        self._connect = connect
        self._where = where
        self._start_timeout = start_timeout
        self._call_timeout = call_timeout
        self._blocked = None  # (what, thread) of a call that outlived its deadline
        self._coord = None
        self._joined = {}
        self._elected = set()

    def _wrap(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # tooz's errors, and redis errors through its futures
            raise self._translate(what, exc) from exc

    def _translate(self, what, exc):
        detail = exc if isinstance(exc, (tooz.ToozError, coordination.ToozError)) \
            else f"{type(exc).__name__}: {exc}"
        message = f"tooz ({self._where}) failed during {what}: {backend.redact(str(detail))}"
        chain, e = [], exc
        while e is not None and len(chain) < 10:
            chain.append(f"{type(e).__name__}: {e}")
            e = e.__cause__ or e.__context__
        if any(word in text for text in chain for word in _REFUSED):
            return BackendRefused(f"Redis ({self._where}) refused tooz during {what} (check the user, "
                                  f"password and ACL in backend_url): {backend.redact(chain[-1])}")
        return BackendUnavailable(message)

    @property
    def started(self):
        return self._coord is not None

    def start(self):
        """Connect, bounded by start_timeout (tooz alone can take a minute)."""
        coord = self._wrap("connect", self._connect, self.member_id.encode("utf-8"))
        outcome = {}

        def run():
            try:
                coord.start(start_heart=True)
                outcome["ok"] = True
            except Exception as exc:
                outcome["error"] = exc
        t = threading.Thread(target=run, name="farm-tooz-start", daemon=True)
        t.start()
        t.join(self._start_timeout)
        if not outcome.get("ok"):
            if "error" in outcome:
                raise self._translate("start", outcome["error"])
            raise BackendUnavailable(f"cannot start tooz on {self._where}: "
                                     f"no answer within {self._start_timeout:g} s")
        self._coord = coord

    def _bounded(self, what, fn, *args):
        """`fn(*args)` within call_timeout, or BackendUnavailable. tooz has no
        per-call timeout and the redis-py under it retries a dead socket ten
        times: through a blackholed Redis one get_members blocked 59 s. The
        call goes on in its thread until its socket gives up; until then the
        next call fails at once rather than pile up threads behind it."""
        if self._blocked is not None:
            if self._blocked[1].is_alive():
                raise BackendUnavailable(f"tooz ({self._where}): {self._blocked[0]} is still "
                                         f"blocked on Redis")
            self._blocked = None
        box = {}

        def run():
            try:
                box["value"] = fn(*args)
            except Exception as exc:
                box["error"] = exc
        thread = threading.Thread(target=run, name=f"farm-tooz-{what}", daemon=True)
        thread.start()
        thread.join(self._call_timeout)
        if thread.is_alive():
            self._blocked = (what, thread)
            raise BackendUnavailable(f"tooz ({self._where}) failed during {what}: no answer "
                                     f"within {self._call_timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def ensure_joined(self, group, capabilities):
        """Join `group`, or join again if we were pruned or the group is gone."""
        return self._bounded("get_members", self._ensure_joined, group, capabilities)

    def _ensure_joined(self, group, capabilities):
        gid = group.encode("utf-8")
        self._joined[group] = capabilities

        def read():
            try:
                return self._coord.get_members(gid).get()
            except coordination.GroupNotCreated:
                return set()
        if self.member_id.encode("utf-8") in self._wrap("get_members", read):
            return False
        self._join(gid, capabilities)
        return True

    def _join(self, gid, capabilities):
        caps = json.dumps(capabilities, sort_keys=True).encode("utf-8")
        try:
            self._coord.join_group(gid, caps).get()
        except coordination.GroupNotCreated:
            self._wrap("create_group", self._create, gid)
            self._wrap("join_group", lambda: self._coord.join_group(gid, caps).get())
        except coordination.MemberAlreadyExist:
            pass
        except Exception as exc:
            raise self._translate("join", exc) from exc
        LOG.info("joined group %s as %s", gid.decode(), self.member_id)

    def _create(self, gid):
        try:
            self._coord.create_group(gid).get()
        except coordination.GroupAlreadyExist:
            pass

    def members(self, group):
        """member id -> capabilities dict, for live members (prunes dead ones)."""
        return self._bounded("get_members", self._members, group)

    def _members(self, group):
        gid = group.encode("utf-8")

        def read():
            try:
                raw = self._coord.get_members_with_capabilities(gid).get()
            except coordination.GroupNotCreated:
                return {}
            out = {}
            for member, caps in raw.items():
                try:
                    out[member.decode("utf-8")] = json.loads(caps or b"{}")
                except ValueError:
                    out[member.decode("utf-8")] = {}
            return out
        return self._wrap("get_members", read)

    def run_for_leader(self, group):
        gid = group.encode("utf-8")
        self._wrap("watch_elected_as_leader", self._coord.watch_elected_as_leader, gid,
                   lambda event: self._elected.add(group))

    def tick(self):
        """Run tooz's watchers (this is when an election is attempted)."""
        self._bounded("run_watchers", self._wrap, "run_watchers", self._coord.run_watchers)

    def elected(self, group):
        return group in self._elected

    def stand_down(self, group):
        """Forget an election win and free tooz's leader lock if we still hold it."""
        self._elected.discard(group)
        lock_name = b"leader_of_" + group.encode("utf-8")
        for lock in list(getattr(self._coord, "_acquired_locks", ())):
            if lock.name.endswith(lock_name + b"_lock"):
                try:
                    lock.release()
                except Exception:
                    LOG.debug("releasing tooz's leader lock failed", exc_info=True)

    def leave(self, group):
        gid = group.encode("utf-8")
        self._joined.pop(group, None)
        try:
            self._coord.leave_group(gid).get()
        except Exception as exc:
            LOG.warning("leaving group %s failed: %s", group, exc)

    def stop(self):
        if self._coord is not None:
            try:
                self._coord.stop()
            except Exception as exc:
                LOG.warning("stopping tooz failed: %s", exc)
            self._coord = None
