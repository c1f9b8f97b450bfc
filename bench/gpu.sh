#!/usr/bin/env bash
# The one script a lent GPU runs, in one call of under 9 minutes:
#   1. a smoke test that stops at the first error (imports, CUDA, one tiny run of `svd-bn ablate` on the GPU);
#   2. the write-up's CIFAR-10 grid, started in the background at once: small and large, SGD and AdamW (OPTS), projection on
#      and off, 2 seeds, 30 epochs, --jobs worker processes on the GPU, the small half first (the grid's order);
#   3. meanwhile: the CUDA tests, nbdev-test with the cuda flag, and bench_orth, bench_callback and bench_data on CUDA;
#   4. the grid's table, whole or as far as it got: a grid stopped by the time budget keeps every finished run, and a
#      second call with RESUME_FROM (the first call's cifar10/ copied back into the repo) trains only the rest.
# Usage: bash bench/gpu.sh CIFAR [RESULTS]
#   CIFAR    a CIFAR-10 folder in fastai's layout, or a pack from bench/pack_folder.py (the path before .bin/.idx)
#   RESULTS  where everything goes: log.txt, grid.txt and cifar10/ (results.csv, .json, .png). Default: $OUT, else results/gpu
# Settings, from the environment: OPTS (sgd,adamw; sgd,adamw,muon adds lesson 06's Muon rows, half again the time), JOBS (8), EPOCHS (30), SEEDS (2), TRAIN_SIZE (all), BUDGET (seconds for the whole
#   script, 520), DEVICE (cuda), NBFLAGS (cuda), NBTEST (1; 0 skips nbdev-test), BENCH (1; 0 skips the benchmarks),
#   BS (64, the write-up's; larger trains fewer, bigger steps, with both learning rates scaled by BS/64),
#   THREADS (1: torch threads per grid worker, leaving cores for the checks), PYTHON (.venv/bin/python, else python3).
#   RESUME_FROM: a folder with the results.json of an earlier call (the runs; results.csv is derived from it), whose finished runs this one skips.
# Prepare the wheels and the pack first with bench/gpu_prepare.sh; the README says how to call the device.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
CIFAR=${1:?usage: bash bench/gpu.sh CIFAR [RESULTS]}
RES=${2:-${OUT:-results/gpu}}
OPTS=${OPTS:-sgd,adamw}; JOBS=${JOBS:-8}; THREADS=${THREADS:-1}; EPOCHS=${EPOCHS:-30}; SEEDS=${SEEDS:-2}; BUDGET=${BUDGET:-520}; DEVICE=${DEVICE:-cuda}
NBFLAGS=${NBFLAGS-cuda}; NBTEST=${NBTEST:-1}; BENCH=${BENCH:-1}
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
mkdir -p "$RES"
exec > >(tee -a "$RES/log.txt") 2>&1
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }
status=()
check() { local name=$1; shift; "$@"; local rc=$?; status+=("$name: $([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")"); return 0; }
die() { echo "gpu.sh: $*"; exit 1; }

step "setup"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || die "wheels did not install"
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
else export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}; fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
echo "python: $($PY -V 2>&1), results: $RES, optimizers $OPTS, jobs $JOBS, epochs $EPOCHS, seeds $SEEDS, batch size ${BS:-64}, budget $BUDGET s, device $DEVICE"
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

step "smoke test (stops at the first error)"
$PY -c "
import torch, fastai, svd_bn
from svd_bn import OrthCallback
print('torch', torch.__version__, '| fastai', fastai.__version__, '| svd_bn', svd_bn.__version__, '| cuda', torch.cuda.is_available())
assert '$DEVICE' == 'cpu' or torch.cuda.is_available(), 'no CUDA device'" || die "smoke test: imports"
$PY -m svd_bn ablate --models small --opts sgd --orth yes --seeds 1 --epochs 1 --train-size 256 --no-bar --device "$DEVICE" \
  --out /tmp/svd_bn_smoke >/tmp/svd_bn_smoke.txt 2>&1 || { tail -20 /tmp/svd_bn_smoke.txt; die "smoke test: a tiny run on $DEVICE"; }
tail -1 /tmp/svd_bn_smoke.txt; rm -rf /tmp/svd_bn_smoke

step "data"
data=$CIFAR
if [ -f "$CIFAR.bin" ]; then
  rm -rf /tmp/cifar10 && $PY bench/pack_folder.py unpack "$CIFAR" /tmp/cifar10 || die "unpacking $CIFAR"
  data=/tmp/cifar10
fi
$PY -c "
import time; t = time.time()
from svd_bn.data import decode_folder
d = decode_folder('$data')   # once, before the workers start: they all read the cache
print(f\"{len(d['files']):,} images decoded into the cache in {time.time() - t:.0f} s\")" || die "decoding $data"

if [ -n "${RESUME_FROM:-}" ] && [ ! -e "$RES/cifar10/results.json" ]; then   # a second call: the runs the first one brought back
  mkdir -p "$RES/cifar10" && cp "$RESUME_FROM"/results.json "$RES/cifar10/" || die "resuming from $RESUME_FROM"
fi
step "the CIFAR-10 grid, in the background (grid.txt), until $(( BUDGET - 25 )) s"
# timeout sends SIGTERM, which svd-bn takes as Ctrl-C: it stops the workers and keeps every finished run
timeout -k 20 $(( $(left) - 25 )) $PY -m svd_bn ablate --data cifar10 --path "$data" --epochs "$EPOCHS" --seeds "$SEEDS" --opts "$OPTS" \
  --jobs "$JOBS" --threads "$THREADS" --device "$DEVICE" --no-bar --out "$RES/cifar10" ${TRAIN_SIZE:+--train-size $TRAIN_SIZE} ${BS:+--bs $BS} >"$RES/grid.txt" 2>&1 &
grid=$!
export OMP_NUM_THREADS=2   # the checks below share the cores with the grid's workers

step "CUDA tests"
check "CUDA tests" timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_orth.py tests/test_callback.py tests/test_data.py -k cuda
if [ "$BENCH" = 1 ]; then
  step "benchmarks on $DEVICE"
  check bench_orth timeout 120 $PY bench/bench_orth.py --reps 3 --hook
  check bench_callback timeout 90 $PY bench/bench_callback.py
  check bench_data timeout 120 $PY bench/bench_data.py --path "$data" --device "$DEVICE"
fi
if [ "$NBTEST" = 1 ]; then
  step "nbdev-test --flags '$NBFLAGS' (the notebooks with CUDA cells first)"
  nbt() { timeout "$1" $PY -c "from nbdev.test import nbdev_test; nbdev_test()" --n-workers 4 --flags "$NBFLAGS" --file-re "$2"; }
  check "nbdev-test 00, 02a, 04" nbt $(( $(left) - 60 )) '^0(0|2a|4)_'
  [ "$(left)" -gt 120 ] && check "nbdev-test the rest" nbt $(( $(left) - 60 )) '^(index|0(1|2|3|3a|5|5a|5b|6)_)'
fi

step "waiting for the grid"
wait $grid; rc=$?
status+=("grid: $([ $rc = 0 ] && echo complete || echo "stopped by the budget or an error (exit $rc); rerun with the same RESULTS to resume")")
tail -25 "$RES/grid.txt"
$PY -c "
from pathlib import Path
from svd_bn.experiments import load_results, results_table, results_plot, paired_effect
out = Path('$RES/cifar10'); df, hist, _ = load_results(out)
print(f'{len(df)} runs finished, {df.seconds.astype(float).sum() / 60:.0f} min of training in all' if len(df) else 'no run finished')
if len(df): results_plot(df, hist, out/'results.png'); print(results_table(df)); print(paired_effect(df).round(3).to_string())"

step "summary"
printf '%s\n' "${status[@]}"
echo "wall time: $(( $(date +%s) - start )) s"
