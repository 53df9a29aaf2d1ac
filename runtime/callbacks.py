"""Callbacks for ``Model.fit``, with Keras's protocol, and the built-in ones.

::

    from runtime.callbacks import EarlyStopping, ModelCheckpoint

    model.fit(x, y, epochs=50, validation_split=0.1, callbacks=[
        EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
        ModelCheckpoint("best.npz", save_best_only=True),
    ])

A callback subclasses :class:`Callback` and overrides any of
``on_train_begin/end(logs)``, ``on_epoch_begin/end(epoch, logs)`` and
``on_train_batch_begin/end(batch, logs)`` (``on_batch_begin/end`` are the
older names, called by the default ``on_train_batch_*``, as in Keras).
``self.model`` is the :class:`~runtime.model.Model` being trained and
``self.params`` holds ``epochs``, ``steps`` (per epoch), ``samples``,
``batch_size``, ``verbose`` and ``metrics`` (every key the epoch logs will
have).  Epoch logs hold the epoch's ``loss``, metrics and ``val_*``; batch
logs hold the running means of the epoch so far.  Setting
``model.stop_training = True`` ends ``fit`` after the current step; ``fit``
then returns its :class:`~runtime.model.History` as usual.

The batch hooks cost a few microseconds per step; ``fit`` calls them only
when some callback overrides one.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlRuntimeError

Logs = dict[str, float]


class Model(Protocol):
    """What callbacks use of :class:`runtime.model.Model` (which imports this module)."""

    stop_training: bool
    learning_rate: float
    lr_schedule: Any

    @property
    def writes_files(self) -> bool: ...

    def get_weights(self) -> dict[str, np.ndarray]: ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def save(self, path: str | Path) -> Path: ...


class Callback:
    """The base class: every hook does nothing."""

    def __init__(self) -> None:
        self.model: Model | None = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch (or the one a callback stopped at); ``logs``: the last epoch's."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before epoch ``epoch`` (0-based, counted over every ``fit`` of this model)."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After epoch ``epoch`` and its validation; a callback may add keys to ``logs``."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.on_batch_end(batch, logs)

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before step ``batch`` (0-based within the epoch)."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After step ``batch``; ``logs``: the running means of the epoch so far."""

    @property
    def trained(self) -> Model:
        """The model (set by ``fit`` before any hook runs)."""
        assert self.model is not None, "a callback's hooks run only inside fit"
        return self.model


_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, *, on_epoch_begin: Callable[[int, Logs], None] | None = None,
                 on_epoch_end: Callable[[int, Logs], None] | None = None,
                 on_batch_begin: Callable[[int, Logs], None] | None = None,
                 on_batch_end: Callable[[int, Logs], None] | None = None,
                 on_train_begin: Callable[[Logs], None] | None = None,
                 on_train_end: Callable[[Logs], None] | None = None):
        super().__init__()
        for name, fn in list(locals().items()):
            if name.startswith("on_") and fn is not None:
                if not callable(fn):
                    raise ArgumentTypeError(f"LambdaCallback: argument '{name}' must be callable, "
                                            f"got {type(fn).__name__}")
                setattr(self, name, fn)


class CallbackList:
    """The callbacks of one ``fit``, called in order."""

    def __init__(self, callbacks: Iterable[Callback] | None, model: Model, params: dict[str, Any]):
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise ArgumentTypeError(f"fit: argument 'callbacks' must be a list of Callback objects, "
                                    f"got {type(callbacks).__name__}")
        for c in callbacks:
            if not isinstance(c, Callback):
                raise ArgumentTypeError(f"fit: argument 'callbacks' holds a {type(c).__name__}, not a "
                                        "Callback (subclass runtime.callbacks.Callback)")
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            c.set_model(model)
            c.set_params(params)
        self.wants_batches = any(_overrides(c, hook) for c in self.callbacks for hook in _BATCH_HOOKS)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        for c in self.callbacks:
            c.on_train_begin(logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        for c in self.callbacks:
            c.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        for c in self.callbacks:
            c.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        for c in self.callbacks:
            c.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        for c in self.callbacks:
            c.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs) -> None:
        for c in self.callbacks:
            c.on_train_batch_end(batch, logs)


def _overrides(callback: Callback, hook: str) -> bool:
    if hook in vars(callback):                       # LambdaCallback's functions
        return True
    return getattr(type(callback), hook) is not getattr(Callback, hook)


# ---------------------------------------------------------------------------
# Watching a metric


class _Monitor:
    """The quantity a built-in watches, whether lower or higher is better, and the best so far."""

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: float):
        if not isinstance(monitor, str) or not monitor:
            raise ArgumentTypeError(f"{owner}: argument 'monitor' must be a metric name such as 'val_loss', "
                                    f"got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ArgumentValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ArgumentValueError(f"{owner}: min_delta must be a non-negative number, got {min_delta!r}")
        self.owner, self.monitor, self.min_delta = owner, monitor, float(min_delta)
        higher = ("acc", "accuracy", "auc", "precision", "recall", "f1")
        self.lower_is_better = mode == "min" or (mode == "auto" and not monitor.endswith(higher))
        self.best = math.inf if self.lower_is_better else -math.inf

    def check_available(self, params: dict[str, Any]) -> None:
        """An error before the first epoch when the logs will not have the monitored key."""
        keys = params.get("metrics", [])
        if self.monitor not in keys:
            hint = ("; validate (validation_split=, validation_data=) or monitor 'loss'"
                    if self.monitor.startswith("val_") else "")
            raise DlRuntimeError(f"{self.owner} monitors '{self.monitor}', which fit does not log "
                                 f"(it logs: {', '.join(keys)}){hint}")

    def improved(self, value: float, reference: float | None = None) -> bool:
        reference = self.best if reference is None else reference
        if self.lower_is_better:
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def value(self, logs: Logs | None) -> float:
        return float((logs or {})[self.monitor])


def _non_negative_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ArgumentValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _say(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


# ---------------------------------------------------------------------------
# The built-ins (Keras's names, arguments and defaults)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs; with ``restore_best_weights``, the model ends with the weights (and
    non-trainable state) of its best epoch (Keras 3: whether or not it stopped early).

    ``baseline``: training stops unless the monitored value beats it within
    ``patience`` epochs; ``start_from_epoch``: epochs to wait before watching.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0):
        super().__init__()
        self.watch = _Monitor("EarlyStopping", monitor, mode, min_delta)
        self.patience = _non_negative_int(patience, "EarlyStopping: patience")
        self.start_from_epoch = _non_negative_int(start_from_epoch, "EarlyStopping: start_from_epoch")
        self.verbose, self.baseline, self.restore_best_weights = verbose, baseline, bool(restore_best_weights)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    @property
    def best(self) -> float:
        return self.watch.best

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.watch.check_available(self.params)
        self.watch.best = math.inf if self.watch.lower_is_better else -math.inf
        self.wait, self.stopped_epoch, self.best_epoch, self.best_weights = 0, None, None, None
        self._first_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self._first_epoch is None:
            self._first_epoch = epoch
        if epoch - self._first_epoch < self.start_from_epoch:
            return
        current = self.watch.value(logs)
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.trained.get_weights()
        self.wait += 1
        if self.watch.improved(current):
            self.watch.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.trained.get_weights()
            if self.baseline is None or self.watch.improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > self._first_epoch:
            self.stopped_epoch = epoch
            self.trained.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch is not None and self.verbose:
            _say(f"epoch {self.stopped_epoch + 1}: early stopping ({self.watch.monitor} did not improve "
                 f"for {self.patience} epochs; best {self.watch.best:.4f})")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _say(f"restoring the weights of epoch {(self.best_epoch or 0) + 1}")
            self.trained.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (:meth:`Model.save`: weights, optimizer state, step) after every
    ``period`` epochs, or with ``save_best_only`` only when ``monitor`` improved.

    ``filepath`` may name the epoch and logs: ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``
    (``epoch`` is 1-based, as in Keras).  ``save_weights_only`` is accepted for
    Keras scripts; a dlc checkpoint always holds the weights and the optimizer state.
    """

    def __init__(self, filepath: str | Path, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 initial_value_threshold: float | None = None, period: int = 1):
        super().__init__()
        if not isinstance(filepath, (str, Path)):
            raise ArgumentTypeError(f"ModelCheckpoint: argument 'filepath' must be a path, "
                                    f"got {type(filepath).__name__}")
        self.filepath = str(filepath)
        self.watch = _Monitor("ModelCheckpoint", monitor, mode, 0.0)
        if initial_value_threshold is not None:
            self.watch.best = float(initial_value_threshold)
        self.verbose, self.save_best_only, self.save_weights_only = verbose, bool(save_best_only), save_weights_only
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ArgumentValueError(f"ModelCheckpoint: period must be a positive integer, got {period!r}")
        self.period = period
        self.saved: list[Path] = []        # every path written, in order

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.save_best_only:
            self.watch.check_available(self.params)
        self._epochs_seen = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._epochs_seen += 1
        if self._epochs_seen % self.period:
            return
        path = self._path(epoch, logs or {})
        writes = self.trained.writes_files      # distributed: rank 0 only
        if self.save_best_only:
            current = self.watch.value(logs)
            if not self.watch.improved(current):
                return
            if self.verbose and writes:
                _say(f"epoch {epoch + 1}: {self.watch.monitor} improved from {self.watch.best:.4f} to "
                     f"{current:.4f}, saving the model to {path}")
            self.watch.best = current
        elif self.verbose and writes:
            _say(f"epoch {epoch + 1}: saving the model to {path}")
        if writes:
            self.saved.append(self.trained.save(path))

    def _path(self, epoch: int, logs: Logs) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as e:
            raise DlRuntimeError(f"ModelCheckpoint: cannot fill in the path '{self.filepath}' ({e!r}; "
                                 f"it may use epoch and {', '.join(logs)})") from None


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved by more
    than ``min_delta`` for ``patience`` epochs, then wait ``cooldown`` epochs; never below
    ``min_lr``.  Adds ``learning_rate`` to the epoch logs."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
            raise ArgumentValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.watch = _Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor, self.verbose, self.min_lr = float(factor), verbose, float(min_lr)
        self.patience = _non_negative_int(patience, "ReduceLROnPlateau: patience")
        self.cooldown = _non_negative_int(cooldown, "ReduceLROnPlateau: cooldown")
        self.wait = self.cooldown_counter = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.watch.check_available(self.params)
        _check_constant_rate(self.trained, "ReduceLROnPlateau")
        self.wait = self.cooldown_counter = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        model = self.trained
        current = self.watch.value(logs)
        if logs is not None:
            logs["learning_rate"] = float(model.learning_rate)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.watch.improved(current):
            self.watch.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience and model.learning_rate > self.min_lr:
            new = max(model.learning_rate * self.factor, self.min_lr)
            if self.verbose:
                _say(f"epoch {epoch + 1}: ReduceLROnPlateau: learning rate {model.learning_rate:g} -> {new:g}")
            model.learning_rate = new
            self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch to ``schedule(epoch, lr)``
    (``epoch`` 0-based; ``lr`` the current rate).  Adds ``learning_rate`` to the epoch logs.
    For a rate that changes every step, pass a schedule to ``fit(learning_rate=...)``."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0):
        super().__init__()
        if not callable(schedule):
            raise ArgumentTypeError(f"LearningRateScheduler: argument 'schedule' must be a function "
                                    f"(epoch, lr) -> lr, got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose

    def on_train_begin(self, logs: Logs | None = None) -> None:
        _check_constant_rate(self.trained, "LearningRateScheduler")

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        from compiler.schedules import check_learning_rate

        model = self.trained
        value = self.schedule(epoch, float(model.learning_rate))
        lr = check_learning_rate(value, f"LearningRateScheduler: the schedule's value at epoch {epoch}")
        if not isinstance(lr, float):
            raise ArgumentTypeError(f"LearningRateScheduler: the schedule returned {value!r}, not a number")
        if self.verbose:
            _say(f"epoch {epoch + 1}: LearningRateScheduler sets the learning rate to {lr:g}")
        model.learning_rate = lr

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.trained.learning_rate)


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` and every log key (sorted), written as it ends."""

    def __init__(self, filename: str | Path, separator: str = ",", append: bool = False):
        super().__init__()
        if not isinstance(filename, (str, Path)):
            raise ArgumentTypeError(f"CSVLogger: argument 'filename' must be a path, got {type(filename).__name__}")
        self.filename, self.separator, self.append = Path(filename), separator, bool(append)
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        from .checkpoint import check_writable

        try:
            check_writable(self.filename)
        except DlRuntimeError as e:
            raise DlRuntimeError(f"CSVLogger: {e.message}") from None
        has_header = self.append and self.filename.exists() and self.filename.stat().st_size > 0
        self._keys = None
        self._write_header = not has_header
        if not self.append:
            self.filename.write_text("")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
        with self.filename.open("a", newline="") as f:
            writer = csv.writer(f, delimiter=self.separator)
            if self._write_header:
                writer.writerow(["epoch", *self._keys])
                self._write_header = False
            writer.writerow([epoch, *(repr(float(logs[k])) if k in logs else "" for k in self._keys)])


class TerminateOnNaN(Callback):
    """Stop training (cleanly: ``fit`` returns its History) after a step whose loss is NaN or
    infinite.  Without ``allow_nonfinite=True``, ``fit`` already stops there with a
    :class:`~runtime.model.NonFiniteLossError` naming the ``.dl`` line."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            _say(f"batch {batch}: invalid loss ({loss}), terminating training")
            self.trained.stop_training = True


def _check_constant_rate(model: Model, owner: str) -> None:
    if model.lr_schedule is not None:
        raise DlRuntimeError(f"{owner} sets the learning rate, but fit's learning_rate is a schedule "
                             f"({model.lr_schedule!r}); use one or the other")


__all__ = ["Callback", "CallbackList", "LambdaCallback", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
           "LearningRateScheduler", "CSVLogger", "TerminateOnNaN"]
