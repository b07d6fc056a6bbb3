"""Metrics scraped over real HTTP from a worker and a coordinator, showing the
polls this test caused; JSON-lines logs."""

import dataclasses
import json
import os
import re
import signal

import yaml

from farm.sim.fleet import pick
from tests.conftest import scrape, wait_for, write_config
from tests.integration.test_coordination import Farm
from tests.integration.test_worker import import_sim, states


def metrics_url(log_path):
    match = re.search(r"metrics on (http://[^ ]+/metrics)", log_path.read_text())
    return match.group(1) if match else None


def operator_artifact_metrics():
    """Every farm_* metric named by deploy/grafana/farm.json and the alert rules."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "deploy", "grafana", "farm.json")) as f:
        exprs = [t["expr"] for panel in json.load(f)["panels"] for t in panel["targets"]]
    with open(os.path.join(root, "deploy", "prometheus", "farm-rules.yaml")) as f:
        exprs += [r["expr"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]]
    return {name for e in exprs for name in re.findall(r"\bfarm_[a-z_]+", e)}


def test_worker_and_coordinator_metrics(make_sim, store, redis_server, namespace, tmp_path):
    sim = make_sim(5, hung_fraction=0.2, off_fraction=0.2)
    nodes = import_sim(sim, store)
    nodes[-1] = dataclasses.replace(nodes[-1], password="not-" + sim.password)
    store.import_nodes(nodes)
    hung = nodes[next(iter(pick(5, 0.2, 0)))].name
    off = nodes[next(iter(pick(5, 0.2, 1)))].name
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1.0)
    with open(cfg, "a") as f:
        f.write("[logging]\nformat = json\n[metrics]\nper_node_series = true\n")
    farm = Farm(tmp_path, cfg)
    try:
        coordinator = farm.start("coordinator")
        worker = farm.start("worker")
        wurl = wait_for(lambda: metrics_url(worker.log_path), 20, what="the worker's metrics port")
        curl = wait_for(lambda: metrics_url(coordinator.log_path), 20, what="the coordinator's port")
        wait_for(lambda: all(v.get("polled_at") for v in states(store, nodes).values()), 30,
                 what="every node polled")

        def enough():
            m = scrape(wurl)
            polls = 'farm_polls_total{driver="ipmi",result="%s"}'
            return m if (m[polls % "ok"] >= 6 and m[polls % "auth"] >= 1
                         and m[polls % "timeout"] >= 1
                         and m.get('farm_nodes_failing{kind="auth"}') == 1) else None
        m = wait_for(enough, 20, what="polls of every kind counted")
        assert m['farm_polls_total{driver="ipmi",result="unreachable"}'] == 0
        assert m["farm_nodes_owned"] == 5
        assert m[f'farm_node_power_state{{node="{off}"}}'] == 0
        on = next(n.name for n in nodes[:-1] if n.name not in (off, hung))
        assert m[f'farm_node_power_state{{node="{on}"}}'] == 1
        assert f'farm_node_power_state{{node="{hung}"}}' not in m
        # the counts that need no per-node series (refreshed every 2 s)
        assert m['farm_nodes{power="off"}'] == 1 and m['farm_nodes{power="on"}'] == 2
        assert m['farm_nodes{power="unknown"}'] == 2  # the hung BMC and the wrong password
        assert m['farm_nodes_failing{kind="timeout"}'] == 1
        assert m['farm_poll_latency_seconds_count{driver="ipmi"}'] == sum(
            v for k, v in m.items() if k.startswith("farm_polls_total"))
        assert 0 < m["farm_stalest_node_age_seconds"] < 10
        assert m["farm_assignment_generation"] == store.assignment_generation() > 0
        assert m["farm_partitions_owned"] == 1024
        c = scrape(curl)
        assert c["farm_is_leader"] == 1 and c["farm_workers_live"] == 1
        assert c["farm_assignment_generation"] == store.assignment_generation()
        # the dashboard and the alert rules use only metrics the daemons export
        exported = {key.split("{")[0] for key in list(scrape(wurl)) + list(c)}
        used = operator_artifact_metrics()
        assert used and used <= exported, used - exported
    finally:
        for p in farm.procs:
            p.send_signal(signal.SIGTERM)
        farm.stop_all()
    lines = worker.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and {"ts", "level", "logger", "message", "pid"} <= set(records[0])
    assert len(records) == len([line for line in lines if line.strip()])
