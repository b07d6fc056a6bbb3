"""OpenIPMI's `ipmi_sim` (Debian `openipmi`) as BMCs for tests and benchmarks:
an IPMI implementation nobody here wrote, one process per BMC on loopback.

Each BMC gets a lan.conf, an emulator command file and a chassis-control
program (a small shell script, run by ipmi_sim for every power read and
change). The script keeps the power state in a file and appends every change
to `chassis.log`: the BMC's own record of each Chassis Control it obeyed, so a
test can count power commands on the BMC's side, not the client's.

What ipmi_sim is like (OpenIPMI 2.0.33, measured): it offers no cipher suite
17 and refuses it with a two-byte Open Session response (tag, status 0x04);
it does not answer Get Channel Cipher Suites; an account limited through
`ipmitool lan set 1 cipher_privs` is refused at Open Session with 0x0A.
"""

import os
import shutil
import signal
import subprocess

from farm.sim.harness import wait_for

CHASSIS = """#!/bin/sh
# ipmi_sim's chassis_control program: "$0 MC get power" prints "power:N";
# "$0 MC set power N" powers the simulated server on (1) or off (0).
d=$(dirname "$0")
case "$2" in
get) echo "power:$(cat "$d/power")";;
set) shift 2
     while [ $# -gt 0 ]; do
       [ "$1" = power ] && echo "$2" > "$d/power" && echo "$(date +%s.%N) power $2" >> "$d/chassis.log"
       shift 2
     done;;
esac
"""

LAN_CONF = """name "{name}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md5
    allowed_auths_user none md5
    allowed_auths_operator none md5
    allowed_auths_admin none md5
    guid {guid}
{bmc_key}  endlan
  chassis_control "{chassis} 0x20"
  user 2 true "{username}" "{password}" admin 10 none md5
"""

COMMANDS = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
{sel}mc_enable 0x20
"""
# System event records (type 0x02) for `sel_add`: generator 0x20, EvM rev 4,
# then sensor type, number, event type/direction and event data 1-3.
SEL_EVENTS = (
    "0x01 0x01 0x01 0x59 0x60 0x50",   # temperature 1: upper critical going high
    "0x04 0x02 0x01 0x52 0x08 0x0a",   # fan 2: lower critical going low
    "0x08 0x03 0x6f 0x01 0xff 0xff",   # power supply 3: failure detected
)


# Sensors for `sensors=True`: (number, name, sdrcomp type, event/reading
# type, base unit, m, r_exp, raw value, thresholds lnc, lc, lnr, unc, uc, unr
# as raw bytes (None: not given), scanning). Chosen to exercise the
# conversion (M, exponents), the unit table (CFM is code 17), threshold
# states (CPU Temp is past upper critical) and a sensor whose scanning is off.
SENSORS = (
    (1, "Inlet Temp", "Temperature", 1, "degrees_C", 1, 0, 24, (None, None, None, 40, 45, 50), True),
    (2, "CPU Temp", "Temperature", 1, "degrees_C", 1, 0, 88, (None, None, None, 75, 85, 95), True),
    (3, "FAN1", "Fan", 1, "RPM", 50, 0, 60, (20, 10, 5, None, None, None), True),
    (4, "12V", "Voltage", 1, "Volts", 6, -2, 200, (183, 180, 170, 217, 220, 230), True),
    (5, "Airflow", "Other_Units_Based_Sensor", 1, "CFM", 1, 0, 30, (None,) * 6, True),
    (6, "Spare Temp", "Temperature", 1, "degrees_C", 1, 0, 30, (None,) * 6, False),
)
# Discrete sensors for `discrete=True` (compact SDRs): (number, name,
# sdrcomp type, type code, offsets it may assert, offsets asserted). A power
# supply that says "Presence detected" and "Power Supply Failure detected"
# (IPMI v2.0 table 42-3, sensor type 08h), and one that says only presence.
DISCRETE = (
    (7, "PSU1 Status", "Power_Supply", 0x08, (0, 1), (0, 1)),
    (8, "PSU2 Status", "Power_Supply", 0x08, (0, 1), (0,)),
)
_THRESHOLD_NAMES = ("lnc", "lc", "lnr", "unc", "uc", "unr")
_SENSOR_TYPES = {"Temperature": 1, "Voltage": 2, "Fan": 4, "Other_Units_Based_Sensor": 11}


def sdr_source(sensors=SENSORS):
    """The sensors' full SDRs in sdrcomp's source language."""
    out = []
    for number, name, stype, erc, unit, m, r_exp, _, thresholds, _scan in sensors:
        lines = ["sdr type 1", "sensor_owner_id 0x20", "sensor_owner_lun 0", "channel_number 0",
                 f"sensor_number {number}", "entity_id system_board", "entity_instance 1",
                 "init_scanning true", "init_events true", "init_thresholds true",
                 "init_sensor_type true", "default_event_gen_on true",
                 "default_sensor_scan_on true", "sensor_auto_rearm true",
                 "sensor_threshold_access readable", "sensor_event_msg_ctrl per_state",
                 f"sensor_type {stype}", f"event_reading_type_code {erc}",
                 "analog_data_format unsigned", f"base_unit {unit}", "linearization linear",
                 f"m {m}", "b 0", f"r_exp {r_exp}", "b_exp 0"]
        for short, value in zip(_THRESHOLD_NAMES, thresholds, strict=True):
            if value is not None:
                lines += [f"{short}_thrsh_readable true", f"{short}_thresh {value}"]
        lines += [f'id_string "{name}"', "endsdr", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def discrete_source(discrete=DISCRETE):
    """The discrete sensors' compact SDRs in sdrcomp's source language."""
    out = []
    for number, name, stype, _, offsets, _ in discrete:
        lines = ["sdr type 2", "sensor_owner_id 0x20", "sensor_owner_lun 0", "channel_number 0",
                 f"sensor_number {number}", "entity_id power_supply", "entity_instance 1",
                 "init_scanning true", "init_events true", "init_sensor_type true",
                 "default_event_gen_on true", "default_sensor_scan_on true",
                 "sensor_auto_rearm true", "sensor_event_msg_ctrl per_state",
                 f"sensor_type {stype}", "event_reading_type_code 0x6f"]
        for bit in offsets:
            lines += [f"assert_event{bit} true", f"deassert_event{bit} true",
                      f"event{bit}_state_ret true"]
        lines += [f'id_string "{name}"', "endsdr", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def sdr_commands(workdir, sensors=SENSORS, discrete=()):
    """ipmi_sim commands that add the sensors' SDRs (compiled by OpenIPMI's
    own sdrcomp, 8-bit names) and the sensors with their readings (and the
    discrete sensors' asserted states)."""
    source = os.path.join(workdir, "sensors.sdrs")
    raw = os.path.join(workdir, "sensors.bin")
    with open(source, "w") as f:
        f.write(sdr_source(sensors) + "\n" + discrete_source(discrete))
    subprocess.run([shutil.which("sdrcomp") or "sdrcomp", "-8", "-r", "-o", raw, source],
                   check=True, capture_output=True, timeout=30)
    with open(raw, "rb") as f:
        data = f.read()
    lines, at = [], 0
    while at + 5 <= len(data):
        record = data[at:at + 5 + data[at + 4]]
        lines.append("main_sdr_add 0x20 " + " ".join(f"0x{b:02x}" for b in record))
        at += len(record)
    for number, _, stype, erc, _, _, _, value, thresholds, scanning in sensors:
        enabled = "".join("0" if t is None else "1" for t in reversed(thresholds))
        values = " ".join(str(t or 0) for t in reversed(thresholds))
        lines += [f"sensor_add 0x20 0 {number} {_SENSOR_TYPES[stype]} {erc}",
                  f"sensor_set_threshold 0x20 0 {number} readable {enabled} {values}",
                  f"sensor_set_event_support 0x20 0 {number} enable "
                  f"{'scanning' if scanning else 'no-scanning'} per-state "
                  f"{'0' * 15} {'0' * 15} {'0' * 15} {'0' * 15}",
                  f"sensor_set_value 0x20 0 {number} {value} 0"]
    for number, _, _, code, offsets, asserted in discrete:
        mask = "".join("1" if i in offsets else "0" for i in reversed(range(15)))
        lines += [f"sensor_add 0x20 0 {number} {code} 0x6f",
                  f"sensor_set_event_support 0x20 0 {number} enable scanning per-state "
                  f"{mask} {mask} {mask} {mask}"]
        lines += [f"sensor_set_bit 0x20 0 {number} {bit} 1 0" for bit in asserted]
    return "\n".join(lines) + "\n"


class IpmiSim:
    """One ipmi_sim BMC on 127.0.0.1:`port` with one administrator account."""

    def __init__(self, workdir, port, username, password, power_on=True, sel_entries=0,
                 kg="", sensors=False, discrete=False):
        self.dir = os.path.join(str(workdir), f"ipmi_sim-{port}")
        self.port, self.username, self.password = port, username, password
        self.power_on = power_on
        self.sel_entries = sel_entries
        self.kg = kg  # the BMC key K_g (text, as lan.conf's bmc_key takes it)
        self.sensors = sensors  # SENSORS, with their SDRs
        self.discrete = discrete  # and DISCRETE
        self.proc = None

    def start(self):
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        chassis = os.path.join(self.dir, "chassis.sh")
        with open(chassis, "w") as f:
            f.write(CHASSIS)
        os.chmod(chassis, 0o700)
        with open(os.path.join(self.dir, "power"), "w") as f:
            f.write("1\n" if self.power_on else "0\n")
        conf = os.path.join(self.dir, "lan.conf")
        # the password sits in the config file (mode 0600), never in argv
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(LAN_CONF.format(name=f"bmc{self.port}", port=self.port, chassis=chassis,
                                    guid=f"{self.port:032x}", username=self.username,
                                    password=self.password,
                                    bmc_key=f'    bmc_key "{self.kg}"\n' if self.kg else ""))
        commands = os.path.join(self.dir, "commands.emu")
        with open(commands, "w") as f:
            sdrs = (sdr_commands(self.dir, discrete=DISCRETE if self.discrete else ())
                    if self.sensors else "")
            f.write(COMMANDS.format(sel=sdrs + "".join(
                f"sel_add 0x20 0x02 0x00 0x00 0x00 0x00 0x20 0x00 0x04 "
                f"{SEL_EVENTS[i % len(SEL_EVENTS)]}\n" for i in range(self.sel_entries))))
        self.log = open(os.path.join(self.dir, "ipmi_sim.log"), "w")
        self.proc = subprocess.Popen(
            [shutil.which("ipmi_sim") or "ipmi_sim", "-c", conf, "-f", commands,
             "-s", os.path.join(self.dir, "state"), "-n"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is not None or self.ipmitool(
            "mc", "info", timeout=5).returncode == 0, 20, what=f"ipmi_sim on port {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"ipmi_sim on port {self.port} exited at start "
                               f"(see {self.log.name})")
        return self

    def ipmitool(self, *command, timeout=20):
        """ipmitool against this BMC (suite 3: ipmi_sim has no 17, and without
        -C ipmitool stalls about 10 s on its unanswered Get Channel Cipher Suites)."""
        env = dict(os.environ, IPMI_PASSWORD=self.password)
        kg = ["-y", self.kg.encode().hex()] if self.kg else []
        return subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1",
                               "-p", str(self.port), "-U", self.username, "-E", *kg, *command],
                              env=env, capture_output=True, text=True, timeout=timeout)

    def power(self):
        with open(os.path.join(self.dir, "power")) as f:
            return "on" if f.read().strip() == "1" else "off"

    def chassis_log(self):
        """[(epoch seconds, 'on' or 'off')]: every power change the BMC made."""
        try:
            with open(os.path.join(self.dir, "chassis.log")) as f:
                rows = [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [(float(t), "on" if v == "1" else "off") for t, _, v in rows]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self.log.close()


def inventory_yaml(bmcs, prefix="isim"):
    """An inventory for `bmcs` (passwords in clear: tests allow it)."""
    lines = ["nodes:"]
    for i, bmc in enumerate(bmcs):
        lines.append(f"- {{name: {prefix}-{i:02d}, address: 127.0.0.1, port: {bmc.port}, "
                     f"username: {bmc.username}, password: \"{bmc.password}\"}}")
    return "\n".join(lines) + "\n"


def started(workdir, ports, username, password, **options):
    """Start one ipmi_sim per port and wait for each to answer ipmitool."""
    bmcs = [IpmiSim(workdir, p, username, password, **options) for p in ports]
    for bmc in bmcs:
        bmc.start()
    return bmcs
