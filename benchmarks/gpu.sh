#!/usr/bin/env bash
# One GPU session's measurements (issue 14, part 3), sized for <= 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu.sh [--out DIR] [--python PYTHON]   # on a CUDA machine
#   bash benchmarks/gpu.sh --dry-run [--out DIR]           # the same steps on the CPU, toy sizes
#
# Steps (each under its own timeout; a failed or timed-out step is recorded in status.tsv and
# the script goes on, exiting non-zero at the end if any step failed):
#   1. tests      the CUDA path of the test suite: pytest --device cuda on the test files that
#                 take the `device` fixture (conftest.py), slow tests included
#   2. sampling   benchmarks/compile.py: the hand loop, eager sample(), compiled ("default")
#                 and CUDA graphs ("reduce-overhead") on the demo generator, B = 64, K = 25
#   3. logdet     benchmarks/entropy.py speed: the exact log-det routes against the row-by-row
#                 loop, MLP decoder, D = 128, B = 64, K = 25
#   4. training   benchmarks/paper_throughput.py: images/s of the paper preset's L = 5 cell on
#                 synthetic 32x32x3 data, eager and compiled, and the full run's wall time
# Everything goes to one folder, benchmarks/results/gpu-<device name>/ by default, with
# status.tsv (step, exit code, seconds), one log per step and the scripts' .md/.json results.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
DRY_RUN=0
OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu.sh: unknown argument $1 (expected --dry-run, --out DIR, --python PYTHON)" >&2
       exit 2 ;;
  esac
done
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [[ $DRY_RUN -eq 1 ]]; then
  DEVICE=cpu
  NAME=cpu-dry-run
else
  DEVICE=cuda
  if ! NAME="$("$PYTHON" -c 'import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name())')"; then
    echo "gpu.sh: CUDA is not available to $PYTHON; use --dry-run for the CPU smoke run" >&2
    exit 2
  fi
fi
SLUG="$(echo "$NAME" | tr -cs 'A-Za-z0-9._-' '-' | sed 's/-*$//')"
OUT="${OUT:-$ROOT/benchmarks/results/gpu-$SLUG}"
mkdir -p "$OUT"
printf 'step\texit_code\tseconds\n' > "$OUT/status.tsv"
{
  echo "command: bash benchmarks/gpu.sh $([[ $DRY_RUN -eq 1 ]] && echo --dry-run)"
  echo "device: $NAME"
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  "$PYTHON" -c 'import platform, torch; print("python:", platform.python_version()); print("torch:", torch.__version__, "cuda:", torch.version.cuda)'
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
} > "$OUT/environment.txt" 2>&1

FAILED=0
# run_step NAME TIMEOUT_SECONDS COMMAND...: run with a timeout, log, and record the outcome.
run_step() {
  local name="$1" limit="$2"
  shift 2
  local started code
  started=$(date +%s)
  echo "== $name (timeout ${limit}s): $*"
  set +e
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  code=$?
  set -e
  printf '%s\t%s\t%s\n' "$name" "$code" "$(( $(date +%s) - started ))" >> "$OUT/status.tsv"
  tail -n 12 "$OUT/$name.log"
  if [[ $code -ne 0 ]]; then
    echo "== $name FAILED (exit $code; 124 = timed out); see $OUT/$name.log"
    FAILED=1
  fi
}

COMMON=(--device "$DEVICE" --results-dir "$OUT")
if [[ $DRY_RUN -eq 1 ]]; then
  # Toy sizes. No compiled modes: a CPU compile takes minutes (tests/test_compile.py covers it).
  run_step tests 120 "$PYTHON" -m pytest -q -x -p no:cacheprovider --device cpu \
    tests/test_langevin.py -k rollout
  run_step sampling 120 "$PYTHON" benchmarks/compile.py --quick --modes "${COMMON[@]}"
  run_step logdet 120 "$PYTHON" benchmarks/entropy.py speed --quick "${COMMON[@]}"
  run_step training 120 "$PYTHON" benchmarks/paper_throughput.py --quick "${COMMON[@]}"
else
  DEVICE_TESTS=$(grep -l 'device: torch.device' tests/test_*.py | tr '\n' ' ')
  # shellcheck disable=SC2086  # the file list is meant to split
  run_step tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider --device cuda $DEVICE_TESTS
  run_step sampling 150 "$PYTHON" benchmarks/compile.py --repeats 10 \
    --modes default reduce-overhead "${COMMON[@]}"
  run_step logdet 90 "$PYTHON" benchmarks/entropy.py speed --repeats 5 "${COMMON[@]}"
  run_step training 45 "$PYTHON" benchmarks/paper_throughput.py --updates 20 "${COMMON[@]}"
  run_step training_compiled 45 "$PYTHON" benchmarks/paper_throughput.py --updates 20 \
    --compile reduce-overhead --name paper_throughput_compiled "${COMMON[@]}"
fi
echo "results in $OUT (status.tsv: one row per step)"
exit "$FAILED"
