"""The power state farm keeps, and the commands operators send: pure rules.

Enforcement (decide) follows a poll of a node that has a desired state:
- never act on an unknown or failed read (a BMC that does not answer says
  nothing about the server; MAAS once powered healthy nodes on after a BMC
  outage because it took "no answer" for "off");
- never act on a node in maintenance;
- after a correction, wait `settle_time` for it to show before trying again;
- after `max_retries` corrections that did not take, put the node in
  maintenance with a reason and stop (an operator clears it).
A worker keeps the attempt counts in memory: a node handed to another
worker starts counting afresh there (at most max_retries more attempts).

Commands (`farm nodes power`, `farm nodes sel-clear`) reach the worker that
owns the node through Redis; `check_command` says whether one may run.
"""

import dataclasses
import typing

POWER_ACTIONS = ("on", "off", "cycle", "reset")
COMMAND_PROGRAMS = {"power": "power-action", "sel-clear": "sel-clear"}
ENFORCER = "farm (desired state)"


class Action(typing.NamedTuple):
    """A power action or SEL clear as its BMC program gets it: what, the
    operator command's id ('' for farm's own), who asked, the monotonic
    time after which no packet of it may leave (the acting lease; None: no
    limit, for the CLI's and tests' own engines), for a bulk action's step
    (farm.power.steps) its (action id, attempt), and the monotonic time before
    which its command may not leave (a step's send time)."""
    action: str
    command_id: str
    who: str
    not_after: float | None = None
    step: tuple | None = None
    start_at: float | None = None


@dataclasses.dataclass(frozen=True)
class Correct:
    action: str      # "on" or "off"
    attempt: int


@dataclasses.dataclass(frozen=True)
class Maintenance:
    reason: str


class Enforcer:
    def __init__(self, max_retries, settle_time):
        self.max_retries = max_retries
        self.settle_time = settle_time
        self.controls = {}    # name -> control dict from Redis (desired, maintenance, ...)
        self.attempts = {}    # name -> corrections made that have not taken yet
        self.settling = {}    # name -> monotonic time until which the last one may settle
        self.unable = {}      # name -> (why farm cannot act on it, the control it had then)

    def set_controls(self, controls):
        self.controls = controls
        for name, (_, had) in list(self.unable.items()):
            if controls.get(name) != had:  # the operator changed something: try again
                del self.unable[name]
        for name in list(self.attempts):
            c = controls.get(name, {})
            if not c.get("desired") or c.get("maintenance"):
                self.attempts.pop(name, None)
                self.settling.pop(name, None)

    def in_maintenance(self, name):
        return bool(self.controls.get(name, {}).get("maintenance"))

    def decide(self, name, ok, power, now):
        """What to do after a power poll of `name` read `power` ("on", "off",
        or None) successfully (`ok`) or not: None, Correct or Maintenance."""
        control = self.controls.get(name) or {}
        desired = control.get("desired")
        if not desired or control.get("maintenance") or name in self.unable:
            return None
        if not ok or power not in ("on", "off"):
            return None  # unknown: never act
        if power == desired:
            self.attempts.pop(name, None)
            self.settling.pop(name, None)
            return None
        if self.settling.get(name, float("-inf")) > now:
            return None
        made = self.attempts.get(name, 0)
        if made >= self.max_retries:
            self.attempts.pop(name, None)
            self.settling.pop(name, None)
            # applied here at once, so no further correction goes out while
            # the write to Redis is on its way
            self.controls[name] = dict(control, maintenance="pending")
            return Maintenance(f"power stayed {power} after {made} attempts to turn it {desired}")
        self.attempts[name] = made + 1
        self.settling[name] = now + self.settle_time
        return Correct(desired, made + 1)

    def settle(self, name, now):
        """A power change just went out for `name` (a correction that waited
        for its slot, an action's cycle or reset): give it `settle_time` to
        show before judging the node's power."""
        self.settling[name] = now + self.settle_time

    def failed(self, name):
        """The BMC refused a correction: let the next poll try again at once."""
        self.settling.pop(name, None)

    def forget(self, name):
        """A correction that never left (fenced): as if it was not decided."""
        if self.attempts.get(name):
            self.attempts[name] -= 1
        self.settling.pop(name, None)

    def cannot_act(self, name, why):
        """The BMC account may not control power: retrying cannot help, and
        no count toward maintenance either (the server is not at fault).
        Stop until the node's control changes."""
        self.attempts.pop(name, None)
        self.settling.pop(name, None)
        self.unable[name] = (why, self.controls.get(name))


def check_command(command, owned, redis_now):
    """None if `command` may run here, else why not (pure)."""
    kind = command.get("kind")
    if kind not in COMMAND_PROGRAMS:
        return f"unknown command {kind!r}"
    if kind == "power" and command.get("action") not in POWER_ACTIONS:
        return f"unknown power action {command.get('action')!r}"
    if float(command.get("expires", 0)) < redis_now:
        return "the command expired before this worker took it"
    if command.get("node") not in owned:
        return f"this worker does not poll {command.get('node')}"
    return None
