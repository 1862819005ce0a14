"""One optimizer step as a program a CUDA graph can record: forward, loss, backward, gradient hooks, update.

At batch 64 a training step on an H100/H200 is launch-bound: about a thousand kernels at ~11 µs of host time
each (docs/benchmarks.md), so the GPU waits for the host whatever it computes. On a CUDA device `StepProgram`
runs its first steps eagerly (the warm-up creates momentum buffers, cuDNN/cuBLAS handles and any compiled
kernels), then records one step of the full batch shape as a `torch.cuda.CUDAGraph` and replays it for every
later batch of that shape: one launch per step. Everything a replay touches stays at a fixed address: the
input batch (copied into static buffers), weights, gradients, momentum buffers, the learning rate (a device
tensor the module updates in place each epoch), the float masks and the epoch totals.

Batches of another shape (the epoch's last, partial batch), every step on a CPU and every step when capture
is off run the same program eagerly, so one code path holds the step's arithmetic.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

# What a callback's `on_before_optimizer_step` does, declared as its class attribute `step_hook`:
# "device": only device work on the gradients (e.g. the mask multiply); recorded once, replayed every step.
# "host": no tensor work at all (e.g. a fault-injection point); runs on the host before every step.
# A hook that declares neither could read gradients on the host, which a replay cannot offer: the step is
# then not recorded.
DEVICE_HOOK = "device"
HOST_HOOK = "host"


@dataclass(frozen=True)
class StepHook:
    """A bound `on_before_optimizer_step` and what it does (DEVICE_HOOK, HOST_HOOK or None: undeclared)."""

    name: str
    call: Callable[[], None]
    kind: str | None


def capture_blockers(device: torch.device, optimizer: torch.optim.Optimizer, hooks: Sequence[StepHook],
                     compile_options: dict | None = None) -> list[str]:
    """Why this step cannot be recorded as a CUDA graph (empty when it can). `compile_options`: the keyword
    arguments the network was compiled with (`mode`, `options`), if it was."""
    reasons = []
    if device.type != "cuda":
        reasons.append(f"the run trains on {device.type}, and CUDA graphs need a CUDA device")
    if not optimizer.defaults.get("fused"):
        reasons.append(f"the optimizer ({type(optimizer).__name__}) is not fused: its update reads the learning "
                       f"rate on the host (use fused=True)")
    undeclared = [hook.name for hook in hooks if hook.kind not in (DEVICE_HOOK, HOST_HOOK)]
    if undeclared:
        reasons.append(f"on_before_optimizer_step of {', '.join(undeclared)} does not declare step_hook = "
                       f"'{DEVICE_HOOK}' or '{HOST_HOOK}'")
    compile_options = compile_options or {}
    mode = compile_options.get("mode")
    if mode in ("reduce-overhead", "max-autotune"):
        reasons.append(f"torch.compile mode {mode!r} records its own CUDA graphs")
    elif (compile_options.get("options") or {}).get("triton.cudagraphs"):
        reasons.append("torch.compile option triton.cudagraphs records its own CUDA graphs")
    return reasons


# Recording, and the warm-up steps before it, take turns between the threads of a process (the runs of a pack,
# jackpot.runs.pack). A recording synchronises the device and empties the allocator's cache as it starts, and a
# warm-up step's first kernels of a shape may autotune (cuDNN) and allocate: neither may land inside another
# thread's recording. The sync check also switches torch's process-wide sync debug mode and Python's warning
# filters. A few steps per run, so the turns cost nothing; `capture_turn` is the lock.
_CAPTURE_TURN = threading.RLock()


def capture_turn() -> threading.RLock:
    """The lock a thread holds while it warms up or records a step: work that must not run during another
    thread's recording (emptying the allocator's cache, say) takes it too."""
    return _CAPTURE_TURN


SYNC_WARNING = "called a synchronizing CUDA operation"  # what torch's sync debug mode "warn" says


class HostSyncs:
    """While active, collects the host synchronisations this thread's CUDA work makes (torch's sync debug
    mode, which reports them as warnings); `messages` holds one line per sync.

    Only the entering thread's warnings count: a background checkpoint write copying to the host at the same
    time is not part of the step being examined."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._exits: contextlib.ExitStack | None = None

    def __enter__(self) -> HostSyncs:
        thread = threading.get_ident()
        with contextlib.ExitStack() as exits:  # undone at once if a setup step fails
            exits.enter_context(warnings.catch_warnings())  # restores the filters and showwarning on exit
            warnings.filterwarnings("always", message=SYNC_WARNING)
            show_elsewhere = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None) -> None:
                if SYNC_WARNING not in str(message):
                    show_elsewhere(message, category, filename, lineno, file, line)
                elif threading.get_ident() == thread:
                    self.messages.append(f"{message} (at {filename}:{lineno})")
                # another thread's syncs are only reported because the debug mode is on: dropped

            warnings.showwarning = show
            mode = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            exits.callback(torch.cuda.set_sync_debug_mode, mode)
            self._exits = exits.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._exits.close()


class StepProgram:
    """Runs optimizer steps; with `capture`, records the full-batch step after `warmup_steps` and replays it.

    `forward(x) -> logits`; `add_totals(logits, y, loss)` accumulates the epoch's metrics in place on the device;
    `hooks` run between backward and the update (all of them when eager; DEVICE_HOOK ones inside the recording
    and HOST_HOOK ones before each replay when captured). `autocast_dtype` is the forward's autocast dtype
    (None: full precision); backward runs outside autocast, as Lightning's automatic optimization does.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
                 add_totals: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None], hooks: Sequence[StepHook],
                 device: torch.device, autocast_dtype: torch.dtype | None = None, capture: bool = False,
                 warmup_steps: int = 3, required: bool = False):
        if capture and device.type != "cuda":
            raise ValueError(f"capture needs a CUDA device, got {device}")
        self.forward = forward
        self.optimizer = optimizer
        self.add_totals = add_totals
        self.hooks = list(hooks)
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.capture = capture
        self.required = required  # False: a recording that fails falls back to eager steps, with a warning
        self.fallback_reason: str | None = None
        self.warmup_steps = int(warmup_steps)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.recorded = False  # stays True after `release`, for reports
        self.replays = 0  # steps run by replaying the graph
        self.eager_steps = 0
        self._full_shape: torch.Size | None = None  # the first batch's shape: the one worth recording
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        if capture:
            learning_rate_on_device(optimizer)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on the batch (x, y)."""
        if self._full_shape is None:
            self._full_shape = x.shape
        if self.graph is not None and x.shape == self._static[0].shape and y.shape == self._static[1].shape:
            self._replay(x, y)
        elif (self.capture and self.graph is None and x.shape == self._full_shape
              and self.eager_steps >= self.warmup_steps):
            self._record(x, y)
        elif self.capture and self.graph is None:
            self._warm_up(x, y)
        else:
            self._run(x, y, self.hooks)
            self.eager_steps += 1

    # The step itself ---------------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, y: torch.Tensor, hooks: Sequence[StepHook]) -> None:
        self.optimizer.zero_grad(set_to_none=True)  # under capture: backward allocates the graph's own gradients
        mixed = self.autocast_dtype is not None  # full precision: no autocast contexts at all (5 µs each on a CPU)
        # Autocast's weight cache must be off while recording; it saves nothing here (each weight is cast once).
        with (torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=False) if mixed
              else contextlib.nullcontext()):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y)
        self.add_totals(logits, y, loss)
        with torch.autocast(self.device.type, enabled=False) if mixed else contextlib.nullcontext():
            loss.backward()
        for hook in hooks:
            hook.call()
        self.optimizer.step()

    # CUDA graph ---------------------------------------------------------------------------------------------------
    def _warm_up(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """An eager step on a side stream, as PyTorch's whole-network capture recipe warms up.

        The last warm-up step runs under torch's sync debug mode: a step that makes the host wait for the GPU
        (an `.item()`, a host copy, a data-dependent shape) cannot be recorded, and finding that out here
        leaves the step complete and the process clean, where a failed recording would not."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        checked = self.eager_steps == self.warmup_steps - 1
        with _CAPTURE_TURN, torch.cuda.stream(side), (HostSyncs() if checked else contextlib.nullcontext()) as syncs:
            self._run(x, y, self.hooks)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1
        if checked and syncs.messages:
            self._give_up(f"the step makes the host wait for the GPU {len(syncs.messages)} time(s), first: "
                          f"{syncs.messages[0]}")

    def _give_up(self, reason: str) -> None:
        """No recording: raise when it is `required`, else warn once and run every later step eagerly."""
        if self.required:
            raise RuntimeError(f"the training step cannot be recorded as a CUDA graph: {reason}")
        self.capture, self._static, self.fallback_reason = False, None, reason
        warnings.warn(f"jackpot: recording the training step as a CUDA graph failed ({reason}); training goes on "
                      "with eager steps", RuntimeWarning, stacklevel=3)

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Record one step on static copies of (x, y), then replay it once: recording computes nothing.

        If recording fails and the graph is not `required`, this step and all later ones run eagerly (a warning
        names the error): a run is never lost to the speed-up."""
        with _CAPTURE_TURN:  # one recording at a time in this process
            self._record_now(x, y)

    def _record_now(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._static = (x.clone(), y.clone())
        graph, pool = torch.cuda.CUDAGraph(), torch.cuda.graph_pool_handle()
        stream = torch.cuda.current_stream(self.device)
        body_error: Exception | None = None
        try:
            # thread_local: a background checkpoint write in another thread may go on while this records
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                try:
                    self._run(*self._static, [hook for hook in self.hooks if hook.kind == DEVICE_HOOK])
                except Exception as err:
                    body_error = err
                    raise
        except Exception as err:
            _clean_up_failed_capture(pool, stream, self.device)
            if self.required:
                raise
            cause = body_error or err  # ending a broken capture raises a generic error; the first one says why
            self._give_up(f"{type(cause).__name__}: {cause}")
            self._run(x, y, self.hooks)
            self.eager_steps += 1
            return
        self.graph, self.recorded = graph, True
        self._host_hooks()
        graph.replay()
        self.replays += 1

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self._host_hooks()
        static_x, static_y = self._static
        static_x.copy_(x, non_blocking=True)
        static_y.copy_(y, non_blocking=True)
        self.graph.replay()
        self.replays += 1

    def release(self) -> None:
        """Free the graph and its memory pool (activations, gradients): the fit is over. Counters stay."""
        self.graph, self._static, self.capture = None, None, False

    def _host_hooks(self) -> None:
        for hook in self.hooks:
            if hook.kind == HOST_HOOK:
                hook.call()


def _clean_up_failed_capture(pool: tuple[int, int], stream: torch.cuda.Stream, device: torch.device) -> None:
    """What `torch.cuda.graph` leaves behind when ending a capture fails: its capture stream stays the current
    stream, and the caching allocator still counts the capture as under way (so it keeps deferring frees) with
    the graph's memory pool held. Both undone, best effort."""
    torch.cuda.set_stream(stream)
    index = device.index if device.index is not None else torch.cuda.current_device()
    with contextlib.suppress(Exception):  # raises when torch already ended it (then torch releases the pool too)
        torch._C._cuda_endAllocateToPool(index, pool)
        torch._C._cuda_releasePool(index, pool)


def _device_learning_rate(group: dict) -> torch.Tensor:
    """The group's learning rate as a float32 0-dim tensor on its parameters' device, made once (same value) and
    then kept: a recorded update reads it by address."""
    lr, device = group["lr"], group["params"][0].device
    if not (isinstance(lr, torch.Tensor) and lr.device == device and lr.dtype == torch.float32 and lr.dim() == 0):
        group["lr"] = lr = torch.tensor(float(lr), dtype=torch.float32, device=device)
    return lr


def learning_rate_on_device(optimizer: torch.optim.Optimizer) -> None:
    """Make every group's learning rate a float32 0-dim tensor on its parameters' device, so that a recorded
    update reads the current value (a float would be frozen into the graph)."""
    for group in optimizer.param_groups:
        _device_learning_rate(group)


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Set every group's learning rate. A tensor learning rate is filled in place (a recorded step reads it), and
    a fused optimizer on CUDA always gets one: the fused kernel takes a float learning rate in double precision
    and a tensor one in float32, so recorded and eager CUDA steps use the same float32 number only this way.
    After a resume the optimizer's state may bring the learning rate back as a CPU tensor; it goes back to the
    device here."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor) or (group.get("fused") and group["params"][0].is_cuda):
            _device_learning_rate(group).fill_(value)
        else:
            group["lr"] = value
