"""`python -m jackpot.bench` runs on a CPU in seconds and prints every row: a test of the script, not of speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jackpot.bench import cli, config, packing, report, variants


def _env() -> dict[str, str]:
    # one intra-op thread: tiny nets on a shared 2-core runner only lose time to OpenMP contention
    return {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _bench(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jackpot.bench", *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def test_tiny_bench_prints_every_row(tmp_path: Path) -> None:
    out, err = tmp_path / "bench.json", tmp_path / "bench.err"
    # scoring in float64: the offload modes' scores must then agree exactly (below); float32 would compare noise
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "jackpot.bench", "--tiny", "--score-dtype", "float64",
                                 "--json", str(out)], stdout=subprocess.PIPE, stderr=stderr, text=True, env=_env())
        first = proc.stdout.readline()
        # the header is flushed before anything is measured: a pipe or file fills while the run works
        running_after_first_line = proc.poll() is None
        stdout = first + proc.stdout.read()
        proc.wait(timeout=600)
    assert proc.returncode == 0, err.read_text()[-3000:]
    assert first.startswith("jackpot.bench  model=resnet8") and running_after_first_line
    for row in report.REPORT_ROWS:
        assert row in stdout, f"missing row {row!r} in\n{stdout}"
    # each section's rows are printed as it ends, before the next one is announced
    order = ["measuring throughput", "round 3/3:", "(a) bare loop", "measuring scoring", "SNIP  N=",
             "measuring framework overhead", "stock Lightning "]
    places = [stdout.find(s) for s in order]
    assert -1 not in places and places == sorted(places), stdout
    assert stdout.rstrip().splitlines()[-1].endswith(" done"), stdout

    res = json.loads(out.read_text())
    tp = res["throughput"]
    assert set(tp["variants"]) == {"a", "b", "b_mask", "c"}
    assert all(v["img_per_s"] > 0 and len(v["ms_per_step_rounds"]) == 2 for v in tp["variants"].values())
    assert tp["mask_exact_after_c"] is True
    assert tp["c_steps"] == {"replayed": 0, "eager": 4, "not_recorded_because": None}  # CPU: all eager
    # On CUDA (c) also runs with the step not recorded; its row reads the same result fields
    tp["variants"]["c_eager"], tp["ratio_c_over_c_eager_speed"] = dict(tp["variants"]["c"]), 1.25
    assert "(c) with --cuda-graph off" in report.format_report(config.tiny_config(), res)
    assert "recording the step: 1.25x" in report.format_report(config.tiny_config(), res)
    assert set(tp["projection_h"]) >= {"a", "b", "c"} and tp["eval_img_per_s"] > 0
    runs = res["scoring"]["runs"]
    assert sorted((r["method"], r["offload"], r["on_disk"]) for r in runs) == [
        ("grasp", "disk", True), ("grasp", "none", False), ("snip", "disk", True), ("snip", "none", False)]
    assert all(r["seconds"] > 0 and r["peak_gib"] > 0 and r["n"] == 20 for r in runs)
    agreement = res["scoring"]["agreement"]  # the disk path's scores are the in-memory path's
    assert sorted(a["method"] for a in agreement) == ["grasp", "snip"]
    # Measured (2-core Xeon, 1 thread), disk vs in-memory, largest difference over the largest score, seeds 0-4:
    #   OMP_NUM_THREADS=1 python -m jackpot.bench --tiny --skip throughput,overhead --score-dtype D --seed S
    # float64: SNIP 2.6-5.6e-15, GraSP 1.3-2.5e-15, no kept weight decided differently (the bound below leaves
    # 5 orders of magnitude for other CPUs' summation orders). float32: SNIP 0.9-1.7e-6, GraSP 0.4-0.8e-6 but
    # 1.5e-3 at seed 0 with 4 of 1,549 kept weights flipped, where float64 agrees to 2e-15: rounding noise of
    # two computation orders with outliers, no bound a test can hold. A real bug moves scores by O(1).
    assert all(a["max_rel_diff"] < 1e-9 and a["mask_differences"] == 0 and a["kept"] > 0 for a in agreement)
    rows = res["overhead"]["rows"]
    assert list(rows) == ["bare", "stock Lightning", "jackpot K=2", "jackpot K=1"]
    assert all(r["ms"] > 0 for r in rows.values())


def test_bench_uses_jackpots_trainer_defaults() -> None:
    """(c) is built from conf/trainer/default.yaml, overridden only where the benchmark must choose."""
    settings = variants.trainer_settings(config.tiny_config()).trainer
    assert settings.enable_progress_bar is False and settings.log_every_n_steps == 50
    shipped = variants.TRAINER_DEFAULTS
    assert config.BenchConfig().steps_per_call == shipped["steps_per_call"]  # (c) is jackpot as it ships
    assert settings.steps_per_call == config.tiny_config().steps_per_call  # unless the bench says otherwise
    assert settings.cuda_graph == config.BenchConfig().cuda_graph == shipped["cuda_graph"] == "auto"
    off = variants.trainer_settings(config.BenchConfig(cuda_graph="off")).trainer
    assert off.cuda_graph is False  # jackpot.train.make_module builds (c) from these settings
    assert settings.accelerator == "cpu" and settings.precision == "32-true"
    assert config.BenchConfig(device="cuda").resolved_precision() == "bf16-mixed"


def test_bench_reads_the_checkout_trainer_config() -> None:
    """In a checkout (c) reads conf/trainer/default.yaml; the installed-package fallback holds the same values."""
    from omegaconf import OmegaConf

    assert variants.TRAINER_DEFAULTS_FILE.is_file(), variants.TRAINER_DEFAULTS_FILE
    assert OmegaConf.to_container(OmegaConf.load(variants.TRAINER_DEFAULTS_FILE)) == variants.TRAINER_DEFAULTS


def test_cli_flags_reach_the_config() -> None:
    ns = cli.build_parser().parse_args(["--model", "vgg19", "--compile-mode", "reduce-overhead", "--steps-per-call",
                                     "8", "--skip", "scoring,overhead", "--score-classes", "10,100",
                                     "--cuda-graph", "off"])
    cfg = cli.config_from_args(ns)
    assert (cfg.model, cfg.compile, cfg.compile_mode, cfg.steps_per_call) == ("vgg19", True, "reduce-overhead", 8)
    assert cfg.skip == ("scoring", "overhead") and cfg.score_classes == (10, 100)
    assert cfg.cuda_graph == "off"


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "8", "--skip", "scoring,overhead"], "--steps 8 times no step: with --warmup 3 and 8 optimizer "
                                                     "steps per Lightning step it needs at least 9"),
    (["--overhead-steps", "2", "--skip", "throughput,scoring"], "--overhead-steps 2 times no step"),
    (["--skip", "scoring,overheads"], "--skip: unknown section(s) overheads; allowed: throughput, scoring, overhead"),
    (["--warmup", "0"], "--warmup 0 and --steps-per-call 8 must be at least 1"),
    (["pack", "--steps", "8"], "--steps 8 times no step"),
    (["--score-offload", "auto,ram"], "--score-offload: unknown mode(s) ram; allowed: auto, disk, none"),
])
def test_settings_that_would_time_nothing_are_refused_first(args: list[str], message: str, capsys) -> None:
    """The CLI's own main, in process (`python -m jackpot.bench` is that call: the tiny-bench test runs it)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    printed = capsys.readouterr()
    assert exit_info.value.code == 2 and message in printed.err, printed.err[-2000:]
    assert printed.err.startswith("usage:") and "img/s" not in printed.out  # nothing ran


def test_the_timer_starts_at_the_first_chunk_end_after_warm_up() -> None:
    assert [config.untimed_steps(3, k) for k in (1, 2, 3, 8)] == [3, 4, 3, 8]
    config.check_config(config.tiny_config())  # the test's own setting times steps
    config.check_config(config.BenchConfig())  # and so do the defaults (GPU, --full)
    config.check_config(config.quick_config())  # and the CPU's


@pytest.mark.parametrize(("args", "preset", "model", "steps", "warmup"), [
    ([], "quick", "resnet8", 24, 3),  # a CPU run without flags: a few minutes on 2 cores
    (["--full"], "full", "resnet32", 50, 3),  # the paper-size settings the recorded CPU figures used
    (["--device", "cuda"], "full", "resnet32", 50, 10),  # a GPU keeps the fuller settings
    (["--model", "vgg19", "--steps", "30"], "quick", "vgg19", 30, 3),  # flags still win over the quick defaults
    (["--tiny"], "tiny", "resnet8", 4, 1),
])
def test_defaults_follow_the_device(args: list[str], preset: str, model: str, steps: int, warmup: int) -> None:
    cfg = cli.config_from_args(cli.build_parser().parse_args(args))
    assert (cfg.preset, cfg.model, cfg.steps, cfg.warmup) == (preset, model, steps, warmup)
    assert cfg.score_classes == ((10, 100) if preset == "full" else (10,))
    # the lean disk path against the in-memory one; a GPU has no disk path
    assert cfg.score_offload == (("auto", "none") if "cuda" in args else ("disk", "none"))


def test_tiny_and_full_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--tiny", "--full"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_allocator_comparison_runs(tmp_path: Path) -> None:
    out = tmp_path / "malloc.json"
    proc = _bench(["malloc", "--steps", "6", "--rounds", "1", "--batch", "16", "--json", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["tuned"]["ms_per_step"] > 0 and res["default"]["ms_per_step"] > 0
    assert "CPU allocator" in proc.stdout


@pytest.mark.slow
def test_packing_runs_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "pack.json"
    proc = _bench(["pack", "--procs", "2", "--model", "tinyconv", "--batch", "16", "--steps", "12", "--window", "1",
                   "--json", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["one"]["procs"] == 1 and len(res["many"]["children"]) == 2 and res["speedup"] > 0
    # each child's torch threads are its share of the cores, as a launcher's num_cpus gives them
    cores = packing.usable_cores()
    assert [c["threads"] for c in res["one"]["children"]] == [cores]
    assert [c["threads"] for c in res["many"]["children"]] == [max(1, cores // 2)] * 2
