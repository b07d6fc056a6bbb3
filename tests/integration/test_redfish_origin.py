"""A Redfish BMC's answers are hostile input: whatever its links, redirects or
session service say, farm sends credentials only to the BMC's own origin.
Two real HTTP servers on loopback: the BMC, and another host that records
every request it gets."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from farm import errors
from farm.bmc.redfish import RedfishBmc
from farm.model import Node

USER, PASSWORD = "root", "Rf-Secret-42"


class Recorder(BaseHTTPRequestHandler):
    """The other host: answers 404 to everything, remembers what came."""

    seen = []

    def do_GET(self):  # noqa: N802 (http.server's names)
        self.seen.append((self.command, self.path, dict(self.headers),
                          self.rfile.read(int(self.headers.get("Content-Length") or 0))))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def bmc_handler(other, mode):
    """A minimal Redfish BMC whose answers point at `other` in one `mode`."""

    class Bmc(BaseHTTPRequestHandler):
        def _json(self, body, status=200, headers=()):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            systems = (f"{other}/redfish/v1/Systems" if mode == "link"
                       else "/redfish/v1/Systems")
            sessions = (f"{other}/redfish/v1/SessionService/Sessions" if mode == "sessions"
                        else "/redfish/v1/SessionService/Sessions")
            if self.path.rstrip("/") == "/redfish/v1":
                self._json({"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                            "Id": "RootService", "Name": "Root", "RedfishVersion": "1.6.0",
                            "UUID": "00000000-0000-0000-0000-000000000001",
                            "Systems": {"@odata.id": systems},
                            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                            "Links": {"Sessions": {"@odata.id": sessions}}})
            elif self.path == "/redfish/v1/Systems" and mode == "redirect":
                self.send_response(302)
                self.send_header("Location", f"{other}/redfish/v1/Systems")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/redfish/v1/Systems":
                self._json({"@odata.id": "/redfish/v1/Systems", "Name": "Systems",
                            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                            "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
                            "Members@odata.count": 1})
            elif self.path == "/redfish/v1/Systems/1":
                self._json({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "Name": "s",
                            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                            "PowerState": "On"})
            else:
                self._json({"error": "not found"}, 404)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/redfish/v1/SessionService/Sessions":
                self._json({"@odata.id": "/redfish/v1/SessionService/Sessions/1", "Id": "1"},
                           201, [("X-Auth-Token", "tok-123"),
                                 ("Location", "/redfish/v1/SessionService/Sessions/1")])
            else:
                self._json({}, 404)

        def log_message(self, *args):
            pass
    return Bmc


@pytest.fixture
def servers():
    started = []

    def start(address, handler):
        server = ThreadingHTTPServer((address, 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://{address}:{server.server_address[1]}"
    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["link", "redirect", "sessions"])
def test_credentials_never_leave_the_bmcs_origin(servers, mode):
    Recorder.seen = []
    other = servers("127.0.0.3", Recorder)
    bmc_url = servers("127.0.0.1", bmc_handler(other, mode))
    node = Node("r1", bmc_url, 0, USER, PASSWORD, driver="redfish", verify_tls="false")
    bmc = RedfishBmc(node, timeout=3.0)
    try:
        with pytest.raises(errors.BmcProtocolError) as err:
            bmc.power_state()
        assert "not its own origin" in str(err.value) and other[7:] in str(err.value)
        assert PASSWORD not in str(err.value)
    finally:
        bmc.close()
    assert Recorder.seen == [], Recorder.seen  # not one request reached the other host


def test_the_same_bmc_with_honest_links_is_polled(servers):
    """The guard refuses only other origins: the fake BMC itself works."""
    Recorder.seen = []
    other = servers("127.0.0.3", Recorder)
    bmc_url = servers("127.0.0.1", bmc_handler(other, "honest"))
    bmc = RedfishBmc(Node("r1", bmc_url, 0, USER, PASSWORD, driver="redfish"), timeout=3.0)
    try:
        assert bmc.power_state().value == "on"
    finally:
        bmc.close()
    assert Recorder.seen == []
