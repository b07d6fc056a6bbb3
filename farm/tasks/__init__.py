"""Periodic tasks a worker runs on futurist, found through the `farm.tasks`
entry-point namespace: a new task is a module plus one line in setup.py.

A task class is built with the worker's Settings and offers
`calls(nodes) -> list[NodeCall]`; each call runs on the worker's executor and
returns a PollResult (or None), which the worker writes to Redis.
"""

import zlib
from importlib import metadata

ENTRY_POINT_GROUP = "farm.tasks"


def load_tasks(names=None):
    """name -> task class for every registered task (or only `names`)."""
    found = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if names is not None:
        missing = sorted(set(names) - set(found))
        if missing:
            raise LookupError(f"unknown task(s): {', '.join(missing)}; known: {', '.join(sorted(found))}")
        found = {n: found[n] for n in names}
    return {name: ep.load() for name, ep in sorted(found.items())}


def phase(name, spacing):
    """A node's fixed offset within the interval, from its name (pure), so
    10,000 nodes do not all fire at once and a rebuild keeps each node's slot."""
    return (zlib.crc32(name.encode("utf-8")) / 2**32) * spacing


class NodeCall:
    """One periodic callable for one node: picklable (a module-level task
    function and plain values), so it runs in a child process as well.

    It carries futurist's periodic attributes itself because the spacing comes
    from configuration, not from the decorator's literal.
    """

    def __init__(self, task_fn, node, spacing, *extra):
        self.task_fn = task_fn
        self.node = node
        self.extra = extra
        self._is_periodic = True
        self._periodic_spacing = spacing
        self._periodic_run_immediately = False
        self.phase = phase(node.name, spacing)
        self.consecutive_failures = 0  # kept in the parent, for backoff
        self.__name__ = f"{getattr(task_fn, '__name__', 'task')}[{node.name}]"

    def __call__(self):
        return self.task_fn(self.node, *self.extra)
