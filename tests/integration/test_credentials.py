"""BMC passwords at rest: sealed in Redis, opened only by workers holding the
key, rotated without a polling gap, refused in clear unless allowed; real
CLI, worker, Redis and simulator."""

import os
import stat
import subprocess

import redis

from farm.fleet import inventory
from tests.conftest import script, wait_for, write_config
from tests.integration.test_shutdown import start


def farm(*args):
    return subprocess.run([script("farm"), *args], capture_output=True, text=True, timeout=60)


def config(tmp_path, redis_server, namespace, key_file=None, plaintext=False):
    cfg = write_config(tmp_path / f"farm-{bool(key_file)}-{plaintext}.conf", redis_server.url,
                       namespace, poll_interval=1, bmc_timeout=2)
    text = open(cfg).read().replace("allow_plaintext_credentials = true",
                                    f"allow_plaintext_credentials = {str(plaintext).lower()}")
    if key_file:
        text = text.replace("[security]\n", f"[security]\ncredentials_key_file = {key_file}\n")
    open(cfg, "w").write(text)
    return cfg


def everything_in_redis(redis_server, namespace):
    """Every key farm (and tooz) wrote for this namespace, with its values, as
    text (bytes decoded as latin-1, so nothing is lost to the search)."""
    r = redis.Redis(port=redis_server.port)
    out = []
    for key in r.scan_iter(f"{namespace}*".encode()):
        kind = r.type(key).decode()
        value = {"hash": r.hgetall, "string": r.get, "stream": lambda k: r.xrange(k),
                 "set": r.smembers, "list": lambda k: r.lrange(k, 0, -1),
                 "zset": lambda k: r.zrange(k, 0, -1)}.get(kind, lambda k: "")(key)
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def polled_ok(store, names):
    states = store.node_states(names)
    return all(s.get("power_state") and s.get("error_kind") == "" for s in states.values())


def test_sealed_rotated_and_never_in_clear(make_sim, store, redis_server, namespace, tmp_path):
    sim = make_sim(3)
    names = [n.name for n in inventory.parse(open(sim.inventory).read(), sim.inventory)]
    k1, k2, keys = tmp_path / "k1", tmp_path / "k2", tmp_path / "keys"
    assert farm("keys", "generate", str(k1)).returncode == 0
    assert stat.S_IMODE(os.stat(k1).st_mode) == 0o600
    assert farm("keys", "generate", str(k1)).returncode != 0  # never overwrites
    keys.write_bytes(k1.read_bytes())
    os.chmod(keys, 0o600)

    # no key, no permission: nothing imported
    refused = farm("nodes", "import", "--config-file", config(tmp_path, redis_server, namespace),
                   sim.inventory)
    assert refused.returncode == 1 and "in clear" in refused.stderr
    assert store.inventory_version() == 0

    cfg = config(tmp_path, redis_server, namespace, key_file=keys)
    assert farm("nodes", "import", "--config-file", cfg, sim.inventory).returncode == 0
    assert sim.password not in everything_in_redis(redis_server, namespace)

    # a worker without the key stops at start, with one line
    keyless = start("worker", config(tmp_path, redis_server, namespace), tmp_path / "keyless")
    assert keyless.wait(30) == 2
    log = keyless.log_path.read_text()
    assert "sealed" in log and "Traceback" not in log and sim.password not in log

    worker = start("worker", cfg, tmp_path / "w")
    try:
        wait_for(lambda: polled_ok(store, names), 30, what="polls with sealed passwords")
        # rotation: the new key first in the worker's file, then `farm keys rotate`
        assert farm("keys", "generate", str(k2)).returncode == 0
        keys.write_bytes(k2.read_bytes() + k1.read_bytes())
        before = {n: float(s["last_ok_at"]) for n, s in store.node_states(names).items()}
        rotated = farm("keys", "rotate", "--config-file", cfg, "--new-key-file", str(k2))
        assert rotated.returncode == 0 and "3 stored passwords" in rotated.stdout, rotated.stderr
        keys.write_bytes(k2.read_bytes())  # the old key is gone: only k2 opens now
        version = store.inventory_version()
        # no gap: every node polled again after the rotation, by the same worker
        wait_for(lambda: all(float(s["last_ok_at"]) > before[n] + 2
                             for n, s in store.node_states(names).items()), 30,
                 what="polls after the rotation")
        assert worker.poll() is None and store.inventory_version() == version
        # and a re-read of the inventory (another import) opens with k2 alone
        assert farm("nodes", "import", "--config-file", cfg, sim.inventory).returncode == 0
        assert sim.password not in everything_in_redis(redis_server, namespace)
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
    logs = worker.log_path.read_text()
    assert "Traceback" not in logs and sim.password not in logs and "sealed with a key" not in logs


def test_password_file_keeps_the_password_out_of_redis(make_sim, store, redis_server, namespace,
                                                       tmp_path):
    sim = make_sim(2)
    secret = tmp_path / "bmc-password"
    secret.write_text(sim.password + "\n")
    nodes = inventory.parse(open(sim.inventory).read(), sim.inventory)
    inv = tmp_path / "inv.yaml"
    inv.write_text("nodes:\n" + "".join(
        f"  - {{name: {n.name}, address: {n.address}, port: {n.port}, username: {n.username}, "
        f"password_file: {secret}}}\n" for n in nodes))
    cfg = config(tmp_path, redis_server, namespace)  # no key and no plaintext needed
    assert farm("nodes", "import", "--config-file", cfg, str(inv)).returncode == 0
    worker = start("worker", cfg, tmp_path / "w")
    try:
        wait_for(lambda: polled_ok(store, [n.name for n in nodes]), 30, what="polls via password_file")
        assert sim.password not in everything_in_redis(redis_server, namespace)
    finally:
        worker.terminate()
        worker.wait(30)


def test_a_bmc_key_is_sealed_like_a_password_and_rotated(redis_server, namespace, tmp_path):
    from cryptography.fernet import Fernet

    from farm.credentials import Credentials
    from farm.store import Store
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    for path in (k1, k2):
        path.write_bytes(Fernet.generate_key() + b"\n")
        os.chmod(path, 0o600)
    kg = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
    text = ("nodes:\n- {name: n1, address: 127.0.0.1, username: u, password: pw-Secret-1, "
            f"kg: '{kg}', cipher_suites: [3], privilege: operator, workarounds: [intel20]}}\n")
    nodes = inventory.parse(text, "x.yaml")
    store = Store(redis_server.url, namespace, credentials=Credentials(str(k1)))
    assert store.import_nodes(nodes)["added"] == 1
    assert store.import_nodes(nodes)["unchanged"] == 1  # sealing is random; compared opened
    raw = everything_in_redis(redis_server, namespace)
    assert kg not in raw and "pw-Secret-1" not in raw
    _, (loaded,) = store.load_nodes(passwords=True)
    assert loaded == nodes[0] and loaded.kg == kg
    shown = store.node_detail("n1")["node"]
    assert shown["kg"] == "(set)" and kg not in str(shown)
    assert shown["cipher_suites"] == [3] and shown["workarounds"] == ["intel20"]
    # rotation reseals the key too, and the Redfish session token kept for
    # the node: only k2 opens them afterwards; a token no key opens is dropped
    assert store.save_redfish_session("n1", "tok-Secret-7", "/redfish/v1/SessionService/1")
    store._redis.hset(f"{namespace}:redfish-sessions", "gone", "not-a-token")
    assert store.reseal([Fernet(k2.read_bytes().strip())]) == (1, 1)
    after = Store(redis_server.url, namespace, credentials=Credentials(str(k2)))
    _, (rotated,) = after.load_nodes(passwords=True)
    assert rotated.kg == kg and kg not in everything_in_redis(redis_server, namespace)
    assert after.redfish_session("n1") == ("tok-Secret-7", "/redfish/v1/SessionService/1")
    assert Store(redis_server.url, namespace,
                 credentials=Credentials(str(k1))).redfish_session("n1") is None
    assert "tok-Secret-7" not in everything_in_redis(redis_server, namespace)
    assert after._redis.hkeys(f"{namespace}:redfish-sessions") == ["n1"]
    # a changed key is an update
    changed = inventory.parse(text.replace(kg, "00" + kg[2:]), "x.yaml")
    assert Store(redis_server.url, namespace, credentials=Credentials(str(k2))).import_nodes(
        changed)["updated"] == 1
