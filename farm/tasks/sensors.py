"""Sensors: read a node's SDR repository once (again only when its change
stamps move), then each pass one Get Sensor Reading per sensor.

The SDR cache lives in the program's memo, i.e. with the BMC's session in
the poll engine, so a pass costs 1 + (number of sensors) round trips.
"""

import struct

from farm import errors
from farm.bmc import codes, redfish_data, sdr
from farm.bmc.session import Request
from farm.model import SensorResult

NETFN_SENSOR, NETFN_STORAGE = 0x04, 0x0A
GET_SENSOR_READING = 0x2D
GET_SDR_REPOSITORY_INFO, RESERVE_SDR_REPOSITORY, GET_SDR = 0x20, 0x22, 0x23
MAX_RECORDS = 1024   # a repository that never ends is a broken BMC
CHUNK = 16           # bytes per partial read, for BMCs that cannot send a whole record
_CANNOT_RETURN = (0xCA, 0xC7, 0xC8, 0xFF)  # "cannot return that many bytes" and kin


def _check(response, what):
    if response.code:
        raise codes.refused(what, response.code)
    return response.data


def read_repository():
    """Every sensor in the SDR repository (a sub-program: `yield from`)."""
    reserved = yield Request(NETFN_STORAGE, RESERVE_SDR_REPOSITORY)
    reservation = reserved.data[:2] if not reserved.code and len(reserved.data) >= 2 else b"\0\0"
    sensors, record_id = [], 0x0000
    for _ in range(MAX_RECORDS):
        got = yield Request(NETFN_STORAGE, GET_SDR, reservation + struct.pack("<HBB", record_id, 0, 0xFF))
        if got.code in _CANNOT_RETURN:
            got, record = yield from _read_in_chunks(reservation, record_id)
        else:
            data = _check(got, "Get SDR")
            if len(data) < 2:
                raise errors.BmcProtocolError("Get SDR reply without a next record id")
            record = data[2:]
        sensor = sdr.parse_record(record)
        if sensor is not None:
            sensors.append(sensor)
        record_id = struct.unpack_from("<H", got.data)[0]
        if record_id == 0xFFFF:
            return sdr.with_keys(sensors)
    raise errors.BmcProtocolError(f"the SDR repository did not end within {MAX_RECORDS} records")


def _read_in_chunks(reservation, record_id):
    head = yield Request(NETFN_STORAGE, GET_SDR, reservation + struct.pack("<HBB", record_id, 0, 5))
    data = _check(head, "Get SDR (header)")
    if len(data) < 7:
        raise errors.BmcProtocolError("Get SDR header too short")
    record = bytearray(data[2:7])
    while len(record) < 5 + record[4]:
        size = min(CHUNK, 5 + record[4] - len(record))
        part = yield Request(NETFN_STORAGE, GET_SDR,
                             reservation + struct.pack("<HBB", record_id, len(record), size))
        chunk = _check(part, "Get SDR (part)")[2:]
        if not chunk:
            raise errors.BmcProtocolError("Get SDR returned an empty part")
        record += chunk
    return head, bytes(record)


def read_sensors(node, memo, arg):
    """A job program: the node's readings as a tuple of dicts."""
    info = _check((yield Request(NETFN_STORAGE, GET_SDR_REPOSITORY_INFO)), "Get SDR Repository Info")
    if len(info) < 14:
        raise errors.BmcProtocolError("Get SDR Repository Info reply too short")
    stamp = bytes(info[1:13])  # record count, free space, last addition and erase
    fresh = memo.get("stamp") != stamp
    if fresh:
        # an empty repository has no record 0 to ask for (ipmi_sim answers 0xcb)
        count = struct.unpack_from("<H", info, 1)[0]
        memo["sensors"] = (yield from read_repository()) if count else ()
        memo["stamp"] = stamp
    readings = []
    for s in memo["sensors"]:
        got = yield Request(NETFN_SENSOR, GET_SENSOR_READING, bytes([s.number]))
        value, status, state = sdr.reading(s, got.code, got.data)
        readings.append({"key": s.key, "name": s.name, "number": s.number,
                         "type": codes.sensor_type_name(s.type), "value": value,
                         "unit": s.unit, "status": status, "state": list(state)})
    return tuple(readings), fresh


def redfish_sensors(bmc, arg):
    """Readings of a Redfish node: its chassis's Thermal and Power (two
    GETs a pass once their paths are known)."""
    return redfish_data.readings(bmc.sensor_docs()), False


class SensorsPoll:
    name = "sensors"
    drivers = ("ipmi", "redfish")
    redfish = {"sensors": redfish_sensors}
    programs = {"sensors": read_sensors}

    def __init__(self, settings):
        self.interval = settings.sensors.interval

    @staticmethod
    def to_result(outcome):
        readings, fresh = outcome.value if outcome.ok else ((), False)
        return SensorResult(node=outcome.node, polled_at=outcome.finished_at,
                            latency=outcome.latency, readings=readings, sdr_read=fresh,
                            error_kind=outcome.error_kind, error=outcome.error)
