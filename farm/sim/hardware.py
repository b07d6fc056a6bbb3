"""What a simulated BMC manages, apart from its sessions: chassis power that
takes a while to change, an SDR repository with temperature, fan, voltage
and power-supply sensors whose readings drift and sometimes cross their
thresholds, and a System Event Log that gains entries (on power changes and
now and then), wraps when full and can be cleared.

Both simulator engines hand every IPMI command here (`handle`), so pyghmi's
server and farm's lean one serve the same hardware. Records follow the IPMI
v2.0 specification (section 43 for SDRs, 32 for the SEL), so ipmitool's
`sdr list`, `sel list` and `chassis power` read them as they would a real
BMC's. Everything is computed from the clock when asked (nothing runs per
BMC between requests), which keeps 100,000 simulated BMCs cheap.
"""

import dataclasses
import math
import struct
import threading
import time
import uuid
import zlib

APP, CHASSIS, SENSOR, STORAGE, GROUP = 0x06, 0x00, 0x04, 0x0A, 0x2C
DCMI = 0xDC  # the DCMI group extension id, first byte of every DCMI request and reply
# Who the simulated BMCs say they are (IPMI 2.0 20.1): OpenBMC's IANA
# enterprise number (49871), a product id of ours, firmware 2.14.
MANUFACTURER, PRODUCT, FIRMWARE = 49871, 0x0F42, (2, 0x14)
SYSTEM_FIRMWARE = "1.0.0"  # the BIOS version; ipmi_exporter reads digits and dots only
APP_IDENTITY = (0x01, 0x08, 0x37, 0x41, 0x42, 0x59)  # Device ID, GUIDs, Channel, System Info
SEL_CAPACITY = 512
_ACPI_SENSOR, _MEMORY_SENSOR, _LOG_SENSOR = 0x30, 0x40, 0x41
INVALID_RESERVATION, NOT_PRESENT, INVALID = 0xC5, 0xCB, 0xC1
INVALID_FIELD, PARAMETER_NOT_SUPPORTED = 0xCC, 0x80


@dataclasses.dataclass(frozen=True)
class SensorSpec:
    number: int
    name: str
    type: int              # sensor type (0x01 temperature, 0x02 voltage, 0x04 fan, ...)
    unit: int              # base unit code (1 degrees C, 4 Volts, 18 RPM)
    entity: int
    m: int                 # value = m * raw * 10**r_exp (B = 0)
    r_exp: int
    base: float            # reading around which it drifts
    swing: float           # amplitude of the drift (hot BMCs swing wider)
    thresholds: tuple      # (lnr, lcr, lnc, unc, ucr, unr) in units; None = not set
    discrete: bool = False


SENSORS = (
    SensorSpec(1, "CPU Temp", 0x01, 1, 0x03, 1, 0, 48, 6, (None, None, None, 75, 85, 95)),
    SensorSpec(2, "Inlet Temp", 0x01, 1, 0x07, 1, 0, 24, 2, (None, None, None, 40, 45, 50)),
    SensorSpec(3, "FAN1", 0x04, 18, 0x1D, 100, 0, 6000, 600, (None, 500, 1000, None, None, None)),
    SensorSpec(4, "FAN2", 0x04, 18, 0x1D, 100, 0, 6100, 600, (None, 500, 1000, None, None, None)),
    SensorSpec(5, "12V", 0x02, 4, 0x07, 6, -2, 12.0, 0.12, (10.8, 11.1, 11.4, 12.6, 12.9, 13.2)),
    SensorSpec(6, "3.3V", 0x02, 4, 0x07, 2, -2, 3.3, 0.04, (2.9, 3.0, 3.1, 3.5, 3.6, 3.7)),
    SensorSpec(7, "PS1 Status", 0x08, 0, 0x0A, 1, 0, 0, 0, (None,) * 6, discrete=True),
)
HOT_SWING = {1: 40, 3: 5800}  # a hot BMC's CPU runs past UNC/UCR and FAN1 dips below LCR


def _raw(spec, value):
    return max(0, min(255, round(value / (spec.m * 10 ** spec.r_exp))))


def quantize(spec, value):
    """`value` as the sensor's raw byte would give it back."""
    return round(_raw(spec, value) * spec.m * 10 ** spec.r_exp, 6)


def sdr_record(record_id, spec):
    """The SDR of one sensor: a full record (type 01h) for a threshold
    sensor, a compact one (02h) for a discrete one."""
    name = spec.name.encode("ascii")
    key = bytes([0x20, 0x00, spec.number, spec.entity, 1, 0x7F])
    if spec.discrete:
        body = key + bytes([0x40, spec.type, 0x6F]) + struct.pack("<HHH", 0x0003, 0x0003, 0x0003)
        body += bytes([0x00, spec.unit, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xC0 | len(name)]) + name
        rtype = 0x02
    else:
        limits = spec.thresholds
        mask = sum(1 << bit for bit, v in zip((2, 1, 0, 3, 4, 5), limits, strict=True) if v is not None)
        raw = [_raw(spec, v) if v is not None else 0 for v in limits]
        m, rexp = spec.m, spec.r_exp & 0x0F
        body = key + bytes([0x44, spec.type, 0x01]) + struct.pack("<HH", 0x7000, 0x7000)
        body += bytes([mask, mask, 0x00, spec.unit, 0, 0, m & 0xFF, (m >> 8 & 3) << 6, 0, 0, 0,
                       rexp << 4, 0, 0, 0, 0, 255, 0])
        body += bytes([raw[5], raw[4], raw[3], raw[0], raw[1], raw[2], 0, 0, 0, 0, 0,
                       0xC0 | len(name)]) + name
        rtype = 0x01
    return struct.pack("<HBBB", record_id, 0x51, rtype, len(body)) + body


# the same on every BMC. Record ids are the repository's, not the sensor
# numbers (a repository numbers records as they are added; readers such as
# FreeIPMI and ipmi_exporter label a sensor by its record id): from 0x10 here
FIRST_RECORD = 0x10
SDR_RECORDS = [(FIRST_RECORD + i, sdr_record(FIRST_RECORD + i, s)) for i, s in enumerate(SENSORS)]


class ControlJournal:
    """Every Chassis Control the simulated BMCs receive, one line each,
    `<epoch seconds> <bmc name> <action>`: what the BMCs saw, for tests and
    benchmarks to count (not what farm says it sent). The time is when the
    packet reached the BMC: the kernel's receive time on the lean engine,
    the moment it is handled on the others."""

    NAMES = {0: "off", 1: "on", 2: "cycle", 3: "reset", 5: "soft"}

    def __init__(self, path):
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (kept open)
        self._lock = threading.Lock()

    def __call__(self, name, action, at=None):
        """`at`: when the packet reached the BMC (the kernel's receive time),
        else now."""
        with self._lock:
            self._file.write(f"{at or time.time():.6f} {name} {self.NAMES.get(action, action)}\n")

    @staticmethod
    def read(path):
        """[(epoch seconds, bmc name, action)] from a journal file."""
        with open(path, encoding="utf-8") as f:
            return [(float(t), name, action) for t, name, action in (line.split() for line in f)]


class Hardware:
    """One BMC's chassis, sensors and event log.

    `power_delay`: seconds a power change takes (the state reads the old
    value until then). `sensor_period`: seconds of one drift cycle (0: the
    readings stand still). `hot`: this BMC's CPU runs past its thresholds
    for part of each cycle. `sel_interval`: seconds between the entries the
    log gains by itself (0: only on power changes and clears)."""

    def __init__(self, name, powered=True, power_delay=0.0, sensor_period=600.0, hot=False,
                 sel_interval=0.0, clock=time.time, journal=None):
        self.name = name
        self.journal = journal     # ControlJournal: every Chassis Control received
        self.received_at = None    # the packet being handled arrived then (lean engine)
        self.clock = clock
        self.powered = powered
        self.power_delay = power_delay
        self.sensor_period = sensor_period
        self.hot = hot
        self.sel_interval = sel_interval
        self.phase = zlib.crc32(name.encode()) / 2**32
        self.pending = None        # (powered, at) while a power change is under way
        self.sel = []              # [(record id, 16-byte record)], oldest first
        self.next_id = 1
        self.sel_added = self.sel_erased = 0
        self.overflowed = False
        self.reservation = 0
        self.born = clock()
        self.sel_made = 0          # how many of the periodic entries exist already
        self.power_changes = 0
        self.commands = 0          # for `farm-sim`'s exit stats: how hard farm pressed
        self.last_command = None
        self.min_gap = None        # shortest time between two commands (monotonic)

    # -- chassis ------------------------------------------------------------
    def power_state(self):
        if self.pending is not None and self.clock() >= self.pending[1]:
            self.powered = self.pending[0]
            self.pending = None
            self._log_power(self.powered)
        return self.powered

    def control(self, action):
        """Chassis Control: 0 off, 1 on, 2 cycle, 3 reset, 5 soft off."""
        now = self.clock()
        if self.journal is not None:
            self.journal(self.name, action, self.received_at)
        current = self.power_state()
        target = {0: False, 1: True, 2: True, 3: current, 5: False}.get(action)
        if target is None:
            return INVALID
        self.power_changes += 1
        if action == 2 and current:
            self._log_power(False)  # the off half of a cycle
            if self.power_delay > 0:
                # IPMI 2.0, 28.3: a cycle powers down, then up after at least
                # a second: the server reads off until it comes back
                self.powered = False
        if self.power_delay <= 0:
            self.powered = target
            if action != 3:
                self._log_power(target)
        else:
            self.pending = (target, now + self.power_delay)
        return 0

    def _log_power(self, on):
        # ACPI power state sensor: offset 0 S0/G0 working, 6 S4/S5 soft-off
        self.add_sel(0x22, _ACPI_SENSOR, 0x6F, 0x00 if on else 0x06)

    # -- sensors ------------------------------------------------------------
    def reading(self, spec, now=None):
        if spec.discrete:
            return 0
        if self.sensor_period <= 0:
            return spec.base
        now = self.clock() if now is None else now
        swing = HOT_SWING.get(spec.number, spec.swing) if self.hot else spec.swing
        angle = 2 * math.pi * (now / self.sensor_period + self.phase + spec.number / 7)
        return spec.base + swing * math.sin(angle)

    def sensor_reading(self, number):
        spec = next((s for s in SENSORS if s.number == number), None)
        if spec is None:
            return NOT_PRESENT, b""
        if spec.discrete:  # state 0: presence detected
            return 0, bytes([0x00, 0xC0, 0x01, 0x80])
        raw = _raw(spec, self.reading(spec))
        status = 0
        lnr, lcr, lnc, unc, ucr, unr = (None if v is None else _raw(spec, v) for v in spec.thresholds)
        for bit, limit, low in ((0, lnc, True), (1, lcr, True), (2, lnr, True),
                                (3, unc, False), (4, ucr, False), (5, unr, False)):
            if limit is not None and (raw <= limit if low else raw >= limit):
                status |= 1 << bit
        return 0, bytes([raw, 0xC0, status, 0x80])

    # -- event log ------------------------------------------------------------
    def add_sel(self, sensor_type, sensor, event_type, offset, deassert=False, now=None):
        now = int(self.clock() if now is None else now)
        rid = self.next_id
        self.next_id = self.next_id % 0xFFFE + 1
        record = struct.pack("<HBIHBBBBBBB", rid, 0x02, now, 0x0020, 0x04, sensor_type, sensor,
                             (0x80 if deassert else 0) | event_type, offset, 0xFF, 0xFF)
        self.sel.append((rid, record))
        if len(self.sel) > SEL_CAPACITY:  # full: the oldest is overwritten
            del self.sel[0]
            self.overflowed = True
        self.sel_added = now

    def _grow_sel(self):
        """The entries the log gained by itself since the last look."""
        if self.sel_interval <= 0:
            return
        due = int((self.clock() - self.born) / self.sel_interval)
        for i in range(self.sel_made, due):
            at = self.born + (i + 1) * self.sel_interval
            if i % 2:
                self.add_sel(0x0C, _MEMORY_SENSOR, 0x6F, 0x00, now=at)  # correctable ECC
            else:  # CPU Temp: upper non-critical going high (trigger reading in byte 2)
                self.add_sel(0x01, 1, 0x01, 0x57, now=at)
        self.sel_made = max(self.sel_made, due)

    def sel_records(self):
        """[(record id, 16-byte record)], oldest first, after the entries the
        log gained by itself (what a Redfish LogService lists)."""
        self._grow_sel()
        return list(self.sel)

    def sensor_value(self, spec):
        """A threshold sensor's reading as its ADC gives it (the unit value
        of its raw byte), which IPMI and Redfish report alike."""
        return quantize(spec, self.reading(spec))

    def clear_sel(self):
        self.sel, self.overflowed = [], False
        self.sel_erased = int(self.clock())
        self.add_sel(0x10, _LOG_SENSOR, 0x6F, 0x02)  # event logging: log area reset/cleared

    # -- commands -------------------------------------------------------------
    def handle(self, netfn, cmd, data):
        """(completion code, response data) of one IPMI command, or None for
        a command this hardware does not know (the engine answers C1h)."""
        now = time.monotonic()
        if self.last_command is not None:
            gap = now - self.last_command
            self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
        self.last_command = now
        self.commands += 1
        if netfn == APP and cmd in APP_IDENTITY:
            return self.identity(cmd, data)
        if netfn == CHASSIS and cmd == 0x01:
            return 0, bytes([0x01 if self.power_state() else 0x00, 0x00, 0x00])
        if netfn == CHASSIS and cmd == 0x02:
            return (self.control(data[0]), b"") if data else (INVALID, b"")
        if netfn == SENSOR and cmd == 0x2D and data:
            return self.sensor_reading(data[0])
        if netfn == GROUP and cmd == 0x02 and data[:1] == bytes([DCMI]):
            return self.power_reading()
        if netfn == STORAGE:
            return self._storage(cmd, data)
        return None

    def identity(self, cmd, data):
        """Get Device ID, Get Device GUID, Get System GUID, Get Channel
        Access and Info, and Get System Info Parameters (IPMI 2.0 20.1, 20.8,
        22.14, 22.23, 22.24, 22.25), as a BMC that provides SDRs, a SEL and a
        chassis answers."""
        if cmd == 0x01:
            return 0, bytes([0x20, 0x01, FIRMWARE[0], FIRMWARE[1], 0x02, 0x87,
                             *MANUFACTURER.to_bytes(3, "little"), *PRODUCT.to_bytes(2, "little"),
                             0, 0, 0, 0])
        if cmd in (0x08, 0x37):  # the same GUID for both: one board, one BMC;
            # IPMI sends the RFC 4122 bytes least significant first (20.8)
            return 0, uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}.farm-sim").bytes[::-1]
        if cmd == 0x41:  # Get Channel Access: always available, alerting off, up to admin
            channel = data[0] & 0x0F if data else 0
            return (0, bytes([0x22, 0x04])) if channel in (0x01, 0x0E) else (INVALID_FIELD, b"")
        if cmd == 0x42:  # Get Channel Info: channel 1 is the LAN channel (0x0E: this one)
            channel = data[0] & 0x0F if data else 0x0E
            if channel not in (0x01, 0x0E):
                return INVALID_FIELD, b""
            # 802.3 LAN, IPMB-1.0 protocol, multi-session; IPMI's own IANA number (7154)
            return 0, bytes([0x01, 0x04, 0x01, 0x80, 0xF2, 0x1B, 0x00, 0x00, 0x00])
        if cmd == 0x59 and len(data) >= 4:  # Get System Info Parameters
            revision = 0x11
            if data[0] & 0x80:
                return 0, bytes([revision])  # parameter revision only
            if data[1] == 1 and data[2] == 0:  # system firmware version, first block
                text = SYSTEM_FIRMWARE.encode()
                return 0, bytes([revision, 0, 0x00, len(text)]) + text.ljust(14, b"\0")
            if data[1] == 1:
                return 0, bytes([revision, data[2]]) + bytes(16)
            return PARAMETER_NOT_SUPPORTED, b""
        return INVALID_FIELD, b""

    def watts(self, now=None):
        """What the server draws: about 200 W on, drifting with its sensors'
        cycle; standby power (8 W) off."""
        if not self.power_state():
            return 8.0
        now = self.clock() if now is None else now
        if self.sensor_period <= 0:
            return 200.0
        return 200.0 + 40.0 * math.sin(2 * math.pi * (now / self.sensor_period + self.phase))

    def power_reading(self):
        """DCMI Get Power Reading (DCMI 1.5, 6.6.1), system power statistics:
        current, minimum, maximum and average watts, a timestamp, the period
        in ms, and bit 6 of the state byte: power measurement active."""
        now = self.clock()
        current = round(self.watts(now))
        low, high = (8, 8) if current == 8 else (160, 240)
        return 0, struct.pack("<BHHHHIIB", DCMI, current, low, high, current, int(now),
                              int((now - self.born) * 1000) & 0xFFFFFFFF, 0x40)

    def _storage(self, cmd, data):
        if cmd in (0x20, 0x40):  # Get SDR Repository Info / Get SEL Info
            if cmd == 0x40:
                self._grow_sel()
            count, added, erased = ((len(SENSORS), int(self.born), int(self.born)) if cmd == 0x20
                                    else (len(self.sel), self.sel_added, self.sel_erased))
            free = 0 if cmd == 0x20 else (SEL_CAPACITY - count) * 16
            flags = 0x02 | (0x80 if cmd == 0x40 and self.overflowed else 0)
            return 0, struct.pack("<BHHIIB", 0x51, count, free, added, erased, flags)
        if cmd in (0x22, 0x42):  # Reserve SDR Repository / Reserve SEL
            self.reservation = self.reservation % 0xFFFF + 1
            return 0, struct.pack("<H", self.reservation)
        if cmd in (0x23, 0x43) and len(data) >= 6:  # Get SDR / Get SEL Entry
            _, rid, offset, count = struct.unpack("<HHBB", data[:6])
            if cmd == 0x23:
                records = SDR_RECORDS
            else:
                self._grow_sel()
                records = self.sel
            return self._entry(records, rid, offset, count)
        if cmd == 0x47 and len(data) >= 6:  # Clear SEL
            reservation = struct.unpack("<H", data[:2])[0]
            if data[2:5] != b"CLR" or reservation != self.reservation:
                return INVALID_RESERVATION, b""
            if data[5] == 0xAA:
                self.clear_sel()
            return 0, b"\x01"  # erasure completed
        if cmd == 0x48:  # Get SEL Time
            return 0, struct.pack("<I", int(self.clock()))
        return None

    @staticmethod
    def _entry(records, rid, offset, count):
        if not records:
            return NOT_PRESENT, b""
        ids = [r for r, _ in records]
        if rid == 0x0000:
            index = 0
        elif rid == 0xFFFF:
            index = len(records) - 1
        elif rid in ids:
            index = ids.index(rid)
        else:
            return NOT_PRESENT, b""
        nxt = ids[index + 1] if index + 1 < len(ids) else 0xFFFF
        record = records[index][1]
        end = len(record) if count == 0xFF else offset + count
        return 0, struct.pack("<H", nxt) + record[offset:end]


def stats(hardware, in_flight_max=None):
    """What farm-sim reports at exit about how farm used its BMCs."""
    gaps = [h.min_gap for h in hardware if h.min_gap is not None]
    out = {"commands": sum(h.commands for h in hardware),
           "power_changes": sum(h.power_changes for h in hardware),
           "min_command_gap_ms": round(min(gaps) * 1000, 3) if gaps else None}
    if in_flight_max is not None:
        out["max_commands_in_flight_per_bmc"] = in_flight_max
    return out
