"""Entry point: `python train.py pruner=grasp ratio=0.98`, or `python train.py -m sweep=random_tickets`."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from jackpot.errors import USER_ERRORS, format_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from jackpot.report import print_results
    from jackpot.train import run

    try:
        results = run(cfg)
    except USER_ERRORS as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(format_user_error(err), file=sys.stderr)
        sys.exit(2)
    print_results(results)
    return results.get("final_acc")


if __name__ == "__main__":
    main()
