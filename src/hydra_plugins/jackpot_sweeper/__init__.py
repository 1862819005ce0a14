"""jackpot's Hydra sweeper plugin (Hydra only loads plugins from the `hydra_plugins` namespace package)."""
