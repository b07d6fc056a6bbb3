"""Redfish BMCs that would hold a worker: one that drips its answer a byte
at a time, one that sends hundreds of megabytes, one whose log lists a
hundred thousand entries by reference. Real HTTP servers on loopback; the
BMC's own count of what it sent or was asked is the oracle."""

import json
import time

import pytest

from farm import errors
from farm.bmc.redfish import RedfishBmc
from farm.model import Node
from tests.integration.test_redfish_origin import bmc_handler, servers  # noqa: F401 (fixture)

USER, PASSWORD = "root", "Rf-Secret-42"


def socket_buffers():
    """The most a loopback TCP connection may hold in flight: the largest
    send buffer plus the largest receive buffer Linux autotunes to."""
    def largest(name):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            return int(f.read().split()[2])
    return largest("tcp_wmem") + largest("tcp_rmem")


def hostile(mode, counts):
    """The honest minimal BMC of test_redfish_origin, but for its system
    (drip, huge) or its log (by-reference)."""
    honest = bmc_handler("http://127.0.0.3:1", "honest")

    class Bmc(honest):
        protocol_version = "HTTP/1.1"  # keeps connections, as BMCs do

        def end_headers(self):
            if self.close_connection:  # the client asked to close (sushy does): say so
                self.send_header("Connection", "close")
            super().end_headers()

        def do_GET(self):  # noqa: N802
            counts["gets"] = counts.get("gets", 0) + 1
            if self.path == "/redfish/v1/Systems/1" and mode.startswith("busy") \
                    and (mode == "busy-always" or counts.get("busy", 0) < 2):
                counts["busy"] = counts.get("busy", 0) + 1
                counts.setdefault("busy_at", []).append(time.monotonic())
                self.send_response(503)
                if mode == "busy":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path == "/redfish/v1/Systems/1" and mode in ("drip", "huge"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                size = 200 * 2**20 if mode == "huge" else 4096
                self.send_header("Content-Length", str(size))
                self.end_headers()
                piece, pause = (b" " * 65536, 0) if mode == "huge" else (b" ", 0.25)
                try:
                    for _ in range(size // len(piece)):
                        self.wfile.write(piece)
                        self.wfile.flush()
                        counts["sent"] = counts.get("sent", 0) + len(piece)
                        if pause:
                            time.sleep(pause)
                except OSError:
                    return  # farm hung up
            elif self.path == "/redfish/v1/Systems/1" and mode == "log":
                self._json({"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "Name": "s",
                            "PowerState": "On",
                            "LogServices": {"@odata.id": "/redfish/v1/Systems/1/LogServices"}})
            elif self.path == "/redfish/v1/Systems/1/LogServices":
                self._json({"Members": [{"@odata.id": "/redfish/v1/Systems/1/LogServices/SEL"}]})
            elif self.path == "/redfish/v1/Systems/1/LogServices/SEL":
                self._json({"Id": "SEL", "Entries": {
                    "@odata.id": "/redfish/v1/Systems/1/LogServices/SEL/Entries"}})
            elif self.path == "/redfish/v1/Systems/1/LogServices/SEL/Entries":
                self._json({"Members": [
                    {"@odata.id": f"/redfish/v1/Systems/1/LogServices/SEL/Entries/{i}"}
                    for i in range(20_000)]})
            elif self.path.startswith("/redfish/v1/Systems/1/LogServices/SEL/Entries/"):
                i = self.path.rsplit("/", 1)[1]
                self._json({"Id": i, "Created": "2026-01-01T00:00:00Z", "Message": "x" * 5000,
                            "Severity": "OK", "SensorNumber": [1] * 100})
            else:
                super().do_GET()
    return Bmc


def bmc_at(url, **limits):
    return RedfishBmc(Node("r1", url, 0, USER, PASSWORD, driver="redfish"), timeout=2.0,
                      **limits)


def test_a_dripping_answer_is_cut_at_the_deadline(servers):  # noqa: F811
    """4 KiB at 4 bytes a second would take 17 minutes: the answer as a
    whole has the poll's deadline (requests' timeout is per read, and the
    drip reset it every quarter second)."""
    counts = {}
    bmc = bmc_at(servers("127.0.0.1", hostile("drip", counts)))
    started = time.monotonic()
    try:
        with pytest.raises(errors.BmcTimeout):
            bmc.power_state()
    finally:
        bmc.close()
    took = time.monotonic() - started
    assert took < 2.0 + 2.0 + 3.0, took  # deadline + one read's timeout + slack; was 1,024 s
    assert counts["sent"] < 100


def test_an_oversized_answer_is_cut_at_the_cap(servers):  # noqa: F811
    counts = {}
    bmc = bmc_at(servers("127.0.0.1", hostile("huge", counts)), max_bytes=2**20)
    try:
        with pytest.raises(errors.BmcProtocolError) as err:
            bmc.power_state()
    finally:
        bmc.close()
    assert "max_answer_bytes" in str(err.value)
    # what the BMC managed to write before farm hung up: the cap and what
    # the sockets may buffer (this kernel's limits), not 200 MB
    assert counts.get("sent", 0) < 2**20 + socket_buffers() + 4 * 2**20, counts


def test_a_log_listed_by_reference_costs_at_most_max_members_gets(servers):  # noqa: F811
    """20,000 entries by reference were 20,000 GETs, one at a time; and
    what is stored of each is bounded (a 5,000-character message, a list
    for a sensor number)."""
    from farm.bmc import redfish_data
    counts = {}
    bmc = bmc_at(servers("127.0.0.1", hostile("log", counts)), max_members=50)
    try:
        members, _ = bmc.log_entries()
    finally:
        bmc.close()
    assert len(members) == 50 and counts["gets"] < 50 + 10, counts
    entries, _, _ = redfish_data.new_entries(members, None, 1000)
    assert all(len(e["description"]) <= 300 and "sensor" not in e for e in entries)
    assert len(json.dumps(entries)) < 50 * 500


def test_the_whole_answer_deadline_keeps_a_kept_connection(servers):  # noqa: F811
    """The guard reads every body itself: an honest BMC's connection is
    still kept between polls (one login, answers parsed)."""
    counts = {}
    logins = []
    url = servers("127.0.0.1", hostile("honest", counts))
    bmc = RedfishBmc(Node("r1", url, 0, USER, PASSWORD, driver="redfish"), timeout=2.0,
                     on_login=lambda: logins.append(1))
    try:
        for _ in range(5):
            assert bmc.power_state().value == "on"
    finally:
        bmc.close()
    assert len(logins) == 1



def test_a_busy_bmc_is_waited_out_as_it_asks(servers):  # noqa: F811
    """503 with Retry-After: 1, twice: farm waits as asked, within the
    poll's deadline, and reads; never a second session around it."""
    counts = {}
    bmc = RedfishBmc(Node("r1", servers("127.0.0.1", hostile("busy", counts)), 0, USER,
                          PASSWORD, driver="redfish"), timeout=5.0)
    try:
        assert bmc.power_state() is not None
    finally:
        bmc.close()
    assert counts["busy"] == 2
    gaps = [b - a for a, b in zip(counts["busy_at"], counts["busy_at"][1:], strict=False)]
    assert all(g >= 0.95 for g in gaps), gaps


def test_a_bmc_busy_past_the_deadline_is_a_busy_error(servers):  # noqa: F811
    """503 without Retry-After, for ever: backoff from 0.5 s, doubling,
    until the 2 s deadline, then `busy`, not a protocol error."""
    counts = {}
    bmc = bmc_at(servers("127.0.0.1", hostile("busy-always", counts)))
    try:
        with pytest.raises(errors.BmcBusy):
            bmc.power_state()
    finally:
        bmc.close()
    gaps = [b - a for a, b in zip(counts["busy_at"], counts["busy_at"][1:], strict=False)]
    assert 2 <= counts["busy"] <= 5 and gaps[0] >= 0.45 and gaps[1] >= 0.95, counts
