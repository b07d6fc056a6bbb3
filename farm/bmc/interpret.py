"""A sensor reading's severity as FreeIPMI judges it (`ipmi-sensors
--output-sensor-state`, `ipmimonitoring`), which is what ipmi_exporter's
`*_state` series carry: nominal, warning, critical, or None (FreeIPMI's
"N/A": no reading, or a sensor type and event type it does not interpret).

The levels are FreeIPMI's documented defaults (freeipmi_interpret_sensor.conf,
shipped commented out with the values the library uses). Each section of that
file names a sensor type and an event/reading type; LEVELS holds its levels
by offset, the first letter for "no event" (no offset asserted). A reading's
level is the worst over its asserted offsets. Note two choices of FreeIPMI's
that differ from ipmitool's words: a threshold sensor past a non-critical
threshold is nominal, and the state of a discrete sensor comes from what it
asserts, not from thresholds. tests/unit/test_interpret.py checks this table
against the installed configuration file, section by section.

FreeIPMI's OEM interpretations (Dell, Supermicro, Intel boards, chosen by
manufacturer and product id) are not followed: those sensors read as
"N/A" here.
"""

# sensor type codes (IPMI v2.0 table 42-3) by FreeIPMI's section names
TYPES = {
    "Temperature": 0x01, "Voltage": 0x02, "Current": 0x03, "Fan": 0x04,
    "Physical_Security": 0x05, "Platform_Security_Violation_Attempt": 0x06,
    "Processor": 0x07, "Power_Supply": 0x08, "Power_Unit": 0x09, "Cooling_Device": 0x0A,
    "Memory": 0x0C, "Drive_Slot": 0x0D, "POST_Memory_Resize": 0x0E,
    "System_Firmware_Progress": 0x0F, "Event_Logging_Disabled": 0x10, "System_Event": 0x12,
    "Critical_Interrupt": 0x13, "Button_Switch": 0x14, "Module_Board": 0x15, "Chassis": 0x18,
    "Chip_Set": 0x19, "Cable_Interconnect": 0x1B, "Boot_Error": 0x1E, "OS_Boot": 0x1F,
    "OS_Critical_Stop": 0x20, "Slot_Connector": 0x21, "System_ACPI_Power_State": 0x22,
    "Watchdog2": 0x23, "Platform_Alert": 0x24, "Entity_Presence": 0x25,
    "Management_Subsystem_Health": 0x28, "Battery": 0x29, "Session_Audit": 0x2A,
    "Version_Change": 0x2B, "FRU_State": 0x2C,
}
# event/reading type codes (table 42-2) by the sections' suffixes; "" is 6Fh,
# sensor-specific
EVENT_TYPES = {
    "": 0x6F, "Transition_State": 0x02, "State": 0x03, "Predictive_Failure": 0x04,
    "Limit": 0x05, "Performance": 0x06, "Transition_Severity": 0x07, "Device_Present": 0x08,
    "Transition_Availability": 0x0A, "Redundancy": 0x0B,
}
THRESHOLD = "Threshold_Sensor"  # any sensor type, event type 01h
_SEVERITY = "NNWCCWCCWN"
_REDUNDANCY = "NNCWCCCWW"
_PRESENT = "NCN"

# section -> levels: N nominal, W warning, C critical; index 0 "no event",
# index i the offset i - 1 (threshold: the six comparison bits of the reading)
LEVELS = {
    "Threshold_Sensor": "NNCCNCC",
    "Temperature_State": "NNW", "Temperature_Limit": "NNC",
    "Temperature_Transition_Severity": _SEVERITY,
    "Voltage_State": "NNW", "Voltage_Limit": "NNC", "Voltage_Performance": "NNC",
    "Voltage_Transition_Severity": _SEVERITY, "Current_Transition_Severity": _SEVERITY,
    "Fan_State": "NNW", "Fan_Transition_Severity": _SEVERITY, "Fan_Device_Present": _PRESENT,
    "Fan_Transition_Availability": "NNWWWWWCWC", "Fan_Redundancy": _REDUNDANCY,
    "Physical_Security": "NCCCCCCC", "Platform_Security_Violation_Attempt": "NCCCCCC",
    "Processor": "NCCCCCCCNCCWCW", "Processor_State": "NNC",
    "Power_Supply": "NNCCCCCCW", "Power_Supply_State": "NNW",
    "Power_Supply_Transition_Severity": _SEVERITY, "Power_Supply_Redundancy": _REDUNDANCY,
    "Power_Unit": "NNNWWCCCC", "Power_Unit_State": "NNW",
    "Power_Unit_Transition_Severity": _SEVERITY, "Power_Unit_Device_Present": _PRESENT,
    "Power_Unit_Redundancy": _REDUNDANCY, "Cooling_Device_Redundancy": _REDUNDANCY,
    "Memory": "NWCCCCWNCNWC", "Memory_State": "NNC", "Memory_Transition_Severity": _SEVERITY,
    "Memory_Redundancy": _REDUNDANCY,
    "Drive_Slot": "NNCCNNCCNC", "Drive_Slot_State": "NWN", "Drive_Slot_Predictive_Failure": "NNC",
    "Drive_Slot_Transition_Severity": _SEVERITY, "Drive_Slot_Device_Present": _PRESENT,
    "POST_Memory_Resize_State": "NNW",
    "System_Firmware_Progress": "NCCN", "System_Firmware_Progress_State": "NNW",
    "System_Firmware_Progress_Device_Present": _PRESENT,
    "System_Firmware_Progress_Transition_Severity": _SEVERITY,
    "Event_Logging_Disabled": "NCCNCCWC",
    "System_Event": "NWNCNNW", "System_Event_Transition_State": "NNNN",
    "System_Event_State": "NNW", "System_Event_Transition_Severity": _SEVERITY,
    "Critical_Interrupt": "NCCCWCCCWCCCW",
    "Button_Switch": "NNNNWW", "Button_Switch_State": "NNN",
    "Button_Switch_Transition_Severity": _SEVERITY,
    "Module_Board_State": "NNC", "Module_Board_Device_Present": _PRESENT,
    "Chassis_Transition_Severity": _SEVERITY, "Chip_Set_Transition_Severity": _SEVERITY,
    "Cable_Interconnect": "NNC", "Cable_Interconnect_Transition_Severity": _SEVERITY,
    "Boot_Error": "NCCCCW", "Boot_Error_State": "NNC", "Boot_Error_Transition_Severity": _SEVERITY,
    "OS_Boot": "NNNNNNNWNNWC", "OS_Critical_Stop_State": "NNC",
    "Slot_Connector": "NCWNNNNWWWN", "Slot_Connector_Transition_Severity": _SEVERITY,
    "System_ACPI_Power_State": "NNNNNNNNNNNNNNCC",
    "Watchdog2": "NWCCCNNNNW", "Platform_Alert_State": "NNC",
    "Entity_Presence": "NNCC", "Entity_Presence_Device_Present": _PRESENT,
    "Management_Subsystem_Health": "NCCCCCC",
    "Management_Subsystem_Health_Transition_Severity": _SEVERITY,
    "Management_Subsystem_Health_Device_Present": _PRESENT,
    "Battery": "NWCN", "Session_Audit": "NNNWC", "Version_Change": "NWWCCCCNN",
    "FRU_State": "NCCWWNWWC",
}
_WORDS = {"N": "nominal", "W": "warning", "C": "critical"}
_RANK = {"N": 0, "W": 1, "C": 2}


def section_codes(section):
    """(sensor type, event type) a section of FreeIPMI's file speaks of
    (sensor type None: every type), or None for one farm cannot place."""
    if section == THRESHOLD:
        return None, 0x01
    for suffix, event_type in sorted(EVENT_TYPES.items(), key=lambda kv: -len(kv[0])):
        head = section[:-len(suffix) - 1] if suffix and section.endswith("_" + suffix) else (
            section if not suffix else None)
        if head in TYPES:
            return TYPES[head], event_type
    return None


_BY_CODES = {section_codes(s): levels for s, levels in LEVELS.items()}


def level(sensor_type, event_type, bits):
    """nominal, warning, critical, or None (not interpreted) for a reading
    whose asserted offsets (threshold: comparison bits) are `bits`."""
    levels = _BY_CODES.get((None, 0x01) if event_type == 0x01 else (sensor_type, event_type))
    if levels is None:
        return None
    worst = levels[0] if not bits else "N"
    for i, letter in enumerate(levels[1:]):
        if bits >> i & 1 and _RANK[letter] > _RANK[worst]:
            worst = letter
    return _WORDS[worst]
