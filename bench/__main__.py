"""python -m bench NAME [ARGS]: run one benchmark (each starts its own Redis and fleet).

  compare         farm against ipmipower, ipmitool and plain pyghmi (cost per poll, hung BMCs)
  engine          the poll engine: cost at 1 s and 60 s intervals, processes 1 vs 2
  scale           one farm-worker over up to 100,000 BMCs: staleness, CPU and memory per node
  scaleout        1, 2 and 4 workers on one fleet: polls/s and staleness
  churn           healthy nodes' longest gap while the inventory changes and a worker joins
  redfish         client CPU per Redfish poll against IPMI and a plain requests loop
  redfish-scale   10,000 Redfish BMCs at 1 s, 5 % hung: farm against plain asyncio and requests
                  loops (polls/s, worst age, CPU per poll, RSS per node)
  redfish-gets    GETs, bytes and client CPU per sensors pass in each Redfish shape, and IPMI
  tasks           each task's cost per pass (power, sensors, sel) and nodes per core with all three
  cli             farm status, nodes summary and nodes list at 100,000 nodes
  status          farm status at 100,000 nodes in 20 sites against one site before sites (A/B)
  faults          takeover after a worker's SIGKILL, leader failover, longest gap
  login           what negotiation costs a first login (ipmi_sim and farm-sim), and later ones
  actions         a staggered power-on of 10,000 nodes as the BMCs see it: lateness, spacing
  bulk-off        a one-wave power-off of 10,000 nodes: commands per BMC, Redis's slow calls;
                  a cancel mid-plan: nodes left locked
  ipmi            /ipmi from farm-api at 100,000 nodes against the real ipmi_exporter
  api-hostile     /ipmi while the adversarial probe's clients run; their 4xx times
  redfish-hostile healthy nodes' intervals beside dripping and oversized Redfish BMCs
"""

import runpy
import sys

MODULES = {"compare": "bench.compare", "engine": "bench.engine", "scale": "bench.scale",
           "churn": "bench.churn", "cli": "bench.cli", "status": "bench.status", "scaleout": "bench.scaleout",
           "faults": "bench.faults", "tasks": "bench.tasks", "redfish": "bench.redfish",
           "redfish-gets": "bench.redfish_gets", "redfish-scale": "bench.redfish_scale",
           "login": "bench.login", "actions": "bench.actions", "ipmi": "bench.ipmi",
           "bulk-off": "bench.bulkoff", "api-hostile": "bench.hostile_api",
           "redfish-hostile": "bench.hostile_redfish"}

if len(sys.argv) < 2 or sys.argv[1] not in MODULES:
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)
name = sys.argv.pop(1)
sys.argv[0] = f"python -m bench {name}"
runpy.run_module(MODULES[name], run_name="__main__")
