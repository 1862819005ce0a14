#!/usr/bin/env bash
# The second device check, after gpu_check.sh: what limits the recorded step, and whether packing can pay.
#   bash scripts/gpu_profile.sh      (log in $OUT/gpu_profile.log; limits add up to 7 minutes, ~5 expected)
# Needs the same carried wheels as gpu_check.sh (make gpu-wheels; carry=[".whl"]).
set -u
LOG_NAME=gpu_profile.log
source "$(dirname "$0")/gpu_common.sh"
nvidia-smi -L 2>&1 | tee -a "$LOG"
# 1. kernels per step, batch scaling, several runs on streams of one process (~60 s)
step 100 python3 scripts/gpu_profile.py
# 2. VGG19 with the network compiled inside the recorded step (~70 s)
step 90 python3 -m jackpot.bench --device cuda --batch 64 --model vgg19 --steps 120 --rounds 1 --compile \
  --skip scoring,overhead
# 3. packing 4 processes against 1, with and without CUDA MPS (~2.5 minutes)
bash "$(dirname "$0")/gpu_pack.sh"
echo "=== [$(date +%T)] done" | tee -a "$LOG"
