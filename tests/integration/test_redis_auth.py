"""Redis with passwords and ACL users, as operators run it: one backend URL
configures farm's state and tooz alike, whatever characters the password
holds; credentials retrying cannot fix end the daemons with one clear line;
no password reaches a log or the CLI's output."""

import json
import os
import subprocess

import pytest

from tests.conftest import RedisServer, script, wait_for, write_config
from tests.integration.test_shutdown import ROOT, start

PLAIN = "Top#Secret/Pw?x"   # unencoded '#', '/', '?': breaks naive URL parsing
ENCODED = "p@ss:w/rd%x"     # given percent-encoded in the URL
USERS = [f"user default on >{PLAIN} ~* &* +@all",
         f"user u2 on >{ENCODED} ~* &* +@all",
         "user noscript on >nos3cret ~* &* +@all -evalsha -eval"]


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("acl-redis"), USERS, password=PLAIN)
    server.start()
    yield server
    server.stop()


def url(server, userinfo):
    return f"redis://{userinfo}@127.0.0.1:{server.port}"


def farm_cli(cfg, *args):
    return subprocess.run([script("farm"), *args, "--config-file", cfg],
                          capture_output=True, text=True, timeout=60)


def run_farm(cfg, sim, tmp_path, secret=None):
    """Import through the CLI, run a worker and a coordinator until the
    coordinator has published (it saw the worker in tooz's group: tooz reached
    Redis too) and every node is polled, then SIGTERM both; their exit codes
    are 0 and no log or CLI output holds `secret`."""
    imported = farm_cli(cfg, "nodes", "import", sim.inventory)
    assert imported.returncode == 0, imported.stderr
    procs = [start("worker", cfg, tmp_path), start("coordinator", cfg, tmp_path)]
    try:
        def polled_under_assignment():
            status = farm_cli(cfg, "status", "--json")
            if status.returncode != 0:
                return False
            report = json.loads(status.stdout)
            n = report["nodes"]
            return ((report["generation"] or 0) >= 1 and n["never_polled"] == n["unaccounted"] == 0
                    and n["stale"] == 0 and status)
        status = wait_for(polled_under_assignment, 40, interval=0.5, what="an assignment and every poll")
    finally:
        for p in procs:
            p.terminate()
        codes = [p.wait(30) for p in procs]
    logs = "".join(p.log_path.read_text() for p in procs)
    assert codes == [0, 0], logs[-3000:]
    assert "Traceback" not in logs
    if secret:
        assert secret not in logs and secret not in status.stdout + status.stderr


@pytest.mark.parametrize("userinfo,secret", [(f":{PLAIN}", PLAIN),
                                             ("u2:p%40ss%3Aw%2Frd%25x", ENCODED)])
def test_special_character_passwords_work_everywhere(acl_redis, make_sim, tmp_path, namespace,
                                                     userinfo, secret):
    cfg = write_config(tmp_path / "farm.conf", url(acl_redis, userinfo), namespace,
                       {"membership_timeout": 5, "leader_timeout": 4}, poll_interval=1, bmc_timeout=2)
    run_farm(cfg, make_sim(3), tmp_path, secret)


@pytest.mark.parametrize("userinfo,words", [(":wrong-Pw", "refused"),
                                            ("noscript:nos3cret", "refused")])
def test_refused_credentials_end_the_daemons_with_one_line(acl_redis, tmp_path, namespace,
                                                           userinfo, words):
    cfg = write_config(tmp_path / "farm.conf", url(acl_redis, userinfo), namespace,
                       {"membership_timeout": 5, "leader_timeout": 4}, poll_interval=1, bmc_timeout=2)
    procs = [start("worker", cfg, tmp_path), start("coordinator", cfg, tmp_path)]
    try:
        codes = [p.wait(30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    logs = "".join(p.log_path.read_text() for p in procs)
    assert codes == [2, 2], logs[-3000:]
    assert logs.count("cannot run:") == 2 and words in logs
    assert "Traceback" not in logs and "wrong-Pw" not in logs and "nos3cret" not in logs
    status = farm_cli(cfg, "status")  # reads only: the no-scripts user may
    assert "nos3cret" not in status.stdout + status.stderr and "wrong-Pw" not in status.stderr
    if "wrong" in userinfo:
        assert status.returncode == 1 and "refused" in status.stderr


def farm_acl(namespace, password):
    """The least a farm user needs, as docs/operations.md gives it (namespace `farm`)."""
    return (f"user farm on >{password} resetkeys ~{namespace}:* ~{namespace}_tooz* "
            f"resetchannels &{namespace}:* -@all +@read +@write +@scripting +@pubsub "
            f"+@transaction +@connection -@dangerous +info +time")


def test_the_documented_acl_is_enough(tmp_path, make_sim, namespace):
    docs = open(os.path.join(ROOT, "docs", "operations.md")).read()
    assert farm_acl("farm", "PASSWORD") in docs
    server = RedisServer(tmp_path, [farm_acl(namespace, "f4rm-Pw"), "user default off"],
                         username="farm", password="f4rm-Pw")
    server.start()
    try:
        sim = make_sim(2)
        cfg = write_config(tmp_path / "farm.conf", url(server, "farm:f4rm-Pw"), namespace,
                           {"membership_timeout": 5, "leader_timeout": 4}, poll_interval=1,
                           bmc_timeout=2)
        run_farm(cfg, sim, tmp_path, "f4rm-Pw")
    finally:
        server.stop()
