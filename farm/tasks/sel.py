"""SEL: read a node's System Event Log incrementally, and clear it when an
operator asks (`farm nodes sel-clear`; farm never clears a log by itself).

The cursor, (last record id, its timestamp, the log's last addition and
last erase stamps), comes from the worker (it is kept in Redis) as the job's
argument, so a pass reads only entries newer than the last one stored:
- nothing added or erased since: one round trip (Get SEL Info);
- erased since (cleared): read from the first entry, and say so;
- the last entry is gone but nothing was erased (a full log wrapped and
  overwrote it): read from the first entry, keeping those not older than it.
At most `limit` entries per pass; a longer backlog continues next pass.
"""

import struct

from farm import errors
from farm.bmc import codes, redfish_data, sel
from farm.bmc.rmcp import PRIVILEGES
from farm.bmc.session import Request
from farm.model import SelResult

NETFN_STORAGE = 0x0A
GET_SEL_INFO, RESERVE_SEL, GET_SEL_ENTRY, CLEAR_SEL = 0x40, 0x42, 0x43, 0x47
NOT_PRESENT = 0xCB
FIRST, LAST = 0x0000, 0xFFFF


def _get(record_id):
    got = yield Request(NETFN_STORAGE, GET_SEL_ENTRY, struct.pack("<HHBB", 0, record_id, 0, 0xFF))
    if got.code == NOT_PRESENT:
        return None
    if got.code:
        raise codes.refused("Get SEL Entry", got.code)
    if len(got.data) < 18:
        raise errors.BmcProtocolError("Get SEL Entry reply too short")
    return struct.unpack_from("<H", got.data)[0], sel.decode(got.data[2:18])


def read_sel(node, memo, arg):
    """A job program: (new entries, new cursor, cleared, {"count": entries
    in the log, "free": bytes free}), the last as `ipmi-sel --info` says."""
    cursor, limit = arg if arg else (None, 100)
    info = yield Request(NETFN_STORAGE, GET_SEL_INFO)
    if info.code:
        raise codes.refused("Get SEL Info", info.code)
    if len(info.data) < 14:
        raise errors.BmcProtocolError("Get SEL Info reply too short")
    count, free, added, erased = struct.unpack_from("<HHII", info.data, 1)
    sizes = {"count": count, "free": free}
    if cursor is not None and cursor[3] == redfish_data.CURSOR:
        # the node was on Redfish: go on from the last entry read there
        cursor = (cursor[0], cursor[1], None, erased)
    if cursor is not None and tuple(cursor[2:]) == (added, erased):
        return (), tuple(cursor), False, sizes
    cleared = cursor is not None and erased != cursor[3]
    start, since = FIRST, None
    if cursor is not None and not cleared and cursor[0] is not None:
        last = yield from _get(cursor[0])
        if last is not None and last[1]["at"] == cursor[1]:
            start = last[0]
        else:  # wrapped: the last entry we stored was overwritten
            since = cursor[1]
    entries, record_id = [], start
    while record_id != LAST and count and len(entries) < limit:
        got = yield from _get(record_id)
        if got is None:
            break
        record_id, entry = got
        if since is None or entry["at"] is None or entry["at"] >= since:
            if not (since is not None and entry["id"] == cursor[0] and entry["at"] == cursor[1]):
                entries.append(entry)
    tail = sel.cursor_tail(entries, cursor, cleared)
    caught_up = record_id == LAST or not count or len(entries) < limit
    # not caught up: leave the addition stamp unset so the next pass goes on
    new_cursor = tail + ((added if caught_up else None), erased)
    return tuple(entries), new_cursor, cleared, sizes


def clear_sel(node, memo, arg):
    """Reserve SEL, then Clear SEL and wait for the erasure (an operator's
    explicit request only)."""
    reserved = yield Request(NETFN_STORAGE, RESERVE_SEL)
    if reserved.code:
        raise codes.refused("Reserve SEL", reserved.code)
    if len(reserved.data) < 2:
        raise errors.BmcProtocolError("Reserve SEL reply too short")
    action = 0xAA
    for _ in range(20):
        got = yield Request(NETFN_STORAGE, CLEAR_SEL, reserved.data[:2] + b"CLR" + bytes([action]),
                            acts=action == 0xAA)  # starting the erasure is gated by the lease
        if got.code:
            raise codes.refused("Clear SEL", got.code)
        if got.data and got.data[0] & 0x0F == 0x01:
            return "cleared"
        action = 0x00  # erasure in progress: ask for its status
    raise errors.BmcProtocolError("the BMC did not finish erasing its SEL")


clear_sel.privilege = PRIVILEGES["operator"]  # the session checks it before the first command


def redfish_sel(bmc, arg):
    """New entries of a Redfish node's SEL LogService since the cursor (the
    whole Entries collection is read: Redfish has no cheaper way to tell)."""
    cursor, limit = arg if arg else (None, 100)
    foreign = cursor is not None and cursor[3] != redfish_data.CURSOR
    if foreign:  # the node was on IPMI: go on from the last entry read there
        cursor = (cursor[0], cursor[1], 0, redfish_data.CURSOR)
    members, capacity = bmc.log_entries()
    # no capacity for a foreign cursor: its entry gone reads as a wrap, never a clear
    sizes = {"count": len(members),
             "free": max(0, capacity - len(members)) * 16 if capacity else None}
    return (*redfish_data.new_entries(members, cursor, limit, None if foreign else capacity),
            sizes)


def redfish_clear(bmc, arg):
    return bmc.clear_log()


class SelPoll:
    name = "sel"
    drivers = ("ipmi", "redfish")
    redfish = {"sel": redfish_sel, "sel-clear": redfish_clear}
    programs = {"sel": read_sel, "sel-clear": clear_sel}

    def __init__(self, settings):
        self.interval = settings.sel.interval
        self.limit = settings.sel.max_entries_per_pass

    @staticmethod
    def to_result(outcome):
        entries, cursor, cleared, sizes = outcome.value if outcome.ok else ((), None, False, None)
        return SelResult(node=outcome.node, polled_at=outcome.finished_at, latency=outcome.latency,
                         entries=entries, cursor=cursor, cleared=cleared, sizes=sizes,
                         error_kind=outcome.error_kind, error=outcome.error)
