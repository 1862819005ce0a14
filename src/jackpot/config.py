"""Validation of a composed config, before any data is loaded or anything is trained.

Each error is one line naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from jackpot.resolvers import milestones_at  # noqa: F401  (registers the resolvers; re-exported)

if TYPE_CHECKING:
    from jackpot.pruning.registry import MethodSpec

DATA_CHECKS = ("random_labels", "random_pixels", "random_pixels_labels", "half_dataset")
PIXEL_SCRAMBLES = ("per_seed", "fixed")
MASK_CHECKS = ("layerwise_rearrange",)
WEIGHT_CHECKS = ("layerwise_shuffle", "reinit")
LOADERS = ("auto", "torch", "device")
LOGGERS = ("none", "csv", "wandb")
TICKET_WEIGHTS = ("init", "trained")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16", "16-true", "64-true", "64")
CHECKPOINT_WRITES = ("auto", "inline", "background")
ACCELERATORS = ("auto", "cpu", "gpu")
CHANNELS_LAST = ("auto", True, False)
SCALED_PRECISIONS = ("16-mixed", "16")  # float16 autocast: Lightning adds a gradient scaler


class ConfigError(ValueError):
    """A user-facing configuration mistake."""


class InapplicableCheck(ConfigError):
    """A sanity check the method's declaration rules out: a battery of checks drops such a job, while any other
    ConfigError still refuses the whole sweep."""


def join_limited(items: Sequence[str], limit: int = 5) -> str:
    """`a; b; c (and N more)`: at most `limit` items, so a one-line error stays one readable line."""
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def uses_gpu(cfg: DictConfig) -> bool:
    """The run (its training and its scoring) uses a GPU: trainer.accelerator=gpu, or auto with CUDA present."""
    accelerator = cfg.trainer.accelerator
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return accelerator == "gpu"


def _int_at_least(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} must be an integer >= {low}")
    return value


def _seconds_at_least_zero(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{key}={value!r} must be a number of seconds >= 0 (0: every epoch, inf: only a stage's "
                          "last)")
    return float(value)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first invalid value; cheap, touches no data."""
    from jackpot.data import DATASET_NAMES
    from jackpot.models import MODEL_NAMES
    from jackpot.pruning.registry import MethodError, get_method

    _choice("model", cfg.model.name, MODEL_NAMES)
    _choice("dataset", cfg.dataset.name, DATASET_NAMES)
    if cfg.pruner.get("method") is None:
        raise ConfigError(f"pruner.method is not set: pruner={cfg.pruner.name} needs pruner.method=<import path of "
                          f"your method>, e.g. pruner.method=mylab.pruning.gradient_magnitude")
    try:
        spec = get_method(cfg.pruner.method)
    except MethodError as err:
        raise ConfigError(f"pruner.method={cfg.pruner.method!r}: {err}") from err
    if cfg.pruner.get("ticket_weights") is not None:
        _choice("pruner.ticket_weights", cfg.pruner.ticket_weights, TICKET_WEIGHTS)
    _choice("dataset.loader", cfg.dataset.loader, LOADERS)
    _choice("logger", cfg.logger.kind, LOGGERS)

    ratio = cfg.ratio
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"ratio={ratio!r} must be a number in [0, 1): the fraction of prunable weights removed")
    _int_at_least("seed", cfg.seed, 0)

    options = dict(cfg.pruner.get("options") or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ConfigError(f"pruner.options.{unknown[0]} is not an option of pruner {spec.name}; allowed: {allowed}")
    for key, value in options.items():
        problem = spec.option_problem(key, value)
        if problem:
            raise ConfigError(f"pruner.options.{key}={value!r} {problem} (pruner={spec.name})")
    if spec.ratio_check is not None:
        problem = spec.ratio_check(network_shapes(cfg.model.name, cfg.dataset.name), float(ratio),
                                   {**spec.defaults, **options})
        if problem:
            raise ConfigError(f"ratio={ratio} with pruner={spec.name}, model={cfg.model.name}, "
                              f"dataset={cfg.dataset.name}: {problem}")
    if options.get("offload") == "disk" and uses_gpu(cfg):
        raise ConfigError(
            "pruner.options.offload=disk parks scoring activations in CPU files, but this run scores on the "
            "GPU; use auto (in GPU memory there) or none"
        )
    _choice("trainer.accelerator", cfg.trainer.accelerator, ACCELERATORS)
    if cfg.trainer.devices != 1:
        raise ConfigError(
            f"trainer.devices={cfg.trainer.devices!r}: a run trains on one device; spread the runs of a sweep over "
            "GPUs with a launcher instead (hydra/launcher=ray_local, ray_cluster or slurm)"
        )
    _choice("trainer.channels_last", cfg.trainer.channels_last, CHANNELS_LAST)
    _int_at_least("trainer.checkpoint_every_n_epochs", cfg.trainer.checkpoint_every_n_epochs, 1)
    _seconds_at_least_zero("trainer.checkpoint_interval_s", cfg.trainer.checkpoint_interval_s)
    _int_at_least("trainer.steps_per_call", cfg.trainer.get("steps_per_call", 1), 1)
    graph = cfg.trainer.get("cuda_graph", "auto")
    if not (graph == "auto" or isinstance(graph, bool)):
        raise ConfigError(f"trainer.cuda_graph={graph!r} is not allowed; choose one of: auto, true, false")
    if graph is True and not uses_gpu(cfg):
        hint = ("; launching GPU jobs from a machine without one (a login node)? set trainer.accelerator=gpu"
                if cfg.trainer.accelerator == "auto" else "")
        raise ConfigError(
            "trainer.cuda_graph=true records each training step as a CUDA graph, but this run trains on the CPU "
            f"(trainer.accelerator={cfg.trainer.accelerator}); use trainer.cuda_graph=auto (records on a GPU only) "
            f"or false{hint}"
        )
    _choice("trainer.checkpoint_writes", cfg.trainer.get("checkpoint_writes", "auto"), CHECKPOINT_WRITES)
    precision = str(cfg.trainer.precision)
    _choice("trainer.precision", precision, PRECISIONS)
    steps = cfg.trainer.get("steps_per_call", 1)
    blocking = [f"trainer.steps_per_call={steps}"] * (steps > 1) + ["trainer.cuda_graph=true"] * (graph is True)
    if precision in SCALED_PRECISIONS and blocking:
        raise ConfigError(
            f"trainer.precision={precision} trains with a gradient scaler, which {' and '.join(blocking)} cannot "
            "run; use bf16-mixed (the GPU default), or trainer.steps_per_call=1 with trainer.cuda_graph=auto"
        )
    _validate_schedule(cfg, spec)
    _validate_dataset(cfg)
    _validate_checks(cfg, spec)


@cache
def network_shapes(model: str, dataset: str):
    """The network `model` for `dataset`'s classes on the meta device: its layers' shapes without allocating or
    initialising a weight (and without drawing from any generator), for checks that need sizes only. Once per
    (model, dataset) in a process: a sweep validates every job."""
    import torch

    from jackpot.data.catalog import NUM_CLASSES
    from jackpot.models import build_model

    with torch.device("meta"):
        return build_model(model, NUM_CLASSES[dataset])


def _validate_schedule(cfg: DictConfig, spec: MethodSpec) -> None:
    s = cfg.schedule
    epochs = _int_at_least("schedule.epochs", s.epochs, 0)
    for key in ("lr", "momentum", "weight_decay", "gamma"):
        value = s[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"schedule.{key}={value!r} must be a non-negative number")
    if s.momentum >= 1:
        raise ConfigError(f"schedule.momentum={s.momentum!r} must be in [0, 1) (the paper's is 0.9)")
    if not isinstance(s.milestones, Sequence) or isinstance(s.milestones, str):
        raise ConfigError(f"schedule.milestones={s.milestones!r} must be a list of epochs, e.g. [80,120] ([] for none)")
    milestones = list(s.milestones)
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) or any(
        later <= earlier for earlier, later in pairwise(milestones)
    ):
        raise ConfigError(f"schedule.milestones={milestones} must be strictly increasing positive integers (epochs)")
    if epochs > 0 and milestones and milestones[-1] >= epochs:
        raise ConfigError(
            f"schedule.milestones={milestones} must lie before schedule.epochs={epochs}; "
            f"drop the override to scale the paper's 1/2 and 3/4 with the epochs, or give "
            f"schedule.milestones=[{','.join(map(str, milestones_at(epochs, 0.5, 0.75)))}]"
        )
    pretrain = cfg.pruner.get("pretrain_epochs")
    if pretrain is not None:
        _int_at_least("pruner.pretrain_epochs", pretrain, 1)
    rounds = cfg.pruner.get("rounds", 1)
    _int_at_least("pruner.rounds", rounds, 1)
    if rounds > 1 and not spec.iterative:
        from jackpot.pruning.registry import METHODS

        iterative = ", ".join(sorted(name for name, m in METHODS.items() if m.iterative))
        raise ConfigError(
            f"pruner.rounds={rounds}: pruner {spec.name} is not declared iterative; iterative pruning applies to "
            f"{iterative}"
        )


def _validate_dataset(cfg: DictConfig) -> None:
    d = cfg.dataset
    _int_at_least("dataset.batch_size", d.batch_size, 1)
    _int_at_least("dataset.eval_batch_size", d.eval_batch_size, 1)
    _int_at_least("dataset.num_workers", d.num_workers, 0)
    _int_at_least("dataset.samples_per_class", d.samples_per_class, 1)
    for key in ("train_subset", "test_subset"):
        if d[key] is not None:
            _int_at_least(f"dataset.{key}", d[key], 1)
    if d.name != "digits" and not d.download and not Path(d.root).is_dir():
        raise ConfigError(
            f"dataset.root={d.root!r} does not exist and dataset.download=false; "
            f"point dataset.root at the folder holding the {d.name} files or set dataset.download=true"
        )


def _validate_checks(cfg: DictConfig, spec: MethodSpec) -> None:
    """The checks that cannot apply to this method, from its declaration (`jackpot.pruning.method`)."""
    check = cfg.sanity_check
    method = spec.name
    ticket_weights = ticket_weights_of(cfg, spec)
    name = check.name
    if check.data is not None:
        _choice("sanity_check.data", check.data, DATA_CHECKS)
    if check.get("pixel_scramble") is not None:
        _choice("sanity_check.pixel_scramble", check.pixel_scramble, PIXEL_SCRAMBLES)
    if check.mask is not None:
        _choice("sanity_check.mask", check.mask, MASK_CHECKS)
    if check.weights is not None:
        _choice("sanity_check.weights", check.weights, WEIGHT_CHECKS)

    if spec.when == "init" and ticket_weights == "trained":
        raise ConfigError(
            f"pruner.ticket_weights=trained: pruner={method} prunes at init, so there are no trained weights to "
            f"start the ticket from; use ticket_weights=init, or a method made after training (lottery, "
            f"lr_rewinding, obd, hybrid)"
        )
    if not spec.prunes and name != "none":
        raise InapplicableCheck(f"sanity_check={name} needs a pruned ticket; pruner={method} has no mask to check")
    if check.data is not None and spec.when == "init":
        if check.data == "half_dataset":
            raise InapplicableCheck(
                f"sanity_check=half_dataset applies to tickets made after training (the dense run trains on half "
                f"the data); pruner={method} prunes at init: use random_labels or random_pixels"
            )
        if not spec.needs_batches:
            raise InapplicableCheck(
                f"sanity_check={name} corrupts the data the mask is made from, but pruner={method} uses no data; "
                f"it applies to snip, grasp and the methods made after training"
            )
    if name in spec.inapplicable:
        raise InapplicableCheck(f"sanity_check={name} does not apply to pruner={method} (its declaration says so)")
    if check.mask == "layerwise_rearrange" and spec.random_positions:
        raise InapplicableCheck(
            f"sanity_check=layerwise_rearrange would not change pruner={method}: its positions are already random"
        )
    if check.weights == "layerwise_shuffle" and spec.when == "init" and ticket_weights == "init" and (
        spec.random_positions
    ):
        raise InapplicableCheck(
            f"sanity_check=layerwise_shuffle on pruner={method} only reshuffles random init values at random "
            f"positions; it applies to tickets that start from meaningful weights"
        )


def pruner_options(cfg: DictConfig) -> dict:
    """The pruner config's options as a plain dict ({} when its YAML has none, as an outside method's may)."""
    options = cfg.pruner.get("options")
    return {} if options is None else OmegaConf.to_container(options, resolve=True)


def ticket_weights_of(cfg: DictConfig, spec: MethodSpec) -> str:
    """The pruner config's ticket_weights, else the method's declared default."""
    value = cfg.pruner.get("ticket_weights")
    return spec.ticket_weights if value is None else str(value)
