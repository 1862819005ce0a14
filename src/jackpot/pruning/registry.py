"""The method registry: a pruning method is a declared function, the built-ins and a researcher's own alike.

``@method(when=..., needs_batches=...)`` on ``fn(model, ratio, batches, **options) -> {name: bool mask}``
registers ``fn`` under its name. Everything the rest of jackpot decides about a method (when it runs, whether it
reads data, its options and their allowed values, whether it draws random positions, supports iterative rounds,
which sanity checks cannot apply) is read from that declaration, never from name lists elsewhere, so a method
in another package is validated, cached and tabulated exactly like a built-in.

Options the framework supplies rather than the user: ``seed`` (the run's seed unless the config sets one),
``current_masks`` (the previous round's masks, for iterative methods) and ``input_shape`` (one example's shape,
``(C, H, W)``, for data-free methods that build their own input).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

Builder = Callable[..., Mapping[str, Tensor]]
# An option check returns None for an allowed value, else what is allowed ("must be a number > 0").
OptionCheck = Callable[[Any], "str | None"]
# (network on the meta device, ratio, every option with its default filled in) -> why the ratio cannot be reached
RatioCheck = Callable[[Any, float, Mapping[str, Any]], "str | None"]

SUPPLIED = ("current_masks", "input_shape")  # keyword parameters filled in by jackpot, never by a config
CHECK_NAMES = ("random_labels", "random_pixels", "random_pixels_labels", "half_dataset", "layerwise_rearrange",
               "layerwise_shuffle", "reinit")


class MethodError(ValueError):
    """A method name or import path that names no registered method, or a bad declaration."""


@dataclass(frozen=True)
class MethodSpec:
    """What a pruning method needs and when it runs (built from its ``@method`` declaration).

    ``when``: "init" (mask from the initialised network) or "trained" (from the dense-trained network).
    ``ticket_weights``: the weights the ticket restarts from by default ("init": rewind, "trained": LR rewinding).
    """

    name: str
    when: Literal["init", "trained"]
    ticket_weights: Literal["init", "trained"]
    needs_batches: bool
    options: tuple[str, ...]
    build: Builder
    summary: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, OptionCheck] = field(default_factory=dict)
    random_positions: bool = False
    iterative: bool = False
    prunes: bool = True
    inapplicable: frozenset[str] = frozenset()
    wants_input_shape: bool = False
    import_path: str = ""
    ratio_check: RatioCheck | None = None

    @property
    def uses_seed(self) -> bool:
        """Whether the method draws random numbers (and so takes a ``seed`` option)."""
        return "seed" in self.options

    def option_problem(self, key: str, value: Any) -> str | None:
        """None when ``value`` is allowed for option ``key``, else what is allowed."""
        check = self.checks.get(key)
        return None if check is None else check(value)

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise MethodError naming the first unknown option or bad value."""
        unknown = sorted(set(options) - set(self.options) - set(SUPPLIED))
        if unknown:
            allowed = ", ".join(self.options) or "none"
            raise MethodError(f"unknown option(s) {', '.join(unknown)} for pruning method {self.name!r}; "
                              f"allowed: {allowed}")
        for key, value in options.items():
            problem = self.option_problem(key, value)
            if problem:
                raise MethodError(f"option {key}={value!r} of pruning method {self.name!r} {problem}")


METHODS: dict[str, MethodSpec] = {}


def method(
    when: Literal["init", "trained"],
    needs_batches: bool,
    *,
    name: str | None = None,
    ticket_weights: Literal["init", "trained"] | None = None,
    random_positions: bool = False,
    iterative: bool = False,
    prunes: bool = True,
    inapplicable: tuple[str, ...] = (),
    checks: Mapping[str, OptionCheck] | None = None,
    ratio_check: RatioCheck | None = None,
    summary: str | None = None,
) -> Callable[[Builder], Builder]:
    """Declare and register a pruning method; returns the function unchanged.

    ``random_positions``: the kept positions are drawn at random (layerwise rearrange, and shuffling the init
    values of such a ticket, would change nothing the paper's checks ask about, so they are refused).
    ``iterative``: supports ``pruner.rounds > 1``; each round receives the previous masks as ``current_masks``.
    ``inapplicable``: sanity checks (by name, see CHECK_NAMES) that cannot apply, beyond what ``when``,
    ``needs_batches`` and ``random_positions`` already rule out. ``checks``: option name -> value check.
    ``ratio_check(model, ratio, options)``: what makes ``ratio`` impossible for this network and these options
    (every option, defaults filled in), or None. It gets the network on the meta device (shapes, no values)
    and runs with the config's checks, before anything else: a ratio the method cannot reach is refused up
    front, not after the dense training that a method after training waits for.
    ``ticket_weights`` defaults to "init" for methods at init and "trained" (LR rewinding) after training.
    """
    if when not in ("init", "trained"):
        raise MethodError(f"when={when!r} is not allowed; choose 'init' or 'trained'")
    unknown_checks = sorted(set(inapplicable) - set(CHECK_NAMES))
    if unknown_checks:
        raise MethodError(f"inapplicable={unknown_checks} names no sanity check; known: {', '.join(CHECK_NAMES)}")

    def register(fn: Builder) -> Builder:
        params = list(inspect.signature(fn).parameters.values())
        if len(params) < 3 or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params[:3]):
            raise MethodError(f"{fn.__qualname__} must take (model, ratio, batches, **options) as its first "
                              "three parameters")
        keyword = [p for p in params[3:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        no_default = [p.name for p in keyword if p.default is p.empty and p.name not in SUPPLIED]
        if no_default:
            raise MethodError(f"{fn.__qualname__}: option(s) {', '.join(no_default)} need a default value")
        options = tuple(p.name for p in keyword if p.name not in SUPPLIED)
        bad_checks = sorted(set(checks or {}) - set(options))
        if bad_checks:
            raise MethodError(f"{fn.__qualname__}: checks for {bad_checks}, which are not among its options "
                              f"({', '.join(options) or 'none'})")
        names = {p.name for p in keyword}
        if iterative and "current_masks" not in names:
            raise MethodError(f"{fn.__qualname__} is declared iterative but takes no current_masks parameter")
        spec = MethodSpec(
            name=name or fn.__name__, when=when, ticket_weights=ticket_weights or when, needs_batches=needs_batches,
            options=options, build=fn, summary=summary or (inspect.getdoc(fn) or "").split("\n")[0],
            defaults={p.name: p.default for p in keyword if p.name in options}, checks=dict(checks or {}),
            random_positions=random_positions, iterative=iterative, prunes=prunes,
            inapplicable=frozenset(inapplicable), wants_input_shape="input_shape" in names,
            import_path=f"{fn.__module__}.{fn.__qualname__}", ratio_check=ratio_check,
        )
        known = METHODS.get(spec.name)
        if known is not None and known.import_path != spec.import_path:
            raise MethodError(f"a pruning method named {spec.name!r} is already registered ({known.import_path}); "
                              f"give {spec.import_path} another name with @method(name=...)")
        METHODS[spec.name] = spec
        fn.jackpot_method = spec  # type: ignore[attr-defined]
        return fn

    return register


def _load_builtins() -> None:
    import jackpot.pruning.later  # noqa: F401  (SynFlow, ERK, FORCE)
    import jackpot.pruning.methods  # noqa: F401  (registers the built-in methods)


def get_method(name: str) -> MethodSpec:
    """The spec of a registered method by name, or by import path ``package.module.function`` (imported here, so
    a Ray or SLURM worker that starts a fresh process finds the method by itself)."""
    _load_builtins()
    if not isinstance(name, str) or not name:
        raise MethodError(f"pruning method {name!r} must be a name or an import path (package.module.function)")
    if name in METHODS:
        return METHODS[name]
    if "." not in name:
        raise MethodError(f"unknown pruning method {name!r}; known methods: {', '.join(METHODS)}, or an "
                          "import path package.module.function of a function decorated with @jackpot.pruning.method")
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise MethodError(f"cannot import module {module_name!r} for pruning method {name!r} ({err}); is the "
                          "folder that holds it on PYTHONPATH?") from err
    fn = getattr(module, attr, None)
    if fn is None:
        raise MethodError(f"module {module_name!r} has no attribute {attr!r} (pruning method {name!r})")
    spec = getattr(fn, "jackpot_method", None)
    if not isinstance(spec, MethodSpec):
        raise MethodError(f"{name} is not a registered pruning method: decorate it with "
                          "@jackpot.pruning.method(when=..., needs_batches=...)")
    return spec


# Value checks for declarations ---------------------------------------------------------------------------
def one_of(*allowed: Any) -> OptionCheck:
    return lambda value: None if value in allowed else f"is not allowed; choose one of: {', '.join(map(str, allowed))}"


def int_at_least(low: int, allow_none: bool = False) -> OptionCheck:
    def check(value: Any) -> str | None:
        if value is None and allow_none:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok else f"must be an integer >= {low}" + (" or null" if allow_none else "")
    return check


def number_in(low: float, high: float = float("inf"), low_open: bool = False) -> OptionCheck:
    def check(value: Any) -> str | None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and low <= value <= high and not (low_open and value == low):
            return None
        if high == float("inf"):
            return f"must be a number {'>' if low_open else '>='} {low:g}"
        return f"must be a number in {'(' if low_open else '['}{low:g}, {high:g}]"
    return check


def boolean(allow_none: bool = False) -> OptionCheck:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or (allow_none and value is None):
            return None
        choices = "true, false or null (auto)" if allow_none else "true or false"
        return f"is not allowed; choose {choices}"
    return check
