#!/usr/bin/env bash
# The test suite on a fresh Debian machine: installs what it lacks
# (deploy/setup.sh test), then runs pytest. Arguments go to pytest:
#   bash tests/run.sh                     the whole suite
#   bash tests/run.sh tests/unit -x       a part of it
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh test
exec .venv/bin/python -m pytest -q "${@:-tests}"
