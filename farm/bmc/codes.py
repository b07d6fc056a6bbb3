"""Names for IPMI's numeric codes (IPMI v2.0 tables 42-2, 42-3, 43-15), as
farm stores and shows them: sensor types, units, event offsets. Pure data.
"""

SENSOR_TYPES = {
    0x01: "temperature", 0x02: "voltage", 0x03: "current", 0x04: "fan",
    0x05: "physical_security", 0x06: "platform_security", 0x07: "processor",
    0x08: "power_supply", 0x09: "power_unit", 0x0A: "cooling_device", 0x0B: "other_units",
    0x0C: "memory", 0x0D: "drive_slot", 0x0F: "system_firmware", 0x10: "event_logging",
    0x11: "watchdog1", 0x12: "system_event", 0x13: "critical_interrupt", 0x14: "button",
    0x15: "module_board", 0x17: "add_in_card", 0x18: "chassis", 0x19: "chip_set",
    0x1B: "cable", 0x1D: "system_boot", 0x1E: "boot_error", 0x1F: "os_boot",
    0x20: "os_stop", 0x21: "slot_connector", 0x22: "acpi_power_state", 0x23: "watchdog2",
    0x25: "entity_presence", 0x27: "lan", 0x28: "management_subsystem_health",
    0x29: "battery", 0x2A: "session_audit", 0x2B: "version_change", 0x2C: "fru_state",
}

# Sensor unit type codes 0-92, in the spec's order (table 43-15) and with the
# names ipmitool prints (FreeIPMI abbreviates some; ipmitool is what operators
# compare with). Code 0 is "unspecified": shown as no unit.
UNITS = dict(enumerate((
    "", "degrees C", "degrees F", "degrees K", "Volts", "Amps", "Watts", "Joules", "Coulombs",
    "VA", "Nits", "lumen", "lux", "Candela", "kPa", "PSI", "Newton", "CFM", "RPM", "Hz",
    "microsecond", "millisecond", "second", "minute", "hour", "day", "week", "mil", "inches",
    "feet", "cu in", "cu feet", "mm", "cm", "m", "cu cm", "cu m", "liters", "fluid ounce",
    "radians", "steradians", "revolutions", "cycles", "gravities", "ounce", "pound", "ft-lb",
    "oz-in", "gauss", "gilberts", "henry", "millihenry", "farad", "microfarad", "ohms",
    "siemens", "mole", "becquerel", "PPM", "reserved", "Decibels", "DbA", "DbC", "gray",
    "sievert", "color temp deg K", "bit", "kilobit", "megabit", "gigabit", "byte", "kilobyte",
    "megabyte", "gigabyte", "word", "dword", "qword", "line", "hit", "miss", "retry", "reset",
    "overrun / overflow", "underrun", "collision", "packets", "messages", "characters", "error",
    "correctable error", "uncorrectable error", "fatal error", "grams",
)))

# Completion codes (IPMI v2.0 table 5-2), for messages that say what a refusal means.
COMPLETION = {
    0xC0: "node busy", 0xC1: "invalid command", 0xC2: "command invalid for this LUN",
    0xC3: "timeout while processing", 0xC4: "out of space", 0xC5: "reservation cancelled",
    0xC6: "request data truncated", 0xC7: "request data length invalid",
    0xC8: "request data field length limit exceeded", 0xC9: "parameter out of range",
    0xCA: "cannot return the number of bytes requested", 0xCB: "requested data not present",
    0xCC: "invalid data field in request", 0xCD: "command illegal for this sensor or record",
    0xCE: "response could not be provided", 0xCF: "duplicated request",
    0xD0: "SDR repository in update mode", 0xD1: "device in firmware update mode",
    0xD2: "BMC initialization in progress", 0xD3: "destination unavailable",
    0xD4: "insufficient privilege level", 0xD5: "not supported in present state",
    0xD6: "sub-function disabled or unavailable", 0xFF: "unspecified error",
    # Set Session Privilege Level's own codes (table 22-25)
    0x80: "requested level not available for this user",
    0x81: "requested level exceeds the user's or channel's limit",
}

THRESHOLD_EVENTS = (
    "Lower Non-critical going low", "Lower Non-critical going high",
    "Lower Critical going low", "Lower Critical going high",
    "Lower Non-recoverable going low", "Lower Non-recoverable going high",
    "Upper Non-critical going low", "Upper Non-critical going high",
    "Upper Critical going low", "Upper Critical going high",
    "Upper Non-recoverable going low", "Upper Non-recoverable going high",
)

# Sensor-specific offsets (event/reading type 6Fh) for the sensor types
# operators most often find in a SEL.
SPECIFIC_EVENTS = {
    0x05: ("General Chassis intrusion", "Drive Bay intrusion"),
    0x07: ("IERR", "Thermal Trip", "FRB1/BIST failure", "FRB2/Hang in POST failure",
           "FRB3/Processor startup/init failure", "Configuration Error",
           "SM BIOS Uncorrectable CPU-complex Error",
           "Presence detected", "Disabled", "Terminator presence detected", "Throttled",
           "Machine Check Exception", "Correctable Machine Check Error"),
    0x08: ("Presence detected", "Failure detected", "Predictive failure", "Power Supply AC lost",
           "AC lost or out-of-range", "AC out-of-range, but present", "Config Error"),
    0x09: ("Power off/down", "Power cycle", "240VA power down", "Interlock power down",
           "AC lost", "Soft-power control failure", "Failure detected", "Predictive failure"),
    0x0C: ("Correctable ECC", "Uncorrectable ECC", "Parity", "Memory Scrub Failed",
           "Memory Device Disabled", "Correctable ECC logging limit reached",
           "Presence Detected", "Configuration Error", "Spare", "Throttled",
           "Critical Overtemperature"),
    0x0D: ("Drive Present", "Drive Fault", "Predictive Failure", "Hot Spare",
           "Parity Check In Progress", "In Critical Array", "In Failed Array",
           "Rebuild In Progress", "Rebuild Aborted"),
    0x0F: ("System Firmware Error", "System Firmware Hang", "System Firmware Progress"),
    0x10: ("Correctable memory error logging disabled", "Event logging disabled",
           "Log area reset/cleared", "All event logging disabled", "Log full",
           "Log almost full"),
    0x12: ("System Reconfigured", "OEM System boot event", "Undetermined system hardware failure",
           "Entry added to auxiliary log", "PEF Action", "Timestamp Clock Sync"),
    0x13: ("NMI/Diag Interrupt", "Bus Timeout", "I/O Channel check NMI", "Software NMI",
           "PCI PERR", "PCI SERR", "EISA failsafe timeout", "Bus Correctable error",
           "Bus Uncorrectable error", "Fatal NMI", "Bus Fatal Error", "Bus Degraded"),
    0x1D: ("Initiated by power up", "Initiated by hard reset", "Initiated by warm reset",
           "User requested PXE boot", "Automatic boot to diagnostic", "OS initiated hard reset",
           "OS initiated warm reset", "System Restart"),
    0x20: ("Critical stop during OS load", "Run-time critical stop", "OS graceful stop",
           "OS graceful shutdown", "PEF initiated soft shutdown", "Agent not responding"),
    0x22: ("S0/G0: working", "S1: sleeping with system hw & processor context maintained",
           "S2: sleeping, processor context lost",
           "S3: sleeping, processor & hw context lost, memory retained",
           "S4: non-volatile sleep/suspend-to-disk", "S5/G2: soft-off", "S4/S5: soft-off",
           "G3: mechanical off", "Sleeping in S1/S2/S3 state", "G1: sleeping",
           "S5: entered by override", "Legacy ON state", "Legacy OFF state"),
    0x23: ("Timer expired", "Hard reset", "Power down", "Power cycle"),
    0x29: ("Low", "Failed", "Presence detected"),
}

# Generic discrete offsets (event/reading types 02h-0Ch) worth naming.
GENERIC_EVENTS = {
    0x03: ("State Deasserted", "State Asserted"),
    0x07: ("Transition to OK", "Transition to Non-Critical from OK",
           "Transition to Critical from less severe", "Transition to Non-recoverable from less severe",
           "Transition to Non-Critical from more severe", "Transition to Critical from Non-recoverable",
           "Transition to Non-recoverable", "Monitor", "Informational"),
    0x08: ("Device Removed/Absent", "Device Inserted/Present"),
    0x0B: ("Fully Redundant", "Redundancy Lost", "Redundancy Degraded"),
}


def sensor_type_name(code):
    return SENSOR_TYPES.get(code, f"type_0x{code:02x}")


def unit_name(code, percentage=False):
    if percentage:
        return "percent"
    return UNITS.get(code, f"unit {code}")


def event_description(sensor_type, event_type, offset):
    """What a SEL entry or a discrete reading's offset means."""
    if event_type == 0x01:
        table = THRESHOLD_EVENTS
    elif event_type == 0x6F:
        table = SPECIFIC_EVENTS.get(sensor_type, ())
    else:
        table = GENERIC_EVENTS.get(event_type, ())
    return table[offset] if offset < len(table) else f"offset 0x{offset:02x}"


def refused(what, code):
    """The error for a command the BMC answered with completion code `code`."""
    from farm import errors
    cls = errors.BmcPrivilegeError if code == 0xD4 else errors.BmcProtocolError
    return cls(f"{what} refused: {completion(code)}")


def completion(code):
    """A completion code as an operator reads it: 'insufficient privilege level (0xd4)'."""
    return f"{COMPLETION.get(code, 'completion code')} (0x{code:02x})"
