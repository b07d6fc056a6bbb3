"""`farm-sim --engine lean`: many BMCs in one epoll loop, cheap enough for
100,000 of them on one host beside farm (pyghmi's server costs about
0.3 ms of CPU per exchange; this one a fraction of that).

The BMC side of RMCP+ written here from the IPMI v2.0 specification: IPMI
1.5 session-less Get Channel Authentication Capabilities and Get Channel
Cipher Suites, Open Session, RAKP 1-4 (cipher suites 3 and 17), then Get
Device ID, Get Chassis Status, Chassis Control, Set Session Privilege Level
and Close Session inside the session; everything else goes to the BMC's
farm.sim.hardware (chassis, sensors, event log). Packet framing, AES-CBC and HMAC come
from farm.bmc.rmcp, so this engine is checked by clients nobody here wrote:
tests run ipmitool and ipmipower against it (the pyghmi engine stays the
default and the oracle for farm's own tests).
"""

import hmac
import logging
import os
import select
import socket
import struct
import time

from farm.bmc import rmcp
from farm.errors import BmcError
from farm.model import Node
from farm.sim.fleet import pick, sweep_sessions
from farm.sim.hardware import Hardware
from farm.sim.hardware import stats as hw_stats
from farm.sim.quirks import (
    auth_capabilities,
    hashing_name,
    hashing_role,
    rakp2_code,
    rakp3_role,
    response_checksum,
)

LOG = logging.getLogger(__name__)
GUID = bytes(range(16))
_APP = 0x06
_MAX_PRIV = 4
# RAKP statuses (spec table 13-15)
_UNAUTHORIZED_NAME, _INVALID_ICV = 0x0D, 0x0F


def _suite_for(auth, integrity, conf, offered):
    for number in offered:
        s = rmcp.SUITES[number]
        if (auth, integrity, conf) == (s.auth_alg, s.integrity_alg, 1):
            return s
    return None


class _Session:
    __slots__ = ("suite", "console_sid", "bmc_sid", "role", "username", "rm", "rc", "keys",
                 "active", "seq", "last_seen", "addr", "sik", "open_privilege")

    def __init__(self, suite, console_sid, bmc_sid, role, addr):
        self.suite, self.console_sid, self.bmc_sid, self.role = suite, console_sid, bmc_sid, role
        self.open_privilege = role  # what the Open Session request asked for (0: highest)
        self.addr = addr
        self.username = self.rm = self.rc = self.sik = b""
        self.keys = None
        self.active = False
        self.seq = 0
        self.last_seen = time.monotonic()


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it


def _arrival(ancillary):
    """The kernel's receive time of a packet (epoch seconds), or None."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9
    return None


class LeanBmc:
    def __init__(self, fleet, name, sock, hardware, quirks=frozenset()):
        self.fleet, self.name, self.sock, self.hw = fleet, name, sock, hardware
        self.quirks = quirks  # farm.sim.quirks: misbehaviours of real boards
        self.sessions = {}  # bmc session id -> _Session

    # -- one datagram in, at most one out -------------------------------------------
    def handle(self, packet, addr):
        if len(packet) < 5 or packet[:4] != rmcp.RMCP_HEADER:
            return None
        if packet[4] == 0x00:
            return self._ipmi15(packet, addr)
        if packet[4] != rmcp.AUTH_RMCPPLUS or len(packet) < 16:
            return None
        sid = struct.unpack_from("<I", packet, 6)[0]
        session = self.sessions.get(sid)
        try:
            ptype, _, _, payload = rmcp.unwrap(packet, session.keys if session and session.active else None)
        except BmcError:
            self.fleet.bad_packets += 1
            return None
        if ptype == rmcp.OPEN_REQUEST:
            return self._open(payload, addr)
        if ptype == rmcp.RAKP1:
            return self._rakp1(payload)
        if ptype == rmcp.RAKP3:
            return self._rakp3(payload)
        if ptype == rmcp.IPMI and session and session.active:
            session.last_seen = time.monotonic()
            return self._command(payload, session)
        if ptype == rmcp.IPMI and not sid:
            reply = self._sessionless(payload)
            return reply and rmcp.wrap(rmcp.IPMI, reply)
        return None

    def _ipmi15(self, packet, addr):
        """IPMI 1.5 session-less: what clients ask before opening a session."""
        if len(packet) < 15 or packet[13] != len(packet) - 14:
            return None
        reply = self._sessionless(packet[14:])
        if reply is None:
            return None
        return rmcp.RMCP_HEADER + b"\x00" + bytes(8) + bytes([len(reply)]) + reply

    def _sessionless(self, msg):
        req = _request(msg)
        if req is None:
            return None
        netfn, seq, cmd, data = req
        if (netfn, cmd) == (_APP, 0x38):  # Get Channel Authentication Capabilities
            body = bytes([0x01, 0x80, 0x04, 0x02, 0, 0, 0, 0])  # IPMI 2.0 extended, RMCP+
            return _response(netfn, seq, cmd, 0, auth_capabilities(body, self.quirks))
        if (netfn, cmd) == (_APP, 0x54):  # Get Channel Cipher Suites
            records = b"".join(bytes([0xC0, n, s.auth_alg, 0x40 | s.integrity_alg, 0x81])
                               for n, s in ((n, rmcp.SUITES[n]) for n in self.fleet.suites))
            index = data[2] & 0x3F if len(data) >= 3 else 0
            chunk = records[index * 16:(index + 1) * 16]
            return _response(netfn, seq, cmd, 0, b"\x01" + chunk)
        return _response(netfn, seq, cmd, 0xC1, b"")

    def _open(self, p, addr):
        if len(p) < 32:
            return None
        tag, console_sid = p[0], struct.unpack_from("<I", p, 4)[0]
        suite = _suite_for(p[12], p[20], p[28], self.fleet.suites)
        if suite is None:
            return rmcp.wrap(rmcp.OPEN_RESPONSE, bytes([tag, rmcp.NO_CIPHER_SUITE_MATCH, 0, 0]) + p[4:8])
        bmc_sid = struct.unpack("<I", os.urandom(4))[0] | 1
        self.sessions[bmc_sid] = _Session(suite, console_sid, bmc_sid, p[1] or _MAX_PRIV, addr)
        self.sessions[bmc_sid].open_privilege = p[1]
        body = (bytes([tag, 0, p[1] or _MAX_PRIV, 0]) + p[4:8] + struct.pack("<I", bmc_sid)
                + bytes([0, 0, 0, 8, suite.auth_alg, 0, 0, 0])
                + bytes([1, 0, 0, 8, suite.integrity_alg, 0, 0, 0])
                + bytes([2, 0, 0, 8, 1, 0, 0, 0]))
        return rmcp.wrap(rmcp.OPEN_RESPONSE, body)

    def _rakp1(self, p):
        if len(p) < 28:
            return None
        tag, bmc_sid = p[0], struct.unpack_from("<I", p, 4)[0]
        s = self.sessions.get(bmc_sid)
        if s is None or s.active:
            return None
        s.rc, s.role, username = bytes(p[8:24]), p[24], bytes(p[28:28 + p[27]])
        console = struct.pack("<I", s.console_sid)
        if username.rstrip(b"\0") != self.fleet.username:
            del self.sessions[bmc_sid]
            return rmcp.wrap(rmcp.RAKP2, bytes([tag, _UNAUTHORIZED_NAME, 0, 0]) + console)
        s.username, s.rm = username, os.urandom(16)
        who = self._who(s)
        code = hmac.digest(self.fleet.password, console + struct.pack("<I", bmc_sid) + s.rc + s.rm
                           + GUID + who, s.suite.name)
        return rmcp.wrap(rmcp.RAKP2, bytes([tag, 0, 0, 0]) + console + s.rm + GUID
                         + rakp2_code(code, self.quirks))

    def _who(self, s, role=None):
        """Role, name length and name as this BMC hashes them (its quirks)."""
        name = hashing_name(s.username, self.quirks)
        role = hashing_role(s.role if role is None else role, s.open_privilege, self.quirks)
        return bytes([role, len(name)]) + name

    def _rakp3(self, p):
        if len(p) < 8:
            return None
        tag, bmc_sid = p[0], struct.unpack_from("<I", p, 4)[0]
        s = self.sessions.get(bmc_sid)
        if s is None or s.active or not s.rm:
            return None
        console = struct.pack("<I", s.console_sid)
        name = s.username.rstrip(b"\0") if "intel20" in self.quirks else s.username
        checked = bytes([hashing_role(rakp3_role(s.role, self.quirks), s.open_privilege,
                                      self.quirks), len(name)]) + name
        expected = hmac.digest(self.fleet.password, s.rm + console + checked, s.suite.name)
        if p[1] or not hmac.compare_digest(expected, bytes(p[8:])):
            del self.sessions[bmc_sid]
            return rmcp.wrap(rmcp.RAKP4, bytes([tag, _INVALID_ICV, 0, 0]) + console)
        s.sik = hmac.digest(self.fleet.password, s.rc + s.rm + self._who(s), s.suite.name)
        s.keys = rmcp.session_keys(s.suite, s.sik)
        s.active = True
        icv = hmac.digest(s.sik, s.rc + struct.pack("<I", bmc_sid) + GUID, s.suite.name)
        return rmcp.wrap(rmcp.RAKP4, bytes([tag, 0, 0, 0]) + console + icv[:s.suite.icv_len])

    def _command(self, payload, s):
        req = _request(payload)
        if req is None:
            return None
        netfn, seq, cmd, data = req
        code, body = 0, b""
        if (netfn, cmd) == (_APP, 0x3B):  # Set Session Privilege Level
            body = bytes([(data[0] & 0x0F) or s.role & 0x0F]) if data else bytes([s.role & 0x0F])
        elif (netfn, cmd) == (_APP, 0x3C):  # Close Session
            self.sessions.pop(s.bmc_sid, None)
        else:  # the chassis, sensors and event log (farm.sim.hardware)
            code, body = self.hw.handle(netfn, cmd, data) or (0xC1, b"")
        s.seq = (s.seq + 1) & 0xFFFFFFFF
        message = response_checksum(_response(netfn, seq, cmd, code, body), self.quirks)
        return rmcp.wrap(rmcp.IPMI, message, s.console_sid, s.seq, s.keys)


def _request(msg):
    """(netfn, rq_seq byte, command, data) of an IPMI request message, or None."""
    if len(msg) < 7 or (-sum(msg[:3]) & 0xFF) or (-sum(msg[3:]) & 0xFF):
        return None
    return msg[1] >> 2, msg[4], msg[5], bytes(msg[6:-1])


def _response(netfn, rq_seq_byte, cmd, code, data):
    head = bytes([rmcp.CONSOLE_ADDRESS, ((netfn + 1) << 2)])
    body = bytes([rmcp.BMC_ADDRESS, rq_seq_byte, cmd, code]) + data
    return head + bytes([-sum(head) & 0xFF]) + body + bytes([-sum(body) & 0xFF])


class LeanFleet:
    """`count` BMCs on address:base_port.. (some hung: bound, never read)."""

    def __init__(self, count, address, base_port, username, password, hung_fraction=0.0,
                 off_fraction=0.0, session_timeout=60.0, name_prefix="bmc-", suites=(17, 3),
                 hardware=None, quirks=frozenset(), quirk_fraction=1.0):
        self.username, self.password = username.encode(), password.encode()
        self.session_timeout = session_timeout
        self.suites = tuple(suites)
        self.drop_requested = False
        self.sessions_expired = self.bad_packets = 0
        self.epoll = select.epoll()
        self.bmcs, self.hung, self.nodes, self._by_fd = {}, {}, [], {}
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        hung, off = pick(count, hung_fraction, 0), pick(count, off_fraction, 1)
        options = dict(hardware or {})
        hot = pick(count, options.pop("hot_fraction", 0.0), 2)
        quirky = pick(count, quirk_fraction if quirks else 0.0, 3)
        for i in range(count):
            name, port = f"{name_prefix}{base_port + i}", base_port + i
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind((address, port))
            sock.setblocking(False)
            if i in hung:
                self.hung[name] = sock
            else:
                bmc = LeanBmc(self, name, sock, Hardware(name, powered=i not in off,
                                                         hot=i in hot, **options),
                              quirks if i in quirky else frozenset())
                self.bmcs[name] = bmc
                self._by_fd[sock.fileno()] = bmc
                self.epoll.register(sock.fileno(), select.EPOLLIN)
            self.nodes.append(Node(name=name, address=address, port=port,
                                   username=username, password=password))

    def drop_sessions(self, older_than):
        now = time.monotonic()
        for bmc in self.bmcs.values():
            for sid, s in list(bmc.sessions.items()):
                if now - s.last_seen >= older_than:
                    del bmc.sessions[sid]
                    self.sessions_expired += 1

    def serve(self, stop):
        next_sweep = time.monotonic() + 1.0
        # With a control journal, each packet's arrival is the kernel's receive
        # time (SO_TIMESTAMPNS): the moment it reached the BMC, not the moment
        # this one thread, serving every BMC, got round to it.
        stamped = any(b.hw.journal is not None for b in self.bmcs.values())
        if stamped:
            for bmc in self.bmcs.values():
                bmc.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        while not stop.is_set():
            next_sweep = sweep_sessions(self, next_sweep)
            for fd, _ in self.epoll.poll(0.5):
                bmc = self._by_fd[fd]
                for _ in range(64):  # drain, bounded so one flood cannot starve the rest
                    try:
                        if stamped:
                            packet, ancillary, _, addr = bmc.sock.recvmsg(512, 64)
                            bmc.hw.received_at = _arrival(ancillary)
                        else:
                            packet, addr = bmc.sock.recvfrom(512)
                    except (BlockingIOError, InterruptedError):
                        break
                    try:
                        reply = bmc.handle(packet, addr)
                        if reply:
                            bmc.sock.sendto(reply, addr)
                    except Exception:  # a malformed packet must not kill the fleet
                        self.bad_packets += 1
                        LOG.debug("BMC %s: packet not handled", bmc.name, exc_info=True)

    def stats(self):
        return hw_stats([b.hw for b in self.bmcs.values()])

    def close(self):
        for bmc in self.bmcs.values():
            bmc.sock.close()
        for sock in self.hung.values():
            sock.close()
        self.epoll.close()
