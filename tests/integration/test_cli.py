"""`farm nodes import|list` as real processes against a real redis-server."""

import json
import os
import subprocess
import threading

import pytest

from farm.sim.ports import free_tcp_port
from tests.conftest import script, wait_for, write_config

PASSWORD = "Sup3r-Secret-Pw"


def farm(*args, timeout=60):
    return subprocess.run([script("farm"), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cfg(tmp_path, redis_server, namespace):
    return write_config(tmp_path / "farm.conf", redis_server.url, namespace)


def write_csv(tmp_path, rows, name="inv.csv"):
    path = tmp_path / name
    path.write_text("name,address,port,username,password\n" + "".join(r + "\n" for r in rows))
    return str(path)


def listed(cfg):
    result = farm("nodes", "list", "--config-file", cfg, "--json")
    assert result.returncode == 0, result.stderr
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_import_list_and_reimport(cfg, tmp_path):
    f = write_csv(tmp_path, [f"n1,127.0.0.1,700,admin,{PASSWORD}", f"n2,127.0.0.2,,admin,{PASSWORD}"])
    result = farm("nodes", "import", "--config-file", cfg, f)
    assert result.returncode == 0, result.stderr
    assert "2 added" in result.stdout
    rows = listed(cfg)
    assert set(rows) == {"n1", "n2"}
    assert rows["n1"]["port"] == 700 and rows["n2"]["port"] == 623
    for r in rows.values():
        assert r["power_state"] is None and r["last_polled_at"] is None and r["last_error"] is None
    again = farm("nodes", "import", "--config-file", cfg, f)
    assert "0 added, 0 updated, 2 unchanged" in again.stdout
    table = farm("nodes", "list", "--config-file", cfg)
    assert "n1" in table.stdout and "never" in table.stdout
    for out in (result, again, table, farm("nodes", "list", "--config-file", cfg, "--json")):
        assert PASSWORD not in out.stdout + out.stderr


def test_replace_drops_absent_nodes(cfg, tmp_path):
    farm("nodes", "import", "--config-file", cfg,
         write_csv(tmp_path, ["n1,::1,18356,a,p", "n2,::1,5022,a,p", "n3,::1,19624,a,p"]))
    result = farm("nodes", "import", "--config-file", cfg, "--replace",
                  write_csv(tmp_path, ["n2,::1,5022,a,p", "n4,::1,35723,a,p"], "b.csv"))
    assert "1 added, 0 updated, 1 unchanged, 2 removed" in result.stdout, result.stdout
    assert set(listed(cfg)) == {"n2", "n4"}


def test_bad_file_changes_nothing(cfg, tmp_path):
    farm("nodes", "import", "--config-file", cfg, write_csv(tmp_path, ["keep,::1,22931,a,p"]))
    bad = write_csv(tmp_path, ["new1,::1,23860,a,p", f"bad name,::1,99999,a,{PASSWORD}"], "bad.csv")
    result = farm("nodes", "import", "--config-file", cfg, "--replace", bad)
    assert result.returncode == 1
    assert "line 3: field 'name'" in result.stderr and "line 3: field 'port'" in result.stderr
    assert "nothing imported" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert set(listed(cfg)) == {"keep"}


def test_bad_yaml_reports_index(cfg, tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text("nodes:\n  - {name: a, address: '::1', username: u, password: p}\n"
                    "  - {name: b, address: 'not an address', username: u, password: p}\n")
    result = farm("nodes", "import", "--config-file", cfg, str(path))
    assert result.returncode == 1 and "nodes[1]: field 'address'" in result.stderr
    assert listed(cfg) == {}


def test_unreachable_redis_is_a_clear_error(tmp_path):
    cfg = write_config(tmp_path / "dead.conf", f"redis://:{PASSWORD}@127.0.0.1:{free_tcp_port()}", "x")
    f = write_csv(tmp_path, ["n1,::1,18356,a,p"])
    for args in (("nodes", "import", "--config-file", cfg, f), ("nodes", "list", "--config-file", cfg)):
        result = farm(*args)
        assert result.returncode == 1
        assert "Redis at redis://:***@127.0.0.1" in result.stderr
        assert "Traceback" not in result.stderr and PASSWORD not in result.stderr


def test_bad_config_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("[worker]\nexecutor = fibers\n")
    result = farm("nodes", "list", "--config-file", str(path))
    assert result.returncode == 1 and "invalid configuration" in result.stderr
    assert "Traceback" not in result.stderr


def test_stale_nodes_come_from_the_poll_index(tmp_path, redis_server, namespace, store):
    """--stale: never polled, or not polled for two intervals (3 s here)
    on Redis's clock; the page takes --after and --limit."""
    import time as t

    from farm.model import PollResult, PowerState
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1.5)
    farm("nodes", "import", "--config-file", cfg,
         write_csv(tmp_path, [f"n{i},::1,{1000 + i},u,p" for i in range(5)]))

    def stale(*args):
        out = farm("nodes", "list", "--config-file", cfg, "--json", "--stale", *args)
        assert out.returncode == 0, out.stderr
        return [r["name"] for r in json.loads(out.stdout)]
    started = t.monotonic()
    store.write_results([PollResult(n, t.time(), 0.001, PowerState.ON) for n in ("n1", "n3")])
    first = stale()
    if t.monotonic() - started < 3:  # else n1 and n3 are stale already: a slow host
        assert first == ["n0", "n2", "n4"]
    assert stale("--after", "n0", "--limit", "1") == ["n2"]
    wait_for(lambda: stale() == [f"n{i}" for i in range(5)], 30, what="n1 and n3 to go stale")
    polled = t.monotonic()
    store.write_results([PollResult("n3", t.time(), 0.001, PowerState.ON)])
    now_stale = stale()
    if t.monotonic() - polled < 3:
        assert now_stale == ["n0", "n1", "n2", "n4"]


def test_remove_nodes(cfg, tmp_path):
    farm("nodes", "import", "--config-file", cfg,
         write_csv(tmp_path, ["n1,::1,18356,a,p", "n2,::1,5022,a,p"]))
    # a name that matches no node is an error that names it, and changes nothing
    result = farm("nodes", "remove", "--config-file", cfg, "n1", "nope")
    assert result.returncode != 0 and "no node named nope; nothing changed" in result.stderr
    assert set(listed(cfg)) == {"n1", "n2"}
    result = farm("nodes", "remove", "--config-file", cfg, "n[1]")
    assert result.returncode == 0 and "1 of 1 nodes removed" in result.stdout
    assert set(listed(cfg)) == {"n2"}


def test_filters_status_watch_and_progress(cfg, tmp_path, store):
    import signal as sig
    import time as t
    farm("nodes", "import", "--config-file", cfg, write_csv(tmp_path, ["a,::1,36907,u,p", "b,::1,39681,u,p"]))
    from farm.model import PollResult, PowerState
    store.write_results([PollResult("a", t.time(), 0.001, PowerState.OFF)], "w1")
    offs = json.loads(farm("nodes", "list", "--config-file", cfg, "--json", "--state", "off").stdout)
    assert [r["name"] for r in offs] == ["a"]
    stale = json.loads(farm("nodes", "list", "--config-file", cfg, "--json", "--stale").stdout)
    assert [r["name"] for r in stale] == ["b"]
    # --watch redraws until interrupted
    proc = subprocess.Popen([script("farm"), "status", "--config-file", cfg, "--watch", "--interval", "0.3"],
                            stdout=subprocess.PIPE, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    wait_for(lambda: sum("nodes: 2 total" in line for line in list(lines)) >= 2, 30,
             what="two redraws")
    proc.send_signal(sig.SIGINT)
    assert proc.wait(10) == 0
    # a big import shows progress and lands whole
    big = tmp_path / "big.csv"
    big.write_text("name,address,port,username,password\n"
                   + "".join(f"n{i},::1,{1000 + i},u,p\n" for i in range(12000)))
    result = farm("nodes", "import", "--config-file", cfg, str(big), timeout=120)
    assert result.returncode == 0 and "importing" in result.stderr and "12000 added" in result.stdout
    assert store.inventory_version() >= 2 and len(store.load_nodes()[1]) == 12002


def test_config_before_the_subcommand_in_a_dir_and_by_default(cfg, tmp_path):
    """`farm --config-file F CMD`, `--config-dir D`, and ~/.farm/farm.conf when
    nothing is given (as OpenStack's tools): each reaches the same farm."""
    farm("nodes", "import", "--config-file", cfg, write_csv(tmp_path, ["n1,::1,1623,a,p"]))
    before = farm("--config-file", cfg, "nodes", "summary")
    assert before.returncode == 0 and before.stdout.startswith("1 nodes"), before.stderr
    confd = tmp_path / "farm.conf.d"
    confd.mkdir()
    (confd / "10-farm.conf").write_text(open(cfg).read())
    in_dir = farm("--config-dir", str(confd), "nodes", "summary")
    assert in_dir.returncode == 0 and in_dir.stdout.startswith("1 nodes"), in_dir.stderr
    home = tmp_path / "home"
    (home / ".farm").mkdir(parents=True)
    (home / ".farm" / "farm.conf").write_text(open(cfg).read())
    default = subprocess.run([script("farm"), "nodes", "summary"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, HOME=str(home)))
    assert default.returncode == 0 and default.stdout.startswith("1 nodes"), default.stderr


def test_list_pages_by_name(cfg, tmp_path):
    farm("nodes", "import", "--config-file", cfg,
         write_csv(tmp_path, [f"n{i},::1,{2000 + i},a,p" for i in range(5)]))
    first = farm("nodes", "list", "--config-file", cfg, "--json", "--limit", "2")
    assert [r["name"] for r in json.loads(first.stdout)] == ["n0", "n1"]
    assert "2 of 5 nodes; next page: --after n1" in first.stderr
    second = farm("nodes", "list", "--config-file", cfg, "--json", "--limit", "2", "--after", "n1")
    assert [r["name"] for r in json.loads(second.stdout)] == ["n2", "n3"]
    every = farm("nodes", "list", "--config-file", cfg, "--json", "--limit", "0")
    assert len(json.loads(every.stdout)) == 5 and every.stderr == ""
