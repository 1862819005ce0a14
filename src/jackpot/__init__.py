"""jackpot: sanity-checking pruning methods (Su et al., NeurIPS 2020) as Lightning + Hydra experiments."""

__version__ = "0.2.0"
