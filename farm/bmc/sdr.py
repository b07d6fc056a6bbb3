"""Sensor Data Records and sensor readings (IPMI v2.0 sections 35 and 43):
parse the records a BMC's SDR repository holds and turn a Get Sensor Reading
answer into a value, a unit and a threshold status. Pure: bytes in, values
out; anything malformed raises BmcProtocolError.
"""

import dataclasses
import math
import struct

from farm import errors
from farm.bmc import codes, interpret

FULL, COMPACT = 0x01, 0x02
THRESHOLD = 0x01  # event/reading type code of threshold sensors
_LINEAR = {0: lambda x: x, 1: math.log, 2: math.log10, 3: math.log2, 4: math.exp,
           5: lambda x: 10 ** x, 6: lambda x: 2 ** x, 7: lambda x: 1 / x, 8: lambda x: x * x,
           9: lambda x: x ** 3, 10: math.sqrt, 11: lambda x: x ** (1 / 3)}


@dataclasses.dataclass(frozen=True)
class Sensor:
    """What farm keeps of one SDR (picklable; cached per BMC)."""
    number: int
    name: str
    type: int
    event_type: int
    unit: str
    analog: int = 3        # 0 unsigned, 1 one's, 2 two's complement, 3 no numeric reading
    linearization: int = 0
    m: int = 1
    b: int = 0
    b_exp: int = 0
    r_exp: int = 0
    key: str = ""          # unique within the BMC: the name, or "name #NN" if shared
    record_id: int = 0     # the SDR's record id: ipmi_exporter's and FreeIPMI's sensor id

    @property
    def threshold(self):
        return self.event_type == THRESHOLD and self.analog != 3


def _signed(value, bits):
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _name(record, at):
    if len(record) <= at:
        return ""
    length = record[at] & 0x1F
    return bytes(record[at + 1:at + 1 + length]).decode("latin-1").strip("\x00 ")


def parse_record(record):
    """A Sensor from one SDR (header included), or None for record types
    farm does not read (FRU locators, OEM records, ...), or for sensors
    owned by another controller (they need bridging)."""
    if len(record) < 5:
        raise errors.BmcProtocolError("SDR shorter than its header")
    rtype = record[3]
    if rtype not in (FULL, COMPACT):
        return None
    minimum = 48 if rtype == FULL else 32
    if len(record) < minimum:
        raise errors.BmcProtocolError(f"SDR type {rtype:02x}h of {len(record)} bytes (< {minimum})")
    if record[5] != 0x20 or record[6] & 0x03:
        return None
    number, stype, etype, units1 = record[7], record[12], record[13], record[20]
    unit = codes.unit_name(record[21], percentage=bool(units1 & 0x01))
    record_id = struct.unpack_from("<H", record)[0]
    if rtype == COMPACT:
        return Sensor(number, _name(record, 31), stype, etype, unit, record_id=record_id)
    m = _signed(((record[25] & 0xC0) << 2) | record[24], 10)
    b = _signed(((record[27] & 0xC0) << 2) | record[26], 10)
    return Sensor(number, _name(record, 47), stype, etype, unit, analog=units1 >> 6,
                  linearization=record[23] & 0x7F, m=m, b=b, b_exp=_signed(record[29] & 0x0F, 4),
                  r_exp=_signed(record[29] >> 4, 4), record_id=record_id)


def with_keys(sensors):
    """Give each sensor a key unique within its BMC (names repeat on real BMCs)."""
    counts = {}
    for s in sensors:
        counts[s.name] = counts.get(s.name, 0) + 1
    return [dataclasses.replace(s, key=s.name if counts[s.name] == 1 else f"{s.name} #{s.number:02x}")
            for s in sensors]


def convert(sensor, raw):
    """A threshold sensor's raw byte as a value in its unit."""
    if sensor.analog == 1:
        raw = _signed(raw, 8) + (1 if raw & 0x80 else 0)  # one's complement
    elif sensor.analog == 2:
        raw = _signed(raw, 8)
    value = (sensor.m * raw + sensor.b * 10 ** sensor.b_exp) * 10 ** sensor.r_exp
    try:
        value = _LINEAR.get(sensor.linearization, _LINEAR[0])(value)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return round(value, 6)


def threshold_status(bits):
    """ipmitool's words for the comparison bits of a reading: nr, cr, nc or ok."""
    if bits & 0x24:
        return "nr"
    if bits & 0x12:
        return "cr"
    if bits & 0x09:
        return "nc"
    return "ok"


def reading(sensor, code, data):
    """(value or None, status, state, level) from a Get Sensor Reading
    answer. status: ok, nc, cr, nr, or ns (no reading), in ipmitool's words;
    state: the asserted offsets' descriptions of a discrete sensor; level:
    FreeIPMI's nominal, warning, critical or None (see farm.bmc.interpret)."""
    # refused, short, "reading unavailable" (bit 5), or scanning disabled
    # (bit 6 clear): no reading, as ipmitool ("disabled", ns) and FreeIPMI (N/A) say
    if code or len(data) < 2 or data[1] & 0x20 or not data[1] & 0x40:
        return None, "ns", (), None
    if sensor.threshold:
        bits = data[2] & 0x3F if len(data) > 2 else 0
        return (convert(sensor, data[0]), threshold_status(bits), (),
                interpret.level(sensor.type, 0x01, bits))
    state = (data[2] if len(data) > 2 else 0) | ((data[3] & 0x7F) << 8 if len(data) > 3 else 0)
    names = tuple(codes.event_description(sensor.type, sensor.event_type, i)
                  for i in range(15) if state >> i & 1)
    return None, "ok", names, interpret.level(sensor.type, sensor.event_type, state)
