"""One BMC's RMCP+ session as a state machine driven by farm's engine.

A session runs one job at a time (one command in flight per BMC); a job is a
task's program, a generator that yields Requests and gets Responses back.
The engine feeds the session packets and timer expiries; the session answers
with packets to send through `engine.send`. Nothing here blocks or sleeps.
"""

import collections
import dataclasses
import logging
import os
import struct

from farm import errors
from farm.bmc import codes, rmcp
from farm.bmc.negotiation import hint, known_first, level_name

LOG = logging.getLogger(__name__)
IDLE, OPENING, RAKP1_SENT, RAKP3_SENT, PRIVILEGE, ACTIVE = range(6)
SET_PRIVILEGE, CLOSE_SESSION, GET_DEVICE_ID = 0x3B, 0x3C, 0x01
NETFN_APP = 0x06


@dataclasses.dataclass(frozen=True)
class Request:
    netfn: int
    command: int
    data: bytes = b""
    acts: bool = False  # changes the server (Chassis Control): gated by the acting lease


@dataclasses.dataclass(frozen=True)
class Response:
    code: int     # completion code, 0 = success
    data: bytes


def keepalive_program(node, memo, arg):
    yield Request(NETFN_APP, GET_DEVICE_ID)


class Job:
    """One run of a task's program on a node: `program(node, memo, arg)`, where
    `memo` is a dict the program keeps per BMC session across runs (an SDR
    cache) and `arg` what the submitter passed (a SEL cursor, an action)."""

    __slots__ = ("task", "node", "program", "gen", "deadline", "started", "internal",
                 "logins", "error", "arg", "sent")

    def __init__(self, task, node, program, internal=False, arg=None):
        self.task, self.node, self.program, self.internal = task, node, program, internal
        self.arg = arg
        self.gen = self.deadline = self.started = None
        self.logins = 0
        self.sent = False  # a command of it left (on this session or one lost since)
        self.error = None  # the last rejected packet, reported if the deadline hits


class Session:
    """The client side of one RMCP+ session with one BMC endpoint."""

    def __init__(self, engine, endpoint, family):
        self.engine = engine
        self.endpoint = endpoint
        self.family = family
        self.state = IDLE
        self.creds = None
        self.suite_known = None     # the suite this BMC accepted last time
        self.privilege_known = None  # the level it granted last time
        self.granted = 0            # the privilege level of the session now
        self.suites = self.privileges = ()
        self.privilege = 0          # the level of the current login attempt
        self.refusals = []          # what each attempt of this login was refused
        self.fallback_logged = False
        self.workarounds = frozenset()  # the node's (FreeIPMI names)
        self.detected = set()       # the ones this BMC turned out to need
        self.keys = None
        self.console_sid = self.bmc_sid = 0
        self.seq_out = self.rq_seq = self.tag = 0
        self.rakp = self.sik = None
        self.suite = None           # the suite of the current login attempt
        self._pending_keys = None   # keys from RAKP 2, in use once RAKP 4 checks out
        self.expect = None          # (netfn+1, command, rq_seq) awaited in ACTIVE
        self.packet = None          # last packet sent, for retransmission
        self.attempts = 0
        self.token = 0              # bumped on every send: stale timers are ignored
        self.last_activity = 0.0
        self.fresh = False          # logged in during the current job
        self.job = self.node = self.request = self.program_request = None
        self.name = None            # the node this endpoint was last asked for
        self.queue = collections.deque()
        self.memos = {}             # task -> its program's memo for this BMC
        self.last_command = float("-inf")  # when the last command went out

    # -- jobs -----------------------------------------------------------------------
    def begin(self, job, now):
        """Start `job` now (the engine checked the BMC is free)."""
        self.job = job
        self.node = job.node
        job.started = now
        # a step held until its send time (farm.power.steps) gets its full deadline from then
        held = max(0.0, (getattr(job.arg, "start_at", None) or 0.0) - now)
        job.deadline = now + held + self.engine.timeouts.get(job.task, self.engine.config.timeout)
        self.engine.at(job.deadline, self, "deadline", job)
        node = job.node
        creds = (node.username.encode("utf-8"), node.password.encode("utf-8"),
                 bytes.fromhex(node.kg).ljust(20, b"\0") if node.kg else b"")
        idle = now - self.last_activity
        if self.state == ACTIVE and (creds != self.creds or idle > self.engine.config.session_timeout):
            self._abandon()  # credentials changed, or the BMC has (or should have) dropped it
        self.creds = creds
        self.workarounds = frozenset(node.workarounds) | frozenset(self.engine.config.workarounds)
        self.fresh = False
        if self.state == ACTIVE:
            self._step(None)
        else:
            self._login(now)

    def _finish(self, value=None, error=None):
        job, self.job = self.job, None
        self.expect = self.packet = None
        self.token += 1
        if job.gen is not None:
            job.gen.close()
        self.engine.finished(self, job, value, error)

    def _step(self, response):
        job = self.job
        try:
            if job.gen is None:
                needed = getattr(job.program, "privilege", 0)
                if needed > self.granted:
                    raise errors.BmcPrivilegeError(
                        f"the BMC grants this account {level_name(self.granted)} privilege; "
                        f"{job.task} needs {level_name(needed)}")
                job.gen = job.program(job.node, self.memos.setdefault(job.task, {}), job.arg)
                request = next(job.gen)
            else:
                request = job.gen.send(response)
        except StopIteration as stop:
            self._finish(value=stop.value)
            return
        except errors.BmcError as exc:
            self._finish(error=exc)
            return
        except Exception as exc:  # a task's bug costs its own poll only
            LOG.exception("task %s failed on %s", job.task, job.node.name)
            self._finish(error=errors.BmcProtocolError(
                f"task {job.task} failed: {type(exc).__name__}"))
            return
        self.program_request = request
        self._command(request)

    def _command(self, request):
        gap = self.engine.config.min_command_interval
        # a bulk action's step leaves at the moment Redis set for it (farm.power.steps)
        start_at = getattr(self.job.arg, "start_at", None) or 0.0
        if (gap > 0 or start_at) and self.state == ACTIVE:
            # [bmc] min_command_interval: BMCs crash when hammered. Login
            # packets are not spaced (a handshake), commands in a session are.
            now = self.engine.now()
            when = max(self.last_command + gap, start_at)
            if now < when:
                self.expect = self.packet = None
                self.token += 1
                self.engine.at(when, self, "pace", self.token)
                return
            self.last_command = now
        self.rq_seq = (self.rq_seq + 1) % 64
        self.expect = (request.netfn + 1, request.command, self.rq_seq)
        self._send_ipmi(request)

    def _send_ipmi(self, request, attempts=1):
        # A power action carries the acting lease it was decided under: no
        # packet of its acting command (a retransmission included) leaves once
        # that ran out. Reads after it (the state read back) are not gated:
        # refusing them after the command was answered put a done step back
        # as "not sent", and it was sent again.
        not_after = getattr(self.job.arg, "not_after", None)
        if request.acts and not_after is not None and self.engine.now() >= not_after:
            self.expect = self.packet = None
            if self.job.sent:
                # it went out before (a retransmission, or on a session lost
                # since): the BMC may have acted. Not "not sent", which would
                # put the step back to be sent again: a second command.
                self._finish(error=errors.BmcTimeout(
                    f"{self.job.task} sent, unanswered when the acting lease ran out; "
                    f"the BMC may have acted"))
            else:
                self._finish(error=errors.Fenced(
                    f"{self.job.task} not sent: the acting lease ran out"))
            return
        self.seq_out = (self.seq_out + 1) & 0xFFFFFFFF or 1
        message = rmcp.ipmi_request(request.netfn, request.command, self.rq_seq, request.data)
        self.request = request
        self.job.sent = self.job.sent or request.acts
        self._send(rmcp.wrap(rmcp.IPMI, message, self.bmc_sid, self.seq_out, self.keys), attempts)

    def _send(self, packet, attempts=1):
        self.packet = packet
        self.attempts = attempts
        self.token += 1
        self.engine.send(self, packet)
        self.engine.at(self.engine.now() + self.engine.config.retry_interval, self, "retry",
                       self.token)

    # -- login (Open Session, RAKP 1-4, Set Session Privilege Level) ------------------
    def _login(self, now):
        if self.job.logins >= 2:
            self._finish(error=errors.BmcUnreachable("the BMC keeps dropping new sessions"))
            return
        self.job.logins += 1
        self.keys = None
        self.refusals = []
        self.suites = known_first(self.suite_known, self.job.node.cipher_suites
                                   or self.engine.config.cipher_suites)
        self.privileges = self._privilege_order(self.job.node)
        self._open(self.suites[0], self.privileges[0])

    def _privilege_order(self, node):
        """A node's own level is exact; the fleet default falls back to the
        highest level the BMC grants, as pyghmi does."""
        if node.privilege:
            return (rmcp.PRIVILEGES[node.privilege],)
        top = self.engine.config.privilege
        return known_first(self.privilege_known, tuple(range(top, 1, -1)) or (top,))

    def _open(self, suite_number, privilege):
        self.state = OPENING
        self.suite = rmcp.SUITES[suite_number]
        self.privilege = privilege
        self.console_sid = struct.unpack("<I", os.urandom(4))[0] | 1
        self.tag = (self.tag + 1) & 0x3F
        self._send(rmcp.wrap(rmcp.OPEN_REQUEST, rmcp.open_session_request(
            self.tag, self.console_sid, self.suite, privilege)))

    def _refused(self, exc):
        """A login step refused: try the next suite or privilege level the
        refusal points at, or end the job naming every refusal."""
        self.refusals.append(f"suite {self.suite.number} at {level_name(self.privilege)}: {exc}")
        suites = self.suites[self.suites.index(self.suite.number) + 1:]
        levels = self.privileges[self.privileges.index(self.privilege) + 1:]
        privilege_refusal = (exc.status in rmcp.PRIVILEGE_REFUSALS if exc.step == "Open Session"
                             else exc.status in rmcp.RAKP2_PRIVILEGE_REFUSALS)
        if exc.step == "Open Session" and exc.status in rmcp.SUITE_REFUSALS and suites:
            self._open(suites[0], self.privilege)
        elif exc.step in ("Open Session", "RAKP 2") and privilege_refusal and levels:
            self._open(self.suite.number, levels[0])
        else:
            self.state = IDLE
            self._finish(error=errors.BmcAuthError(
                "login refused: " + "; ".join(self.refusals) + hint(self.refusals)))

    def received(self, packet, now):
        """A datagram from this BMC's endpoint."""
        if self.job is None or self.packet is None:
            return  # a late duplicate: nothing is waiting for it
        try:
            self._dispatch(packet, now)
        except rmcp.Refused as exc:
            self._refused(exc)
        except errors.BmcAuthError as exc:
            self.state = IDLE
            self._finish(error=exc)
        except errors.BmcProtocolError as exc:
            # Garbage or a stray duplicate must not end a poll a genuine
            # answer may still complete: remember it, report it on deadline.
            self.job.error = exc
            self.engine.stats["bad_packets"] += 1

    def _dispatch(self, packet, now):
        if self.state == ACTIVE:
            ptype, sid, _, payload = rmcp.unwrap(packet, self.keys)
            if ptype != rmcp.IPMI or sid != self.console_sid:
                raise rmcp.bad("packet for another session")
            netfn, command, rq_seq, code, data = self._response(payload)
            if (netfn, command, rq_seq) != self.expect:
                raise rmcp.bad("response to another request")
            self.last_activity = now
            self.expect = self.packet = None
            self._step(Response(code, data))
            return
        ptype, _, _, payload = rmcp.unwrap(packet, self.keys if self.state == PRIVILEGE else None)
        if self.state == OPENING and ptype == rmcp.OPEN_RESPONSE:
            self._opened(payload)
        elif self.state == RAKP1_SENT and ptype == rmcp.RAKP2:
            self.rakp.check_message2(payload, self.tag)
            self._detected(self.rakp.detected)
            self.sik, keys = self.rakp.keys()
            self._pending_keys = keys
            self.state = RAKP3_SENT
            self._send(rmcp.wrap(rmcp.RAKP3, self.rakp.message3(self.tag)))
        elif self.state == RAKP3_SENT and ptype == rmcp.RAKP4:
            self.rakp.check_message4(payload, self.tag, self.sik)
            self.keys, self.seq_out, self.rq_seq = self._pending_keys, 0, 0
            self.state = PRIVILEGE
            self._command(Request(NETFN_APP, SET_PRIVILEGE, bytes([self.privilege])))
        elif self.state == PRIVILEGE and ptype == rmcp.IPMI:
            netfn, command, rq_seq, code, _ = self._response(payload)
            if (netfn, command, rq_seq) != self.expect:
                raise rmcp.bad("response to another request")
            if code:
                self._privilege_refused(code)
                return
            self.state, self.fresh, self.last_activity = ACTIVE, True, now
            self._logged_in()
            self.engine.stats["logins"] += 1
            self.expect = self.packet = None
            if self.job.gen is None:
                self._step(None)
            else:  # logged in again mid-job: send the unanswered command again
                self._command(self.program_request)
        else:
            raise rmcp.bad("unexpected packet during login")

    def _privilege_refused(self, code):
        """Set Session Privilege Level refused (0x80: not available to this
        user, 0x81: over the user's limit): ask for the next lower level in
        the same session, or end the job."""
        self.refusals.append(f"Set Session Privilege Level {level_name(self.privilege)}: "
                             f"{codes.completion(code)}")
        levels = self.privileges[self.privileges.index(self.privilege) + 1:]
        if code in (0x80, 0x81, 0xD4) and levels:
            self.privilege = levels[0]
            self._command(Request(NETFN_APP, SET_PRIVILEGE, bytes([self.privilege])))
            return
        self._abandon()
        self._finish(error=errors.BmcAuthError(
            "login refused: " + "; ".join(self.refusals) + hint(self.refusals)))

    def _logged_in(self):
        self.suite_known, self.privilege_known = self.suite.number, self.privilege
        self.granted = self.privilege
        wanted = self.engine.config.privilege
        if self.privilege < wanted and not self.job.node.privilege and not self.fallback_logged:
            # once per BMC: every login after this one starts at the level granted
            LOG.warning("%s: the BMC does not grant %s (%s); farm uses %s, the highest it "
                        "grants (set privilege: %s on the node to say so)",
                        self.job.node.name, level_name(wanted),
                        "; ".join(r for r in self.refusals if "rivilege" in r or "role" in r),
                        level_name(self.privilege), level_name(self.privilege))
            self.fallback_logged = True

    def _response(self, payload):
        """An IPMI response inside the session (its packet already passed the
        integrity check): a wrong checksum is then only the BMC's bug, which
        the nochecksumcheck workaround (configured or detected) lets pass."""
        skip = "nochecksumcheck" in self.workarounds or "nochecksumcheck" in self.detected
        try:
            return rmcp.ipmi_response(payload, checksums=not skip)
        except rmcp.BadChecksum:
            if not self.engine.config.detect_workarounds:
                raise rmcp.BadChecksum("IPMI response with a bad checksum (the "
                                       "nochecksumcheck workaround fits)") from None
            self._detected({"nochecksumcheck"})
            return rmcp.ipmi_response(payload, checksums=False)

    def _detected(self, names):
        """Workarounds this BMC turned out to need: applied from now on, and
        said once per BMC with the setting that skips the detection."""
        new = set(names) - self.detected
        if not new:
            return
        self.detected |= new
        LOG.warning("%s: the BMC needs FreeIPMI's %s workaround%s; farm applies %s (set "
                    "workarounds: [%s] on the node to say so)", self.job.node.name,
                    ", ".join(sorted(new)), "s" if len(new) > 1 else "",
                    "them" if len(new) > 1 else "it", ", ".join(sorted(self.detected)))

    def _opened(self, payload):
        self.bmc_sid = rmcp.open_session_response(payload, self.tag, self.console_sid,
                                                  self.suite)
        user, password, kg = self.creds
        if len(password) > 20:
            raise errors.BmcAuthError("the password is longer than IPMI 2.0's 20 bytes")
        self.rakp = rmcp.Rakp(self.suite, self.console_sid, self.bmc_sid, user, password,
                              0x10 | self.privilege, kg, frozenset(self.workarounds | self.detected),
                              self.engine.config.detect_workarounds)
        self.state = RAKP1_SENT
        self._send(rmcp.wrap(rmcp.RAKP1, self.rakp.message1(self.tag)))

    # -- timers ---------------------------------------------------------------------------
    def paced(self, token):
        """The spacing before the program's next command has passed."""
        if token == self.token and self.job is not None and self.state == ACTIVE:
            self._command(self.program_request)

    def retry(self, token, now):
        """No answer within retry_interval: send again, or presume the session lost."""
        if token != self.token or self.job is None or self.packet is None:
            return
        if self.state == ACTIVE and not self.fresh and self.attempts >= 2:
            # A kept session the BMC no longer answers: most likely it dropped
            # it (restart, inactivity timeout). Log in again within the deadline.
            self.engine.stats["sessions_lost"] += 1
            self.state = IDLE
            self.expect = self.packet = None
            self._login(now)
            return
        if self.state == ACTIVE:
            self._send_ipmi(self.request, self.attempts + 1)  # a new sequence number
        else:
            self._send(self.packet, self.attempts + 1)

    def _abandon(self):
        """Stop using the session; tell the BMC (one unanswered packet, best
        effort) so it frees the slot: BMCs hold only a few sessions each, and
        some mistake a new login from the same port for the old session."""
        packet = self.close_packet()
        if packet is not None:
            self.engine.send(self, packet)
        self.state = IDLE

    def deadline(self, job, now, stopping=False):
        """End `job` unanswered: its deadline passed, or (`stopping`) the
        worker stops before it."""
        if job is not self.job:
            return
        if self.state != ACTIVE:
            self.state = IDLE
        elif self.packet is not None:
            self._abandon()  # an active session that stopped answering
        timeout = self.engine.timeouts.get(job.task, self.engine.config.timeout)
        if stopping:
            error = errors.Stopping()
        elif job.error is not None:
            error = errors.BmcProtocolError(f"no valid answer within {timeout:g} s "
                                            f"({job.error})")
        else:
            error = errors.BmcTimeout(f"no answer within {timeout:g} s")
        self._finish(error=error)

    def close_packet(self):
        """A Close Session for an active session."""
        if self.state != ACTIVE or self.keys is None:
            return None
        self.rq_seq = (self.rq_seq + 1) % 64
        self.seq_out = (self.seq_out + 1) & 0xFFFFFFFF or 1
        message = rmcp.ipmi_request(NETFN_APP, CLOSE_SESSION, self.rq_seq,
                                    struct.pack("<I", self.bmc_sid))
        self.state = IDLE
        return rmcp.wrap(rmcp.IPMI, message, self.bmc_sid, self.seq_out, self.keys)

