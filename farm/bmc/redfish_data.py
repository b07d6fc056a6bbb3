"""Pure: Redfish documents as farm's sensor readings and SEL entries, and
the SEL cursor over a Redfish log. JSON in, the dicts the IPMI tasks make
out, so Redis, events and `farm nodes show` do not care which protocol a
node speaks.

Readings come from either shape a chassis may serve (docs/redfish.md):
- the current one (DSP0268 2020.4 on): Sensor resources, from the Sensors
  collection, and the excerpts ThermalMetrics and EnvironmentMetrics carry
  (a reading and the DataSourceUri of its Sensor): sensor_readings();
- the deprecated Thermal (Temperatures, Fans) and Power (Voltages,
  PowerSupplies) resources: readings().
A threshold status is computed from the reading and the resource's own
thresholds, in ipmitool's words: nr (fatal), cr (critical), nc
(non-critical), ok, ns (no reading); where a member has no thresholds its
Status.Health says it. Readings of the current shape also keep the BMC's
own Status.Health ("health"), as DMTF's Tacklebox prints it.

A log's entries carry an Id and a Created time and nothing that says which
came first besides them; the cursor is (last Id, its Created time, how many
entries the log held, "redfish"). Our last-seen entry can only be gone two
ways: the log wrapped (full, its oldest overwritten: it holds its capacity,
MaxNumberOfRecords, or at least as many entries as before when the BMC does
not say) and the entries not older than ours are read; or it was cleared
and is read from its start.
"""

import datetime

from farm import errors
from farm.bmc import sel

# (resource, array, value field, farm type, IPMI sensor type code, unit)
ARRAYS = (("thermal", "Temperatures", "ReadingCelsius", "temperature", 0x01, "degrees C"),
          ("thermal", "Fans", "Reading", "fan", 0x04, "RPM"),
          ("power", "Voltages", "ReadingVolts", "voltage", 0x02, "Volts"),
          ("power", "PowerSupplies", None, "power_supply", 0x08, ""))
# FreeIPMI's levels (farm.bmc.interpret): past a non-critical threshold is
# still nominal; a member's own Health word is taken as it stands
_THRESHOLD_LEVEL = {"ok": "nominal", "nc": "nominal", "cr": "critical", "nr": "critical"}
_HEALTH_LEVEL = {"ok": "nominal", "nc": "warning", "cr": "critical"}
_LEVELS = (("Fatal", "nr"), ("Critical", "cr"), ("NonCritical", "nc"))
_HEALTH = {"OK": "ok", "Warning": "nc", "Critical": "cr"}
_SEVERITY_DIRECTION = {"OK": "deasserted"}
CURSOR = "redfish"  # the cursor's last field: not an IPMI cursor (added, erased)
# Every string a BMC sends that farm stores is cut to this length, and only
# strings and numbers are stored (huge names and SEL fields grew Redis from
# 1.9 to 75.9 MB in 60 s); arrays are read up to MAX_MEMBERS members.
MAX_TEXT = 256
MAX_MEMBERS = 512


def _text(value, limit=MAX_TEXT):
    """A BMC's string (or number) as farm stores it: at most `limit`
    characters; anything else is None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)[:limit]


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def threshold_status(member, value):
    """nr, cr, nc or ok for a reading against the member's thresholds."""
    for level, word in _LEVELS:
        upper = _number(member.get(f"UpperThreshold{level}"))
        lower = _number(member.get(f"LowerThreshold{level}"))
        if (upper is not None and value >= upper) or (lower is not None and value <= lower):
            return word
    return "ok"


# Sensor.ReadingType -> (farm type, IPMI sensor type code, farm unit); where
# a BMC leaves ReadingType out (DMTF's own mockups do on temperatures) the
# unit it gives (ReadingUnits, UCUM) decides
_READING_TYPES = {"Temperature": ("temperature", 0x01, "degrees C"),
                  "Voltage": ("voltage", 0x02, "Volts"), "Current": ("current", 0x03, "Amps"),
                  "Rotational": ("fan", 0x04, "RPM"), "Power": ("other_units", 0x0B, "Watts"),
                  "Percent": ("other_units", 0x0B, "percent"),
                  "Frequency": ("other_units", 0x0B, "Hz"),
                  "EnergykWh": ("other_units", 0x0B, "kWh"),
                  "Humidity": ("other_units", 0x0B, "percent")}
_UNITS = {"Cel": "Temperature", "V": "Voltage", "A": "Current", "RPM": "Rotational", "W": "Power",
          "%": "Percent", "Hz": "Frequency", "kW.h": "EnergykWh"}
FARM_UNITS = {"degrees C": "Cel", "Volts": "V", "Amps": "A", "RPM": "RPM", "Watts": "W",
              "percent": "%", "Hz": "Hz", "kWh": "kW.h"}  # and back, for readers' words
_SENSOR_LEVELS = (("Fatal", "nr"), ("Critical", "cr"), ("Caution", "nc"))


def sensor_kind(doc):
    """(farm type, code, unit) of a Sensor resource, or None (a kind farm
    does not store: a reading of no unit it knows)."""
    kind = doc.get("ReadingType")
    if kind not in _READING_TYPES:
        kind = _UNITS.get(doc.get("ReadingUnits"))
    if kind is None:
        return None
    farm_type, code, unit = _READING_TYPES[kind]
    if unit == "percent" and (doc.get("PhysicalContext") == "Fan"
                              or "fan" in str(doc.get("Name") or doc.get("Id") or "").lower()):
        farm_type, code = "fan", 0x04  # a fan's speed in percent: ipmi_fan_speed_ratio
    return farm_type, code, unit


def sensor_status(doc, value):
    """nr, cr, nc or ok for a reading against a Sensor's Thresholds."""
    limits = doc.get("Thresholds") if isinstance(doc.get("Thresholds"), dict) else {}
    for level, word in _SENSOR_LEVELS:
        upper, lower = limits.get(f"Upper{level}"), limits.get(f"Lower{level}")
        upper = _number(upper.get("Reading")) if isinstance(upper, dict) else None
        lower = _number(lower.get("Reading")) if isinstance(lower, dict) else None
        if (upper is not None and value >= upper) or (lower is not None and value <= lower):
            return word
    return "ok"


def sensor_readings(sensors, values=None):
    """farm's reading dicts from Sensor resources (JSON objects, in the
    collection's order); `values` ({Sensor path: reading}) are newer
    readings of some of them (ThermalMetrics' and EnvironmentMetrics'
    excerpts) that override the resource's own."""
    values = values or {}
    out, seen = [], {}
    for i, doc in enumerate(sensors[:MAX_MEMBERS]):
        if not isinstance(doc, dict):
            raise errors.BmcProtocolError(f"Sensors member {i} is not an object")
        status_doc = doc.get("Status") if isinstance(doc.get("Status"), dict) else {}
        kind = sensor_kind(doc)
        if kind is None or status_doc.get("State") in ("Absent", "Disabled"):
            continue
        name = _text(doc.get("Name")) or _text(doc.get("Id")) or f"Sensor {i}"
        path = doc.get("@odata.id")
        value = _number(values[path]) if path in values else _number(doc.get("Reading"))
        status = "ns" if value is None else sensor_status(doc, value)
        seen[name] = seen.get(name, 0) + 1
        out.append({"key": name, "name": name, "number": i, "id": len(out) + 1, "type": kind[0],
                    "code": kind[1], "et": 0x01, "value": value,
                    "level": _THRESHOLD_LEVEL.get(status), "unit": kind[2], "status": status,
                    "health": _text(status_doc.get("Health"), 32), "state": []})
    for r in out:
        if seen[r["name"]] > 1:
            r["key"] = f"{r['name']} #{r['type']}{r['number']}"
    return tuple(out)


def excerpts(doc):
    """{Sensor path: reading} of the excerpts in a ThermalMetrics or
    EnvironmentMetrics document (objects with a DataSourceUri, alone or in
    arrays, one level down as TemperatureSummaryCelsius holds them)."""
    out = {}

    def take(item):
        if isinstance(item, dict) and isinstance(item.get("DataSourceUri"), str) \
                and "Reading" in item:
            out[item["DataSourceUri"]] = item["Reading"]

    for value in list(doc.values())[:MAX_MEMBERS]:
        items = value if isinstance(value, list) else [value]
        for item in items[:MAX_MEMBERS]:
            take(item)
            if isinstance(item, dict) and "DataSourceUri" not in item:
                for inner in list(item.values())[:MAX_MEMBERS]:
                    take(inner)
    return out


def total_watts(sensors, environment=None, values=None):
    """The DCMI reading where PowerControl is gone: EnvironmentMetrics'
    PowerWatts (the Sensor it names, or its own reading), else the
    chassis's total-power Sensor; "unsupported" when there is neither.
    `values` as for sensor_readings."""
    values = values or {}
    power = (environment or {}).get("PowerWatts")
    source = power.get("DataSourceUri") if isinstance(power, dict) else None
    docs = [d for d in sensors if isinstance(d, dict)]
    chosen = next((d for d in docs if source is not None and d.get("@odata.id") == source), None)
    if chosen is None and isinstance(power, dict) and "Reading" in power:
        return _watts(power.get("Reading"))
    if chosen is None:
        chosen = next((d for d in docs if d.get("ReadingType") == "Power"
                       and d.get("ElectricalContext") == "Total"
                       and d.get("PhysicalContext") in ("Chassis", None)), None)
    if chosen is None:
        return "unsupported"
    path = chosen.get("@odata.id")
    return _watts(values[path] if path in values else chosen.get("Reading"))


def _watts(reading):
    watts = _number(reading)
    return "inactive" if watts is None else watts


def readings(docs):
    """farm's reading dicts from {"thermal": doc, "power": doc} (either may be None)."""
    out, seen = [], {}
    for resource, array, field, kind, code, unit in ARRAYS:
        doc = docs.get(resource) or {}
        members = doc.get(array) or []
        if not isinstance(members, list):
            raise errors.BmcProtocolError(f"{array} in the {resource} resource is not a list")
        for i, m in enumerate(members[:MAX_MEMBERS]):
            if not isinstance(m, dict):
                raise errors.BmcProtocolError(f"{array}[{i}] is not an object")
            status_doc = m.get("Status") if isinstance(m.get("Status"), dict) else {}
            if status_doc.get("State") in ("Absent", "Disabled"):
                continue
            name = _text(m.get("Name")) or _text(m.get("MemberId")) or f"{array} {i}"
            value = _number(m.get(field)) if field else None
            if field is None:
                status = _HEALTH.get(status_doc.get("Health"), "ok")
            elif value is None:
                status = "ns"
            else:
                status = threshold_status(m, value)
            fan_unit = m.get("ReadingUnits") if array == "Fans" else None
            seen[name] = seen.get(name, 0) + 1
            level = (_HEALTH_LEVEL if field is None else _THRESHOLD_LEVEL).get(status)
            out.append({"key": name, "name": name, "number": i, "id": len(out) + 1, "type": kind,
                        "code": code, "et": 0x6F if field is None else 0x01, "value": value,
                        "level": level,
                        "unit": "percent" if fan_unit == "Percent" else unit, "status": status,
                        "state": [_text(status_doc["Health"], 32)]
                        if field is None and _text(status_doc.get("Health")) else []})
    for r in out:  # names repeat on real BMCs: the key must be unique within one
        if seen[r["name"]] > 1:
            r["key"] = f"{r['name']} #{r['type']}{r['number']}"
    return tuple(out)


def power_watts(docs):
    """The chassis's PowerControl[0].PowerConsumedWatts as the DCMI reading:
    watts, "inactive" (no number now) or "unsupported" (no PowerControl)."""
    controls = (docs.get("power") or {}).get("PowerControl")
    if not isinstance(controls, list) or not controls or not isinstance(controls[0], dict):
        return "unsupported"
    watts = _number(controls[0].get("PowerConsumedWatts"))
    return "inactive" if watts is None else watts


def _epoch(created):
    if not isinstance(created, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp())


def _id(value):
    text = _text(value) or ""
    return int(text) if text.isdigit() and len(text) < 20 else text


def entry(member):
    """farm's SEL entry dict for one Redfish LogEntry."""
    if not isinstance(member, dict) or "Id" not in member:
        raise errors.BmcProtocolError("a log entry without an Id")
    out = {"id": _id(member["Id"]), "at": _epoch(member.get("Created")),
           "description": _text(member.get("Message"), 300) or _text(member.get("Name"), 300)
           or "", "severity": _text(member.get("Severity"), 32)}
    if _text(member.get("SensorType")):
        out["sensor_type"] = _text(member["SensorType"], 64)
    number = member.get("SensorNumber")
    if isinstance(number, int) and not isinstance(number, bool):
        out["sensor"] = number
    out["direction"] = _SEVERITY_DIRECTION.get(member.get("Severity"), "asserted")
    return out


def new_entries(members, cursor, limit, capacity=None):
    """(entries new since `cursor`, oldest first, at most `limit`; the new
    cursor; whether the log was cleared) over a log's entries, listed
    oldest or newest first."""
    entries = [entry(m) for m in members]
    # the log's own order (as it appended them), oldest first: BMCs list
    # either way round, and Created alone cannot order entries of one second
    if len(entries) > 1 and (entries[0]["at"] or 0) > (entries[-1]["at"] or 0):
        entries.reverse()
    cleared, start = False, 0
    if cursor is not None and cursor[0] is not None:
        last_id, last_at, count = cursor[0], cursor[1], cursor[2] or 0
        at = next((i for i, e in enumerate(entries) if e["id"] == last_id and e["at"] == last_at),
                  None)
        full = len(entries) >= capacity if capacity else len(entries) >= count
        if at is not None:
            start = at + 1
        elif not full:
            cleared = True
        else:  # wrapped (ours overwritten): what is not older than our last entry
            entries = [e for e in entries if e["at"] is None or last_at is None or e["at"] >= last_at]
    fresh = entries[start:start + limit]
    tail = sel.cursor_tail(fresh, cursor, cleared)
    # the count is that of the log once we have caught up; until then the
    # one we started from, so a log read in chunks is not taken for cleared
    count = len(members) if start + limit >= len(entries) else (cursor[2] if cursor else 0)
    return tuple(fresh), (*tail, count, CURSOR), cleared
