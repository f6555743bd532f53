#!/usr/bin/env bash
# Download, here (where pip reaches a package index), the cp312 manylinux x86_64 wheels of every
# package the project needs that the target GPU image lacks, into .whl/ (ignored by git), and print
# their total against the 64 MiB that may travel with the working tree. bench/gpu.sh installs them
# on that machine. Details: bench/gpu_wheels.py (and bench/README.md, "GPU check").
#
#   bash bench/gpu_wheels.sh                                   # .whl/ for CPython 3.12
#   PYVER=3.11 WHEEL_DIR=/tmp/whl311 bash bench/gpu_wheels.sh  # the same set for another CPython
#
# Run it with the project's environment active (. .venv/bin/activate): dependency versions follow
# the ones installed there when they satisfy the constraints.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
exec "$PY" bench/gpu_wheels.py --python-version "${PYVER:-3.12}" --wheels "${WHEEL_DIR:-.whl}" "$@"
