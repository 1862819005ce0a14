"""End-to-end cost of real `train.py` runs, and the GPU-hours of each sweep file projected from them.

For: whoever sizes a reproduction (issue #19). Step throughput alone (docs/benchmarks.md) leaves out process
start (imports, CUDA initialisation), each run's set-up (data, model, scoring, loggers) and teardown, which a
launcher pays once per job. This script measures all of them on real jobs and full-size generated CIFAR, one
process per figure (results.json's `runtime.epochs_timed` holds each epoch's wall-clock end):

  per-epoch time  = (end of the last epoch - end of the first) / (E - 1)   a run of E epochs; the first epoch
                    (CUDA-graph recording, cuDNN tuning, a compile) counts as set-up; split (medians) into
                    training, evaluation and the rest (checkpoint, progress file, logs) from `epochs_timed.split_s`
  set-up in a run = wall_time_s - E * per-epoch time: before the first epoch (`ticket_s` of it making the
                    ticket), the first epoch's time over the others', and after the last epoch
  process start   = the process's wall time - wall_time_s                (imports, CUDA, teardown), split by
                    results.json's started_at / finished_at into before the run and after it, and the part
                    before by `runtime.process`'s marks: to main, validating, importing, to the run
  the first run   = --cold-first: one more run before, filling the caches (compile); what it pays on top
  per job in a -m sweep of K jobs = the sweep's wall time / K         (--sweep-jobs K, one process, no packs)
  packs (--pack K): a -m sweep of K jobs as one pack (hydra.sweeper.pack=K) of --pack-epochs epochs. Side by
    side, the pack's rate is the run-epochs its members complete per second while all of them train (from
    the last member's first epoch end to the first member's last epoch end); a run's device seconds per epoch
    in the pack = 1 / that rate, its speed-up = the per-epoch time alone * the rate, and the rest of the pack's
    wall, per run, is its overhead
  compile (--compare-with an eager --out): each model's 160-epoch run alone and a pack's, with these --extra
    settings (trainer=gpu: compiled) against without, the first run or pack of a sweep included: whether they pay

then projects each sweep in multirun_sweeps/ (its jobs composed as Hydra would, shared dense trunks and IMP rounds
counted once, at their epochs) to hours: one run at a time, and K runs to a GPU in packs.

  python scripts/end_to_end.py --out e2e.json           # on a GPU: vgg19, resnet32, packs of 4
  python scripts/end_to_end.py --models vgg19 --pack-models vgg19 --pack-epochs 16 --cold-first \
      --extra trainer=gpu --compare-with e2e.json       # compiled (its warm compiles stagger a pack's runs more)
  python scripts/end_to_end.py --project-from docs/e2e_h200_issue19.json      # the projection alone
  python scripts/end_to_end.py --project-from e2e_compiled.json --compare-with e2e.json   # compiled, after
  python scripts/end_to_end.py --models resnet8 --pack-models resnet8 --pack-epochs 4 --train 2000 --test 500 \
      --pack 2 --pack-side-by-side true --extra trainer=cpu                   # CPU smoke
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
    """The overrides of every measured run: random tickets at 98 % on the generated CIFAR in `data` (its folder
    is named after the dataset), outputs in `work`."""
    return [f"model={model}", f"dataset={data.name}", "pruner=smart_ratio", "ratio=0.98", f"dataset.root={data}",
            "dataset.verify_md5=false", "dataset.download=false", f"paths.root_dir={work}"]


def epoch_seconds(result: dict) -> float:
    """A run's per-epoch time from its epochs' wall-clock ends, the first epoch (recording, tuning) left out."""
    ends = (result["runtime"].get("epochs_timed") or {}).get("ended_at") or []
    if len(ends) < 2:
        sys.exit(f"{result['cell_name']}: {len(ends)} epoch(s) timed in its process; a per-epoch time needs 2 or more "
                 "(--epochs / --pack-epochs of at least 2; 3 or more leave the first out of more than one)")
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def epoch_split(result: dict) -> dict[str, float] | None:
    """Where a run's epochs went, the first one left out: the medians of training (to its queued steps' end),
    evaluation and the rest (checkpoint, progress file, logging), in seconds; None without 2 timed epochs (or
    from a results file of before the split was recorded)."""
    split = (result["runtime"].get("epochs_timed") or {}).get("split_s") or []
    if len(split) < 2:
        return None
    later = split[1:]
    return {part: statistics.median(parts[i] for parts in later) for i, part in enumerate(("train", "eval", "rest"))}


def setup_split(result: dict, per_epoch: float) -> dict[str, float | None]:
    """Where a run's set-up (its wall time less E epochs at the per-epoch time) went: before its first epoch
    (data, network, Lightning, the ticket: `ticket_s` of it), what its first epoch took more than the others
    (CUDA-graph recording, cuDNN tuning, a compile), and after its last (final checkpoint, results); they add up
    to the set-up."""
    timed = result["runtime"]["epochs_timed"]
    return {"before_first_epoch": timed["started_at"] - result["started_at"],
            "ticket": result["runtime"].get("ticket_s"),
            "first_epoch_extra": timed["ended_at"][0] - timed["started_at"] - per_epoch,
            "after_last_epoch": result["finished_at"] - timed["ended_at"][-1]}


def setup_text(parts: dict[str, float | None]) -> str:
    ticket = "" if parts["ticket"] is None else f", {parts['ticket']:.1f} s of it making the ticket"
    return (f" (before the first epoch {parts['before_first_epoch']:.1f} s{ticket}; the first epoch "
            f"{parts['first_epoch_extra']:.1f} s more than the others; after the last "
            f"{parts['after_last_epoch']:.1f} s)")


START_STEPS = (("main", "to main (Python, Hydra, composing the config)"),
               ("validated", "validating (torch's import, CUDA's devices)"),
               ("imported", "importing Lightning and jackpot's training"))


def start_split(result: dict, spawned_at: float) -> dict[str, float]:
    """Where a process's seconds before its run went, from its spawn and results.json's `runtime.process`
    marks (jackpot.machine.process_clock): each step since the one before, then to the run's start."""
    marks = result["runtime"].get("process") or {}
    parts, since = {}, spawned_at
    for name, _ in START_STEPS:
        if f"{name}_at" in marks:
            parts[name], since = marks[f"{name}_at"] - since, marks[f"{name}_at"]
    parts["to_the_run"] = result["started_at"] - since
    return parts


def start_text(parts: dict[str, float]) -> str:
    said = dict(START_STEPS, to_the_run="then to the run's start")
    return ": " + ", ".join(f"{said[name]} {seconds:.1f} s" for name, seconds in parts.items())


def split_text(split: dict[str, float] | None) -> str:
    if split is None:
        return ""
    return (f" (training {split['train']:.2f} s, evaluation {split['eval']:.2f} s, the rest {split['rest']:.2f} s: "
            "checkpoint, logs)")


def pack_rate(timelines: list[list[float]]) -> float:
    """Run-epochs completed per second by runs trained side by side, while all of them train.

    Each run's epoch ends make its progress a piecewise-linear function of time (1 epoch done at its first
    end, ...). The window runs from the last run's first end (every run past its recording and tuning) to the
    first run's last end (none finished); the rate is the runs' summed progress across it over its length.
    """
    start, stop = max(ends[0] for ends in timelines), min(ends[-1] for ends in timelines)
    if stop <= start:
        raise ValueError(f"the pack's runs never all trained at once after their first epoch (window {start:.3f} "
                         f"to {stop:.3f}): give them more epochs (--pack-epochs)")

    def progress(ends: list[float], at: float) -> float:
        for k in range(1, len(ends)):
            if at <= ends[k]:
                return k + (at - ends[k - 1]) / (ends[k] - ends[k - 1])
        return float(len(ends))

    return sum(progress(ends, stop) - progress(ends, start) for ends in timelines) / (stop - start)


def measure_model(model: str, data: Path, work: Path, epochs: int, sweep_jobs: int, extra: list[str],
                  cold_first: bool = False) -> dict:
    """Per-epoch time, set-up inside a run and process start for one model (one run of `epochs`), plus what
    a first run pays on top and the per-job wall of a sweep."""
    common = [*measured_cell(model, data, work), f"schedule.epochs={epochs}", *extra]
    cold = None
    if cold_first:  # a first run fills the caches (compile); the measured run then finds them warm
        cold = run_train([*common, f"name=e2e-{model}-cold"], work)
    wall = run_train([*common, f"name=e2e-{model}"], work)
    (result,) = results_of(work, f"e2e-{model}")
    per_epoch = epoch_seconds(result)
    costs = {"model": model, "epoch_s": per_epoch, "setup_s": result["wall_time_s"] - epochs * per_epoch,
             "process_start_s": wall - result["wall_time_s"],
             "before_run_s": result["started_at"] - LAST_PROCESS["spawned_at"],  # Python, imports, Hydra, CUDA
             "after_run_s": LAST_PROCESS["exited_at"] - result["finished_at"],  # summary, teardown, exit
             "before_run_split_s": start_split(result, LAST_PROCESS["spawned_at"]),
             "epoch_split_s": epoch_split(result), "setup_split_s": setup_split(result, per_epoch),
             "runtime": result.get("runtime", {})}
    if cold is not None:
        costs["cold_extra_s"] = cold - wall  # what the first run of a sweep pays on top (a cold compile)
    if sweep_jobs:
        seeds = ",".join(str(s) for s in range(10, 10 + sweep_jobs))
        sweep_wall = run_train(["-m", *common, f"seed={seeds}", f"name=e2e-sweep-{model}", "hydra.sweeper.pack=1"],
                               work)
        costs["sweep_job_s"] = sweep_wall / sweep_jobs
        costs["sweep_job_outside_epochs_s"] = costs["sweep_job_s"] - epochs * per_epoch
    return costs


def measure_pack(model: str, data: Path, work: Path, epochs: int, size: int, side_by_side: str,
                 alone_epoch_s: float, extra: list[str]) -> dict | None:
    """A pack of `size` runs (a -m sweep with hydra.sweeper.pack=size): a run's device seconds per epoch in it,
    its speed-up over a run alone, and its overhead (process start, set-up) per run; None when its runs never
    all trained at once (too few epochs for their staggered starts)."""
    name = f"e2e-pack-{model}"
    wall = run_train(["-m", *measured_cell(model, data, work), f"schedule.epochs={epochs}",
                      f"seed={','.join(str(s) for s in range(20, 20 + size))}", f"hydra.sweeper.pack={size}",
                      f"hydra.sweeper.pack_side_by_side={side_by_side}", f"name={name}", *extra], work)
    members = results_of(work, name)
    packs = {json.dumps(m["runtime"]["pack"], sort_keys=True) for m in members}
    if len(members) != size or len(packs) != 1 or members[0]["runtime"]["pack"] is None:
        sys.exit(f"expected {size} runs in one pack, got {len(members)} in {sorted(packs)}")
    if members[0]["runtime"]["pack"]["side_by_side"]:
        try:
            epoch_s = 1 / pack_rate([m["runtime"]["epochs_timed"]["ended_at"] for m in members])
        except ValueError as err:
            print(f"  {model}: no figure for this pack: {err}", flush=True)
            return None
    else:  # one after another: each run's epochs have the device to themselves
        epoch_s = statistics.mean(epoch_seconds(m) for m in members)
    splits = [s for s in map(epoch_split, members) if s is not None]  # a member's own epoch, the GPU shared
    member_split = {part: statistics.median(s[part] for s in splits) for part in splits[0]} if splits else None
    return {"model": model, "size": size, "epochs": epochs, "epoch_s": epoch_s, "speedup": alone_epoch_s / epoch_s,
            "overhead_per_run_s": wall / size - epochs * epoch_s, "wall_s": wall,
            "side_by_side": members[0]["runtime"]["pack"]["side_by_side"], "member_epoch_split_s": member_split}


def compile_verdict(eager: dict, compiled: dict, epochs: int = 160) -> list[str]:
    """Whether the settings of `compiled` (its `extra`, e.g. trainer=gpu: compile) pay against `eager` for an
    `epochs` run of each model measured both ways: alone, and in a pack; the first run (or pack) of a sweep pays
    the cold caches (`cold_extra_s`)."""
    with_ = f"`{compiled.get('extra') or 'these settings'}`"

    def verdict(eager_s: float, compiled_s: float, cold_s: float, first: str) -> str:
        said = (f"{eager_s:.0f} s without {with_}, {compiled_s:.0f} s with it ({compiled_s + cold_s:.0f} s for the "
                f"first {first} of a sweep, caches cold): ")
        if compiled_s + cold_s < eager_s:
            return said + "pays"
        return said + ("does not pay" if compiled_s >= eager_s else f"pays from the second {first} of a sweep")

    lines = []
    for model, c in compiled["costs"].items():
        e = eager["costs"].get(model)
        if e is None:
            continue
        cold = c.get("cold_extra_s", 0.0)
        alone_e, alone_c = (x["process_start_s"] + x["setup_s"] + epochs * x["epoch_s"] for x in (e, c))
        lines.append(f"{model} alone, {epochs} epochs: " + verdict(alone_e, alone_c, cold, "run"))
        pe, pc = (eager.get("packs") or {}).get(model), (compiled.get("packs") or {}).get(model)
        if pe and pc:
            pack_e, pack_c = (pc["size"] * (x["overhead_per_run_s"] + epochs * x["epoch_s"]) for x in (pe, pc))
            lines.append(f"{model} in packs of {pc['size']}, {epochs} epochs, a pack's device time: "
                         + verdict(pack_e, pack_c, cold, "pack"))
    return lines


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
    from jackpot.tables.projection import PlannedRun
    from jackpot.tables.projection import project as project_runs

    def planned(cfgs: list) -> list[PlannedRun]:
        cells = {}  # a cell in two sweeps runs once
        for cfg in cfgs:
            cell = (cfg.model.name, cfg.dataset.name, cfg.pruner.name, cfg.sanity_check.name, float(cfg.ratio),
                    cfg.seed)
            cells.setdefault(cell, PlannedRun(cfg.model.name, int(cfg.schedule.epochs), tuple(shared_work(cfg)),
                                              pretrain_epochs(cfg)))
        return list(cells.values())

    report = {}
    jobs = {name: sweep_jobs(name) for name in names}
    jobs["poster tables together"] = [cfg for name in POSTER_SWEEPS if name in names for cfg in jobs[name]]
    for name, cfgs in jobs.items():
        hours = project_runs(planned(cfgs), {"costs": costs, "packs": packs or {}})
        report[name] = {"hours": hours.hours, "runs": hours.runs, "trunks_and_rounds": hours.shared_work}
        if hours.hours_packed is not None:
            report[name]["hours_packed"] = hours.hours_packed
        if hours.without_figures:
            report[name]["without_figures"] = hours.without_figures
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg19,resnet32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run alone (2 or more)")
    parser.add_argument("--sweep-jobs", type=int, default=0, help="also a -m sweep of this many jobs, unpacked")
    parser.add_argument("--pack", type=int, default=4, help="runs per pack (0: no pack measured)")
    parser.add_argument("--pack-models", default="vgg19,resnet32", help="the models whose packs are measured")
    parser.add_argument("--pack-epochs", type=int, default=8,
                        help="epochs of each run in a pack: enough for all of them to train at once after their "
                             "staggered first epochs (warm-ups and recordings take turns, a compile included)")
    parser.add_argument("--pack-side-by-side", default="auto", help="hydra.sweeper.pack_side_by_side")
    parser.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10",
                        help="the generated CIFAR (full size by default); sweeps on either project from it")
    parser.add_argument("--train", type=int, default=50_000, help="generated training images")
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--cold-first", action="store_true",
                        help="one more run first, filling the caches (compile); its extra time is reported")
    parser.add_argument("--extra", default="", help="more overrides for every run, space-separated")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="an earlier --out without these --extra settings (eager): says whether these pay, and "
                             "projects with its figures for the models not measured here")
    parser.add_argument("--no-projection", action="store_true",
                        help="measure and compare, but project nothing (later: --project-from the --out file)")
    parser.add_argument("--project-from", type=Path, default=None,
                        help="measure nothing: project from the figures of an earlier --out (costs, packs)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    baseline = None  # read before any run: a bad path fails in seconds
    if args.compare_with and args.compare_with.exists():
        baseline = json.loads(args.compare_with.read_text())
    elif args.compare_with:  # an earlier step of a device check cut short: measure anyway, compare nothing
        print(f"{args.compare_with} does not exist: nothing to compare with", flush=True)
    if args.project_from:
        report(json.loads(args.project_from.read_text()), baseline, args)
        return
    from jackpot.data.fake_cifar import write_fake_cifar

    with tempfile.TemporaryDirectory(prefix="jackpot-e2e-") as tmp:
        work, data = Path(tmp), Path(tmp) / args.dataset
        write_fake_cifar(data, args.dataset, n_train=args.train, n_test=args.test)
        costs, packs = {}, {}
        figures = {"costs": costs, "packs": packs, "extra": args.extra}  # --out holds each figure once measured
        for model in args.models.split(","):
            print(f"measuring {model}: a run of {args.epochs} epochs", flush=True)
            costs[model] = c = measure_model(model, data, work, args.epochs, args.sweep_jobs, args.extra.split(),
                                             args.cold_first)
            line = (f"  {model}: epoch {c['epoch_s']:.2f} s{split_text(c['epoch_split_s'])}, set-up in a run "
                    f"{c['setup_s']:.1f} s{setup_text(c['setup_split_s'])}, process start and "
                    f"end {c['process_start_s']:.1f} s ({c['before_run_s']:.1f} s before the run"
                    f"{start_text(c['before_run_split_s'])}; "
                    f"{c['after_run_s']:.1f} s after it)")
            if "cold_extra_s" in c:
                line += f", the first run {c['cold_extra_s']:.1f} s more (cold caches)"
            if "sweep_job_s" in c:
                line += (f", per job in a sweep of {args.sweep_jobs} {c['sweep_job_s']:.1f} s "
                         f"({c['sweep_job_outside_epochs_s']:.1f} s outside its epochs)")
            print(line, flush=True)
            write_json(args.out, figures)
        for model in args.pack_models.split(",") if args.pack > 1 else []:
            print(f"measuring a pack of {args.pack} {model} runs of {args.pack_epochs} epochs", flush=True)
            pack = measure_pack(model, data, work, args.pack_epochs, args.pack, args.pack_side_by_side,
                                costs[model]["epoch_s"], args.extra.split())
            if pack is None:
                continue
            packs[model] = pack
            write_json(args.out, figures)
            how = "side by side" if pack["side_by_side"] else "one after another"
            print(f"  {model}: a run's epoch in a pack of {args.pack} ({how}) {pack['epoch_s']:.2f} s of the device, "
                  f"{pack['speedup']:.2f}x a run alone; overhead {pack['overhead_per_run_s']:.1f} s per run; a "
                  f"member's own epoch{split_text(pack['member_epoch_split_s']) or ' not split'}", flush=True)
    projection = report(figures, baseline, args)
    if projection is not None:
        write_json(args.out, {**figures, "projection": projection})


def report(figures: dict, baseline: dict | None, args: argparse.Namespace) -> dict | None:
    """Whether these settings pay against `baseline` (--compare-with), then the projection (unless
    --no-projection: composing every sweep takes a device check 10-70 s that --project-from spends anywhere)."""
    costs, packs = figures["costs"], figures.get("packs") or {}
    if baseline is not None:
        for line in compile_verdict(baseline, figures):
            print(line)
        costs, packs = {**baseline["costs"], **costs}, {**(baseline.get("packs") or {}), **packs}
    if args.no_projection:
        return None
    if baseline is not None:
        print(f"(projected below: {', '.join(figures['costs'])} with {figures.get('extra') or 'these settings'}, "
              f"any other model as in {args.compare_with})")
    return print_projection(costs, packs, args.pack)


def write_json(path: Path | None, data: dict) -> None:
    """Write `data` to `path` (if any) through a temp file: a step killed at its time limit leaves the figures
    measured so far, whole."""
    from jackpot.runs.atomic_io import write_json_atomic

    if path is not None:
        write_json_atomic(path, data)


def print_projection(costs: dict[str, dict], packs: dict[str, dict], size: int) -> dict:
    names = sorted(p.stem for p in (REPO / "multirun_sweeps").glob("*.yaml") if p.stem != "quickstart")
    projection = project(names, costs, packs)
    print("\nprojected hours (160 epochs per ticket, shared trunks once): one run at a time"
          + (f" | {size} to a GPU in packs" if packs else ""))
    for name, row in projection.items():
        packed = f" | {row['hours_packed']:7.1f} h" if "hours_packed" in row else ""
        left_out = "".join(f", {n} {model} runs left out: no figures" for model, n in
                           row.get("without_figures", {}).items())
        print(f"  {name:28s} {row['hours']:7.1f} h{packed}  ({row['runs']} runs, "
              f"{row['trunks_and_rounds']} trunks/rounds{left_out})")
    return projection


if __name__ == "__main__":
    main()
