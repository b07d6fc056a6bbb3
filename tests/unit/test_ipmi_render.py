"""/ipmi's rendering from stored state (farm.api.ipmi), in-process: what
farm does where ipmi_exporter has nothing to compare with (stale or failed
passes, tasks farm does not run, modules, repeated names, Redfish nodes).
The families themselves are compared with the real ipmi_exporter in
tests/integration/test_ipmi_endpoint.py."""

import json
import math
import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from farm.api import ipmi

NOW = 2_000_000_000.0
INTERVALS = {"power": 60.0, "sensors": 300.0, "sel": 600.0}


def reading(rid, name, unit="degrees C", value=40.0, level="nominal", code=0x01, et=0x01,
            status="ok", key=None):
    return json.dumps({"id": rid, "name": name, "key": key or name, "unit": unit, "value": value,
                       "level": level, "code": code, "et": et, "status": status})


def state(age=10.0, **extra):
    out = {"seen_at": str(NOW - age), "power_state": "on", "sensors_polled_at": str(NOW - age),
           "sel_polled_at": str(NOW - age), "power_watts": "212.0",
           "bmc_device": json.dumps({"firmware": "1.02", "manufacturer": 343,
                                     "system_firmware": "SE5C.86B"}),
           "sel_sizes": json.dumps({"count": 12, "free": 3000})}
    out.update(extra)
    return out


def parsed(text):
    return {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
            for f in text_string_to_metric_families(text)}


def up(families):
    return {dict(k)["collector"]: v for k, v in families["ipmi_up"].items()}


def render(st, sensors=None, intervals=INTERVALS, collectors=ipmi.COLLECTORS, **kw):
    return parsed(ipmi.render(st, sensors or {"CPU": reading(16, "CPU")}, NOW, intervals,
                              collectors, names={343: "Intel Corporation"}, **kw))


def test_a_fresh_node_has_every_family_farm_reads():
    got = render(state())
    assert up(got) == dict.fromkeys(ipmi.COLLECTORS, 1.0)
    assert got["ipmi_temperature_celsius"] == {(("id", "16"), ("name", "CPU")): 40.0}
    assert got["ipmi_dcmi_power_consumption_watts"] == {(): 212.0}
    assert got["ipmi_chassis_power_state"] == {(): 1.0}
    assert got["ipmi_sel_logs_count"] == {(): 12.0}
    assert list(got["ipmi_bmc_info"]) == [(("firmware_revision", "1.02"),
                                           ("manufacturer_id", "Intel Corporation (343)"),
                                           ("system_firmware_version", "SE5C.86B"))]
    assert set(got["farm_reading_age_seconds"].values()) == {10.0}


def test_older_than_two_intervals_is_down_and_shows_no_cached_values():
    st = state(sensors_polled_at=str(NOW - 601), seen_at=str(NOW - 119))
    got = render(st)
    assert up(got) == {"bmc": 0.0, "chassis": 1.0, "dcmi": 0.0, "ipmi": 0.0, "sel": 1.0}
    assert "ipmi_temperature_celsius" not in got and "ipmi_bmc_info" not in got
    assert got["farm_reading_age_seconds"][(("collector", "ipmi"),)] == 601.0


def test_a_failed_last_pass_is_down():
    got = render(state(error_kind="timeout", sel_error_kind="protocol"))
    assert up(got)["chassis"] == 0.0 and up(got)["sel"] == 0.0 and up(got)["ipmi"] == 1.0
    assert "ipmi_chassis_power_state" not in got and "ipmi_sel_logs_count" not in got


def test_never_polled_is_down_without_an_age():
    got = render({})
    assert set(up(got).values()) == {0.0}
    assert "farm_reading_age_seconds" not in got


def test_tasks_farm_does_not_run_and_modules_leave_families_out():
    got = render(state(), intervals={"power": 60.0})
    assert up(got) == {"chassis": 1.0}
    got = render(state(), collectors=("ipmi", "sel"))
    assert up(got) == {"ipmi": 1.0, "sel": 1.0} and "ipmi_chassis_power_state" not in got


def test_dcmi_without_a_measurement_is_up_without_a_sample():
    got = render(state(power_watts="inactive"))
    assert up(got)["dcmi"] == 1.0 and "ipmi_dcmi_power_consumption_watts" not in got
    assert up(render(state(power_watts="unsupported")))["dcmi"] == 0.0


def test_repeated_names_are_told_apart_where_ipmi_exporter_fails_the_scrape():
    sensors = {"PSU Temp #30": reading(16, "PSU Temp", key="PSU Temp #30"),
               "PSU Temp #31": reading(16, "PSU Temp", key="PSU Temp #31", value=41.0)}
    got = render(state(), sensors)["ipmi_temperature_celsius"]
    assert got == {(("id", "16"), ("name", "PSU Temp")): 40.0,
                   (("id", "16"), ("name", "PSU Temp #31")): 41.0}


def test_units_types_and_levels_as_ipmi_exporter_encodes_them():
    sensors = {"a": reading(1, "Fan %", unit="percent", value=55.0, code=0x04, level="warning"),
               "b": reading(2, "Util", unit="percent", value=30.0, code=0x0B),
               "c": reading(3, "PS1", unit="", value=None, code=0x08, et=0x6F,
                            level="critical"),
               "d": reading(4, "OEM", unit="", value=None, code=0xC1, et=0x6F, level=None),
               "e": reading(5, "Gone", status="ns", value=None, level=None),
               "f": reading(6, "P", unit="Watts", value=300.0, code=0x0B),
               "g": reading(7, "I", unit="Amps", value=1.5, code=0x03, level="critical")}
    got = render(state(), sensors)
    assert got["ipmi_fan_speed_ratio"] == {(("id", "1"), ("name", "Fan %")): 0.55}
    assert got["ipmi_fan_speed_state"] == {(("id", "1"), ("name", "Fan %")): 1.0}
    generic = {dict(k)["name"]: (dict(k)["type"], v) for k, v in got["ipmi_sensor_value"].items()}
    assert generic.keys() == {"Util", "PS1", "OEM"}
    assert generic["Util"] == ("Other Units Based Sensor", 30.0)
    assert generic["PS1"][0] == "Power Supply" and math.isnan(generic["PS1"][1])
    assert generic["OEM"][0] == "OEM Reserved"
    states = {dict(k)["name"]: v for k, v in got["ipmi_sensor_state"].items()}
    assert states["PS1"] == 2.0 and math.isnan(states["OEM"])
    assert got["ipmi_power_watts"] == {(("id", "6"), ("name", "P")): 300.0}
    assert got["ipmi_current_state"] == {(("id", "7"), ("name", "I")): 2.0}


def test_a_redfish_node_answers_under_the_same_names_without_bmc_info():
    got = render(state(bmc_device=""), driver="redfish")
    assert "bmc" not in up(got) and up(got)["ipmi"] == 1.0
    assert "ipmi_temperature_celsius" in got


def test_label_values_are_escaped():
    text = ipmi.render(state(), {"x": reading(1, 'a "quoted"\\ name')}, NOW, INTERVALS,
                       ("ipmi",))
    assert parsed(text)["ipmi_temperature_celsius"] == {
        (("id", "1"), ("name", 'a "quoted"\\ name')): 40.0}


def test_freeipmi_type_names_are_ipmi_sensors_own():
    listed = subprocess.run([shutil.which("ipmi-sensors") or "ipmi-sensors", "-L"],
                            capture_output=True, text=True, timeout=30).stdout.split()
    ours = [ipmi.freeipmi_type(code).replace(" ", "_").replace("/", "_")
            for code in range(1, 0x2D)] + [ipmi.freeipmi_type(0xC0).replace(" ", "_")]
    assert ours == listed


def test_iana_registry_names_manufacturers(tmp_path):
    path = tmp_path / "enterprise-numbers.txt"
    path.write_text("Decimal\n| Organization\n0\n  Reserved\n    IANA\n      iana&iana.org\n"
                    "343\n  Intel Corporation\n    someone\n      x&intel.com\n")
    names = ipmi.manufacturers(str(path))
    assert names == {0: "Reserved", 343: "Intel Corporation"}
    assert ipmi.manufacturer(343, names) == "Intel Corporation (343)"
    assert ipmi.manufacturer(49871, names) == "49871"
    assert ipmi.manufacturers(str(tmp_path / "absent")) == {}
