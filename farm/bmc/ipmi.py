"""Power state over IPMI 2.0 / RMCP+ with pyghmi: the pyghmi adapter.

One session per BMC, kept and reused while it is fresh; every call is bounded
by farm's own deadline; every pyghmi failure becomes a typed BmcError.
"""

import logging
import threading
import time

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as ipmi_command
from pyghmi.ipmi.private import session as ipmi_session

from farm import errors
from farm.bmc import pyghmi_fixes
from farm.model import PowerState

LOG = logging.getLogger(__name__)

_AUTH_MARKERS = ("password", "unauthorized", "rakp", "kg", "privilege", "invalid username")
_UNREACHABLE_MARKERS = ("no longer connected", "unable to transmit", "timeout",
                        "failed to initialize", "insufficient resources")


def classify(message):
    """Map a pyghmi error message to a BmcError class (pure)."""
    text = (message or "").lower()
    if any(m in text for m in _AUTH_MARKERS):
        return errors.BmcAuthError
    if any(m in text for m in _UNREACHABLE_MARKERS):
        return errors.BmcUnreachable
    return errors.BmcProtocolError


def abandon_session(session):
    """Make pyghmi forget a session a deadline interrupted, so the next call to
    that BMC logs in afresh; a logged-in session is closed on the BMC too
    (best effort, one unretried packet) so it does not hold a BMC slot."""
    try:
        session.incommand = False
        session.lastpayload = None
        session.logging = False  # else logout() pauses until login expiry
        with pyghmi_fixes.deadline(0.5):
            session._mark_broken("abandoned by farm after its deadline")
    except (Exception, pyghmi_fixes.DeadlineExceeded):
        LOG.debug("abandoning an IPMI session raised", exc_info=True)
    session.broken = True
    with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
        ipmi_session.Session.keepalive_sessions.pop(session, None)
        ipmi_session.Session.waiting_sessions.pop(session, None)
    # _mark_broken unlists a pending login, unless the deadline above cut it
    # short first; Session.__new__ would hand a listed one to the next caller
    # for that BMC instead of logging in afresh.
    pending = ipmi_session.Session.initting_sessions
    for key, value in list(pending.items()):
        if value is session:
            pending.pop(key, None)


class _Kept:
    __slots__ = ("command", "last_used")

    def __init__(self, command):
        self.command = command
        self.last_used = time.monotonic()


class IpmiClient:
    """Polls BMCs over IPMI. Thread-safe for distinct nodes; farm never polls
    one node from two threads at once (futurist never overlaps a callable)."""

    def __init__(self, timeout=5.0, session_idle_max=25.0):
        pyghmi_fixes.apply()
        self.timeout = timeout
        self.session_idle_max = session_idle_max
        self._kept = {}
        self._lock = threading.Lock()

    def _key(self, node):
        return (node.address, node.port, node.username, node.password)

    def _session_for(self, node):
        key = self._key(node)
        with self._lock:
            kept = self._kept.pop(key, None)
        if kept is not None:
            session = kept.command.ipmi_session
            idle = time.monotonic() - kept.last_used
            if not session.broken and idle <= self.session_idle_max:
                return kept
            if not session.broken:
                self._logout(kept)
        # bytes credentials: pyghmi 1.6.19 tracks pending sessions under the
        # given type but removes them under bytes (see docs/architecture.md).
        command = ipmi_command.Command(
            bmc=node.address, port=node.port,
            userid=node.username.encode("utf-8"),
            password=node.password.encode("utf-8"))
        _no_keepalive(command.ipmi_session)
        return _Kept(command)

    def _logout(self, kept):
        try:
            with pyghmi_fixes.deadline(min(self.timeout, 1.0)):
                kept.command.ipmi_session.logout()
        except (Exception, pyghmi_fixes.DeadlineExceeded):
            abandon_session(kept.command.ipmi_session)

    def get_power_state(self, node):
        kept = None
        try:
            with pyghmi_fixes.deadline(self.timeout):
                kept = self._session_for(node)
                response = kept.command.raw_command(netfn=0, command=1)
        except pyghmi_fixes.DeadlineExceeded:
            self._drop(kept, node)
            raise errors.BmcTimeout(f"no answer within {self.timeout:g} s") from None
        except pyghmi_exc.IpmiException as exc:
            self._drop(kept, node)
            if exc.args in ((), (None,)):
                # pyghmi's login gave up on its own retry schedule and
                # raised IpmiException(None): the BMC never answered.
                raise errors.BmcUnreachable("no answer to the login") from None
            cls = classify(str(exc))
            raise cls(_safe(str(exc), node)) from None
        except AttributeError as exc:
            self._drop(kept, node)
            if "errormsg" in str(exc):
                # A login that failed before pyghmi set its message: pyghmi
                # cannot even build its exception. Seen only for hung BMCs.
                raise errors.BmcUnreachable("no answer to the login") from None
            raise errors.BmcProtocolError(
                f"unexpected AttributeError from the BMC session: {_safe(str(exc), node)}") from None
        except Exception as exc:  # pyghmi raises struct.error, KeyError, ...
            self._drop(kept, node)
            raise errors.BmcProtocolError(
                f"unexpected {type(exc).__name__} from the BMC session: "
                f"{_safe(str(exc), node)}") from None
        if "error" in response:
            self._keep(kept, node)
            raise errors.BmcProtocolError(f"chassis status refused: {_safe(response['error'], node)}")
        data = response.get("data") or b""
        if len(data) < 1:
            self._drop(kept, node)
            raise errors.BmcProtocolError("chassis status reply without data")
        self._keep(kept, node)
        return PowerState.ON if data[0] & 1 else PowerState.OFF

    def _keep(self, kept, node):
        if self.session_idle_max <= 0:
            self._logout(kept)
            return
        kept.last_used = time.monotonic()
        # Again after the poll: the thread that finishes a login adds the
        # session to keepalive_sessions just after Command() may return.
        _no_keepalive(kept.command.ipmi_session)
        with self._lock:
            self._kept[self._key(node)] = kept

    def _drop(self, kept, node):
        if kept is not None:
            abandon_session(kept.command.ipmi_session)
        # A login the deadline interrupted left a session only pyghmi knows;
        # the next Command() would join it instead of starting afresh.
        for session in _pending_sessions(node):
            abandon_session(session)

    def close(self):
        """Log out of every kept session (best effort, bounded)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for k in kept:
            self._logout(k)


def _no_keepalive(session):
    # farm keeps sessions alive by polling. pyghmi's keepalives would run on
    # whichever thread next waits, racing our own use of the session, and
    # every wait_for_rsp call walks keepalive_sessions: with a third of 1,000
    # kept sessions left there, a worker with 10 % hung BMCs burnt a core.
    with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
        ipmi_session.Session.keepalive_sessions.pop(session, None)


def _pending_sessions(node):
    userid = node.username.encode("utf-8")
    found = []
    pending = dict(ipmi_session.Session.initting_sessions)
    for key, session in pending.items():
        if key[0] == node.address and key[3] == node.port and key[1] == userid:
            found.append(session)
    for handlers in list(ipmi_session.Session.bmc_handlers.values()):
        for session in list(handlers.values()):
            # Logged in but still `logging` is a login the deadline cut
            # short after the BMC accepted it: Session.__new__ would hand it
            # to every later Command, which then waits for it forever.
            if (getattr(session, "bmc", None) == node.address
                    and getattr(session, "port", None) == node.port
                    and getattr(session, "userid", None) == userid
                    and (not getattr(session, "logged", 0) or getattr(session, "logging", False))
                    and not getattr(session, "broken", True)):
                found.append(session)
    return found


def _safe(message, node):
    """pyghmi messages can embed the user id; never let a password through."""
    text = str(message)
    if node.password and node.password in text:
        text = text.replace(node.password, "***")
    return text
