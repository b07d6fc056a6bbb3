"""The acting lease at the packet: a session (farm/bmc/session.py) driven
by a stand-in engine whose clock the test moves, with the real power
program and RMCP+ codec. What it decides: a command not yet sent when the
lease ran out is "not sent" (a bulk step goes back, to be sent once later);
one that went out and is unanswered is "sent, the BMC may have acted" (a
second send would be a second command at the BMC); the state read back
after an answered command is never held back by the lease."""

import socket

from farm import errors
from farm.bmc.engine import EngineConfig
from farm.bmc.session import ACTIVE, Job, Response, Session
from farm.model import Node
from farm.power.control import Action
from farm.tasks.power import act

NODE = Node("n0", "127.0.0.1", 623, "admin", "pw")


class Engine:
    """What a Session asks of its engine, with a clock the test sets."""

    def __init__(self):
        self.config = EngineConfig(timeout=10, retry_interval=0.5)
        self.timeouts, self.stats = {}, {}
        self.clock, self.sent, self.timers, self.outcomes = 100.0, [], [], []

    def now(self):
        return self.clock

    def at(self, when, session, kind, arg):
        self.timers.append((when, kind, arg))

    def send(self, session, packet):
        self.sent.append(packet)

    def finished(self, session, job, value, error):
        self.outcomes.append((value, error))


def active_session(engine):
    s = Session(engine, ("127.0.0.1", 623), socket.AF_INET)
    s.state, s.granted, s.last_activity = ACTIVE, 4, engine.clock
    s.creds = (NODE.username.encode(), NODE.password.encode(), b"")
    return s


def retry_due(engine, session):
    """Move the clock to the packet's retry timer and fire it."""
    when, _, token = [t for t in engine.timers if t[1] == "retry"][-1]
    engine.clock = when
    session.retry(token, when)


def test_not_sent_before_the_lease_ran_out_is_fenced():
    engine = Engine()
    session = active_session(engine)
    session.begin(Job("power-action", NODE, act, arg=Action("off", "", "t", 99.0)), 100.0)
    assert engine.sent == []
    (_, error), = engine.outcomes
    assert isinstance(error, errors.Fenced)


def test_a_sent_command_unanswered_past_the_lease_is_not_reported_unsent():
    engine = Engine()
    session = active_session(engine)
    session.begin(Job("power-action", NODE, act, arg=Action("off", "", "t", 100.2)), 100.0)
    assert len(engine.sent) == 1  # the Chassis Control left inside the lease
    retry_due(engine, session)    # 100.5: no answer, and the lease ran out at 100.2
    assert len(engine.sent) == 1  # not sent again
    (_, error), = engine.outcomes
    assert isinstance(error, errors.BmcTimeout) and not isinstance(error, errors.Fenced)
    assert "may have acted" in str(error)


def test_the_read_back_after_an_answered_command_is_not_held_by_the_lease():
    engine = Engine()
    session = active_session(engine)
    session.begin(Job("power-action", NODE, act, arg=Action("off", "", "t", 100.2)), 100.0)
    engine.clock = 100.4  # the answer comes after the lease ran out
    session._step(Response(0, b""))  # noqa: SLF001 (the answer, past the packet layer)
    assert len(engine.sent) == 2 and engine.outcomes == []  # Get Chassis Status went out
    session._step(Response(0, b"\x00"))  # noqa: SLF001
    (value, error), = engine.outcomes
    assert error is None and value.value == "off"
