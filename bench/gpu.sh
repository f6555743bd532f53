#!/usr/bin/env bash
# GPU check for one CUDA machine without network (about 8 minutes at most): installs the wheels
# that bench/gpu_wheels.sh downloaded into .whl/ (the packages the machine's image lacks) into
# /tmp/site, then runs bench/gpu_check.py with the image's python3 and torch and prints one table:
# train-step rate (steps/s, samples/s) and peak memory of baseline, DCA, DaB-Net (when the config
# has model.decoder) and a minimal Monodepth2-style step at 640x192 and 1024x320, AMP off/auto,
# compile off/on; loader-fed end-to-end samples/s on synthetic KITTI-size frames; host-device
# syncs inside the timed steps; the 20-epoch KITTI time each rate implies. Not part of CI.
#
#   bash bench/gpu_wheels.sh                 # where pip works: fills .whl/ (carry it along)
#   bash bench/gpu.sh                        # on the GPU machine
#   GPU_CHECK_OUT=DIR bash bench/gpu.sh      # the log and results.jsonl go to DIR
#   bash bench/gpu.sh --cpu-smoke            # the same driver on the CPU, tiny sizes
#
# Environment: BUDGET_S (total seconds, default 465), WHEEL_DIR (.whl), SITE_DIR (/tmp/site),
# GPU_CHECK_OUT (log + results, default /tmp/gpu_check), GPU_CHECK_WORK (scratch, /tmp/gpu_check),
# PYTHON (python3). Arguments go to bench/gpu_check.py (--sizes, --batch, --steps, ...).
# A row that fails is printed and the run goes on; if the Python process itself dies, it is started
# again with the rows done so far kept (--resume), while time is left.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUDGET_S=${BUDGET_S:-465}
PY=${PYTHON:-python3}
WHEELS=${WHEEL_DIR:-.whl}
SITE=${SITE_DIR:-/tmp/site}
export GPU_CHECK_OUT=${GPU_CHECK_OUT:-/tmp/gpu_check}
export GPU_CHECK_WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
export GPU_CHECK_DEADLINE=$((T0 + BUDGET_S))
export PYTHONUNBUFFERED=1
mkdir -p "$GPU_CHECK_OUT" "$GPU_CHECK_WORK" "$SITE"
LOG="$GPU_CHECK_OUT/gpu_check.log"
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  say "no wheels in $WHEELS/ (run bash bench/gpu_wheels.sh where pip works); using what $PY has"
else
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "${wheels[@]}" >>"$LOG" 2>&1; then
    say "pip could not install the wheels (see $LOG); unzipping them into $SITE instead"
    for w in "${wheels[@]}"; do "$PY" -m zipfile -e "$w" "$SITE" || say "could not unzip $w"; done
  fi
  say "installed ${#wheels[@]} wheels from $WHEELS/ into $SITE in $(( $(date +%s) - T0 )) s"
  PYTHONPATH="$SITE" "$PY" bench/gpu_wheels.py --verify --wheels "$WHEELS" --site "$SITE" 2>&1 | tee -a "$LOG"
fi
export PYTHONPATH="$SITE:.${PYTHONPATH:+:$PYTHONPATH}"

rc=1
for attempt in 1 2 3; do
  extra=()
  [ "$attempt" -gt 1 ] && extra=(--resume)
  "$PY" -u bench/gpu_check.py "${extra[@]}" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] && break
  left=$((GPU_CHECK_DEADLINE - $(date +%s)))
  if [ "$left" -lt 40 ]; then
    say "bench/gpu_check.py exited with $rc and ${left} s are left: not restarting"
    break
  fi
  say "bench/gpu_check.py exited with $rc (attempt $attempt); restarting with the rows done so far (${left} s left)"
done
if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
  "$PY" bench/gpu_check.py --table "$@" 2>&1 | tee -a "$LOG"
fi
say "bench/gpu.sh: $(( $(date +%s) - T0 )) s; log $LOG"
exit "$rc"
