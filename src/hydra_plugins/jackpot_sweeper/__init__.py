"""jackpot's Hydra sweeper plugin (Hydra only loads plugins from the `hydra_plugins` namespace package), and the
resolvers the launcher configs use (registered here: Hydra imports this package before composing any config)."""

from hydra_plugins.jackpot_sweeper.gpu_request import register as _register_resolvers

_register_resolvers()
