"""``fit`` on data that does not fit in memory: an iterable of ``(x, y)`` batches.

::

    def batches():
        for path in shards:
            data = np.load(path)
            for lo in range(0, len(data["x"]), 128):
                yield data["x"][lo:lo + 128], data["y"][lo:lo + 128]

    model.fit(batches(), epochs=3, steps_per_epoch=500)

As in Keras: without ``steps_per_epoch`` an epoch is one pass over the
iterable (iterated afresh each epoch, so a list of batches or an object
with ``__iter__`` serves every epoch; a generator serves one).  With
``steps_per_epoch`` an epoch is that many batches, taken from one iterator
that carries on across epochs (restarted from the iterable when it runs out,
if it can be).  Training stops, with a warning, when the data runs out.
Every batch is checked like ``fit``'s arrays (shapes, dtypes, labels,
NaN/inf) before the compiled step sees it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlRuntimeError

from .data import DataSpec, prepare_inputs, prepare_targets


class BatchFeed:
    """The batches of one ``fit``: checked, one epoch at a time."""

    def __init__(self, source: Any, spec: DataSpec, steps_per_epoch: int | None):
        if isinstance(source, (np.ndarray, dict)) or not isinstance(source, Iterable):
            raise ArgumentTypeError(f"fit: without y, argument 'x' must yield (x, y) batches (a generator or "
                                    f"another iterable), got {type(source).__name__}; for arrays pass fit(x, y)")
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or
                                            not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
            raise ArgumentValueError(f"fit: steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
        self.source: Any = source
        self.spec = spec
        self.steps_per_epoch = steps_per_epoch
        self.one_shot = isinstance(source, Iterator)     # a generator: iter() gives itself back
        self.ran_out = False                             # no more batches: fit stops
        self._iterator: Iterator[Any] | None = None
        self._epochs = 0

    def steps_hint(self) -> int | None:
        """Batches per epoch when known (``steps_per_epoch``, or the iterable's ``len``)."""
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        try:
            return len(self.source)
        except TypeError:
            return None

    def epoch(self) -> Iterator[list[np.ndarray]]:
        """The checked batches of the next epoch: the model's inputs, then its targets."""
        self._epochs += 1
        if self.steps_per_epoch is None:
            if self.one_shot and self._epochs > 1:
                self._ran_out(0)
                return
            count = 0
            for item in iter(self.source):
                count += 1
                yield self.check(item, count)
            if count == 0:
                raise DlRuntimeError("fit: the batch iterable yielded no batches")
            return
        for step in range(self.steps_per_epoch):
            item = self._next()
            if item is None:
                self._ran_out(step)
                return
            yield self.check(item, step + 1)

    def _next(self) -> Any:
        """The next batch of the running iterator, restarting a re-iterable source once it is
        done; None when there is no batch left."""
        if self._iterator is None:
            self._iterator = iter(self.source)
        try:
            return next(self._iterator)
        except StopIteration:
            if self.one_shot:
                return None
            self._iterator = iter(self.source)
            return next(self._iterator, None)

    def _ran_out(self, step: int) -> None:
        self.ran_out = True
        warnings.warn(f"fit: the batches ran out at step {step + 1} of epoch {self._epochs}; training stops "
                      "(a generator serves one pass: give steps_per_epoch and enough batches for every "
                      "epoch, or a re-iterable such as a list)", stacklevel=2)

    def check(self, item: Any, index: int) -> list[np.ndarray]:
        """Batch ``index`` (1-based) as checked arrays; an error names it."""
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ArgumentTypeError(f"fit: batch {index} is a {type(item).__name__}, not an (x, y) pair")
        xs = prepare_inputs(item[0], self.spec, f"batch {index} input")
        ys = prepare_targets(item[1], self.spec, len(xs[0]), f"batch {index} target")
        if len(xs[0]) == 0:
            raise DlRuntimeError(f"fit: batch {index} is empty")
        return [*xs, *ys]
