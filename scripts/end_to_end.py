"""End-to-end cost of real `train.py` runs, and the GPU-hours of each sweep file projected from them.

For: whoever sizes a reproduction (issue #19). Step throughput alone (docs/benchmarks.md) leaves out process
start (imports, CUDA initialisation), each run's set-up (data, model, scoring, loggers) and teardown, which a
launcher pays once per job. This script measures all of them on real jobs and full-size generated CIFAR:

  per-epoch time  = (wall_time_s(E2) - wall_time_s(E1)) / (E2 - E1)   from results.json, same cell, two lengths
  set-up in a run = wall_time_s(E1) - E1 * per-epoch time
  process start   = the process's wall time - wall_time_s                (imports, CUDA, teardown), split by
                    results.json's started_at / finished_at into before the run and after it
  per job in a -m sweep of K jobs = the sweep's wall time / K         (--sweep-jobs K, one process, no packs)
  packs (--pack K): -m sweeps of K jobs as one pack (hydra.sweeper.pack=K), at the two lengths:
    per-epoch time of a run in a pack = (wall(E2) - wall(E1)) / ((E2 - E1) * K), so the pack's speed-up is
    the per-epoch time alone / that; the rest of the pack's wall, per run, is its overhead

then projects each sweep in multirun_sweeps/ (its jobs composed as Hydra would, shared dense trunks and IMP rounds
counted once, at their epochs) to hours: one run at a time, and K runs to a GPU in packs.

  python scripts/end_to_end.py --out e2e.json           # on a GPU: vgg19, resnet32, 1 and 3 epochs, packs of 4
  python scripts/end_to_end.py --project-from docs/e2e_h200_issue19.json      # the projection alone
  python scripts/end_to_end.py --models resnet8 --pack-models resnet8 --epochs 1,2 --train 2000 --test 500 \
      --pack 2 --pack-side-by-side true                 # CPU smoke
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


LAST_PROCESS: dict[str, float] = {}  # wall-clock spawn and exit of the latest train.py process


def run_train(args: list[str], cwd: Path) -> float:
    """Run `train.py args` and return its process wall time; stop on failure, showing its end."""
    LAST_PROCESS["spawned_at"] = time.time()
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    wall = time.perf_counter() - began
    LAST_PROCESS["exited_at"] = time.time()
    if proc.returncode != 0:
        sys.exit(f"train.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def results_of(root: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / "outputs" / name).rglob("results.json"))]


def measured_cell(model: str, data: Path, work: Path) -> list[str]:
    """The overrides of every measured run: random tickets at 98 % on the generated CIFAR-10, outputs in `work`."""
    return [f"model={model}", "dataset=cifar10", "pruner=smart_ratio", "ratio=0.98", f"dataset.root={data}",
            "dataset.verify_md5=false", "dataset.download=false", f"paths.root_dir={work}"]


def measure_model(model: str, data: Path, work: Path, epochs: tuple[int, int], sweep_jobs: int,
                  extra: list[str], cold_first: bool = False) -> dict:
    """Per-epoch time, set-up inside a run and process start for one model, plus the per-job wall of a sweep."""
    common = [*measured_cell(model, data, work), *extra]
    walls, inside = {}, {}
    cold = None
    if cold_first:  # a first run fills the caches (compile); the two lengths then both find them warm
        cold = run_train([*common, f"schedule.epochs={epochs[0]}", f"name=e2e-{model}-cold"], work)
    before, after = [], []
    for e in epochs:
        walls[e] = run_train([*common, f"schedule.epochs={e}", f"name=e2e-{model}-{e}"], work)
        (result,) = results_of(work, f"e2e-{model}-{e}")
        inside[e] = float(result["wall_time_s"])
        before.append(result["started_at"] - LAST_PROCESS["spawned_at"])  # Python, imports, Hydra, CUDA start-up
        after.append(LAST_PROCESS["exited_at"] - result["finished_at"])  # summary, teardown, interpreter exit
    e1, e2 = epochs
    per_epoch = (inside[e2] - inside[e1]) / (e2 - e1)
    setup = inside[e1] - e1 * per_epoch
    start = statistics.mean(walls[e] - inside[e] for e in epochs)
    costs = {"model": model, "epoch_s": per_epoch, "setup_s": setup, "process_start_s": start,
             "before_run_s": statistics.mean(before), "after_run_s": statistics.mean(after),
             "runtime": result.get("runtime", {})}
    if cold is not None:
        costs["cold_extra_s"] = cold - walls[e1]  # what the first run of a sweep pays on top (a cold compile)
    if sweep_jobs:
        seeds = ",".join(str(s) for s in range(10, 10 + sweep_jobs))
        sweep_wall = run_train(["-m", *common, f"schedule.epochs={e1}", f"seed={seeds}", f"name=e2e-sweep-{model}",
                                "hydra.sweeper.pack=1"], work)
        costs["sweep_job_s"] = sweep_wall / sweep_jobs
        costs["sweep_job_outside_epochs_s"] = costs["sweep_job_s"] - e1 * per_epoch
    return costs


def measure_pack(model: str, data: Path, work: Path, epochs: tuple[int, int], size: int, side_by_side: str,
                 alone_epoch_s: float, extra: list[str]) -> dict:
    """A pack of `size` runs (a -m sweep with hydra.sweeper.pack=size) at both lengths: per-epoch time of a run
    in it, its speed-up over a run alone, and its overhead (process start, set-up) per run."""
    common = [*measured_cell(model, data, work), f"seed={','.join(str(s) for s in range(20, 20 + size))}",
              f"hydra.sweeper.pack={size}",
              f"hydra.sweeper.pack_side_by_side={side_by_side}", *extra]
    walls = {e: run_train(["-m", *common, f"schedule.epochs={e}", f"name=e2e-pack-{model}-{e}"], work)
             for e in epochs}
    e1, e2 = epochs
    epoch_s = (walls[e2] - walls[e1]) / ((e2 - e1) * size)
    return {"model": model, "size": size, "epoch_s": epoch_s, "speedup": alone_epoch_s / epoch_s,
            "overhead_per_run_s": walls[e1] / size - e1 * epoch_s, "walls_s": walls}


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


def project(names: list[str], costs: dict[str, dict], packs: dict[str, dict] | None = None) -> dict:
    """Hours of each sweep (and of the poster's sweeps together, shared cells and trunks once): one run at a
    time, and, with `packs` (measured per model; a model not measured takes another's speed-up), in packs."""
    from jackpot.runs.cache_keys import pretrain_epochs, shared_work

    def cell(cfg) -> tuple:
        return (cfg.model.name, cfg.dataset.name, cfg.pruner.name, cfg.sanity_check.name, float(cfg.ratio), cfg.seed)

    def packed(model: str) -> tuple[float, float]:
        """(overhead, epoch) seconds per run of `model` in a pack."""
        cost = costs.get(model) or next(iter(costs.values()))
        pack = packs.get(model) or next(iter(packs.values()))
        return pack["overhead_per_run_s"], cost["epoch_s"] / pack["speedup"]

    def alone(model: str) -> tuple[float, float]:
        cost = costs.get(model) or next(iter(costs.values()))
        return cost["process_start_s"] + cost["setup_s"], cost["epoch_s"]

    def hours(cfgs: list, per_run) -> tuple[float, int, int]:
        total, runs, work, seen_cells, seen_work = 0.0, 0, 0, set(), set()
        for cfg in cfgs:
            overhead, epoch = per_run(cfg.model.name)
            for key in shared_work(cfg):
                if key not in seen_work:
                    seen_work.add(key)
                    total += overhead + pretrain_epochs(cfg) * epoch
                    work += 1
            if cell(cfg) not in seen_cells:
                seen_cells.add(cell(cfg))
                total += overhead + int(cfg.schedule.epochs) * epoch
                runs += 1
        return total / 3600, runs, work

    report = {}
    jobs = {name: sweep_jobs(name) for name in names}
    jobs["poster tables together"] = [cfg for name in POSTER_SWEEPS if name in names for cfg in jobs[name]]
    for name, cfgs in jobs.items():
        one, runs, work = hours(cfgs, alone)
        report[name] = {"hours": one, "runs": runs, "trunks_and_rounds": work}
        if packs:
            report[name]["hours_packed"] = hours(cfgs, packed)[0]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg19,resnet32")
    parser.add_argument("--epochs", default="1,3", help="two run lengths E1,E2 (per-epoch time from the difference)")
    parser.add_argument("--sweep-jobs", type=int, default=0, help="also a -m sweep of this many jobs, unpacked")
    parser.add_argument("--pack", type=int, default=4, help="runs per pack (0: no pack measured)")
    parser.add_argument("--pack-models", default="resnet32", help="the models whose packs are measured")
    parser.add_argument("--pack-side-by-side", default="auto", help="hydra.sweeper.pack_side_by_side")
    parser.add_argument("--train", type=int, default=50_000, help="generated CIFAR-10 training images")
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--cold-first", action="store_true",
                        help="one more run first, filling the caches (compile); its extra time is reported")
    parser.add_argument("--extra", default="", help="more overrides for every run, space-separated")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--project-from", type=Path, default=None,
                        help="measure nothing: project from the figures of an earlier --out (costs, packs)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    if args.project_from:
        figures = json.loads(args.project_from.read_text())
        print_projection(figures["costs"], figures.get("packs") or {}, args.pack)
        return
    from jackpot.data.fake_cifar import write_fake_cifar

    e1, e2 = (int(e) for e in args.epochs.split(","))
    with tempfile.TemporaryDirectory(prefix="jackpot-e2e-") as tmp:
        work, data = Path(tmp), Path(tmp) / "data"
        write_fake_cifar(data, "cifar10", n_train=args.train, n_test=args.test)
        costs, packs = {}, {}
        for model in args.models.split(","):
            print(f"measuring {model}: runs of {e1} and {e2} epochs", flush=True)
            costs[model] = measure_model(model, data, work, (e1, e2), args.sweep_jobs, args.extra.split(),
                                         args.cold_first)
            c = costs[model]
            line = (f"  {model}: epoch {c['epoch_s']:.2f} s, set-up in a run {c['setup_s']:.1f} s, process start and "
                    f"end {c['process_start_s']:.1f} s ({c['before_run_s']:.1f} s before the run, "
                    f"{c['after_run_s']:.1f} s after it)")
            if "cold_extra_s" in c:
                line += f", the first run {c['cold_extra_s']:.1f} s more (cold caches)"
            if "sweep_job_s" in c:
                line += (f", per job in a sweep of {args.sweep_jobs} {c['sweep_job_s']:.1f} s "
                         f"({c['sweep_job_outside_epochs_s']:.1f} s outside its epochs)")
            print(line, flush=True)
        for model in args.pack_models.split(",") if args.pack > 1 else []:
            print(f"measuring packs of {args.pack} {model} runs at {e1} and {e2} epochs", flush=True)
            packs[model] = pack = measure_pack(model, data, work, (e1, e2), args.pack, args.pack_side_by_side,
                                               costs[model]["epoch_s"], args.extra.split())
            print(f"  {model}: epoch of a run in a pack of {args.pack} {pack['epoch_s']:.2f} s, "
                  f"{pack['speedup']:.2f}x a run alone; overhead {pack['overhead_per_run_s']:.1f} s per run",
                  flush=True)
    projection = print_projection(costs, packs, args.pack)
    if args.out:
        args.out.write_text(json.dumps({"costs": costs, "packs": packs, "projection": projection}, indent=2))


def print_projection(costs: dict[str, dict], packs: dict[str, dict], size: int) -> dict:
    names = sorted(p.stem for p in (REPO / "multirun_sweeps").glob("*.yaml") if p.stem != "quickstart")
    projection = project(names, costs, packs)
    print("\nprojected hours (160 epochs per ticket, shared trunks once): one run at a time"
          + (f" | {size} to a GPU in packs" if packs else ""))
    for name, row in projection.items():
        packed = f" | {row['hours_packed']:7.1f} h" if "hours_packed" in row else ""
        print(f"  {name:28s} {row['hours']:7.1f} h{packed}  ({row['runs']} runs, "
              f"{row['trunks_and_rounds']} trunks/rounds)")
    return projection


if __name__ == "__main__":
    main()
