"""The task programs and the enforcement rules, in-process: each program is
driven against the simulator's hardware model (the bytes a BMC would send),
so SDR parsing, SEL cursors and power actions are checked without sockets."""

from farm.bmc.session import Response
from farm.power.control import Correct, Enforcer, Maintenance, check_command
from farm.sim.hardware import SEL_CAPACITY, Hardware
from farm.tasks.power import act, read_power
from farm.tasks.sel import clear_sel, read_sel
from farm.tasks.sensors import read_sensors


class Clock:
    def __init__(self, now=2_000_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def run(program, hw, memo=None, arg=None):
    """Drive a job program against a hardware model; (value, round trips)."""
    gen = program(None, {} if memo is None else memo, arg)
    trips, response = 0, None
    try:
        while True:
            request = gen.send(response)
            trips += 1
            code, data = hw.handle(request.netfn, request.command, request.data) or (0xC1, b"")
            response = Response(code, data)
    except StopIteration as stop:
        return stop.value, trips


def test_sensors_read_the_sdr_once_then_one_trip_per_sensor():
    hw = Hardware("n1", sensor_period=0)
    memo = {}
    (readings, fresh, extra), trips = run(read_sensors, hw, memo)
    # info, reserve, 7 records, Device ID, System Info, 7 readings, DCMI
    assert fresh and trips == 1 + 1 + 7 + 2 + 7 + 1
    assert extra == {"watts": 200.0, "device": {"firmware": "2.14", "manufacturer": 49871,
                                                "product": 0x0F42, "system_firmware": "1.0.0"}}
    by_key = {r["key"]: r for r in readings}
    assert [r["id"] for r in readings] == list(range(0x10, 0x17))  # the SDRs' record ids
    assert by_key["PS1 Status"]["level"] == "nominal" and by_key["PS1 Status"]["code"] == 0x08
    assert by_key["CPU Temp"]["value"] == 48 and by_key["CPU Temp"]["unit"] == "degrees C"
    assert by_key["12V"]["value"] == 12.0 and by_key["12V"]["unit"] == "Volts"
    assert by_key["FAN1"]["value"] == 6000 and by_key["FAN1"]["status"] == "ok"
    assert by_key["PS1 Status"]["state"] == ["Presence detected"]
    (_, fresh, extra), trips = run(read_sensors, hw, memo)
    # the device is not asked again, and is still reported
    assert not fresh and trips == 1 + 7 + 1 and extra["device"]["firmware"] == "2.14"


def test_a_bmc_without_dcmi_is_asked_once_a_session():
    class NoDcmi(Hardware):
        def handle(self, netfn, cmd, data):
            return (0xC1, b"") if netfn == 0x2C else super().handle(netfn, cmd, data)

    hw, memo = NoDcmi("n1", sensor_period=0), {}
    (_, _, extra), _ = run(read_sensors, hw, memo)
    assert extra["watts"] == "unsupported"
    (_, _, extra), trips = run(read_sensors, hw, memo)
    assert extra["watts"] == "unsupported" and trips == 1 + 7
    (_, _, extra), _ = run(read_sensors, Hardware("n2", powered=False, sensor_period=0), {})
    assert extra["watts"] == 8.0  # standby power


def test_sensor_status_follows_the_thresholds():
    clock = Clock()
    hw = Hardware("n1", sensor_period=60, hot=True, clock=clock)
    statuses = set()
    for second in range(60):
        clock.now = 2_000_000_000.0 + second
        (readings, _, _), _ = run(read_sensors, hw)
        cpu = {r["key"]: r for r in readings}["CPU Temp"]
        statuses.add((cpu["status"], cpu["level"]))
    # 48 +- 40 crosses 75 (nc) and 85 (cr), not 95; FreeIPMI calls nc nominal
    assert statuses == {("ok", "nominal"), ("nc", "nominal"), ("cr", "critical")}


def test_sel_reads_only_new_entries_and_copes_with_clear_and_wrap():
    clock = Clock()
    hw = Hardware("n1", clock=clock)
    for i in range(5):
        hw.add_sel(0x0C, 0x40, 0x6F, 0x00, now=clock.now + i)
    (entries, cursor, cleared, _), _ = run(read_sel, hw, arg=(None, 100))
    assert [e["id"] for e in entries] == [1, 2, 3, 4, 5] and not cleared
    (entries, same, _, _), trips = run(read_sel, hw, arg=(cursor, 100))
    assert entries == () and same == cursor and trips == 1  # nothing new: one round trip
    hw.add_sel(0x07, 0x50, 0x6F, 0x01, now=clock.now + 10)
    (entries, cursor, _, _), _ = run(read_sel, hw, arg=(cursor, 100))
    assert [e["description"] for e in entries] == ["Thermal Trip"]

    clock.now += 20
    hw.clear_sel()
    (entries, cursor, cleared, _), _ = run(read_sel, hw, arg=(cursor, 100))
    assert cleared and [e["description"] for e in entries] == ["Log area reset/cleared"]

    # wrap: the log overwrites its oldest entries, ours among them
    last_id = cursor[0]
    for i in range(SEL_CAPACITY + 10):
        hw.add_sel(0x0C, 0x40, 0x6F, 0x00, now=clock.now + 100 + i)
    assert last_id not in [rid for rid, _ in hw.sel]
    (entries, cursor, cleared, _), _ = run(read_sel, hw, arg=(cursor, 10_000))
    assert not cleared and len(entries) == SEL_CAPACITY  # all there is, each once


def test_sel_backlog_is_read_a_limited_number_per_pass():
    hw = Hardware("n1")
    for i in range(25):
        hw.add_sel(0x0C, 0x40, 0x6F, 0x00, now=2_000_000_000 + i)
    got, cursor = [], None
    for _ in range(3):
        (entries, cursor, _, _), _ = run(read_sel, hw, arg=(cursor, 10))
        got += [e["id"] for e in entries]
    assert got == list(range(1, 26))


def test_power_action_and_sel_clear():
    hw = Hardware("n1", powered=False)
    assert run(act, hw, arg=("on", "id", "me"))[0] == "on"
    assert run(read_power, hw)[0].value == "on"
    assert run(clear_sel, hw)[0] == "cleared"
    assert len(hw.sel) == 1  # the entry the clear logged


def test_enforcer_never_acts_on_unknown_and_gives_up_into_maintenance():
    e = Enforcer(max_retries=2, settle_time=10)
    e.set_controls({"n": {"desired": "on"}})
    assert e.decide("n", False, None, 0) is None          # failed read
    assert e.decide("n", True, None, 0) is None           # no state
    assert e.decide("n", True, "off", 0) == Correct("on", 1)
    assert e.decide("n", True, "off", 5) is None          # settling
    assert e.decide("n", True, "off", 11) == Correct("on", 2)
    verdict = e.decide("n", True, "off", 22)
    assert isinstance(verdict, Maintenance) and "after 2 attempts" in verdict.reason
    assert e.decide("n", True, "off", 40) is None         # in maintenance now
    e.set_controls({"n": {"desired": "on"}})              # an operator took it out
    assert e.decide("n", True, "off", 41) == Correct("on", 1)
    assert e.decide("n", True, "on", 42) is None and "n" not in e.attempts
    e.set_controls({"n": {"desired": "off", "maintenance": "by hand"}})
    assert e.decide("n", True, "on", 50) is None


def test_enforcer_stops_where_the_account_may_not_control_power():
    e = Enforcer(max_retries=2, settle_time=10)
    e.set_controls({"n": {"desired": "on"}})
    assert e.decide("n", True, "off", 0) == Correct("on", 1)
    e.cannot_act("n", "the BMC grants this account user privilege")
    # however many polls follow: no correction, and never maintenance
    assert all(e.decide("n", True, "off", t) is None for t in range(11, 200, 11))
    e.set_controls({"n": {"desired": "on"}})              # nothing changed: still unable
    assert e.decide("n", True, "off", 300) is None
    e.set_controls({"n": {"desired": "on", "by": "someone"}})  # the operator acted
    assert e.decide("n", True, "off", 301) == Correct("on", 1)


def test_commands_are_checked():
    owned = {"a": object()}
    good = {"kind": "power", "action": "on", "node": "a", "expires": 100}
    assert check_command(good, owned, 50) is None
    assert "expired" in check_command(good, owned, 101)
    assert "does not poll" in check_command(dict(good, node="b"), owned, 50)
    assert "unknown power action" in check_command(dict(good, action="explode"), owned, 50)
    assert "unknown command" in check_command(dict(good, kind="format-disk"), owned, 50)


class EmptySdr:
    """A BMC with an empty SDR repository, as OpenIPMI's ipmi_sim has without
    SDRs: record count 0, and Get SDR of record 0 is 'not present' (0xcb)."""

    def handle(self, netfn, cmd, data):
        if (netfn, cmd) == (0x0A, 0x20):
            return 0, bytes([0x51, 0, 0, 0xFE, 0xFF]) + bytes(8) + b"\x02"
        if (netfn, cmd) == (0x0A, 0x22):
            return 0, b"\x01\x00"
        return 0xCB, b""


def test_an_empty_sdr_repository_is_no_sensors_not_an_error():
    (readings, fresh, extra), trips = run(read_sensors, EmptySdr())
    # info; Device ID and DCMI refused (the sensors pass stands)
    assert readings == () and fresh and trips == 3 and extra == {"watts": "unsupported",
                                                                 "device": None}
