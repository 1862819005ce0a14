"""The printed report: one line per figure, the device named."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

from jackpot.bench.config import GIB, BenchConfig

# Rows the report always prints (the test checks them).
REPORT_ROWS = (
    "(a) bare loop + torchvision DataLoader",
    "(b) bare loop + DeviceLoader",
    "(c) jackpot Lightning + PruningCallback",
    "jackpot step / bare step",
    "steps replayed as a CUDA graph",
    "mask enforcement",
    "eval (no grad",
    "projected 160-epoch run",
    "SNIP  N=",
    "GraSP N=",
    "GraSP peak memory",
    "framework overhead",
    "stock Lightning",
)


def machine() -> str:
    """The device in words: GPU name or CPU model and core count."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} x{os.cpu_count()} ({torch.get_num_threads()} torch threads); {gpu}"


def _hours(h: float) -> str:
    return f"{h:.2f} h" if h >= 1 else f"{60 * h:.1f} min"


def header_lines(cfg: BenchConfig, res: dict[str, Any]) -> list[str]:
    """What was run, where, under which settings (printed before anything is measured)."""
    preset = {"quick": "quick (the CPU default; --full: the paper-size settings)", "tiny": "tiny (--tiny)",
              "full": "full"}.get(cfg.preset, cfg.preset)
    return [
        f"jackpot.bench  model={cfg.model} batch={cfg.batch} steps={cfg.steps} (warm-up {cfg.warmup}, "
        f"+1 warm round) rounds={cfg.rounds} device={cfg.device} settings={preset}",
        f"  machine: {res['machine']}",
        f"  torch {torch.__version__}, lightning {res['lightning']}; precision={cfg.resolved_precision()} "
        f"channels_last={cfg.channels_last} compile={cfg.compile}"
        + (f" ({cfg.compile_mode})" if cfg.compile and cfg.compile_mode else "")
        + f" steps_per_call={cfg.steps_per_call} (a) workers={cfg.resolved_workers()}",
    ]


def throughput_lines(cfg: BenchConfig, tp: dict[str, Any]) -> list[str]:
    v = tp["variants"]
    return [
        "throughput (median over rounds; ratios are medians of per-round ratios)",
        f"  (a) bare loop + torchvision DataLoader (fp32, contiguous) {v['a']['img_per_s']:9.1f} img/s "
        f"{v['a']['ms_per_step']:9.2f} ms/step  1.00x",
        f"  (b) bare loop + DeviceLoader (jackpot step settings)      {v['b']['img_per_s']:9.1f} img/s "
        f"{v['b']['ms_per_step']:9.2f} ms/step  {tp['ratio_b_over_a_speed']:.2f}x of (a)",
        f"  (c) jackpot Lightning + PruningCallback (90% masks)       {v['c']['img_per_s']:9.1f} img/s "
        f"{v['c']['ms_per_step']:9.2f} ms/step  {tp['ratio_c_over_a_speed']:.2f}x of (a)",
        f"  (c)'s last round: {tp['c_steps']['replayed']} steps replayed as a CUDA graph, "
        f"{tp['c_steps']['eager']} eager (--cuda-graph {cfg.cuda_graph})"
        + (f"; not recorded: {tp['c_steps']['not_recorded_because']}"
           if tp["c_steps"].get("not_recorded_because") else ""),
        *([f"  {'(c) with --cuda-graph off':57s} {v['c_eager']['img_per_s']:9.1f} "
           f"img/s {v['c_eager']['ms_per_step']:9.2f} ms/step  recording the step: "
           f"{tp['ratio_c_over_c_eager_speed']:.2f}x"] if "c_eager" in v else []),
        f"  jackpot step / bare step ((c)/(b) time): {tp['ratio_c_over_b_time']:.3f}  (target <= 1.05); "
        f"masks exact after (c): {tp['mask_exact_after_c']}",
        f"  mask enforcement (foreach multiply, (b) with vs without): "
        f"{tp['mask_overhead_pct']:+.2f} % of a step  (target <= 3 %); the multiply alone "
        f"{tp['mask_multiply_ms']:.3f} ms = {tp['mask_multiply_pct']:.2f} % of a (b) step",
        f"  eval (no grad, batch {cfg.eval_batch}, eager): {tp['eval_img_per_s']:.1f} img/s",
        *([f"  host syncs per timed step: (b) {tp['syncs_per_step']['b']:.3f}, "
           f"(c) {tp['syncs_per_step']['c']:.3f}  (torch sync debug mode)"] if "syncs_per_step" in tp else []),
        "  projected 160-epoch run (50k train + 10k eval per epoch): "
        + ", ".join(f"({k}) {_hours(h)}" for k, h in tp["projection_h"].items() if k != "b_mask"),
    ]


def scoring_title(cfg: BenchConfig) -> str:
    memory = "cuda max_memory_allocated" if cfg.device == "cuda" else "peak RSS (VmHWM) of a fresh process"
    dtype = f"; {cfg.score_dtype}" if cfg.score_dtype != "float32" else ""
    return f"scoring (10 per class, class-sorted batch; fresh model; peak: {memory}{dtype})"


def scoring_run_line(run: dict[str, Any]) -> str:
    """One scoring's row, printed as soon as that scoring has run."""
    label = "SNIP " if run["method"] == "snip" else "GraSP"
    return (f"  {label} N={run['n']:5d} ({run['classes']:3d} classes) offload={run['offload']:4s} "
            f"({'disk' if run['on_disk'] else 'memory'}): {run['seconds']:8.2f} s, "
            f"peak +{run['peak_delta_gib']:.3f} GiB over the process before scoring "
            f"(total {run['peak_gib']:.3f} GiB)")


def scoring_summary_lines(cfg: BenchConfig, sc: dict[str, Any]) -> list[str]:
    """The offload modes' agreement and GraSP's peak: known once every scoring has run."""
    lines = [f"  {agree['method']} N={agree['classes'] * cfg.score_per_class}: offload modes "
             f"{' vs '.join(cfg.score_offload)} differ by {agree['max_rel_diff']:.2e} of the largest "
             f"score; {agree['mask_differences']} of {agree['kept']} kept weights differ at {agree['ratio']:.0%}"
             for agree in sc["agreement"]]
    grasp = [r for r in sc["runs"] if r["method"] == "grasp" and r["offload"] == cfg.score_offload[0]]
    worst = max(grasp, key=lambda r: r["peak_gib"])
    lines.append(f"  GraSP peak memory (largest set, N={worst['n']}, offload={worst['offload']}): "
                 f"{worst['peak_gib']:.3f} GiB = {worst['peak_gib'] * GIB / 1e9:.2f} GB, whole process "
                 f"(target < 1.5 GB)")
    return lines


def overhead_lines(ov: dict[str, Any]) -> list[str]:
    lines = [f"framework overhead ({ov['model']}, batch {ov['batch']}, {ov['device']}, {ov['steps']} steps "
             f"x {ov['rounds']} rounds; target <= +0.2 ms/step)"]
    stock = ov["rows"]["stock Lightning"]["over_bare_ms"]
    for name, row in ov["rows"].items():
        share = f", {row['over_bare_ms'] / stock:5.2f} of stock's" if stock > 0 and name != "bare" else ""
        lines.append(f"  {name:16s} {row['ms']:8.3f} ms/step  {row['over_bare_ms']:+7.3f} ms/step over bare "
                     f"({row['ratio']:.3f}x{share})")
    return lines


def format_report(cfg: BenchConfig, res: dict[str, Any]) -> str:
    """The whole report, as the CLI printed it section by section (without its progress lines)."""
    lines = header_lines(cfg, res)
    if res.get("throughput"):
        lines += throughput_lines(cfg, res["throughput"])
    sc = res.get("scoring")
    if sc:
        lines += [scoring_title(cfg), *map(scoring_run_line, sc["runs"]), *scoring_summary_lines(cfg, sc)]
    if res.get("overhead"):
        lines += overhead_lines(res["overhead"])
    lines += [f"(skipped: {section})" for section in cfg.skip]
    return "\n".join(lines)
