"""What the operator's commands show, computed from the Store (no click, no
printing): node rows, filters, summaries and the status report. The CLI
renders these; `farm status --watch`, the metrics and a future API can share
them. Nothing here reads a password."""

import collections

from farm.coordination.placement import DEFAULT_SITE
from farm.coordination.placement import owner_of as site_owner
from farm.fleet import selection


def as_float(value):
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def select(store, text):
    """The sorted names a selection picks (farm.fleet.selection), reading the name
    index, and the label index only when the selection has label terms."""
    items = selection.parse(text)
    store.upgrade()  # an older farm gets its name index first
    named = selection.named(items)
    # names alone: look up only those (a range of 1,000 is 1,000 look-ups, not 100,000)
    known = store.existing_names(named) if named is not None else store.all_names()
    return selection.resolve(items, known, _StoreLabels(store))


class _StoreLabels:
    """resolve()'s label look-ups, from the Store's key=value sets."""

    def __init__(self, store):
        self.members, self.values = store.label_members, store.label_values


def node_rows(store, names=None):
    """One dict per node (all, or `names`): inventory (never the password)
    plus its state."""
    all_nodes = store.load_nodes()[1] if names is None else store.nodes_named(names)
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


def page_names(store, after=None, limit=1000):
    """(the names of one page, sorted, after `after`; the total count): a
    range of the names zset, not every name."""
    store.upgrade()
    return store.name_page(after, limit)


def stale_names(store, before, after=None):
    """Sorted names of nodes not polled since `before` (Redis's clock) or
    never, after `after`: the poll index, not every node."""
    store.upgrade()
    return [n for n in store.stale_names(before) if after is None or n > after]


def filter_rows(rows, state=None, stale=False, stale_after=None, now=None):
    """Rows in a power state ("unknown": none yet) and/or stale (pure)."""
    if state is not None:
        rows = [r for r in rows if (r["power_state"] or "unknown") == state]
    if stale:
        rows = [r for r in rows if r["last_polled_at"] is None
                or now - r["last_polled_at"] > stale_after]
    return rows


def list_rows(store, now, state=None, stale=False, stale_after=None, after=None, limit=1000,
              chosen=None):
    """`farm nodes list`: (the rows of one page, the node count or None when
    filtered). A plain page is a range of the name index; --stale reads the
    poll index's stale names; --state alone reads every node; `chosen` (the
    names of a selection) reads only those."""
    if chosen is not None:
        names = [n for n in chosen if after is None or n > after]
        rows = filter_rows(node_rows(store, names if (state or stale) or not limit
                                     else names[:limit]), state, stale, stale_after, now)
        return (rows[:limit] if limit else rows), len(chosen)
    if not (stale or state is not None):
        names, total = page_names(store, after, limit)
        return node_rows(store, names), total
    if stale:
        names = stale_names(store, now - stale_after, after)
        rows = node_rows(store, names[:limit] if limit and state is None else names)
    else:
        rows = node_rows(store)
    rows = filter_rows(rows, state, stale, stale_after, now)
    if after:
        rows = [r for r in rows if r["name"] > after]
    return (rows[:limit] if limit else rows), None


def summary(store, recount=False):
    """`farm nodes summary` from the counts the write scripts keep (a few
    keys, whatever the node count); `recount` builds them anew first from
    every node's state."""
    store.upgrade(force=recount)
    return summarize(store.counts())


def summarize(counts):
    """Counts an operator reads first (pure): power states (last known;
    unknown: none yet), errors of the last poll, never polled, the oldest
    poll's age on Redis's clock."""
    power = dict(counts["power"])
    unknown = counts["nodes"] - sum(power.values())
    if unknown:
        power["unknown"] = unknown
    oldest = counts["oldest_seen_at"]
    return {"nodes": counts["nodes"], "power": dict(sorted(power.items())),
            "failing": dict(sorted(counts["failing"].items())),
            "never_polled": counts["nodes"] - counts["polled"],
            "oldest_poll_age": None if oldest is None else round(counts["now"] - oldest, 1)}


def status_report(store, poll_interval, now):
    """Leader, generation, workers, sites and node freshness, as one dict,
    read in a few round trips whatever the node count: each live worker
    reports a tally of its own nodes (farm.metrics.WorkerMetrics.tally)
    every 2 s, and status sums them. A worker whose heartbeat (put on
    Redis's clock) is older than two intervals counts as gone, and nodes no
    live worker accounts for count as stale: a dead worker, or one whose
    clock lies, cannot hide its nodes. Never reads an inventory entry
    (password)."""
    store.upgrade()  # a farm from before sites gets its site index first
    assignment = store.assignment()
    reports = store.worker_reports()
    total = store.node_count()
    counts = store.site_counts()
    placements = assignment["placements"] if assignment else {}
    parts = collections.Counter(o for owners in placements.values() for o in owners)
    members = set(assignment["members"]) if assignment else set()
    workers, tallies, alive = [], [], {}
    for member in sorted(members | set(reports)):
        rep = reports.get(member, {})
        beat, skew = rep.get("last_heartbeat"), rep.get("clock_skew") or 0.0
        beat = beat - skew if beat else beat  # the worker's clock, put on Redis's
        if beat is not None and now - beat <= 2 * poll_interval:
            alive[member] = rep
            if rep.get("tally"):
                tallies.append(rep["tally"])
        workers.append({"id": member, "host": rep.get("host"), "pid": rep.get("pid"),
                        "sites": rep.get("sites") or [DEFAULT_SITE],
                        "backup_sites": rep.get("backup_sites") or [],
                        "partitions": parts.get(member, 0) if assignment else None,
                        "nodes": rep.get("nodes"),
                        "last_heartbeat": beat,
                        "heartbeat_age": round(now - beat, 1) if beat else None,
                        "clock_skew": rep.get("clock_skew"),
                        "assigned": member in members})
    power, failing = collections.Counter(), collections.Counter()
    for t in tallies:
        power.update(t["power"])
        failing.update(t["failing"])
    accounted = sum(t["nodes"] for t in tallies)
    unaccounted = max(0, total - accounted)
    power["unknown"] += unaccounted
    sites = site_rows(counts, placements if assignment else None, alive, tallies)
    return {"leader": store.leader(), "generation": assignment["generation"] if assignment else None,
            "epoch": assignment["epoch"] if assignment else None,
            "partitions": max(map(len, placements.values()), default=0) or None,
            "workers": workers, "sites": sites,
            "dark": [{"site": r["site"], "nodes": r["nodes"]} for r in sites if r["dark"]],
            "nodes": {"total": total, "never_polled": sum(t["never_polled"] for t in tallies),
                      "stale": sum(t["stale"] for t in tallies) + unaccounted,
                      "unaccounted": unaccounted,
                      "power": {k: v for k, v in sorted(power.items()) if v},
                      "failing": dict(sorted(failing.items()))}}


def site_rows(counts, placements, alive, tallies):
    """One row per site (pure): its nodes, the live workers that serve it
    (its own, and backups), which of them hold its partitions now, how many
    of its nodes were read within 2 intervals, and whether it is dark: it
    has nodes and no live worker holds any of its partitions (`placements`
    None: no coordinator yet, and a lone worker serves its own sites)."""
    names = set(counts) | {s for rep in alive.values() for s in rep.get("sites") or [DEFAULT_SITE]}
    if placements:
        names |= set(placements)
    fresh = collections.Counter()
    for t in tallies:
        for site, n in (t.get("sites") or {}).items():
            fresh[site] += n.get("fresh", 0)
    rows = []
    for site in sorted(names):
        own = [m for m, rep in alive.items() if site in (rep.get("sites") or [DEFAULT_SITE])]
        backups = [m for m, rep in alive.items() if site in (rep.get("backup_sites") or [])]
        if placements is None:
            serving = own
        else:
            serving = sorted(set(placements.get(site) or ()) & set(alive))
        rows.append({"site": site, "nodes": counts.get(site, 0), "workers": own,
                     "backup_workers": backups, "serving": serving,
                     "fresh": fresh.get(site, 0),
                     "dark": bool(counts.get(site)) and not serving})
    return rows


def owner_of(store, name):
    """(the id of the worker that polls `name`, None) or (None, why none
    does): what `farm nodes power` and `sel-clear` send their command to."""
    return owners(store, [name])[name]


def against_desired(controls, names, action):
    """The `names` whose desired state is the opposite of power `action`
    (on or off): farm turns them back once it is done (pure)."""
    opposite = {"on": "off", "off": "on"}.get(action)
    return [n for n in names if opposite and controls.get(n, {}).get("desired") == opposite]


def send_command(store, owner, kind, node, action, by, ttl, now=None):
    """Queue a command (kind power with `action`, or sel-clear) for `owner`,
    the worker that polls `node`; it expires unrun `ttl` seconds from `now`
    (Redis's clock). Returns its id, which its reply carries."""
    import uuid
    now = store.server_time() if now is None else now
    command = {"id": uuid.uuid4().hex, "kind": kind, "action": action, "node": node, "by": by,
               "issued": now, "expires": now + ttl}
    store.send_command(owner, command, ttl)
    return command["id"]


def owners(store, names):
    """owner_of for many names, from one read of the reports and the
    assignment: name -> (worker id or None, why none)."""
    reports = store.worker_reports()
    assignment = store.assignment()
    if assignment is None:
        if not reports:
            why = "no worker is running"
        elif len(reports) > 1:
            why = (f"no coordinator has published an assignment, so all {len(reports)} workers "
                   f"poll every node: start a coordinator")
        else:
            return {name: (next(iter(reports)), None) for name in names}
        return {name: (None, why) for name in names}
    placements, out = assignment["placements"], {}
    sites = {n.name: n.site for n in store.nodes_named(list(names))}
    for name in names:
        site = sites.get(name, DEFAULT_SITE)
        owner = site_owner(placements, site, name)
        if owner is None:
            out[name] = (None, f"the assignment gives it to no worker: no live worker serves "
                               f"its site {site} ([worker] sites or backup_sites)")
        elif owner not in reports:
            out[name] = (None, f"its worker {owner} is not reporting (stopped or cut off "
                               f"from Redis?)")
        else:
            out[name] = (owner, None)
    return out


EVENT_TYPES = {"power": ("power", "recovered", "failing"), "sensor": ("sensor",),
               "sel": ("sel", "sel-cleared"), "action": ("action", "desired", "maintenance")}


def event_matches(fields, node=None, kind=None):
    """Whether an event passes `farm events --node/--type` (pure): `node` is
    a name or a set of names."""
    if node is not None and fields.get("node") not in (node if isinstance(node, set)
                                                       else (node,)):
        return False
    return kind is None or fields.get("type") in EVENT_TYPES[kind]


def recent_events(store, limit, node=None, kind=None, scan_limit=100_000):
    """Up to `limit` matching events, oldest first, from the newest backwards
    (reading at most `scan_limit` entries of the stream)."""
    found, before, scanned = [], "+", 0
    while len(found) < limit and scanned < scan_limit:
        chunk = store.events_before(1000, before)
        if not chunk:
            break
        scanned += len(chunk)
        found += [(i, f) for i, f in chunk if event_matches(f, node, kind)]
        before = chunk[-1][0]
    return list(reversed(found[:limit]))


class Refused(Exception):
    """An action refused before anything changed; `code` is stable (the API
    answers with it)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def wave_settings(power, action, count, batch=None, interval=None):
    """(batch, interval) of a bulk action: as given, else [power] wave_size and
    wave_interval for on, cycle and reset; off goes in one wave."""
    from farm.power import plan
    staggered = action != "off"
    batch = batch or (power.wave_size if staggered else max(1, count))
    interval = (power.wave_interval if staggered else 0.0) if interval is None else interval
    wrong = plan.check(batch, interval)
    if wrong:  # before anything is written: a plan Redis cannot hold locks its nodes
        raise Refused("invalid_plan", wrong)
    return batch, interval


def plan_action(store, power, names, action, batch=None, interval=None, spread_by=None):
    """The plan a bulk power action would run, checked against the fleet:
    (steps starting at 0.0, batch, interval, notes) or Refused. `power`: the
    [power] settings (defaults for batch and interval)."""
    from farm.power import plan
    batch, interval = wave_settings(power, action, len(names), batch, interval)
    controls = store.controls_of(names)
    owned = owners(store, names)
    held = [n for n in names if controls.get(n, {}).get("maintenance")]
    if held:
        raise Refused("node_in_maintenance",
                      f"{len(held)} of the selected nodes are in maintenance ({_some(held)}); "
                      f"take them out (`farm nodes maintenance SELECTION off`) or leave them out "
                      f"of the selection (SELECTION,-{held[0]})")
    orphans = [n for n in names if owned[n][0] is None]
    if len(orphans) == len(names):
        raise Refused("no_live_worker", f"no live worker owns any of them ({owned[names[0]][1]})")
    notes = []
    if orphans:
        notes.append(f"{len(orphans)} of them have no live worker now ({_some(orphans)}: "
                     f"{owned[orphans[0]][1]}); their steps wait for one")
    fight = against_desired(controls, names, action)
    if fight:
        opposite = controls[fight[0]]["desired"]
        notes.append(f"{len(fight)} of them keep desired {opposite} ({_some(fight)}): farm turns "
                     f"them back once this action is done (`farm nodes desired SELECTION none` "
                     f"stops that)")
    labels = store.labels_of(names) if spread_by else {}
    return plan.waves(names, batch, interval, 0.0, spread_by, labels.get), batch, interval, notes


def write_action(store, action_id, steps, action, batch, interval, spread_by, by, lead):
    """Write a plan whose first wave starts `lead` seconds from now (Redis's
    clock): the steps as written, or Refused (nothing changed)."""
    from farm.power import plan
    from farm.store import ActionConflict
    begin = store.server_time() + lead
    steps = [plan.Step(s.node, s.wave, begin + s.not_before) for s in steps]
    count = plan.summary(steps)[0]
    try:
        store.create_action(action_id, {"action": action, "by": by, "batch": batch,
                                        "interval": interval, "spread_by": spread_by,
                                        "waves": count}, steps)
    except ActionConflict as exc:
        raise Refused(exc.code, str(exc)) from None
    return steps


def _some(names, k=5):
    return ", ".join(names[:k]) + (", ..." if len(names) > k else "")
