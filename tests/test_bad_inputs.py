"""Bad input gets one clear error naming the key, the bad value and what is allowed, before any work."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TINY, compose_cfg, train_py

from jackpot.config import ConfigError, milestones_at, validate
from jackpot.data import DatasetError
from jackpot.pruning import method
from jackpot.train import run

CONFIG_CASES = [
    (["model.name=vgg20"], "model='vgg20' is not allowed; choose one of: vgg19"),
    (["dataset.name=cifar1000"], "dataset='cifar1000'"),
    (["pruner.method=snap"], "pruner.method='snap'"),
    (["pruner.ticket_weights=final"], "pruner.ticket_weights='final'"),
    (["ratio=1.0"], "ratio=1.0 must be a number in [0, 1)"),
    (["ratio=-0.1"], "ratio=-0.1"),
    (["ratio=ninety"], "ratio='ninety'"),
    (["seed=-1"], "seed=-1 must be an integer >= 0"),
    (["schedule.epochs=-5"], "schedule.epochs=-5"),
    (["schedule.epochs=10", "schedule.milestones=[80,120]"], "must lie before schedule.epochs=10"),
    (["schedule.milestones=[6,4]"], "schedule.milestones=[6, 4] must be strictly increasing"),
    (["schedule.epochs=10", "schedule.milestones=[5,5]"], "schedule.milestones=[5, 5] must be strictly increasing"),
    (["schedule.milestones=null"], "schedule.milestones=None must be a list of epochs"),
    (["schedule.momentum=5"], "schedule.momentum=5 must be in [0, 1)"),
    (["trainer.accelerator=cuda"], "trainer.accelerator='cuda' is not allowed; choose one of: auto, cpu, gpu"),
    (["trainer.devices=2"], "trainer.devices=2: a run trains on one device"),
    (["trainer.channels_last=yes"], "trainer.channels_last='yes' is not allowed; choose one of: auto, True, False"),
    (["trainer.checkpoint_every_n_epochs=0"], "trainer.checkpoint_every_n_epochs=0 must be an integer >= 1"),
    (["trainer.checkpoint_interval_s=-1"], "trainer.checkpoint_interval_s=-1 must be a number of seconds >= 0"),
    (["trainer.checkpoint_interval_s=soon"], "trainer.checkpoint_interval_s='soon' must be a number of seconds"),
    (["pruner=obd", "pruner.options.estimator=hessian"],
     "pruner.options.estimator='hessian' is not allowed; choose one of: fisher, hutchinson"),
    (["pruner=obd", "pruner.options.probes=0"], "pruner.options.probes=0 must be an integer >= 1"),
    (["pruner=smart_ratio", "pruner.options.linear_keep_ratio=1.5"],
     "pruner.options.linear_keep_ratio=1.5 must be a number in (0, 1]"),
    (["pruner=grasp", "pruner.options.temperature=-5"], "pruner.options.temperature=-5 must be a number > 0"),
    (["pruner=smart_ratio", "pruner.options.vgg_depth_factor=auto"],
     "pruner.options.vgg_depth_factor='auto' is not allowed; choose true, false or null (auto)"),
    (["schedule.lr=-0.1"], "schedule.lr=-0.1"),
    (["dataset.batch_size=0"], "dataset.batch_size=0"),
    (["dataset.loader=gpu"], "dataset.loader='gpu' is not allowed; choose one of: auto, torch, device"),
    (["dataset.samples_per_class=0"], "dataset.samples_per_class=0"),
    (["logger.kind=tensorboard"], "logger='tensorboard'"),
    (["pruner=smart_ratio", "sanity_check=random_labels"], "pruner=smart_ratio uses no data"),
    (["pruner=snip", "sanity_check=half_dataset"], "pruner=snip prunes at init"),
    (["pruner=dense", "sanity_check=reinit"], "pruner=dense has no mask"),
    (["pruner=random", "sanity_check=layerwise_rearrange"], "already random"),
    (["pruner=snip", "sanity_check=random_pixels", "sanity_check.pixel_scramble=shared"],
     "sanity_check.pixel_scramble='shared' is not allowed; choose one of: per_seed, fixed"),
    (["pruner=snip", "pruner.ticket_weights=trained"], "pruner=snip prunes at init, so there are no trained weights"),
    (["pruner=obd", "pruner.rounds=2"],
     "pruner.rounds=2: pruner obd is not declared iterative; iterative pruning applies to lottery"),
    (["pruner=lottery", "pruner.rounds=0"], "pruner.rounds=0"),
    (["pruner=lottery", "pruner.pretrain_epochs=0"], "pruner.pretrain_epochs=0"),
    (["pruner=grasp", "+pruner.options.temprature=100"], "pruner.options.temprature is not an option"),
    (["trainer.steps_per_call=0"], "trainer.steps_per_call=0 must be an integer >= 1"),
    (["trainer.cuda_graph=always"], "trainer.cuda_graph='always' is not allowed; choose one of: auto, true, false"),
    (["trainer.checkpoint_writes=async"],
     "trainer.checkpoint_writes='async' is not allowed; choose one of: auto, inline, background"),
    (["trainer.precision=fp16"], "trainer.precision='fp16' is not allowed; choose one of: auto, 32-true"),
    (["trainer.precision=16-mixed"],
     "trainer.precision=16-mixed trains with a gradient scaler, which trainer.steps_per_call=8 cannot run"),
    (["trainer.cuda_graph=true", "trainer.accelerator=cpu"],
     "trainer.cuda_graph=true records each training step as a CUDA graph, but this run trains on the CPU"),
    (["pruner=snip", "pruner.options.offload=disk", "trainer.accelerator=gpu"],
     "pruner.options.offload=disk parks scoring activations in CPU files"),
    (["pruner=grasp", "pruner.options.offload=ram"],
     "pruner.options.offload='ram' is not allowed; choose one of: auto, disk, none"),
    (["sanity_check.data=random_lables"], "sanity_check.data='random_lables'"),
    # ResNet-8's classifier keeps 192 of its 640 weights; 0.998 keeps 154 of all 77,360 (refused before the dense
    # trunk that hybrid tickets prune from is trained)
    (["pruner=smart_ratio", "ratio=0.998"],
     "ratio=0.998 with pruner=smart_ratio, model=resnet8, dataset=cifar10: smart ratio cannot remove 0.998 of these "
     "weights: the classifier alone keeps 192 (0.3 of its 640), and ratio 0.998 keeps 154 of all 77360"),
    (["pruner=hybrid", "ratio=0.998"], "allowed here: a ratio of at most 0.9975, or a smaller linear_keep_ratio"),
    (["dataset.root={tmp}/no-cifar-here", "dataset.download=false"], "dataset.root='{tmp}/no-cifar-here'"),
]


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "[]().*+?{}|^$" else c for c in text)


@pytest.mark.parametrize(("overrides", "message"), CONFIG_CASES, ids=[" ".join(o) for o, _ in CONFIG_CASES])
def test_bad_config_values(tmp_path, cifar_root, overrides, message):
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]  # a path only this test could create
    message = message.replace("{tmp}", str(tmp_path))
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", *overrides])
    with pytest.raises(ConfigError, match=_escape(message)):
        run(cfg)
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained


# A refused config whose error suggests overrides: applying exactly the suggested text must then pass validation.
FIX_CASES = [
    (["schedule.epochs=10", "schedule.milestones=[80,120]"], "schedule.milestones"),
    (["schedule.epochs=2", "schedule.milestones=[1,1]"], None),  # repeated: no suggestion, dropping it is the fix
    (["schedule.epochs=1", "schedule.milestones=[1]"], "schedule.milestones"),
    (["schedule.epochs=3", "schedule.milestones=[3]"], "schedule.milestones"),
    (["trainer.cuda_graph=true"], "trainer.cuda_graph"),
    (["pruner=snip", "pruner.ticket_weights=trained"], "ticket_weights"),
]


@pytest.mark.parametrize(("overrides", "key"), FIX_CASES, ids=[" ".join(o) for o, _ in FIX_CASES])
def test_each_suggested_fix_passes_validation(tmp_path, cifar_root, overrides, key):
    base = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false"]
    with pytest.raises(ConfigError) as refused:
        validate(compose_cfg(tmp_path, [*base, *overrides]))
    if key is None:
        fixed = [o for o in overrides if not o.startswith("schedule.milestones=")]
    else:
        suggested = re.findall(rf"(?<![\w.])((?:pruner\.)?{re.escape(key)}=\S+?)(?=[;,]?\s|$|\))", str(refused.value))
        assert suggested, f"no {key}=... suggested in: {refused.value}"
        fix = suggested[-1] if key != "ticket_weights" else "pruner." + suggested[-1].removeprefix("pruner.")
        fixed = [*overrides, fix]
    validate(compose_cfg(tmp_path, [*base, *fixed]))


def test_the_largest_smart_ratio_named_passes_validation(tmp_path, cifar_root):
    base = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "pruner=smart_ratio"]
    with pytest.raises(ConfigError, match="at most") as refused:
        validate(compose_cfg(tmp_path, [*base, "ratio=0.999"]))
    largest = re.search(r"a ratio of at most ([0-9.]+),", str(refused.value)).group(1)
    validate(compose_cfg(tmp_path, [*base, f"ratio={largest}"]))


def test_a_methods_own_ratio_check_refuses_before_anything_runs(tmp_path, cifar_root):
    """A researcher's method declares what ratios it can reach; it sees the network's shapes, not its values."""
    seen = []

    def keeps_half_of_each_layer(model, ratio, options):
        seen.append(({p.device.type for p in model.parameters()}, ratio, dict(options)))
        return None if ratio <= 0.5 else "this method keeps at least half of each layer; allowed: ratio <= 0.5"

    @method("init", needs_batches=False, ratio_check=keeps_half_of_each_layer, name="test_half_keeper")
    def half_keeper(model, ratio, batches, floor: float = 0.5):
        raise AssertionError("never built: the ratio is refused first")

    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "pruner=dense", "pruner.method=test_half_keeper", "ratio=0.8"])
    with pytest.raises(ConfigError, match="ratio=0.8 with pruner=test_half_keeper, model=resnet8, dataset=cifar10: "
                                          "this method keeps at least half"):
        run(cfg)
    assert seen == [({"meta"}, 0.8, {"floor": 0.5})]  # the defaults filled in
    assert not (tmp_path / "run").exists()


def test_a_short_schedule_is_one_override(tmp_path, cifar_root):
    """The paper's decays at 1/2 and 3/4 of the epochs scale with schedule.epochs, 80/120 of 160 as before."""
    base = [*(o for o in TINY if not o.startswith("schedule")), f"dataset.root={cifar_root}",
            "dataset.verify_md5=false"]
    for epochs, expected in [(160, [80, 120]), (8, [4, 6]), (4, [2, 3]), (2, [1]), (1, []), (0, [])]:
        cfg = compose_cfg(tmp_path, [*base, f"schedule.epochs={epochs}"])
        validate(cfg)
        assert list(cfg.schedule.milestones) == expected == milestones_at(epochs, 0.5, 0.75)


def _data_case(tmp_path: Path, cifar_root: Path, *overrides: str):
    return compose_cfg(tmp_path, [*TINY, *overrides])


def test_md5_mismatch_is_reported_for_generated_files(tmp_path, cifar_root):
    cfg = _data_case(tmp_path, cifar_root, f"dataset.root={cifar_root}", "dataset.verify_md5=true",
                     "dataset.download=false")
    with pytest.raises(DatasetError, match="corrupted or truncated"):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_truncated_file_is_named(tmp_path, cifar_root):
    root = tmp_path / "data"
    shutil.copytree(cifar_root / "cifar-10-batches-py", root / "cifar-10-batches-py")
    victim = root / "cifar-10-batches-py" / "data_batch_2"
    victim.write_bytes(victim.read_bytes()[:1000])
    cfg = _data_case(tmp_path, cifar_root, f"dataset.root={root}", "dataset.verify_md5=false",
                     "dataset.download=false")
    with pytest.raises(DatasetError, match="data_batch_2"):
        run(cfg)


def test_missing_files_without_network_name_the_root(tmp_path, cifar_root, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    monkeypatch.setattr(tv_utils, "download_url", offline)
    root = tmp_path / "empty"
    root.mkdir()
    cfg = _data_case(tmp_path, cifar_root, f"dataset.root={root}", "dataset.download=true")
    with pytest.raises(DatasetError, match="dataset.root"):
        run(cfg)
    assert list(root.iterdir()) == []  # no lock file left in the user's folder
    made = tmp_path / "new" / "cifar"  # a folder the failed download would have made: gone again
    cfg = _data_case(tmp_path, cifar_root, f"dataset.root={made}", "dataset.download=true")
    with pytest.raises(DatasetError, match="dataset.root"):
        run(cfg)
    assert not (tmp_path / "new").exists()


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return train_py(args, cwd=cwd, timeout=300)


def test_unknown_group_option_lists_the_choices(tmp_path):
    proc = _cli(["pruner=snap", f"paths.root_dir={tmp_path}"], tmp_path)
    assert proc.returncode == 1
    assert "Could not find 'pruner/snap'" in proc.stderr and "grasp" in proc.stderr


def test_refused_config_leaves_no_run_folder(tmp_path):
    """Hydra makes the run's folder (.hydra/, train.log) before jackpot sees the config; a refused config must
    not leave it, or jackpot-tables and later sweeps would see a run folder with no run. A finished run's
    neighbour folder stays."""
    neighbour = tmp_path / "outputs" / "default" / "keep-me"
    neighbour.mkdir(parents=True)
    proc = _cli(["dataset=digits", "schedule.momentum=1.5", f"paths.root_dir={tmp_path}"], tmp_path)
    assert proc.returncode == 2 and "schedule.momentum=1.5" in proc.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "outputs").rglob("*")) == [
        "outputs/default", "outputs/default/keep-me"]


def test_discard_unstarted_keeps_a_folder_with_work(tmp_path):
    from jackpot.runs.output_dir import discard_unstarted

    run_dir = tmp_path / "logs" / "name" / "cell"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "train.log").write_text("")
    (run_dir / "results.json").write_text("{}")
    assert not discard_unstarted(run_dir, tmp_path / "logs") and (run_dir / "results.json").exists()
    (run_dir / "results.json").unlink()
    assert discard_unstarted(run_dir, tmp_path / "logs")
    assert (tmp_path / "logs").is_dir() and not (tmp_path / "logs" / "name").exists()


def test_sweep_with_an_invalid_job_runs_nothing(tmp_path):
    proc = _cli(["-m", "pruner=snip,smart_ratio", "sanity_check=random_labels", "dataset=digits",
                 f"paths.root_dir={tmp_path}"], tmp_path)
    assert proc.returncode == 2
    assert "1 of 2 sweep jobs are invalid, nothing was run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("results.json")) and not list(tmp_path.rglob("run_config.json"))


def test_sweep_whose_jobs_share_an_output_dir_runs_nothing(tmp_path):
    """The output dir names the table axes, not every key: sweeping pruner.rounds would put both variants in one
    dir, where one would skip or resume the other. Refused before any job starts, naming the dir and jobs."""
    proc = _cli(["-m", "pruner=lottery", "pruner.rounds=1,2", "dataset=digits", f"paths.root_dir={tmp_path}"],
                tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "1 output dirs would each hold several jobs of this sweep, nothing was run" in proc.stderr
    assert "lottery-none-r0.9-s0 is the output dir of 2 jobs ([pruner=lottery pruner.rounds=1" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob("run_config.json"))
