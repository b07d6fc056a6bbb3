"""The RMCP+ codec against independent references: cryptography's own
AES-CBC, the standard library's HMAC, and hand-checked packet layouts."""

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from farm import errors
from farm.bmc import rmcp

KEY = bytes(range(16))


@pytest.mark.parametrize("suite", [3, 17])
@given(data=st.binary(max_size=80))
def test_encrypted_packets_round_trip_and_match_cbc(suite, data):
    keys = rmcp.Keys(rmcp.SUITES[suite], b"k" * 20, KEY)
    packet = rmcp.wrap(rmcp.IPMI, data, session_id=7, seq=9, keys=keys)
    assert rmcp.unwrap(packet, keys) == (rmcp.IPMI, 7, 9, data)
    # the payload decrypts with a stock CBC context and the spec's padding
    length = struct.unpack_from("<H", packet, 14)[0]
    payload = packet[16:16 + length]
    dec = Cipher(algorithms.AES(KEY), modes.CBC(payload[:16])).decryptor()
    plain = dec.update(payload[16:]) + dec.finalize()
    pad = plain[-1]
    assert plain[:-1 - pad] == data and plain[-1 - pad:-1] == bytes(range(1, pad + 1))
    # the trailer: auth code over auth type .. next header, 4-byte aligned
    icv = keys.suite.icv_len
    assert (len(packet) - 4 - icv) % 4 == 0
    assert packet[-icv:] == hmac.new(b"k" * 20, packet[4:-icv], keys.suite.digest).digest()[:icv]


def test_tampered_packet_is_rejected():
    keys = rmcp.Keys(rmcp.SUITES[3], b"k" * 20, KEY)
    packet = bytearray(rmcp.wrap(rmcp.IPMI, b"hello", 1, 2, keys))
    packet[20] ^= 1
    with pytest.raises(errors.BmcProtocolError, match="integrity"):
        rmcp.unwrap(bytes(packet), keys)


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_a_protocol_error(junk):
    for keys in (None, rmcp.Keys(rmcp.SUITES[17], b"k" * 20, KEY)):
        try:
            rmcp.unwrap(b"\x06\x00\xff\x07\x06" + junk, keys)
        except errors.BmcProtocolError:
            pass
        try:
            rmcp.ipmi_response(junk)
        except errors.BmcProtocolError:
            pass


def test_ipmi_request_layout():
    # Get Chassis Status to the BMC: rsAddr, netFn/LUN, chk, rqAddr, rqSeq, cmd, chk
    assert rmcp.ipmi_request(0x00, 0x01, 5) == bytes([0x20, 0x00, 0xE0, 0x81, 0x14, 0x01, 0x6A])


def test_open_session_response_with_other_algorithms_is_refused():
    suite = rmcp.SUITES[17]
    response = (bytes([1, 0, 4, 0]) + struct.pack("<II", 42, 99)
                + bytes([0, 0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0]))
    with pytest.raises(errors.BmcProtocolError, match="not cipher suite 17"):
        rmcp.open_session_response(response, 1, 42, suite)
    ok = response[:12] + bytes([0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0])
    assert rmcp.open_session_response(ok, 1, 42, suite) == 99


@pytest.mark.parametrize("number,digest", [(3, hashlib.sha1), (17, hashlib.sha256)])
def test_rakp_proofs_follow_the_spec(number, digest):
    """RAKP 2's proof and the session keys, computed here from the spec's
    formulas with hashlib, must be what the codec checks and derives. The
    key constants are 20 bytes for SHA-256 too (as ipmitool and FreeIPMI)."""
    r = rmcp.Rakp(rmcp.SUITES[number], console_sid=0x11223344, bmc_sid=0x55667788,
                  username=b"admin", password=b"pw", role=0x14, rc=b"c" * 16)
    rm, guid = b"m" * 16, b"g" * 16
    who = bytes([0x14, 5]) + b"admin"
    proof = hmac.new(b"pw", struct.pack("<II", 0x11223344, 0x55667788) + r.rc + rm + guid + who,
                     digest).digest()
    r.check_message2(bytes([3, 0, 0, 0]) + struct.pack("<I", 0x11223344) + rm + guid + proof, 3)
    sik = hmac.new(b"pw", r.rc + rm + who, digest).digest()
    got_sik, keys = r.keys()
    assert got_sik == sik
    assert keys.k1 == hmac.new(sik, b"\x01" * 20, digest).digest()
    assert keys.aes_key == hmac.new(sik, b"\x02" * 20, digest).digest()[:16]
    with pytest.raises(errors.BmcAuthError):
        r.check_message2(bytes([3, 0, 0, 0]) + struct.pack("<I", 0x11223344) + rm + guid
                         + bytes(digest().digest_size), 3)


def test_cipher_suite_records_and_session_less_framing():
    from farm.bmc import rmcp
    standard = bytes([0xC0, 3, 0x01, 0x41, 0x81, 0xC0, 17, 0x03, 0x44, 0x81])
    oem = bytes([0xC1, 0x80, 0x57, 0x01, 0x00, 0x01, 0x41])
    assert rmcp.cipher_suite_ids(standard) == [3, 17]
    assert rmcp.cipher_suite_ids(standard + oem) == [3, 17, 0x80]
    assert rmcp.cipher_suite_ids(b"") == []
    message = rmcp.ipmi_request(0x06, 0x54, 1, b"\x0e\x00\x80")
    assert rmcp.ipmi15_unwrap(rmcp.ipmi15_wrap(message)) == message
    with pytest.raises(errors.BmcProtocolError):
        rmcp.ipmi15_unwrap(rmcp.ipmi15_wrap(message)[:-2])


def test_negotiation_order_and_hints():
    from farm.bmc.negotiation import hint, known_first, level_name
    assert known_first(3, (17, 3)) == (3, 17) and known_first(None, (17, 3)) == (17, 3)
    assert known_first(9, (17, 3)) == (17, 3) and level_name(3) == "operator"
    assert "user name" in hint(["suite 3 at administrator: RAKP 2: unauthorized name (0x0d)"])
    assert "privilege" in hint(["suite 3 at administrator: Open Session: x (0x0a)"])
    assert "free session" in hint(["suite 17 at administrator: Open Session: x (0x01)"])
    assert hint(["suite 17 at administrator: Open Session: x (0x04)"]) == ""
