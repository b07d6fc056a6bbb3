"""Bulk power actions with real processes: the CLI writes a plan into a real
Redis, real workers run its steps against farm-sim, and the simulator's own
journal of Chassis Control commands (what the BMCs received, not what farm
says it sent) is the oracle for spacing, spreading and cancelling."""

import json
import os
import signal
import subprocess

import pytest
import yaml

from farm.sim.hardware import ControlJournal
from tests.conftest import script, wait_for, write_config
from tests.integration.test_tasks import events, farm
from tests.integration.test_worker import import_sim, start_worker, stop_worker


def journal(path):
    return ControlJournal.read(path) if os.path.exists(path) else []


def label(store, nodes, **labels_of):
    """Re-import the sim's nodes with labels (name -> dict)."""
    import dataclasses
    store.import_nodes([dataclasses.replace(n, labels=tuple(sorted(labels_of[n.name].items())))
                        for n in nodes])


@pytest.fixture
def fleet(make_sim, store, redis_server, namespace, tmp_path):
    """12 BMCs, all off, journaling; one worker polling them."""
    log = str(tmp_path / "controls.log")
    sim = make_sim(12, engine="lean", off_fraction=1.0, control_log=log)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=1)
    proc, wlog = start_worker(tmp_path, cfg)
    wait_for(lambda: len([s for s in store.node_states([n.name for n in nodes]).values()
                          if s.get("power_state") == "off"]) == 12, 30, what="every node polled")
    yield sim, nodes, cfg, log, proc
    assert stop_worker(proc) == 0, wlog.read_text()[-3000:]


def test_waves_keep_their_spacing_as_the_bmcs_see_it(fleet, store):
    sim, nodes, cfg, log, _ = fleet
    pdu = {n.name: {"pdu": f"p{i // 4}"} for i, n in enumerate(nodes)}  # 4 a PDU, in name order
    label(store, nodes, **pdu)
    out = farm(cfg, "nodes", "power", "all", "on", "--batch", "3", "--interval", "1.5",
               "--spread-by", "pdu", "--json", timeout=90)
    assert out.returncode == 0, out.stderr + out.stdout[-1500:]
    steps = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(s["node"] for s in steps) == sorted(n.name for n in nodes)
    assert {s["state"] for s in steps} == {"done"} and {s["power_after"] for s in steps} == {"on"}
    seen = journal(log)
    assert sorted(name for _, name, _ in seen) == sorted(n.name for n in nodes)
    assert {a for _, _, a in seen} == {"on"}
    # no 1.5 s window holds more than 3 commands, as the BMCs received them
    times = sorted(t for t, _, _ in seen)
    assert all(times[i + 3] - times[i] >= 1.5 - 0.05 for i in range(len(times) - 3)), times
    # no wave went out before its time
    at = {name: t for t, name, _ in seen}
    assert all(at[s["node"]] >= s["not_before"] - 0.05 for s in steps)
    # --spread-by: every wave holds three different PDUs
    for wave in range(4):
        members = [s["node"] for s in steps if s["wave"] == wave]
        assert len({pdu[m]["pdu"] for m in members}) == 3, members
    action_id = steps[0]["action_id"]
    shown = json.loads(farm(cfg, "actions", "show", action_id, "--json").stdout)
    assert shown["action"]["state"] == "done" and shown["action"]["done"] == 12
    listed = farm(cfg, "actions", "list").stdout
    assert action_id in listed and "done" in listed
    assert {e["node"] for e in events(cfg, "--type", "action") if e.get("action_id") == action_id} \
        == {n.name for n in nodes}


def test_the_plan_completes_when_the_cli_is_killed(fleet, store):
    sim, nodes, cfg, log, _ = fleet
    cli = subprocess.Popen([script("farm"), "--config-file", cfg, "nodes", "power", "all", "on",
                            "--batch", "4", "--interval", "1", "--yes"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(journal(log)) >= 1, 30, what="the first wave at the BMCs")
    cli.send_signal(signal.SIGKILL)
    cli.wait(10)
    (record,) = store.actions()
    assert record["pending"] > 0, record  # killed mid-plan
    done = wait_for(lambda: (r := store.action(record["id"]))["state"] == "done" and r, 60,
                    what="the plan to complete without its CLI")
    assert done["done"] == 12
    assert sorted(name for _, name, _ in journal(log)) == sorted(n.name for n in nodes)


def test_cancel_drops_the_waves_not_started(fleet, store):
    sim, nodes, cfg, log, _ = fleet
    out = farm(cfg, "nodes", "power", "all", "on", "--batch", "2", "--interval", "3", "--yes",
               "--no-wait")
    assert out.returncode == 0, out.stderr
    action_id = out.stdout.strip()
    wait_for(lambda: store.action(action_id)["done"] >= 2, 30, what="the first wave")
    waiting = [n for n, s in store.action_steps(action_id).items() if s["state"] == "pending"]
    out = farm(cfg, "nodes", "remove", waiting[0])
    assert out.returncode != 0 and f"is in action {action_id}" in out.stderr
    with open(sim.inventory) as f:
        kept = [n for n in yaml.safe_load(f)["nodes"] if n["name"] != waiting[0]]
    fewer = os.path.join(os.path.dirname(log), "fewer.yaml")
    with open(fewer, "w") as f:
        f.write(yaml.safe_dump({"nodes": kept}))
    out = farm(cfg, "nodes", "import", "--replace", fewer)
    assert out.returncode != 0 and "nothing imported" in out.stderr, out.stderr
    assert waiting[0] in store.all_names()
    out = farm(cfg, "actions", "cancel", action_id)
    assert out.returncode == 0 and "steps dropped" in out.stdout, out.stderr
    record = wait_for(lambda: (r := store.action(action_id))["running"] == 0 and r, 30,
                      what="the running steps to end")
    assert record["state"] == "cancelled" and record["cancelled"] >= 6
    steps = store.action_steps(action_id)
    cancelled = sorted(n for n, s in steps.items() if s["state"] == "cancelled")
    last = max(s["not_before"] for s in steps.values())
    # positive signal: a later action, due after every cancelled wave, is done
    wait_for(lambda: store.server_time() > last + 1, 30, what="the cancelled waves' time to pass")
    later = farm(cfg, "nodes", "power", cancelled[-1], "off", "--interval", "0", "--yes")
    assert later.returncode == 0, later.stderr
    reached = {name for _, name, action in journal(log) if action == "on"}
    assert not reached & set(cancelled), reached & set(cancelled)
    assert farm(cfg, "actions", "cancel", action_id).returncode != 0  # not running any more
    out = farm(cfg, "actions", "wait", action_id)
    assert out.returncode == 1  # some nodes were cancelled


def test_late_waves_do_not_stack(fleet, store):
    """Waves that fell due while their worker was stopped still go out at
    most `batch` in any `interval`: Redis spaces them, not the schedule."""
    sim, nodes, cfg, log, worker = fleet
    worker.send_signal(signal.SIGSTOP)
    try:
        out = farm(cfg, "nodes", "power", "all", "on", "--batch", "3", "--interval", "1",
                   "--yes", "--no-wait")
        assert out.returncode == 0, out.stderr
        action_id = out.stdout.strip()
        last = store.action(action_id)["last_at"]
        wait_for(lambda: store.server_time() > last + 0.5, 30, what="every wave to fall due")
    finally:
        worker.send_signal(signal.SIGCONT)
    wait_for(lambda: store.action(action_id)["state"] == "done", 60, what="the late plan to end")
    times = sorted(t for t, _, _ in journal(log))
    assert len(times) == 12
    assert all(times[i + 3] - times[i] >= 1 - 0.05 for i in range(len(times) - 3)), times


def test_a_killed_workers_steps_run_on_the_new_owner(make_sim, store, redis_server, namespace,
                                                     tmp_path):
    from farm.coordination.placement import partition_of
    from tests.integration.test_fencing import COORD, worker_id
    log = str(tmp_path / "controls.log")
    sim = make_sim(12, engine="lean", off_fraction=1.0, control_log=log)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, COORD,
                       poll_interval=0.5, bmc_timeout=1)
    coord_log = open(tmp_path / "coordinator.log", "w")
    coordinator = subprocess.Popen([script("farm-coordinator"), "--config-file", cfg],
                                   stdout=coord_log, stderr=subprocess.STDOUT)
    w1, log1 = start_worker(tmp_path, cfg, "w1.log")
    w2, log2 = start_worker(tmp_path, cfg, "w2.log")
    try:
        id1, id2 = worker_id(log1), worker_id(log2)
        wait_for(lambda: (a := store.assignment()) and set(a["members"]) == {id1, id2}, 60,
                 what="both workers in the assignment")
        out = farm(cfg, "nodes", "power", "all", "on", "--batch", "2", "--interval", "2",
                   "--yes", "--no-wait")
        assert out.returncode == 0, out.stderr
        action_id = out.stdout.strip()
        wait_for(lambda: store.action(action_id)["done"] >= 2, 30, what="the first wave")
        steps, a = store.action_steps(action_id), store.assignment()
        owner = {n: a["placement"][partition_of(n, len(a["placement"]))]
                 for n in steps}
        left_by_w1 = {n for n, s in steps.items() if s["state"] == "pending" and owner[n] == id1}
        assert left_by_w1, (owner, steps)
        w1.send_signal(signal.SIGKILL)
        w1.wait(10)
        record = wait_for(lambda: (r := store.action(action_id))["state"] == "done" and r, 90,
                          what="the plan to end without W1")
        assert record["done"] == 12, store.action_steps(action_id)
        steps = store.action_steps(action_id)
        assert {steps[n]["worker"] for n in left_by_w1} == {id2}  # moved with their nodes
        a = store.assignment()
        assert a["members"] == [id2]
        assert sorted(name for _, name, _ in journal(log)) == sorted(n.name for n in nodes)
    finally:
        for p in (w1, w2):
            if p.poll() is None:
                stop_worker(p)
        coordinator.send_signal(signal.SIGTERM)
        coordinator.wait(20)
        coord_log.close()


def test_a_fleet_wide_desired_on_is_staggered(make_sim, store, redis_server, namespace, tmp_path):
    """After an outage, `desired on` for every node: farm's own corrections
    go out at most wave_size in any wave_interval, as the BMCs count them."""
    log = str(tmp_path / "controls.log")
    sim = make_sim(12, engine="lean", off_fraction=1.0, control_log=log)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=0.5,
                       bmc_timeout=1, sections={"power": {"wave_size": 3, "wave_interval": 1.5}})
    proc, wlog = start_worker(tmp_path, cfg)
    names = [n.name for n in nodes]
    try:
        wait_for(lambda: all(s.get("power_state") == "off"
                             for s in store.node_states(names).values()), 30,
                 what="every node polled off")
        assert farm(cfg, "nodes", "desired", "all", "on").returncode == 0
        wait_for(lambda: all(s.get("power_state") == "on"
                             for s in store.node_states(names).values()), 60,
                 what="every node on")
        times = sorted(t for t, _, _ in journal(log))
        assert len(times) == 12, times  # one correction each: none repeated while waiting
        assert all(times[i + 3] - times[i] >= 1.5 - 0.05 for i in range(len(times) - 3)), times
        assert store.controls()[1][names[0]].get("maintenance") is None
    finally:
        assert stop_worker(proc) == 0, wlog.read_text()[-3000:]


def test_sel_clear_on_a_selection(fleet, store):
    sim, nodes, cfg, log, _ = fleet
    out = farm(cfg, "nodes", "sel-clear", "all,-" + nodes[0].name, "--yes")
    assert out.returncode == 0, out.stderr
    assert f"sel-clear: {len(nodes) - 1} of {len(nodes) - 1} nodes done" in out.stdout
    cleared = {e["node"] for e in events(cfg, "--type", "action") if e.get("action") == "sel-clear"}
    assert cleared == {n.name for n in nodes[1:]}
    # as the BMC (and ipmitool) sees it: node 1's log was erased, node 0's not
    lines = sim.ipmitool(1, "sel", "list").stdout.strip().splitlines()
    assert len(lines) == 1 and "Log area reset/cleared" in lines[0], lines
    assert "Log area reset/cleared" not in sim.ipmitool(0, "sel", "list").stdout


def test_a_step_left_running_is_taken_over_by_its_rules(store):
    """Redis's side, on a real Redis: a step whose worker died (its hold ran
    out) runs again for on; for cycle it fails with the reason and an event,
    since the BMC may have acted. A late outcome of the dead run is refused."""
    from farm.model import Node
    from farm.power.plan import Step
    store.import_nodes([Node(f"t{i}", "127.0.0.1", 1000 + i, "u", "p") for i in range(2)])
    past = store.server_time() - 1
    for action_id, action, node in (("a-on", "on", "t0"), ("a-cycle", "cycle", "t1")):
        store.create_action(action_id, {"action": action, "by": "me", "batch": 5, "interval": 1,
                                        "waves": 1}, [Step(node, 0, past)])
        (taken,), _ = store.claim_steps(action_id, "dead", 0, [(node, 0)], 0.0, 0.0, 0.0)
        assert taken[:2] == (node, 1)
    # the hold (0 s) ran out: another worker asks
    (again,), _ = store.claim_steps("a-on", "w2", 0, [("t0", 0)], 5.0, 0.0, 0.0)
    assert again[:2] == ("t0", 2)
    assert not store.finish_step("a-on", "t0", "dead", 1, "done")  # the dead run's late word
    assert store.finish_step("a-on", "t0", "w2", 2, "done", power_after="on")
    assert store.action("a-on")["state"] == "done"
    assert store.claim_steps("a-cycle", "w2", 0, [("t1", 0)], 5.0, 0.0, 0.0)[0] == []
    step = store.action_steps("a-cycle")["t1"]
    assert step["state"] == "failed" and "not repeated" in step["error"]
    record = store.action("a-cycle")
    assert record["state"] == "done" and record["failed"] == 1
    (event,) = [f for _, f in store.events_before(10) if f.get("action_id") == "a-cycle"]
    assert event["outcome"] == "failed" and event["worker"] == "dead"


def test_a_one_wave_plan_of_ten_thousand_is_claimed_in_pages_once_each(store):
    """A one-wave off (the default for off) of 10,000 nodes, claimed as the
    worker claims (pages of steps.CLAIM_PAGE): every step is taken exactly
    once, no claim reaches past its page, and a claim's Redis time grows
    with the page, not with the wave (SLOWLOG: the old script listed the
    whole window for every step, O(wave^2): 3.3 s for one call of 4,000)."""
    import time

    from farm.model import Node
    from farm.power.plan import Step
    from farm.power.steps import CLAIM_PAGE
    count = 10_000
    names = [f"w{i:05d}" for i in range(count)]
    store.import_nodes([Node(n, "127.0.0.1", 1000, "u", "p") for n in names])
    now = store.server_time()
    store.create_action("wave", {"action": "off", "by": "me", "batch": count, "interval": 0,
                                 "waves": 1}, [Step(n, 0, now) for n in names])
    taken, durations = [], []
    for i in range(0, count, CLAIM_PAGE):
        began = time.perf_counter()
        # guard 30 s: every grant stays in the spacing's window, as when one
        # claim took a whole wave at one send time
        got, retry = store.claim_steps("wave", "w", 0, [(n, 0) for n in names[i:i + CLAIM_PAGE]],
                                       30.0, 1.0, 30.0)
        durations.append(time.perf_counter() - began)
        assert retry is None and len(got) == len(names[i:i + CLAIM_PAGE])
        taken += got
    assert sorted(n for n, _, _ in taken) == names and {a for _, a, _ in taken} == {1}
    record = store.action("wave")
    assert (record["pending"], record["running"]) == (0, count)
    # the spacing's window is counted, not listed: the last pages cost what
    # the first did (a ratio in one run; with the listing, ~100x)
    first, last = sorted(durations[:10])[5], sorted(durations[-10:])[5]
    assert last < 4 * first + 0.002, (first, last)


def test_a_cancelled_action_frees_steps_its_workers_could_not_finish(store):
    """Cancel while the steps run: a worker whose lease ran out meanwhile
    puts its step back ('pending'), which in a cancelled action ends it
    cancelled; a step whose worker died is ended, failed, by the next
    claim after its hold. Either way the node is free and the action ends."""
    from farm.model import Node
    from farm.power.plan import Step
    store.import_nodes([Node(f"c{i}", "127.0.0.1", 1000 + i, "u", "p") for i in range(3)])
    past = store.server_time() - 1
    store.create_action("cx", {"action": "off", "by": "me", "batch": 5, "interval": 0,
                               "waves": 1}, [Step(f"c{i}", 0, past) for i in range(3)])
    taken, _ = store.claim_steps("cx", "paused", 0, [("c0", 0), ("c1", 0)], 60.0, 0.0, 0.0)
    taken += store.claim_steps("cx", "dead", 0, [("c2", 0)], 0.0, 0.0, 0.0)[0]
    assert [t[0] for t in taken] == ["c0", "c1", "c2"]
    assert store.cancel_action("cx", "me") == ("running", 0)
    # the paused worker wakes fenced: c0 reached no BMC, c1 did
    assert store.finish_step("cx", "c0", "paused", 1, "pending")
    assert store.finish_step("cx", "c1", "paused", 1, "done", power_after="off")
    steps = store.action_steps("cx")
    assert steps["c0"]["state"] == "cancelled" and steps["c1"]["state"] == "done"
    assert store.nodes_in_actions(["c0", "c1", "c2"]) == {"c2": "cx"}
    assert store.action("cx").get("finished_at") is None  # c2 still runs, as far as Redis knows
    # c2's worker died; its hold (0 s) ran out; the node's next owner asks
    assert store.claim_steps("cx", "w2", 0, [("c2", 0)], 60.0, 0.0, 0.0) == ([], None)
    step = store.action_steps("cx")["c2"]
    assert step["state"] == "failed" and "cancelled" in step["error"]
    assert store.nodes_in_actions(["c0", "c1", "c2"]) == {}
    record = store.action("cx")
    assert record["state"] == "cancelled" and record["finished_at"]
    assert (record["pending"], record["running"], record["done"], record["failed"],
            record["cancelled"]) == (0, 0, 1, 1, 1)
    # and a new plan may take the nodes
    store.create_action("next", {"action": "on", "by": "me", "batch": 5, "interval": 0,
                                 "waves": 1}, [Step(f"c{i}", 0, past) for i in range(3)])


def test_a_plan_redis_cannot_hold_changes_nothing(store):
    """A send time that is not finite is refused before anything is written
    (the old script locked the first node and then failed in cjson)."""
    from farm.model import Node
    from farm.power.plan import Step
    store.import_nodes([Node(f"f{i}", "127.0.0.1", 1000 + i, "u", "p") for i in range(2)])
    now = store.server_time()
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="f1"):
            store.create_action("inf", {"action": "on", "by": "me", "batch": 1, "interval": 1,
                                        "waves": 2}, [Step("f0", 0, now), Step("f1", 1, bad)])
        assert store.nodes_in_actions(["f0", "f1"]) == {} and store.action("inf") is None


def test_a_worker_never_takes_its_own_running_step_again(store):
    """A step whose hold ran out while its outcome waited in its own
    worker's write queue (10,000 outcomes behind a slow write): that worker
    knows it sent it and must not send it again; another worker, which
    cannot know, takes it over (on and off only)."""
    from farm.model import Node
    from farm.power.plan import Step
    store.import_nodes([Node("o0", "127.0.0.1", 1000, "u", "p")])
    past = store.server_time() - 1
    store.create_action("own", {"action": "off", "by": "me", "batch": 5, "interval": 0,
                                "waves": 1}, [Step("o0", 0, past)])
    (taken,), _ = store.claim_steps("own", "w1", 0, [("o0", 0)], 0.0, 0.0, 0.0)
    assert taken[:2] == ("o0", 1)
    assert store.claim_steps("own", "w1", 0, [("o0", 0)], 0.0, 0.0, 0.0) == ([], None)
    assert store.action_steps("own")["o0"]["attempt"] == 1
    assert store.finish_steps([("own", "o0", "w1", 1, "done", "", "off", 0.01)]) == [True]
    assert store.action("own")["state"] == "done"


def test_a_large_plan_is_written_in_pages_or_not_at_all(store, monkeypatch):
    """Past a page of steps a plan is staged a page a call and then started:
    whole when it starts; nothing of it left when a later page meets a busy
    node; and a staging whose writer died lets its nodes go once its time
    has passed (to a new plan, and to the claims of their owners)."""
    from farm.model import Node
    from farm.power.plan import Step
    from farm.store import ActionConflict
    from farm.store import actions as store_actions
    monkeypatch.setattr(store_actions, "CREATE_PAGE", 100)
    names = [f"p{i:03d}" for i in range(250)]
    store.import_nodes([Node(n, "127.0.0.1", 1000, "u", "p") for n in names])
    at = store.server_time() + 60
    record = {"action": "on", "by": "me", "batch": 10, "interval": 1, "waves": 25}
    store.create_action("big", record, [Step(n, i // 10, at + i // 10) for i, n in enumerate(names)])
    big = store.action("big")
    assert big["state"] == "running" and (big["total"], big["pending"]) == (250, 250)
    assert set(store.nodes_in_actions(names).values()) == {"big"}
    assert store.cancel_action("big", "me") == ("running", 250)
    # a plan whose third page meets a busy node: its first two pages let go
    store.create_action("holder", record, [Step(names[-1], 0, at)])
    with pytest.raises(ActionConflict):
        store.create_action("late", record, [Step(n, 0, at) for n in names])
    assert store.nodes_in_actions(names) == {names[-1]: "holder"} and store.action("late") is None
    # a writer that died after its first page: its nodes are held until its
    # staging time has passed, then another plan, or a claim, frees them
    monkeypatch.setattr(store_actions, "STAGING_TIME", 1)
    store._create_page("dead", record, [Step(n, 0, at) for n in names[:100]], "preparing")
    assert store.nodes_in_actions(names[:1]) == {names[0]: "dead"}
    with pytest.raises(ActionConflict, match="is in action dead"):
        store.create_action("early", record, [Step(names[0], 0, at)])
    wait_for(lambda: store.server_time() > store.action("dead")["created"] + 1.1, 10,
             what="the staging's time to pass")
    store.create_action("after", record, [Step(names[0], 0, at)])
    assert store.nodes_in_actions(names[:2]) == {names[0]: "after", names[1]: "dead"}
    assert store.claim_steps("dead", "w", 0, [(names[1], 0)], 5.0, 0.0, 0.0) == ([], None)
    held = store.nodes_in_actions(names[1:100])
    assert names[1] not in held and len(held) == 98  # the rest, as each comes due


def test_redfish_steps_under_the_processes_executor_one_command_per_bmc(
        make_sim, store, redis_server, namespace, tmp_path):
    """Redfish power actions go to the node's poll process (its sushy pool)
    under `executor = processes`: a one-wave bulk on, then one node off, as
    the BMCs' own journal of Reset actions counts them."""
    log = str(tmp_path / "controls.log")
    sim = make_sim(12, protocol="redfish", off_fraction=1.0, control_log=log,
                   session_timeout=3600)
    nodes = import_sim(sim, store)
    cfg = write_config(tmp_path / "farm.conf", redis_server.url, namespace, poll_interval=1,
                       bmc_timeout=2, executor="processes", processes=2)
    proc, wlog = start_worker(tmp_path, cfg)
    try:
        wait_for(lambda: all(s.get("power_state") == "off" for s in
                             store.node_states([n.name for n in nodes]).values()), 60,
                 what="every node read off")
        out = farm(cfg, "nodes", "power", "all", "on", "--batch", "12", "--interval", "0",
                   "--yes", "--json", timeout=90)
        assert out.returncode == 0, out.stderr + out.stdout[-1500:]
        steps = [json.loads(line) for line in out.stdout.splitlines()]
        assert {s["state"] for s in steps} == {"done"} and len(steps) == 12
        seen = journal(log)
        assert sorted(name for _, name, _ in seen) == sorted(n.name for n in nodes), seen
        assert {a for _, _, a in seen} == {"on"}
        out = farm(cfg, "nodes", "power", nodes[0].name, "off")
        assert out.returncode == 0, out.stderr
        assert [(name, a) for _, name, a in journal(log)[12:]] == [(nodes[0].name, "off")]
        wait_for(lambda: store.node_states([nodes[0].name])[nodes[0].name].get("power_state")
                 == "off", 20, what="the node read off")
    finally:
        assert stop_worker(proc) == 0, wlog.read_text()[-3000:]
    assert len(journal(log)) == 13
