"""Periodic tasks a worker runs, found through the `farm.tasks` entry-point
namespace: a new task is a module plus one line in setup.py.

A task class has a `name`, `programs` (name -> generator function of
(node, memo, arg) that yields farm.bmc.session.Requests and returns a value,
run by the poll engine on the node's one session; the one named like the
task is its periodic poll, others are actions run on request), is built with
the worker's Settings (for its `interval`), and turns an engine Outcome of
its poll into what the worker writes (`to_result`).
"""

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


def programs(task_classes):
    """program name -> generator function, over the given task classes."""
    out = {}
    for cls in task_classes:
        out.update(cls.programs)
    return out


def redfish_programs(task_classes):
    """program name -> fn(farm.bmc.redfish.RedfishBmc, arg), for Redfish nodes."""
    out = {}
    for cls in task_classes:
        out.update(getattr(cls, "redfish", {}))
    return out
