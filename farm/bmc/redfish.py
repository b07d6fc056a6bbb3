"""The sushy adapter: one Redfish BMC, its session kept and reused.

Only this module imports sushy. Every sushy or requests error leaves it as a
farm BmcError with the cause kept: wrong credentials -> BmcAuthError, a
certificate that does not verify -> BmcTlsError, no connection ->
BmcUnreachable, a read that timed out -> BmcTimeout, anything the BMC sent
that is not what Redfish says -> BmcProtocolError.

What farm sets, and why (docs/redfish.md):
- sushy's connector retries a failed connection 3 times, 2 s apart, even
  with server_side_retries=0 (it uses `retries or 3`): farm passes 1, with a
  delay of 10 ms, and its own deadline bounds the poll (the executor's).
- read and connect timeouts are the poll's deadline, so one request never
  outlives it by much.
- sushy's connector asks every BMC to close the connection after each
  request (`Connection: close`: "some BMCs choke at long-running persistent
  connections"), i.e. a TCP and TLS handshake per poll. With keep_alive
  (the default) farm reads PowerState with the connector's public `get`,
  asking to keep the connection; `[redfish] keep_alive = false` restores
  sushy's behaviour for BMCs that need it.
- sushy logs request bodies at DEBUG, the session POST's password included:
  its logger is held at INFO or above whatever farm's level.
- A BMC's answers are hostile input: a link (`@odata.id`), a redirect or the
  session service's location may name another host, and sushy (like
  requests for its X-Auth-Token header) would send it the session token or,
  basic auth, the password. Every request leaves through
  farm.bmc.redfish_http's guard, mounted on sushy's requests session
  (private: `_session`, pinned by tests/unit/test_library_internals.py):
  it refuses other origins, bounds each answer as a whole (a deadline and
  `[redfish] max_answer_bytes`), and waits out a busy BMC.
- The session: started from the one farm keeps in Redis (`sessions`), a
  login only after a 401, never basic auth around a full session table;
  after a full table, one login a minute (LIMITED_RETRY).
"""

import logging
import threading
import time

import requests
import sushy
from sushy import auth as sushy_auth
from sushy import connector as sushy_connector
from sushy import exceptions as sushy_exc

from farm import errors
from farm.bmc import redfish_log
from farm.bmc.redfish_http import (
    BUSY,
    DECLINED,
    LIMITED_RETRY,
    AnswerTooLarge,
    OtherOrigin,
    guard_origin,
    session_limited,
)
from farm.bmc.redfish_sensors import SensorReader, drive
from farm.model import PowerState

logging.getLogger("sushy").setLevel(max(logging.INFO, logging.getLogger("sushy").level))
RESETS = {"on": sushy.ResetType.ON, "off": sushy.ResetType.FORCE_OFF,
          "cycle": sushy.ResetType.POWER_CYCLE, "reset": sushy.ResetType.FORCE_RESTART}


class _SharedAuth(sushy_auth.SessionOrBasicAuth):
    """Session auth that starts from a session farm already holds (`seed`:
    (token, URI), kept in Redis for every worker) and logs in only after
    the BMC refuses it (401); with sushy's fallback to basic auth, but
    never around a full session table or a busy BMC (503, 429): that would
    only be a second session, or hammering."""

    def __init__(self, username, password, on_login, seed=None, on_session=None):
        super().__init__(username=username, password=password)
        self._on_login, self._on_session = on_login, on_session
        self._seed = seed
        self._closing = False
        self.log_out = True  # False: closing only forgets (a hung BMC would block a logout)

    def _do_authenticate(self):
        if self._seed is not None:
            token, uri = self._seed
            self._seed = None
            # sushy's own attributes for a session it made (no public setter;
            # shape-tested in tests/unit/test_library_internals.py)
            self._session_key, self._session_resource_id = token, uri
            self._session_auth_previously_successful = True
            self._connector.set_http_session_auth(token)
            return
        self._on_login()
        try:
            sushy_auth.SessionAuth._do_authenticate(self)
        except sushy_exc.HTTPError as exc:
            if exc.status_code in (429, 503) or (
                    isinstance(exc, sushy_exc.AccessError)
                    and (self.can_refresh_session() or self._session_auth_previously_successful)):
                raise
            self._fallback_to_basic_authentication()  # as sushy: no session service
        except sushy_exc.ConnectionError:
            raise
        except sushy_exc.SushyError:
            self._fallback_to_basic_authentication()
        else:
            if self._on_session is not None:
                self._on_session(self._session_key, self._session_resource_id)

    def refresh_session(self):
        if self._closing:  # a logout that met a 401: the session is gone already
            raise errors.BmcAuthError("the session to log out of has ended; no new login")
        super().refresh_session()

    def close(self):
        if self.log_out:
            self._closing = True
            try:
                super().close()
            finally:
                self._closing = False


def _cause(exc, kind):
    """The first `kind` in exc's chain (sushy keeps requests' error in
    kwargs["error"]), or None."""
    e = exc
    for _ in range(6):
        if e is None:
            return None
        if isinstance(e, kind):
            return e
        e = getattr(e, "kwargs", {}).get("error") or e.__cause__ or e.__context__
    return None


def _refused_origin(exc):
    return _cause(exc, OtherOrigin)


def translate(exc, what):
    """A farm BmcError for a sushy or requests error (raise it `from exc`)."""
    refused = _refused_origin(exc)
    if refused is not None:
        return errors.BmcProtocolError(f"{what}: {refused}")
    large = _cause(exc, AnswerTooLarge)
    if large is not None:
        return errors.BmcProtocolError(f"{what}: {large}")
    if isinstance(exc, sushy_exc.HTTPError) and exc.status_code in BUSY:
        if session_limited({"error": exc.body or {}}):
            return errors.BmcSessionLimit(
                f"{what}: the BMC's session table is full (HTTP {exc.status_code}: other clients "
                f"hold its sessions); farm tries again in a minute")
        return errors.BmcBusy(f"{what}: the BMC stayed busy (HTTP {exc.status_code}) past the "
                              f"poll's deadline")
    if isinstance(exc, sushy_exc.AccessError):
        return errors.BmcAuthError(f"{what}: the BMC refused the credentials (HTTP {exc.status_code})")
    if isinstance(exc, sushy_exc.ConnectionError):
        cause = getattr(exc, "kwargs", {}).get("error") or exc.__cause__ or exc.__context__
        if isinstance(cause, requests.exceptions.SSLError):
            return errors.BmcTlsError(f"{what}: TLS failed ({_short(cause)}); check verify_tls")
        if isinstance(cause, requests.exceptions.Timeout):
            return errors.BmcTimeout(f"{what}: no answer in time")
        return errors.BmcUnreachable(f"{what}: cannot connect ({_short(cause or exc)})")
    if isinstance(exc, sushy_exc.HTTPError):
        return errors.BmcProtocolError(f"{what}: HTTP {exc.status_code} from the BMC")
    if isinstance(exc, sushy_exc.SushyError):
        return errors.BmcProtocolError(f"{what}: {_short(exc)}")
    return errors.BmcProtocolError(f"{what}: {type(exc).__name__}")


def _short(exc):
    text = str(exc)
    for marker in ("Caused by ", "Error: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text[:200]


def declined(exc):
    return isinstance(exc, sushy_exc.HTTPError) and exc.status_code in DECLINED


def not_found(exc):
    return isinstance(exc, sushy_exc.ResourceNotFoundError)


def verify_of(node):
    v = node.verify_tls
    return True if v in ("", "true") else False if v == "false" else v


def end_session(node, token, uri, timeout=10.0):
    """Log a Redfish session out: DELETE its URI with its own token (the
    password is not needed), through the origin guard. BmcError if the BMC
    could not be told; a session already gone (401, 404) is ended."""
    if not uri:
        raise errors.BmcProtocolError("the BMC gave no session URI to end it with")
    conn = sushy_connector.Connector(node.address, verify=verify_of(node), server_side_retries=1,
                                     server_side_retries_delay=0.01,
                                     default_request_timeout=timeout,
                                     connect_timeout=min(timeout, 3.0))
    guard_origin(conn, node.address, timeout, 65536)
    conn.set_http_session_auth(token)
    try:
        conn.delete(uri)
    except (sushy_exc.AccessError, sushy_exc.ResourceNotFoundError):
        pass  # no such session on the BMC any more
    except Exception as exc:
        raise translate(exc, "end the Redfish session") from exc
    finally:
        conn.close()


class RedfishBmc:
    """One BMC: a sushy root and its ComputerSystem, made on first use and
    kept (with its HTTP connection and session token) across polls."""

    def __init__(self, node, timeout, on_login=lambda: None, keep_alive=True,
                 max_bytes=4 * 2**20, max_members=1000, sensor_gets=4, sessions=None,
                 on_response=None):
        self.node = node
        self.timeout = timeout
        self.max_bytes, self.max_members = max_bytes, max_members
        self.headers = {"Connection": "keep-alive"} if keep_alive else None
        self._on_login = on_login
        self.sessions = sessions  # load(name), save(name, token, uri): the farm's one session
        self.on_response = on_response  # each requests Response (counting: bench)
        self._limited_until = 0.0  # monotonic: no login before (a full session table)
        self._connecting = threading.Lock()
        self._root = self._system = self._auth = self._conn = None
        self._fresh = False  # the system was just read (no need to read it again)
        self._paths = {}  # found once per connection: the SEL's entries
        self._sensors = SensorReader(lambda path: self._doc(path), declined, not_found,
                                     sensor_gets, max_members)

    def _verify(self):
        return verify_of(self.node)

    def _connect(self):
        seed = self.sessions.load(self.node.name) if self.sessions is not None else None
        save = None if self.sessions is None else (
            lambda token, uri: self.sessions.save(self.node.name, token, uri))
        self._auth = _SharedAuth(self.node.username, self.node.password, self._on_login,
                                 seed=seed, on_session=save)
        self._conn = sushy_connector.Connector(
            self.node.address, verify=self._verify(), server_side_retries=1,
            server_side_retries_delay=0.01, default_request_timeout=self.timeout,
            connect_timeout=min(self.timeout, 3.0), response_callback=self.on_response)
        guard_origin(self._conn, self.node.address, self.timeout, self.max_bytes)
        self._root = sushy.Sushy(self.node.address, auth=self._auth, connector=self._conn)
        self._system = self._find_system()
        self._fresh = True

    def _find_system(self):
        wanted = self.node.system_id
        if wanted and not wanted.startswith("/"):
            wanted = f"{self._root.get_system_collection().path.rstrip('/')}/{wanted}"
        try:
            return self._root.get_system(wanted or None)
        except sushy_exc.UnknownDefaultError as exc:
            members = [p.rstrip("/").rsplit("/", 1)[-1]
                       for p in self._root.get_system_collection().members_identities]
            raise errors.BmcProtocolError(
                f"the BMC has {len(members)} systems ({', '.join(members[:10])}): set system_id "
                f"in the inventory") from exc

    def _call(self, what, fn):
        wait = self._limited_until - time.monotonic()
        if wait > 0:  # a full session table: one login a minute, not one a poll
            raise errors.BmcSessionLimit(
                f"{what}: the BMC's session table was full; farm tries again in {wait:.0f} s")
        try:
            if self._system is None:
                with self._connecting:  # jobs at once on one BMC: one login
                    if self._system is None:
                        self._connect()
            return fn()
        except errors.BmcError:
            raise
        except Exception as exc:  # sushy and requests errors, translated
            error = translate(exc, what)
            if isinstance(error, errors.BmcSessionLimit):
                self._limited_until = time.monotonic() + LIMITED_RETRY
            if isinstance(exc, (sushy_exc.ConnectionError, sushy_exc.AccessError)) \
                    or isinstance(error, errors.BmcSessionLimit):
                self.forget()  # start from a new connection next time
            raise error from exc

    def power_state(self):
        def read():
            if self._fresh:
                state = self._system.power_state  # read a moment ago, by _connect
            else:
                # the connector (session token, a new login on 401) without
                # re-parsing the whole ComputerSystem: PowerState is all a poll needs
                doc = self._conn.get(self._system.path, headers=self.headers).json()
                state = str(doc.get("PowerState", "")).lower() if isinstance(doc, dict) else ""
            self._fresh = False
            if state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF, "on", "poweringoff"):
                return PowerState.ON
            if state in (sushy.PowerState.OFF, sushy.PowerState.POWERING_ON, "off", "poweringon"):
                return PowerState.OFF
            raise errors.BmcProtocolError(f"PowerState {state!r} is not a power state")
        return self._call("power state", read)

    def _doc(self, path):
        """A JSON object read through the connector (its session token, a new
        login on 401), keeping the connection, without sushy's resource
        classes (which cover neither every BMC's Thermal nor LogServices)."""
        doc = self._conn.get(path, headers=self.headers).json()
        if not isinstance(doc, dict):
            raise errors.BmcProtocolError(f"{path}: the BMC sent no JSON object")
        return doc

    def sensors(self):
        """(readings, DCMI watts) of the system's first chassis, from the
        resources the BMC serves, read the cheapest way it allows
        (farm.bmc.redfish_sensors)."""
        return self._call("sensors", lambda: self._sensors.read(self._system.path))

    def _log(self):
        """(entries path, ClearLog target or None, MaxNumberOfRecords or None)
        of the system's SEL, found once per connection."""
        if "log" not in self._paths:
            self._paths["log"] = drive(redfish_log.find_sel(self._system.path), self._doc)
        return self._paths["log"]

    def log_entries(self, max_pages=50):
        """(every LogEntry of the SEL (JSON objects), the log's capacity or
        None) (farm.bmc.redfish_log)."""
        def read():
            entries, _, capacity = self._log()
            return drive(redfish_log.read_entries(entries, self.max_members, max_pages),
                         self._doc), capacity
        return self._call("event log", read)

    def clear_log(self):
        def clear():
            target = self._log()[1]
            if target is None:
                raise errors.BmcProtocolError("the SEL offers no LogService.ClearLog")
            self._conn.post(target, data={}, headers=self.headers)
            return "cleared"
        return self._call("clear the event log", clear)

    def reset(self, action, not_after=None):
        """Reset the system; with `not_after` (monotonic), refused once that
        time passed: the acting lease is checked after the login and the
        system look-up, right before the request that acts."""
        def act():
            if not_after is not None and time.monotonic() >= not_after:
                raise errors.Fenced(f"power {action} not sent: the acting lease ran out")
            kind = RESETS[action]
            if kind not in self._system.get_allowed_reset_system_values():
                raise errors.BmcProtocolError(f"the BMC does not offer ResetType {kind.value}")
            reset = (self._system.json.get("Actions") or {}).get("#ComputerSystem.Reset")
            target = reset.get("target") if isinstance(reset, dict) else None
            if not isinstance(target, str):
                raise errors.BmcProtocolError("the system offers no ComputerSystem.Reset")
            # not sushy's reset_system: it sends sushy's default `Connection:
            # close`, and the state read right after raced the BMC closing the
            # connection (RemoteDisconnected: a dropped session, a new login)
            self._conn.post(target, data={"ResetType": kind.value}, headers=self.headers)
            self._fresh = False
            return action
        return self._call(f"power {action}", act)

    def never_log_out(self):
        """Whatever happens to this object later (sushy's __del__ included),
        no blocking logout: for a BMC still busy when the worker stops."""
        if self._auth is not None:
            self._auth.log_out = False

    def forget(self):
        """Drop the connection without logging out (a BMC that stopped
        answering would only hold the logout up, in whatever thread
        collects sushy's root)."""
        self._drop(log_out=False)

    def close(self):
        """Log out (best effort) and drop the connection."""
        self._drop(log_out=True)

    def _drop(self, log_out):
        auth, conn = self._auth, self._conn
        self._root = self._system = self._auth = self._conn = None
        self._paths = {}
        self._sensors.reset()
        if auth is not None:
            auth.log_out = log_out
            try:
                auth.close()  # deletes the Redfish session (if log_out)
            except Exception:  # noqa: S110 - best effort
                pass
            auth.log_out = False  # sushy's __del__ closes again: a no-op now
        if conn is not None:
            conn.close()
