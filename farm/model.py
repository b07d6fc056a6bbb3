"""Values that cross module and process boundaries (all frozen, all picklable)."""

import dataclasses
import enum


class PowerState(str, enum.Enum):
    ON = "on"
    OFF = "off"


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    address: str
    port: int = 623
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    password_file: str = ""  # read on the worker's host instead of storing a password
    driver: str = "ipmi"     # or "redfish": address is then http(s)://host[:port]
    system_id: str = ""      # redfish: the system's id or path ("": the only one)
    verify_tls: str = ""     # redfish: "" verify (default), "false", or a CA bundle path
    cipher_suites: tuple = ()  # ipmi: suites to propose, in order (): [worker] cipher_suites
    privilege: str = ""      # ipmi: exact session level ("": the fleet's, with fallback)
    kg: str = dataclasses.field(default="", repr=False)  # ipmi: the BMC key K_g, hex
    workarounds: tuple = ()  # ipmi: FreeIPMI-named workarounds for this BMC
    labels: tuple = ()       # ((key, value), ...) sorted: where it is, what it is for
    site: str = "default"    # the BMC network it is on: polled only by that site's workers

    IPMI_SETTINGS = ("cipher_suites", "privilege", "workarounds")
    def public(self):
        """The node as shown to operators: never the password."""
        out = {"name": self.name, "site": self.site, "address": self.address,
               "port": self.port, "username": self.username}
        if self.driver != "ipmi":
            out.update(driver=self.driver, system_id=self.system_id,
                       verify_tls=self.verify_tls or "true")
        out.update({k: list(v) if isinstance(v, tuple) else v
                    for k, v in self.extra().items() if k in self.IPMI_SETTINGS})
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.kg:
            out["kg"] = "(set)"  # never the key itself
        return out

    def extra(self):
        """The fields beyond IPMI's basics, as stored (only those not at
        their default; tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in (("driver", self.driver), ("system_id", self.system_id),
                             ("verify_tls", self.verify_tls),
                             ("cipher_suites", self.cipher_suites),
                             ("privilege", self.privilege), ("workarounds", self.workarounds),
                             ("site", self.site))
                if v and not (k == "driver" and v == "ipmi") and not (k == "site" and v == "default")} | (
            {"labels": dict(self.labels)} if self.labels else {})


class _Result:
    """What every task's result has besides its fields: `kind` (the task)
    and `ok`."""

    kind = ""

    @property
    def ok(self):
        return self.error_kind is None


@dataclasses.dataclass(frozen=True)
class PollResult(_Result):
    """The outcome of one poll of one node."""

    node: str
    polled_at: float                  # epoch seconds when the poll finished
    latency: float                    # seconds the poll took
    power_state: PowerState | None = None
    error_kind: str | None = None     # None on success, else BmcError.kind
    error: str | None = None          # a message safe to show (no secrets)

    kind = "power"


@dataclasses.dataclass(frozen=True)
class SensorResult(_Result):
    """One sensors pass of one node: its readings, or why there are none."""

    node: str
    polled_at: float
    latency: float
    readings: tuple = ()              # dicts: key, name, number, id, type, code, value, unit,
                                      # status, level, state
    error_kind: str | None = None
    error: str | None = None
    sdr_read: bool = False            # the SDR repository was (re)read this pass
    watts: float | str | None = None  # DCMI power reading, "inactive" or "unsupported"
    device: dict | None = None        # who the BMC is, when (re)read this pass

    kind = "sensors"


@dataclasses.dataclass(frozen=True)
class SelResult(_Result):
    """One SEL pass of one node: the entries new since its cursor."""

    node: str
    polled_at: float
    latency: float
    entries: tuple = ()               # dicts from farm.bmc.sel.decode, oldest first
    cursor: tuple | None = None       # (last id, its timestamp, added, erased) or None
    cleared: bool = False             # the log was cleared since the last pass
    sizes: dict | None = None         # {"count": entries in the log, "free": bytes free or None}
    error_kind: str | None = None
    error: str | None = None

    kind = "sel"

    def after(self, older):
        """This result with an older, unwritten one's entries in front (while
        Redis is away, SEL entries accumulate; power and sensor results only
        keep the newest)."""
        entries = (older.entries + self.entries)[-MAX_PENDING_SEL:]
        return dataclasses.replace(self, entries=entries, cleared=self.cleared or older.cleared,
                                   cursor=self.cursor or older.cursor)


MAX_PENDING_SEL = 1000  # SEL entries per node kept while Redis is away
