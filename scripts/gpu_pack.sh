#!/usr/bin/env bash
# Packing 4 ResNet32 runs (c) on one GPU against 1, as separate processes: under CUDA MPS (the multi-process
# service, which lets several processes' kernels run at once), then without it. Epochs of 782 steps (a CIFAR
# epoch), 10 s windows, each child with an equal share of the CPU cores for its torch threads.
#   bash scripts/gpu_pack.sh         (log in $OUT/gpu_pack.log; limits add up to 3.5 minutes, ~2.5 expected)
set -u
LOG_NAME=${LOG_NAME:-gpu_pack.log}
source "$(dirname "$0")/gpu_common.sh"
P="python3 -m jackpot.bench pack --procs 4 --model resnet32 --device cuda --batch 64 --steps 782 --window 10"
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p /tmp/mps_pipe /tmp/mps_log
  if timeout 15 nvidia-cuda-mps-control -d; then
    echo "MPS: control daemon started" | tee -a "$LOG"
    step 80 $P
    echo quit | timeout 15 nvidia-cuda-mps-control
    sleep 2
  else
    echo "MPS: the control daemon did not start" | tee -a "$LOG"
  fi
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
else
  echo "MPS: nvidia-cuda-mps-control is not on this machine" | tee -a "$LOG"
fi
# without MPS the 4 processes time-slice the GPU: on an H200 this did not finish within 80 s (2026-11-27)
step 120 $P
echo "=== [$(date +%T)] done" | tee -a "$LOG"
