"""Waves of a bulk power action (pure): which node goes when.

As xCAT's `syspowermaxnodes`/`syspowerinterval`: at most `batch` nodes a
wave, waves `interval` seconds apart, so a room does not switch on at once
(Slurm's power-saving guide: a 1,000-node start can draw megawatts within
seconds). With `spread_by`, each wave is filled round-robin across the values
of that label (its PDUs, say), so no PDU takes a whole wave while others
wait; nodes without the label form one group of their own.
"""

import dataclasses

# Seconds added between waves. Workers send each command at the moment Redis
# set for it, give or take some milliseconds (a busy engine, two cores).
# Redis keeps the send moments of any `interval + GUARD / 2` seconds to at
# most `batch` (farm.power.steps), so a command that arrives up to GUARD / 2 late
# still leaves every `interval`-second window at the BMCs with `batch` at
# most; the other half lets a wave whose first commands went a little late
# start the next one on time instead of pushing every later wave back.
GUARD = 0.1


@dataclasses.dataclass(frozen=True)
class Step:
    node: str
    wave: int          # 0, 1, ...
    not_before: float  # epoch seconds: start + wave * interval


def waves(names, batch, interval, start, spread_by=None, labels_of=None):
    """[Step] for `names` (each once): waves of at most `batch`, `interval`
    seconds apart from `start` (plus GUARD); round-robin across
    `spread_by`'s values."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if interval < 0:
        raise ValueError("interval must not be negative")
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
