# Sourced by the device checks (gpu_check.sh, gpu_profile.sh, gpu_pack.sh): the carried wheels, the log and
# `step LIMIT CMD...`, which runs one step under its own time limit and logs it. The caller sets LOG_NAME (a
# file name under $OUT, or an absolute path) unless a calling script already exported one.
# The device image has torch and Lightning but not Hydra/omegaconf: `make gpu-wheels` puts them in .whl/ (ignored
# by git, so the device tool needs carry=[".whl"]).
OUT=${OUT:-.}
case "$LOG_NAME" in /*) LOG="$LOG_NAME" ;; *) LOG="$OUT/$LOG_NAME" ;; esac
export LOG_NAME
# RuntimeWarnings stay visible: a CUDA-graph recording that falls back to eager steps says why in one
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled PYTHONWARNINGS="ignore,default::RuntimeWarning"
if [ -z "${JACKPOT_GPU_SITE:-}" ]; then  # once per device call, also when one check calls another
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PWD/src:/tmp/site"
  else
    export PYTHONPATH="$PWD/src"
  fi
  export JACKPOT_GPU_SITE=1
fi
step() { local limit=$1; shift; echo "=== [$(date +%T)] $* (limit ${limit}s)" | tee -a "$LOG";
         timeout "$limit" "$@" 2>&1 | grep --line-buffered -v -e "^  triton_" -e AUTOTUNE -e "^strides:" -e "^dtypes:" \
           -e "Autotune Choices" -e '"best_kernel"' -e "^  convolution " | tee -a "$LOG"
         echo "=== exit ${PIPESTATUS[0]}" | tee -a "$LOG"; }
