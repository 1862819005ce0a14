"""The paper's reading of a sanity check's outcome, in one line: a check that does not hurt means the method does
not use what the check destroys (it "fails" the check, as the paper finds for SNIP, GraSP and lottery tickets at
init); one that hurts means it does (it "passes", as learning-rate rewinding does under the half dataset and
weight shuffling). A difference the test cannot tell from zero reads as no effect only when its confidence
interval rules out an effect of the margin or more; otherwise it is inconclusive, and the reading says how
large the effect could still be and how many seeds would decide it (jackpot.tables.verdicts)."""

from __future__ import annotations

from typing import Literal

Outcome = Literal["none", "hurts", "helps", "inconclusive", "unknown"]
MAX_SEEDS = 200  # seeds a side past which a comparison counts as out of reach (jackpot.tables.verdicts)

# check -> (what the check destroys, the reading when it does not hurt, the reading when it hurts)
CHECK_READINGS: dict[str, tuple[str, str, str]] = {
    "random_labels": ("labels",
                      "random labels do not hurt: the mask does not use the labels",
                      "random labels hurt: {method} uses the labels"),
    "random_pixels": ("images",
                      "random pixels do not hurt: the mask does not use the images",
                      "random pixels hurt: {method} uses the images"),
    "random_pixels_labels": ("data",
                             "random pixels and labels do not hurt: the mask does not use the data",
                             "random pixels and labels hurt: {method} uses the data"),
    "half_dataset": ("full training set",
                     "the half dataset does not hurt: the mask does not need the full training set",
                     "the half dataset hurts: {method} uses the full training set"),
    "layerwise_rearrange": ("positions within each layer",
                            "layerwise rearrange does not hurt: only the per-layer ratios matter",
                            "layerwise rearrange hurts: {method} uses the positions within each layer"),
    "layerwise_shuffle": ("kept weights' places",
                          "shuffling the kept weights does not hurt: their values need not stay in place",
                          "shuffling the kept weights hurts: {method} uses its weight values where they are"),
    "reinit": ("initial values",
               "reinitialisation does not hurt: only the mask matters, not the kept initial values",
               "reinitialisation hurts: {method} uses its initial weight values"),
}


def check_reading(check: str, outcome: Outcome, method: str, **inconclusive: float | int | str | None) -> str:
    """The one-line reading of `check`'s effect on `method` (the check against the plain method); an
    inconclusive outcome's reading takes `bound`, `margin`, `seeds` and `level` (see `inconclusive_reading`)."""
    label = check.replace("_", " ")
    what, no_effect, hurts = CHECK_READINGS.get(check, ("what the check changes", f"{label} does not hurt",
                                                        f"{label} hurts: {{method}} uses what it changes"))
    if outcome == "unknown":
        return TOO_FEW_SEEDS
    if outcome == "inconclusive":
        return inconclusive_reading(f"whether {hurts.split(':')[0]} {method}", "a loss of", **inconclusive)
    if outcome == "hurts":
        return hurts.format(method=method) + " (passes the check)"
    if outcome == "helps":
        return f"{label} helps: it beats {method}'s own {what}"
    return no_effect + " (fails the check)"


TOO_FEW_SEEDS = "too few seeds to tell (at least 2 on each side)"


def inconclusive_reading(question: str, allows: str, bound: float, margin: float, seeds: int | None,
                         level: str = "95 %") -> str:
    """`cannot tell <question>: the 95 % CI allows <allows> up to 13.0 points (margin 1); about 40 seeds a side
    would decide it at the spreads measured`: how large an effect the interval (at `level`) still allows, and the
    seeds that would settle it if the measured means and spreads held (`seeds` None: past MAX_SEEDS)."""
    return (f"cannot tell {question}: the {level} CI allows {allows} up to {abs(bound):.1f} points "
            f"(margin {margin:g}); {seeds_needed(seeds)} would decide it at the spreads measured")


def seeds_needed(seeds: int | None) -> str:
    """`about 9 seeds a side`, or `over 200 seeds a side` for a comparison out of reach at its spreads."""
    return f"about {seeds} seeds a side" if seeds is not None else f"over {MAX_SEEDS} seeds a side"


# outcome -> reading of the method against random tickets (smart ratio) at the same ratio, and against dense
RANDOM_TICKET_READINGS = {
    "hurts": "random tickets beat {method}: the smart ratio's layerwise ratios alone do better",
    "helps": "{method} beats random tickets: its mask is worth more than its per-layer ratios",
    "none": "{method} is no better than random tickets: the paper's jackpot (the layerwise ratios are what counts)",
}
DENSE_READINGS = {
    "hurts": "{method} loses accuracy against the dense network at this ratio",
    "helps": "{method} beats the dense network at this ratio",
    "none": "{method} keeps the dense network's accuracy at this ratio",
}


def random_ticket_reading(outcome: Outcome, method: str, **inconclusive: float | int | str | None) -> str:
    """The reading of the method against random tickets (smart ratio) at the same ratio."""
    if outcome == "inconclusive":
        return inconclusive_reading(f"whether {method} beats random tickets", "it to be ahead by",
                                    **inconclusive)
    return TOO_FEW_SEEDS if outcome == "unknown" else RANDOM_TICKET_READINGS[outcome].format(method=method)


def dense_reading(outcome: Outcome, method: str, **inconclusive: float | int | str | None) -> str:
    """The reading of the method against the dense network."""
    if outcome == "inconclusive":
        return inconclusive_reading(f"whether {method} keeps the dense network's accuracy", "a loss of",
                                    **inconclusive)
    return TOO_FEW_SEEDS if outcome == "unknown" else DENSE_READINGS[outcome].format(method=method)
