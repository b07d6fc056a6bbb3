"""IPMI 2.0 / RMCP+ packets and keys (pure: no sockets, no clocks).

Written from the IPMI v2.0 specification (sections 13.6-13.32): the session
header, RAKP key exchange, HMAC-SHA1-96 / HMAC-SHA256-128 integrity and
AES-CBC-128 confidentiality, i.e. cipher suites 3 and 17, the two every
current BMC offers. Everything a BMC sends is checked before it is trusted;
a check that fails raises a typed BmcError, never a struct or index error.
"""

import dataclasses
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from farm import errors

RMCP_HEADER = b"\x06\x00\xff\x07"
AUTH_RMCPPLUS = 0x06
IPMI, OPEN_REQUEST, OPEN_RESPONSE, RAKP1, RAKP2, RAKP3, RAKP4 = (
    0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15)
BMC_ADDRESS, CONSOLE_ADDRESS = 0x20, 0x81
PRIVILEGES = {"callback": 1, "user": 2, "operator": 3, "administrator": 4}
# FreeIPMI's names for BMC misbehaviours (its -W flags): what farm does for
# each is in docs/compatibility.md; a node lists the ones its BMC needs.
WORKAROUNDS = ("authcap", "intel20", "supermicro20", "sun20", "opensesspriv",
               "integritycheckvalue", "nochecksumcheck")

# RMCP+ status codes of Open Session and RAKP (IPMI v2.0 table 13-15; OpenIPMI's
# ipmi_err.h has the same).
STATUS = {
    0x01: "insufficient resources to create a session", 0x02: "invalid session ID",
    0x03: "invalid payload type", 0x04: "invalid authentication algorithm",
    0x05: "invalid integrity algorithm", 0x06: "no matching authentication payload",
    0x07: "no matching integrity payload", 0x08: "inactive session ID", 0x09: "invalid role",
    0x0A: "unauthorized role or privilege level requested",
    0x0B: "insufficient resources to create a session at the requested role",
    0x0C: "invalid name length", 0x0D: "unauthorized name", 0x0E: "unauthorized GUID",
    0x0F: "invalid integrity check value", 0x10: "invalid confidentiality algorithm",
    0x11: "no cipher suite match with proposed security algorithms",
    0x12: "illegal or unrecognized parameter",
}
# Statuses that can mean "not this cipher suite": BMCs answer a suite they
# lack with any of these (ipmi_sim 0x04 for suite 17, some Intel boards 0x01).
SUITE_REFUSALS = frozenset({0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12})
# Statuses that mean "not at this privilege level" (0x0D at RAKP 2 too: BMCs
# that look the user up by name and role answer it for a role the user lacks).
PRIVILEGE_REFUSALS = frozenset({0x09, 0x0A, 0x0B})
RAKP2_PRIVILEGE_REFUSALS = frozenset({0x09, 0x0D})
NO_CIPHER_SUITE_MATCH = 0x11
KEY_CONSTANT_LEN = 20


@dataclasses.dataclass(frozen=True)
class Suite:
    number: int
    digest: object          # hashlib constructor of the RAKP/integrity hash
    name: str               # its name, for hmac.digest's one-shot C path
    auth_alg: int           # RAKP-HMAC-SHA1 = 1, RAKP-HMAC-SHA256 = 3
    integrity_alg: int      # HMAC-SHA1-96 = 1, HMAC-SHA256-128 = 4
    icv_len: int            # truncated length of RAKP4's ICV and packet auth codes


SUITES = {3: Suite(3, hashlib.sha1, "sha1", 1, 1, 12),
          17: Suite(17, hashlib.sha256, "sha256", 3, 4, 16)}


class Keys:
    """A session's integrity key and AES key, with the block cipher built once:
    a payload is one or two blocks, and building a CBC context per packet cost
    more than the encryption (CBC is chained here over the ECB primitive)."""

    __slots__ = ("suite", "k1", "aes_key", "_enc", "_dec")

    def __init__(self, suite, k1, aes_key):
        self.suite, self.k1, self.aes_key = suite, k1, aes_key
        cipher = Cipher(algorithms.AES(aes_key), modes.ECB())  # noqa: S305 (chained below)
        self._enc, self._dec = cipher.encryptor(), cipher.decryptor()


def session_keys(suite, sik):
    """K1 (integrity) and K2 (AES, its first 16 bytes) from the session
    integrity key (spec 13.32). The constants are 20 bytes for every suite,
    SHA-256 ones included: ipmitool, FreeIPMI, pyghmi and BMCs all use 20
    (a 32-byte constant for suite 17 fails against all of them)."""
    return Keys(suite, _hmac(sik, b"\x01" * KEY_CONSTANT_LEN, suite),
                _hmac(sik, b"\x02" * KEY_CONSTANT_LEN, suite)[:16])


def _hmac(key, data, suite):
    return hmac.digest(key, data, suite.name)


def bad(message):
    return errors.BmcProtocolError(message)


# -- session wrapper ------------------------------------------------------------

def wrap(payload_type, payload, session_id=0, seq=0, keys=None):
    """One RMCP+ packet; with keys, encrypted and authenticated."""
    ptype = payload_type
    if keys is not None:
        ptype |= 0xC0
        payload = _encrypt(payload, keys)
    body = struct.pack("<BBIIH", AUTH_RMCPPLUS, ptype, session_id, seq, len(payload)) + payload
    if keys is None:
        return RMCP_HEADER + body
    pad = (4 - (len(body) + 2) % 4) % 4
    body += b"\xff" * pad + bytes([pad, 0x07])
    return RMCP_HEADER + body + _hmac(keys.k1, body, keys.suite)[:keys.suite.icv_len]


def unwrap(packet, keys=None):
    """(payload_type, session_id, seq, payload) of an RMCP+ packet.

    Raises BmcProtocolError for anything malformed, unauthenticated when keys
    are set, or badly padded.
    """
    if len(packet) < 16 or packet[:4] != RMCP_HEADER or packet[4] != AUTH_RMCPPLUS:
        raise bad("not an RMCP+ packet")
    ptype, session_id, seq, length = struct.unpack_from("<BIIH", packet, 5)
    payload = packet[16:16 + length]
    if len(payload) != length:
        raise bad("truncated RMCP+ packet")
    secured = ptype & 0xC0
    if keys is None:
        if secured:
            raise bad("secured packet outside a session")
        return ptype & 0x3F, session_id, seq, payload
    if secured != 0xC0:
        raise bad("unauthenticated packet inside a session")
    icv_len = keys.suite.icv_len
    signed, code = packet[4:-icv_len], packet[-icv_len:]
    if len(signed) < 12 + length + 2 or not hmac.compare_digest(
            _hmac(keys.k1, signed, keys.suite)[:icv_len], code):
        raise bad("packet failed its integrity check")
    return ptype & 0x3F, session_id, seq, _decrypt(payload, keys)


def _xor(a, b):
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def _encrypt(data, keys):
    """AES-CBC-128 with a random IV (spec 13.29)."""
    pad = (15 - len(data) % 16) % 16  # data + pad bytes + pad length fill blocks
    plain = data + bytes(range(1, pad + 1)) + bytes([pad])
    out = [os.urandom(16)]
    for i in range(0, len(plain), 16):
        out.append(keys._enc.update(_xor(plain[i:i + 16], out[-1])))
    return b"".join(out)


def _decrypt(payload, keys):
    if len(payload) < 32 or len(payload) % 16:
        raise bad("encrypted payload of a wrong length")
    blocks = [payload[i:i + 16] for i in range(0, len(payload), 16)]
    plain = b"".join(_xor(keys._dec.update(blocks[i]), blocks[i - 1])
                     for i in range(1, len(blocks)))
    pad = plain[-1]
    if pad > 15 or plain[-1 - pad:-1] != bytes(range(1, pad + 1)):
        raise bad("encrypted payload badly padded")
    return plain[:-1 - pad]


# -- IPMI messages ----------------------------------------------------------------

def _checksum(data):
    return -sum(data) & 0xFF


def ipmi_request(netfn, command, rq_seq, data=b""):
    head = bytes([BMC_ADDRESS, netfn << 2])
    body = bytes([CONSOLE_ADDRESS, (rq_seq & 0x3F) << 2, command]) + bytes(data)
    return head + bytes([_checksum(head)]) + body + bytes([_checksum(body)])


class BadChecksum(errors.BmcProtocolError):
    """An IPMI response whose checksum is wrong (nochecksumcheck BMCs)."""


def ipmi_response(payload, checksums=True):
    """(netfn, command, rq_seq, completion_code, data) of a response message.
    Without `checksums` (the nochecksumcheck workaround, inside a session
    whose packets are authenticated anyway) their bytes are not checked."""
    if len(payload) < 8:
        raise bad("IPMI response too short")
    if checksums and (_checksum(payload[:2]) != payload[2]
                      or _checksum(payload[3:-1]) != payload[-1]):
        raise BadChecksum("IPMI response with a bad checksum")
    return payload[1] >> 2, payload[5], payload[4] >> 2, payload[6], bytes(payload[7:-1])


# -- session establishment (RAKP) ------------------------------------------------

def open_session_request(tag, console_sid, suite, privilege):
    return (bytes([tag, privilege, 0, 0]) + struct.pack("<I", console_sid)
            + bytes([0, 0, 0, 8, suite.auth_alg, 0, 0, 0])
            + bytes([1, 0, 0, 8, suite.integrity_alg, 0, 0, 0])
            + bytes([2, 0, 0, 8, 1, 0, 0, 0]))


class Refused(errors.BmcAuthError):
    """The BMC answered a login step with an RMCP+ status: `status` says why."""

    def __init__(self, step, status):
        self.step, self.status = step, status
        super().__init__(f"{step}: {describe(status)}")


def describe(status):
    return f"{STATUS.get(status, 'unknown status')} (0x{status:02x})"


def _refusal(payload, tag, step):
    """Raise Refused if `payload` is our request's refusal, whatever its
    length: BMCs send the tag and status alone (ipmi_sim's is two bytes)."""
    if len(payload) >= 2 and payload[0] == tag and payload[1]:
        raise Refused(step, payload[1])


def open_session_response(payload, tag, console_sid, suite):
    """The BMC's session id; raises on a refusal, a mismatch or another suite."""
    _refusal(payload, tag, "Open Session")
    if len(payload) < 8 or payload[0] != tag:
        raise bad("Open Session response for another request")
    if len(payload) < 36 or struct.unpack_from("<I", payload, 4)[0] != console_sid:
        raise bad("Open Session response malformed or for another session")
    algs = (payload[16], payload[24], payload[32])
    if algs != (suite.auth_alg, suite.integrity_alg, 1):
        # The BMC must accept what we proposed or refuse; a silent switch to
        # another suite would leave both sides with different keys.
        raise bad(f"Open Session answered algorithms {algs}, not cipher suite {suite.number}'s")
    return struct.unpack_from("<I", payload, 8)[0]


@dataclasses.dataclass
class Rakp:
    """Both sides' values of one key exchange, in the spec's names.

    `workarounds` (FreeIPMI's names) bend it for BMCs that misbehave:
    intel20 pads the user name to 16 bytes in RAKP 1, RAKP 2's code and the
    session key, and computes RAKP 3's code with the name-only lookup bit
    cleared; supermicro20 and sun20 accept a RAKP 2 one byte too long (its
    code is still verified). With `detect`, RAKP 2 itself tells farm when a
    BMC needs intel20, supermicro20 or sun20: the code verifies only that way
    (no extra round trip, no weaker check); `detected` then names them.
    """

    suite: Suite
    console_sid: int
    bmc_sid: int
    username: bytes
    password: bytes
    role: int
    kg: bytes = b""   # the BMC key K_g; without one the password keys the session (13.31)
    workarounds: frozenset = frozenset()
    detect: bool = False
    rc: bytes = dataclasses.field(default_factory=lambda: os.urandom(16))
    rm: bytes = b""
    guid: bytes = b""
    detected: set = dataclasses.field(default_factory=set)

    def _on(self, name):
        return name in self.workarounds or name in self.detected

    def _name(self, padded):
        return self.username.ljust(16, b"\0") if padded else self.username

    def message1(self, tag):
        name = self._name("intel20" in self.workarounds)
        return (bytes([tag, 0, 0, 0]) + struct.pack("<I", self.bmc_sid) + self.rc
                + bytes([self.role, 0, 0, len(name)]) + name)

    def _who(self, padded=False, lookup=True):
        name = self._name(padded)
        return bytes([self.role if lookup else self.role & ~0x10, len(name)]) + name

    def check_message2(self, payload, tag):
        _refusal(payload, tag, "RAKP 2")
        if len(payload) < 8 or payload[0] != tag:
            raise bad("RAKP 2 for another request")
        if struct.unpack_from("<I", payload, 4)[0] != self.console_sid:
            raise bad("RAKP 2 for another session")
        code_len = self.suite.digest().digest_size
        long_code = {"supermicro20", "sun20"} & self.workarounds or self.detect
        if len(payload) == 41 + code_len and long_code:
            long_code = True
            payload = payload[:-1]  # one byte too many after the code
        elif len(payload) != 40 + code_len:
            raise bad(f"RAKP 2 of {len(payload)} bytes, not {40 + code_len}"
                      + (" (one too many: the supermicro20 or sun20 workaround fits)"
                         if len(payload) == 41 + code_len else ""))
        else:
            long_code = False
        self.rm, self.guid = bytes(payload[8:24]), bytes(payload[24:40])
        head = (struct.pack("<II", self.console_sid, self.bmc_sid) + self.rc + self.rm
                + self.guid)
        intel = "intel20" in self.workarounds
        for padded in ((True,) if intel else (False, True) if self.detect else (False,)):
            if hmac.compare_digest(_hmac(self.password, head + self._who(padded), self.suite),
                                   bytes(payload[40:])):
                break
        else:
            raise errors.BmcAuthError("RAKP 2: the BMC's proof does not match (wrong password?)")
        if padded and not intel:
            self.detected.add("intel20")
        if long_code and not {"supermicro20", "sun20"} & self.workarounds:
            self.detected.add("supermicro20")

    def message3(self, tag):
        # intel20: the original name, and the name-only lookup bit cleared
        who = self._who(lookup=not self._on("intel20"))
        code = _hmac(self.password, self.rm + struct.pack("<I", self.console_sid) + who,
                     self.suite)
        return bytes([tag, 0, 0, 0]) + struct.pack("<I", self.bmc_sid) + code

    def keys(self):
        sik = _hmac(self.kg or self.password,
                    self.rc + self.rm + self._who(padded=self._on("intel20")), self.suite)
        return sik, session_keys(self.suite, sik)

    def check_message4(self, payload, tag, sik):
        _refusal(payload, tag, "RAKP 4")
        if len(payload) < 8 or payload[0] != tag:
            raise bad("RAKP 4 for another request")
        expected = _hmac(sik, self.rc + struct.pack("<I", self.bmc_sid) + self.guid,
                         self.suite)[:self.suite.icv_len]
        if struct.unpack_from("<I", payload, 4)[0] != self.console_sid:
            raise bad("RAKP 4 for another session")
        if not hmac.compare_digest(expected, bytes(payload[8:])):
            # the password checked out at RAKP 2: the session key differs
            raise errors.BmcAuthError("RAKP 4: the BMC's integrity check does not match "
                                      "(the node's K_g key missing or wrong?)")


# -- before a session: IPMI 1.5 session-less messages ---------------------------

def ipmi15_wrap(message):
    """A session-less IPMI 1.5 packet (authentication type none), as BMCs
    take Get Channel Authentication Capabilities and Cipher Suites."""
    return RMCP_HEADER + b"\x00" + bytes(8) + bytes([len(message)]) + message


def ipmi15_unwrap(packet):
    """The IPMI message of a session-less IPMI 1.5 packet."""
    if len(packet) < 14 or packet[:4] != RMCP_HEADER or packet[4] != 0x00:
        raise bad("not a session-less IPMI 1.5 packet")
    message = packet[14:14 + packet[13]]
    if len(message) != packet[13]:
        raise bad("truncated IPMI 1.5 packet")
    return message


def cipher_suite_ids(records):
    """The cipher suite ids in Get Channel Cipher Suites' record data (spec
    22.15: a standard record is 0xC0, the id, then the algorithms; an OEM
    one 0xC1, the id and a 3-byte IANA number before its algorithms)."""
    ids, at = [], 0
    while at + 1 < len(records):
        if records[at] == 0xC0:
            ids.append(records[at + 1])
            at += 2
        elif records[at] == 0xC1:
            ids.append(records[at + 1])
            at += 5
        else:
            at += 1  # an algorithm byte
    return ids
