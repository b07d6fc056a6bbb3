"""The power-state poll: one periodic call per node."""

import time

from futurist import periodics

from farm import errors
from farm.bmc.ipmi import IpmiClient
from farm.model import PollResult
from farm.tasks import NodeCall

_clients = {}


def _client(timeout, session_idle_max):
    # One client per process: pyghmi's sessions and IO loop are per process.
    key = (timeout, session_idle_max)
    if key not in _clients:
        _clients[key] = IpmiClient(timeout=timeout, session_idle_max=session_idle_max)
    return _clients[key]


def close_clients():
    for client in list(_clients.values()):
        client.close()
    _clients.clear()


@periodics.periodic(spacing=60)
def poll_power(node, timeout=5.0, session_idle_max=25.0):
    """Poll one node's chassis power; a result, never an exception."""
    started = time.monotonic()
    try:
        state = _client(timeout, session_idle_max).get_power_state(node)
        return PollResult(node=node.name, polled_at=time.time(),
                          latency=time.monotonic() - started, power_state=state)
    except errors.BmcError as exc:
        return PollResult(node=node.name, polled_at=time.time(),
                          latency=time.monotonic() - started,
                          error_kind=exc.kind, error=str(exc))
    except Exception as exc:  # one misbehaving BMC must never kill the worker
        return PollResult(node=node.name, polled_at=time.time(),
                          latency=time.monotonic() - started, error_kind="error",
                          error=f"{type(exc).__name__} while polling")


class PowerPoll:
    name = "power"

    def __init__(self, settings):
        w = settings.worker
        self.spacing = w.poll_interval
        self.timeout = w.bmc_timeout
        # A process pool sends a node's polls to any child, so a kept session
        # would mean one session per child per BMC: log out after each poll.
        self.session_idle_max = 0.0 if w.executor == "processes" else w.session_idle_max

    def calls(self, nodes):
        return [NodeCall(poll_power, n, self.spacing, self.timeout, self.session_idle_max)
                for n in nodes]
