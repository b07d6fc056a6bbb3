"""One Redfish session per BMC for the whole farm, against a session table
like iDRAC's (farm-sim --max-sessions: 8, a login past it answered 503 with
RAC0218, written from Dell's description and the Base registry): SIGKILLed
workers leave no session behind that their successors do not reuse, and a
full table is its own error, tried once a minute."""

import signal

import pytest
import requests

from farm.credentials import Credentials, generate_key_file
from farm.store import Store
from tests.conftest import wait_for, write_config
from tests.integration.test_tasks import farm, sections, sim_stats
from tests.integration.test_worker import import_sim, start_worker, stop_worker

OTHERS = 5  # sessions operators' web UIs hold on each BMC


def sealed_store(redis_server, namespace, tmp_path):
    key = tmp_path / "farm.key"
    generate_key_file(str(key))
    return Store(redis_server.url, namespace, credentials=Credentials(str(key))), str(key)


def hold_sessions(sim, node, count):
    for _ in range(count):
        r = requests.post(f"{node.address}/redfish/v1/SessionService/Sessions",
                          json={"UserName": sim.username, "Password": sim.password}, timeout=10)
        assert r.status_code == 201, r.text


def config(tmp_path, redis_server, namespace, key, **worker):
    worker = {"poll_interval": 1, "bmc_timeout": 5, **worker}
    return write_config(tmp_path / "farm.conf", redis_server.url, namespace, sections=sections(
                            tasks={"enabled": "power,sensors"},
                            security={"credentials_key_file": key}), **worker)


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_ten_sigkills_on_a_session_limited_bmc(executor, make_sim, redis_server, namespace,
                                               tmp_path):
    """processes: the poll processes keep the sealed sessions themselves
    (a Store of their own), and outlive no SIGKILL of their worker."""
    sim = make_sim(3, protocol="redfish", max_sessions=8, session_timeout=3600,
                   redfish_shape="current", sensor_period=0)
    store, key = sealed_store(redis_server, namespace, tmp_path)
    try:
        nodes = import_sim(sim, store)
        for node in nodes:
            hold_sessions(sim, node, OTHERS)
        cfg = config(tmp_path, redis_server, namespace, key, executor=executor, processes=2)
        with open(cfg, "a") as f:
            f.write("[logging]\nlevel = DEBUG\n")
        names = [n.name for n in nodes]
        argv = []
        for round_ in range(10):
            start = store.server_time()
            proc, log = start_worker(tmp_path, cfg, log_name=f"worker-{round_}.log")
            try:
                def read_all(start=start):
                    states = store.node_states(names)
                    return all(float(s.get("sensors_seen_at") or 0) > start
                               and not s.get("sensors_error_kind") for s in states.values())
                wait_for(read_all, 60, what=f"start {round_} to read every node")
                with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
                    argv.append(f.read().decode())
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        # the tokens farm keeps are sealed: never in clear in Redis or a log
        raw = store._redis.hgetall(f"{namespace}:redfish-sessions")  # noqa: SLF001
        tokens = [store.redfish_session(n)[0] for n in names]
        assert len(raw) == 3 and all(tokens)
        dump = b"".join(store._redis.dump(k) or b""  # noqa: SLF001
                        for k in store._redis.scan_iter(f"{namespace}:*"))  # noqa: SLF001
        logs = "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))
        assert "DEBUG" in logs
        answers = [farm(cfg, "nodes", "list", "--json").stdout] + \
            [farm(cfg, "nodes", "show", n).stdout for n in names]
        for token in tokens:
            assert token.encode() not in dump and token not in logs
            assert not any(token in text for text in answers + argv)
    finally:
        store.close()
    stats = sim_stats(sim)["bmcs"]
    for name in names:
        counts = stats[name]
        assert counts["refused"] == 0, counts
        assert counts["peak"] <= OTHERS + 2, counts
        assert counts["logins"] - OTHERS <= 1 + counts["unauthorized"], counts


def test_a_full_session_table_is_its_own_error_tried_once_a_minute(
        make_sim, redis_server, namespace, tmp_path):
    sim = make_sim(1, protocol="redfish", max_sessions=OTHERS, session_timeout=3600)
    store, key = sealed_store(redis_server, namespace, tmp_path)
    try:
        (node,) = import_sim(sim, store)
        hold_sessions(sim, node, OTHERS)
        cfg = config(tmp_path, redis_server, namespace, key, poll_interval=0.3)
        proc, log = start_worker(tmp_path, cfg)
        try:
            state = wait_for(lambda: (s := store.node_states([node.name])[node.name])
                             .get("error_kind") == "session-limit"
                             and int(s.get("consecutive_failures") or 0) >= 5 and s, 60,
                             what="five polls failing on the full table")
            assert "session table" in state["last_error"]
            shown = farm(cfg, "nodes", "show", node.name)
            assert "session-limit" in shown.stdout and "credentials" not in shown.stdout, \
                shown.stdout
        finally:
            assert stop_worker(proc) == 0, log.read_text()[-2000:]
    finally:
        store.close()
    assert sim_stats(sim)["bmcs"][node.name]["refused"] == 1


def test_forget_session_ends_it_and_the_next_poll_logs_in_anew(make_sim, redis_server, namespace,
                                                                tmp_path):
    sim = make_sim(1, protocol="redfish", session_timeout=3600)
    store, key = sealed_store(redis_server, namespace, tmp_path)
    try:
        (node,) = import_sim(sim, store)
        cfg = config(tmp_path, redis_server, namespace, key, poll_interval=0.3)
        proc, log = start_worker(tmp_path, cfg)
        try:
            first = wait_for(lambda: store.redfish_session(node.name), 60,
                             what="a session kept in Redis")
            out = farm(cfg, "nodes", "forget-session", node.name)
            assert out.returncode == 0, out.stderr
            assert first[0] not in out.stdout + out.stderr
            # the BMC no longer takes the old token
            gone = requests.get(f"{node.address}/redfish/v1/Systems/1",
                                headers={"X-Auth-Token": first[0]}, timeout=10)
            assert gone.status_code == 401
            second = wait_for(lambda: (s := store.redfish_session(node.name)) and s != first
                              and s, 60, what="the worker's new session kept")
            assert second[0] != first[0]
        finally:
            assert stop_worker(proc) == 0, log.read_text()[-2000:]
    finally:
        store.close()
