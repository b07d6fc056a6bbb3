"""The power-state poll: Get Chassis Status, bit 0 of the current power state."""

from farm import errors
from farm.bmc.session import Request
from farm.model import PollResult, PowerState

NETFN_CHASSIS, GET_CHASSIS_STATUS = 0x00, 0x01


def read_power(node):
    """A job program: one command on the node's session (see farm.bmc.session)."""
    response = yield Request(NETFN_CHASSIS, GET_CHASSIS_STATUS)
    if response.code:
        raise errors.BmcProtocolError(
            f"chassis status refused (completion code 0x{response.code:02x})")
    if not response.data:
        raise errors.BmcProtocolError("chassis status reply without data")
    return PowerState.ON if response.data[0] & 1 else PowerState.OFF


class PowerPoll:
    name = "power"
    program = staticmethod(read_power)

    def __init__(self, settings):
        self.interval = settings.worker.poll_interval

    @staticmethod
    def to_result(outcome):
        return PollResult(node=outcome.node, polled_at=outcome.finished_at,
                          latency=outcome.latency, power_state=outcome.value,
                          error_kind=outcome.error_kind, error=outcome.error)
