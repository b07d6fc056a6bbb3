#!/usr/bin/env bash
# Install what farm needs on a Debian machine, then farm itself into .venv.
# Idempotent: it installs only what is missing, so the demo and the tests call
# it every time.
#
#   bash deploy/setup.sh demo    redis-server, python3-venv; farm
#   bash deploy/setup.sh test    the demo's, and the BMCs, readers, exporters and
#                                tools the tests run against; farm with its [test]
#                                extras
#
# Not root and something missing: it uses `sudo -n` when that works without a
# password, and otherwise names the packages and the command to run, and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have redis-server || need+=(redis-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ "$what" = test ]; then
  have redis-sentinel || need+=(redis-sentinel)
  have ipmitool || need+=(ipmitool)
  have ipmipower || need+=(freeipmi-tools)
  have ipmi_sim || need+=(openipmi)          # an IPMI BMC nobody here wrote
  have ps || need+=(procps)
  have promtool || need+=(prometheus)
  have prometheus-ipmi-exporter || need+=(prometheus-ipmi-exporter)   # /ipmi's oracle
  ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || need+=(faketime)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif have sudo && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "farm's $what needs these Debian packages, and this is not root:" >&2
    echo "    sudo apt-get install -y ${need[*]}" >&2
    echo "Run that (or run this script as root), then run the same command again." >&2
    exit 1
  fi
  echo "installing ${need[*]} ..."
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv ..."
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
extras=""
[ "$what" = test ] && extras="[test]"
# quick when already installed; picks up new dependencies
.venv/bin/pip install -q -e ".$extras"
