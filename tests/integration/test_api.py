"""farm-api as a real process on a real Redis: tokens and roles, errors with
stable codes, secrets absent from every answer and the log, TLS with client
certificates, a power action through the API reaching a BMC, and its
/v1/targets read by a real Prometheus (Debian's `prometheus`)."""

import json
import os
import re
import subprocess

import pytest
import requests
import yaml

from farm.sim.ports import free_tcp_port
from tests.conftest import script, wait_for, write_config
from tests.integration.test_tasks import farm
from tests.integration.test_worker import import_sim, start_worker, stop_worker
from tests.pki import make_pki

SECRET, KG = "Api-Secret-pw-93", "0123456789abcdef0123456789abcdef01234567"


def token(path, role, name):
    out = subprocess.run([script("farm"), "api", "token", "add", "--role", role, "--name", name,
                          str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class Api:
    def __init__(self, tmp_path, cfg, name="api"):
        self.log = tmp_path / f"{name}.log"
        self.proc = subprocess.Popen([script("farm-api"), "--config-file", cfg, "--port", "0"],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        match = wait_for(lambda: self.proc.poll() is not None or re.search(
            r"listening on (\S+)", self.log.read_text()), 30, what="farm-api to listen")
        assert self.proc.poll() is None, self.log.read_text()
        self.url = match.group(1)

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(15)


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens"
    return path, token(path, "reader", "prometheus"), token(path, "operator", "provisioner")


def api_config(tmp_path, redis_server, namespace, tokens_file, **api):
    return write_config(tmp_path / "farm.conf", redis_server.url, namespace,
                        sections={"api": {"tokens_file": tokens_file, **api}})


def test_tokens_roles_errors_and_no_secrets(store, redis_server, namespace, tmp_path, tokens):
    path, reader, operator = tokens
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"nodes": [
        {"name": f"n{i}", "address": "127.0.0.1", "port": 30000 + i, "username": "admin",
         "password": SECRET, "kg": KG, "labels": {"rack": "r1", "pdu.feed": f"p{i % 2}"}}
        for i in range(3)]}))
    cfg = api_config(tmp_path, redis_server, namespace, str(path))
    assert farm(cfg, "nodes", "import", str(inv)).returncode == 0
    api = Api(tmp_path, cfg)
    r_hdr, o_hdr = {"Authorization": f"Bearer {reader}"}, {"Authorization": f"Bearer {operator}"}
    try:
        got = requests.get(f"{api.url}/v1/nodes", timeout=10)
        assert got.status_code == 401 and got.json()["error"]["code"] == "unauthorized"
        assert got.headers["WWW-Authenticate"] == "Bearer"
        got = requests.get(f"{api.url}/v1/nodes", headers={"Authorization": "Bearer nope"},
                           timeout=10)
        assert got.status_code == 401
        got = requests.get(f"{api.url}/v1/nodes?limit=2", headers=r_hdr, timeout=10)
        assert got.status_code == 200, got.text
        page = got.json()
        assert [n["name"] for n in page["nodes"]] == ["n0", "n1"] and "marker=n1" in page["next"]
        assert [n["name"] for n in requests.get(page["next"], headers=r_hdr, timeout=10)
                .json()["nodes"]] == ["n2"]
        chosen = requests.get(f"{api.url}/v1/nodes", params={"select": "pdu.feed=p0",
                                                             "fields": "labels"},
                              headers=r_hdr, timeout=10).json()["nodes"]
        assert chosen == [{"name": "n0", "labels": {"rack": "r1", "pdu.feed": "p0"}},
                          {"name": "n2", "labels": {"rack": "r1", "pdu.feed": "p0"}}]
        bad = requests.get(f"{api.url}/v1/nodes", params={"select": "n[0-9]"}, headers=r_hdr,
                           timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_selection"
        detail = requests.get(f"{api.url}/v1/nodes/n1", headers=r_hdr, timeout=10)
        assert detail.status_code == 200 and detail.json()["node"]["labels"]["rack"] == "r1"
        states = requests.get(f"{api.url}/v1/nodes/n1/states", headers=r_hdr, timeout=10).json()
        assert states["power_state"] is None and states["target_power_state"] is None
        missing = requests.get(f"{api.url}/v1/nodes/nope/states", headers=r_hdr, timeout=10)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "node_not_found"

        # a reader may not act; an operator may
        body = {"state": "on"}
        got = requests.put(f"{api.url}/v1/nodes/n1/desired", json=body, headers=r_hdr, timeout=10)
        assert got.status_code == 403 and got.json()["error"]["code"] == "forbidden"
        assert "desired" not in store.controls()[1].get("n1", {})
        got = requests.put(f"{api.url}/v1/nodes/n1/desired", json=body, headers=o_hdr, timeout=10)
        assert got.status_code == 200 and store.controls()[1]["n1"]["desired"] == "on"
        bad = requests.put(f"{api.url}/v1/nodes/n1/desired", json={"state": "up"}, headers=o_hdr,
                           timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        # no worker runs: 503; in maintenance: 409
        power = {"target": "power off"}
        got = requests.put(f"{api.url}/v1/nodes/n1/states/power", json=power, headers=o_hdr,
                           timeout=10)
        assert got.status_code == 503 and got.json()["error"]["code"] == "no_live_worker"
        got = requests.put(f"{api.url}/v1/nodes/n1/maintenance", json={"maintenance": True,
                                                                      "reason": "rma"},
                           headers=o_hdr, timeout=10)
        assert got.status_code == 200 and store.controls()[1]["n1"]["maintenance"] == "rma"
        got = requests.put(f"{api.url}/v1/nodes/n1/states/power", json=power, headers=o_hdr,
                           timeout=10)
        assert got.status_code == 409 and got.json()["error"]["code"] == "node_in_maintenance"
        events = requests.get(f"{api.url}/v1/events", params={"type": "action"}, headers=r_hdr,
                              timeout=10).json()
        assert [(e["type"], e["by"]) for e in events["events"]] == [
            ("desired", "provisioner@api"), ("maintenance", "provisioner@api")]
        targets = requests.get(f"{api.url}/v1/targets", headers=r_hdr, timeout=10).json()
        assert targets[0] == {"targets": ["n0"], "labels": {
            "__meta_farm_node": "n0", "__meta_farm_driver": "ipmi",
            "__meta_farm_site": "default",
            "__meta_farm_label_rack": "r1", "__meta_farm_label_pdu_feed": "p0"}}
        # no worker runs: the default site is dark, in the API as in `farm status`
        status = requests.get(f"{api.url}/v1/status", headers=r_hdr, timeout=10).json()
        assert status["dark"] == [{"site": "default", "nodes": len(targets)}]
        assert [r["site"] for r in status["sites"]] == ["default"]
        assert "/v1/nodes/{name}/states/power" in requests.get(
            f"{api.url}/openapi.json", timeout=10).json()["paths"]
        # no secret anywhere: answers, and the log
        seen = "".join(requests.get(f"{api.url}{p}", headers=r_hdr, timeout=10).text
                       for p in ("/v1/nodes", "/v1/nodes/n0", "/v1/targets", "/v1/events"))
        for secret in (SECRET, KG, reader, operator):
            assert secret not in seen and secret not in api.log.read_text()
    finally:
        assert api.stop() == 0, api.log.read_text()[-2000:]


def test_a_tokens_file_others_can_read_is_refused(redis_server, namespace, tmp_path, tokens):
    path = tokens[0]
    os.chmod(path, 0o644)
    cfg = api_config(tmp_path, redis_server, namespace, str(path))
    out = subprocess.run([script("farm-api"), "--config-file", cfg, "--port", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "group or others may read or write it" in out.stderr


def test_tls_with_client_certificates(store, redis_server, namespace, tmp_path, tokens):
    path, reader, _ = tokens
    pki = make_pki(tmp_path)
    cfg = api_config(tmp_path, redis_server, namespace, str(path), tls_cert_file=pki["server"][0],
                     tls_key_file=pki["server"][1], tls_client_ca_file=pki["ca"])
    api = Api(tmp_path, cfg)
    try:
        url = api.url  # the test CA names 127.0.0.1
        assert api.url.startswith("https://")
        got = requests.get(f"{url}/v1/nodes", headers={"Authorization": f"Bearer {reader}"},
                           verify=pki["ca"], cert=pki["client"], timeout=10)
        assert got.status_code == 200, got.text
        # no client certificate: refused in the handshake (TLS 1.3 lets the
        # client finish first, so it sees the connection dropped)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{url}/v1/nodes", verify=pki["ca"], timeout=10)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/v1/nodes", cert=pki["client"], timeout=10)  # not our CA
    finally:
        assert api.stop() == 0, api.log.read_text()[-2000:]


def test_power_through_the_api_reaches_the_bmc(make_sim, store, redis_server, namespace,
                                               tmp_path, tokens):
    path, reader, operator = tokens
    sim = make_sim(3, engine="lean")
    nodes = import_sim(sim, store)
    cfg = api_config(tmp_path, redis_server, namespace, str(path))
    proc, wlog = start_worker(tmp_path, cfg)
    api = Api(tmp_path, cfg)
    o_hdr = {"Authorization": f"Bearer {operator}"}
    try:
        wait_for(lambda: store.worker_reports(), 30, what="the worker's report")
        got = requests.put(f"{api.url}/v1/nodes/{nodes[0].name}/states/power",
                           json={"target": "power off"}, headers=o_hdr, timeout=10)
        assert got.status_code == 202, got.text
        wait_for(lambda: "off" in sim.ipmitool(0, "chassis", "power", "status").stdout, 30,
                 what="the BMC to power off")
        got = requests.post(f"{api.url}/v1/power-actions", headers=o_hdr, timeout=10,
                            json={"select": "all", "target": "power off", "interval": 0})
        assert got.status_code == 202, got.text
        action_id = got.json()["id"]
        record = wait_for(lambda: (r := requests.get(f"{api.url}/v1/power-actions/{action_id}",
                                                     headers=o_hdr, timeout=10).json())
                          ["action"]["state"] == "done" and r, 60, what="the bulk action")
        assert {s["state"] for s in record["nodes"].values()} == {"done"}
        for i in range(3):
            assert "off" in sim.ipmitool(i, "chassis", "power", "status").stdout
        states = requests.get(f"{api.url}/v1/nodes/{nodes[1].name}/states", headers=o_hdr,
                              timeout=10).json()
        assert states["power_state"] == "power off" and states["reading_age"] < 60
    finally:
        assert api.stop() == 0, api.log.read_text()[-2000:]
        assert stop_worker(proc) == 0, wlog.read_text()[-2000:]


def test_prometheus_discovers_the_fleet_from_v1_targets(store, redis_server, namespace,
                                                        tmp_path, tokens):
    path, reader, _ = tokens
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"nodes": [
        {"name": f"n{i}", "address": "127.0.0.1", "port": 30000 + i, "username": "u",
         "password": "p", "labels": {"rack": f"r{i}"}} for i in range(2)]}))
    cfg = api_config(tmp_path, redis_server, namespace, str(path))
    assert farm(cfg, "nodes", "import", str(inv)).returncode == 0
    api = Api(tmp_path, cfg)
    (tmp_path / "reader.token").write_text(reader)
    host = api.url.split("//")[1]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": [{
        "job_name": "farm-ipmi", "metrics_path": "/ipmi",
        "authorization": {"type": "Bearer", "credentials_file": str(tmp_path / "reader.token")},
        # `type: Bearer` spelled out: Prometheus 2.42's http_sd sends the bare
        # credentials without it (seen here; farm then answers 401)
        "http_sd_configs": [{"url": f"{api.url}/v1/targets", "refresh_interval": "5s",
                             "authorization": {"type": "Bearer", "credentials_file":
                                               str(tmp_path / "reader.token")}}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"source_labels": ["__meta_farm_label_rack"], "target_label": "rack"},
            {"target_label": "__address__", "replacement": host}]}]}))
    prom, port = start_prometheus(tmp_path)
    try:
        def discovered():
            try:
                got = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            except (requests.RequestException, json.JSONDecodeError):
                return None
            active = got["data"]["activeTargets"]
            return len(active) == 2 and active
        active = wait_for(discovered, 60, what="Prometheus to discover the fleet")
        labels = sorted((t["labels"]["instance"], t["labels"]["rack"]) for t in active)
        assert labels == [("n0", "r0"), ("n1", "r1")]
        assert all(t["scrapeUrl"].startswith(f"{api.url}/ipmi?target=n") for t in active)
    finally:
        prom.terminate()
        prom.wait(20)
        assert api.stop() == 0, api.log.read_text()[-2000:]


def start_prometheus(tmp_path):
    """A real Prometheus (Debian's) on tmp_path/prometheus.yml, once
    promtool passes it: (its process, its port)."""
    assert subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, timeout=30).returncode == 0
    port = free_tcp_port()
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
                            stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT)
    return prom, port


def waiting_at(port):
    """Connections to a server on `port` holding bytes it has not read
    (established, in /proc/net/tcp): commands sent to a paused Redis."""
    waiting = 0
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.split(":")[1], 16) == port and state == "01":
                waiting += int(queues.split(":")[1], 16) > 0
    return waiting


def test_exit_is_bounded_while_redis_is_paused(tmp_path, tokens):
    """SIGTERM while a request waits on a paused Redis: farm-api still exits
    within its budget (5 s for requests in flight, then the watchdog)."""
    import signal
    import threading
    import time

    from farm.sim.harness import RedisServer
    path, reader, _ = tokens
    with RedisServer(tmp_path / "paused") as redis:
        cfg = write_config(tmp_path / "farm.conf", redis.url, "paused",
                           sections={"api": {"tokens_file": str(path)}})
        api = Api(tmp_path, cfg)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            hdr = {"Authorization": f"Bearer {reader}"}
            # one request on the thread pool, one on the event loop (/ipmi, asyncio Redis)
            for path in ("/v1/nodes", "/ipmi?target=n1"):
                threading.Thread(target=lambda path=path: requests.get(
                    f"{api.url}{path}", headers=hdr, timeout=60), daemon=True).start()
            wait_for(lambda: waiting_at(redis.port) >= 2, 30,
                     what="both requests' commands to wait at the paused Redis")
            began = time.monotonic()
            api.proc.terminate()
            code = api.proc.wait(30)
            took = time.monotonic() - began
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
            if api.proc.poll() is None:
                api.proc.kill()
                api.proc.wait(10)
        assert took < 11, (took, code, api.log.read_text()[-1500:])


def test_a_plan_that_cannot_run_is_a_400_and_changes_nothing(store, redis_server, namespace,
                                                             tmp_path, tokens):
    """A wave interval that is not a finite number of seconds (or past an
    hour), through the API and the CLI: a clear 4xx / error naming the
    limit, and no node locked (it once left them in an action that did not
    exist, and the answer carried the Redis URL and a script SHA)."""
    path, _, operator = tokens
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump({"nodes": [
        {"name": f"p{i}", "address": "127.0.0.1", "port": 30000 + i, "username": "admin",
         "password": SECRET} for i in range(3)]}))
    cfg = api_config(tmp_path, redis_server, namespace, str(path))
    assert farm(cfg, "nodes", "import", str(inv)).returncode == 0
    names = ["p0", "p1", "p2"]
    api = Api(tmp_path, cfg)
    hdr = {"Authorization": f"Bearer {operator}", "Content-Type": "application/json"}
    try:
        for interval in ("Infinity", "NaN", "-Infinity", "1e300", "3601"):
            body = '{"select": "all", "target": "power off", "interval": %s}' % interval
            got = requests.post(f"{api.url}/v1/power-actions", data=body, headers=hdr, timeout=10)
            assert got.status_code == 400, (interval, got.text)
            assert got.json()["error"]["code"] == "invalid_request", got.text
            assert "redis://" not in got.text and "interval" in got.text
            assert store.nodes_in_actions(names) == {}
    finally:
        assert api.stop() == 0, api.log.read_text()[-2000:]
    for interval in ("nan", "inf", "7200"):
        out = farm(cfg, "nodes", "power", "all", "off", "--interval", interval, "--yes")
        assert out.returncode != 0 and "interval" in out.stderr, (interval, out.stderr)
        assert "Traceback" not in out.stderr
        assert store.nodes_in_actions(names) == {}
