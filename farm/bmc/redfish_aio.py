"""The aiohttp adapter: one Redfish BMC read on an event loop, so a BMC that
takes a second, or never answers, holds a coroutine and a socket, not a
thread (docs/redfish.md, "The asyncio engine").

Only this module imports aiohttp. It reads what the periodic tasks need
(PowerState, the sensors plan of farm.bmc.redfish_sensors, the SEL's
entries); power actions and ClearLog stay on sushy (farm.bmc.redfish).
It keeps what the sushy adapter guarantees:
- one session per BMC for the farm: started from the token kept in Redis
  (`sessions`, whose blocking calls run on the loop's executor), a login
  only after a 401, never basic auth around a full session table; after a
  full table (errors.BmcSessionLimit), one login a minute;
- the origin guard: every URL is the node's own scheme, host and port (a
  link elsewhere is refused unsent), and redirects are not followed;
- answers bounded as a whole: a byte cap here, the job's deadline (the
  engine cancels the coroutine) for the time;
- busy answers (503, 429) waited out as Retry-After asks, within the
  deadline;
- kept HTTP/1.1 connections (aiohttp's pool), so a TLS handshake happens
  once per connection.
Errors leave as farm's BmcError kinds, their cause kept.
"""

import asyncio
import json
import ssl
import time
import urllib.parse

import aiohttp

from farm import errors
from farm.bmc import redfish_log
from farm.bmc.redfish_http import (
    BUSY,
    DECLINED,
    LIMITED_RETRY,
    origin,
    retry_after,
    session_limited,
    small_tls_buffers,
)
from farm.bmc.redfish_sensors import SensorReader, link
from farm.model import PowerState


class HttpStatus(errors.BmcProtocolError):
    """An HTTP error status from the BMC (`status`)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def declined(exc):
    return isinstance(exc, HttpStatus) and exc.status in DECLINED


def not_found(exc):
    return isinstance(exc, HttpStatus) and exc.status == 404


def ssl_context(node, cache):
    """aiohttp's `ssl` argument for a node's verify_tls (contexts shared)."""
    v = node.verify_tls
    if v == "false":
        return False
    key = "" if v in ("", "true") else v
    if key not in cache:
        cache[key] = ssl.create_default_context(cafile=key or None)
    return cache[key]


def http_client(per_bmc, keep_alive=True):
    """The engine's one aiohttp session: kept connections, at most
    `per_bmc` to one BMC, no cookies (Redfish sessions go by token), no
    overall timeout (the engine's deadline is the job's). `keep_alive`
    false closes each connection after its request ([redfish] keep_alive:
    a handshake per request, no idle connection's memory). A kept TLS
    connection costs about 60 KiB of OpenSSL's state and 16 KiB of read
    buffer (small_tls_buffers), docs/benchmarks.md."""
    small_tls_buffers()
    kept = {"keepalive_timeout": 75} if keep_alive else {"force_close": True}
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=per_bmc, ttl_dns_cache=300, **kept)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=None))


async def drive(steps, get):
    """farm.bmc.redfish_sensors.drive on the loop: `await get(path)`."""
    try:
        path = next(steps)
        while True:
            try:
                doc = await get(path)
            except Exception as exc:  # thrown into the pass, which may take it
                path = steps.throw(exc)
                continue
            path = steps.send(doc)
    except StopIteration as stop:
        return stop.value


class AsyncRedfishBmc:
    """One BMC on the loop: its token, system path and sensors plan, kept
    across polls. `http` is the engine's aiohttp ClientSession (one
    connection pool for every BMC)."""

    def __init__(self, node, http, sessions=None, on_login=lambda: None,
                 max_bytes=4 * 2**20, max_members=1000, sensor_gets=4, ssl_cache=None):
        self.node, self.http, self.sessions = node, http, sessions
        self.base = node.address.rstrip("/")
        self.allowed = origin(self.base)
        self.ssl = ssl_context(node, ssl_cache if ssl_cache is not None else {})
        self.on_login, self.max_bytes, self.max_members = on_login, max_bytes, max_members
        self.token = self.session_uri = None
        self.basic = None  # aiohttp.BasicAuth where the BMC has no session service
        self.loaded = False  # the stored session looked up once
        self.system = None
        self.log = None
        self.limited_until = 0.0
        self._urls = {}  # path -> URL, checked once
        self.sensors_reader = SensorReader(None, declined, not_found, sensor_gets, max_members)

    @property
    def first_contact(self):
        """Whether a job must first log in or find the system (several
        requests): the engine gives it [redfish] login_timeout."""
        return (not self.loaded or self.system is None
                or (self.token is None and self.basic is None))

    def _url(self, path):
        url = self._urls.get(path)
        if url is not None:
            return url
        url = urllib.parse.urljoin(self.base + "/", path)
        if origin(url) != self.allowed:
            scheme, host, port = origin(url)
            raise errors.BmcProtocolError(f"the BMC pointed farm at {scheme}://{host}:{port}, "
                                          f"not its own origin; farm sends nothing there")
        if len(self._urls) < 64:  # the paths a BMC's polls use; a log's entries pass by
            self._urls[path] = url
        return url

    async def _send(self, method, path, body=None, auth=True):
        """(status, headers, parsed JSON or None), busy answers waited out."""
        url = self._url(path)
        for attempt in range(8):
            headers = {"OData-Version": "4.0", "Accept": "application/json"}
            if auth and self.token:
                headers["X-Auth-Token"] = self.token
            try:
                async with self.http.request(
                        method, url, json=body, headers=headers, ssl=self.ssl,
                        auth=self.basic if auth else None, allow_redirects=False) as r:
                    data = await self._body(r)
                    status, answer_headers = r.status, r.headers
            except aiohttp.ClientConnectorCertificateError as exc:
                raise errors.BmcTlsError(f"TLS failed ({exc}); check verify_tls") from exc
            except aiohttp.ClientSSLError as exc:
                raise errors.BmcTlsError(f"TLS failed ({exc})") from exc
            except (aiohttp.ClientConnectionError, OSError) as exc:
                raise errors.BmcUnreachable(f"cannot connect ({type(exc).__name__})") from exc
            doc = _json(data) if data else None
            if status in BUSY and not session_limited(doc):
                await asyncio.sleep(retry_after(answer_headers.get("Retry-After"), attempt))
                continue  # the engine's deadline bounds the waiting
            return status, answer_headers, doc
        return status, answer_headers, doc

    async def _body(self, response):
        chunks, size = [], 0
        while True:
            data = await response.content.read(65536)
            if not data:
                return b"".join(chunks)
            size += len(data)
            if size > self.max_bytes:
                raise errors.BmcProtocolError(f"the BMC's answer is larger than {self.max_bytes} "
                                              f"bytes ([redfish] max_answer_bytes)")
            chunks.append(data)

    async def _login(self):
        wait = self.limited_until - time.monotonic()
        if wait > 0:
            raise errors.BmcSessionLimit(
                f"the BMC's session table was full; farm tries again in {wait:.0f} s")
        status, _, root = await self._send("GET", "/redfish/v1/", auth=False)
        path = link(root, "Links", "Sessions") if status == 200 else None
        self.on_login()
        status, headers, doc = await self._send(
            "POST", path or "/redfish/v1/SessionService/Sessions",
            {"UserName": self.node.username, "Password": self.node.password}, auth=False)
        if 200 <= status < 300 and headers.get("X-Auth-Token"):
            self.token, self.session_uri = headers["X-Auth-Token"], headers.get("Location")
            if self.session_uri:
                self.session_uri = urllib.parse.urlsplit(self.session_uri).path
            if self.sessions is not None:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.sessions.save, self.node.name, self.token, self.session_uri)
            return
        if status in BUSY:  # a full table: session_limited said so (else _send waited)
            self.limited_until = time.monotonic() + LIMITED_RETRY
            raise errors.BmcSessionLimit(
                f"the BMC's session table is full (HTTP {status}: other clients hold its "
                f"sessions); farm tries again in a minute")
        if status in (401, 403):
            raise errors.BmcAuthError(f"the BMC refused the credentials (HTTP {status})")
        if status in (404, 405):  # no session service: basic auth, as sushy falls back
            self.basic = aiohttp.BasicAuth(self.node.username, self.node.password)
            return
        raise HttpStatus(f"login: HTTP {status} from the BMC", status)

    async def get(self, path):
        """A JSON object, with the farm's session (a login first if none,
        and again once after a 401)."""
        if not self.loaded:
            self.loaded = True
            if self.sessions is not None:
                held = await asyncio.get_running_loop().run_in_executor(
                    None, self.sessions.load, self.node.name)
                if held:
                    self.token, self.session_uri = held
        if self.token is None and self.basic is None:
            await self._login()
        status, _, doc = await self._send("GET", path)
        if status == 401 and self.basic is None:
            self.token = None
            await self._login()
            status, _, doc = await self._send("GET", path)
        if status != 200:
            kind = errors.BmcAuthError if status in (401, 403) else HttpStatus
            message = f"{path}: HTTP {status} from the BMC"
            raise kind(message) if kind is errors.BmcAuthError else HttpStatus(message, status)
        if not isinstance(doc, dict):
            raise errors.BmcProtocolError(f"{path}: the BMC sent no JSON object")
        return doc

    async def _system_path(self):
        if self.system is None:
            wanted = self.node.system_id
            if wanted.startswith("/"):
                self.system = wanted
            else:
                members = [m.get("@odata.id") for m in
                           (await self.get("/redfish/v1/Systems")).get("Members") or []
                           if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]
                if wanted:
                    self.system = next((m for m in members if m.rstrip("/").endswith(
                        "/" + wanted)), f"/redfish/v1/Systems/{wanted}")
                elif len(members) == 1:
                    self.system = members[0]
                else:
                    raise errors.BmcProtocolError(
                        f"the BMC has {len(members)} systems: set system_id in the inventory")
        return self.system

    async def power_state(self):
        state = str((await self.get(await self._system_path())).get("PowerState", "")).lower()
        if state in ("on", "poweringoff"):
            return PowerState.ON
        if state in ("off", "poweringon"):
            return PowerState.OFF
        raise errors.BmcProtocolError(f"PowerState {state!r} is not a power state")

    async def sensors(self):
        return await drive(self.sensors_reader.steps(await self._system_path()), self.get)

    async def log_entries(self, max_pages=50):
        """As farm.bmc.redfish's: (every LogEntry of the SEL, its capacity)."""
        if self.log is None:
            entries, _, capacity = await drive(redfish_log.find_sel(await self._system_path()),
                                               self.get)
            self.log = (entries, capacity)
        entries, capacity = self.log
        return await drive(redfish_log.read_entries(entries, self.max_members, max_pages),
                           self.get), capacity

    def forget(self):
        """A new start: the next request looks the session up again."""
        self.token = self.session_uri = self.basic = self.system = self.log = None
        self.loaded = False
        self.sensors_reader.reset()


def _json(data):
    try:
        return json.loads(data)
    except ValueError:
        return None
