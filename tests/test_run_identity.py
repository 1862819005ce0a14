"""A run's identity: which config keys make two runs the same run, and how a difference is reported."""

from __future__ import annotations

import json

from conftest import compose_cfg

from jackpot.runs.identity import EXCLUDED, describe_differences, differences, identity_hash, run_identity


def test_speed_and_location_keys_are_left_out_and_everything_else_counts(tmp_path):
    cfg = compose_cfg(tmp_path, ["pruner=snip"])
    identity = run_identity(cfg)
    assert "paths" not in identity and "logger" not in identity and "name" not in identity
    assert "root" not in identity["dataset"] and "eval_batch_size" not in identity["dataset"]
    assert "steps_per_call" not in identity["trainer"] and "offload" not in identity["pruner"]["options"]
    assert identity["schedule"]["milestones"] == [80, 120] and identity["ratio"] == 0.9
    # every excluded key names a key that exists, so a renamed key cannot silently fall back into the identity
    flat = {"hydra"} | {f"{group}.{key}" for group in ("dataset", "trainer") for key in cfg[group]}
    flat |= set(cfg) | {f"pruner.options.{key}" for key in cfg.pruner.options}
    assert EXCLUDED - flat == {"published", "table"}  # only sweep files set these (jackpot-tables reads them)
    partially = compose_cfg(tmp_path, ["pruner=snip", "sweep=partially_trained"])
    assert "table" in partially and "published" in partially
    assert run_identity(partially) == identity


def test_stored_config_has_the_identity_of_the_composed_one(tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_cfg(tmp_path, ["model=vgg19", "pruner=grasp", "ratio=0.98"])
    stored = json.loads(json.dumps(OmegaConf.to_container(cfg, resolve=True)))
    assert run_identity(stored) == run_identity(cfg)
    assert identity_hash(run_identity(stored)) == identity_hash(run_identity(cfg))
    other = compose_cfg(tmp_path, ["model=vgg19", "pruner=grasp", "ratio=0.95"])
    assert identity_hash(run_identity(other)) != identity_hash(run_identity(cfg))


def test_differences_name_each_dotted_key_with_both_values():
    old = {"schedule": {"lr": 0.1, "milestones": [80, 120]}, "seed": 0, "gone": "x"}
    new = {"schedule": {"lr": 0.05, "milestones": [80, 120]}, "seed": 0, "added": {"k": None}}
    assert differences(old, new) == ['added.k: (unset) -> null', 'gone: "x" -> (unset)', "schedule.lr: 0.1 -> 0.05"]
    many_old, many_new = {f"k{i}": i for i in range(7)}, {f"k{i}": -i - 1 for i in range(7)}
    assert describe_differences(many_old, many_new).endswith("k4: 4 -> -5 (and 2 more)")
