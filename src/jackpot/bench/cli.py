"""Side-by-side speed benchmark: a bare PyTorch loop against jackpot's Lightning training, in one process.

The command line of `python -m jackpot.bench` (see the package docstring), the sections run in order, and the
internal subcommands the scoring, packing and allocator children run under."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jackpot.bench.allocator import malloc_child, malloc_compare
from jackpot.bench.config import SCORE_DTYPES, SECTIONS, BenchConfig, check_config, quick_config, tiny_config
from jackpot.bench.packing import pack, pack_child
from jackpot.bench.progress import Progress
from jackpot.bench.report import (
    format_report,
    header_lines,
    machine,
    overhead_lines,
    scoring_run_line,
    scoring_summary_lines,
    scoring_title,
    throughput_lines,
)
from jackpot.bench.scoring import score_once, scoring
from jackpot.bench.training_speed import framework_overhead, throughput
from jackpot.bench.variants import quiet_lightning
from jackpot.bench.workload import apply_process_settings


def run_bench(cfg: BenchConfig, print_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every section not in cfg.skip; prints each row as it is measured (flushed) and returns the results."""
    import lightning

    progress = Progress(print_fn)
    apply_process_settings(cfg.device, cfg.overhead_device, cfg.threads)
    res: dict[str, Any] = {"config": asdict(cfg), "machine": machine(), "lightning": lightning.__version__,
                           "torch": torch.__version__}
    progress.rows(header_lines(cfg, res))
    with quiet_lightning(), tempfile.TemporaryDirectory() as tmp:
        if "throughput" not in cfg.skip:
            progress.next(f"throughput: (a), (b), (b)+masks, (c) on {cfg.model}, 1 warm-up + {cfg.rounds} rounds "
                          f"of {cfg.steps} steps each")
            res["throughput"] = throughput(cfg, Path(tmp), progress.round)
            progress.rows(throughput_lines(cfg, res["throughput"]))
        if "scoring" not in cfg.skip:
            sets = ", ".join(str(c * cfg.score_per_class) for c in cfg.score_classes)
            progress.next(f"scoring: SNIP and GraSP on {sets} images, offload {' and '.join(cfg.score_offload)}"
                          + (" (each in a fresh process)" if cfg.device != "cuda" else ""))
            progress.rows([scoring_title(cfg)])
            res["scoring"] = scoring(cfg, lambda what: progress.next(f"scoring: {what}"),
                                     lambda run: progress.rows([scoring_run_line(run)]))
            progress.rows(scoring_summary_lines(cfg, res["scoring"]))
        if "overhead" not in cfg.skip:
            progress.next(f"framework overhead: {cfg.overhead_model} on {cfg.overhead_device}, 1 warm-up + "
                          f"{cfg.overhead_rounds} rounds of {cfg.overhead_steps} steps")
            res["overhead"] = framework_overhead(cfg, Path(tmp), progress.round)
            progress.rows(overhead_lines(res["overhead"]))
    progress.rows(f"(skipped: {section})" for section in cfg.skip)
    progress.done()
    res["report"] = format_report(cfg, res)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jackpot.bench", description=__doc__.split("\n\n")[0])
    d = BenchConfig()
    p.add_argument("--model", default=None, help=f"a model name or tinyconv (default {d.model})")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="batches per round and variant (incl. warm-up)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (after one warm-up round)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps at the start of each round")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--precision", default=None, help="auto | 32-true | bf16-mixed")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in (b) and (c)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--sync-check", action="store_true",
                   help="CUDA: count host synchronisations inside the timed steps of (b) and (c)")
    p.add_argument("--workers", type=int, default=None, help="(a)'s loader workers (default 0 CPU, 4 GPU)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--eval-batch", type=int, default=None)
    p.add_argument("--score-classes", default=None, help="comma list, e.g. 10,100 (10 per class each)")
    p.add_argument("--score-offload", default=None,
                   help="comma list of scoring offload modes to run and compare (default disk,none)")
    p.add_argument("--overhead-model", default=None, help="tinyconv (default) or linear (no compute)")
    p.add_argument("--overhead-steps", type=int, default=None)
    p.add_argument("--overhead-rounds", type=int, default=None)
    p.add_argument("--overhead-device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--progress-bar", action="store_true", help="Lightning's progress bar on in (c)")
    p.add_argument("--steps-per-call", type=int, default=None,
                   help="(c): optimizer steps per Lightning training step (MultiStepClassificationModule)")
    p.add_argument("--cuda-graph", choices=("auto", "on", "off"), default=None,
                   help="(c): record each step as a CUDA graph (auto: on CUDA, jackpot's default)")
    p.add_argument("--overhead-steps-per-call", type=int, default=None,
                   help="framework overhead: also measure jackpot with this K (default 1; 0 or (c)'s K: skip)")
    p.add_argument("--skip", default="", help="comma list of sections: throughput,scoring,overhead")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--seed", type=int, default=None, help="networks, data, masks and scoring draws (default 0)")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--tiny", action="store_true", help="a few seconds on CPU (the test's setting; 1 thread)")
    sizes.add_argument("--full", action="store_true",
                       help="the paper-size settings on a CPU too (resnet32, 50 steps x 3 rounds, CIFAR-10 and -100 "
                            "scoring sets, 200 x 5 overhead steps: the recorded CPU figures; over 20 min on 2 cores). "
                            "Default: these on a GPU, a few-minute resnet8 run on a CPU")
    p.add_argument("--score-dtype", choices=SCORE_DTYPES, default=None,
                   help="scoring precision (default float32); float64: the offload modes must agree exactly")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--procs", type=int, default=4, help="pack: processes to run at once")
    p.add_argument("--window", type=float, default=20.0, help="pack: seconds of timed training")
    return p


def config_from_args(ns: argparse.Namespace) -> BenchConfig:
    values: dict[str, Any] = {}
    for key in ("model", "batch", "steps", "rounds", "warmup", "device", "precision", "workers", "classes",
                "eval_batch", "overhead_model", "overhead_steps", "overhead_rounds", "overhead_device",
                "steps_per_call", "overhead_steps_per_call", "threads", "cuda_graph", "score_dtype", "seed"):
        if getattr(ns, key) is not None:
            values[key] = getattr(ns, key)
    if ns.score_classes:
        values["score_classes"] = tuple(int(c) for c in ns.score_classes.split(","))
    if ns.score_offload:
        values["score_offload"] = tuple(ns.score_offload.split(","))
    if ns.no_channels_last:
        values["channels_last"] = False
    if ns.compile or ns.compile_mode:
        values["compile"] = True
    if ns.compile_mode:
        values["compile_mode"] = ns.compile_mode
    if ns.sync_check:
        values["sync_check"] = True
    if ns.progress_bar:
        values["progress_bar"] = True
    if ns.skip:
        values["skip"] = tuple(s for s in ns.skip.split(",") if s)
    if ns.tiny:
        return tiny_config(**values)
    if values.get("device") == "cuda":
        if "warmup" not in values:
            values["warmup"] = 10  # lets (a)'s workers reach steady state (their prefetch is not counted)
        values.setdefault("score_offload", ("auto", "none"))  # no disk path on a GPU: both score in memory
        return BenchConfig(**values)
    return BenchConfig(**values) if ns.full else quick_config(**values)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_score"]:  # internal: one scoring in a fresh process
        print(json.dumps(score_once(**json.loads(argv[1]))))
        return {}
    if argv[:1] == ["_malloc"]:  # internal: one allocator child
        print(json.dumps(malloc_child(**json.loads(argv[1]))))
        return {}
    if argv[:1] == ["malloc"]:
        ns = build_parser().parse_args(argv[1:])
        model, batch = ns.model or "tinyconv", ns.batch or 64
        res = malloc_compare(model, batch, ns.steps or 60, ns.rounds or 3, 0)
        print(f"CPU allocator ({model}, batch {batch}, bare steps, fresh processes): glibc default "
              f"{res['default']['ms_per_step']:.2f} ms/step ({res['default']['faults_per_step']:.0f} page faults/step)"
              f", keep_freed_cpu_memory() {res['tuned']['ms_per_step']:.2f} ms/step "
              f"({res['tuned']['faults_per_step']:.0f} faults/step): {res['speedup']:.2f}x  machine: {machine()}")
        if ns.json:
            Path(ns.json).write_text(json.dumps(res, indent=1))
        return res
    if argv[:1] == ["_pack"]:  # internal: one packing child
        spec = json.loads(argv[1])
        raw = spec["cfg"]
        raw["score_classes"], raw["skip"] = tuple(raw["score_classes"]), tuple(raw["skip"])
        raw["score_offload"] = tuple(raw["score_offload"])
        print(json.dumps(pack_child(BenchConfig(**raw), spec["window"], spec["threads"])))
        return {}
    packing = argv[:1] == ["pack"]
    parser = build_parser()
    ns = parser.parse_args(argv[1:] if packing else argv)
    cfg = config_from_args(ns)
    if packing:
        # each child's thread share is the cores over --procs unless --threads says (not the quick CPU's one)
        cfg = BenchConfig(**{**asdict(cfg), "steps": ns.steps or 300, "threads": ns.threads})
    try:
        check_config(cfg, ("throughput",) if packing else SECTIONS)
    except ValueError as err:
        parser.error(str(err))  # usage and the reason, exit code 2
    if packing:
        single = pack(cfg, 1, ns.window)
        many = pack(cfg, ns.procs, ns.window)
        res = {"config": asdict(cfg), "machine": machine(), "one": single, "many": many,
               "speedup": many["total_img_per_s"] / single["total_img_per_s"]}
        print(f"packing (c) {cfg.model} batch {cfg.batch} on {cfg.device}, {ns.window:.0f} s windows: "
              f"1 process {single['total_img_per_s']:.0f} img/s; {ns.procs} processes "
              f"{many['total_img_per_s']:.0f} img/s total "
              f"({', '.join(format(c['img_per_s'], '.0f') for c in many['children'])}; "
              f"{many['threads_per_child']} CPU threads each); "
              f"{res['speedup']:.2f}x  (target >= 1.5x)  machine: {res['machine']}")
    else:
        res = run_bench(cfg)
    if ns.json:
        Path(ns.json).write_text(json.dumps(res, indent=1, default=str))
    return res
