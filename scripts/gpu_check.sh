#!/usr/bin/env bash
# One prepared device check (about 9 minutes on one H100/H200). Run from the repo root on the GPU machine:
#   bash scripts/gpu_check.sh            (writes $OUT/gpu_check.log, or ./gpu_check.log without $OUT)
# The device image has torch and Lightning but not Hydra/omegaconf: carry them as wheels in .whl/
# (see docs/benchmarks.md). Every step has its own time limit so one slow step cannot eat the rest.
set -u
OUT=${OUT:-.}
LOG="$OUT/gpu_check.log"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONWARNINGS=ignore
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD/src:/tmp/site"
else
  export PYTHONPATH="$PWD/src"
fi
step() { local limit=$1; shift; echo "=== [$(date +%T)] $* (limit ${limit}s)" | tee -a "$LOG";
         timeout "$limit" "$@" 2>&1 | tee -a "$LOG"; echo "=== exit ${PIPESTATUS[0]}" | tee -a "$LOG"; }
{ nvidia-smi -L; python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } 2>&1 | tee -a "$LOG"
step 100 python3 -m pytest -q -p no:cacheprovider tests/test_device_loader.py -k cuda
step 150 python3 -m jackpot.bench --model resnet32 --batch 64 --device cuda --steps 150 --rounds 3 --score-classes 10,100
step 150 python3 -m jackpot.bench --model vgg19 --batch 64 --device cuda --steps 150 --rounds 3 --skip scoring,overhead
step 100 python3 -m jackpot.bench pack --procs 4 --model resnet32 --device cuda
step 120 python3 -m jackpot.bench --model resnet32 --batch 64 --device cuda --steps 150 --rounds 2 --compile --skip scoring,overhead
