#!/bin/sh
# Every benchmark of docs/benchmarks.md, in one run, on this machine. Each one
# starts its own redis-server and simulated fleet and writes its tables into
# docs/benchmarks.md (and the staleness plot into docs/staleness.png).
# Needs: redis-server, ipmitool, ipmipower (Debian: freeipmi-tools), and
# `pip install -e '.[bench]'` (matplotlib). About 55 minutes on 2 cores.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
$PY -m bench scale --count 10000 --interval 60 --intervals 2 --repeats 2 --workers 2 \
    --plot docs/staleness.png --write-docs
$PY -m bench compare --counts 200,1000 --repeats 3 --write-docs
$PY -m bench scaleout --count 2000 --interval 2 --repeats 3 --write-docs
$PY -m bench faults --count 300 --workers 3 --repeats 3 --write-docs
