"""The metrics endpoint under load and abuse, with TLS and basic auth, on real
sockets (in-process server; the daemons' start-up failure with real processes)."""

import base64
import concurrent.futures
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from farm import metrics_http
from tests.conftest import script, write_config
from tests.pki import make_pki


@pytest.fixture
def registry():
    r = CollectorRegistry()
    Counter("farm_test_total", "A counter.", registry=r).inc()
    return r


def scrape(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return r.status, r.read()


def test_many_concurrent_scrapes(registry):
    """1,000 at once: prometheus-client's own server (backlog 5) timed some
    out at 3 s; the generous timeout here keeps this test sure on a busy host."""
    port = metrics_http.serve(registry, "127.0.0.1", 0)
    with concurrent.futures.ThreadPoolExecutor(1000) as pool:
        results = list(pool.map(lambda _: scrape(port, timeout=15)[0], range(1000)))
    assert results == [200] * 1000


def test_idle_connections_neither_block_scrapes_nor_stay(registry):
    port = metrics_http.serve(registry, "127.0.0.1", 0)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        t = time.monotonic()
        assert scrape(port)[0] == 200
        assert time.monotonic() - t < metrics_http.READ_TIMEOUT  # not queued behind them
        for s in idle:  # the server hangs up on each after its read timeout
            s.settimeout(metrics_http.READ_TIMEOUT + 10)
            assert s.recv(1024) == b""
    finally:
        for s in idle:
            s.close()


def test_tls_and_basic_auth(registry, tmp_path):
    pki = make_pki(tmp_path)
    port = metrics_http.serve(registry, "127.0.0.1", 0, tls=metrics_http.tls_context(*pki["server"]),
                              auth=b"prom:s3cret")
    ctx = ssl.create_default_context(cafile=pki["ca"])

    def get(user_password):
        req = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
        if user_password:
            req.add_header("Authorization", "Basic " + base64.b64encode(user_password).decode())
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
    status, body = get(b"prom:s3cret")
    assert status == 200 and b"farm_test_total 1.0" in body
    assert get(b"prom:wrong")[0] == 401 and get(None)[0] == 401
    with pytest.raises(OSError):  # plain HTTP on the TLS port: reset or refused
        scrape(port, timeout=3)


def test_a_taken_port_stops_the_worker_with_one_line(tmp_path, redis_server, namespace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace)
        with open(cfg, "a") as f:  # write_config's [worker] section is last
            f.write(f"[metrics]\nport = {taken.getsockname()[1]}\n")
        out = subprocess.run([script("farm-worker"), "--config-file", cfg],
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "cannot serve metrics" in out.stderr and "Traceback" not in out.stderr + out.stdout


def test_client_certificates_required(registry, tmp_path):
    pki = make_pki(tmp_path)
    port = metrics_http.serve(registry, "127.0.0.1", 0,
                              tls=metrics_http.tls_context(*pki["server"], client_ca_file=pki["ca"]))
    url = f"https://127.0.0.1:{port}/metrics"
    with_cert = ssl.create_default_context(cafile=pki["ca"])
    with_cert.load_cert_chain(*pki["client"])
    with urllib.request.urlopen(url, context=with_cert, timeout=5) as r:
        assert r.status == 200 and b"farm_test_total" in r.read()
    without = ssl.create_default_context(cafile=pki["ca"])
    with pytest.raises(OSError):  # the handshake is refused
        urllib.request.urlopen(url, context=without, timeout=5).read()
