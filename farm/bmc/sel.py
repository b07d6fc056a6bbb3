"""System Event Log entries (IPMI v2.0 section 32): decode one 16-byte
record into what farm stores and shows. Pure."""

import struct

from farm import errors
from farm.bmc import codes

PRE_INIT = 0x20000000  # timestamps below this count from BMC start, not 1970


def decode(record):
    """A dict for one SEL record: id, at (epoch seconds, or None before the
    BMC's clock was set), and for system events the sensor, event and its
    description; OEM records keep their bytes."""
    if len(record) < 16:
        raise errors.BmcProtocolError(f"SEL record of {len(record)} bytes (< 16)")
    rid, rtype = struct.unpack_from("<HB", record)
    entry = {"id": rid, "record_type": rtype, "raw": bytes(record[:16]).hex()}
    if rtype >= 0xE0:  # OEM, no timestamp
        entry.update(at=None, description=f"OEM record {rtype:02x}h")
        return entry
    ts = struct.unpack_from("<I", record, 3)[0]
    entry["at"] = ts if ts >= PRE_INIT else None
    if rtype != 0x02:
        entry["description"] = f"OEM record {rtype:02x}h"
        return entry
    stype, number, dir_type, data1 = record[10], record[11], record[12], record[13]
    event_type, offset = dir_type & 0x7F, data1 & 0x0F
    entry.update(sensor_type=codes.sensor_type_name(stype), sensor=number,
                 event_type=event_type,
                 direction="deasserted" if dir_type & 0x80 else "asserted",
                 description=codes.event_description(stype, event_type, offset))
    return entry


def cursor_tail(entries, cursor, cleared):
    """(id, at) a cursor keeps after a pass: the last entry read, else (none
    new) the cursor's own, else (a new or cleared log) nothing yet."""
    if entries:
        return entries[-1]["id"], entries[-1]["at"]
    if cursor is not None and not cleared:
        return tuple(cursor[:2])
    return None, None
