"""farm's copy of FreeIPMI's sensor interpretation, checked against the
configuration file FreeIPMI installs (freeipmi-common), which documents the
defaults its library applies: every section, every level, in offset order."""

import re

import pytest

from farm.bmc import interpret

CONF = "/etc/freeipmi/freeipmi_interpret_sensor.conf"


def freeipmi_sections():
    """section -> levels string, from FreeIPMI's file (the standard sections
    only; the OEM ones it keys by manufacturer are not followed)."""
    sections, current = {}, None
    with open(CONF, encoding="utf-8") as f:
        for line in f:
            head = re.match(r"^## IPMI_(\w+)\s*$", line)
            if head:
                current = head.group(1)
                sections[current] = ""
                continue
            entry = re.match(r"^# IPMI_(\w+)\s+(Nominal|Warning|Critical)\s*$", line)
            if entry and current and entry.group(1).startswith(current + "_"):
                sections[current] += entry.group(2)[0]
    return {k: v for k, v in sections.items() if v}


def test_every_section_of_freeipmi_is_followed_level_for_level():
    theirs = freeipmi_sections()
    assert len(theirs) > 70
    assert interpret.LEVELS == theirs


@pytest.mark.parametrize("section", sorted(interpret.LEVELS))
def test_each_section_names_a_sensor_type_and_an_event_type(section):
    codes = interpret.section_codes(section)
    assert codes is not None
    sensor_type, event_type = codes
    assert event_type in (*interpret.EVENT_TYPES.values(), 0x01)
    assert (sensor_type is None) == (section == interpret.THRESHOLD)


def test_the_worst_asserted_offset_wins():
    # power supply (08h, sensor-specific): presence nominal, failure critical, inactive warning
    assert interpret.level(0x08, 0x6F, 0b1) == "nominal"
    assert interpret.level(0x08, 0x6F, 0b11) == "critical"
    assert interpret.level(0x08, 0x6F, 1 << 7) == "warning"
    assert interpret.level(0x08, 0x6F, 0) == "nominal"  # no event
    # thresholds: non-critical is nominal to FreeIPMI, critical and beyond critical
    assert interpret.level(0x01, 0x01, 0b001000) == "nominal"
    assert interpret.level(0x02, 0x01, 0b000010) == "critical"
    assert interpret.level(0x04, 0x01, 0b100000) == "critical"


def test_what_freeipmi_does_not_interpret_has_no_level():
    assert interpret.level(0xC0, 0x6F, 1) is None     # OEM sensor type
    assert interpret.level(0x01, 0x6F, 1) is None     # temperature has no specific offsets
    assert interpret.level(0x08, 0x09, 1) is None     # enabled/disabled: no section
