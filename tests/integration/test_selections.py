"""Labels and selections through the real CLI and a real Redis: the label
index kept beside the name index, every command that took a name taking a
selection, and an unknown name changing nothing."""

import json

import yaml

from tests.conftest import write_config
from tests.integration.test_tasks import events, farm


def inventory(path, nodes):
    path.write_text(yaml.safe_dump({"nodes": nodes}))
    return str(path)


def node(i, rack, role, **labels):
    return {"name": f"n{i:02d}", "address": "127.0.0.1", "port": 20000 + i, "username": "u",
            "password": "p", "labels": {"rack": rack, "role": role, **labels}}


def test_labels_and_selections(store, redis_server, namespace, tmp_path):
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace)
    nodes = [node(i, f"r{1 + i // 6}", "compute" if i % 2 else "storage", pdu=f"p{i % 3}")
             for i in range(12)]
    assert farm(cfg, "nodes", "import", inventory(tmp_path / "a.yaml", nodes)).returncode == 0
    assert store.labels()["n07"] == {"rack": "r2", "role": "compute", "pdu": "p1"}

    out = farm(cfg, "nodes", "list", "rack=r1", "--json")
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == [f"n{i:02d}" for i in range(6)]
    assert rows[0]["labels"] == {"pdu": "p0", "rack": "r1", "role": "storage"}
    shown = json.loads(farm(cfg, "nodes", "show", "rack=r2@role=compute", "--json").stdout)
    assert [d["node"]["name"] for d in shown] == ["n07", "n09", "n11"]
    text = farm(cfg, "nodes", "list", "n[00-01]").stdout
    assert "rack=r1" in text and "n01" in text and "n02" not in text
    text = farm(cfg, "nodes", "show", "n07").stdout
    assert "labels: pdu=p1 rack=r2 role=compute" in text

    # a node's site: selected like a label, shown by list and show
    nodes[11]["site"] = "dc2"
    assert farm(cfg, "nodes", "import", inventory(tmp_path / "a.yaml", nodes)).returncode == 0
    rows = json.loads(farm(cfg, "nodes", "list", "site=dc2", "--json").stdout)
    assert [(r["name"], r["site"]) for r in rows] == [("n11", "dc2")]
    assert len(json.loads(farm(cfg, "nodes", "list", "site=default", "--json").stdout)) == 11
    header, row = farm(cfg, "nodes", "list", "n11").stdout.splitlines()
    assert header.split()[:2] == ["NAME", "SITE"] and row.split()[:2] == ["n11", "dc2"]
    assert "site dc2" in farm(cfg, "nodes", "show", "n11").stdout.splitlines()[0]
    del nodes[11]["site"]
    assert farm(cfg, "nodes", "import", inventory(tmp_path / "a.yaml", nodes)).returncode == 0

    # bulk desired state and maintenance: exactly the selected nodes
    out = farm(cfg, "nodes", "desired", "rack=r1,-pdu=p0", "on")
    assert out.returncode == 0 and "4 nodes: desired power state on" in out.stdout
    controls = store.controls()[1]
    assert sorted(n for n, c in controls.items() if c.get("desired") == "on") == [
        "n01", "n02", "n04", "n05"]
    assert farm(cfg, "nodes", "maintenance", "n[10-11]", "on", "--reason", "rma").returncode == 0
    assert store.controls()[1]["n11"]["maintenance"] == "rma"
    acted = {e["node"] for e in events(cfg, "--type", "action", "--node", "rack=r1")}
    assert acted == {"n01", "n02", "n04", "n05"}

    # an unknown name anywhere in a selection changes nothing
    before = store.controls()
    out = farm(cfg, "nodes", "desired", "n[00-12]", "off")
    assert out.returncode != 0 and "no node named n12; nothing changed" in out.stderr
    assert store.controls() == before
    out = farm(cfg, "nodes", "power", "rack=r1", "on")
    assert out.returncode != 0 and "no live worker owns any of them" in out.stderr
    out = farm(cfg, "nodes", "power", "rack=r1,n12", "on", "--yes")
    assert out.returncode != 0 and "no node named n12; nothing changed" in out.stderr
    assert store.actions() == []

    # --dry-run: the waves, spread across PDUs, and nothing sent
    before_events = len(events(cfg))
    out = farm(cfg, "nodes", "power", "all", "on", "--dry-run", "--batch", "4", "--interval", "2",
               "--spread-by", "pdu", "--json")
    assert out.returncode == 0, out.stderr
    plan = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(p["node"] for p in plan) == [f"n{i:02d}" for i in range(12)]
    assert [sum(1 for p in plan if p["wave"] == w) for w in range(3)] == [4, 4, 4]
    pdus = {n["name"]: n["labels"]["pdu"] for n in nodes}
    first = sorted(pdus[p["node"]] for p in plan if p["wave"] == 0)
    assert len(set(first)) == 3, first  # three PDUs share the first wave
    times = sorted({p["not_before"] for p in plan})
    assert [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)] == [2.1, 2.1]  # + guard
    text = farm(cfg, "nodes", "power", "rack=r2", "off", "--dry-run").stdout
    assert "power off on 6 nodes in 1 waves" in text and "nothing was sent" in text
    assert len(events(cfg)) == before_events
    import redis
    assert redis.Redis(port=redis_server.port).keys(f"{namespace}*commands*") == []

    # --replace updates the label index; removal drops its entries
    nodes[0]["labels"] = {"rack": "r9"}
    del nodes[1]["labels"]
    assert farm(cfg, "nodes", "import", "--replace",
                inventory(tmp_path / "b.yaml", nodes[:10])).returncode == 0
    labels = store.labels()
    assert labels["n00"] == {"rack": "r9"} and "n01" not in labels and "n10" not in labels
    # the key=value sets a label term reads follow the same changes
    assert store.label_members("rack", "r1") == {f"n{i:02d}" for i in range(2, 6)}
    assert store.label_members("rack", "r9") == {"n00"}
    assert store.label_members("rack", "r2") == {f"n{i:02d}" for i in range(6, 10)}
    assert store.label_members("pdu", "p0") == {"n03", "n06", "n09"}
    assert json.loads(farm(cfg, "nodes", "list", "rack=r9", "--json").stdout)[0]["name"] == "n00"
    assert farm(cfg, "nodes", "remove", "rack=r9").returncode == 0
    assert "n00" not in store.labels() and len(store.labels()) == 8
    assert store.label_members("rack", "r9") == set()
    out = farm(cfg, "nodes", "list", "rack=~r[0-9]", "--json")
    assert len(json.loads(out.stdout)) == 8
