"""ipmi_exporter's /ipmi endpoint: one farm-api process answering it from
Redis against the real ipmi_exporter (Debian's prometheus-ipmi-exporter,
running FreeIPMI's tools against the BMC during the scrape).

    python -m bench ipmi [--count 100000] [--live 200] [--hung 0.1]
                         [--duration 20] [--connections 4,16] [--write-docs]

1. At scale: COUNT nodes in a private Redis, each with what the worker
   stores (one power, sensors and SEL pass: the readings, DCMI power and
   device of farm-sim's hardware model, run through farm's own programs and
   result scripts); a tenth with the outcomes a hung BMC leaves (timeouts,
   no readings). wrk (Debian's) scrapes /ipmi?target=<a random node> over
   each of CONNECTIONS kept connections for DURATION seconds: scrapes/s, latency
   percentiles, farm-api's and Redis's CPU per scrape. No worker runs while
   it is measured: farm-api has the machine, as on its own host.
2. Side by side, the same LIVE farm-sim BMCs (a tenth hung), polled by a
   real worker: farm-api's /ipmi and ipmi_exporter's, each scraped by wrk
   (the most CONNECTIONS) for DURATION seconds over the answering BMCs, then over all of them
   (hung included): scrapes/s, p50/p99 and CPU per scrape (ipmi_exporter's
   with the FreeIPMI processes it runs).
wrk runs on the same 2 cores, so every rate here is a floor.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import redis as redis_client

from bench import common, report
from bench.common import BIN, PASSWORD, Fleet, PrivateRedis
from farm.model import Node, PollResult, PowerState, SelResult, SensorResult
from farm.sim.hardware import Hardware
from farm.sim.ports import free_tcp_port

SCRAPE_TIMEOUT = 10  # s: Prometheus's default scrape_timeout; a slower answer is a failed scrape
WRK_SCRIPT = """
names = {}
for line in io.lines("%(names)s") do names[#names + 1] = line end
math.randomseed(%(seed)d)
request = function()
  local n = names[math.random(#names)]
  return wrk.format("GET", "%(path)s" .. n, %(headers)s)
end
"""


def program_outputs():
    """(sensors result fields, SEL sizes) of farm-sim hardware, through
    farm's own sensors program (the bytes a BMC sends, in-process)."""
    from farm.bmc.session import Response
    from farm.tasks.sensors import read_sensors
    hw = Hardware("model", sensor_period=0)
    gen, response = read_sensors(None, {}, None), None
    try:
        while True:
            request = gen.send(response)
            response = Response(*(hw.handle(request.netfn, request.command, request.data)
                                  or (0xC1, b"")))
    except StopIteration as stop:
        readings, _, extra = stop.value
    return readings, extra


def store_fleet(store, count, hung):
    """COUNT nodes with a pass of each task written by farm's result
    scripts; every int(1 / hung)-th as a hung BMC leaves it."""
    readings, extra = program_outputs()
    nodes = [Node(f"node-{i:06d}", "127.0.0.1", 1 + i % 60000, "admin", PASSWORD,
                  labels=(("rack", f"r{i // 100:04d}"),)) for i in range(count)]
    store.import_nodes(nodes)
    every = int(round(1 / hung)) if hung else 0
    now = time.time()
    for start in range(0, count, 1000):
        batch = []
        for i in range(start, min(count, start + 1000)):
            name = nodes[i].name
            if every and i % every == 0:
                batch += [PollResult(name, now, 3.0, None, "timeout", "no answer within 3 s"),
                          SensorResult(name, now, 3.0, error_kind="timeout", error="no answer"),
                          SelResult(name, now, 3.0, error_kind="timeout", error="no answer")]
                continue
            batch += [PollResult(name, now, 0.01, PowerState.ON if i % 5 else PowerState.OFF),
                      SensorResult(name, now, 0.05, readings=readings, sdr_read=True,
                                   watts=extra["watts"], device=extra["device"]),
                      SelResult(name, now, 0.02, cursor=(None, None, 1, 1),
                                sizes={"count": 3, "free": 8144})]
        store.write_any(batch, "bench")
    return [n.name for n in nodes]


def api_conf(work, redis_url, tokens, intervals):
    path = os.path.join(work, "farm-api.conf")
    with open(path, "w") as f:
        f.write(f"[coordination]\nbackend_url = {redis_url}\nnamespace = bench\n"
                f"[worker]\npoll_interval = {intervals}\nbmc_timeout = 3\n"
                f"[metrics]\nport = 0\ncoordinator_port = 0\n"
                f"[tasks]\nenabled = power,sensors,sel\n[sensors]\ninterval = {intervals}\n"
                f"[sel]\ninterval = {intervals}\n[api]\nport = 0\ntokens_file = {tokens}\n")
    return path


def start_api(conf, work):
    log = os.path.join(work, "farm-api.log")
    proc = subprocess.Popen([os.path.join(BIN, "farm-api"), "--config-file", conf],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(log) as f:
            found = re.search(r"listening on (\S+)", f.read())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    with open(log) as f:
        raise RuntimeError(f"farm-api did not start: {f.read()[-1000:]}")


def reader_token(work):
    path = os.path.join(work, "tokens")
    out = subprocess.run([os.path.join(BIN, "farm"), "api", "token", "add", "--role", "reader",
                          "--name", "bench", path], capture_output=True, text=True, timeout=60,
                         check=True)
    return path, out.stdout.strip()


def wrk(url, path, names, work, duration, connections, token=None, timeout=SCRAPE_TIMEOUT):
    """wrk over `names`: (scrapes/s, {50: ms, 99: ms}, requests, errors)."""
    names_file = os.path.join(work, f"names-{len(names)}-{time.monotonic_ns()}.txt")
    with open(names_file, "w") as f:
        f.write("\n".join(names) + "\n")
    script = os.path.join(work, f"wrk-{time.monotonic_ns()}.lua")
    headers = '{["Authorization"] = "Bearer %s"}' % token if token else "nil"
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % {"names": names_file, "seed": 7, "path": path, "headers": headers})
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{int(duration)}s",
                          "--timeout", f"{timeout}s", "--latency", "-s", script, url],
                         capture_output=True, text=True, timeout=duration + 120)
    text = out.stdout
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-500:]} {text[-500:]}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))

    def ms(q):
        got = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(got.group(1)), got.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return rate, {50: ms(50), 99: ms(99)}, total, failed, text


def cpu_with_reaped_children(pid):
    """user+sys seconds of a process, its live children and those it reaped."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    reaped = (int(fields[13]) + int(fields[14])) / common.TICK
    return common.proc_cpu(pid) + reaped


def redis_cpu(url):
    info = redis_client.Redis.from_url(url).info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def measured(label, pid, redis_url, run, cpu=common.proc_cpu):
    cpu0, r0 = cpu(pid), redis_cpu(redis_url)
    rate, lat, total, failed, text = run()
    used, redis_used = cpu(pid) - cpu0, redis_cpu(redis_url) - r0
    print(label, text, file=sys.stderr)
    return [label, f"{rate:,.0f}", f"{lat[50]:.1f}", f"{lat[99]:.1f}",
            f"{used / max(total, 1) * 1000:.2f}", f"{redis_used / max(total, 1) * 1000:.3f}",
            f"{failed:,}"]


HEADER = ["scrapes of", "scrapes/s", "p50 (ms)", "p99 (ms)", "CPU per scrape (ms)",
          "Redis CPU per scrape (ms)", "failed"]


def at_scale(a, work):
    with PrivateRedis(work) as redis:
        t = time.monotonic()
        names = store_fleet(redis.store, a.count, a.hung)
        print(f"stored {a.count:,} nodes in {time.monotonic() - t:.0f} s", file=sys.stderr)
        tokens, token = reader_token(work)
        proc, url = start_api(api_conf(work, redis.url, tokens, 300), work)
        rows = []
        try:
            wrk(url, "/ipmi?module=default&target=", names, work, 3, 4, token)  # warm up
            for connections in a.connections:
                rows.append(measured(
                    f"farm-api /ipmi, {a.count:,} stored nodes ({a.hung:.0%} hung), "
                    f"{connections} connections", proc.pid, redis.url,
                    lambda connections=connections: wrk(url, "/ipmi?module=default&target=",
                                                        names, work, a.duration, connections,
                                                        token)))
        finally:
            common.stop([proc])
    return rows


def side_by_side(a, work):
    rows = []
    fleet = Fleet(a.live, a.hung, work, sim_args=("--sensor-period", "600"))
    exporter = None
    try:
        with PrivateRedis(work) as redis:
            redis.store.import_nodes(fleet.nodes)
            conf = common.farm_conf(os.path.join(work, "farm.conf"), redis.url, "threads", 60, 3,
                                    1024)
            with open(conf, "a") as f:
                f.write("[tasks]\nenabled = power,sensors,sel\n[sensors]\ninterval = 60\n"
                        "[sel]\ninterval = 60\n")
            procs = [common.start("coordinator", conf, work), common.start("worker", conf, work)]
            tokens, token = reader_token(work)
            api, url = start_api(api_conf(work, redis.url, tokens, 60), work)
            procs.append(api)
            try:
                common.wait_for(lambda: all(
                    s.get("sensors_polled_at") and s.get("sel_sizes")
                    for n, s in redis.store.node_states(fleet.healthy_names).items()), 300,
                    what="every answering BMC's sensors and SEL read")
                everyone = [n.name for n in fleet.nodes]
                for label, names in (("answering BMCs", fleet.healthy_names),
                                     (f"all BMCs ({a.hung:.0%} hung)", everyone)):
                    rows.append(measured(f"farm-api /ipmi, {a.live} live BMCs: {label}", api.pid,
                                         redis.url, lambda names=names: wrk(
                                             url, "/ipmi?module=default&target=", names, work,
                                             a.duration, max(a.connections), token)))
                hung = sorted(fleet.hung)[0]
                one_hung = {"farm-api": one_scrape(f"{url}/ipmi", hung, token)}
                exporter, port = start_exporter(work)
                address = {n.name: f"{n.address}:{n.port}" for n in fleet.nodes}
                for label, names in (("answering BMCs", fleet.healthy_names),
                                     (f"all BMCs ({a.hung:.0%} hung)", everyone)):
                    rows.append(measured(
                        f"ipmi_exporter /ipmi, {a.live} live BMCs: {label}", exporter.pid,
                        redis.url, lambda names=names: wrk(
                            f"http://127.0.0.1:{port}", "/ipmi?module=default&target=",
                            [address[n] for n in names], work, a.duration, max(a.connections),
                            timeout=SCRAPE_TIMEOUT), cpu=cpu_with_reaped_children))
                hung_at = next(f"{n.address}:{n.port}" for n in fleet.nodes if n.name == hung)
                one_hung["ipmi_exporter"] = one_scrape(f"http://127.0.0.1:{port}/ipmi", hung_at)
            finally:
                common.stop(procs)
    finally:
        if exporter is not None:
            common.stop([exporter])
        fleet.stop()
    return rows, one_hung


def one_scrape(url, target, token=None):
    """(seconds, ipmi_up values) of one scrape of `target`, no client timeout."""
    import requests
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    began = time.monotonic()
    text = requests.get(url, params={"target": target, "module": "default"}, headers=headers,
                        timeout=300).text
    took = time.monotonic() - began
    return took, sorted(set(re.findall(r'^ipmi_up\{collector="[^"]+"\} (\S+)$', text, re.M)))


def start_exporter(work):
    """The real ipmi_exporter, every collector farm serves, FreeIPMI's timeout 3 s (as farm's)."""
    path = os.path.join(work, "ipmi_exporter.yml")
    with open(path, "w") as f:
        f.write(f"modules:\n  default:\n    user: admin\n    pass: {PASSWORD}\n"
                f"    driver: LAN_2_0\n    privilege: admin\n    timeout: 3000\n"
                f"    collectors: [bmc, chassis, dcmi, ipmi, sel]\n")
    port = free_tcp_port()
    proc = subprocess.Popen(["prometheus-ipmi-exporter", f"--config.file={path}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    common.wait_for(lambda: _answers(port), 30, what="ipmi_exporter to listen")
    return proc, port


def _answers(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--live", type=int, default=200)
    ap.add_argument("--hung", type=float, default=0.1)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--connections", type=lambda t: [int(x) for x in t.split(",")],
                    default=[4, 16])
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args()
    for tool in ("wrk", "prometheus-ipmi-exporter"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (Debian: wrk, prometheus-ipmi-exporter)")
    work = tempfile.mkdtemp(prefix="farm-ipmi-")
    rows = at_scale(a, work)
    side, one_hung = side_by_side(a, work)
    table = report.table(HEADER, rows + side)
    table += "\n\nOne scrape of a hung BMC, alone: " + "; ".join(
        f"{who} {took * 1000:,.1f} ms (ipmi_up {', '.join(ups)})"
        for who, (took, ups) in one_hung.items()) + "."
    table += (f"\n\nwrk: 2 threads, kept connections ({max(a.connections)} side by side), "
              f"{a.duration:.0f} s a row, "
              "targets drawn at random; a scrape not answered within 10 s (Prometheus's default "
              "scrape_timeout) counts as failed, and latencies are those of answered scrapes: a scrape "
              "still waiting when a row ends is in neither. "
              "CPU per scrape: the answering process's user + system "
              "time over the row (ipmi_exporter's includes the FreeIPMI processes it ran).")
    print(table)
    if a.write_docs:
        report.section("ipmi", table)


if __name__ == "__main__":
    main()
