"""farm-sim's Redfish BMCs served from one asyncio event loop: every BMC's
listening socket, every connection and every delayed answer is a coroutine
on one thread, so one process serves 10,000 BMCs at a second's latency
(a thread per connection stopped at a few hundred).

HTTP/1.1 as BMCs speak it (bmcweb, iDRAC): kept connections unless the
client asks to close (then the answer says `Connection: close`, so a
client's pool never reuses a connection the server is closing),
Content-Length bodies, HTTPS through the standard library's ssl with the
fleet's one certificate. A hung BMC accepts connections, completes the TLS
handshake, reads the request and never answers, as a BMC whose web server
is wedged does. What each request means is farm.sim.redfish's RedfishBmc.
"""

import asyncio
import email.utils
import json
import logging
import time

from farm.bmc.redfish_http import small_tls_buffers

LOGGER = logging.getLogger(__name__)
MAX_HEAD = 64 * 1024      # request line and headers
MAX_BODY = 1024 * 1024    # what a Redfish request body may be here
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           501: "Not Implemented", 503: "Service Unavailable"}


def parse_head(head):
    """(method, target, version, headers with lowercased names) of a
    request's head, or None when it is not HTTP/1.x."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def wants_close(version, headers):
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)


def response(status, doc, extra, close):
    payload = json.dumps(doc).encode() if doc is not None else b""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
             f"Date: {email.utils.formatdate(usegmt=True)}",
             f"Content-Length: {len(payload)}", "OData-Version: 4.0"]
    if doc is not None:
        lines.append("Content-Type: application/json")
    if close:
        lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class Server:
    """Serves `fleet` (a farm.sim.redfish.RedfishFleet: its bound sockets,
    `ports` -> BMC name, `bmcs`, `delay`, `connections`) until `stop`."""

    def __init__(self, fleet, context):
        self.fleet, self.context = fleet, context
        self.stopped = None  # an asyncio.Event, made on the loop

    def run(self, stop):
        small_tls_buffers()  # 10,000 connections: 160 MiB of buffers, not 2.5 GiB
        asyncio.run(self._main(stop))

    async def _main(self, stop):
        self.stopped = asyncio.Event()
        servers = []
        for port, sock in self.fleet.socks.items():
            bmc = self.fleet.bmcs.get(self.fleet.ports[port])  # None: hung

            def serve(reader, writer, bmc=bmc):
                return self._connection(bmc, reader, writer)
            servers.append(await asyncio.start_server(
                serve, sock=sock, ssl=self.context, limit=MAX_HEAD,
                ssl_handshake_timeout=30 if self.context else None))
        swept = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.2)
            if self.fleet.drop_requested:
                self.fleet.drop_requested = False
                self.fleet.drop_sessions(0)
            if time.monotonic() - swept >= 1.0:
                self.fleet.drop_sessions(self.fleet.session_timeout)
                swept = time.monotonic()
        self.stopped.set()
        for server in servers:
            server.close()  # stops accepting; the connections end below

    async def _connection(self, bmc, reader, writer):
        self.fleet.connections += 1
        try:
            if bmc is None:
                await reader.read(MAX_HEAD)  # take the request,
                await self.stopped.wait()    # never answer
                return
            while not self.stopped.is_set():
                if not await self._exchange(bmc, reader, writer):
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away, or sent what is not HTTP
        finally:
            writer.close()

    async def _exchange(self, bmc, reader, writer):
        """One request and its answer; False when the connection ends."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # closed between requests, as clients do
        request = parse_head(head)
        if request is None:
            writer.write(response(400, {"error": {"message": "malformed request"}}, {}, True))
            await writer.drain()
            return False
        method, target, version, headers = request
        length = int(headers.get("content-length") or 0)
        if not 0 <= length <= MAX_BODY:
            writer.write(response(413, {"error": {"message": "body too large"}}, {}, True))
            await writer.drain()
            return False
        body = await reader.readexactly(length) if length else b""
        if self.fleet.delay:
            await asyncio.sleep(self.fleet.delay)
        status, doc, extra = bmc.answer(method, target, headers, body)
        close = wants_close(version, headers)
        writer.write(response(status, doc, extra, close))
        await writer.drain()
        return not close
