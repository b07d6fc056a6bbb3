"""The current Redfish shape of farm-sim's chassis, as DSP0268 (2020.4 on)
and OpenBMC's bmcweb serve it by default: a Sensors collection of Sensor
resources (Reading, ReadingType, ReadingUnits, Thresholds, Status),
ThermalSubsystem with ThermalMetrics (TemperatureReadingsCelsius: excerpts
naming their Sensor by DataSourceUri) and a Fans collection,
PowerSubsystem, and EnvironmentMetrics (PowerWatts).

`$expand=.($levels=1)` on the Sensors collection is answered as DSP0266
(clause 7.3) says: the members in place of their links. A BMC that does
not serve the query answers 501 Not Implemented with Base's
QueryNotSupported, as DSP0266 requires of unsupported `$` parameters (and
bmcweb does when built without insecure-enable-redfish-query); one that
serves it says so in the service root's ProtocolFeaturesSupported.
"""

import re

from farm.sim.hardware import SENSORS, quantize

# IPMI sensor type -> (ReadingType, ReadingUnits, PhysicalContext)
KINDS = {0x01: ("Temperature", "Cel", "SystemBoard"), 0x02: ("Voltage", "V", "VoltageRegulator"),
         0x04: ("Rotational", "RPM", "Fan")}
LIMITS = ("LowerFatal", "LowerCritical", "LowerCaution", "UpperCaution", "UpperCritical",
          "UpperFatal")
EXPAND_FEATURE = {"ExpandAll": False, "Levels": True, "MaxLevels": 2, "Links": False,
                  "NoLinks": True}
NOT_SUPPORTED = {"error": {
    "code": "Base.1.16.QueryNotSupported",
    "message": "Querying is not supported by the implementation.",
    "@Message.ExtendedInfo": [{
        "MessageId": "Base.1.16.QueryNotSupported",
        "Message": "Querying is not supported by the implementation.",
        "Severity": "Warning", "Resolution": "Remove the query parameters and resubmit the "
                                             "request if the operation failed."}]}}


def sensor_id(spec):
    return re.sub(r"[^A-Za-z0-9]", "_", spec.name)


def threshold_sensors():
    return [s for s in SENSORS if s.type in KINDS]


def chassis_links(chassis):
    return {"Sensors": {"@odata.id": f"{chassis}/Sensors"},
            "ThermalSubsystem": {"@odata.id": f"{chassis}/ThermalSubsystem"},
            "PowerSubsystem": {"@odata.id": f"{chassis}/PowerSubsystem"},
            "EnvironmentMetrics": {"@odata.id": f"{chassis}/EnvironmentMetrics"}}


def sensor(hw, chassis, spec):
    kind, units, context = KINDS[spec.type]
    path = f"{chassis}/Sensors/{sensor_id(spec)}"
    doc = {"@odata.id": path, "@odata.type": "#Sensor.v1_7_0.Sensor", "Id": sensor_id(spec),
           "Name": spec.name, "ReadingType": kind, "ReadingUnits": units,
           "PhysicalContext": context, "Reading": hw.sensor_value(spec),
           "Status": {"State": "Enabled", "Health": "OK"}, "Thresholds": {}}
    for name, limit in zip(LIMITS, spec.thresholds, strict=True):
        if limit is not None:
            doc["Thresholds"][name] = {"Reading": quantize(spec, limit)}
    return doc


def power_sensor(hw, chassis):
    return {"@odata.id": f"{chassis}/Sensors/total_power", "@odata.type": "#Sensor.v1_7_0.Sensor",
            "Id": "total_power", "Name": "Total Power", "ReadingType": "Power",
            "ReadingUnits": "W", "ElectricalContext": "Total", "PhysicalContext": "Chassis",
            "Reading": round(hw.watts()), "Status": {"State": "Enabled", "Health": "OK"}}


def all_sensors(hw, chassis):
    return [sensor(hw, chassis, s) for s in threshold_sensors()] + [power_sensor(hw, chassis)]


def resource(hw, chassis, path, query, expand):
    """(status, document) for a current-shape path under `chassis`, or
    None. `expand`: "on" (offered and served), "off" (neither), or
    "refused" (offered in the root, answered 501: a BMC whose build or
    licence does not match what it says)."""
    if path == f"{chassis}/Sensors":
        docs = all_sensors(hw, chassis)
        if "$expand" in query:
            if expand != "on":
                return 501, NOT_SUPPORTED
            members = docs
        else:
            members = [{"@odata.id": d["@odata.id"]} for d in docs]
        return 200, {"@odata.id": path, "@odata.type": "#SensorCollection.SensorCollection",
                     "Name": "Sensors", "Members": members, "Members@odata.count": len(members)}
    if path.startswith(f"{chassis}/Sensors/"):
        wanted = path.rsplit("/", 1)[1]
        doc = next((d for d in all_sensors(hw, chassis) if d["Id"] == wanted), None)
        return (200, doc) if doc else None
    temps = [s for s in threshold_sensors() if s.type == 0x01]
    if path == f"{chassis}/ThermalSubsystem":
        return 200, {"@odata.id": path, "@odata.type": "#ThermalSubsystem.v1_0_0.ThermalSubsystem",
                     "Id": "ThermalSubsystem", "Name": "Thermal Subsystem",
                     "ThermalMetrics": {"@odata.id": f"{path}/ThermalMetrics"},
                     "Fans": {"@odata.id": f"{path}/Fans"},
                     "Status": {"State": "Enabled", "Health": "OK"}}
    if path == f"{chassis}/ThermalSubsystem/ThermalMetrics":
        return 200, {"@odata.id": path, "@odata.type": "#ThermalMetrics.v1_0_0.ThermalMetrics",
                     "Id": "ThermalMetrics", "Name": "Thermal Metrics",
                     "TemperatureReadingsCelsius": [
                         {"DeviceName": s.name, "Reading": hw.sensor_value(s),
                          "DataSourceUri": f"{chassis}/Sensors/{sensor_id(s)}"} for s in temps]}
    if path == f"{chassis}/ThermalSubsystem/Fans":
        return 200, {"@odata.id": path, "Name": "Fans", "Members": [], "Members@odata.count": 0}
    if path == f"{chassis}/PowerSubsystem":
        return 200, {"@odata.id": path, "@odata.type": "#PowerSubsystem.v1_0_0.PowerSubsystem",
                     "Id": "PowerSubsystem", "Name": "Power Subsystem",
                     "Status": {"State": "Enabled", "Health": "OK"}}
    if path == f"{chassis}/EnvironmentMetrics":
        return 200, {"@odata.id": path,
                     "@odata.type": "#EnvironmentMetrics.v1_2_0.EnvironmentMetrics",
                     "Id": "EnvironmentMetrics", "Name": "Chassis Environment Metrics",
                     "PowerWatts": {"Reading": round(hw.watts()),
                                    "DataSourceUri": f"{chassis}/Sensors/total_power"}}
    return None
