"""Sensors: read a node's SDR repository once (again only when its change
stamps move), then each pass one Get Sensor Reading per sensor and the DCMI
power reading; who the BMC is (Get Device ID, system firmware version) is
read with the repository.

The SDR cache lives in the program's memo, i.e. with the BMC's session in
the poll engine, so a pass costs 2 + (number of sensors) round trips (1 +
sensors on a BMC that refused DCMI once).
"""

import struct

from farm import errors
from farm.bmc import codes, sdr
from farm.bmc.session import Request
from farm.model import SensorResult

NETFN_APP, NETFN_SENSOR, NETFN_STORAGE, NETFN_DCMI = 0x06, 0x04, 0x0A, 0x2C
GET_DEVICE_ID, GET_SYSTEM_INFO = 0x01, 0x59
GET_POWER_READING, DCMI_GROUP = 0x02, 0xDC
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


def read_device():
    """Who the BMC is (a sub-program): Get Device ID's firmware revision and
    manufacturer, and the system firmware version (None where refused), as
    FreeIPMI's bmc-info prints them."""
    got = yield Request(NETFN_APP, GET_DEVICE_ID)
    if got.code or len(got.data) < 11:
        return None  # the sensors are still worth reading
    data = got.data
    manufacturer = int.from_bytes(data[6:9], "little") & 0x0FFFFF
    device = {"firmware": f"{data[2] & 0x7F}.{data[3]:02X}", "manufacturer": manufacturer,
              "product": struct.unpack_from("<H", data, 9)[0], "system_firmware": None}
    text = b""
    for block in range(16):  # parameter 1: set 0 holds encoding, length, 14 bytes; then 16 a set
        got = yield Request(NETFN_APP, GET_SYSTEM_INFO, bytes([0, 1, block, 0]))
        if got.code or len(got.data) < 2:
            break
        part = got.data[2:]
        if block == 0:
            if len(part) < 2:
                break
            length, text = part[1], part[2:]
        else:
            text += part
        if len(text) >= length:
            device["system_firmware"] = bytes(text[:length]).decode("utf-8", "replace").strip("\0")
            break
    return device


def read_power_watts(memo):
    """The DCMI power reading (a sub-program): watts, "inactive" (the BMC
    measures no power now), or "unsupported" (it refused DCMI: not asked again
    on this session)."""
    if memo.get("dcmi") is False:
        return "unsupported"
    got = yield Request(NETFN_DCMI, GET_POWER_READING, bytes([DCMI_GROUP, 0x01, 0, 0]))
    if got.code or len(got.data) < 18 or got.data[0] != DCMI_GROUP:
        memo["dcmi"] = False
        return "unsupported"
    memo["dcmi"] = True
    return float(struct.unpack_from("<H", got.data, 1)[0]) if got.data[17] & 0x40 else "inactive"


def read_sensors(node, memo, arg):
    """A job program: (readings as a tuple of dicts, whether the SDR was
    read, {"watts": ..., "device": ...})."""
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
    if fresh or "device" not in memo:
        memo["device"] = yield from read_device()
    readings = []
    for s in memo["sensors"]:
        got = yield Request(NETFN_SENSOR, GET_SENSOR_READING, bytes([s.number]))
        value, status, state, level = sdr.reading(s, got.code, got.data)
        readings.append({"key": s.key, "name": s.name, "number": s.number, "id": s.record_id,
                         "type": codes.sensor_type_name(s.type), "code": s.type,
                         "et": s.event_type, "value": value, "unit": s.unit, "status": status,
                         "level": level, "state": list(state)})
    watts = yield from read_power_watts(memo)
    # the device with every pass, not only the one that read it: that pass may
    # fail later on, or be coalesced away with a newer one before it is written
    return tuple(readings), fresh, {"watts": watts, "device": memo["device"]}


def redfish_sensors(bmc, arg):
    """Readings of a Redfish node: its chassis's Sensors (one GET with
    $expand), or its deprecated Thermal and Power (farm.bmc.redfish_sensors
    chooses), and the chassis's power draw as the DCMI reading."""
    readings, watts = bmc.sensors()
    return readings, False, {"watts": watts, "device": None}


class SensorsPoll:
    name = "sensors"
    drivers = ("ipmi", "redfish")
    redfish = {"sensors": redfish_sensors}
    programs = {"sensors": read_sensors}

    def __init__(self, settings):
        self.interval = settings.sensors.interval

    @staticmethod
    def to_result(outcome):
        readings, fresh, extra = outcome.value if outcome.ok else ((), False, {})
        return SensorResult(node=outcome.node, polled_at=outcome.finished_at,
                            latency=outcome.latency, readings=readings, sdr_read=fresh,
                            watts=extra.get("watts"), device=extra.get("device"),
                            error_kind=outcome.error_kind, error=outcome.error)
