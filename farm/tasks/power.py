"""Power: the state poll (Get Chassis Status, bit 0 of the current power
state) and power actions (Chassis Control), which farm.power.control decides."""

import time

from farm import errors
from farm.bmc import codes
from farm.bmc.rmcp import PRIVILEGES
from farm.bmc.session import Request
from farm.model import PollResult, PowerState

NETFN_CHASSIS, GET_CHASSIS_STATUS, CHASSIS_CONTROL = 0x00, 0x01, 0x02
OPERATOR = PRIVILEGES["operator"]
ACTIONS = {"off": 0x00, "on": 0x01, "cycle": 0x02, "reset": 0x03}


def read_power(node, memo, arg):
    """A job program: one command on the node's session (see farm.bmc.session)."""
    response = yield Request(NETFN_CHASSIS, GET_CHASSIS_STATUS)
    if response.code:
        raise codes.refused("Get Chassis Status", response.code)
    if not response.data:
        raise errors.BmcProtocolError("chassis status reply without data")
    return PowerState.ON if response.data[0] & 1 else PowerState.OFF


def act(node, memo, arg):
    """Chassis Control, then the state read back at once (as Ironic reads it
    after a change): the power state after, or None if the read failed.
    `arg` = (action, ...) with action one of ACTIONS."""
    action = arg[0]
    response = yield Request(NETFN_CHASSIS, CHASSIS_CONTROL, bytes([ACTIONS[action]]), acts=True)
    if response.code:
        raise codes.refused(f"power {action}", response.code)
    response = yield Request(NETFN_CHASSIS, GET_CHASSIS_STATUS)
    if response.code or not response.data:
        return None  # the action was taken; the next poll reads the state
    return PowerState.ON if response.data[0] & 1 else PowerState.OFF


act.privilege = OPERATOR  # Chassis Control: the session refuses it below operator


def redfish_power(bmc, arg):
    return bmc.power_state()


def redfish_act(bmc, arg):
    start_at = getattr(arg, "start_at", None)
    if start_at:  # a bulk action's step: leave at the moment Redis set (under a second away)
        time.sleep(min(1.0, max(0.0, start_at - time.monotonic())))
    bmc.reset(arg[0], getattr(arg, "not_after", None))
    try:
        return bmc.power_state()
    except errors.BmcError:
        return None  # the reset was taken; the next poll reads the state


class PowerPoll:
    name = "power"
    drivers = ("ipmi", "redfish")
    programs = {"power": read_power, "power-action": act}
    redfish = {"power": redfish_power, "power-action": redfish_act}

    def __init__(self, settings):
        self.interval = settings.worker.poll_interval

    @staticmethod
    def to_result(outcome):
        return PollResult(node=outcome.node, polled_at=outcome.finished_at,
                          latency=outcome.latency, power_state=outcome.value,
                          error_kind=outcome.error_kind, error=outcome.error)
