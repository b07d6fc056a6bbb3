"""Redfish's transport, below sushy: what farm sends and reads over each
connection to a BMC (docs/redfish.md).

- `_OriginGuard`, a requests transport adapter, refuses any URL whose scheme,
  host or port is not the node's own (a link, a redirect or a session
  service elsewhere would be sent the token or the password), reads each
  answer itself (urllib3's read1) within a deadline for the whole answer
  and a byte cap, and waits out a busy BMC (503, 429) as its Retry-After
  asks, within the same deadline.
- `session_limited` tells a full session table from other errors.
- `small_tls_buffers` shrinks asyncio's per-connection TLS read buffer.

No sushy here: farm.bmc.redfish mounts the guard on sushy's connector.
"""

import asyncio.sslproto
import email.utils
import json
import time
import urllib.parse

import requests


class OtherOrigin(requests.exceptions.RequestException):
    """A request to a URL outside the BMC's own origin, refused unsent."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """An answer past [redfish] max_answer_bytes, cut off."""


READ = 65536  # bytes asked of the socket at a time
BUSY = (429, 503)
LIMITED_RETRY = 60.0  # seconds between logins to a BMC whose session table is full
# statuses with which a BMC declines a query or resource it does not serve
# (a sensors plan falls back to the next): 400, 405, 406, 500, 501
DECLINED = (400, 405, 406, 500, 501)
LIMIT_IDS = ("SessionLimitExceeded", "RAC0218")  # Redfish Base registry; iDRAC's message


TLS_READ_BUFFER = 16 * 1024  # one TLS record at most (RFC 8446, 5.1)


def small_tls_buffers():
    """asyncio gives every TLS connection a 256 KiB read buffer
    (`SSLProtocol.max_size`, CPython 3.11 to 3.13), filled with zeros, so
    resident: 10,000 kept connections to BMCs held 2.5 GiB of it. A
    record is at most 16 KiB, and a read of 16 KiB at a time costs no
    measurable CPU. A private class attribute, the one way to set it
    (tests/unit/test_library_internals.py fails if it changes shape);
    call before the loop opens connections."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def session_limited(body):
    """Whether an error body (JSON object) says the session table is full."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    ids = [str(error.get("code", ""))] + [
        str(m.get("MessageId", "")) for m in error.get("@Message.ExtendedInfo") or []
        if isinstance(m, dict)]
    return any(word in i for i in ids for word in LIMIT_IDS)


def retry_after(value, attempt):
    """Seconds a busy BMC asked to wait (Retry-After: seconds or an HTTP
    date), else exponential backoff from 0.5 s."""
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    return 0.5 * 2 ** attempt


def origin(url):
    """(scheme, host, port) of a URL, the port defaulted by its scheme."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class _OriginGuard(requests.adapters.BaseAdapter):
    """Sends through `inner` only requests to `allowed` (an origin); every
    other URL (a link, a redirect, a session service elsewhere) is refused
    before a byte, a token or a password leaves. Each answer is read here,
    whole, within `deadline` seconds and `max_bytes`."""

    def __init__(self, inner, allowed, deadline, max_bytes):
        super().__init__()
        self.inner, self.allowed = inner, allowed
        self.deadline, self.max_bytes = deadline, max_bytes
        self._gave_up = float("-inf")  # when a busy answer was last given up on

    def send(self, request, stream=False, **kwargs):
        if origin(request.url) != self.allowed:
            scheme, host, port = origin(request.url)
            raise OtherOrigin(f"the BMC pointed farm at {scheme}://{host}:{port}, not its own "
                              f"origin; farm sends nothing there", request=request)
        until = time.monotonic() + self.deadline
        for attempt in range(8):
            response = self._read(request, until, kwargs)
            if response.status_code not in BUSY or self._limited(response):
                return response
            # busy: wait as asked, within the poll's deadline; never past it
            # (nor again when sushy retries the request we just gave up on)
            wait = retry_after(response.headers.get("Retry-After"), attempt)
            if time.monotonic() + wait >= until or time.monotonic() - self._gave_up < 1.0:
                self._gave_up = time.monotonic()
                return response
            time.sleep(wait)
        return response

    @staticmethod
    def _limited(response):
        try:
            return session_limited(json.loads(response.content or b"{}"))
        except ValueError:
            return False

    def _read(self, request, until, kwargs):
        response = self.inner.send(request, stream=True, **kwargs)
        chunks, size = [], 0
        try:
            while True:
                if time.monotonic() > until:
                    raise requests.exceptions.ReadTimeout(
                        f"the BMC's answer took longer than {self.deadline:g} s in all",
                        request=request)
                data = response.raw.read1(READ, decode_content=True)  # one socket read's worth
                if not data:
                    break
                size += len(data)
                if size > self.max_bytes:
                    raise AnswerTooLarge(f"the BMC's answer is larger than {self.max_bytes} "
                                         f"bytes ([redfish] max_answer_bytes)", request=request)
                chunks.append(data)
        except BaseException:
            response.close()  # the connection too: the rest of that answer is not wanted
            raise
        # requests' own attributes for a body already read (shape-tested in
        # tests/unit/test_library_internals.py)
        response._content = b"".join(chunks)  # noqa: SLF001
        response._content_consumed = True  # noqa: SLF001
        response.raw.release_conn()
        return response

    def close(self):
        self.inner.close()


def guard_origin(connector, address, deadline=30.0, max_bytes=4 * 2**20):
    """Wrap every transport adapter of sushy's connector in _OriginGuard."""
    session = connector._session  # noqa: SLF001 (sushy exposes no hook; pinned by a test)
    allowed = origin(address)
    for prefix in ("https://", "http://"):
        session.mount(prefix, _OriginGuard(session.get_adapter(prefix), allowed, deadline,
                                           max_bytes))
