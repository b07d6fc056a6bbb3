"""Waves of a bulk power action (pure): which node goes when.

As xCAT's `syspowermaxnodes`/`syspowerinterval`: at most `batch` nodes a
wave, waves `interval` seconds apart, so a room does not switch on at once
(Slurm's power-saving guide: a 1,000-node start can draw megawatts within
seconds). With `spread_by`, each wave is filled round-robin across the values
of that label (its PDUs, say), so no PDU takes a whole wave while others
wait; nodes without the label form one group of their own.
"""

import dataclasses
import math

# Seconds added between waves. Workers send each command at the moment Redis
# set for it, give or take some milliseconds (a busy engine, two cores).
# Redis keeps the send moments of any `interval + GUARD / 2` seconds to at
# most `batch` (farm.power.steps), so a command that arrives up to GUARD / 2 late
# still leaves every `interval`-second window at the BMCs with `batch` at
# most; the other half lets a wave whose first commands went a little late
# start the next one on time instead of pushing every later wave back.
GUARD = 0.1
# The longest pause between waves an operator may ask for: an hour. A plan is
# a node lock until it ends, so a pause of days (or an infinite one) would
# hold its nodes out of every other plan and command.
MAX_INTERVAL = 3600.0
# The most nodes a wave may hold (a number, not a node count: a one-wave
# plan says its own size).
MAX_BATCH = 1_000_000


def check(batch, interval):
    """None, or why `batch` and `interval` make no plan (pure)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
        return f"batch must be a whole number from 1 to {MAX_BATCH:,}, not {batch!r}"
    if not isinstance(interval, (int, float)) or not math.isfinite(interval) \
            or not 0 <= interval <= MAX_INTERVAL:
        return f"interval must be a number of seconds from 0 to {MAX_INTERVAL:g}, not {interval!r}"
    return None


@dataclasses.dataclass(frozen=True)
class Step:
    node: str
    wave: int          # 0, 1, ...
    not_before: float  # epoch seconds: start + wave * interval


def waves(names, batch, interval, start, spread_by=None, labels_of=None):
    """[Step] for `names` (each once): waves of at most `batch`, `interval`
    seconds apart from `start` (plus GUARD); round-robin across
    `spread_by`'s values."""
    wrong = check(batch, interval)
    if wrong:
        raise ValueError(wrong)
    names = sorted(set(names))
    groups = {}
    for name in names:
        value = (labels_of(name) or {}).get(spread_by, "") if spread_by else ""
        groups.setdefault(value, []).append(name)
    queues = [list(reversed(groups[v])) for v in sorted(groups)]
    steps, wave, turn, left = [], 0, 0, len(names)
    while left:
        taken = 0
        while taken < batch and left:
            # the round-robin goes on across waves: every group gets its turn
            queue = queues[turn % len(queues)]
            turn += 1
            if queue:
                steps.append(Step(queue.pop(), wave, start + wave * (interval + GUARD)))
                taken += 1
                left -= 1
        wave += 1
    return steps


def summary(steps):
    """(waves, nodes, seconds from the first wave to the last)."""
    if not steps:
        return 0, 0, 0.0
    return steps[-1].wave + 1, len(steps), steps[-1].not_before - steps[0].not_before
