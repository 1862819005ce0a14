"""jackpot-tables on hand-made results: mean ± sample std by hand, missing and failed cells kept, malformed
files reported, published values and differences, borrowed dense rows, every output format and the figures."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from jackpot import tables
from jackpot.runs.results import write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SWEEP_FILE = """# @package _global_
name: toy
hydra:
  sweeper:
    params:
      model: resnet8
      dataset: digits
      pruner: snip,grasp
      sanity_check: none
      ratio: 0.5,0.9
      seed: 0,1,2
published:
  resnet8:
    digits:
      dense:
        none: {0.0: "95.00"}
      snip:
        none: {0.5: "91.00 ± 0.50", 0.9: 80.0}
"""

LAYERS = [{"name": "conv1.weight", "shape": [16, 3, 3, 3], "kept": 200, "total": 432},
          {"name": "layer1.0.conv1.weight", "shape": [16, 16, 3, 3], "kept": 1000, "total": 2304},
          {"name": "fc.weight", "shape": [10, 64], "kept": 192, "total": 640}]


def write_run(root: Path, name: str, pruner: str, ratio: float, seed: int, acc: float | None,
              status: str = "complete", model: str = "resnet8", dataset: str = "digits",
              check: str = "none", lr: float | None = None) -> Path:
    """A results.json in the layout Hydra's sweep dir uses, through the project's own writer; with `lr`, it
    stores a (small) config too, whose identity says which runs are the same run."""
    out = root / name / f"{model}-{dataset}" / f"{pruner}-{check}-r{ratio}-s{seed}"
    cell = {"model": model, "dataset": dataset, "pruner": pruner, "sanity_check": check, "ratio": ratio,
            "seed": seed}
    payload = {"status": status, "cell": cell, "name": name, "final_acc": acc,
               "best_acc": None if acc is None else acc + 0.5, "layers": LAYERS}
    if lr is not None:
        payload["config"] = {**cell, "name": name, "schedule": {"lr": lr}}
    return write_results(out, payload)


@pytest.fixture()
def sweeps_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "toy.yaml").write_text(SWEEP_FILE)
    return folder


@pytest.fixture()
def toy_results(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    for seed, acc in enumerate([90.0, 91.0, 95.0]):          # snip 0.5: three seeds
        write_run(root, "toy", "snip", 0.5, seed, acc)
    write_run(root, "toy", "snip", 0.9, 0, 82.5)             # snip 0.9: one seed, plus one failed run
    write_run(root, "toy", "snip", 0.9, 1, None, status="failed")
    write_run(root, "toy", "grasp", 0.5, 0, None, status="failed")   # grasp 0.5: failed only
    write_run(root, "toy", "grasp", 0.5, 1, None, status="failed")
    # grasp 0.9: nothing at all -> missing
    bad = root / "toy" / "broken"
    bad.mkdir(parents=True)
    (bad / "results.json").write_text("{not json")
    nocell = root / "toy" / "nocell"
    nocell.mkdir()
    (nocell / "results.json").write_text(json.dumps({"status": "complete", "final_acc": 1.0}))
    return root


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = tables.main(args)
    return code, capsys.readouterr().out


def read_csv(path: Path) -> dict[tuple, dict[str, str]]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {(r["pruner"], r["sanity_check"], float(r["ratio"])): r for r in rows}


def test_mean_std_missing_failed_and_malformed(tmp_path, sweeps_dir, toy_results, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "tables"
    code, printed = run_cli([str(toy_results), "--sweeps-dir", str(sweeps_dir), "--out", str(out)], capsys)
    assert code == 0
    rows = read_csv(out / "toy.csv")

    snip = rows[("snip", "none", 0.5)]
    assert snip["status"] == "ok" and int(snip["n"]) == 3 and int(snip["n_expected"]) == 3
    assert float(snip["mean"]) == pytest.approx(92.0, abs=1e-4)
    assert float(snip["std"]) == pytest.approx(math.sqrt(7.0), abs=1e-4)   # sample std: ((4+1+9)/2) ** 0.5
    assert float(snip["std"]) == pytest.approx(statistics.stdev([90.0, 91.0, 95.0]), abs=1e-4)
    assert snip["published"] == "91.00 ± 0.50" and float(snip["diff"]) == pytest.approx(1.0, abs=1e-4)

    single = rows[("snip", "none", 0.9)]
    assert single["status"] == "ok" and int(single["n"]) == 1 and int(single["n_failed"]) == 1
    assert float(single["mean"]) == pytest.approx(82.5) and single["std"] == ""
    assert float(single["diff"]) == pytest.approx(2.5)

    assert rows[("grasp", "none", 0.5)]["status"] == "failed"
    assert int(rows[("grasp", "none", 0.5)]["n_failed"]) == 2
    assert rows[("grasp", "none", 0.9)]["status"] == "missing"
    # The published dense row is expected too: nobody ran it, so it is missing rather than dropped.
    assert rows[("dense", "none", 0.0)]["status"] == "missing"
    assert len(rows) == 5

    md = (out / "toy.md").read_text()
    assert "92.00 ± 2.65" in md and "82.50 (+1 failed)" in md
    assert "failed (2)" in md and md.count("missing") >= 2
    assert "paper 91.00 ± 0.50" in md and "Δ +1.00" in md and "n=1/3" in md
    tex = (out / "toy.tex").read_text()
    assert r"92.00 $\pm$ 2.65" in tex and r"\begin{tabular}" in tex and "missing" in tex

    assert "92.00 ± 2.65" in printed and "missing" in printed and "failed (2)" in printed
    assert "2 malformed results file(s)" in printed
    assert "broken" in printed and "nocell" in printed


def test_one_seed_shows_no_plus_minus():
    rec = {"status": "ok", "n": 1, "n_failed": 0, "mean": 93.456, "std": math.nan}
    assert tables.fmt_ours(rec) == "93.46"
    rec.update(n=2, std=0.123)
    assert tables.fmt_ours(rec) == "93.46 ± 0.12"


def test_figures_are_png(tmp_path, sweeps_dir, toy_results, capsys):
    out = tmp_path / "figs"
    write_run(toy_results, "toy", "grasp", 0.9, 0, 70.0)
    code, _ = run_cli([str(toy_results), "--sweeps-dir", str(sweeps_dir), "--out", str(out), "--figures",
                       "--format", "csv"], capsys)
    assert code == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["toy_accuracy_vs_ratio.png", "toy_layers_resnet8_digits.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "toy.md").exists()


def test_dense_row_is_borrowed_from_the_dense_sweep(tmp_path, sweeps_dir, toy_results, capsys):
    for seed, acc in enumerate([94.0, 96.0]):
        write_run(tmp_path / "elsewhere", "dense", "dense", 0.0, seed, acc)
    out = tmp_path / "tables"
    code, printed = run_cli([str(toy_results), str(tmp_path / "elsewhere"), "--sweep", "toy", "--sweeps-dir",
                             str(sweeps_dir), "--out", str(out), "--format", "csv,rich"], capsys)
    assert code == 0
    dense = read_csv(out / "toy.csv")[("dense", "none", 0.0)]
    assert dense["status"] == "ok" and dense["source"] == "dense"
    assert float(dense["mean"]) == pytest.approx(95.0) and float(dense["diff"]) == pytest.approx(0.0)
    assert "taken from: dense" in printed
    assert not (out / "dense.csv").exists(), "--sweep builds only the named table"


def test_own_runs_win_over_other_sweeps(tmp_path, sweeps_dir, toy_results, capsys):
    write_run(tmp_path / "other", "variant", "snip", 0.5, 0, 10.0)   # same cell, other sweep: ignored
    write_run(tmp_path / "other", "variant", "grasp", 0.9, 0, 60.0)  # fills a cell toy never ran
    out = tmp_path / "tables"
    run_cli([str(toy_results), str(tmp_path / "other"), "--sweep", "toy", "--sweeps-dir", str(sweeps_dir),
             "--out", str(out), "--format", "csv"], capsys)
    rows = read_csv(out / "toy.csv")
    assert float(rows[("snip", "none", 0.5)]["mean"]) == pytest.approx(92.0)
    assert rows[("grasp", "none", 0.9)]["source"] == "variant"


def test_seeds_the_table_lacks_come_from_sweeps_that_ran_the_same_run(tmp_path, sweeps_dir, toy_results, capsys):
    """snip 0.9: toy holds seed 0 (82.5) and a failed seed 1. A sweep sharing the cell (reuse_from) completed
    seeds 0-2 of the very same run: its seed 0 is not used (toy's own wins), its seeds 1 and 2 fill the gaps,
    the failure with them. Runs of another config (an ablation) and seeds the grid does not list are not."""
    write_run(toy_results, "toy", "snip", 0.9, 0, 82.5, lr=0.1)
    write_run(toy_results, "toy", "snip", 0.9, 1, None, status="failed", lr=0.1)
    other = tmp_path / "other"
    for seed, acc in enumerate([10.0, 84.0, 86.0]):
        write_run(other, "shared", "snip", 0.9, seed, acc, lr=0.1)
    write_run(other, "lesser", "snip", 0.9, 2, 0.0, lr=0.1)  # fewer complete runs of the cell: ranked last
    write_run(other, "ablation", "snip", 0.9, 1, 1.0, lr=0.07)  # another config: never mixed in
    write_run(other, "ablation", "snip", 0.9, 2, 1.0, lr=0.07)
    write_run(other, "ablation", "snip", 0.9, 0, 1.0, lr=0.07)
    write_run(other, "more", "snip", 0.9, 3, 1.0, lr=0.1)  # a seed toy's grid does not list
    out = tmp_path / "tables"
    code, printed = run_cli([str(toy_results), str(other), "--sweep", "toy", "--sweeps-dir", str(sweeps_dir),
                             "--out", str(out), "--format", "csv,md,rich"], capsys)
    assert code == 0
    row = read_csv(out / "toy.csv")[("snip", "none", 0.9)]
    assert (row["status"], int(row["n"]), int(row["n_failed"])) == ("ok", 3, 0)
    assert float(row["mean"]) == pytest.approx(statistics.mean([82.5, 84.0, 86.0]), abs=1e-3)
    assert float(row["std"]) == pytest.approx(statistics.stdev([82.5, 84.0, 86.0]), abs=1e-3)
    assert row["source"] == "toy+shared" and row["seeds"] == "0,1,2"
    # a cell toy has complete runs of for every seed it has stays toy's alone
    assert read_csv(out / "toy.csv")[("snip", "none", 0.5)]["source"] == "toy"
    assert "taken from: shared" in printed and "lesser" not in printed and "ablation" not in printed
    assert "taken from the sweeps: shared." in (out / "toy.md").read_text()


def test_real_sweep_file_gives_the_published_value(tmp_path, capsys):
    """The repository's random_tickets file: published value and difference for one VGG19 cell."""
    root = tmp_path / "outputs"
    for seed, acc in enumerate([93.5, 93.7, 93.9]):
        write_run(root, "random_tickets", "lottery", 0.9, seed, acc, model="vgg19", dataset="cifar10")
    out = tmp_path / "tables"
    code, _ = run_cli([str(root), "--out", str(out), "--format", "csv,md,latex"], capsys)
    assert code == 0
    frame = {(r["model"], r["dataset"], r["pruner"], float(r["ratio"])): r
             for r in csv.DictReader((out / "random_tickets.csv").open())}
    cell = frame[("vgg19", "cifar10", "lottery", 0.9)]
    assert cell["published"] == "93.66 ± 0.08"
    assert float(cell["diff"]) == pytest.approx(93.7 - 93.66, abs=1e-4)
    # The other 47 sparse cells and the 4 dense rows of the table are listed as missing, never dropped.
    assert len(frame) == 2 * 2 * 4 * 3 + 4
    assert sum(r["status"] == "missing" for r in frame.values()) == len(frame) - 1
    md = (out / "random_tickets.md").read_text()
    assert "VGG19 · Lottery tickets" in md and "CIFAR-100 98%" in md


def test_sweep_option_accepts_a_file_stem_of_a_shared_name(tmp_path, capsys):
    """partially_trained_lottery is a block of the partially_trained table."""
    root = tmp_path / "outputs"
    write_run(root, "partially_trained", "lr_rewinding", 0.9, 0, 94.0, model="vgg19", dataset="cifar10",
              check="half_dataset")
    out = tmp_path / "tables"
    args = [str(root), "--sweep", "partially_trained_lottery", "--out", str(out), "--format", "csv,md"]
    code, _ = run_cli(args, capsys)
    assert code == 0
    rows = list(csv.DictReader((out / "partially_trained.csv").open()))
    # lr_rewinding x 3 checks x 2 models x 3 ratios + lottery 2 x 3 + dense 2
    assert len(rows) == 18 + 6 + 2
    assert {r["pruner"] for r in rows} == {"lr_rewinding", "lottery", "dense"}
    # rows in the poster's order (the sweep file's table.rows), not in the order the two sweep files list them
    labels = [line.split(" | ")[0].lstrip("| ") for line in (out / "partially_trained.md").read_text().splitlines()
              if line.startswith("| ") and not line.startswith("| method")]
    assert labels == ["Full network", "Lottery tickets", "LR rewinding · shuffled weights",
                      "LR rewinding · half dataset", "LR rewinding"]


def test_a_mistyped_sweep_name_is_an_error_naming_the_known_ones(tmp_path, sweeps_dir, toy_results, capsys):
    out = tmp_path / "tables"
    code, printed = run_cli([str(toy_results), "--sweep", "toy", "--sweep", "tyo", "--sweeps-dir", str(sweeps_dir),
                             "--out", str(out), "--format", "csv"], capsys)
    assert code == 2
    assert "--sweep tyo: no sweep file and no runs with that name" in printed and "known: toy" in printed
    assert not out.exists(), "nothing is built when a requested table is unknown"


def test_no_results_is_reported_not_a_crash(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, printed = run_cli([str(tmp_path / "empty")], capsys)
    assert code == 1 and "no results.json found" in printed


def test_missing_table_for_a_named_sweep_still_prints_every_cell(tmp_path, sweeps_dir, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "tables"
    code, _ = run_cli([str(tmp_path / "empty"), "--sweep", "toy", "--sweeps-dir", str(sweeps_dir), "--out",
                       str(out), "--format", "csv"], capsys)
    assert code == 0
    rows = read_csv(out / "toy.csv")
    assert {r["status"] for r in rows.values()} == {"missing"} and len(rows) == 5


def test_parse_published():
    assert tables.parse_published("93.66 ± 0.08") == (93.66, 0.08)
    assert tables.parse_published("93.70") == (93.70, None)
    assert tables.parse_published(80) == (80.0, None)
    assert tables.parse_published(None) is None
    with pytest.raises(ValueError):
        tables.parse_published("about 93")


def test_layout_puts_models_in_columns_for_a_single_dataset():
    params = {"model": "vgg19,resnet32", "dataset": "cifar10", "pruner": "lottery", "ratio": "0.9,0.95",
              "seed": 0}
    spec = tables.SweepSpec("t", grids=[tables.parse_sweep_params(params)])
    runs = tables.load_sources([]).runs
    layout = tables.make_layout(tables.summarize(runs, spec), spec)
    assert layout.col_axis == "model"
    assert layout.columns == [("vgg19", 0.9), ("vgg19", 0.95), ("resnet32", 0.9), ("resnet32", 0.95)]
    assert layout.rows == [("lottery", "none")]


def test_wandb_source_reads_flat_config_and_summary(monkeypatch):
    """Offline stand-in for wandb.Api: the code path that turns runs into records."""
    import wandb

    def fake_run(run_id, seed, acc, state="finished"):
        config = {"model": "resnet8", "dataset": "digits", "pruner": "snip", "sanity_check": "none",
                  "ratio": 0.5, "seed": seed}
        return SimpleNamespace(id=run_id, state=state, group="toy", config=config,
                               summary={"final_acc": acc, "best_acc": acc}, created_at="2026-01-01T00:00:00")

    calls = {}

    class FakeApi:
        def runs(self, path, filters=None, lazy=True):
            calls.update(path=path, filters=filters, lazy=lazy)
            broken = SimpleNamespace(id="x", state="finished", group="toy", config={}, summary={},
                                     created_at=None)
            return [fake_run("a", 0, 90.0), fake_run("b", 1, 92.0), fake_run("c", 2, None, state="crashed"),
                    fake_run("d", 3, None, state="running"), broken]

    monkeypatch.setattr(wandb, "Api", FakeApi)
    records, malformed = tables.load_wandb("wandb:me/jackpot/toy")
    assert calls == {"path": "me/jackpot", "filters": {"group": "toy"}, "lazy": False}
    assert [r["status"] for r in records] == ["complete", "complete", "failed"]
    assert {r["name"] for r in records} == {"toy"} and len(malformed) == 1


def _wide_layout():
    """Two models x three ratios of a real sweep file with its published values and no runs: ~190 columns."""
    spec = tables.load_sweep_specs(tables.default_sweeps_dir())[0]["partially_trained"]
    return tables.make_layout(tables.summarize(tables.load_sources([]).runs, spec), spec)


def _render(width: int, terminal: bool) -> str:
    import io

    from rich.console import Console

    out = io.StringIO()
    tables.render_rich(_wide_layout(), "partially_trained",
                       Console(file=out, width=width, force_terminal=terminal, color_system=None))
    return out.getvalue()


def test_rich_never_cuts_a_number_in_a_pipe():
    text = _render(80, terminal=False)
    assert "…" not in text and "paper 94.14 ± 0.17" in text and "paper 90.83 ± 0.22" in text
    assert max(len(line) for line in text.splitlines()) > 80  # full width: a file has no edge
    assert text.count("partially_trained: CIFAR-10  (") == 1  # one table


def test_rich_splits_a_wide_table_by_column_group_in_a_narrow_terminal():
    text = _render(100, terminal=True)
    assert "…" not in text and "paper 94.14 ± 0.17" in text and "paper 90.83 ± 0.22" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "partially_trained: CIFAR-10 · VGG19" in text and "partially_trained: CIFAR-10 · ResNet32" in text
    wide = _render(400, terminal=True)  # room enough: one table, as before
    assert wide.count("partially_trained: CIFAR-10  (") == 1 and "· VGG19" not in wide
