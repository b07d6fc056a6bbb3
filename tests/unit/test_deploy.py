"""Files that cannot run here are at least checked."""

import configparser
import json
import os
import tempfile

import pytest
import yaml

from farm import conf
from farm.worker import STOP_MARGIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



@pytest.mark.parametrize("daemon,unit_file", [("farm-worker", "farm-worker.service"),
                                              ("farm-worker", "farm-worker@.service"),
                                              ("farm-coordinator", "farm-coordinator.service")])
def test_systemd_units(daemon, unit_file):
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str
    assert unit.read(os.path.join(ROOT, "deploy", "systemd", unit_file))
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith(daemon)
    assert service["RestartPreventExitStatus"] == "2"
    if "@" in unit_file:  # each instance its own metrics port
        assert "--metrics-port 948%i" in service["ExecStart"]
    assert service["KillMode"] == "mixed" and service["Restart"] == "on-failure"
    # the stop timeout must exceed the exit budget with the default bmc_timeout
    assert int(service["TimeoutStopSec"]) > 5 + STOP_MARGIN


def test_api_systemd_unit():
    from farm.api.server import GRACE
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str
    assert unit.read(os.path.join(ROOT, "deploy", "systemd", "farm-api.service"))
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith("farm-api")
    assert service["Restart"] == "on-failure"
    assert int(service["TimeoutStopSec"]) > GRACE + 5  # the watchdog's budget
    # open files for every connection [api] max_connections lets in, with room
    assert int(service["LimitNOFILE"]) > 2 * conf.Api.max_connections


def test_example_config_loads():
    s = conf.load(os.path.join(ROOT, "deploy", "farm.conf.example"))
    assert s.worker.poll_interval == 60


def _yaml_docs(path):
    with open(os.path.join(ROOT, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_compose_file():
    (compose,) = _yaml_docs("deploy/compose.yaml")
    services = compose["services"]
    assert {"redis", "sim", "import", "coordinator", "worker", "api"} <= set(services)
    assert services["coordinator"]["deploy"]["replicas"] == 2
    for name in ("coordinator", "worker", "sim", "import", "api"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    # the worker must be scalable: no fixed container name or host port
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]


def test_kubernetes_manifests():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _yaml_docs("deploy/k8s/farm.yaml")}
    assert docs[("Deployment", "farm-coordinator")]["spec"]["replicas"] == 2
    assert ("Deployment", "farm-worker") in docs and ("Secret", "farm-inventory") in docs
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(docs[("ConfigMap", "farm-config")]["data"]["farm.conf"])
    try:
        settings = conf.load(f.name)
    finally:
        os.unlink(f.name)
    assert settings.metrics.bind == "0.0.0.0" and settings.coordination.backend_url == "redis://redis:6379"
    assert settings.api.bind == "0.0.0.0" and settings.api.tokens_file == "/etc/farm-api/tokens"
    assert docs[("Service", "farm-api")]["spec"]["selector"] == {"app": "farm-api"}
    tokens = docs[("Deployment", "farm-api")]["spec"]["template"]["spec"]["volumes"][1]
    assert tokens["secret"]["defaultMode"] == 0o600
    for name in ("farm-coordinator", "farm-worker", "farm-api"):
        spec = docs[("Deployment", name)]["spec"]
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
        assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > 5


def test_container_config_and_dockerfile():
    s = conf.load(os.path.join(ROOT, "deploy", "farm.container.conf"))
    assert s.metrics.bind == "0.0.0.0" and s.logging.format == "json"
    with open(os.path.join(ROOT, "deploy", "Dockerfile")) as f:
        dockerfile = f.read()
    assert dockerfile.startswith("#") and "FROM python:3.11" in dockerfile and "USER farm" in dockerfile


def test_alert_rules_load_and_pass_their_unit_tests():
    """deploy/prometheus/farm-rules.yaml, checked and unit-tested by promtool
    (Debian: prometheus); the metrics they name are checked against a live
    scrape in tests/integration/test_metrics.py."""
    import shutil
    import subprocess
    promtool = shutil.which("promtool")
    assert promtool, "needs promtool on the PATH (Debian: prometheus)"
    where = os.path.join(ROOT, "deploy", "prometheus")
    for args in (["check", "rules", "farm-rules.yaml"], ["test", "rules", "farm-rules.test.yaml"]):
        out = subprocess.run([promtool, *args], cwd=where, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_is_valid_grafana_json():
    with open(os.path.join(ROOT, "deploy", "grafana", "farm.json")) as f:
        dash = json.load(f)
    assert dash["panels"] and all(p["targets"] and p["title"] for p in dash["panels"])
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_the_ipmi_scrape_config_passes_promtool(tmp_path):
    """deploy/prometheus/farm-ipmi.yml, the scrape config operators copy, is
    valid for promtool once its token and CA files exist (a real Prometheus
    scrapes farm-api with it in tests/integration/test_ipmi_endpoint.py)."""
    import shutil
    import subprocess
    promtool = shutil.which("promtool")
    assert promtool, "needs promtool on the PATH (Debian: prometheus)"
    with open(os.path.join(ROOT, "deploy", "prometheus", "farm-ipmi.yml")) as f:
        text = f.read()
    for name in ("farm-api.token", "farm-api-ca.pem"):
        (tmp_path / name).write_text("x\n")
        assert f"/etc/prometheus/{name}" in text
        text = text.replace(f"/etc/prometheus/{name}", str(tmp_path / name))
    (tmp_path / "farm-ipmi.yml").write_text(text)
    out = subprocess.run([promtool, "check", "config", str(tmp_path / "farm-ipmi.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_setup_names_the_missing_packages_when_it_may_not_install(tmp_path):
    """deploy/setup.sh (run by the demo and tests/run.sh) as a user that is
    not root and has no sudo, on a machine without redis-server: it names
    the packages and the command, changes nothing, exits 1."""
    import shutil
    import subprocess
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3", "id", "ls", "dirname", "env"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    command = ["bash", os.path.join(ROOT, "deploy", "setup.sh"), "demo"]
    if os.geteuid() == 0:  # CI runs as root: become nobody, as a newcomer is not root
        command = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"] + command
    out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, cwd=tmp_path)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "sudo apt-get install -y redis-server" in out.stderr, out.stderr
    assert "setting up .venv" not in out.stdout   # stopped before it changed anything
