"""The sanity battery: which jobs a method gets (its declaration drops checks, baselines always added), the
verdict statistics against hand computations, the one-line readings, the wandb offline logging of the tables,
and one tiny real battery through `train.py -m` whose verdicts print."""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import CONF, REPO, train_py
from scipy import stats
from wandb_records import read_records, run_summary

from hydra_plugins.jackpot_sweeper.battery import dropped_lines, parse_baselines, with_baselines
from jackpot import tables
from jackpot.config import ConfigError, InapplicableCheck
from jackpot.runs.results import write_results
from jackpot.tables.follow_up import FollowUp, follow_ups, merged
from jackpot.tables.readings import check_reading, random_ticket_reading
from jackpot.tables.verdict_overview import overview
from jackpot.tables.verdict_render import summary_lines
from jackpot.tables.verdicts import battery_verdicts, seeds_to_decide, welch

SWEEPS = REPO / "multirun_sweeps"
ALL_CHECKS = {"none", "random_labels", "random_pixels_labels", "layerwise_rearrange", "reinit", "half_dataset",
              "layerwise_shuffle"}
NARROW = ["model=resnet8", "dataset=digits", "trainer=cpu", "schedule=quick"]

# A data-free method at init with fixed positions (weight magnitude at init), from the user's own package.
DATA_FREE_MODULE = '''
from jackpot.pruning import global_topk, method, prunable_weights


@method(when="init", needs_batches=False)
def init_magnitude(model, ratio, batches):
    """|w| at init, global top-k."""
    return global_topk({name: w.detach().abs() for name, w in prunable_weights(model)}, ratio)
'''


def dry_run(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None,
            config_dir: Path | None = None) -> tuple[list[dict], list[str]]:
    """The jobs a battery would launch ({key: value} each) and its `dropped` lines, from a dry run."""
    options = ["--config-dir", str(config_dir)] if config_dir else []
    proc = train_py(["-m", *options, "sweep=sanity_battery", *NARROW, *overrides, "hydra.sweeper.dry_run=true"],
                    cwd=tmp_path, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = [dict(item.split("=", 1) for item in m.group(1).split())
            for m in re.finditer(r"#\d+ \S+ new: (.*)", out)]
    return jobs, re.findall(r"jackpot: dropped .*", out)


def checks_of(jobs: list[dict], pruner: str) -> set[str]:
    return {job["sanity_check"] for job in jobs if job["pruner"] == pruner}


def assert_baselines(jobs: list[dict], ratios: list[str], seeds: list[str]) -> None:
    """Random tickets at every ratio and seed, the dense network once per seed (ratio 0.0), and no job twice."""
    assert len({tuple(sorted(job.items())) for job in jobs}) == len(jobs)
    random = {(j["ratio"], j["seed"]) for j in jobs if j["pruner"] == "smart_ratio" and j["sanity_check"] == "none"}
    assert random == {(r, s) for r in ratios for s in seeds}
    dense = [(j["ratio"], j["seed"]) for j in jobs if j["pruner"] == "dense"]
    assert sorted(dense) == [("0.0", s) for s in seeds]


def test_an_init_method_keeps_its_checks_drops_the_half_dataset_and_gets_the_baselines(tmp_path):
    # an option of the method on the command line: its jobs get it, the baselines' do not (smart_ratio has no
    # such option, so it would refuse the battery)
    jobs, dropped = dry_run(tmp_path, "pruner=snip", "pruner.options.offload=disk", "ratio=0.9,0.95", "seed=0,1")
    assert checks_of(jobs, "snip") == ALL_CHECKS - {"half_dataset"}
    assert len([j for j in jobs if j["pruner"] == "snip"]) == 6 * 2 * 2
    assert all(j.get("pruner.options.offload") == ("disk" if j["pruner"] == "snip" else None) for j in jobs)
    assert_baselines(jobs, ["0.9", "0.95"], ["0", "1"])
    (line,) = dropped  # one line per reason, naming the check, the method and how many jobs
    assert line.startswith("jackpot: dropped 4 jobs (hydra.sweeper.drop_inapplicable): sanity_check=half_dataset")
    assert "pruner=snip prunes at init" in line


def test_a_method_after_training_keeps_every_check(tmp_path):
    jobs, dropped = dry_run(tmp_path, "pruner=lr_rewinding", "ratio=0.9", "seed=0")
    assert checks_of(jobs, "lr_rewinding") == ALL_CHECKS and not dropped
    assert_baselines(jobs, ["0.9"], ["0"])


def test_a_data_free_method_of_ones_own_drops_the_data_checks(tmp_path):
    (tmp_path / "mylab_free.py").write_text(DATA_FREE_MODULE)
    (tmp_path / "conf" / "pruner").mkdir(parents=True)
    (tmp_path / "conf" / "pruner" / "init_magnitude.yaml").write_text(
        "name: init_magnitude\nmethod: mylab_free.init_magnitude\noptions: {}\n")
    jobs, dropped = dry_run(tmp_path, "pruner=init_magnitude", "ratio=0.9", "seed=0",
                            env={"PYTHONPATH": str(tmp_path)}, config_dir=tmp_path / "conf")
    assert checks_of(jobs, "init_magnitude") == {"none", "layerwise_rearrange", "reinit", "layerwise_shuffle"}
    assert_baselines(jobs, ["0.9"], ["0"])
    reasons = "\n".join(dropped)
    assert len(dropped) == 3 and reasons.count("uses no data") == 2 and "half_dataset" in reasons


def test_a_battery_of_ones_own_method_by_import_path_needs_no_config_file(tmp_path):
    """`pruner=custom pruner.method=... +pruner.options.power=2`: the method's jobs carry both, its baselines
    neither (they are random tickets and the dense network, whatever the method's overrides say)."""
    examples = REPO / "examples"
    jobs, _ = dry_run(tmp_path, "pruner=custom", "pruner.method=mylab.pruning.gradient_magnitude",
                      "+pruner.options.power=2", "ratio=0.9", "seed=0", env={"PYTHONPATH": str(examples)})
    own = [j for j in jobs if j["pruner"] == "custom"]
    assert {j["sanity_check"] for j in own} == ALL_CHECKS - {"half_dataset"}
    assert all(j["pruner.method"] == "mylab.pruning.gradient_magnitude" and j["+pruner.options.power"] == "2"
               for j in own)
    assert all("pruner.method" not in j and "+pruner.options.power" not in j for j in jobs if j not in own)
    assert_baselines(jobs, ["0.9"], ["0"])


def test_random_tickets_own_battery_runs_its_plain_cell_once(tmp_path):
    """pruner=smart_ratio: its plain job is also the random-tickets baseline (one job, one output dir), and
    the checks its random positions make meaningless are dropped."""
    jobs, dropped = dry_run(tmp_path, "pruner=smart_ratio", "ratio=0.9", "seed=0")
    assert checks_of(jobs, "smart_ratio") == {"none", "reinit"}
    assert_baselines(jobs, ["0.9"], ["0"])
    assert any("already random" in line for line in dropped)


def test_other_invalid_jobs_still_refuse_the_battery_and_other_sweeps_still_refuse_inapplicable_checks(tmp_path):
    proc = train_py(["-m", "sweep=sanity_battery", *NARROW, "pruner=snip", "ratio=1.5", "seed=0",
                     "hydra.sweeper.dry_run=true"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "ratio=1.5 must be a number in [0, 1)" in proc.stderr
    proc = train_py(["-m", *NARROW, "pruner=snip", "sanity_check=none,half_dataset", "hydra.sweeper.dry_run=true"],
                    cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "1 of 2 sweep jobs are invalid" in proc.stderr


def test_baselines_replace_keys_and_never_repeat_a_job():
    grid = [["pruner=smart_ratio", "sanity_check=none", "ratio=0.9", "seed=0"],
            ["pruner=smart_ratio", "sanity_check=reinit", "ratio=0.9", "seed=0"],
            ["pruner=smart_ratio", "sanity_check=none", "ratio=0.95", "seed=0"]]
    baselines = parse_baselines([["pruner=smart_ratio", "sanity_check=none"],
                                 ["pruner=dense", "sanity_check=none", "ratio=0.0"]])
    jobs = with_baselines(grid, baselines)
    assert jobs == [*grid, ["pruner=dense", "sanity_check=none", "ratio=0.0", "seed=0"]]
    # the method's own overrides stay with the method: none reaches random tickets or the dense network
    grid = [["model=resnet8", "pruner=snip", "pruner.options.offload=disk", "+pruner.options.extra=1",
             "~pruner.rounds", "sanity_check=random_labels", "sanity_check.seed=3", "ratio=0.9", "seed=0"]]
    assert with_baselines(grid, baselines)[1:] == [
        ["model=resnet8", "pruner=smart_ratio", "sanity_check=none", "ratio=0.9", "seed=0"],
        ["model=resnet8", "pruner=dense", "sanity_check=none", "ratio=0.0", "seed=0"]]
    with pytest.raises(ConfigError, match=r"hydra.sweeper.baselines='pruner=dense' is not allowed; give a list"):
        parse_baselines("pruner=dense")
    with pytest.raises(ConfigError, match=r"seed=0,1 sweeps; a baseline sets one value per key"):
        parse_baselines([["pruner=dense", "seed=0,1"]])
    assert dropped_lines({("a",): "why", ("b",): "why", ("c",): "other"}) == [
        "jackpot: dropped 2 jobs (hydra.sweeper.drop_inapplicable): why",
        "jackpot: dropped 1 job (hydra.sweeper.drop_inapplicable): other"]
    assert issubclass(InapplicableCheck, ConfigError)


def test_the_demo_experiment_is_the_battery_on_digits():
    """conf/experiment/battery_demo.yaml repeats the battery's checks and baselines: they must agree."""
    battery = yaml.safe_load((SWEEPS / "sanity_battery.yaml").read_text())["hydra"]["sweeper"]
    demo = yaml.safe_load((CONF / "experiment" / "battery_demo.yaml").read_text())
    sweeper = demo["hydra"]["sweeper"]
    assert demo["name"] == "sanity_battery"
    assert sweeper["baselines"] == battery["baselines"] and sweeper["drop_inapplicable"] is True
    assert sweeper["params"]["sanity_check"] == battery["params"]["sanity_check"]
    assert sweeper["params"]["seed"] == "0,1,2" and isinstance(sweeper["params"]["ratio"], float)


# Verdicts on hand-made results -----------------------------------------------------------------------------
CELLS = {  # (pruner, check, ratio) -> final accuracy per seed
    ("snip", "none", 0.9): [80.0, 82.0, 84.0],                # mean 82, sd 2
    ("snip", "random_labels", 0.9): [81.0, 83.0, 85.0],       # mean 83, sd 2: +1 ± 1.633, df 4
    ("snip", "layerwise_rearrange", 0.9): [70.0, 71.0, 72.0],  # mean 71, sd 1: -11 ± 1.291, df 50/17
    ("snip", "reinit", 0.9): [81.0],                           # one seed: no test
    ("smart_ratio", "none", 0.9): [82.0, 83.0, 84.0],         # mean 83, sd 1
    ("dense", "none", 0.0): [95.0, 96.0, 97.0],               # mean 96, sd 1
}


# one method cell's verdict rows, as follow_ups reads them (outcome and comparison added per row)
FOLLOW_UP_CELL = {"method": "snip", "model": "resnet8", "dataset": "digits", "ratio": 0.9, "seeds": "0,1",
                  "ref_seeds": "0,1", "seeds_to_decide": 3}


def write_battery(root: Path, name: str = "sanity_battery", at_ratio: float | None = None, shift: float = 0.0) -> None:
    """CELLS' results; `at_ratio`: moved to that ratio, every pruned run `shift` points off (dense unchanged)."""
    for (pruner, check, ratio), accs in CELLS.items():
        if at_ratio is not None and pruner != "dense":
            ratio, accs = at_ratio, [acc + shift for acc in accs]
        for seed, acc in enumerate(accs):
            cell = {"model": "resnet8", "dataset": "digits", "pruner": pruner, "sanity_check": check,
                    "ratio": ratio, "seed": seed}
            write_results(root / name / "resnet8-digits" / f"{pruner}-{check}-r{ratio}-s{seed}",
                          {"status": "complete", "cell": cell, "name": name, "final_acc": acc, "best_acc": acc})


def test_welch_matches_a_hand_computation():
    d = welch(82.0, 2.0, 3, 83.0, 2.0, 3)
    assert d.diff == 1.0 and d.se == pytest.approx(math.sqrt(8 / 3)) and d.df == pytest.approx(4.0)
    assert d.t == pytest.approx(1 / math.sqrt(8 / 3)) and d.p == pytest.approx(0.5734, abs=1e-3)
    half = 2.7764451 * math.sqrt(8 / 3)  # t(0.975, df=4), from tables
    assert d.interval() == pytest.approx((1 - half, 1 + half))  # (-3.53, +5.53)
    # not distinguishable, yet the interval allows a 3.5-point harm: no reading of "no effect" at a 1-point margin
    assert d.outcome() == "inconclusive" and d.outcome(margin=4.0) == "none"
    assert d.outcome(side="advantage") == "inconclusive" and d.outcome(margin=6.0, side="advantage") == "none"
    tight = welch(82.0, 0.2, 3, 82.1, 0.2, 3)  # the same test (p 0.57), a tenth of the spread: (-0.35, +0.55)
    assert tight.p == pytest.approx(d.p) and tight.outcome() == "none"
    d = welch(82.0, 2.0, 3, 71.0, 1.0, 3)
    assert d.se == pytest.approx(math.sqrt(5 / 3)) and d.df == pytest.approx(50 / 17)
    assert d.p == pytest.approx(0.0037, abs=5e-4) and d.outcome() == "hurts"
    assert welch(82.0, 2.0, 3, 81.0, math.nan, 1).outcome() == "unknown"
    exact = welch(80.0, 0.0, 2, 81.0, 0.0, 2)  # no spread on either side: the difference is exact
    assert exact.se == 0.0 and exact.outcome() == "helps" and exact.interval() == (1.0, 1.0)
    assert math.isnan(welch(82.0, 2.0, 3, 81.0, math.nan, 1).interval()[0])


def test_bonferroni_tests_each_of_a_cells_comparisons_at_alpha_over_their_number():
    def cell(pruner, check, ratio, mean, std, n):
        return {"model": "resnet8", "dataset": "digits", "pruner": pruner, "sanity_check": check, "ratio": ratio,
                "mean": mean, "std": std, "n": n, "status": "ok", "seeds": ",".join(map(str, range(n)))}

    summary = pd.DataFrame([cell("snip", "none", 0.9, 82.0, 2.0, 3),
                            cell("snip", "random_labels", 0.9, 77.0, 2.0, 3),   # -5 ± 1.633, df 4: p = 0.0375
                            cell("snip", "reinit", 0.9, 81.0, math.nan, 1),     # one seed: not a tested comparison
                            cell("smart_ratio", "none", 0.9, 83.0, 1.0, 3),
                            cell("dense", "none", 0.0, 96.0, 1.0, 3)])
    plain = battery_verdicts(summary).set_index("check", drop=False)
    labels = plain[plain["comparison"] == "check"].loc["random_labels"]
    assert labels["p"] == pytest.approx(0.0375, abs=5e-4) and labels["outcome"] == "hurts" and labels["alpha"] == 0.05
    corrected = battery_verdicts(summary, correction="bonferroni")
    assert list(corrected["alpha"]) == [0.05 / 3] * 4  # random labels, reinit, random tickets, dense: 3 tested
    labels = corrected.iloc[0]
    half = stats.t.ppf(1 - 0.05 / 6, 4) * math.sqrt(8 / 3)  # the interval at 1 - 0.05/3, two-sided
    assert (labels["ci_low"], labels["ci_high"]) == pytest.approx((-5 - half, -5 + half))
    assert labels["outcome"] == "inconclusive" and "the 98.33 % CI allows a loss of up to" in labels["reading"]
    assert corrected.iloc[-1]["outcome"] == "hurts"  # plain vs dense: -14, p = 0.002, still below 0.0167


def test_the_correction_is_chosen_on_the_command_line_and_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    write_battery(tmp_path / "outputs")
    args = [str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS), "--format", "rich"]
    assert tables.main([*args, "--correction", "bonferroni"]) == 0
    printed = capsys.readouterr().out
    assert "p=0.004 vs α=0.0125" in printed  # layerwise rearrange; 4 tested comparisons (reinit has one seed)
    assert "divided by the cell's number of tested comparisons (--correction bonferroni)" in printed
    with pytest.raises(SystemExit) as refused:
        tables.main([*args, "--correction", "holm"])
    assert refused.value.code == 2 and "invalid choice: 'holm' (choose from" in capsys.readouterr().err


def test_seeds_to_decide_is_where_the_interval_would_clear_zero_or_the_margin():
    # sd 2 on both sides, +1 point, harm margin 1: decided once t(0.975, 2(n-1)) * sqrt(8/n) < max(|1|, 1 + 1)
    # n = 8: 2.1448 > 2; n = 9: 1.9987 < 2
    assert seeds_to_decide(2.0, 2.0, 1.0, margin=1.0, side="harm", at_least=4) == 9
    # the margin on the other side is no nearer than zero: only telling +1 from zero decides it (n = 32)
    assert seeds_to_decide(2.0, 2.0, 1.0, margin=1.0, side="advantage", at_least=4) == 32
    assert seeds_to_decide(2.0, 2.0, 1.0, margin=1.0, side="harm", at_least=12) == 12  # never below what ran
    assert seeds_to_decide(2.0, 2.0, 0.0, margin=0.01, side="harm") is None  # past MAX_SEEDS
    assert seeds_to_decide(2.0, math.nan, 1.0) is None


def test_verdicts_table_prints_and_writes_the_hand_computed_statistics(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    write_battery(tmp_path / "outputs")
    out = tmp_path / "tables"
    code = tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--out", str(out), "--format", "rich,csv,md", "--figures"])
    printed = capsys.readouterr().out
    assert code == 0
    rows = {(r["comparison"], r["check"]): r for r in csv.DictReader((out / "sanity_battery_verdicts.csv").open())}
    labels = rows[("check", "random_labels")]
    assert float(labels["diff"]) == pytest.approx(1.0) and float(labels["se"]) == pytest.approx(1.633, abs=1e-3)
    assert float(labels["ci_low"]) == pytest.approx(-3.534, abs=1e-3) and labels["outcome"] == "inconclusive"
    assert labels["distinguishable"] == "no" and labels["seeds_to_decide"] == "9"
    assert labels["reading"] == ("cannot tell whether random labels hurt SNIP: the 95 % CI allows a loss of up to "
                                 "3.5 points (margin 1); about 9 seeds a side would decide it at the spreads measured")
    rearrange = rows[("check", "layerwise_rearrange")]
    assert float(rearrange["diff"]) == pytest.approx(-11.0) and float(rearrange["se"]) == pytest.approx(1.291, 1e-3)
    assert rearrange["distinguishable"] == "yes" and "SNIP uses the positions within each layer" in rearrange["reading"]
    assert rows[("check", "reinit")]["distinguishable"] == "n/a"
    random = rows[("random tickets", "none")]  # -1 ± 1.291, df 50/17: (-5.16, +3.16)
    assert float(random["diff"]) == pytest.approx(-1.0) and random["distinguishable"] == "no"
    assert float(random["ci_high"]) == pytest.approx(3.155, abs=1e-3) and random["outcome"] == "inconclusive"
    assert "cannot tell whether SNIP beats random tickets: the 95 % CI allows it to be ahead by up to 3.2" in (
        random["reading"])
    dense = rows[("dense", "none")]
    assert float(dense["diff"]) == pytest.approx(-14.0) and dense["outcome"] == "hurts"
    for text in ("verdicts", "cannot tell whether random labels hurt SNIP", "+1.00 ± 1.63", "-3.53 to +5.53",
                 "layerwise rearrange hurts", "-11.00 ± 1.29", "Welch", "rules out 1 point or more",
                 "1 of 2 checks hurt it (layerwise rearrange): it passes those (it uses what they destroy); 1 cannot "
                 "tell yet (random labels: about 9 seeds a side)",
                 "no runs of random pixels+labels, half dataset, shuffled weights"):
        assert text in printed, text
    assert (out / "sanity_battery_verdicts.md").read_text().count("\n| ") >= 6
    assert (out / "sanity_battery_verdicts.png").read_bytes()[:4] == b"\x89PNG"
    # the accuracy table holds the battery's cells only: no "missing" cells of the grid's other models
    assert "missing" not in printed and "VGG19" not in printed

    # a 4-point margin: both intervals rule it out, so both read as no effect
    code = tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--out", str(out), "--format", "csv", "--margin", "4"])
    assert code == 0
    rows = {(r["comparison"], r["check"]): r for r in csv.DictReader((out / "sanity_battery_verdicts.csv").open())}
    assert rows[("check", "random_labels")]["outcome"] == "none" and rows[("check", "random_labels")][
        "reading"].startswith("random labels do not hurt: the mask does not use the labels (fails the check)")
    assert "no better than random tickets" in rows[("random tickets", "none")]["reading"]
    assert rows[("check", "random_labels")]["margin"] == "4.0000"


def test_no_check_hurting_is_a_verdict_only_when_none_is_left_inconclusive():
    base = {**FOLLOW_UP_CELL, "comparison": "check", "margin": 1.0, "seeds_to_decide": None}
    none = {**base, "check": "random_labels", "outcome": "none"}
    (line,) = summary_lines(pd.DataFrame([none, {**base, "check": "reinit", "outcome": "helps"}]), {})
    assert "none of its 2 checks hurts it by 1 point or more; 1 help it (reinit): it fails the sanity checks" in line
    line, follow_up = summary_lines(pd.DataFrame([none, {**base, "check": "reinit", "outcome": "inconclusive",
                                                         "seeds_to_decide": 14}]), {})
    assert line.endswith("no check hurts it so far; 1 cannot tell yet (reinit: about 14 seeds a side): no verdict "
                         "yet, since a check it cannot tell may still hurt it")
    assert "fails" not in line
    assert follow_up.endswith("to decide reinit (14 seeds a side, 24 new runs), add to the battery's launch "
                              "command: model=resnet8 dataset=digits ratio=0.9 sanity_check=none,reinit "
                              "'seed=range(0,14)' 'hydra.sweeper.baselines=[]'")
    # priced at the battery's own device time per run when its runs recorded one: 24 runs of 30 s, of 150 s
    rows = pd.DataFrame([none, {**base, "check": "reinit", "outcome": "inconclusive", "seeds_to_decide": 14}])
    assert "(14 seeds a side, 24 new runs, about 12 device-minutes at this battery's runs so far)" in (
        summary_lines(rows, {}, seconds_per_run=30.0)[1])
    assert "24 new runs, about 1.00 device-hours at this battery's runs so far" in (
        summary_lines(rows, {}, seconds_per_run=150.0)[1])


@pytest.mark.parametrize("margin", ["0", "-1", "inf", "wide"])
def test_a_margin_that_is_not_positive_points_is_refused(margin, capsys, tmp_path):
    assert tables.main([str(tmp_path), "--margin", margin]) == 2
    assert f"--margin={margin} is not allowed; give accuracy points above 0" in capsys.readouterr().out


def test_a_battery_of_several_cells_gets_an_overview_of_every_comparison(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    write_battery(tmp_path / "outputs")
    # the same battery at 98 %, its method 5 points lower everywhere: plain vs dense moves, no check does
    write_battery(tmp_path / "outputs", at_ratio=0.98, shift=-5.0)
    out = tmp_path / "tables"
    assert tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--out", str(out), "--format", "rich,md"]) == 0
    printed = capsys.readouterr().out
    assert "sanity_battery: verdicts at a glance" in printed
    text = (out / "sanity_battery_verdicts.md").read_text()
    glance = text[text.index("verdicts at a glance"):]
    assert "| comparison | SNIP · ResNet8 · digits · 90% | SNIP · ResNet8 · digits · 98% |" in glance
    for row in ("| random labels vs plain | +1.0 ? | +1.0 ? |", "| layerwise rearrange vs plain | -11.0 ↓ | -11.0 ↓ |",
                "| reinit vs plain | -1.0 · | -1.0 · |", "| plain vs random tickets | -1.0 ? | -1.0 ? |",
                "| plain vs dense | -14.0 ↓ | -19.0 ↓ |"):
        assert row in glance, row
    # the overview comes before the closing lines; a battery of one cell has none (its table is the overview)
    assert glance.index("| plain vs dense") < glance.index("- SNIP · ResNet8 · digits · 90%: 1 of 2 checks")
    rows = [{**FOLLOW_UP_CELL, "comparison": "check", "check": "reinit", "outcome": "none", "diff": 0.5}]
    assert overview(pd.DataFrame(rows)) is None


def test_readings_say_what_the_paper_reads_into_each_outcome():
    assert check_reading("layerwise_rearrange", "none", "SNIP").startswith(
        "layerwise rearrange does not hurt: only the per-layer ratios matter")
    assert check_reading("random_pixels_labels", "hurts", "GraSP").startswith("random pixels and labels hurt: "
                                                                              "GraSP uses the data")
    assert check_reading("half_dataset", "hurts", "LR rewinding").endswith("(passes the check)")
    assert check_reading("reinit", "none", "SNIP").endswith("(fails the check)")
    assert check_reading("layerwise_shuffle", "helps", "OBD").startswith("layerwise shuffle helps")
    assert "too few seeds" in check_reading("reinit", "unknown", "SNIP")
    assert random_ticket_reading("hurts", "GraSP").startswith("random tickets beat GraSP")


def history(run_file: Path) -> dict[str, dict]:
    """The logged values of an offline run, {key: {field: value}} (wandb records a media value field by field,
    under a nested key [key, field])."""
    logged: dict[str, dict] = {}
    for record in read_records(run_file):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key, *field = [item.key] if item.key else list(item.nested_key)
                logged.setdefault(key, {})[".".join(field)] = json.loads(item.value_json)
    return logged


def test_tables_and_verdicts_are_logged_to_the_sweeps_wandb_group_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    write_battery(tmp_path / "outputs")
    write_battery(tmp_path / "outputs", at_ratio=0.98, shift=-5.0)  # a second cell: an overview to log
    code = tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--out", str(tmp_path / "tables"), "--format", "csv", "--figures", "--wandb", "offline"])
    printed = capsys.readouterr().out
    assert code == 0 and "wandb (offline)" in printed
    (run_file,) = sorted((tmp_path / "wb").glob("wandb/offline-run-*/run-*.wandb"))
    run = run_summary(run_file)
    assert run["group"] == "sanity_battery" and run["job_type"] == "tables" and run["exit_code"] == 0
    logged = history(run_file)
    assert logged["sanity_battery_verdicts"]["_type"] == "table-file"
    assert logged["sanity_battery"]["_type"] == "table-file"
    assert logged["figures/sanity_battery_verdicts"]["_type"] == "image-file"
    def logged_table(key: str) -> dict:
        return json.loads((run_file.parent / "files" / logged[key]["path"]).read_text())

    table = logged_table("sanity_battery_verdicts")
    assert "reading" in table["columns"] and len(table["data"]) == 2 * 5
    glance = logged_table("sanity_battery_verdicts_overview")  # comparison x cell
    assert glance["columns"][0] == "comparison" and len(glance["columns"]) == 1 + 2 and len(glance["data"]) == 5
    # the two cells need the same runs (random tickets to 7 seeds, random labels to 9): one row each, joined
    follow = logged_table("sanity_battery_follow_ups")
    rows = [dict(zip(follow["columns"], row, strict=True)) for row in follow["data"]]
    assert [(r["ratios"], r["decides"], r["seeds_a_side"], r["new_runs"]) for r in rows] == [
        ("0.9,0.98", "plain vs random tickets", 7, 16), ("0.9,0.98", "random labels", 9, 16)]

    monkeypatch.setenv("WANDB_MODE", "disabled")  # WANDB_MODE=disabled wins over the flag
    code = tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--format", "rich", "--wandb", "offline"])
    assert code == 0 and "WANDB_MODE=disabled, nothing logged" in capsys.readouterr().out


def test_a_tiny_battery_runs_end_to_end_and_its_verdicts_print(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    battery = ["pruner=snip", "ratio=0.9", "seed=0,1", "sanity_check=none,layerwise_rearrange,half_dataset",
               "schedule.epochs=1", "trainer.limit_train_batches=2", "dataset.samples_per_class=2"]
    proc = train_py(["-m", "sweep=sanity_battery", *NARROW, *battery], cwd=tmp_path, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "jackpot: dropped 2 jobs (hydra.sweeper.drop_inapplicable): sanity_check=half_dataset" in out
    results = [json.loads(p.read_text()) for p in (tmp_path / "outputs" / "sanity_battery").rglob("results.json")]
    cells = sorted((r["cell"]["pruner"], r["cell"]["sanity_check"], r["cell"]["ratio"], r["cell"]["seed"])
                   for r in results)
    assert cells == sorted([(p, c, r, s) for p, c, r in [("snip", "none", 0.9), ("snip", "layerwise_rearrange", 0.9),
                                                          ("smart_ratio", "none", 0.9), ("dense", "none", 0.0)]
                            for s in (0, 1)])
    assert all(r["status"] == "complete" for r in results)
    code = tables.main([str(tmp_path / "outputs"), "--sweep", "sanity_battery", "--sweeps-dir", str(SWEEPS),
                        "--format", "rich"])
    printed = capsys.readouterr().out
    assert code == 0
    for text in ("sanity_battery: verdicts", "layerwise rearrange vs plain", "plain vs random tickets",
                 "plain vs dense", "SNIP · ResNet8 · digits · 90%"):
        assert text in printed, text

    # Two rows left inconclusive, each needing 3 seeds a side: the follow-up overrides, added to the battery's
    # launch command, run seed 2 of exactly the cells those rows compare (not the dense network's, decided)
    rows = [{**FOLLOW_UP_CELL, "comparison": "check", "check": "layerwise_rearrange", "outcome": "inconclusive"},
            {**FOLLOW_UP_CELL, "comparison": "random tickets", "check": "none", "outcome": "inconclusive"},
            {**FOLLOW_UP_CELL, "comparison": "dense", "check": "none", "outcome": "hurts", "seeds_to_decide": None}]
    (step,) = follow_ups(pd.DataFrame(rows))
    assert step.seeds == 3 and step.new_runs == 3
    jobs, _ = dry_run(tmp_path, *battery, *shlex.split(step.overrides))
    assert sorted((job["pruner"], job["sanity_check"], job["seed"]) for job in jobs) == [
        ("smart_ratio", "none", "2"), ("snip", "layerwise_rearrange", "2"), ("snip", "none", "2")]


def test_follow_ups_keep_the_seeds_run_add_the_smallest_free_ones_and_split_by_seed_count():
    row = {**FOLLOW_UP_CELL, "comparison": "check", "check": "reinit", "outcome": "inconclusive",
           "seeds": "0,1", "ref_seeds": "0,5", "seeds_to_decide": 4}
    (step,) = follow_ups(pd.DataFrame([row]))
    assert step.overrides == ("model=resnet8 dataset=digits ratio=0.9 sanity_check=none,reinit "
                              "seed=0,1,2,5 'hydra.sweeper.baselines=[]'")
    assert (step.rows, step.seeds, step.new_runs) == (("reinit",), 4, 2 + 2)  # plain lacks 1, 2; reinit 2, 5
    dense = {**row, "comparison": "dense", "check": "none", "seeds": "0,5", "ref_seeds": "0,1,2"}
    (step,) = follow_ups(pd.DataFrame([dense]))
    assert step.overrides.endswith("sanity_check=none seed=0,1,2,5 "
                                   "'hydra.sweeper.baselines=[[\"pruner=dense\",\"sanity_check=none\",\"ratio=0.0\"]]'")
    assert step.rows == ("plain vs dense",) and step.new_runs == 2 + 1
    assert follow_ups(pd.DataFrame([{**row, "outcome": "none"}])) == []
    assert follow_ups(pd.DataFrame([{**row, "seeds_to_decide": None}])) == []  # out of reach: no command
    # a row out of reach (its spread too wide for the margin) is left out; the one within reach is run
    wide = {**row, "check": "random_labels", "seeds_to_decide": None}
    assert [s.rows for s in follow_ups(pd.DataFrame([wide, row]))] == [("reinit",)]
    # rows needing different seed counts get their own overrides, fewest seeds first; the plain runs the first
    # adds are not counted again
    plain = {**FOLLOW_UP_CELL, "comparison": "check", "outcome": "inconclusive", "seeds": "0,1,2",
             "ref_seeds": "0,1,2"}
    steps = follow_ups(pd.DataFrame([{**plain, "check": "random_labels", "seeds_to_decide": 9},
                                     {**plain, "check": "reinit", "seeds_to_decide": 5},
                                     {**plain, "check": "layerwise_shuffle", "seeds_to_decide": 5}]))
    assert [(s.rows, s.seeds, s.new_runs) for s in steps] == [
        (("reinit", "shuffled weights"), 5, 2 + 2 + 2), (("random labels",), 9, 4 + 6)]
    assert "sanity_check=none,random_labels 'seed=range(0,9)'" in steps[1].overrides


def test_cells_that_need_the_same_runs_share_one_set_of_overrides():
    """A paper-scale battery has six cells: those needing the same checks, baselines and seeds join into one line
    when they form a full grid (a sweep runs exactly that grid), else per model and dataset across ratios."""
    def step(model, ratio, checks=("reinit",)):
        return FollowUp(method="snip", models=(model,), datasets=("cifar10",), ratios=(ratio,), checks=checks,
                        baselines=(), seed_list=(0, 1, 2, 3, 4), rows=tuple(checks), new_runs=4)

    grid = merged([step(m, r) for m in ("resnet32", "vgg19") for r in (0.98, 0.9)])
    assert len(grid) == 1 and grid[0].new_runs == 16
    assert grid[0].overrides.startswith("model=resnet32,vgg19 dataset=cifar10 ratio=0.9,0.98 sanity_check=none,reinit")
    # VGG19 at 98 % needs another check: the rest is no full grid, so one line per model across its ratios
    lines = merged([step("resnet32", 0.9), step("resnet32", 0.98), step("vgg19", 0.9),
                    step("vgg19", 0.98, ("random_labels",))])
    assert sorted(s.overrides.split(" sanity_check")[0] for s in lines) == [
        "model=resnet32 dataset=cifar10 ratio=0.9,0.98", "model=vgg19 dataset=cifar10 ratio=0.9",
        "model=vgg19 dataset=cifar10 ratio=0.98"]
    assert sum(s.new_runs for s in lines) == 16


def test_wandb_mode_comes_from_the_flag_then_wandb_mode(monkeypatch, capsys):
    from jackpot.tables.wandb_log import FROM_ENV, resolve_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode(FROM_ENV) == "online" and resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode(FROM_ENV) == "offline" and resolve_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("online") == "disabled"
    assert tables.main(["outputs", "--wandb=bogus"]) == 2
    assert "--wandb=bogus is not allowed; choose online or offline" in capsys.readouterr().out
