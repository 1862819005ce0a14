"""A sanity battery's two additions to a grid sweep (multirun_sweeps/sanity_battery.yaml).

Baselines (`hydra.sweeper.baselines`): override sets added to every grid job, whatever `pruner=` the user
gives, so that a method is always run next to what the paper compares it with (random tickets at its ratios
and seeds, the dense network once per seed). Dropped jobs (`hydra.sweeper.drop_inapplicable`): a battery lists
every check and lets the method's declaration decide which apply, so a job whose check the declaration rules
out is left out with a line saying why, instead of refusing the sweep as any other invalid job does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from jackpot.config import ConfigError

Job = Sequence[str]


def parse_baselines(baselines) -> list[dict[str, str]]:
    """`hydra.sweeper.baselines` checked: a list of override lists (`key=value` each, no sweeps), as
    {key: value} in the form Hydra's basic sweeper writes a job's overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    example = "e.g. [[pruner=smart_ratio, sanity_check=none], [pruner=dense, sanity_check=none, ratio=0.0]]"
    if baselines is None:
        return []
    if isinstance(baselines, str) or not isinstance(baselines, Sequence) or any(
        isinstance(b, str) or not isinstance(b, Sequence) or not all(isinstance(o, str) for o in b) for b in baselines
    ):
        raise ConfigError(f"hydra.sweeper.baselines={baselines!r} is not allowed; give a list of override lists, "
                          f"{example}")
    parser = OverridesParser.create()
    parsed = []
    for baseline in baselines:
        try:
            overrides = parser.parse_overrides(list(baseline))
        except HydraException as err:
            raise ConfigError(f"hydra.sweeper.baselines: {list(baseline)} is not a list of overrides ({err})") from err
        if swept := [o.input_line for o in overrides if o.is_sweep_override()]:
            raise ConfigError(f"hydra.sweeper.baselines: {', '.join(swept)} sweeps; a baseline sets one value per "
                              f"key and is added to every grid job, {example}")
        parsed.append({o.get_key_element(): o.get_value_element_as_str() for o in overrides})
    return parsed


def with_baselines(jobs: Sequence[Job], baselines: Sequence[Mapping[str, str]]) -> list[list[str]]:
    """The grid's jobs, then for each baseline every grid job with the baseline's keys replaced, each distinct
    job once: a baseline job equal to a grid job (`pruner=smart_ratio`'s own battery) or to an earlier baseline
    job (the dense network at every ratio) is not added again.

    A job's overrides inside a group the baseline replaces go with it: `pruner.options.power=2` (or
    `+pruner.options.power=2`, `~pruner.options.offload`) set the method's options, not the random tickets'."""
    out = [list(job) for job in jobs]
    seen = {frozenset(job) for job in jobs}
    for baseline in baselines:
        for job in jobs:
            items = _replaced(job, baseline)
            if frozenset(items) not in seen:
                seen.add(frozenset(items))
                out.append(items)
    return out


def _replaced(job: Job, baseline: Mapping[str, str]) -> list[str]:
    """`job` with the baseline's values in place of its own, its overrides inside a replaced group dropped, and
    the baseline's other keys appended."""
    items = []
    for item in job:
        key = item.split("=", 1)[0]
        bare = key.lstrip("+~")
        if any(bare.startswith(f"{group}.") for group in baseline):
            continue  # inside a group the baseline replaces
        if bare in baseline:
            if key == bare:
                items.append(f"{key}={baseline[key]}")
            continue  # `+key=` / `~key`: replaced below by the baseline's plain value
        items.append(item)
    present = {item.split("=", 1)[0] for item in items}
    return items + [f"{key}={value}" for key, value in baseline.items() if key not in present]


def dropped_lines(dropped: Mapping[tuple[str, ...], str]) -> list[str]:
    """One line per reason (each names the check and the method) with how many jobs it dropped."""
    counts = Counter(dropped.values())
    return [f"jackpot: dropped {n} job{'s' * (n > 1)} (hydra.sweeper.drop_inapplicable): {reason}"
            for reason, n in counts.items()]
