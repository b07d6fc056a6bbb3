"""Sites in Redis: every node in its site's set (what `site=dc2` selects and
what the coordinator places), each site's placement in its own field of the
assignment, the ownership scripts reading the node's own site, and the
status report per site."""

import json

from farm.coordination import placement
from farm.fleet import views
from farm.model import Node

P = 16


def nodes(sites):
    return [Node(name=f"n{i}", address=f"10.0.{i // 250}.{i % 250 + 1}", username="u",
                 password="p", site=site) for i, site in enumerate(sites)]


def test_the_site_index_selects_counts_moves_and_is_built_for_an_older_farm(store):
    fleet = nodes(["default"] * 3 + ["dc2"] * 2 + ["dc3"])
    store.import_nodes(fleet)
    assert store.site_counts() == {"default": 3, "dc2": 2, "dc3": 1}
    assert views.select(store, "site=dc2") == ["n3", "n4"]
    assert views.select(store, "site=~dc.*") == ["n3", "n4", "n5"]
    assert views.select(store, "site!=default") == ["n3", "n4", "n5"]
    assert [n.site for n in store.nodes_named(["n0", "n3"])] == ["default", "dc2"]
    # a site changed with --replace moves the node between the sets
    moved = [n if n.name != "n3" else Node(**{**n.__dict__, "site": "dc3"}) for n in fleet]
    store.import_nodes(moved[:-1], replace=True)   # and n5 leaves: dc3 had only it
    assert store.site_counts() == {"default": 3, "dc2": 1, "dc3": 1}
    assert views.select(store, "site=dc3") == ["n3"]
    # a farm written before sites (layout 2, no site sets) gets them built once
    r = store._redis
    for key in r.keys(f"{store.namespace}:label*"):
        r.delete(key)
    r.set(f"{store.namespace}:layout", 2)
    assert store.site_counts() == {}
    assert views.select(store, "site=default") == ["n0", "n1", "n2"]
    assert store.site_counts() == {"default": 3, "dc2": 1, "dc3": 1}


def test_each_sites_placement_and_the_ownership_scripts_read_the_nodes_site(store):
    store.import_nodes(nodes(["default", "dc2", "dc3"]))
    epoch = store.hold_lease("c", 30)
    placements = {"default": ("w1",) * P, "dc2": ("w2",) * P, "dc3": ()}
    assert store.publish_assignment("c", epoch, ["w1", "w2"], placements, 1.0) == 1
    assert store.publish_assignment("c", epoch, ["w1", "w2"], placements, 2.0) == 0
    a = store.assignment()
    assert a["placements"] == placements and a["placement"] == ("w1",) * P
    assert a["sites"] == ["dc2", "dc3", "default"]

    def owner(worker, name):
        return (worker, placement.partition_of(name, P), P)
    # n1 is dc2's (the scripts read its site from the inventory): its worker
    # w2 may write, w1 (which owns its partition in the default site) may
    # not; dc3 is placed on nobody: nobody may
    assert store.set_control("n1", "maintenance", "enforcer", owner=owner("w2", "n1"),
                             maintenance="x")
    assert not store.set_control("n1", "maintenance", "enforcer", owner=owner("w1", "n1"),
                                 maintenance="y")
    assert not store.set_control("n0", "maintenance", "enforcer", owner=owner("w2", "n0"),
                                 maintenance="y")
    for worker in ("w1", "w2"):
        assert not store.set_control("n2", "maintenance", "enforcer", owner=owner(worker, "n2"),
                                     maintenance="z")
    assert store.append_owned_event({"node": "n0", "type": "action"}, owner("w1", "n0"))
    assert not store.append_owned_event({"node": "n1", "type": "action"}, owner("w1", "n1"))
    assert store.append_owned_event({"node": "n1", "type": "action"}, owner("w2", "n1"))
    assert not store.append_owned_event({"node": "n2", "type": "action"}, owner("w2", "n2"))
    # a bulk action's steps: each worker takes only its own site's nodes
    from farm.power.plan import Step
    now = store.server_time()
    store.create_action("a1", {"action": "on", "by": "me", "batch": 3, "interval": 1,
                               "waves": 1}, [Step(n, 0, now - 1) for n in ("n0", "n1", "n2")])
    named = [(n, placement.partition_of(n, P)) for n in ("n0", "n1", "n2")]
    assert [t[0] for t in store.claim_steps("a1", "w1", P, named, 5, 0.3, 0.1)[0]] == ["n0"]
    assert [t[0] for t in store.claim_steps("a1", "w2", P, named, 5, 0.3, 0.1)[0]] == ["n1"]
    # a site that leaves the assignment takes its field with it
    assert store.publish_assignment("c", epoch, ["w1"], {"default": ("w1",) * P}, 3.0) == 2
    raw = store._redis.hgetall(f"{store.namespace}:assignment")
    assert sorted(k for k in raw if k.startswith("placement")) == ["placement"]
    assert json.loads(raw["sites"]) == ["default"]
    assert not store.set_control("n1", "maintenance", "enforcer", owner=owner("w2", "n1"),
                                 maintenance="x")


def test_the_status_report_names_a_dark_site(store):
    store.import_nodes(nodes(["default"] * 2 + ["dc2"] * 3))
    epoch = store.hold_lease("c", 30)
    store.publish_assignment("c", epoch, ["w1"], {"default": ("w1",) * P, "dc2": ()}, 1.0)
    now = store.server_time()
    tally = {"nodes": 2, "never_polled": 0, "stale": 0, "power": {"on": 2}, "failing": {},
             "sites": {"default": {"nodes": 2, "fresh": 2}}}
    store.report_worker("w1", {"host": "h", "pid": 1, "sites": ["default"], "backup_sites": [],
                               "last_heartbeat": now, "tally": tally, "nodes": 2}, ttl=30)
    report = views.status_report(store, 60.0, now)
    assert report["dark"] == [{"site": "dc2", "nodes": 3}]
    rows = {r["site"]: r for r in report["sites"]}
    assert rows["default"] == {"site": "default", "nodes": 2, "workers": ["w1"],
                               "backup_workers": [], "serving": ["w1"], "fresh": 2, "dark": False}
    assert rows["dc2"]["serving"] == [] and rows["dc2"]["fresh"] == 0
    from farm.cli import render_status
    assert render_status(report).splitlines()[0].startswith("DARK SITE dc2: 3 nodes")
    # its worker's heartbeat ages past 2 intervals: the default site goes dark too
    report = views.status_report(store, 60.0, now + 121)
    assert [d["site"] for d in report["dark"]] == ["dc2", "default"]


def test_a_node_moved_to_another_site_moves_to_that_sites_worker(make_sim, store, redis_server,
                                                                  namespace, tmp_path):
    """Real workers of sites dc1 and dc2 and a coordinator: an import with
    --replace that changes a node's site moves it to the other site's
    worker at the next placement."""
    import dataclasses
    import subprocess

    from tests.conftest import script, stop_process, wait_for, write_config
    from tests.integration.test_worker import import_sim, start_worker, stop_worker
    sim = make_sim(4)
    nodes = [dataclasses.replace(n, site=("dc1", "dc1", "dc2", "dc2")[i])
             for i, n in enumerate(import_sim(sim, store))]
    store.import_nodes(nodes, replace=True)
    coordination = {"membership_timeout": 3, "leader_timeout": 4, "partitions": 16}
    procs = {}
    for site in ("dc1", "dc2"):
        cfg = write_config(tmp_path / f"{site}.conf", redis_server.url, namespace, coordination,
                           poll_interval=0.5, bmc_timeout=1, sites=site)
        procs[site] = start_worker(tmp_path, cfg, f"worker-{site}.log")
    log = open(tmp_path / "coordinator.log", "w")
    coordinator = subprocess.Popen([script("farm-coordinator"), "--config-file", cfg],
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        def member(site):
            return next((m for m in store.worker_reports()
                         if f"-{procs[site][0].pid}-" in m), None)

        def polled_by(name, site, since):
            s = store.node_states([name])[name]
            return float(s.get("seen_at") or 0) > since and s.get("worker") == member(site)

        wait_for(lambda: (a := store.assignment()) and len(a["members"]) == 2, 30,
                 what="an assignment of both workers")
        since = store.server_time()
        wait_for(lambda: all(polled_by(n.name, n.site, since) for n in nodes), 30,
                 what="each node read by its site's worker")
        moved = [dataclasses.replace(n, site="dc2") if n is nodes[0] else n for n in nodes]
        store.import_nodes(moved, replace=True)
        since = store.server_time()
        wait_for(lambda: all(polled_by(n.name, n.site, since) for n in moved), 30,
                 what="the moved node read by dc2's worker")
        rows = {r["site"]: r for r in views.status_report(store, 0.5, store.server_time())["sites"]}
        assert (rows["dc1"]["nodes"], rows["dc2"]["nodes"]) == (1, 3)
    finally:
        stop_process(coordinator)
        log.close()
        for proc, wlog in procs.values():
            assert stop_worker(proc) == 0, wlog.read_text()[-2000:]
