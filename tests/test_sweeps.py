"""The sweep files: each composes through Hydra, expands to the product of its axes, narrows from the command
line, holds only valid jobs, and carries exactly the poster's published numbers."""

from __future__ import annotations

import functools
import math
import re

import pytest
import yaml
from conftest import CONF, REPO
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from jackpot.config import InapplicableCheck, validate

SWEEPS = REPO / "multirun_sweeps"
POSTER = REPO / "tests" / "data" / "seed_poster.txt"  # a copy of the paper's tables (shared/paper/seed_poster.txt)
AXES = ("model", "dataset", "pruner", "sanity_check", "ratio", "seed")

# file -> (run name, number of jobs): a changed grid must be a deliberate change here too.
EXPECTED = {
    "dense": ("dense", 2 * 2 * 3),
    "random_tickets": ("random_tickets", 2 * 2 * 4 * 3 * 3),
    "hybrid_tickets": ("hybrid_tickets", 2 * 2 * 3 * 3 * 3),
    "partially_trained": ("partially_trained", 2 * 3 * 3 * 3),
    "partially_trained_lottery": ("partially_trained", 2 * 3 * 3),
    "initial_ticket_checks": ("initial_ticket_checks", 2 * 3 * 4 * 5 * 3),
    "quickstart": ("quickstart", 2 * 2 * 2),
    "sanity_battery": ("sanity_battery", 2 * 1 * 1 * 7 * 3 * 3),  # + baselines, - dropped checks (test_battery)
}


def sweep_names() -> list[str]:
    return sorted(p.stem for p in SWEEPS.glob("*.yaml"))


@functools.cache
def compose_sweep(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=[f"sweep={name}", *overrides], return_hydra_config=True)


def expand(params, command_line: list[str] | None = None) -> list[list[str]]:
    """The jobs BasicSweeper would launch: file params, then command-line overrides (replacing an axis)."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + (command_line or []))
    batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [job for batch in batches for job in batch]


def axis_values(params) -> dict[str, list]:
    parser = OverridesParser.create()
    values = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        values[key] = list(override.sweep_iterator()) if override.is_discrete_sweep() else [override.value()]
    return values


def test_every_sweep_file_is_known_and_the_config_group_resolves():
    assert (CONF / "sweep").resolve() == SWEEPS.resolve()
    assert sweep_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_composes_and_jobs_equal_the_product_of_its_axes(name):
    cfg = compose_sweep(name)
    run_name, n_jobs = EXPECTED[name]
    assert cfg.name == run_name
    params = cfg.hydra.sweeper.params
    assert set(params) == set(AXES), "every table axis is a sweep axis (narrowable, and part of the path)"
    values = axis_values(params)
    assert [int(s) for s in values["seed"]] == ([0, 1] if name == "quickstart" else [0, 1, 2])
    jobs = expand(params)
    assert len(jobs) == math.prod(len(v) for v in values.values()) == n_jobs
    assert len({tuple(sorted(job)) for job in jobs}) == n_jobs
    assert "published" in cfg


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_job_of_a_sweep_is_a_valid_config(name):
    """Each (pruner, check) pair of the grid, and each model and dataset, composes and passes validation.

    Validation rules couple only the pruner and the check (and the dataset's files), so one composition per
    pair and one per other model/dataset value covers the whole grid without composing every job.
    """
    params = compose_sweep(name).hydra.sweeper.params
    jobs = [dict(item.split("=", 1) for item in job) for job in expand(params)]
    assert all(0.0 <= float(job["ratio"]) < 1.0 for job in jobs)
    first = jobs[0]
    picks = {}
    for job in jobs:
        keys = [(job["pruner"], job["sanity_check"]), ("model", job["model"]), ("dataset", job["dataset"])]
        for key in keys:
            if key not in picks:
                if key[0] == "model":
                    picks[key] = {**first, "model": job["model"]}
                elif key[0] == "dataset":
                    picks[key] = {**first, "dataset": job["dataset"]}
                else:
                    picks[key] = {**first, "pruner": job["pruner"], "sanity_check": job["sanity_check"]}
    for job in {tuple(sorted(p.items())) for p in picks.values()}:
        job = dict(job)
        cfg = compose_sweep(name, *(f"{k}={v}" for k, v in job.items()))
        try:
            validate(cfg)
        except InapplicableCheck:
            if not cfg.hydra.sweeper.get("drop_inapplicable"):
                raise
            continue  # a battery's sweeper drops the checks the method rules out (tests/test_battery.py)
        names = (cfg.model.name, cfg.dataset.name, cfg.pruner.name, cfg.sanity_check.name)
        assert names == (job["model"], job["dataset"], job["pruner"], job["sanity_check"])


def test_any_axis_narrows_or_widens_from_the_command_line():
    params = compose_sweep("random_tickets").hydra.sweeper.params
    assert len(expand(params, ["seed=0"])) == 144 // 3
    assert len(expand(params, ["pruner=grasp", "ratio=0.98"])) == 2 * 2 * 3
    assert len(expand(params, ["seed=0,1,2,3,4"])) == 144 // 3 * 5
    narrowed = expand(params, ["model=resnet32", "dataset=cifar10", "pruner=snip", "seed=1"])
    assert sorted(job[-1] for job in narrowed) == ["seed=1"] * 3


def test_quickstart_sweep_is_offline_and_small():
    cfg = compose_sweep("quickstart")
    assert cfg.dataset.name == "digits" and cfg.model.name == "resnet8"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.schedule.epochs <= 10  # minutes for all 8 jobs on 2 cores


def test_output_dirs_name_every_cell_uniquely():
    cfg = compose_sweep("random_tickets")
    subdir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"]
    for key in ("model.name", "dataset.name", "pruner.name", "sanity_check.name", "ratio", "seed"):
        assert "${" + key + "}" in subdir


# ------------------------------------------------------------------------------------------ published numbers

# Poster row label -> the (pruner, sanity_check) of each value a cell holds (merged rows hold several).
ROWS = {
    "Lottery Tickets": [("lottery", "none")],
    "SNIP": [("snip", "none")],
    "GraSP": [("grasp", "none")],
    "Random Tickets (Ours)": [("smart_ratio", "none")],
    "Hybrid Tickets (Ours)": [("hybrid", "none")],
    "OBD Learning Rate Rewinding": [("obd", "none"), ("lr_rewinding", "none")],
    "Shuffle Weights Half Dataset Learning Rate Rewinding": [
        ("lr_rewinding", "layerwise_shuffle"), ("lr_rewinding", "half_dataset"), ("lr_rewinding", "none")],
}
GROUPS = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "VGG19": "vgg19", "ResNet32": "resnet32"}
VALUE = re.compile(r"(\d+\.\d+)(?:\s*±\s*(\d+\.\d+))?")


def _values(text: str) -> list[tuple[float, float | None]]:
    """'$93.01 {\\pm} 0.16$' / '71.81 \\pm 0.11' / '93.66±0.08' / '93.74 94.14 ± 0.17' -> numbers."""
    text = text.replace("$", "").replace("{", "").replace("}", "").replace("\\pm", "±")
    return [(float(m), float(s) if s else None) for m, s in VALUE.findall(text)]


def parse_poster(text: str) -> dict[str, dict[tuple, tuple[float, float | None]]]:
    """The poster's three tables -> {table: {(model, dataset, pruner, check, ratio): (mean, std)}}."""
    tables: dict[str, dict] = {}
    current = None
    groups: list[str] = []
    ratios: list[float] = []
    model = None
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("\t")]
        if line.startswith("Table:"):
            current = ("partially_trained" if "partially-trained tickets on CIFAR-10" in line
                       else "hybrid_tickets" if "hybrid tickets" in line else "random_tickets")
            tables[current] = {}
            continue
        if current is None or not cols[0]:
            continue
        if cols[0] in ("Dataset", "Network"):
            groups = [GROUPS[c] for c in cols[1:] if c]
            continue
        if cols[0] == "Pruning ratio":
            ratios = [int(c.rstrip("%")) / 100 for c in cols[1:] if c][:3]
            continue
        cells = [c for c in cols[1:] if c]
        if not cells or len(cells) != len(groups) * len(ratios):
            if line.startswith("Results:"):
                current = None
            continue
        if cols[0].endswith("(Full Network)"):
            models = cols[0].removesuffix(" (Full Network)").split("/")
            for g, group in enumerate(groups):
                value = _values(cells[g * len(ratios)])[0]
                if current == "partially_trained":
                    tables[current][(group, "cifar10", "dense", "none", 0.0)] = value
                else:
                    model = GROUPS[models[0]]
                    tables[current][(model, group, "dense", "none", 0.0)] = value
                assert all(c == "-" for c in cells[g * len(ratios) + 1:(g + 1) * len(ratios)])
            continue
        keys = ROWS[cols[0]]
        for i, cell in enumerate(cells):
            group, ratio = groups[i // len(ratios)], ratios[i % len(ratios)]
            values = _values(cell)
            assert len(values) == len(keys), (cols[0], cell)
            for (pruner, check), value in zip(keys, values, strict=True):
                m, d = (group, "cifar10") if current == "partially_trained" else (model, group)
                tables[current][(m, d, pruner, check, ratio)] = value
    return tables


def published_of(stem: str) -> dict[tuple, tuple[float, float | None]]:
    """A sweep file's published block, read as plain YAML and parsed here (not by jackpot.tables)."""
    data = yaml.safe_load((SWEEPS / f"{stem}.yaml").read_text())
    flat = {}
    for model, datasets in (data.get("published") or {}).items():
        for dataset, pruners in datasets.items():
            for pruner, checks in pruners.items():
                for check, ratios in checks.items():
                    for ratio, value in ratios.items():
                        parsed = _values(str(value))
                        assert len(parsed) == 1, value
                        assert re.fullmatch(r"\d+\.\d\d( ± \d+\.\d\d)?", str(value)), value
                        flat[(model, dataset, pruner, check, round(float(ratio), 6))] = parsed[0]
    return flat


@pytest.fixture(scope="module")
def poster() -> dict[str, dict]:
    tables = parse_poster(POSTER.read_text())
    assert sorted(tables) == ["hybrid_tickets", "partially_trained", "random_tickets"]
    assert len(tables["random_tickets"]) == 2 * 2 * (4 * 3 + 1)
    assert len(tables["hybrid_tickets"]) == 2 * 2 * (3 * 3 + 1)
    assert len(tables["partially_trained"]) == 2 * (4 * 3 + 1)
    return tables


def test_poster_parser_reads_known_cells(poster):
    assert poster["random_tickets"][("vgg19", "cifar10", "snip", "none", 0.98)] == (81.37, 18.17)
    assert poster["random_tickets"][("vgg19", "cifar100", "snip", "none", 0.95)] == (71.81, 0.11)
    assert poster["random_tickets"][("resnet32", "cifar100", "grasp", "none", 0.9)] == (70.12, 0.15)
    assert poster["hybrid_tickets"][("resnet32", "cifar100", "obd", "none", 0.95)] == (68.73, None)
    assert poster["hybrid_tickets"][("resnet32", "cifar100", "lr_rewinding", "none", 0.95)] == (67.22, 3.42)
    key = ("resnet32", "cifar10", "lr_rewinding", "half_dataset", 0.98)
    assert poster["partially_trained"][key] == (89.95, 0.08)
    assert poster["partially_trained"][("vgg19", "cifar10", "dense", "none", 0.0)] == (93.70, None)


@pytest.mark.parametrize("table, stems", [
    ("random_tickets", ["random_tickets"]),
    ("hybrid_tickets", ["hybrid_tickets"]),
    ("partially_trained", ["partially_trained", "partially_trained_lottery"]),
])
def test_published_numbers_equal_the_poster_cell_by_cell(poster, table, stems):
    ours: dict = {}
    for stem in stems:
        block = published_of(stem)
        assert not set(block) & set(ours), "two blocks of one table publish the same cell"
        ours.update(block)
    assert ours == poster[table]


def test_dense_sweep_numbers_match_every_full_network_row(poster):
    dense = published_of("dense")
    assert len(dense) == 4
    for table in poster.values():
        for key, value in table.items():
            if key[2] == "dense":
                assert dense[key] == value


def test_sweeps_without_poster_numbers_publish_nothing():
    assert published_of("initial_ticket_checks") == {}
    assert published_of("quickstart") == {}


def test_every_published_cell_is_run_by_its_table_or_by_another_sweep():
    """A published cell must be produced by some sweep file, or the tables could never fill it."""
    runnable = set()
    for stem in EXPECTED:
        values = axis_values(compose_sweep(stem).hydra.sweeper.params)
        for m in values["model"]:
            for d in values["dataset"]:
                for p in values["pruner"]:
                    for c in values["sanity_check"]:
                        for r in values["ratio"]:
                            runnable.add((m, d, p, c, round(float(r), 6)))
    for stem in EXPECTED:
        missing = set(published_of(stem)) - runnable
        assert not missing, (stem, sorted(missing)[:3])


# ------------------------------------------------------------------------------------------ launchers


def compose_launcher(name: str, gpu_key: str) -> tuple[dict, object]:
    """The launcher's settings (unresolved) and its GPU request resolved for a GPU trainer (a CPU trainer asks
    for none: tests/test_launcher_requests.py)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={name}", "trainer=gpu"],
                      return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=False), OmegaConf.select(cfg.hydra.launcher, gpu_key)


def test_default_launcher_is_the_plain_local_one():
    assert compose_sweep("quickstart").hydra.launcher._target_.endswith("BasicLauncher")


@pytest.mark.parametrize("name, gpus", [("ray_local", 1), ("ray_local_fractional", 0.25), ("ray_cluster", 1)])
def test_ray_launchers_give_each_job_its_own_gpu_share_and_a_fresh_process(name, gpus):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    launcher, num_gpus = compose_launcher(name, "ray.remote.num_gpus")
    assert launcher["_target_"].endswith("RayLauncher")
    remote = launcher["ray"]["remote"]
    assert num_gpus == gpus and remote["max_calls"] == 1
    init = launcher["ray"]["init"]
    if name == "ray_cluster":
        assert init["address"] == "auto"
        assert "object_store_memory" in init and init["object_store_memory"] is None  # the 1.2.2 workaround
        assert set(init["runtime_env"]) >= {"working_dir", "env_vars"}
        assert "WANDB_MODE" in init["runtime_env"]["env_vars"]
        # anchored: a bare "data" would keep src/jackpot/data out of the shipped working_dir
        assert "/data" in init["runtime_env"]["excludes"] and "data" not in init["runtime_env"]["excludes"]
    else:
        assert init["address"] == "local"  # a fresh instance, never one that RAY_ADDRESS points at


def test_slurm_launcher_asks_one_gpu_per_task_with_an_array_limit_and_requeue():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    launcher, gpus_per_node = compose_launcher("slurm", "gpus_per_node")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert gpus_per_node == 1 and launcher["tasks_per_node"] == 1 and launcher["nodes"] == 1
    assert launcher["array_parallelism"] >= 1 and launcher["max_num_timeout"] >= 1
    for key in ("cpus_per_task", "mem_gb", "timeout_min", "partition", "setup"):
        assert key in launcher
