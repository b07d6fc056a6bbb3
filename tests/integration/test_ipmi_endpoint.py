"""farm-api's /ipmi side by side with the real ipmi_exporter (Debian's
prometheus-ipmi-exporter, which runs FreeIPMI's tools against the BMC during
the scrape), on the same BMCs: farm-sim and OpenIPMI's ipmi_sim with SDRs.
The same families, help texts, label sets and values; what farm adds
(farm_reading_age_seconds) and what differs by design (the scrape's own
duration) is set aside by name, nothing else."""

import math
import os
import subprocess

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from farm.sim import openipmi
from farm.sim.ports import free_tcp_port
from tests.conftest import IPMI_SIM_PASSWORD as PASSWORD
from tests.conftest import IPMI_SIM_USER as USER
from tests.conftest import wait_for, write_config
from tests.integration.test_api import Api, start_prometheus, token
from tests.integration.test_openipmi import import_inventory
from tests.integration.test_worker import import_sim, start_worker, stop_worker

COLLECTORS = ["bmc", "chassis", "dcmi", "ipmi", "sel"]
OURS_ONLY = {"farm_reading_age_seconds"}
NOT_COMPARED = {"ipmi_scrape_duration_seconds"}  # each side's own time to answer


class Exporter:
    """The real ipmi_exporter, one module with the collectors farm serves."""

    def __init__(self, tmp_path, user, password, workarounds=()):
        config = tmp_path / "ipmi_exporter.yml"
        module = {"user": user, "pass": password, "driver": "LAN_2_0", "privilege": "admin",
                  "timeout": 10000, "collectors": COLLECTORS}
        if workarounds:
            module["workaround_flags"] = list(workarounds)
        config.write_text(yaml.safe_dump({"modules": {"default": module}}))
        self.port = free_tcp_port()
        self.proc = subprocess.Popen(["prometheus-ipmi-exporter", f"--config.file={config}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def scrape(self, target):
        def answered():
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/ipmi", timeout=60,
                                    params={"target": target, "module": "default"}).text
            except requests.ConnectionError:
                return None
        return wait_for(answered, 30, what="ipmi_exporter to answer")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def series(text):
    """family -> (help, {sorted label items: value}) of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith(("go_", "process_", "promhttp_")):
            continue
        samples = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        out[family.name] = (family.documentation, samples)
    return out


def same(a, b, tolerance):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance


def manufacturer_as_freeipmi_knows_it(theirs, ours):
    """The one label farm may word differently: FreeIPMI names a manufacturer
    from its own, older copy of IANA's registry, farm from the host's; a
    number FreeIPMI's copy lacks reads there bare (farm-sim's 49871, OpenBMC's,
    registered in 2017). Same number either way."""
    for labels in list(ours.get("ipmi_bmc_info", (None, {}))[1]):
        theirs_labels = next(iter(theirs["ipmi_bmc_info"][1]))
        mine, their = dict(labels)["manufacturer_id"], dict(theirs_labels)["manufacturer_id"]
        if their.isdigit() and mine.endswith(f" ({their})"):
            fixed = tuple(sorted({**dict(labels), "manufacturer_id": their}.items()))
            ours["ipmi_bmc_info"][1][fixed] = ours["ipmi_bmc_info"][1].pop(labels)


def compare(theirs_text, ours_text, tolerance=0.0):
    theirs, ours = series(theirs_text), series(ours_text)
    manufacturer_as_freeipmi_knows_it(theirs, ours)
    # a collector ipmi_exporter has and farm does not run: sm-lan-mode is not asked for
    assert set(ours) - OURS_ONLY == set(theirs), (sorted(ours), sorted(theirs))
    for family, (help_text, samples) in theirs.items():
        if family in NOT_COMPARED:
            continue
        our_help, our_samples = ours[family]
        assert our_help == help_text, family
        assert set(our_samples) == set(samples), (family, our_samples, samples)
        for labels, value in samples.items():
            assert same(our_samples[labels], value, tolerance), (family, labels,
                                                                 our_samples[labels], value)
    return theirs, ours


def up(ours):
    return {dict(k)["collector"]: v for k, v in ours["ipmi_up"][1].items()}


def farm_scrape(api, reader, name):
    got = requests.get(f"{api.url}/ipmi", params={"target": name},
                       headers={"Authorization": f"Bearer {reader}"}, timeout=10)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return got.text


def all_read(store, names):
    got = store.node_states(names)
    return all(s.get("power_state") and s.get("sensors_polled_at") and s.get("bmc_device")
               and s.get("sel_sizes") and not s.get("sensors_error_kind")
               for s in got.values())


def config(tmp_path, redis_server, namespace, path, interval=2):
    return write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=interval,
                        bmc_timeout=3, sections={
                            "api": {"tokens_file": str(path)},
                            "tasks": {"enabled": "power,sensors,sel"},
                            "sensors": {"interval": interval}, "sel": {"interval": interval}})


def test_ipmi_matches_ipmi_exporter_on_farm_sim(make_sim, store, redis_server, namespace,
                                               tmp_path):
    from farm.sim.fleet import pick
    path = tmp_path / "tokens"
    reader = token(path, "reader", "prometheus")
    # still readings (period 0), no log growth but what power changes add; one BMC hung
    sim = make_sim(5, engine="lean", sensor_period=0, off_fraction=0.5, sel_interval=0,
                   hot_fraction=0, hung_fraction=0.2)
    nodes = import_sim(sim, store)
    hung = {i for i in pick(5, 0.2, 0)}
    cfg = config(tmp_path, redis_server, namespace, path)
    # the exporter first: where it cannot start, no daemon is left behind
    exporter = Exporter(tmp_path, sim.username, sim.password)
    proc, wlog = start_worker(tmp_path, cfg)
    api = Api(tmp_path, cfg)
    try:
        healthy = [(i, n) for i, n in enumerate(nodes) if i not in hung]
        wait_for(lambda: all_read(store, [n.name for _, n in healthy]), 60,
                 what="every answering node's power, sensors and SEL read")
        powers = set()
        for i, node in healthy:
            theirs, ours = compare(exporter.scrape(f"127.0.0.1:{sim.port(i)}"),
                                   farm_scrape(api, reader, node.name))
            assert up(ours) == dict.fromkeys(COLLECTORS, 1.0)
            powers.add(ours["ipmi_chassis_power_state"][1][()])
            ages = ours["farm_reading_age_seconds"][1]
            assert {dict(k)["collector"] for k in ages} == set(COLLECTORS)
            assert all(0 <= age < 3 * 2 for age in ages.values()), ages
        assert powers == {0.0, 1.0}
        hdr = {"Authorization": f"Bearer {reader}"}
        for params, headers, status, code in (
                ({"target": nodes[0].name}, {}, 401, "unauthorized"),
                ({"target": "no-such-node"}, hdr, 404, "node_not_found"),
                ({"target": nodes[0].name, "module": "nope"}, hdr, 400, "unknown_module"),
                ({}, hdr, 400, "invalid_request")):
            got = requests.get(f"{api.url}/ipmi", params=params, headers=headers, timeout=10)
            assert (got.status_code, got.json()["error"]["code"]) == (status, code), got.text
        assert sim.password not in farm_scrape(api, reader, nodes[0].name)
        # the hung BMC: once farm has tried it, its answer says so, from Redis
        # (ipmi_exporter would spend its timeout on each collector to say the same)
        name = nodes[next(iter(hung))].name
        wait_for(lambda: store.node_states([name])[name].get("error_kind") == "timeout", 30,
                 what="the hung BMC's power poll to time out")
        ours = series(farm_scrape(api, reader, name))
        assert up(ours) == dict.fromkeys(COLLECTORS, 0.0)
        assert "ipmi_temperature_celsius" not in ours
    finally:
        exporter.stop()
        assert api.stop() == 0, api.log.read_text()[-2000:]
        assert stop_worker(proc) == 0, wlog.read_text()[-2000:]


def test_ipmi_matches_ipmi_exporter_on_openipmi_ipmi_sim(ipmi_sims, store, redis_server,
                                                        namespace, tmp_path):
    path = tmp_path / "tokens"
    reader = token(path, "reader", "prometheus")
    # with two discrete power supplies: one asserting "Failure detected"
    bmcs = ipmi_sims(2, sensors=True, discrete=True, sel_entries=3)
    bmcs[1].ipmitool("chassis", "power", "off")
    cfg = config(tmp_path, redis_server, namespace, path)
    names = import_inventory(tmp_path, cfg, bmcs)
    exporter = Exporter(tmp_path, USER, PASSWORD, workarounds=["opensesspriv"])
    proc, wlog = start_worker(tmp_path, cfg)
    api = Api(tmp_path, cfg)
    try:
        wait_for(lambda: all_read(store, names), 60, what="every node's power, sensors and SEL")
        for bmc, name in zip(bmcs, names, strict=True):
            # 12V reads 2.00 x 6 x 10^-2: FreeIPMI rounds to two decimals
            theirs, ours = compare(exporter.scrape(f"127.0.0.1:{bmc.port}"),
                                   farm_scrape(api, reader, name), tolerance=0.006)
            # ipmi_sim has no DCMI: ipmi-dcmi fails, and farm says so alike
            assert up(ours) == dict.fromkeys(COLLECTORS, 1.0) | {"dcmi": 0.0}
            assert len(ours["ipmi_temperature_celsius"][1]) == 2  # the third scans nothing
            # FreeIPMI's interpretation of a discrete sensor: the worst offset asserted
            states = {dict(k)["name"]: v for k, v in ours["ipmi_sensor_state"][1].items()}
            assert states == {"Airflow": 0.0, "PSU1 Status": 2.0, "PSU2 Status": 0.0}
            assert ours["ipmi_sel_logs_count"][1][()] >= 3
        assert len(openipmi.SENSORS) == 6
    finally:
        exporter.stop()
        assert api.stop() == 0, api.log.read_text()[-2000:]
        assert stop_worker(proc) == 0, wlog.read_text()[-2000:]


def documented_scrape_config(api, token_file):
    """deploy/prometheus/farm-ipmi.yml as an operator adapts it: this
    farm-api's address over plain HTTP (TLS is tested in test_api.py), its
    reader token file."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "prometheus",
                           "farm-ipmi.yml")) as f:
        doc = yaml.safe_load(f)
    job = doc["scrape_configs"][0]
    host = api.url.split("//")[1]
    job["scheme"] = "http"
    job.pop("tls_config")
    job["authorization"]["credentials_file"] = str(token_file)
    sd = job["http_sd_configs"][0]
    sd.pop("tls_config")
    sd.update(url=f"{api.url}/v1/targets", refresh_interval="2s")
    sd["authorization"]["credentials_file"] = str(token_file)
    job["relabel_configs"][-1]["replacement"] = host
    return doc


def test_prometheus_scrapes_the_same_series_from_farm_and_ipmi_exporter(
        make_sim, store, redis_server, namespace, tmp_path):
    path = tmp_path / "tokens"
    reader = token(path, "reader", "prometheus")
    (tmp_path / "reader.token").write_text(reader)
    sim = make_sim(2, engine="lean", sensor_period=0, off_fraction=0.5, sel_interval=0,
                   hot_fraction=0)
    nodes = import_sim(sim, store)
    cfg = config(tmp_path, redis_server, namespace, path)
    exporter = Exporter(tmp_path, sim.username, sim.password)
    proc, wlog = start_worker(tmp_path, cfg)
    api = Api(tmp_path, cfg)
    doc = documented_scrape_config(api, tmp_path / "reader.token")
    doc["global"] = {"scrape_interval": "2s", "scrape_timeout": "2s"}
    # the job it replaces: the same relabelling, to ipmi_exporter, BMCs by address
    bmc_of = {f"127.0.0.1:{sim.port(i)}": n.name for i, n in enumerate(nodes)}
    doc["scrape_configs"].append({
        "job_name": "ipmi_exporter", "metrics_path": "/ipmi", "params": {"module": ["default"]},
        "static_configs": [{"targets": sorted(bmc_of)}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter.port}"}]})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(doc))
    prom, port = start_prometheus(tmp_path)

    def query(promql):
        try:
            got = requests.get(f"http://127.0.0.1:{port}/api/v1/query",
                               params={"query": promql}, timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        return got["data"]["result"] if got.get("status") == "success" else None

    def by_node(job, rename):
        """node -> {(name, other labels): value} of the job's ipmi_* series"""
        out = {}
        for s in query(f'{{__name__=~"ipmi_.+",__name__!="ipmi_scrape_duration_seconds",'
                       f'job="{job}"}}') or ():
            labels = dict(s["metric"])
            node = rename(labels.pop("instance"))
            labels.pop("job")
            out.setdefault(node, {})[tuple(sorted(labels.items()))] = s["value"][1]
        return out

    try:
        wait_for(lambda: all_read(store, [n.name for n in nodes]), 60, what="the fleet read")
        wait_for(lambda: (r := query('up{job=~"ipmi|ipmi_exporter"} == 1')) and len(r) == 4,
                 60, what="Prometheus to scrape farm-api and ipmi_exporter, both nodes each")
        theirs = wait_for(lambda: len(r := by_node("ipmi_exporter", bmc_of.get)) == 2 and r, 30,
                          what="ipmi_exporter's series in Prometheus")
        ours = wait_for(lambda: len(r := by_node("ipmi", str)) == 2 and r, 30,
                        what="farm's series in Prometheus")
        for node in ours:
            # FreeIPMI's copy of IANA's registry lacks farm-sim's manufacturer (see above)
            fix = {k: v for k, v in ours[node].items() if dict(k)["__name__"] == "ipmi_bmc_info"}
            for k, v in fix.items():
                assert dict(k)["manufacturer_id"].endswith(" (49871)"), k
                del ours[node][k]
                ours[node][tuple(sorted({**dict(k), "manufacturer_id": "49871"}.items()))] = v
            assert ours[node] == theirs[node], node
            assert len(ours[node]) > 20
        assert query('farm_reading_age_seconds{job="ipmi"} < 6')
    finally:
        prom.terminate()
        prom.wait(20)
        exporter.stop()
        assert api.stop() == 0, api.log.read_text()[-2000:]
        assert stop_worker(proc) == 0, wlog.read_text()[-2000:]
