"""Pruning methods from later work, registered through the same public ``@method`` API as a researcher's own:
SynFlow (Tanaka et al. 2020), ERK random tickets (Evci et al. 2020) and FORCE (de Jorge et al. 2021).

Importing the modules registers the methods (``synflow``, ``erk``, ``force``); the package attributes stay the
modules (not the functions of the same name), so ``jackpot.pruning.later.synflow.synflow_scores`` resolves.
"""

from jackpot.pruning.later import erk, force, synflow

__all__ = ["erk", "force", "synflow"]
