"""The OmegaConf resolvers jackpot's configs use, registered on import: train.py imports this module before Hydra
composes a config (Hydra resolves the output dir, `${pruner.name}` in it, before the job's code runs), and
jackpot.config imports it for everything else that composes one: the sweeper, tests, and the Ray and SLURM
workers, where unpickling train.py's task function imports jackpot.config (its ConfigError) before Hydra names
the job's folder (tests/test_launcher_requests.py)."""

from __future__ import annotations

from omegaconf import OmegaConf


def milestones_at(epochs: int, *fractions: float) -> list[int]:
    """The LR decay epochs at these fractions of the schedule: 80/120 of 160 and 4/6 of 8 for (0.5, 0.75), so a
    shorter run (`schedule.epochs=2`) needs no second override. Each is rounded and kept in [1, epochs - 1];
    ones that coincide there are kept once (epochs=2: [1]; epochs <= 1: none)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        return []
    return sorted({min(max(round(f * epochs), 1), epochs - 1) for f in fractions})


def method_name(method: object) -> str:
    """`gradient_magnitude` for `pruner.method=mylab.pruning.gradient_magnitude`: the name `pruner=custom` runs
    under (output dirs, results.json, wandb, jackpot-tables) unless `pruner.name` sets one. Without a method it
    is `custom`, so that Hydra can name the run's folder and config validation refuses the run in one line."""
    if not isinstance(method, str) or not method.strip():
        return "custom"
    return method.strip().rsplit(".", 1)[-1]


# `schedule.milestones: ${milestones_at:${schedule.epochs},0.5,0.75}`: resolved at access, so the stored config
# (and the run identity) holds the epochs, e.g. [80, 120], as before this resolver existed.
OmegaConf.register_new_resolver("milestones_at", milestones_at, replace=True)
# `name: ${method_name:${pruner.method}}` in conf/pruner/custom.yaml
OmegaConf.register_new_resolver("method_name", method_name, replace=True)
