"""Redfish readings and SEL entries, in-process: the simulator's Thermal,
Power and LogService documents for one hardware model, read through
farm.bmc.redfish_data, must say what farm's IPMI programs read from the
same model (which tests/integration/test_tasks.py holds to ipmitool)."""

import pytest

from farm.bmc import redfish_data
from farm.errors import BmcProtocolError
from farm.sim import redfish as sim
from farm.sim.hardware import SEL_CAPACITY, Hardware
from farm.tasks.sel import read_sel, redfish_sel
from farm.tasks.sensors import read_sensors
from tests.unit.test_task_programs import Clock, run


def redfish_docs(hw):
    bmc = sim.RedfishBmc(None, hw.name, hw)
    return {"thermal": bmc.resource("GET", f"{sim.CHASSIS}/Thermal")[1],
            "power": bmc.resource("GET", f"{sim.CHASSIS}/Power")[1]}


def log_members(hw):
    bmc = sim.RedfishBmc(None, hw.name, hw)
    return bmc.resource("GET", f"{sim.LOG}/Entries")[1]["Members"]


@pytest.mark.parametrize("step", range(0, 600, 37))
def test_readings_say_what_ipmi_says_over_a_hot_cycle(step):
    clock = Clock(2_000_000_000.0 + step)
    hw = Hardware("n1", hot=True, sensor_period=600, clock=clock)
    (ipmi, _, extra), _ = run(read_sensors, hw)
    docs = redfish_docs(hw)
    redfish = redfish_data.readings(docs)
    fields = ("name", "type", "code", "unit", "status", "level")
    assert [tuple(r[f] for f in fields) for r in redfish] == \
        [tuple(r[f] for f in fields) for r in ipmi]
    assert redfish_data.power_watts(docs) == extra["watts"]
    for a, b in zip(redfish, ipmi, strict=True):
        assert (a["value"] is None) == (b["value"] is None)
        if a["value"] is not None:
            assert abs(a["value"] - b["value"]) < 1e-6, (a, b)


def test_statuses_cover_every_level():
    hot = [redfish_data.readings(redfish_docs(Hardware("n1", hot=True, sensor_period=600,
                                                      clock=Clock(2e9 + t))))
           for t in range(0, 600, 10)]
    assert {r["status"] for rs in hot for r in rs} >= {"ok", "nc", "cr"}


def test_sel_reads_what_ipmi_reads_through_growth_clear_and_wrap():
    clock = Clock()
    hw = Hardware("n1", sel_interval=1, clock=clock)
    cursor = ipmi_cursor = None
    seen, ipmi_seen = [], []

    def both(limit=1000):
        nonlocal cursor, ipmi_cursor
        new, cursor, cleared = redfish_data.new_entries(log_members(hw), cursor, limit,
                                                        SEL_CAPACITY)
        (i_new, ipmi_cursor, i_cleared, _), _ = run(read_sel, hw, arg=(ipmi_cursor, limit))
        seen.extend(new)
        ipmi_seen.extend(i_new)
        return cleared, i_cleared

    clock.now += 10
    hw.control(0)
    assert both() == (False, False)
    clock.now += 5
    assert both() == (False, False)
    assert both() == (False, False)  # nothing new
    hw.clear_sel()
    clock.now += 3
    assert both() == (True, True)
    clock.now += SEL_CAPACITY + 20  # wraps: our last entry overwritten
    assert both() == (False, False)
    key = [(e["id"], e["at"], e["description"]) for e in seen]
    assert key == [(e["id"], e["at"], e["description"]) for e in ipmi_seen]
    assert len(key) == len(set(key)) > SEL_CAPACITY  # each entry once


@pytest.mark.parametrize("capacity", [SEL_CAPACITY, None])
def test_a_log_of_one_entry_cleared_is_cleared(capacity):
    """The clear logs an entry of its own: as many entries as before, but
    the log is far from full, so it did not wrap."""
    clock = Clock()
    hw = Hardware("n1", clock=clock)
    hw.control(0)
    _, cursor, _ = redfish_data.new_entries(log_members(hw), None, 100, capacity)
    clock.now += 5
    hw.clear_sel()
    new, cursor, cleared = redfish_data.new_entries(log_members(hw), cursor, 100, capacity)
    if capacity is None:  # the BMC does not say: as many entries as before reads as a wrap
        assert not cleared and [e["description"] for e in new] == ["Log area reset/cleared"]
    else:
        assert cleared and [e["description"] for e in new] == ["Log area reset/cleared"]


def test_a_backlog_is_read_in_chunks():
    clock = Clock()
    hw = Hardware("n1", sel_interval=1, clock=clock)
    clock.now += 95
    cursor, got = None, []
    for i in range(10):  # half the passes list the log newest first, as some BMCs do
        members = log_members(hw)
        new, cursor, cleared = redfish_data.new_entries(members[::-1] if i % 2 else members,
                                                        cursor, 10)
        assert not cleared
        got += new
    assert [e["id"] for e in got] == [rid for rid, _ in hw.sel_records()]


@pytest.mark.parametrize("doc, message", [
    ({"Temperatures": {"Name": "x"}}, "not a list"),
    ({"Temperatures": ["x"]}, "not an object"),
])
def test_garbage_documents_are_protocol_errors(doc, message):
    with pytest.raises(BmcProtocolError, match=message):
        redfish_data.readings({"thermal": doc})


def test_absent_members_no_reading_and_repeated_names():
    doc = {"Temperatures": [
        {"Name": "CPU", "ReadingCelsius": 50, "UpperThresholdCritical": 90},
        {"Name": "CPU", "ReadingCelsius": None},
        {"Name": "Gone", "Status": {"State": "Absent"}}]}
    got = redfish_data.readings({"thermal": doc})
    assert [(r["key"], r["status"]) for r in got] == [("CPU #temperature0", "ok"),
                                                     ("CPU #temperature1", "ns")]
    with pytest.raises(BmcProtocolError, match="without an Id"):
        redfish_data.new_entries([{"Created": "2026-01-01T00:00:00Z"}], None, 10)


@pytest.mark.parametrize("value, status", [(99, "nr"), (95, "nr"), (90, "cr"), (80, "nc"),
                                           (50, "ok"), (9, "nc"), (4, "cr"), (1, "nr")])
def test_threshold_levels(value, status):
    member = {"UpperThresholdNonCritical": 75, "UpperThresholdCritical": 85,
              "UpperThresholdFatal": 95, "LowerThresholdNonCritical": 10,
              "LowerThresholdCritical": 5, "LowerThresholdFatal": 2}
    assert redfish_data.threshold_status(member, value) == status


class _LogOnly:
    """What redfish_sel needs of a RedfishBmc, served from the simulator's
    documents for one hardware model."""

    def __init__(self, hw):
        self.hw = hw

    def log_entries(self):
        return log_members(self.hw), SEL_CAPACITY


def test_a_node_that_changes_driver_reads_each_entry_once():
    clock = Clock()
    hw = Hardware("n1", sel_interval=1, clock=clock)
    cursor, seen, cleared = None, [], []
    for step, driver in enumerate(["ipmi", "redfish", "ipmi", "redfish", "redfish"]):
        clock.now += 7
        if step == 2:
            hw.control(0)
        if driver == "ipmi":
            (new, cursor, was_cleared, _), _ = run(read_sel, hw, arg=(cursor, 1000))
        else:
            new, cursor, was_cleared, _ = redfish_sel(_LogOnly(hw), (cursor, 1000))
        seen += new
        cleared.append(was_cleared)
    assert cleared == [False] * 5
    assert [e["id"] for e in seen] == [rid for rid, _ in hw.sel_records()]


# The current shape (Sensor resources and excerpts), from documents written
# after DSP0268's Sensor schema; tests/integration/test_redfish_dmtf.py holds
# the same code to DMTF's mockups and Tacklebox.
def sensor(name, reading, units=None, kind=None, state="Enabled", health="OK", **limits):
    doc = {"@odata.id": f"/redfish/v1/Chassis/1/Sensors/{name}", "Id": name, "Name": name,
           "Reading": reading, "Status": {"State": state, "Health": health},
           "Thresholds": {k: {"Reading": v} for k, v in limits.items()}}
    if units:
        doc["ReadingUnits"] = units
    if kind:
        doc["ReadingType"] = kind
    return doc


def test_sensor_types_from_reading_type_or_units():
    docs = [sensor("T", 40, units="Cel"), sensor("V", 12.1, kind="Voltage", units="V"),
            sensor("A", 3, units="A"), sensor("F", 5000, kind="Rotational", units="RPM"),
            sensor("CPU Fan", 40, kind="Percent", units="%"), sensor("W", 300, units="W"),
            sensor("Humid", 40, kind="Humidity", units="%"), sensor("Odd", 1, units="lx")]
    got = {r["name"]: (r["type"], r["code"], r["unit"])
           for r in redfish_data.sensor_readings(docs)}
    assert got == {"T": ("temperature", 1, "degrees C"), "V": ("voltage", 2, "Volts"),
                   "A": ("current", 3, "Amps"), "F": ("fan", 4, "RPM"),
                   "CPU Fan": ("fan", 4, "percent"), "W": ("other_units", 0x0B, "Watts"),
                   "Humid": ("other_units", 0x0B, "percent")}


@pytest.mark.parametrize("reading,status,level", [
    (50, "ok", "nominal"), (81, "nc", "nominal"), (91, "cr", "critical"), (101, "nr", "critical"),
    (9, "nc", "nominal"), (4, "cr", "critical"), (None, "ns", None)])
def test_sensor_thresholds_give_ipmitool_words(reading, status, level):
    doc = sensor("T", reading, units="Cel", UpperCaution=80, UpperCritical=90, UpperFatal=100,
                 LowerCaution=10, LowerCritical=5)
    (r,) = redfish_data.sensor_readings([doc])
    assert (r["status"], r["level"], r["value"]) == (status, level, reading)


def test_absent_sensors_left_out_repeated_names_keyed_apart_health_kept():
    docs = [sensor("T", 1, units="Cel", state="Absent"), sensor("T", 2, units="Cel", state="Disabled"),
            sensor("X", 3, units="Cel", health="Warning"), sensor("X", 4, units="Cel")]
    got = redfish_data.sensor_readings(docs)
    assert [(r["value"], r["health"]) for r in got] == [(3, "Warning"), (4, "OK")]
    assert len({r["key"] for r in got}) == 2


def test_excerpts_override_and_give_the_power_draw():
    environment = {"PowerWatts": {"Reading": 310, "DataSourceUri": "/redfish/v1/Chassis/1/Sensors/W"},
                   "FanSpeedsPercent": [{"Reading": 55, "DataSourceUri": "/x/F"}],
                   "TemperatureSummaryCelsius": {"Intake": {"Reading": 21, "DataSourceUri": "/x/T"}}}
    values = redfish_data.excerpts(environment)
    assert values == {"/redfish/v1/Chassis/1/Sensors/W": 310, "/x/F": 55, "/x/T": 21}
    docs = [sensor("W", 300, units="W")]
    assert redfish_data.sensor_readings(docs, values)[0]["value"] == 310
    assert redfish_data.total_watts(docs, environment, values) == 310
    assert redfish_data.total_watts(docs, environment) == 300  # the Sensor it names
    assert redfish_data.total_watts([], {"PowerWatts": {"Reading": 7}}) == 7
    total = dict(sensor("Sum", 512, kind="Power", units="W"), ElectricalContext="Total",
                 PhysicalContext="Chassis")
    assert redfish_data.total_watts([sensor("PSU", 1, kind="Power"), total]) == 512
    assert redfish_data.total_watts([sensor("T", 1, units="Cel")]) == "unsupported"
    assert redfish_data.total_watts([dict(total, Reading=None)]) == "inactive"


def test_expanded_collection_or_links_only():
    from farm.bmc.redfish_sensors import expanded
    assert expanded({"Members": [sensor("T", 1)]}, 10)[0]["Id"] == "T"
    assert expanded({"Members": [{"@odata.id": "/a"}]}, 10) is None
    with pytest.raises(BmcProtocolError):
        expanded({"Members": "no"}, 10)


@pytest.mark.parametrize("step", range(0, 600, 59))
def test_current_shape_says_what_ipmi_says(step):
    """The simulator's Sensors collection, expanded, read as farm reads
    it: the threshold sensors IPMI reads from the same model, and the DCMI
    power reading from EnvironmentMetrics' PowerWatts."""
    from farm.sim import redfish_shapes
    clock = Clock(2_000_000_000.0 + step)
    hw = Hardware("n1", hot=True, sensor_period=600, clock=clock)
    (ipmi, _, extra), _ = run(read_sensors, hw)
    status, collection = redfish_shapes.resource(hw, sim.CHASSIS, f"{sim.CHASSIS}/Sensors",
                                                 "$expand=.($levels=1)", "on")
    environment = redfish_shapes.resource(hw, sim.CHASSIS, f"{sim.CHASSIS}/EnvironmentMetrics",
                                          "", "on")[1]
    current = redfish_data.sensor_readings(collection["Members"])
    fields = ("name", "type", "code", "unit", "status", "level", "value")
    assert [tuple(r[f] for f in fields) for r in current if r["name"] != "Total Power"] == \
        [tuple(r[f] for f in fields) for r in ipmi if r["et"] == 0x01]
    assert redfish_data.total_watts(collection["Members"], environment) == round(extra["watts"])
    assert redfish_shapes.resource(hw, sim.CHASSIS, f"{sim.CHASSIS}/Sensors",
                                   "$expand=.($levels=1)", "refused")[0] == 501


def test_a_full_session_table_is_told_apart_from_other_errors():
    from farm.bmc.redfish_http import retry_after, session_limited
    base = {"error": {"code": "Base.1.8.GeneralError", "@Message.ExtendedInfo": [
        {"MessageId": "Base.1.8.SessionLimitExceeded"}]}}
    idrac = {"error": {"@Message.ExtendedInfo": [{"MessageId": "IDRAC.2.9.RAC0218"}]}}
    busy = {"error": {"code": "Base.1.8.ServiceTemporarilyUnavailable"}}
    assert session_limited(base) and session_limited(idrac)
    assert not session_limited(busy) and not session_limited({}) and not session_limited([])
    assert retry_after("3", 0) == 3 and retry_after(None, 2) == 2.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0) == 0.0  # a date passed: now
