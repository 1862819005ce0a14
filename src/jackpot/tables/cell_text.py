"""The text of one cell, shared by every format: ours ± std, then the small print (paper, difference, seeds)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def fmt_ours(rec: Mapping[str, Any], pm: str = "±") -> str:
    """Our mean (± std over seeds when there are two or more), or why there is none."""
    if rec["status"] == "missing":
        return "missing"
    if rec["status"] == "failed":
        return f"failed ({rec['n_failed']})"
    text = f"{rec['mean']:.2f}" if rec["n"] < 2 else f"{rec['mean']:.2f} {pm} {rec['std']:.2f}"
    if rec["n_failed"]:
        text += f" (+{rec['n_failed']} failed)"
    return text


def fmt_seeds(rec: Mapping[str, Any]) -> str:
    """Seeds behind the mean, against the seeds the sweep asked for when they differ."""
    n_expected = rec["n_expected"]
    return f"n={rec['n']}" if not n_expected or n_expected == rec["n"] else f"n={rec['n']}/{n_expected}"


def fmt_diff(rec: Mapping[str, Any]) -> str:
    """Ours minus the paper's, signed; empty where either is missing."""
    return "" if math.isnan(rec["diff"]) else f"{rec['diff']:+.2f}"


def fmt_published(rec: Mapping[str, Any], pm: str = "±") -> str:
    """The paper's value as it printed it (mean, ± std where given); empty where it has none."""
    if math.isnan(rec["published_mean"]):
        return ""
    if math.isnan(rec["published_std"]):
        return f"{rec['published_mean']:.2f}"
    return f"{rec['published_mean']:.2f} {pm} {rec['published_std']:.2f}"


def cell_detail(rec: Mapping[str, Any], pm: str = "±", delta: str = "Δ", sep: str = ", ") -> str:
    """The small print of a cell: the paper's value, then the difference and the seed count."""
    pub = fmt_published(rec, pm)
    rest = []
    if fmt_diff(rec):
        rest.append(f"{delta} {fmt_diff(rec)}")
    if rec["status"] != "missing":
        rest.append(fmt_seeds(rec))
    parts = ([f"paper {pub}"] if pub else []) + ([", ".join(rest)] if rest else [])
    return sep.join(parts)
