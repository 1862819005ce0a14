"""A method written outside jackpot (examples/mylab, reached through PYTHONPATH, nothing installed) runs from
Python and from the command line exactly like a built-in: validated, checked, cached and tabulated."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, TINY, train_py

from jackpot.models import build_model
from jackpot.pruning import get_method, make_masks, prunable_weights

EXAMPLES = REPO / "examples"
PATH = "mylab.pruning.gradient_magnitude"


@pytest.fixture
def examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    sys.modules.pop("mylab.pruning", None)
    sys.modules.pop("mylab", None)


def _batch(n: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 10


def test_import_path_works_without_importing_first_and_matches_a_hand_computation(examples_on_path):
    assert "mylab.pruning" not in sys.modules
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=10)
    x, y = _batch()
    masks = make_masks(model, PATH, 0.9, (x, y), power=2.0)
    total = sum(w.numel() for _, w in prunable_weights(model))
    assert masks.kept() == int(total * (1 - 0.9))  # exactly the global budget
    # by hand: |dL/dw| on a train-mode copy, the int(N/10) largest kept (power is monotone: same mask)
    net = build_model("resnet8", num_classes=10)
    net.load_state_dict(model.state_dict())
    weights = [w for _, w in prunable_weights(net.train())]
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), weights)
    kept = torch.cat([g.abs()[masks[name]] for (name, _), g in zip(prunable_weights(model), grads, strict=True)])
    dropped = torch.cat([g.abs()[~masks[name]] for (name, _), g in zip(prunable_weights(model), grads, strict=True)])
    assert kept.min() >= dropped.max()  # the largest |dL/dw| over all layers, whatever the tie-breaking
    # registered under its function name once imported, with its declaration
    spec = get_method("gradient_magnitude")
    assert spec is get_method(PATH) and spec.when == "init" and spec.needs_batches and spec.options == ("power",)


def test_bad_option_values_and_paths_are_named(examples_on_path):
    model = build_model("resnet8", num_classes=10)
    with pytest.raises(ValueError, match=r"power=0 .*must be a number > 0"):
        make_masks(model, PATH, 0.9, _batch(), power=0)
    with pytest.raises(ValueError, match=r"cannot import module 'nolab.pruning'.*PYTHONPATH"):
        get_method("nolab.pruning.anything")
    with pytest.raises(ValueError, match=r"mylab.pruning.copy is not a registered pruning method"):
        get_method("mylab.pruning.copy")


def _cli(tmp_path, *args: str, pythonpath: bool = True, multirun: bool = False):
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])} if pythonpath else {}
    return train_py([*(["-m"] if multirun else []), "--config-dir", str(EXAMPLES / "conf"),
                     "pruner=gradient_magnitude", "dataset=digits", *TINY, f"paths.root_dir={tmp_path}", *args],
                    cwd=tmp_path, env=env, timeout=600)


def test_outside_method_runs_from_the_command_line_with_a_check_and_a_sweep(tmp_path):
    proc = _cli(tmp_path, "ratio=0.8", "sanity_check=none,random_labels", "seed=0", multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(tmp_path.rglob("results.json"))
    assert len(results) == 2
    for path in results:
        data = json.loads(path.read_text())
        assert data["status"] == "complete" and data["cell"]["pruner"] == "gradient_magnitude"
        assert data["config"]["pruner"]["method"] == PATH
        assert data["kept"] == int(data["total"] * (1 - 0.8))
        assert path.parent.name.startswith("gradient_magnitude-")


def test_pruner_custom_runs_a_method_by_import_path_with_no_config_file(tmp_path):
    """`pruner=custom pruner.method=<path>`: no YAML of one's own, named after the function, options by `+`."""
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}
    common = ["dataset=digits", *TINY, f"paths.root_dir={tmp_path}", "ratio=0.8"]
    proc = train_py(["pruner=custom", f"pruner.method={PATH}", "+pruner.options.power=2", *common], cwd=tmp_path,
                    env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.rglob("results.json")
    data = json.loads(path.read_text())
    assert data["cell"]["pruner"] == "gradient_magnitude" and path.parent.name.startswith("gradient_magnitude-")
    assert data["config"]["pruner"]["method"] == PATH and data["config"]["pruner"]["options"] == {"power": 2}
    assert data["kept"] == int(data["total"] * (1 - 0.8))
    # without a method: one line naming what to set, exit 2, and no run folder left behind
    proc = train_py(["pruner=custom", *common, f"paths.root_dir={tmp_path / 'none'}"], cwd=tmp_path, env=env,
                    timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("jackpot: config error: pruner.method is not set: pruner=custom needs pruner.method=<import path of "
            "your method>") in proc.stderr
    assert not list((tmp_path / "none").rglob("*.log"))


def test_a_bad_import_path_is_one_line_and_exit_2(tmp_path):
    proc = _cli(tmp_path, "pruner.method=mylab.pruning.no_such_method")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "jackpot: config error: pruner.method='mylab.pruning.no_such_method'" in proc.stderr
    proc = _cli(tmp_path, pythonpath=False)
    assert proc.returncode == 2 and "cannot import module 'mylab.pruning'" in proc.stderr
    assert "PYTHONPATH" in proc.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.log"))
