#!/bin/sh
# Every benchmark of docs/benchmarks.md, in one run, on this machine. Each one
# starts its own redis-server and simulated fleet and writes its tables into
# docs/benchmarks.md (and the staleness plot into docs/staleness.png).
# Needs: redis-server, ipmitool, ipmipower (Debian: freeipmi-tools), ipmi_sim (openipmi),
# wrk and prometheus-ipmi-exporter (bench ipmi, api-hostile), and
# `pip install -e '.[bench]'` (matplotlib). About 100 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
$PY -m bench scale --count 100000 --interval 60 --intervals 2 --repeats 1 --workers 1 --hung 0.1 \
    --pool 4096 --shards 10 --sample 30 --settle 60 --plot docs/staleness.png --write-docs
$PY -m bench engine --saturate-count 6000 --write-docs
$PY -m bench churn --count 1000 --interval 1 --window 30 --write-docs
$PY -m bench cli --count 100000 --write-docs
$PY -m bench compare --counts 200,1000 --repeats 3 --write-docs
$PY -m bench scaleout --count 2000 --interval 2 --repeats 3 --write-docs
$PY -m bench faults --count 300 --workers 3 --repeats 3 --write-docs
$PY -m bench tasks --count 1000 --at-scale 20000 --write-docs
$PY -m bench redfish --count 1000 --write-docs
$PY -m bench redfish-gets --write-docs
$PY -m bench redfish-scale --count 2000 --window 120 --write-docs
$PY -m bench redfish-scale --count 10000 --window 300 --clients farm,asyncio --write-docs
$PY -m bench login --count 20 --rounds 5 --write-docs
$PY -m bench actions --count 10000 --batch 200 --interval 2 --write-docs
$PY -m bench ipmi --count 100000 --live 200 --duration 20 --write-docs
$PY -m bench bulk-off --count 10000 --write-docs
$PY -m bench api-hostile --count 10000 --duration 15 --write-docs
$PY -m bench redfish-hostile --interval 10 --window 90 --write-docs
