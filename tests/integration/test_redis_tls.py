"""Redis over TLS with client certificates: one URL (rediss:// or ?ssl=true)
configures farm's state and tooz; a real TLS redis-server."""

import pytest

from tests.conftest import RedisServer, write_config
from tests.integration.test_redis_auth import run_farm
from tests.pki import make_pki


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls-redis")
    pki = make_pki(tmp)
    (crt, key), (client_crt, client_key) = pki["server"], pki["client"]
    server = RedisServer(tmp, ["port 0", "tls-port {port}", f"tls-cert-file {crt}", f"tls-key-file {key}",
                               f"tls-ca-cert-file {pki['ca']}", "tls-auth-clients yes"],
                         ssl=True, ssl_ca_certs=pki["ca"], ssl_certfile=client_crt, ssl_keyfile=client_key)
    server.config[1] = f"tls-port {server.port}"
    server.start()
    yield server, pki
    server.stop()


@pytest.mark.parametrize("scheme,flag", [("rediss", ""), ("redis", "ssl=true&")])
def test_tls_with_client_certificates_for_state_and_tooz(tls_redis, make_sim, tmp_path, namespace,
                                                          scheme, flag):
    server, pki = tls_redis
    crt, key = pki["client"]
    url = (f"{scheme}://127.0.0.1:{server.port}?{flag}ssl_ca_certs={pki['ca']}"
           f"&ssl_certfile={crt}&ssl_keyfile={key}")
    cfg = write_config(tmp_path / "farm.conf", url, namespace,
                       {"membership_timeout": 5, "leader_timeout": 4}, poll_interval=1, bmc_timeout=2)
    run_farm(cfg, make_sim(2), tmp_path)


def test_farm_api_async_reads_over_tls_with_client_certificates(tls_redis, namespace):
    """farm.store.aio (farm-api's /ipmi reads) takes the same URL options."""
    import asyncio

    from farm.model import Node, SensorResult
    from farm.store import Store
    from farm.store.aio import AsyncReader
    server, pki = tls_redis
    crt, key = pki["client"]
    url = (f"rediss://127.0.0.1:{server.port}?ssl_ca_certs={pki['ca']}"
           f"&ssl_certfile={crt}&ssl_keyfile={key}")
    store = Store(url, namespace)
    store.import_nodes([Node("n1", "127.0.0.1", 1623, "u", "p")])
    store.write_any([SensorResult("n1", 1.0, 0.1, readings=({"key": "T", "name": "T", "value": 1.0,
                                                             "unit": "", "type": "x",
                                                             "status": "ok"},))])

    async def read():
        reader = AsyncReader(url, namespace)
        try:
            return await reader.exporter_view("n1")
        finally:
            await reader.close()
    entry, state, sensors, now = asyncio.run(read())
    assert entry["address"] == "127.0.0.1" and list(sensors) == ["T"] and now > 1e9
    assert state["sensors_polled_at"] == "1.0"
