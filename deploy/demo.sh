#!/usr/bin/env bash
# farm against a simulated fleet on this machine: a private redis-server,
# farm-sim with a few hundred BMCs (some hung, some off), two coordinators
# and two workers.
# Prints the fleet's state every few seconds; stops everything it started on
# Ctrl-C or after --duration seconds.
#
#   bash deploy/demo.sh [--duration SECONDS] [--count N] [--executor threads|processes]
#                       [--backend-url redis://HOST:PORT]   (use that Redis, start none)
#                       [--no-install]   (use .venv and the machine as they are)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=60 count=300 executor=threads backend_url="" install=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --executor) executor=$2; shift 2 ;;
    --backend-url) backend_url=$2; shift 2 ;;
    --no-install) install=0; shift ;;
    *) echo "usage: $0 [--duration S] [--count N] [--executor threads|processes]" >&2; exit 2 ;;
  esac
done

if [ $install = 1 ]; then
  bash deploy/setup.sh demo   # redis-server, python3-venv, .venv with farm: what is missing
elif [ ! -x .venv/bin/farm ]; then
  echo "--no-install, and .venv has no farm: run without --no-install once" >&2; exit 1
fi
work=$(mktemp -d)
infra=() daemons=()   # stopped in this order: farm's daemons first, then the sim and Redis
stop_all() {  # TERM, then KILL whatever still runs after $2 seconds
  local pids=("${@:3}") deadline=$((SECONDS + $2))
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  while kill -0 "${pids[@]}" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "$1 $pid did not stop within $2 s: killing it" >&2; kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() {
  trap - EXIT INT TERM
  # The daemons still have Redis while they leave their groups and write
  # their last results; each exits within bmc_timeout + 12 s in any case.
  stop_all "farm daemon" 20 "${daemons[@]}"
  stop_all "process" 10 "${infra[@]}"
  echo "demo stopped; its logs are in $work"
}
trap cleanup EXIT INT TERM

redis_port=$(.venv/bin/python -m farm.sim.ports tcp)
base_port=$(.venv/bin/python -m farm.sim.ports udp "$count")
redfish_port=$(.venv/bin/python -m farm.sim.ports tcp 20)

if [ -z "$backend_url" ]; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
    >"$work/redis.log" 2>&1 & infra+=($!)
  backend_url="redis://127.0.0.1:$redis_port"
fi
namespace="demo-$$"
.venv/bin/farm keys generate "$work/credentials.key" >/dev/null   # BMC passwords sealed in Redis
cat >"$work/farm.conf" <<CONF
[coordination]
backend_url = $backend_url
namespace = $namespace
[security]
credentials_key_file = $work/credentials.key
[worker]
executor = $executor
poll_interval = 10
bmc_timeout = 2
workers_pool_size = 1024
[metrics]
# two of each daemon on one host: free ports, each logged at start
port = 0
coordinator_port = 0
[tasks]
enabled = power,sensors,sel
[sensors]
interval = 30
[sel]
interval = 60
[api]
port = 0
tokens_file = $work/api-tokens
CONF
.venv/bin/farm api token add --role reader --name demo "$work/api-tokens" >"$work/reader.token"

FARM_SIM_PASSWORD="demo-$RANDOM$RANDOM" .venv/bin/farm-sim --count "$count" --base-port "$base_port" \
  --hung-fraction 0.1 --off-fraction 0.2 --inventory "$work/inventory.yaml" >"$work/sim.log" 2>&1 & infra+=($!)
# and 20 Redfish BMCs over HTTPS (self-signed; the inventory names the certificate)
mkdir -p "$work/redfish"
FARM_SIM_PASSWORD="demo-$RANDOM$RANDOM" .venv/bin/farm-sim --protocol redfish --tls --count 20 \
  --base-port "$redfish_port" --name-prefix rf- --inventory "$work/redfish/inventory.yaml" \
  >"$work/redfish-sim.log" 2>&1 & infra+=($!)
for _ in $(seq 100); do [ -f "$work/inventory.yaml" ] && [ -f "$work/redfish/inventory.yaml" ] && break; sleep 0.1; done
.venv/bin/farm nodes import --config-file "$work/farm.conf" "$work/inventory.yaml"
.venv/bin/farm nodes import --config-file "$work/farm.conf" "$work/redfish/inventory.yaml"
for i in 1 2; do
  .venv/bin/farm-coordinator --config-file "$work/farm.conf" >"$work/coordinator-$i.log" 2>&1 & daemons+=($!)
  .venv/bin/farm-worker --config-file "$work/farm.conf" >"$work/worker-$i.log" 2>&1 & daemons+=($!)
done
.venv/bin/farm-api --config-file "$work/farm.conf" >"$work/api.log" 2>&1 & daemons+=($!)

sleep 2
for log in "$work"/coordinator-*.log "$work"/worker-*.log "$work"/api.log; do
  if grep -q Traceback "$log"; then echo "a daemon failed to start ($log):" >&2; tail -5 "$log" >&2; exit 1; fi
done

# farm status --watch until Ctrl-C or --duration; then everything started here stops.
timeout --foreground -s INT "$duration" .venv/bin/farm status --config-file "$work/farm.conf" \
  --watch --interval 2 || true
.venv/bin/farm nodes summary --config-file "$work/farm.conf"
.venv/bin/farm nodes show --config-file "$work/farm.conf" "bmc-$base_port" || true
.venv/bin/farm events --config-file "$work/farm.conf" --limit 10 || true
# ipmi_exporter's /ipmi, served by farm-api from Redis (a hung BMC: ipmi_up 0, at once)
api_url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/api.log" | head -1)
for node in "bmc-$base_port" "bmc-$((base_port + 1))"; do
  echo "--- GET $api_url/ipmi?target=$node"
  TOKEN=$(cat "$work/reader.token") .venv/bin/python - "$api_url" "$node" <<'PY' || true
import os, sys, requests
got = requests.get(f"{sys.argv[1]}/ipmi", params={"target": sys.argv[2]}, timeout=10,
                   headers={"Authorization": f"Bearer {os.environ['TOKEN']}"})
print("\n".join(line for line in got.text.splitlines() if not line.startswith("#")))
PY
done
