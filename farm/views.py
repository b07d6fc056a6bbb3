"""What the operator's commands show, computed from the Store (no click, no
printing): node rows, filters, summaries and the status report. The CLI
renders these; `farm status --watch`, the metrics and a future API can share
them. Nothing here reads a password."""

import collections

from farm import placement


def as_float(value):
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def node_rows(store):
    """One dict per node: inventory (never the password) plus its state."""
    _, all_nodes = store.load_nodes()
    states = store.node_states([n.name for n in all_nodes])
    rows = []
    for node in all_nodes:
        s = states.get(node.name) or {}
        row = node.public()
        row.pop("username")
        # Redis's clock when the result was written: a worker's clock may lie
        row.update(power_state=s.get("power_state") or None,
                   last_polled_at=as_float(s.get("seen_at")) or as_float(s.get("polled_at")),
                   last_ok_at=as_float(s.get("last_ok_at")),
                   last_error=s.get("last_error") or None,
                   error_kind=s.get("error_kind") or None,
                   consecutive_failures=int(s.get("consecutive_failures") or 0))
        rows.append(row)
    return rows


def filter_rows(rows, state=None, stale=False, stale_after=None, now=None):
    """Rows in a power state ("unknown": none yet) and/or stale (pure)."""
    if state is not None:
        rows = [r for r in rows if (r["power_state"] or "unknown") == state]
    if stale:
        rows = [r for r in rows if r["last_polled_at"] is None
                or now - r["last_polled_at"] > stale_after]
    return rows


def freshness_rows(store):
    """Per node only what counts need (name, power, last poll on Redis's
    clock, error kind): names and a few state fields, never an inventory
    entry. For status and summary, which read every node."""
    return [{"name": name, "power_state": power, "last_polled_at": at, "error_kind": kind}
            for name, (power, at, kind) in store.node_freshness(store.node_names()).items()]


def summarize(rows, now):
    """Counts an operator reads first (pure): power states, errors, poll ages."""
    power = collections.Counter(r["power_state"] or "unknown" for r in rows)
    failing = collections.Counter(r["error_kind"] for r in rows if r["error_kind"])
    ages = [now - r["last_polled_at"] for r in rows if r["last_polled_at"] is not None]
    return {"nodes": len(rows), "power": dict(sorted(power.items())),
            "failing": dict(sorted(failing.items())), "never_polled": len(rows) - len(ages),
            "oldest_poll_age": round(max(ages), 1) if ages else None}


def status_report(store, poll_interval, now):
    """Leader, generation, workers and node freshness, as one dict. Reads node
    names and a few state fields only: never an inventory entry (password)."""
    assignment = store.assignment()
    reports = store.worker_reports()
    rows = freshness_rows(store)
    owners = assignment["placement"] if assignment else ()
    per_worker = collections.Counter(
        owners[placement.partition_of(r["name"], len(owners))] for r in rows) if owners else {}
    parts = collections.Counter(owners)
    members = set(assignment["members"]) if assignment else set()
    workers = []
    for member in sorted(members | set(reports)):
        rep = reports.get(member, {})
        beat, skew = rep.get("last_heartbeat"), rep.get("clock_skew") or 0.0
        beat = beat - skew if beat else beat  # the worker's clock, put on Redis's
        workers.append({"id": member, "host": rep.get("host"), "pid": rep.get("pid"),
                        "partitions": parts.get(member, 0) if owners else None,
                        "nodes": per_worker.get(member, 0) if owners else rep.get("nodes"),
                        "last_heartbeat": beat,
                        "heartbeat_age": round(now - beat, 1) if beat else None,
                        "clock_skew": rep.get("clock_skew"),
                        "assigned": member in members})
    summary = summarize(rows, now)
    stale = sum(1 for r in rows if r["last_polled_at"] is not None
                and now - r["last_polled_at"] > 2 * poll_interval)
    return {"leader": store.leader(), "generation": assignment["generation"] if assignment else None,
            "epoch": assignment["epoch"] if assignment else None,
            "partitions": len(owners) or None, "workers": workers,
            "nodes": {"total": summary["nodes"], "never_polled": summary["never_polled"],
                      "stale": stale, "power": summary["power"], "failing": summary["failing"]}}
