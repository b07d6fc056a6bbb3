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

    def public(self):
        """The node as shown to operators: never the password."""
        return {"name": self.name, "address": self.address, "port": self.port,
                "username": self.username}


@dataclasses.dataclass(frozen=True)
class PollResult:
    """The outcome of one poll of one node."""

    node: str
    polled_at: float                  # epoch seconds when the poll finished
    latency: float                    # seconds the poll took
    power_state: PowerState | None = None
    error_kind: str | None = None     # None on success, else BmcError.kind
    error: str | None = None          # a message safe to show (no secrets)

    @property
    def ok(self):
        return self.error_kind is None
