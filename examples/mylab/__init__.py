"""A lab's own package, outside jackpot: its pruning method is sanity-checked through jackpot's public API."""
