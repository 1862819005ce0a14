#!/usr/bin/env bash
# One prepared device check: its steps' limits add up to 10 minutes, ~7 expected on an H200. From the repo root:
#   bash scripts/gpu_check.sh        (everything goes to $OUT/gpu_check.log, or ./gpu_check.log without $OUT)
# Run it with the device tool's timeout_s=600. Steps are ordered by value: if time runs out, the log still holds
# the earlier ones. Each step has its own limit, so one slow step cannot eat the rest.
# Needs the carried wheels (scripts/gpu_common.sh): `make gpu-wheels`, then carry=[".whl"].
set -u
LOG_NAME=gpu_check.log
source "$(dirname "$0")/gpu_common.sh"
{ nvidia-smi -L; nproc; python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } 2>&1 | tee -a "$LOG"
B="python3 -m jackpot.bench --device cuda --batch 64"
# 1. recorded (CUDA-graph) training equals eager training, masks stay exact; the device pipeline, OBD's
#    per-sample Fisher and the ticket scored on the GPU (~45 s)
step 60 python3 -m pytest -q -p no:cacheprovider tests/test_step_graph.py tests/test_device_loader.py \
  tests/test_scores.py tests/test_callback.py -k "cuda"
# 2. launch latency; one step of ResNet32 and VGG19, eager vs jackpot's recorded graph, without Lightning (~60 s)
step 60 python3 scripts/gpu_diag.py
# 3. ResNet32: (a)/(b)/(c) with (c) recorded (the default) and (c) eager side by side, host syncs, GPU overhead
step 110 $B --model resnet32 --steps 150 --rounds 3 --sync-check --skip scoring \
  --overhead-device cuda --overhead-steps 200 --overhead-rounds 3
# 4. VGG19, the same throughput rows
step 70 $B --model vgg19 --steps 150 --rounds 3 --sync-check --skip scoring,overhead
# 5. ResNet32 with the network compiled (trainer=gpu): Inductor's fusions inside jackpot's recorded step
step 100 $B --model resnet32 --steps 150 --rounds 2 --compile --skip scoring,overhead
# 6. packing: 4 ResNet32 processes (c) against 1, under CUDA MPS and then without it (target >= 1.5x; ~2.5 min,
#    the last step may run out of the call's time, which costs only its own figure)
bash "$(dirname "$0")/gpu_pack.sh"
echo "=== [$(date +%T)] done" | tee -a "$LOG"
