#!/usr/bin/env bash
# The end-to-end device check of issue #19 (~8 minutes expected on an H200; run with the device tool's
# timeout_s=540 and carry=[".whl"] after `make gpu-wheels`): the CUDA tests, then real train.py jobs on full-size
# generated CIFAR-10: eager runs alone, packs of 4 runs side by side in one process (hydra.sweeper.pack=4), and
# compiled runs (the compile cache shared under paths.cache_dir, cold then warm); each sweep's GPU-hours projected
# from them afterwards, off the device (composing every sweep takes 10-70 s):
#   python scripts/end_to_end.py --project-from e2e.json
#   python scripts/end_to_end.py --project-from e2e_compiled.json --compare-with e2e.json
# Everything goes to $OUT/gpu_e2e.log and $OUT/e2e*.json.
set -u
LOG_NAME=gpu_e2e.log
source "$(dirname "$0")/gpu_common.sh"
{ nvidia-smi -L; nproc; python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"; } 2>&1 | tee -a "$LOG"
# 1. the CUDA tests (recorded steps equal eager ones, masks exact, device pipeline, scoring on the GPU, a pack's
#    runs on their own streams bit-identical to each alone; ~60 s)
step 70 python3 -m pytest -q -p no:cacheprovider tests/test_step_graph.py tests/test_device_loader.py \
  tests/test_scores.py tests/test_callback.py tests/test_pack.py tests/test_checkpoint_io.py tests/test_progress.py -k "cuda"
# 2. process start: where the seconds before a run go (imports), one line per top-level package over 0.3 s
step 15 bash -c "python3 -X importtime -c 'import jackpot.train' 2>&1 | awk -F'|' '\$2+0 > 300000' | tail -15"
# 3. eager (trainer=default): VGG19 and ResNet32 alone (3 epochs each, one process per figure), then a pack of 4
#    runs side by side of each, 8 epochs a run (~3.4 min)
step 220 python3 scripts/end_to_end.py --models vgg19,resnet32 --epochs 3 --pack 4 --pack-models vgg19,resnet32 \
  --pack-epochs 8 --no-projection --out "$OUT/e2e.json"
# 4. compiled (trainer=gpu), VGG19: a first run pays the cold compile, a second reads the shared cache (2 epochs
#    each), then a pack of 4 (16 epochs a run: its runs' warm compiles take turns, ~6 s each); whether compile
#    pays, alone and packed, against step 3 (~3.8 min; each figure is printed as it is measured)
step 235 python3 scripts/end_to_end.py --models vgg19 --epochs 2 --cold-first --pack 4 --pack-models vgg19 \
  --pack-epochs 16 --extra "trainer=gpu" --compare-with "$OUT/e2e.json" --no-projection \
  --out "$OUT/e2e_compiled.json"
echo "=== [$(date +%T)] done" | tee -a "$LOG"
