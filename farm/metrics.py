"""Prometheus metrics for farm's daemons: the prometheus-client adapter.

Each daemon owns one registry and serves it over HTTP on [metrics] bind/port
(port 0 picks a free one, which the daemon logs). Series per node (power
state) and per node and sensor (readings) are opt-in: counts by state stand
in for them.
"""

import collections
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from farm import metrics_http
from farm.errors import ConfigError

LOG = logging.getLogger(__name__)
RESULTS = ("ok", "timeout", "auth", "privilege", "unreachable", "error", "tls", "session-limit",
           "busy")
ENGINE_COUNTERS = {
    "logins": "RMCP+ sessions established (one login is 4-5 round trips).",
    "keepalives": "Keepalive commands sent on idle sessions.",
    "sessions_lost": "Kept sessions a BMC stopped answering (then logged in again).",
    "bad_packets": "Packets from BMCs that failed a check (integrity, format, session).",
    "packets_sent": "IPMI packets sent.",
    "packets_received": "IPMI packets received.",
    "redfish_logins": "Redfish sessions created (logins; a kept session is reused across polls).",
    "redfish_deadlines": "Redfish jobs that hit their deadline while the BMC held the thread.",
}


class WorkerMetrics:
    def __init__(self, per_node=False, per_sensor=False):
        self.registry = CollectorRegistry()
        self.per_node = per_node
        self.per_sensor = per_sensor
        r = self.registry
        self.polls = Counter("farm_polls", "Power polls by result and driver (ipmi, redfish).",
                             ["result", "driver"], registry=r)
        # children looked up once: labels() takes a lock and builds a tuple
        self._by_result = {(result, "ipmi"): self.polls.labels(result, "ipmi") for result in RESULTS}
        self.latency = Histogram("farm_poll_latency_seconds", "Duration of one power poll.",
                                 ["driver"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                      0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self._latency = {"ipmi": self.latency.labels("ipmi")}
        self.nodes = Gauge("farm_nodes_owned", "Nodes this worker polls.", registry=r)
        self.partitions = Gauge("farm_partitions_owned",
                                "Partitions assigned to this worker (-1: no assignment, "
                                "it polls the whole inventory).", registry=r)
        self.stalest = Gauge("farm_stalest_node_age_seconds",
                             "Seconds since the least recently polled owned node was polled "
                             "(since it was taken on, if never).", registry=r)
        self.last_pass = Gauge("farm_last_pass_duration_seconds",
                               "Seconds the last full pass over the owned nodes took.", registry=r)
        self.queue = Gauge("farm_executor_queue_depth",
                           "Polls submitted to the executor and not finished.", registry=r)
        self.generation = Gauge("farm_assignment_generation",
                                "Assignment generation this worker follows (0: none).", registry=r)
        self.clock_skew = Gauge("farm_clock_skew_seconds",
                                "This host's clock minus Redis's (as seen by the worker).", registry=r)
        self.power = Gauge("farm_node_power_state", "1 if the node is on, 0 if off (only with "
                           "[metrics] per_node_series: one series per owned node).", ["node"],
                           registry=r)
        self.by_power = Gauge("farm_nodes", "This worker's nodes by last known power state.",
                              ["power"], registry=r)
        self.failing = Gauge("farm_nodes_failing", "This worker's nodes whose last poll failed, "
                             "by error kind.", ["kind"], registry=r)
        self.task_runs = Counter("farm_task_runs", "Passes of the sensors and sel tasks by "
                                 "result.", ["task", "result"], registry=r)
        self.task_latency = Histogram("farm_task_duration_seconds", "Duration of one sensors or "
                                      "sel pass.", ["task"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1,
                                                                       0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=r)
        self.sensors = Gauge("farm_sensors", "Sensors of this worker's nodes by type and threshold "
                             "status (ok, nc, cr, nr, ns) at their last reading.",
                             ["type", "status"], registry=r)
        self.sensor_value = Gauge("farm_sensor_value", "A sensor's last reading (only with "
                                  "[metrics] per_sensor_series: one series per node and sensor).",
                                  ["node", "sensor", "type", "unit"], registry=r)
        self.sel_entries = Counter("farm_sel_entries", "SEL entries read from this worker's "
                                   "nodes.", registry=r)
        self.actions = Counter("farm_power_actions", "Power actions and SEL clears by action, "
                               "outcome and who asked (operator or farm enforcing a desired state).",
                               ["action", "outcome", "source"], registry=r)
        self.session_logins = Counter("farm_bmc_session_logins", "IPMI logins by the cipher "
                                      "suite and privilege level the BMC accepted.",
                                      ["suite", "privilege"], registry=r)
        self.fenced = Gauge("farm_worker_fenced", "1 while this worker's acting lease has run "
                            "out (no power action leaves it; polling goes on).", registry=r)
        self.maintenance = Gauge("farm_nodes_maintenance", "Nodes in maintenance (farm does not "
                                 "enforce their power state), farm-wide.", registry=r)
        self.engine = {
            key: Counter(f"farm_bmc_{key}", text, registry=r) for key, text in ENGINE_COUNTERS.items()}
        self.sessions = Gauge("farm_bmc_endpoints", "BMC endpoints the poll engines know.",
                              registry=r)
        self._engine_seen = {}
        self._last_poll = {}
        self._site_of = {}  # node -> its site (own())
        self._power_of = {}  # node -> its power gauge child
        self._state = {}  # node -> (power "on"/"off"/None, error kind or None), once polled
        self._sensor_states = {}  # node -> Counter of (type, status) of its last sensors pass
        self._sensor_counts = collections.Counter()  # their sum, kept as passes come
        self._sensor_lock = threading.Lock()  # results (engine thread) and own() (sync loop)
        self._sensor_series = {}  # node -> label tuples exported for it
        self._pass_started = time.time()
        self._pass_seen = set()

    def own(self, names, now, sites=None):
        """The worker's node set changed: drop series of nodes it no longer
        polls. `sites`: name -> its site, for the per-site tally."""
        self._site_of = dict(sites or {})
        names = set(names)
        for gone in set(self._last_poll) - names:
            self._last_poll.pop(gone, None)
            self._power_of.pop(gone, None)
            self._state.pop(gone, None)
            with self._sensor_lock:
                self._sensor_counts.subtract(self._sensor_states.pop(gone, {}))
            for labels in self._sensor_series.pop(gone, ()):
                self.sensor_value.remove(*labels)
            try:
                self.power.remove(gone)
            except KeyError:
                pass
        for name in names:
            self._last_poll.setdefault(name, now)
        self.nodes.set(len(names))
        self._pass_started, self._pass_seen = now, set()

    def observe_many(self, results, driver_of=None):
        """A batch of power results (`driver_of(name)`: the node's driver,
        ipmi if not given): each counter moved once per batch."""
        driver_of = driver_of or (lambda name: "ipmi")
        drivers = [driver_of(r.node) for r in results]
        kinds = collections.Counter((r.error_kind or "ok", d) for r, d in zip(results, drivers,
                                                                              strict=True))
        for key, n in kinds.items():
            counter = self._by_result.get(key)
            if counter is None:
                counter = self._by_result[key] = self.polls.labels(*key)
            counter.inc(n)
        for result, driver in zip(results, drivers, strict=True):
            histogram = self._latency.get(driver)
            if histogram is None:
                histogram = self._latency[driver] = self.latency.labels(driver)
            histogram.observe(result.latency)
            self._observe_node(result)

    def observe_tasks(self, results):
        """Sensors and SEL results (power results go to observe_many)."""
        for r in results:
            self.task_runs.labels(r.kind, r.error_kind or "ok").inc()
            self.task_latency.labels(r.kind).observe(r.latency)
            if r.kind == "sel":
                self.sel_entries.inc(len(r.entries))
            elif r.kind == "sensors" and r.ok and r.node in self._last_poll:
                # kept as a running sum: recounting every node's sensors at each
                # tally would cost 700,000 steps every 2 s at 100,000 nodes
                new = collections.Counter((x["type"], x["status"]) for x in r.readings)
                with self._sensor_lock:
                    if r.node not in self._last_poll:  # own() let it go meanwhile
                        continue
                    self._sensor_counts.subtract(self._sensor_states.get(r.node, {}))
                    self._sensor_counts.update(new)
                    self._sensor_states[r.node] = new
                if self.per_sensor:
                    self._export_sensors(r)

    def _export_sensors(self, result):
        labels = []
        for x in result.readings:
            if x["value"] is not None:
                key = (result.node, x["key"], x["type"], x["unit"])
                self.sensor_value.labels(*key).set(x["value"])
                labels.append(key)
        for old in set(self._sensor_series.get(result.node, ())) - set(labels):
            self.sensor_value.remove(*old)
        self._sensor_series[result.node] = labels

    def _observe_node(self, result):
        if result.node not in self._last_poll:
            return  # a poll of a node just handed over
        self._last_poll[result.node] = result.polled_at
        prev = self._state.get(result.node, (None, None))
        self._state[result.node] = (result.power_state.value if result.power_state else prev[0],
                                    result.error_kind)
        if result.power_state is not None and self.per_node:
            child = self._power_of.get(result.node)
            if child is None:  # labels() costs more than the rest of a poll's metrics
                child = self._power_of[result.node] = self.power.labels(result.node)
            child.set(1 if result.power_state.value == "on" else 0)
        self._pass_seen.add(result.node)
        if len(self._pass_seen) >= len(self._last_poll):
            self.last_pass.set(result.polled_at - self._pass_started)
            self._pass_started, self._pass_seen = result.polled_at, set()

    def tally(self, now, stale_after):
        """What `farm status` sums over live workers instead of reading every
        node: counts over this worker's nodes (on its own clock: ages only)."""
        # The engine thread adds nodes to _state as their first results come:
        # count over a copy (dict() copies in one step under the GIL).
        state, last_poll = dict(self._state), dict(self._last_poll)
        power = collections.Counter(p or "unknown" for p, _ in state.values())
        failing = collections.Counter(k for _, k in state.values() if k)
        stale = sum(1 for name in state if now - last_poll.get(name, now) > stale_after)
        site_of, sites = self._site_of, {}
        for name, at in last_poll.items():
            row = sites.setdefault(site_of.get(name, "default"), {"nodes": 0, "fresh": 0})
            row["nodes"] += 1
            if now - at <= stale_after and name in state and not state[name][1]:
                row["fresh"] += 1
        never = len(last_poll) - len(state)
        power["unknown"] += never
        for state in ("on", "off", "unknown"):
            self.by_power.labels(state).set(power.get(state, 0))
        for kind in RESULTS:
            if kind != "ok":
                self.failing.labels(kind).set(failing.get(kind, 0))
        with self._sensor_lock:
            counts = list(self._sensor_counts.items())
        for (stype, status), n in counts:
            self.sensors.labels(stype, status).set(n)
        return {"nodes": len(last_poll), "never_polled": never, "stale": stale,
                "power": {k: v for k, v in power.items() if v}, "failing": dict(failing),
                "sites": sites}

    def refresh(self, now, in_flight, engine_stats=None):
        """Values computed at scrape time; engine_stats are cumulative counts."""
        self.stalest.set(max((now - t for t in self._last_poll.values()), default=0.0))
        self.queue.set(in_flight)
        stats = engine_stats or {}
        for key, counter in self.engine.items():
            delta = stats.get(key, 0) - self._engine_seen.get(key, 0)
            if delta > 0:
                counter.inc(delta)
                self._engine_seen[key] = stats.get(key, 0)
        self.sessions.set(stats.get("sessions", 0))


class CoordinatorMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.leader = Gauge("farm_is_leader", "1 while this coordinator leads.", registry=r)
        self.generation = Gauge("farm_assignment_generation",
                                "Generation of the last assignment this coordinator published.",
                                registry=r)
        self.workers = Gauge("farm_workers_live", "Live workers seen by the leader.", registry=r)
        self.published = Counter("farm_assignments_published", "Assignments published.",
                                 registry=r)
        self.unserved = Gauge("farm_site_nodes_unserved",
                              "Nodes of a site that no live worker may serve (no worker with "
                              "the site in [worker] sites or backup_sites); the leader's view.",
                              ["site"], registry=r)
        self._sites = set()

    def site_nodes(self, unserved, counts):
        """Set the gauge for every site with nodes (0 when served); drop
        sites that left (and every site when we stop leading: counts {})."""
        for site in self._sites - set(counts):
            self.unserved.remove(site)
        for site in counts:
            self.unserved.labels(site).set(unserved.get(site, 0))
        self._sites = set(counts)


def serve(registry, settings, port):
    """Serve `registry` as [metrics] `settings` say, on `port`; returns the
    port. ConfigError (one line) for a port in use or unreadable TLS or auth
    files: a daemon that cannot be watched should not run unnoticed."""
    tls = auth = None
    try:
        if settings.tls_cert_file or settings.tls_key_file:
            tls = metrics_http.tls_context(settings.tls_cert_file, settings.tls_key_file,
                                           settings.tls_client_ca_file or None)
        if settings.basic_auth_user:
            with open(settings.basic_auth_password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\n")
            auth = f"{settings.basic_auth_user}:{password}".encode("utf-8")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[metrics]: cannot load TLS or basic auth files: {exc}") from exc
    return metrics_http.serve(registry, settings.bind, port, tls=tls, auth=auth)
