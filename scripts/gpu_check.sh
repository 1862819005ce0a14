#!/usr/bin/env bash
# One prepared device check, about 8 minutes on one H100 (less on an H200). From the repo root on the GPU machine:
#   bash scripts/gpu_check.sh        (everything goes to $OUT/gpu_check.log, or ./gpu_check.log without $OUT)
# Run it with the device tool's timeout_s=600. Steps are ordered by value: if time runs out, the log still holds
# the earlier ones. Each step has its own limit, so one slow step cannot eat the rest.
# The device image has torch and Lightning but not Hydra/omegaconf: carry them as wheels in .whl/.
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
         timeout "$limit" "$@" 2>&1 | grep -v -e "^  triton_" -e AUTOTUNE -e "^strides:" -e "^dtypes:" \
           -e "Autotune Choices" -e '"best_kernel"' -e "^  convolution " | tee -a "$LOG"
         echo "=== exit ${PIPESTATUS[0]}" | tee -a "$LOG"; }
{ nvidia-smi -L; nproc; python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } 2>&1 | tee -a "$LOG"
B="python3 -m jackpot.bench --device cuda --batch 64"
# 1. the device pipeline's tests on CUDA (~15 s)
step 60 python3 -m pytest -q -p no:cacheprovider tests/test_device_loader.py -k cuda
# 2. ResNet32, eager bf16 + channels_last: (a)/(b)/(c) with (c) at 8 steps per training step, host-sync count,
#    SNIP/GraSP time and CUDA peak (C10, C100), framework overhead on the GPU (tiny net, bare/stock/jackpot/K=8)
step 120 $B --model resnet32 --steps 200 --rounds 3 --steps-per-call 8 --sync-check --score-classes 10,100 \
  --overhead-device cuda --overhead-steps 300 --overhead-rounds 3
# 3. VGG19, the same throughput rows
step 90 $B --model vgg19 --steps 200 --rounds 3 --steps-per-call 8 --sync-check --skip scoring,overhead
# 4. packing: 4 ResNet32 processes (c) against 1; children warm up, then start together (target >= 1.5x)
step 150 python3 -m jackpot.bench pack --procs 4 --model resnet32 --device cuda --batch 64 --steps 300 \
  --window 20 --steps-per-call 8
# 5. CUDA graphs through torch.compile(mode="reduce-overhead") in (b) and (c): the launch-bound regime's cure
step 150 $B --model resnet32 --steps 200 --rounds 2 --steps-per-call 8 --compile-mode reduce-overhead \
  --skip scoring,overhead
step 120 $B --model vgg19 --steps 200 --rounds 2 --steps-per-call 8 --compile-mode reduce-overhead \
  --skip scoring,overhead
echo "=== [$(date +%T)] done" | tee -a "$LOG"
