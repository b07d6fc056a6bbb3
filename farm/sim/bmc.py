"""One simulated BMC on pyghmi's server classes, and the fixes the stock
pyghmi 1.6.19 server needs to serve many clients from one process.

The simulator runs in its own process, so patching pyghmi's module state here
never touches a farm worker.
"""

import logging
import socket
import threading
import time

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import serversession
from pyghmi.ipmi.private import session as ipmisession

from farm.sim import pyghmi_loop

LOG = logging.getLogger(__name__)

_SHA1 = 1
_NO_CIPHER_SUITE_MATCH = 0x11


class SuiteThreeSession(serversession.ServerSession):
    """A server session that, like many real BMCs, offers only cipher suite 3.

    The stock server answers any proposal with suite 3, and a client that
    proposed suite 17 then fails parsing (struct.error). Refusing other
    proposals with status 0x11 makes clients fall back, as real BMCs do.
    """

    def create_open_session_response(self, request):
        request = bytearray(request)
        if len(request) >= 32 and (request[12] != _SHA1 or request[20] != _SHA1):
            self.clientsessionid = request[4:8]
            return bytearray([request[0], _NO_CIPHER_SUITE_MATCH, 0, 0]) + request[4:8]
        return super().create_open_session_response(request)

    def _handle_ipmi_packet(self, data, sockaddr=None, qent=None):
        self.last_seen = time.monotonic()  # for the fleet's inactivity timeout
        return super()._handle_ipmi_packet(data, sockaddr, qent)

    def close_server_session(self):
        # Stock pyghmi never forgets a closed session: every client port leaks.
        handlers = ipmisession.Session.bmc_handlers.get(self.sockaddr, {})
        if handlers.get(self.bmc.port) is self:
            del handlers[self.bmc.port]
            if not handlers:
                ipmisession.Session.bmc_handlers.pop(self.sockaddr, None)


def patch_server():
    """Apply the server-side fixes; call once, before creating any SimBmc."""
    # The client-side fixes apply to the server too: the same blocking flip
    # in _io_sendto and the same spinning IO loop.
    pyghmi_loop.apply()
    serversession.ServerSession = SuiteThreeSession
    # The IO thread's wake-up poke goes to iosockets[0]; it must be the
    # dual-stack client socket, not an IPv4 server socket.
    if not ipmisession.iosockets:
        if ipmisession.Session.socketchecking is None:
            ipmisession.Session.socketchecking = threading.Lock()
        ipmisession.Session._assignsocket()


class SimBmc(pyghmi_bmc.Bmc):
    """pyghmi's BMC server in front of farm.sim.hardware (chassis, sensors,
    event log); answers after `fleet.delay` seconds."""

    def __init__(self, fleet, name, username, password, address, port, hardware):
        super().__init__({username: password}, port=port, address=address)
        self.fleet = fleet
        self.name = name
        self.hw = hardware
        self.in_flight = 0  # commands received and not yet answered (with --delay)

    def handle_raw_request(self, request, session):
        self.in_flight += 1
        self.fleet.max_in_flight = max(self.fleet.max_in_flight, self.in_flight)
        if self.fleet.delay > 0:
            self.fleet.later(self.fleet.delay, self._answer, request, session)
        else:
            self._answer(request, session)

    def _answer(self, request, session):
        self.in_flight -= 1
        try:
            answer = self.hw.handle(request["netfn"], request["command"],
                                    bytes(request.get("data") or b""))
            if answer is None:
                super().handle_raw_request(request, session)
            else:
                session.send_ipmi_response(code=answer[0], data=answer[1])
        except Exception:  # a malformed request must not kill the fleet
            LOG.debug("BMC %s: request failed", self.name, exc_info=True)
            session.send_ipmi_response(code=0xff)


class HungBmc:
    """A BMC that never answers: its port is bound, nothing reads it."""

    def __init__(self, name, address, port):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.name = name
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((address, port))

    def close(self):
        self.sock.close()



def server_sessions():
    """Every live simulated session (for the inactivity sweep)."""
    found = []
    for handlers in list(ipmisession.Session.bmc_handlers.values()):
        for session in list(handlers.values()):
            if isinstance(session, SuiteThreeSession):
                found.append(session)
    return found
