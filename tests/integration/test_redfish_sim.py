"""farm-sim's Redfish BMCs, as clients nobody here wrote see them: one
event loop serves thousands of BMCs over HTTPS with kept connections
(farm.sim.redfish_server), a hung one completes TLS and never answers,
and curl, sushy and DMTF's Tacklebox read what a BMC serves."""

import asyncio
import json
import os
import ssl
import subprocess
import sys

import aiohttp
import sushy

from farm.fleet import inventory
from farm.sim import redfish_shapes


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_one_thread_serves_two_thousand_bmcs_to_real_clients(make_sim):
    sim = make_sim(2000, protocol="redfish", tls=True, delay=0.2, hung_fraction=0.05,
                   redfish_shape="current", session_timeout=3600)
    with open(sim.inventory) as f:
        nodes = inventory.parse(f.read(), sim.inventory)
    hung = {p for p in range(sim.count) if p % 20 == 0}  # farm.sim.fleet.pick(2000, 0.05, 0)
    healthy = [n for i, n in enumerate(nodes) if i not in hung]
    context = ssl.create_default_context(cafile=sim.tls_cert)

    async def read_all():
        """Every healthy BMC's service root at once, the connections kept:
        how many answered, and the simulator's threads while they are open."""
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=1, keepalive_timeout=120)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def root(node):
                async with http.get(f"{node.address}/redfish/v1/", ssl=context) as r:
                    return (await r.json())["Name"]
            names = await asyncio.wait_for(asyncio.gather(*(root(n) for n in healthy)), 120)
            return names, threads_of(sim.proc.pid)
    names, threads = asyncio.run(read_all())
    assert names == ["farm-sim Redfish"] * len(healthy)
    assert threads == 1  # a thread per kept connection was 1,900 here

    env = dict(os.environ, FARM_SIM_PASSWORD=sim.password)
    curl = subprocess.run(  # a hung BMC: TLS completes, no answer comes
        ["curl", "-sS", "--cacert", sim.tls_cert, "--max-time", "3", "-w", "%{time_appconnect}",
         f"{nodes[0].address}/redfish/v1/"], capture_output=True, text=True, timeout=30)
    assert curl.returncode == 28, curl.stderr  # curl's "operation timed out"
    assert float(curl.stdout or 0) > 0, curl.stdout  # the handshake was done

    client = sushy.Sushy(f"{healthy[0].address}/redfish/v1", username=sim.username,
                         password=sim.password, verify=sim.tls_cert)
    try:
        assert client.get_system("/redfish/v1/Systems/1").power_state == sushy.PowerState.ON
    finally:
        # its session ended now, while the BMC answers: left to __del__, sushy
        # retried a DELETE to the stopped simulator for seconds inside a later test
        client.__del__()

    code = ("import json, os, sys, redfish, redfish_utilities\n"
            "c = redfish.redfish_client(base_url=sys.argv[1], username=sys.argv[2], "
            "password=os.environ['FARM_SIM_PASSWORD'], timeout=30, cafile=sys.argv[3])\n"
            "c.login(auth='session')\n"
            "print(json.dumps(redfish_utilities.get_sensors(c)))\n"
            "redfish_utilities.logout(c)\n")
    out = subprocess.run([sys.executable, "-c", code, healthy[1].address, sim.username,
                          sim.tls_cert], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    read = {r["Name"] for chassis in json.loads(out.stdout) for r in chassis["Readings"]}
    assert read == {s.name for s in redfish_shapes.threshold_sensors()} | {"Total Power"}
