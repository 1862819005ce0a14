#!/usr/bin/env bash
# Second device check: launch latency / CUDA graphs, and packing 4 ResNet32 runs on one GPU.
set -u
OUT=${OUT:-.}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONWARNINGS=ignore
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site"
timeout 150 python3 scripts/gpu_diag.py 2>&1 | tee -a "$OUT/gpu_check2.log"
timeout 170 python3 -m jackpot.bench pack --procs 4 --model resnet32 --device cuda --lead 90 --window 20 2>&1 | tee -a "$OUT/gpu_check2.log"
