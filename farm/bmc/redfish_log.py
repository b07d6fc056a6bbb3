"""Which of a system's logs is its SEL, and reading its entries: as
generators that yield the paths they want and are sent the documents
(farm.bmc.redfish_sensors.drive), so the sushy client and the asyncio one
read a log the same way. No I/O here."""

from farm import errors
from farm.bmc.redfish_sensors import link

# the IPMI SEL goes by these names on the BMCs farm has met; else the first
SEL_NAMES = ("SEL", "IPMISEL", "LOG1", "LOG")


def _listed(value):
    return value if isinstance(value, list) else []


def find_sel(system_path):
    """(entries path, ClearLog target or None, MaxNumberOfRecords or None)
    of the system's SEL."""
    services = link((yield system_path), "LogServices")
    if services is None:
        raise errors.BmcProtocolError("the system has no LogServices")
    members = [m.get("@odata.id") for m in _listed((yield services).get("Members"))
               if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)]
    if not members:
        raise errors.BmcProtocolError("the system's LogServices collection is empty")
    sel = next((m for m in members if m.rstrip("/").rsplit("/", 1)[-1].upper() in SEL_NAMES),
               members[0])
    doc = yield sel
    entries = link(doc, "Entries")
    if entries is None:
        raise errors.BmcProtocolError(f"{sel} has no Entries")
    action = (doc.get("Actions") or {}).get("#LogService.ClearLog") or {}
    capacity = doc.get("MaxNumberOfRecords")
    target = action.get("target") if isinstance(action, dict) else None
    return entries, target, capacity if isinstance(capacity, int) else None


def read_entries(entries, max_members, max_pages=50):
    """Every LogEntry (JSON objects), following nextLink pages and reading
    members a BMC lists by reference only: at most `max_members`, so those
    cost at most that many GETs (a log of 1,000,000 was read one GET at a
    time)."""
    doc = yield entries
    members = _listed(doc.get("Members"))
    for _ in range(max_pages):
        page = doc.get("Members@odata.nextLink")
        if not isinstance(page, str) or len(members) >= max_members:
            break
        doc = yield page
        members += _listed(doc.get("Members"))
    out = []
    for m in members[:max_members]:
        by_reference = isinstance(m, dict) and "Id" not in m and isinstance(m.get("@odata.id"), str)
        out.append((yield m["@odata.id"]) if by_reference else m)
    return out
