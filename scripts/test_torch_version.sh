#!/usr/bin/env bash
# The test suite under another torch release, leaving .venv as it is: e.g. the GPU image's (torch 2.11.0 with
# torchvision 0.26.0) before spending device time on it. From the repo root, after `make venv`:
#   bash scripts/test_torch_version.sh 2.11.0 0.26.0 [pytest arguments]
# It makes /tmp/jackpot-torch-VERSION with only torch and torchvision installed; everything else (Lightning,
# Hydra, jackpot itself) comes from .venv. A torch built for another CUDA major version than .venv's (cu13
# here), e.g. the pyproject floor 2.4.1 (cu12), cannot use .venv's CUDA libraries: its own are then installed
# into the side venv too (~3 GB from PyPI). The CUDA-only tests skip on a machine without a GPU.
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 TORCH_VERSION TORCHVISION_VERSION [pytest args]" >&2; exit 2; fi
torch_version=$1 vision_version=$2; shift 2
env_dir=/tmp/jackpot-torch-$torch_version
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
if [ ! -x "$env_dir/bin/python" ]; then
  .venv/bin/python -m venv "$env_dir"
  "$env_dir/bin/pip" install -q --no-deps "torch==$torch_version" "torchvision==$vision_version"
  # processed after the env's own packages, so its torch wins and .venv supplies the rest (and its .pth files)
  echo "import site; site.addsitedir('$(site_of .venv/bin/python)')" > "$(site_of "$env_dir/bin/python")/zz_jackpot.pth"
  if ! "$env_dir/bin/python" -c "import torch" 2>/dev/null; then  # built for other CUDA libraries than .venv's
    "$env_dir/bin/pip" install -q "torch==$torch_version" "torchvision==$vision_version"
  fi
fi
"$env_dir/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
WANDB_MODE=disabled "$env_dir/bin/python" -m pytest -q -p no:cacheprovider -m '' "$@"
