"""The Keras-like Model API over a compiled model module.

::

    model = runtime.load_model("examples/mnist_mlp.dl", seed=0)
    history = model.fit(x, y, epochs=5, batch_size=128, validation_data=(xv, yv))
    model.evaluate(xv, yv)          # {"loss": ..., "accuracy": ...}
    model.predict(xv)               # probabilities, [N, 10]
    model.save("weights.npz")

A :class:`Model` holds the model module (with its compiled ``train_step``,
see ``compiler/train_step.py``), the weights and optimizer state as numpy
arrays, and a :class:`Backend` that runs the module's functions:

- ``"native"``: native code from ``runtime.compile``; one native call per
  training step, weights and optimizer state updated in place;
- ``"interp"``: the reference interpreter (slow; for tests and tiny models);
- ``"auto"`` (default): native when ``runtime.compile`` is available.

Data is checked once per ``fit``/``evaluate``/``predict`` (shapes, dtypes,
label range, NaN/inf; see ``runtime/data.py``) before any batch is run.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compiler.diagnostics import DlRuntimeError
from compiler.initializers import InitializerError, initialize
from compiler.ir.core import Function, Module, Op
from compiler.metrics import combine_metrics, metric_names
from compiler.schedules import LearningRateSchedule, check_learning_rate, schedule_from_spec, scheduled_rate
from compiler.train_step import (
    TRAIN_STEP,
    TrainSignature,
    build_split_step,
    build_train_step,
    build_weighted_step,
    model_info,
    train_signature,
)

from .arguments import (
    ArgumentTypeError,
    ArgumentValueError,
    as_path,
    check_callable,
    check_passes,
    check_seed,
)
from .callbacks import Callback, CallbackList, LambdaCallback
from .checkpoint import Checkpoint, check_fits, load_checkpoint, save_checkpoint
from .data import DataSpec, TensorSpec, all_finite, prepare_inputs, prepare_targets
from .feed import BatchFeed
from .weights import check_sample_weight, sample_weights

if TYPE_CHECKING:
    from .distributed import Distributed, Sync

BACKENDS = ("auto", "native", "interp")
SUMMARY_BATCH = 32          # the batch size summary() sizes the training step's memory at


# ---------------------------------------------------------------------------
# Backends: who runs the module's functions


class Backend(Protocol):
    """Runs functions of one model module on numpy arrays."""

    name: str
    calls: int            # native (or interpreted) function calls so far

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling so far."""

    def call(self, fn: str, args: list[np.ndarray]) -> list[np.ndarray]:
        """Run ``fn`` with checked arguments; one array per output."""

    def train_step(self, args: list[np.ndarray]) -> list[np.ndarray]:
        """Run ``train_step`` on arguments the caller has already validated.

        The native backend writes new weights and state into the argument
        buffers (the function's ``inplace`` pairs) and returns them among its
        outputs; the interpreter returns new arrays and leaves its arguments
        untouched.  Either way the outputs hold the new tensors.
        """

    def predict(self, args: list[np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run ``predict`` on one batch of validated arguments; fresh output array(s)."""

    def caller(self, fn: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        """Repeated calls of ``fn`` on arguments checked once (native code: in place, as
        :meth:`train_step`); one array per output."""


class InterpBackend:
    """The reference interpreter (``compiler.ir.interpreter``): exact, slow."""

    name = "interp"

    def __init__(self, module: Module):
        from compiler.ir.interpreter import interpret

        self._interpret = interpret
        self.module = module
        self.compile_seconds = 0.0
        self.calls = 0

    def call(self, fn: str, args: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        return self._interpret(self.module.get(fn), args)

    def train_step(self, args: list[np.ndarray]) -> list[np.ndarray]:
        return self.call(TRAIN_STEP, args)

    def predict(self, args: list[np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
        outs = self.call("predict", args)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def caller(self, fn: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        """Repeated calls of ``fn`` (new arrays out; arguments untouched)."""
        return lambda args: self.call(fn, args)


Passes = str | Callable[[Module], Module] | None
"""The passes run before native codegen: None (the ``default`` pipeline), a
pipeline string, or a function from module to module (the CLI's pass flags)."""


class LazyCompiled:
    """A model's functions as native code, each compiled on first use -- as JAX's ``jit``
    and Keras' ``train_function`` are: ``load_model`` compiles nothing, the first training
    step compiles the step, the first ``predict`` the prediction function, and a model
    only used for prediction never compiles its training step (the bench MLP: 0.06 s for
    ``predict`` alone, 0.28 s for the step, 0.49 s for all four functions at once; Zen 5).

    ``compiled[name]`` is the :class:`~runtime.compiled.CompiledFunction` (compiled now if
    need be); ``name in compiled`` asks the module.  Each function is its own native
    module (object cache entry, thread pool, workspace); functions never call each other.
    Thread-safe: two threads asking for one function compile it once.
    """

    def __init__(self, module: Module, pipeline: str | None, options: Any,
                 compile_module: Callable[..., Any]):
        self.module = module
        self._pipeline = pipeline
        self._options = options
        self._compile = compile_module
        self._lock = threading.Lock()
        self._threads: int | None = None
        self.modules: dict[str, Any] = {}        # function name -> its CompiledModule
        self.compile_seconds = 0.0

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.module

    def __getitem__(self, name: str) -> Any:
        return self.module_of(name)[name]

    def module_of(self, name: str) -> Any:
        """The compiled module holding function ``name`` (compiling it on first use)."""
        compiled = self.modules.get(name)
        if compiled is not None:
            return compiled
        if name not in self.module:
            raise KeyError(name)
        with self._lock:
            compiled = self.modules.get(name)
            if compiled is None:
                one = Module([self.module.get(name)], dict(self.module.attrs))
                start = time.perf_counter()
                compiled = self._compile(one, passes=self._pipeline, options=self._options)
                self.compile_seconds += time.perf_counter() - start
                if self._threads is not None:
                    _set_threads(compiled, self._threads)
                self.modules[name] = compiled
        return compiled

    def compile_all(self, names: list[str] | None = None) -> None:
        """Compile ``names`` (default: every function) now, not at first use."""
        for name in names if names is not None else [f.name for f in self.module.functions]:
            self.module_of(name)

    def whole(self) -> Any:
        """The whole module as one compiled module (what an AOT export writes)."""
        return self._compile(self.module, passes=self._pipeline, options=self._options)

    def set_num_threads(self, n: int) -> None:
        """Let every function (compiled now or later) split its kernels into up to ``n`` threads."""
        with self._lock:
            self._threads = n
            for compiled in self.modules.values():
                _set_threads(compiled, n)


def _set_threads(compiled: Any, n: int) -> None:
    from compiler.codegen.threads import set_num_threads

    set_num_threads(compiled._library, n)


class NativeBackend:
    """Native code through ``runtime.compile``: one call per function invocation, each
    function compiled on first use (:class:`LazyCompiled`)."""

    name = "native"

    def __init__(self, module: Module, passes: Passes = None, flush_denormals: bool = False):
        compile_module = native_compiler()
        if compile_module is None:
            raise DlRuntimeError("the native backend is not available (runtime.compile is missing); "
                                 "use backend='interp'")
        options = None
        if flush_denormals:
            from compiler.codegen.target import CodegenOptions
            options = CodegenOptions(flush_denormals=True)
        if callable(passes):      # the CLI's pass flags (which print IR): once, on the whole module
            self.compiled = LazyCompiled(passes(module), "", options, compile_module)
        else:
            self.compiled = LazyCompiled(module, passes, options, compile_module)
        self.flush_denormals = flush_denormals
        self.passes = passes
        self.calls = 0
        self._fast_step_fn: Callable[..., Any] | None = None
        self._fast_predict: Callable[..., Any] | None = None

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling this backend's functions so far."""
        return self.compiled.compile_seconds

    @property
    def _fast_step(self) -> Callable[..., Any]:
        """A call path without per-call argument checks, when the runtime offers one: fit
        validates every batch's layout once up front."""
        if self._fast_step_fn is None:
            self._fast_step_fn = _fast_path(self.compiled[TRAIN_STEP])
        return self._fast_step_fn

    def call(self, fn: str, args: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        return _as_list(self.compiled[fn](*args))

    def train_step(self, args: list[np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        return _as_list(self._fast_step(*args))

    def caller(self, fn: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        """Repeated calls of ``fn`` through the unchecked path (as ``train_step``'s: in-place
        outputs in the argument buffers, the others reused by the next call)."""
        fast = _fast_path(self.compiled[fn])
        return lambda args: _as_list(fast(*args))

    def predict(self, args: list[np.ndarray]) -> np.ndarray | tuple[np.ndarray, ...]:
        """``predict`` on one batch through the re-validating call path (the weights are the
        same arrays every call, so only the input is checked); fresh output arrays."""
        self.calls += 1
        if self._fast_predict is None:
            self._fast_predict = _fast_path(self.compiled["predict"])
        result = self._fast_predict(*args)
        if isinstance(result, tuple):
            return tuple(np.array(r) for r in result)
        return np.array(result)


def native_compiler() -> Callable[..., Any] | None:
    """``runtime.compile`` if the native code generator is installed, else None."""
    try:
        from . import compiled
    except ImportError:
        return None
    return getattr(compiled, "compile", None)


def _fast_path(fn: Any) -> Callable[..., Any]:
    for attr in ("call_unchecked", "unchecked", "fast"):
        fast = getattr(fn, attr, None)
        if callable(fast):
            return fast
    return fn


def _as_list(result: Any) -> list[np.ndarray]:
    if isinstance(result, (tuple, list)):
        return list(result)
    return [result]


def make_backend(module: Module, backend: str, passes: Passes = None,
                 flush_denormals: bool = False) -> Backend:
    """The backend named ``backend`` (one of :data:`BACKENDS`) for ``module``;
    ``passes`` and ``flush_denormals`` (``CodegenOptions.flush_denormals``) apply to native
    code (the interpreter runs the IR as built, in IEEE arithmetic)."""
    if backend not in BACKENDS:
        raise ArgumentValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend == "interp" or (backend == "auto" and native_compiler() is None):
        return InterpBackend(module)
    return NativeBackend(module, passes, flush_denormals)


# ---------------------------------------------------------------------------
# Batches, history and interrupts


class _Batches:
    """The rows ``lo:hi`` of several equally long arrays, in a shuffled order or as they are.

    Unshuffled batches are slices (no copy).  Shuffled batches are gathered
    row by row into buffers allocated once per epoch and reused by every
    batch: a batch is copied while it is small enough to stay in cache for
    the step that reads it, the data set is never copied whole, and the step
    sees the same argument arrays every time (so their layout is checked once).
    """

    def __init__(self, arrays: list[np.ndarray], batch_size: int, order: np.ndarray | None):
        self._arrays = arrays
        self._order = order
        self._buffers = None if order is None else [
            np.empty((min(batch_size, len(a)), *a.shape[1:]), a.dtype) for a in arrays]

    def get(self, lo: int, hi: int) -> list[np.ndarray]:
        if self._order is None:
            return [a[lo:hi] for a in self._arrays]
        rows = self._order[lo:hi]
        assert self._buffers is not None    # allocated whenever there is an order
        out = []
        for a, buffer in zip(self._arrays, self._buffers):
            view = buffer if hi - lo == len(buffer) else buffer[:hi - lo]
            # mode="clip": the indices come from a permutation, so they are in range, and
            # numpy only writes straight into ``out`` (without a temporary) when not raising
            np.take(a, rows, axis=0, out=view, mode="clip")
            out.append(view)
        return out


class _EpochMeter:
    """One epoch's bookkeeping: the sample-weighted running means of loss and metrics (shown
    on the progress bar, passed to batch callbacks), samples seen, time and backend calls."""

    def __init__(self, names: list[str], n_tensors: int, bar: Any, hooks: CallbackList | None, backend: Backend):
        self.names, self._k, self._bar, self._backend = names, n_tensors, bar, backend
        self._hooks = hooks if hooks is not None and hooks.wants_batches else None
        self._sums = np.zeros(len(names))
        self.seen = 0
        self._calls = backend.calls
        self._start = time.perf_counter()
        self.seconds = 0.0
        self.calls = 0

    def begin(self, i: int) -> None:
        if self._hooks is not None:
            self._hooks.on_train_batch_begin(i)

    def add(self, i: int, out: list[np.ndarray], size: int) -> None:
        """Step ``i`` (``train_step``'s outputs ``out``) trained ``size`` samples."""
        self._sums += np.array([float(out[0]), *(float(v) for v in out[1 + self._k:])]) * size
        self.seen += size
        if self._bar is not None:
            self._bar.update(size)
            if i % 20 == 0:
                self._bar.set_postfix_str(_format_logs(self.logs()), refresh=False)
        if self._hooks is not None:
            self._hooks.on_train_batch_end(i, self.logs())

    def logs(self) -> dict[str, float]:
        return combine_metrics(dict(zip(self.names, (float(v) for v in self._sums / max(self.seen, 1)))))

    def done(self) -> _EpochMeter:
        self.seconds = time.perf_counter() - self._start
        self.calls = self._backend.calls - self._calls
        return self


@dataclass
class History:
    """What ``fit`` returns, as in Keras: ``history["loss"][epoch]`` and friends.

    Besides the per-epoch metrics (``loss``, each metric, ``val_loss``,
    ``val_<metric>``) it records timings (seconds per epoch, samples per
    second and backend calls per epoch) and how many samples were trained
    and validated on.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    epoch: list[int] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    samples_per_second: list[float] = field(default_factory=list)
    calls_per_epoch: list[int] = field(default_factory=list)
    train_samples: int = 0           # samples trained on per epoch (after validation_split)
    validation_samples: int = 0      # samples validated on after every epoch (0: no validation)

    def record(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))


class _DeferredInterrupt:
    """Turns Ctrl-C during ``fit`` into a KeyboardInterrupt between two steps.

    A step is then either applied or not: the weights are never half updated.
    A second Ctrl-C raises at once.  Only the main thread can install signal
    handlers; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self.pending = False
        self._old: Any = None

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        if self.pending:
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


# ---------------------------------------------------------------------------
# The model


class Model:
    """A trainable model: module + weights + optimizer state + backend."""

    def __init__(self, module: Module, *, seed: int = 0, backend: str = "auto", source: str | None = None,
                 passes: Passes = None, flush_denormals: bool = True):
        seed = check_seed(seed, "Model: argument 'seed'")
        if not isinstance(flush_denormals, bool):
            raise ArgumentTypeError(f"Model: argument 'flush_denormals' must be a bool, "
                                    f"got {flush_denormals!r}")
        self.flush_denormals = flush_denormals
        self.module = module
        self.source = source
        info = model_info(module)
        build_train_step(module)          # (re)built, so it always matches this signature
        self.info = info
        self.signature: TrainSignature = train_signature(module)
        self.name = self.signature.model_name
        self.data_spec = _data_spec(module, self.signature, info)
        self.seed = seed
        self.learning_rate = self.signature.learning_rate
        self.step = 0
        self.epochs_trained = 0
        self.history: History | None = None
        self._sync: Sync | None = None     # fit(distributed=...): runtime/distributed.py
        # fit(learning_rate=schedule), or the .dl optimizer line's (adam(lr=cosine(...)))
        spec = info.get("lr_schedule")
        self.lr_schedule: LearningRateSchedule | None = schedule_from_spec(spec) if spec else None
        self.stop_training = False        # set by a callback: fit ends after the current step
        self._shuffle_rng = np.random.default_rng([seed, 1])
        self._tensors = self._initial_tensors(seed)
        self.backend: Backend = make_backend(module, backend, passes, flush_denormals)
        self._step_backend: Backend = self.backend         # the weighted step's while fit has weights
        self._weighted_backend: Backend | None = None
        self._weighted_module: Module | None = None
        # predict and evaluate take the parameters and the model state: the first _n_model tensors
        self._n_model = len(self.signature.params) + len(self.signature.model_state)
        # (dtype, rank, per-sample shape) of a model with one input and static sample dims:
        # what predict's fast path accepts as is (a rank that never matches disables it).
        spec = self.data_spec.inputs[0] if len(self.data_spec.inputs) == 1 else None
        self._single_input = (spec.dtype, len(spec.shape), tuple(spec.shape[1:])) \
            if spec is not None and all(isinstance(d, int) for d in spec.shape[1:]) else (None, -1, ())

    # -- state -------------------------------------------------------------------

    @property
    def param_names(self) -> list[str]:
        return [n for n, _ in self.signature.params]

    @property
    def model_state_names(self) -> list[str]:
        """The model's non-trainable state (batch norm's moving statistics), in order."""
        return [n for n, _ in self.signature.model_state]

    @property
    def state_names(self) -> list[str]:
        """The optimizer's state tensors."""
        return [s.name for s in self.signature.state]

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, by name, in declaration order."""
        return {n: a.copy() for n, a in zip(self.param_names, self._tensors)}

    @property
    def model_state(self) -> dict[str, np.ndarray]:
        """A copy of every non-trainable state value, by name (``batch_norm_1.moving_mean``)."""
        k = len(self.param_names)
        return {n: a.copy() for n, a in zip(self.model_state_names, self._tensors[k:self._n_model])}

    @property
    def optimizer_state(self) -> dict[str, np.ndarray]:
        """A copy of every optimizer state tensor, by name."""
        return {n: a.copy() for n, a in zip(self.state_names, self._tensors[self._n_model:])}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Replace parameters (and model state values) by name; others keep their values.

        Each value must have the tensor's shape and hold real numbers that are
        finite once converted to its dtype (a float64 1e300 is inf as f32);
        anything else is an :class:`ArgumentTypeError` / :class:`ArgumentValueError`
        naming the tensor, and nothing changes.
        """
        if not isinstance(weights, Mapping):
            raise ArgumentTypeError(f"set_weights: argument 'weights' must be a dict of arrays by "
                                    f"parameter name, got {type(weights).__name__}")
        names = self.param_names + self.model_state_names
        tensors = list(self._tensors)
        for name, value in weights.items():
            if name not in names:
                raise DlRuntimeError(f"model '{self.name}' has no parameter '{name}' "
                                     f"(parameters: {', '.join(names)})")
            i = names.index(name)
            tensors[i] = _weight(name, value, tensors[i])
        self._tensors = tensors

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the parameters and the non-trainable state, by name: what
        :meth:`set_weights` takes back (EarlyStopping's ``restore_best_weights``)."""
        return {**self.weights, **self.model_state}

    def reset_optimizer(self) -> None:
        """Zero the optimizer state (and Adam's step count)."""
        init = self.signature.initial_state()
        self._tensors = self._tensors[:self._n_model] + [init[n] for n in self.state_names]

    def _initial_tensors(self, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        tensors = []
        inits = {p["name"]: p.get("init") or {"name": "zeros"} for p in self.info["params"]}
        for name, t in self.signature.params:
            if not t.is_static:
                raise DlRuntimeError(f"parameter '{name}' has symbolic shape {t.dsl_str()}; "
                                     "parameters need static shapes")
            try:
                tensors.append(initialize(inits[name], t.concrete_shape({}), t.dtype.np, rng,
                                          f"parameter '{name}'"))
            except InitializerError as e:
                raise DlRuntimeError(f"parameter '{name}': {e}") from None
        state_inits = {s["name"]: s.get("init") or {"name": "zeros"} for s in self.info.get("state", [])}
        for name, t in self.signature.model_state:
            try:
                tensors.append(initialize(state_inits[name], t.concrete_shape({}), t.dtype.np, rng,
                                          f"state '{name}'"))
            except InitializerError as e:
                raise DlRuntimeError(f"state '{name}': {e}") from None
        init = self.signature.initial_state()
        return tensors + [init[n] for n in self.state_names]

    # -- training ----------------------------------------------------------------

    def fit(self, x: Any, y: Any = None, *, epochs: int = 1, batch_size: int = 32,
            validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0,
            shuffle: bool = True, verbose: int = 1,
            learning_rate: float | LearningRateSchedule | None = None,
            callbacks: list[Callback] | None = None, steps_per_epoch: int | None = None,
            on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
            allow_nonfinite: bool = False, distributed: bool | Distributed = False,
            sample_weight: Any = None, class_weight: Any = None) -> History:
        """Train for ``epochs`` passes over ``(x, y)``; returns a :class:`History`.

        The last, partial batch of each epoch is trained too.  Shuffling uses a
        generator seeded by the model's seed, so two runs with the same seed
        are bit-identical.  ``verbose``: 0 silent, 1 a progress bar per epoch,
        2 one line per epoch.  Ctrl-C stops between two steps (KeyboardInterrupt).

        A step whose loss is NaN or infinite stops training with a
        :class:`NonFiniteLossError` naming the epoch and step and (the NaN trap)
        the first ``.dl`` line whose value became non-finite; the model keeps
        the weights from before that step.  ``allow_nonfinite=True`` trains on.

        Validation (``val_*`` in the logs, after every epoch) runs on
        ``validation_data=(x, y)``, or, as in Keras, on the last
        ``validation_split`` fraction of ``(x, y)``, taken before shuffling
        and never trained on.

        ``learning_rate``: a number (from now on), or a schedule from
        :mod:`compiler.schedules` (``dlc.schedules``) giving each step's rate from ``Model.step``
        (the rate is an argument of the compiled step: nothing recompiles).
        ``callbacks``: :class:`runtime.callbacks.Callback` objects, called as
        Keras calls them; one that sets ``model.stop_training`` ends training
        after the current step, and ``fit`` returns the History so far.

        Without ``y``, ``x`` yields ``(x, y)`` batches (a generator, for data
        that does not fit in memory; see :mod:`runtime.feed`), and
        ``steps_per_epoch`` may say how many make an epoch.
        ``sample_weight`` (one non-negative weight per sample) or ``class_weight``
        (``{class: weight}``, or ``"balanced"``) weight each sample's loss as Keras
        does: a batch's loss is ``sum(w * loss) / batch size``; the metrics stay
        unweighted.  They train through a second, weighted training step, compiled
        on first use (see docs/training.md, "Sample and class weights").
        ``distributed=True`` (or a :class:`~runtime.distributed.Distributed`), under
        ``mpirun -n K``: data-parallel training over K processes, each training on
        its shard of every epoch's order, ``batch_size`` rows per rank per step (a
        global batch of ``K * batch_size``); only rank 0 shows progress.  See
        docs/distributed.md.
        """
        _check_positive(epochs=epochs, batch_size=batch_size)
        check_callable(on_epoch_end, "fit: argument 'on_epoch_end'")
        feed: BatchFeed | None = None
        weights: np.ndarray | None = None
        if y is None:
            if sample_weight is not None or class_weight is not None:
                raise ArgumentValueError("fit: sample_weight and class_weight need arrays, not batches "
                                         "from an iterable")
            feed = BatchFeed(x, self.data_spec, steps_per_epoch)
            if validation_split:
                raise ArgumentValueError("fit: validation_split needs arrays; with batches from an iterable "
                                         "pass validation_data=(x, y)")
            xs, ys, val = self._validation([], [], validation_data, 0.0)
            n = 0
        else:
            if steps_per_epoch is not None:
                raise ArgumentValueError("fit: steps_per_epoch is for batches from an iterable (fit(x) without "
                                         "y); with arrays an epoch is one pass over them")
            xs = prepare_inputs(x, self.data_spec, "training input")
            ys = prepare_targets(y, self.data_spec, len(xs[0]), "training target")
            if len(xs[0]) == 0:
                raise DlRuntimeError("fit: the training data is empty")
            weights = sample_weights(sample_weight, class_weight, ys[0], len(xs[0]), self.module)
            cut = len(xs[0])
            xs, ys, val = self._validation(xs, ys, validation_data, validation_split)
            n = len(xs[0])
            if weights is not None:
                if cut != n:
                    weights = weights[:n]          # validation_split: the validated rows are unweighted
                ys = [*ys, weights]                # trained as one more batch array, after the targets
        if learning_rate is not None:
            self._set_learning_rate(learning_rate)
        if distributed:
            if weights is not None:
                raise ArgumentValueError("fit: sample and class weights are not supported with "
                                         "distributed training")
            if feed is not None:
                raise ArgumentValueError("fit: distributed training shards arrays; batches from an "
                                         "iterable cannot be split over the ranks")
            from .distributed import start

            facts = {"samples": n, "batch_size": batch_size, "seed": self.seed, "shuffle": shuffle,
                     "learning_rate": self.learning_rate}
            self._sync = start(self, distributed, facts, self._split_backend())
            verbose = verbose if self._sync.rank == 0 else 0
        span = batch_size if self._sync is None else self._sync.span(batch_size)   # the global batch
        if on_epoch_end is not None:
            callbacks = [*(callbacks or []), LambdaCallback(on_epoch_end=on_epoch_end)]
        logged = ["loss", *metric_names(self.signature.metrics)]
        hooks = CallbackList(callbacks, self, {
            "epochs": epochs, "steps": feed.steps_hint() if feed is not None else math.ceil(n / span),
            "samples": n if feed is None else None, "batch_size": batch_size if feed is None else None,
            "verbose": verbose, "metrics": logged + ([f"val_{k}" for k in logged] if val is not None else [])})
        history = History(train_samples=n, validation_samples=len(val[0][0]) if val is not None else 0)
        self.history = history
        self.stop_training = False
        logs: dict[str, float] = {}
        hooks.on_train_begin()
        with _DeferredInterrupt() as interrupt, self._distributed_until_done(), self._weighted(weights is not None):
            for _ in range(epochs):
                epoch = self.epochs_trained
                hooks.on_epoch_begin(epoch)
                bar = _progress(verbose, n if feed is None else None, epoch)
                try:
                    if feed is None:
                        meter = self._train_epoch(xs, ys, batch_size, shuffle, bar, interrupt, allow_nonfinite, hooks)
                    else:
                        meter = self._train_feed_epoch(feed, bar, interrupt, allow_nonfinite, hooks)
                        if meter.seen == 0:            # the batches ran out before this epoch began
                            break
                    logs, seconds, calls = meter.logs(), meter.seconds, meter.calls
                    if val is not None:
                        val_logs = self._evaluate(*val, batch_size=max(batch_size, 256),
                                                  weighted=len(val[1]) > len(self.signature.targets))
                        logs.update({f"val_{k}": v for k, v in val_logs.items()})
                    if bar is not None:
                        bar.set_postfix_str(_format_logs(logs), refresh=True)
                finally:
                    if bar is not None:
                        bar.close()
                self.epochs_trained += 1
                rate = meter.seen / seconds if seconds > 0 else float("inf")
                if verbose == 2:
                    print(f"epoch {epoch + 1}: " + _format_logs(logs) + f" ({seconds:.2f} s, "
                          f"{rate:,.0f} samples/s)", flush=True)
                hooks.on_epoch_end(epoch, logs)          # may add keys (learning_rate) to the logs
                history.record(epoch, logs)
                history.epoch_seconds.append(seconds)
                history.samples_per_second.append(rate)
                history.calls_per_epoch.append(calls)
                if feed is not None:
                    history.train_samples = meter.seen     # (known once an epoch has run)
                interrupt.check()
                if self.stop_training or (feed is not None and feed.ran_out):
                    break
        hooks.on_train_end(logs)
        return history

    def _weighted_steps(self) -> Backend:
        """The backend of the weighted training step and evaluate (built on first use)."""
        if self._weighted_backend is None:
            module = build_weighted_step(self.module)
            self._weighted_backend = self.backend_for(module)
            self._weighted_module = module
        return self._weighted_backend

    @contextmanager
    def _weighted(self, weighted: bool) -> Iterator[None]:
        """Train with the weighted step in the with block."""
        if not weighted:
            yield
            return
        self._step_backend = self._weighted_steps()
        try:
            yield
        finally:
            self._step_backend = self.backend

    @contextmanager
    def _distributed_until_done(self) -> Iterator[None]:
        """Train distributed (when ``fit`` started it) until the with block ends."""
        try:
            yield
        finally:
            self._sync = None
    def _set_learning_rate(self, value: Any) -> None:
        """``fit(learning_rate=...)``: a constant rate from now on, or a schedule of the step."""
        lr = check_learning_rate(value, "fit: argument 'learning_rate'")
        if isinstance(lr, LearningRateSchedule):
            self.lr_schedule = lr
            self._step_learning_rate()
        else:
            self.lr_schedule = None
            self.learning_rate = lr

    def _step_learning_rate(self) -> float:
        """The learning rate of the next step: the schedule's value at ``self.step``, or the constant."""
        if self.lr_schedule is not None:
            self.learning_rate = scheduled_rate(self.lr_schedule, self.step)
        return self.learning_rate

    def _validation(self, xs: list[np.ndarray], ys: list[np.ndarray], validation_data: Any,
                    validation_split: Any) -> tuple[list[np.ndarray], list[np.ndarray],
                                                    tuple[list[np.ndarray], list[np.ndarray]] | None]:
        """The training arrays and the validation arrays (None: no validation) of ``fit``."""
        split = check_validation_split(validation_split, "fit: argument 'validation_split'")
        if validation_data is not None and split:
            raise ArgumentValueError("fit: give validation_data or validation_split, not both")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ArgumentTypeError("fit: argument 'validation_data' must be a pair (x, y) or a "
                                        f"triple (x, y, sample_weight), got {type(validation_data).__name__}")
            vx = prepare_inputs(validation_data[0], self.data_spec, "validation input")
            vy = prepare_targets(validation_data[1], self.data_spec, len(vx[0]), "validation target")
            if len(vx[0]) == 0:
                raise DlRuntimeError("fit: the validation data is empty")
            if len(validation_data) == 3:       # weighted validation: the weights after the targets
                vy = [*vy, check_sample_weight(validation_data[2], len(vx[0]),
                                               "fit: validation_data's sample_weight")]
            return xs, ys, (vx, vy)
        if not split:
            return xs, ys, None
        n = len(xs[0])
        cut = split_point(n, split)
        if cut == 0 or cut == n:
            raise ArgumentValueError(f"fit: validation_split={split:g} of {n} samples leaves "
                                     f"{cut} to train on and {n - cut} to validate on; both need at least one")
        return [a[:cut] for a in xs], [a[:cut] for a in ys], ([a[cut:] for a in xs], [a[cut:] for a in ys])

    def _train_epoch(self, xs: list[np.ndarray], ys: list[np.ndarray], batch_size: int, shuffle: bool,
                     bar: Any, interrupt: _DeferredInterrupt, allow_nonfinite: bool = False,
                     hooks: CallbackList | None = None) -> _EpochMeter:
        """One pass over the data, one backend call per batch; the epoch's mean loss and metrics.
        The pass ends early when a batch callback sets ``stop_training``."""
        n = len(xs[0])
        batches = _Batches([*xs, *ys], batch_size,
                           self._shuffle_rng.permutation(n) if shuffle else None)
        meter = _EpochMeter(["loss", *self.signature.metrics], len(self._tensors), bar, hooks, self.backend)
        lr = np.array(self.learning_rate, dtype=np.float32)      # one array, refilled per step
        span = batch_size if self._sync is None else self._sync.span(batch_size)   # the global batch
        steps = math.ceil(n / span)
        # the NaN trap replays this epoch from here to find the weights before a bad step
        start_of_epoch = None if allow_nonfinite else ([t.copy() for t in self._tensors], self.step)
        for i in range(steps):
            lo, hi = i * span, min((i + 1) * span, n)
            meter.begin(i)
            lr[...] = self._step_learning_rate()
            out = self._step(self._batch(batches, lo, hi), lr)
            if start_of_epoch is not None and not math.isfinite(float(out[0])):
                raise self._diverged(start_of_epoch, batches, i, steps, span, n, lr, float(out[0]))
            meter.add(i, out, hi - lo)
            if self.stop_training:
                break
            interrupt.check()
        return meter.done()

    def _train_feed_epoch(self, feed: BatchFeed, bar: Any, interrupt: _DeferredInterrupt,
                          allow_nonfinite: bool, hooks: CallbackList) -> _EpochMeter:
        """One epoch over the batches of ``feed`` (``fit`` on an iterable of ``(x, y)`` batches).

        Without ``allow_nonfinite`` the weights and optimizer state are copied
        before every step (batches cannot be replayed), so a non-finite loss
        leaves the model as it was before that step and the NaN trap runs on
        that batch.
        """
        meter = _EpochMeter(["loss", *self.signature.metrics], len(self._tensors), bar, hooks, self.backend)
        lr = np.array(self.learning_rate, dtype=np.float32)
        for i, batch in enumerate(feed.epoch()):
            meter.begin(i)
            lr[...] = self._step_learning_rate()
            before = None if allow_nonfinite else ([t.copy() for t in self._tensors], self.step)
            out = self._step(batch, lr)
            if before is not None and not math.isfinite(float(out[0])):
                self._tensors, self.step = before
                what = f"the loss is {float(out[0])} at epoch {self.epochs_trained + 1}, step {i + 1}"
                if not all(t.dtype.kind != "f" or all_finite(t) for t in self._tensors):
                    raise NonFiniteLossError(
                        f"training diverged: {what}; the weights or optimizer state were already NaN or "
                        "infinite before that step (an earlier update overflowed: often a learning rate "
                        "too large)", None, ["batches from an iterable cannot be replayed: the model keeps "
                                             "those weights; reload a checkpoint to go on"])
                raise self._nonfinite_error(what, batch, lr, [
                    f"the model keeps its weights from before step {i + 1} of this epoch "
                    f"(training step {self.step + 1})"])
            meter.add(i, out, len(batch[0]))
            if self.stop_training:
                break
            interrupt.check()
        return meter.done()

    def _step(self, batch: list[np.ndarray], lr: np.ndarray) -> list[np.ndarray]:
        """One training step on ``batch``: the weights and state move on; ``train_step``'s outputs."""
        if self._sync is not None:
            out = self._sync.step(self, batch, lr)
        else:
            out = self._step_backend.train_step(self._step_args(batch, lr))
        self._tensors = out[1:1 + len(self._tensors)]
        self.step += 1
        return out

    @property
    def writes_files(self) -> bool:
        """Whether this process writes checkpoints: False on the ranks other than 0 of
        distributed training (``fit(distributed=...)``), True otherwise."""
        return self._sync is None or self._sync.rank == 0

    def _split_backend(self) -> Backend:
        """A backend for the training step in two calls (data-parallel training)."""
        return self.backend_for(build_split_step(self.module))

    def backend_for(self, module: Module, backend: str | None = None) -> Backend:
        """A backend for another function set built from this model (the weighted or split
        step, the decoder): the same kind as the model's own (unless ``backend`` names one),
        with its passes and floating-point mode."""
        return make_backend(module, backend or self.backend.name, getattr(self.backend, "passes", None),
                            self.flush_denormals)

    def _batch(self, batches: _Batches, lo: int, hi: int) -> list[np.ndarray]:
        """The rows of the batch ``lo:hi`` this process trains on (its shard, when distributed)."""
        return batches.get(lo, hi) if self._sync is None else batches.get(*self._sync.rows(lo, hi))

    def _step_args(self, batch: list[np.ndarray], lr: np.ndarray) -> list[np.ndarray]:
        """``train_step``'s arguments for the next step; a model that draws random numbers
        also gets the seed and the step count, from which the step derives its key."""
        args = [*self._tensors, *batch, lr]
        if self.signature.random:
            args += [np.array(self.seed, dtype=np.int64), np.array(self.step, dtype=np.int64)]
        return args

    def _diverged(self, start_of_epoch: tuple[list[np.ndarray], int], batches: _Batches, index: int,
                  steps: int, batch_size: int, n: int, lr: np.ndarray, loss: float) -> NonFiniteLossError:
        """The error for a non-finite loss at step ``index`` of this epoch, located by the NaN trap.

        The epoch is replayed from its start (native steps update the weights in
        place) up to the last step whose weights and optimizer state are all
        finite -- the bad step itself, or an earlier one whose update overflowed --
        and the reference interpreter runs that step to find the first op whose
        value is not finite (:func:`first_nonfinite_op`).  The model keeps the
        weights from before that step.
        """
        self._tensors, self.step = start_of_epoch
        last_finite: tuple[list[np.ndarray], int, int] | None = None
        for i in range(index + 1):
            if not all(t.dtype.kind != "f" or all_finite(t) for t in self._tensors):
                break
            last_finite = ([t.copy() for t in self._tensors], self.step, i)
            if i < index:
                lr[...] = self._step_learning_rate()        # a schedule's rate of that step
                self._step(self._batch(batches, i * batch_size, min((i + 1) * batch_size, n)), lr)
        what = f"the loss is {loss} at epoch {self.epochs_trained + 1}, step {index + 1} of {steps}"
        notes = ["to train on regardless: fit(allow_nonfinite=True), dlc train --allow-nonfinite"]
        if last_finite is None:
            return NonFiniteLossError(f"training diverged: {what}; the weights or optimizer state were "
                                      "already NaN or infinite when the epoch began", None, notes)
        self._tensors, self.step, bad = last_finite
        notes = [f"the model keeps its weights from before step {bad + 1} of this epoch "
                 f"(training step {self.step + 1})"]
        batch = self._batch(batches, bad * batch_size, min((bad + 1) * batch_size, n))
        lr[...] = self._step_learning_rate()
        if bad != index:
            what += f"; step {bad + 1}'s update made the weights NaN or infinite"
            notes.append("an update that overflows often means a learning rate too large for "
                         "this model and data")
        return self._nonfinite_error(what, batch, lr, notes)

    def _nonfinite_error(self, what: str, batch: list[np.ndarray], lr: np.ndarray,
                         notes: list[str]) -> NonFiniteLossError:
        """The error for a non-finite loss, located by the NaN trap: the reference interpreter runs
        the step on ``batch`` from the model's current (finite) weights and finds the first op
        whose value is not finite."""
        notes = [*notes, "to train on regardless: fit(allow_nonfinite=True), dlc train --allow-nonfinite"]
        weighted = self._step_backend is not self.backend and self._weighted_module is not None
        module = self._weighted_module if weighted and self._weighted_module is not None else self.module
        op = first_nonfinite_op(module.get(TRAIN_STEP), self._step_args(batch, lr))
        if op is None:
            return NonFiniteLossError(f"training diverged: {what}; the reference interpreter computes "
                                      "that step without a NaN or infinity (the native code's rounding "
                                      "differs)", None, notes)
        if op.loc.line <= 0:
            return NonFiniteLossError(f"training diverged: {what}; the first value to become NaN or "
                                      f"infinite is dl.{op.name}'s (no source location)", None, notes)
        return NonFiniteLossError(f"training diverged: {what}; the first value to become NaN or "
                                  f"infinite is computed here (dl.{op.name})", op.loc, notes)

    # -- inference ---------------------------------------------------------------

    def evaluate(self, x: Any, y: Any, *, batch_size: int = 256, sample_weight: Any = None) -> dict[str, float]:
        """Loss and metrics over ``(x, y)`` (means over all samples), e.g. ``{"loss", "accuracy"}``;
        ``sample_weight`` weights the loss as ``fit``'s does (the metrics stay unweighted)."""
        _check_positive(batch_size=batch_size)
        xs = prepare_inputs(x, self.data_spec, "evaluation input")
        ys = prepare_targets(y, self.data_spec, len(xs[0]), "evaluation target")
        if len(xs[0]) == 0:
            raise DlRuntimeError("evaluate: the data is empty")
        if sample_weight is not None:
            ys = [*ys, check_sample_weight(sample_weight, len(xs[0]), "evaluate: argument 'sample_weight'")]
        return self._evaluate(xs, ys, batch_size=batch_size, weighted=sample_weight is not None)

    def _evaluate(self, xs: list[np.ndarray], ys: list[np.ndarray], *, batch_size: int,
                  weighted: bool = False) -> dict[str, float]:
        """Loss and metrics over ``(xs, ys)``; ``weighted``: ``ys`` ends with sample weights."""
        n = len(xs[0])
        backend = self._weighted_steps() if weighted else self.backend
        params = self._tensors[:self._n_model]
        names = ["loss", *self.signature.metrics]
        sums = np.zeros(len(names))
        for lo in range(0, n, batch_size):
            hi = min(lo + batch_size, n)
            out = backend.call("evaluate", [*params, *(a[lo:hi] for a in xs), *(a[lo:hi] for a in ys)])
            sums += np.array([float(v) for v in out[:len(names)]]) * (hi - lo)
        return combine_metrics(dict(zip(names, (float(v) for v in sums / n))))

    def predict(self, x: Any, *, batch_size: int = 256) -> np.ndarray | tuple[np.ndarray, ...]:
        """The model's outputs for ``x`` (one array, or a tuple for several outputs)."""
        if type(x) is np.ndarray and type(batch_size) is int and self._ready_input(x, batch_size):
            return self.backend.predict([*self._tensors[:self._n_model], x])
        _check_positive(batch_size=batch_size)
        xs = prepare_inputs(x, self.data_spec, "prediction input")
        n = len(xs[0])
        params = self._tensors[:self._n_model]
        chunks: list[list[np.ndarray]] = []
        for lo in range(0, max(n, 1), batch_size):
            hi = min(lo + batch_size, n)
            chunks.append(self.backend.call("predict", [*params, *(a[lo:hi] for a in xs)]))
        outputs = tuple(np.concatenate([c[j] for c in chunks]) if len(chunks) > 1 else chunks[0][j]
                        for j in range(len(chunks[0])))
        return outputs[0] if len(outputs) == 1 else outputs

    def _ready_input(self, x: np.ndarray, batch_size: int) -> bool:
        """Whether ``x`` is already exactly what :func:`prepare_inputs` would make of it, in
        one batch: the input's dtype and per-sample shape, C-contiguous, finite.  Anything
        else (including a failing check) takes the full path, which converts or reports it."""
        dtype, rank, sample = self._single_input
        if not ((x.dtype is dtype or x.dtype == dtype) and x.ndim == rank and 0 < len(x) <= batch_size
                and x.shape[1:] == sample and x.flags.c_contiguous):
            return False
        return dtype.kind != "f" or all_finite(x)

    # -- persistence -------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write weights, model state, optimizer state, step count and signature to a checkpoint:
        ``.npz``, or safetensors for a path ending in ``.safetensors``."""
        k, m = len(self.param_names), self._n_model
        ckpt = Checkpoint(self.name, dict(zip(self.param_names, self._tensors[:k])),
                          dict(zip(self.state_names, self._tensors[m:])),
                          self.signature.optimizer.name, self.step, self.epochs_trained,
                          {"learning_rate": self.learning_rate},
                          dict(zip(self.model_state_names, self._tensors[k:m])))
        return save_checkpoint(as_path(path, "save: argument 'path'"), ckpt)

    def load_weights(self, path: str | Path, *, optimizer: str = "auto") -> None:
        """Load a checkpoint written by :meth:`save` (of this model).

        Parameters and model state (batch norm's moving statistics) must match
        by name, shape and dtype.  ``optimizer``: ``"auto"`` restores the
        optimizer state, step and epoch count when the checkpoint was written
        with the same optimizer, else starts the optimizer fresh; ``"restore"``
        (resuming training) requires them; ``"reset"`` loads the weights only.
        """
        if optimizer not in ("auto", "restore", "reset"):
            raise ArgumentValueError(f"load_weights: optimizer must be 'auto', 'restore' or 'reset', "
                                     f"got {optimizer!r}")
        path = as_path(path, "load_weights: argument 'path'")
        ckpt = load_checkpoint(path)
        k, m = len(self.param_names), self._n_model
        expected = {n: (a.shape, a.dtype) for n, a in zip(self.param_names, self._tensors[:k])}
        check_fits(path, ckpt, self.name, expected, "parameter")
        model_expected = {n: (a.shape, a.dtype) for n, a in zip(self.model_state_names, self._tensors[k:m])}
        check_fits(path, ckpt, self.name, model_expected, "state")
        params = [np.array(ckpt.params[n], order="C") for n in self.param_names]
        params += [np.array(ckpt.model_state[n], order="C") for n in self.model_state_names]
        state_expected = {n: (a.shape, a.dtype) for n, a in zip(self.state_names, self._tensors[m:])}
        same_optimizer = ckpt.optimizer == self.signature.optimizer.name and set(ckpt.state) == set(state_expected)
        if optimizer == "restore" and not same_optimizer:
            raise DlRuntimeError(f"{path}: cannot resume: the checkpoint holds the state of optimizer "
                                 f"'{ckpt.optimizer}' ({len(ckpt.state)} tensors), model '{self.name}' trains "
                                 f"with '{self.signature.optimizer.name}' ({len(state_expected)} tensors)",
                                 notes=["to start from its weights with a fresh optimizer: "
                                        "load_weights(optimizer='reset'), dlc train --initial-weights"])
        if same_optimizer and optimizer != "reset":
            check_fits(path, ckpt, self.name, state_expected, "optimizer state")
            state = [np.array(ckpt.state[n], order="C") for n in self.state_names]
            self.step, self.epochs_trained = ckpt.step, ckpt.epoch
        else:
            init = self.signature.initial_state()
            state = [init[n] for n in self.state_names]
            self.step, self.epochs_trained = 0, 0
        self._tensors = params + state

    def export(self, path: str | Path, format: str | None = None) -> Path:
        """Write the model in another format: the single entry to every export.

        ``format`` (default: from the path's suffix; a path without one is a
        directory) is one of :data:`EXPORT_FORMATS`: ``"onnx"`` (``predict``
        with the current weights as initializers; needs the ``onnx`` package),
        ``"aot"`` (a directory: native object code for every function of the
        module, see docs/runtime.md, plus ``weights.npz``), ``"safetensors"``
        and ``"npz"`` (a checkpoint, as :meth:`save`).
        """
        path = as_path(path, "export: argument 'path'")
        if format is None:
            format = _EXPORT_SUFFIXES.get(path.suffix.lower()) if path.suffix else "aot"
            if format is None:
                raise ArgumentValueError(f"export: cannot tell the format of {path} from its suffix; pass "
                                         f"format= ({', '.join(EXPORT_FORMATS)})")
        if format not in EXPORT_FORMATS:
            raise ArgumentValueError(f"export: unknown format {format!r} (choose from {', '.join(EXPORT_FORMATS)})")
        return EXPORT_FORMATS[format](self, path)

    # -- description -------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], None] | None = None) -> None:
        """Print (with ``print_fn``, default ``print``) the table of ``str(model)``: the layers
        with their output shapes and parameter counts (:meth:`layer_rows`), parameters and
        non-trainable state with shapes and counts, FLOPs per sample, the training step's
        memory, loss, optimizer and metrics.  Returns nothing, as Keras's ``summary``, so a
        notebook shows it once."""
        check_callable(print_fn, "summary: argument 'print_fn'")
        (print_fn or print)(self._summary_text())

    def __str__(self) -> str:
        return self._summary_text()

    def __repr__(self) -> str:
        count = sum(t.num_elements() for _, t in self.signature.params)
        return f"<Model '{self.name}': {count:,} parameters, step {self.step}, backend {self.backend.name}>"

    def _summary_text(self, batch: int = SUMMARY_BATCH) -> str:
        layers = [(f"{name} ({kind})", output, count) for name, kind, output, count in self.layer_rows()]
        rows = [(n, t.dsl_str(), t.num_elements()) for n, t in self.signature.params]
        state_rows = [(n, t.dsl_str(), t.num_elements()) for n, t in self.signature.model_state]
        sections = [(("layer (kind)", "output shape", "parameters"), layers), (("parameter", "shape", "count"), rows),
                    (("state (not trained)", "shape", "count"), state_rows)]
        sections = [(head, body) for head, body in sections if body or head[0] == "parameter"]
        cells = [r for head, body in sections for r in [head, *body]]   # one column width for all
        width = max(len(r[0]) for r in cells) + 2
        swidth = max(len(r[1]) for r in cells) + 2
        rule = "-" * (width + swidth + 12)
        lines = [f'Model "{self.name}"']
        for (name, shape, count), body in sections:
            lines += [rule, f"{name:<{width}}{shape:<{swidth}}{count:>12}", rule]
            lines += [f"{n:<{width}}{s:<{swidth}}{c:>12,}" for n, s, c in body]
        total = sum(c for *_, c in rows)
        hp = ", ".join(f"{k}={v}" for k, v in self.signature.hyperparams.items())
        loss = self.info.get("loss") or {}
        lines += [rule, f"total parameters: {total:,}"]
        if state_rows:
            lines += [f"non-trainable state: {sum(c for *_, c in state_rows):,} "
                      "(updated by training steps, used by predict and evaluate)"]
        lines += self._cost_lines(batch)
        lines += [f"inputs: {', '.join(s.name + ': ' + s.dsl_str() for s in self.data_spec.inputs)}",
                  f"targets: {', '.join(s.name + ': ' + s.dsl_str() for s in self.data_spec.targets)}",
                  f"loss: {loss.get('name', '?')}",
                  f"optimizer: {self.signature.optimizer.name}({hp})",
                  f"metrics: {', '.join(metric_names(self.signature.metrics)) or 'none'}",
                  f"backend: {self.backend.name}"]
        return "\n".join(lines)

    def layer_rows(self) -> list[tuple[str, str, str, int]]:
        """One row per layer call, in call order, as Keras's ``summary``: name, kind, output type
        (the batch dim as its symbol, ``f32[N, 128]``) and the count of the parameters and state
        it created.  ``let``/``output`` expressions that are no layer are not rows; a model
        compiled before layers were recorded has none."""
        counts = {n: t.num_elements() for n, t in [*self.signature.params, *self.signature.model_state]}
        return [(r["name"], r["kind"], r["output"], sum(counts[n] for n in r["tensors"]))
                for r in self.info.get("layers", [])]

    def _cost_lines(self, batch: int) -> list[str]:
        """FLOPs per sample of ``predict`` and of a training step, and the training step's memory
        at ``batch`` samples, read from the IR (``compiler/analysis/stats.py``, as ``dlc stats``)."""
        from compiler.analysis.stats import function_stats

        forward = function_stats(self.module.get("predict"))
        step = function_stats(self.module.get(TRAIN_STEP))
        symbols = forward.cost.flops.symbols | step.cost.flops.symbols
        one, none = dict.fromkeys(symbols, 1), dict.fromkeys(symbols, 0)
        fixed = step.cost.flops.evaluate(none)           # per step, whatever the batch: the update
        at_batch = {sym: batch for sym in step.argument_bytes.symbols | step.intermediate_bytes.symbols}
        memory = step.argument_bytes.evaluate(at_batch) + step.peak_live_bytes(at_batch)
        return [f"FLOPs per sample: {forward.cost.flops.evaluate(one):,} (predict); a training step "
                f"{step.cost.flops.evaluate(one) - fixed:,} per sample + {fixed:,} per step",
                f"training step memory at batch {batch}: {_mib(memory)} (arguments and peak live values)"]


def _export_onnx(model: Model, path: Path) -> Path:
    from .interop.onnx_export import export_model

    return export_model(model, path)


def _export_aot(model: Model, path: Path) -> Path:
    """An AOT directory (:func:`runtime.load_compiled` reads it) with the weights beside the code."""
    compiled = model.backend.compiled.whole() if isinstance(model.backend, NativeBackend) else None
    if compiled is None:
        compile_module = native_compiler()
        if compile_module is None:
            raise DlRuntimeError("export: format 'aot' needs the native code generator (runtime.compile)")
        compiled = compile_module(model.module)
    directory = Path(compiled.save(path))
    model.save(directory / "weights.npz")
    return directory


def _checkpoint_writer(suffix: str) -> Callable[[Model, Path], Path]:
    """A checkpoint (:meth:`Model.save`) in the format its suffix names."""
    def write(model: Model, path: Path) -> Path:
        if path.suffix.lower() != suffix:
            raise ArgumentValueError(f"export: format '{suffix[1:]}' writes a {suffix} file; got {path}")
        return model.save(path)
    return write


EXPORT_FORMATS: dict[str, Callable[[Model, Path], Path]] = {
    "onnx": _export_onnx,
    "aot": _export_aot,
    "safetensors": _checkpoint_writer(".safetensors"),
    "npz": _checkpoint_writer(".npz"),
}
"""``Model.export``'s formats: one writer each, ``(model, path) -> the path written``."""

_EXPORT_SUFFIXES = {".onnx": "onnx", ".safetensors": "safetensors", ".npz": "npz"}


def _data_spec(module: Module, sig: TrainSignature, info: dict[str, Any]) -> DataSpec:
    predict = module.get("predict")
    outputs = tuple(TensorSpec(name or f"output_{i}", v.type.dtype.np, v.type.shape)
                    for i, (name, v) in enumerate(zip(predict.output_names or [None] * len(predict.outputs),
                                                      predict.outputs)))
    num_classes = None
    if outputs and len(outputs[0].shape) >= 2 and isinstance(outputs[0].shape[-1], int):
        loss_name = (info.get("loss") or {}).get("name")
        if any(t.dtype.is_int for _, t in sig.targets) or loss_name == "categorical_crossentropy":
            num_classes = int(outputs[0].shape[-1])
    return DataSpec(
        model_name=sig.model_name,
        inputs=tuple(TensorSpec(n, t.dtype.np, t.shape) for n, t in sig.inputs),
        targets=tuple(TensorSpec(n, t.dtype.np, t.shape) for n, t in sig.targets),
        num_classes=num_classes,
        loss=str((info.get("loss") or {}).get("name", "")),
        outputs=outputs,
    )


class NonFiniteLossError(DlRuntimeError):
    """``fit`` stopped: a step's loss was NaN or infinite.  Located (when the NaN trap
    found it) at the first ``.dl`` line whose value became non-finite."""


class _Found(Exception):
    def __init__(self, op: Op):
        self.op = op


def first_nonfinite_op(func: Function, args: list[np.ndarray]) -> Op | None:
    """The NaN trap: the first op of ``func`` (in program order: the forward pass first)
    whose result holds a NaN or infinity when the reference interpreter runs ``func`` on
    ``args``; None when there is none."""
    from compiler.ir.interpreter import interpret

    def watch(op: Op, results: list[np.ndarray]) -> None:
        for r in results:
            if r.dtype.kind == "f" and not np.isfinite(r).all():
                raise _Found(op)
    try:
        interpret(func, args, on_op=watch)
    except _Found as found:
        return found.op
    return None


def _weight(name: str, value: Any, current: np.ndarray) -> np.ndarray:
    """``value`` as a new value of parameter ``name`` (now ``current``), checked."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as e:           # ragged lists
        raise ArgumentValueError(f"set_weights: parameter '{name}': not an array ({e})") from None
    if array.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"set_weights: parameter '{name}' must hold real numbers, "
                                f"got {array.dtype} values")
    if array.shape != current.shape:
        raise ArgumentValueError(f"set_weights: parameter '{name}' has shape {list(current.shape)}, "
                                 f"got {list(array.shape)}")
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.array(array, dtype=current.dtype, order="C")
    if converted.dtype.kind == "f" and not all_finite(converted):
        raise ArgumentValueError(f"set_weights: parameter '{name}' holds values that are not finite "
                                 f"as {current.dtype} (NaN, inf, or too large)")
    return converted


def check_validation_split(value: Any, what: str) -> float:
    """``value`` as a fraction in [0, 1) (0: no validation); else an :class:`ArgumentValueError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"{what} must be a number in [0, 1), got {value!r}")
    if not (0.0 <= float(value) < 1.0):
        raise ArgumentValueError(f"{what} must be in [0, 1), got {value!r}")
    return float(value)


def split_point(n: int, fraction: float) -> int:
    """Where Keras cuts ``n`` samples for a validation fraction: the last ``n - cut`` validate."""
    return int(n * (1.0 - fraction))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DlRuntimeError(f"{key} must be a positive integer, got {value!r}")


def _format_logs(logs: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in logs.items())


def _progress(verbose: int, n: int | None, epoch: int) -> Any:
    """A tqdm bar over the samples of one epoch (verbose=1), else None."""
    if verbose != 1:
        return None
    from tqdm import tqdm

    return tqdm(total=n, desc=f"epoch {epoch + 1}", unit=" samples", leave=True, dynamic_ncols=True)


# ---------------------------------------------------------------------------
# Loading


def model_module(source: str | Path | Module) -> tuple[Module, str | None]:
    """The module of a ``.dl`` file (from the frontend, or its cached output) or a Module,
    and the file's name; an error unless it declares a model.  Nothing is compiled."""
    if isinstance(source, Module):
        module, name = source, None
    else:
        from .model_cache import load_source  # the frontend, or its cached output

        path = as_path(source, "load_model: argument 'source'")
        module, name = load_source(path), str(path)
    if "model" not in module.attrs:
        raise DlRuntimeError(f"{name or 'the module'}: no model block to load "
                             "(a model is declared with `model NAME { ... }`)")
    return module, name


def model_data_spec(module: Module) -> DataSpec:
    """What the model of ``module`` expects of its data (:class:`Model.data_spec`), found
    without building the training step or compiling anything."""
    return _data_spec(module, train_signature(module), model_info(module))


def load_model(source: str | Path | Module, *, seed: int = 0, backend: str = "auto",
               weights: str | Path | None = None, passes: Passes = None,
               flush_denormals: bool = True) -> Model:
    """A :class:`Model` from a ``.dl`` file (or an already lowered module).

    ``seed`` fixes the initial weights and the shuffling order; ``weights``
    loads a checkpoint written by :meth:`Model.save`; ``passes`` chooses the
    passes run before native code generation (see :data:`Passes`);
    ``flush_denormals`` (default on, as in JAX and TensorFlow) runs the native code with
    denormal floats flushed to zero (``CodegenOptions.flush_denormals``): gradients and
    optimizer moments that underflow would otherwise slow every operation they touch
    (the MNIST CNN's batch-1 Adam step: 184 us with them, 154 us without, Zen 5);
    ``False`` keeps IEEE gradual underflow, as the interpreter always does.
    """
    seed = check_seed(seed, "load_model: argument 'seed'")       # before the frontend runs
    check_passes(passes, "load_model", allow_callable=True)
    if weights is not None:
        weights = as_path(weights, "load_model: argument 'weights'")
    module, name = model_module(source)
    model = Model(module, seed=seed, backend=backend, source=name, passes=passes,
                  flush_denormals=flush_denormals)
    if weights is not None:
        model.load_weights(weights)
    return model


__all__ = ["Model", "History", "load_model", "Backend", "InterpBackend", "NativeBackend", "LazyCompiled", "BACKENDS",
           "NonFiniteLossError", "first_nonfinite_op", "model_module", "model_data_spec", "EXPORT_FORMATS"]
