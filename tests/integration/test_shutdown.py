"""Every exit is bounded: SIGTERM ends farm-worker and farm-coordinator within
bmc_timeout + a few seconds whatever their Redis does, and the exit code says
whether the shutdown was clean. Real processes, real signals, a private Redis
that the test kills or pauses."""

import os
import re
import signal
import subprocess
import time

import pytest

from farm.fleet import inventory
from farm.store import Store
from tests.conftest import RedisServer, script, wait_for, write_config

BMC_TIMEOUT = 2
WORKER_BUDGET = BMC_TIMEOUT + 12  # farm.worker.STOP_MARGIN
COORDINATOR_BUDGET = 10  # farm.coordinator.STOP_BUDGET
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(kind, cfg, tmp_path):
    """farm-KIND on `cfg`, logging to tmp_path/KIND.log (the directory is made)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / f"{kind}.log"
    proc = subprocess.Popen([script(f"farm-{kind}"), "--config-file", cfg],
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    proc.log_path = log_path
    return proc


def stopped_within(proc, budget):
    """SIGTERM; (exit code, seconds taken). A process that outlives its budget
    by 5 s fails the test (and is killed)."""
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(budget + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"{proc.args[0]} still ran {budget + 5} s after SIGTERM: "
                             f"{proc.log_path.read_text()[-2000:]}") from None
    return code, time.monotonic() - t


@pytest.fixture
def farm_up(tmp_path, make_sim, namespace):
    """A private Redis, 6 BMCs (one hung) and one worker and one coordinator
    that have polled and published."""
    redis = RedisServer(tmp_path)
    redis.start()
    sim = make_sim(6, hung_fraction=1 / 6)
    store = Store(redis.url, namespace)
    with open(sim.inventory) as f:
        store.import_nodes(inventory.parse(f.read(), sim.inventory))
    cfg = write_config(tmp_path / "farm.conf", redis.url, namespace,
                       {"membership_timeout": 5, "leader_timeout": 4},
                       poll_interval=1, bmc_timeout=BMC_TIMEOUT)
    procs = [start("worker", cfg, tmp_path), start("coordinator", cfg, tmp_path)]
    try:
        wait_for(lambda: store.assignment() is not None, 30, what="a published assignment")
        healthy = "bmc-%d" % sim.port(1)  # BMC 0 is the hung one
        wait_for(lambda: store.node_states([healthy])[healthy].get("power_state"),
                 30, what="a poll result")
        yield redis, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        if redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGCONT)
        redis.stop(signal.SIGKILL)
        store.close()


@pytest.mark.parametrize("fault", ["none", "killed", "paused"])
def test_daemons_exit_in_bounded_time(farm_up, fault):
    redis, (worker, coordinator) = farm_up
    if fault == "killed":
        redis.stop(signal.SIGKILL)
    elif fault == "paused":
        redis.proc.send_signal(signal.SIGSTOP)
    worker_code, worker_took = stopped_within(worker, WORKER_BUDGET)
    coord_code, coord_took = stopped_within(coordinator, COORDINATOR_BUDGET)
    print(f"Redis {fault}: worker exited {worker_code} after {worker_took:.1f} s, "
          f"coordinator {coord_code} after {coord_took:.1f} s")
    logs = worker.log_path.read_text() + coordinator.log_path.read_text()
    assert "Traceback" not in logs
    if fault == "none":
        assert (worker_code, coord_code) == (0, 0), logs[-3000:]
    else:
        # neither could leave its group or (the worker) write its last results
        assert worker_code == 1 and coord_code == 1, logs[-3000:]
        assert re.search(r"shutdown step \S+: (still running|\w+Error)", logs)
    assert worker_took < WORKER_BUDGET and coord_took < COORDINATOR_BUDGET


def test_second_signal_exits_at_once(farm_up):
    """An operator's second Ctrl-C ends a shutdown stuck on a paused Redis."""
    redis, (worker, _) = farm_up
    redis.proc.send_signal(signal.SIGSTOP)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "farm-worker stopping" in worker.log_path.read_text(), WORKER_BUDGET,
             what="the worker to start its shutdown")
    code, took = stopped_within(worker, 3)
    assert code == 3 and "second SIGTERM" in worker.log_path.read_text()


def test_demo_stops_everything_it_started(tmp_path):
    """deploy/demo.sh leaves no process behind (checked in the process table)."""
    out = subprocess.run(["bash", os.path.join(ROOT, "deploy", "demo.sh"), "--duration", "8",
                          "--count", "20", "--no-install"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    work = re.search(r"demo stopped; its logs are in (\S+)", out.stdout + out.stderr).group(1)
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    left = [line for line in ps.splitlines() if work in line]
    assert not left, left
    # the daemons did run (so there was something to stop)
    assert any(name.startswith("worker-") for name in os.listdir(work))
