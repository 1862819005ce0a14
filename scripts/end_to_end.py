"""End-to-end cost of real `train.py` runs, and the GPU-hours of each sweep file projected from them.

For: whoever sizes a reproduction (issue #19). Step throughput alone (docs/benchmarks.md) leaves out process
start (imports, CUDA initialisation), each run's set-up (data, model, scoring, loggers) and teardown, which a
launcher pays once per job. This script measures all of them on real jobs and full-size generated CIFAR:

  per-epoch time  = (wall_time_s(E2) - wall_time_s(E1)) / (E2 - E1)   from results.json, same cell, two lengths
  set-up in a run = wall_time_s(E1) - E1 * per-epoch time
  process start   = the process's wall time - wall_time_s                (imports, CUDA, teardown)
  per job in a -m sweep of K jobs = the sweep's wall time / K

then projects each sweep in multirun_sweeps/ (its jobs composed as Hydra would, shared dense trunks and IMP rounds
counted once, at their epochs) to hours, one run at a time.

  python scripts/end_to_end.py --out e2e.json                       # on a GPU: vgg19, resnet32, 1 and 3 epochs
  python scripts/end_to_end.py --models resnet8 --epochs 1,2 --train 2000 --test 500 --sweep-jobs 2   # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSTER_SWEEPS = ("dense", "random_tickets", "hybrid_tickets", "partially_trained", "partially_trained_lottery")


def run_train(args: list[str], cwd: Path) -> float:
    """Run `train.py args` and return its process wall time; stop on failure, showing its end."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def results_of(root: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "outputs" / name).rglob("results.json"))]


def measure_model(model: str, data: Path, work: Path, epochs: tuple[int, int], sweep_jobs: int,
                  extra: list[str]) -> dict:
    """Per-epoch time, set-up inside a run and process start for one model, plus the per-job wall of a sweep."""
    common = [f"model={model}", "dataset=cifar10", "pruner=smart_ratio", "ratio=0.98", f"dataset.root={data}",
              "dataset.verify_md5=false", "dataset.download=false", f"paths.root_dir={work}", *extra]
    walls, inside = {}, {}
    for e in epochs:
        walls[e] = run_train([*common, f"schedule.epochs={e}", f"name=e2e-{model}-{e}"], work)
        (result,) = results_of(work, f"e2e-{model}-{e}")
        inside[e] = float(result["wall_time_s"])
    e1, e2 = epochs
    per_epoch = (inside[e2] - inside[e1]) / (e2 - e1)
    setup = inside[e1] - e1 * per_epoch
    start = statistics.mean(walls[e] - inside[e] for e in epochs)
    seeds = ",".join(str(s) for s in range(10, 10 + sweep_jobs))
    sweep_wall = run_train(["-m", *common, f"schedule.epochs={e1}", f"seed={seeds}", f"name=e2e-sweep-{model}"], work)
    per_job = sweep_wall / sweep_jobs
    return {"model": model, "epoch_s": per_epoch, "setup_s": setup, "process_start_s": start,
            "sweep_job_s": per_job, "sweep_job_outside_epochs_s": per_job - e1 * per_epoch,
            "runtime": result.get("runtime", {})}


def sweep_jobs(name: str) -> list:
    """Each job of a sweep file as Hydra would compose it (file grid, no command-line narrowing)."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        params = compose(config_name="train", overrides=[f"sweep={name}"], return_hydra_config=True).hydra.sweeper
        grid = [f"{k}={v}" for k, v in params.params.items()]
        parsed = OverridesParser.create().parse_overrides(grid)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]
        return [compose(config_name="train", overrides=[f"sweep={name}", *job]) for job in jobs]


def project(names: list[str], costs: dict[str, dict]) -> dict:
    """Hours of each sweep (and of `names` together, shared cells and trunks once), one run at a time."""
    from jackpot.runs.cache_keys import pretrain_epochs, shared_work

    def cell(cfg) -> tuple:
        return (cfg.model.name, cfg.dataset.name, cfg.pruner.name, cfg.sanity_check.name, float(cfg.ratio), cfg.seed)

    def hours(cfgs: list, seen_cells: set, seen_work: set) -> tuple[float, int, int]:
        total, runs, work = 0.0, 0, 0
        for cfg in cfgs:
            cost = costs.get(cfg.model.name) or next(iter(costs.values()))
            overhead = cost["process_start_s"] + cost["setup_s"]
            for key in shared_work(cfg):
                if key not in seen_work:
                    seen_work.add(key)
                    total += overhead + pretrain_epochs(cfg) * cost["epoch_s"]
                    work += 1
            if cell(cfg) not in seen_cells:
                seen_cells.add(cell(cfg))
                total += overhead + int(cfg.schedule.epochs) * cost["epoch_s"]
                runs += 1
        return total / 3600, runs, work

    report, together_cells, together_work = {}, set(), set()
    for name in names:
        cfgs = sweep_jobs(name)
        alone, runs, work = hours(cfgs, set(), set())
        report[name] = {"hours": alone, "runs": runs, "trunks_and_rounds": work}
        hours(cfgs, together_cells, together_work)
    together = [cfg for name in POSTER_SWEEPS if name in names for cfg in sweep_jobs(name)]
    report["poster tables together"] = dict(zip(("hours", "runs", "trunks_and_rounds"),
                                                hours(together, set(), set()), strict=True))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg19,resnet32")
    parser.add_argument("--epochs", default="1,3", help="two run lengths E1,E2 (per-epoch time from the difference)")
    parser.add_argument("--sweep-jobs", type=int, default=4)
    parser.add_argument("--train", type=int, default=50_000, help="generated CIFAR-10 training images")
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--extra", default="", help="more overrides for every run, space-separated")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from jackpot.data.fake_cifar import write_fake_cifar

    e1, e2 = (int(e) for e in args.epochs.split(","))
    with tempfile.TemporaryDirectory(prefix="jackpot-e2e-") as tmp:
        work, data = Path(tmp), Path(tmp) / "data"
        write_fake_cifar(data, "cifar10", n_train=args.train, n_test=args.test)
        costs = {}
        for model in args.models.split(","):
            print(f"measuring {model}: runs of {e1} and {e2} epochs, then a sweep of {args.sweep_jobs}", flush=True)
            costs[model] = measure_model(model, data, work, (e1, e2), args.sweep_jobs, args.extra.split())
            c = costs[model]
            print(f"  {model}: epoch {c['epoch_s']:.2f} s, set-up in a run {c['setup_s']:.1f} s, process start and "
                  f"end {c['process_start_s']:.1f} s, per job in a sweep {c['sweep_job_s']:.1f} s "
                  f"({c['sweep_job_outside_epochs_s']:.1f} s outside its epochs)", flush=True)
    names = sorted(p.stem for p in (REPO / "multirun_sweeps").glob("*.yaml") if p.stem != "quickstart")
    projection = project(names, costs)
    print("\nprojected hours, one run at a time (160 epochs per ticket, shared trunks once):")
    for name, row in projection.items():
        print(f"  {name:28s} {row['hours']:7.1f} h  ({row['runs']} runs, {row['trunks_and_rounds']} trunks/rounds)")
    if args.out:
        args.out.write_text(json.dumps({"costs": costs, "projection": projection}, indent=2))


if __name__ == "__main__":
    main()
