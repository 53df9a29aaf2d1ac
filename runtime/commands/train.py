"""``dlc train FILE``: train a model on a data set, with a progress bar, a summary and metrics JSON.

::

    dlc train examples/mnist_mlp.dl --epochs 5 --batch-size 128 --seed 0 --save w.npz

The data set defaults to the synthetic set named like the model, or MNIST
for a model with a 784-wide input and 10 classes (``runtime/data.py``);
``--epochs`` and ``--batch-size`` default to what that data set recommends
(MNIST: 5 and 128).  Validation (``val_*``, after every epoch) runs on the
last ``--validation-split`` fraction of the training data or on
``--validation-data``; the data set's test split is evaluated once, after
training, and reported as ``test``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler.codegen.driver import StageTimer
from compiler.diagnostics import DlRuntimeError
from compiler.ir.core import Module
from compiler.train_step import TRAIN_STEP

from ..callbacks import Callback, EarlyStopping, ModelCheckpoint
from ..data import (
    Dataset,
    DataSpec,
    describe,
    expected_arrays,
    load_data,
    load_named,
    prepare_inputs,
    prepare_targets,
)
from ..distributed import Distributed, is_root, mpi, rank_and_size
from ..model import (
    BACKENDS,
    History,
    Model,
    NativeBackend,
    NonFiniteLossError,
    check_validation_split,
    model_data_spec,
    model_module,
)
from ..weights import parse_class_weight
from . import check_output, write_output_file
from .pass_flags import DEFAULT_PIPELINE, add_pass_arguments, run_passes

NAME = "train"
HELP = "train a model (compiled training step) and report loss and metrics"

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--input`` and ``--label-column``, shared by train and evaluate."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", default=None, metavar="NAME|DIR|FILE",
                        help="mnist, fashion-mnist, a synthetic set (linear_regression, xor, student_pass, "
                             "student_grade, sigmoid_chain, text_classifier, adder_gpt, char_gpt), "
                             "a directory of IDX files, a .npz (x, y[, x_test, y_test], or one array per input "
                             "and target name [, NAME_test]) or a .csv; default: chosen from the model")
    source.add_argument("--input", action="append", default=None, metavar="NAME=FILE", dest="inputs",
                        help="one .npy file per model input and target (repeat the option): "
                             "the data of a model with several inputs")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help="the target column of a CSV data file")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model file, ``--backend`` and ``--seed``, shared by train, evaluate and predict."""
    parser.add_argument("file", help="a .dl file with a model block")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="native code (default when available) or the reference interpreter")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed of the initial weights, shuffling and synthetic data (default 0)")
    parser.add_argument("--no-flush-denormals", dest="flush_denormals", action="store_false",
                        help="keep IEEE gradual underflow in native code (default: denormal floats "
                             "flush to zero, as in JAX and TensorFlow)")
    add_pass_arguments(parser, default=DEFAULT_PIPELINE)


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer (else a usage error naming the option)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def model_passes(args: argparse.Namespace, timer: StageTimer | None = None) -> Callable[[Module], Module]:
    """The passes the pass flags select, as ``load_model(passes=...)`` takes them (their
    times charged to ``timer``, if given, instead of printed)."""
    return lambda module: run_passes(module, args, timer=timer)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc train``."""
    add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the training data (default: the data set's, else {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"samples per step, per rank with --distributed (default: the data set's, else "
                             f"{DEFAULT_BATCH_SIZE}, split over the ranks)")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the model's optimizer declaration)")
    parser.add_argument("--validation-split", type=float, default=0.0, metavar="F",
                        help="validate after every epoch on the last fraction F of the training data "
                             "(0 <= F < 1; as Keras, taken before shuffling and not trained on)")
    parser.add_argument("--validation-data", default=None, metavar="NAME|DIR|FILE",
                        help="validate after every epoch on this data set's training arrays "
                             "(the same forms as --data)")
    parser.add_argument("--class-weight", default=None, metavar="C=W,...|balanced",
                        help="weight each sample's loss by its class, as fit(class_weight=...): "
                             "'0=1,1=5', or 'balanced' (n_samples / (n_classes * count))")
    parser.add_argument("--no-test", action="store_true",
                        help="do not evaluate the data set's test split after training")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--initial-weights", "--weights", dest="weights", default=None, metavar="PATH",
                       help="start from these weights (a checkpoint, e.g. from dlc import or --save) "
                            "instead of the initializers, with a fresh optimizer (fine-tuning)")
    start.add_argument("--resume", default=None, metavar="PATH",
                       help="continue the training saved in this checkpoint: weights, optimizer state, "
                            "step and epoch count; --epochs counts the epochs already trained")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="write a checkpoint (.npz, or .safetensors) after training")
    parser.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                        help="stop when the monitored quantity has not improved for PATIENCE epochs, "
                             "keeping the weights of the best epoch")
    parser.add_argument("--save-best", action="store_true",
                        help="write --save after each epoch that improves the monitored quantity "
                             "(and not after training): the checkpoint of the best epoch")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                        help="also write --save every N epochs (the path may name the epoch: ckpt-{epoch}.npz)")
    parser.add_argument("--monitor", default=None, metavar="NAME",
                        help="what --early-stopping and --save-best watch (default: val_loss with "
                             "validation, else loss)")
    parser.add_argument("--progress", choices=("bar", "epoch", "none"), default=None,
                        help="a progress bar per epoch, one line per epoch (logs, CI), or nothing "
                             "(default: a bar on a terminal, else one line per epoch)")
    parser.add_argument("--metrics-out", default=None, metavar="PATH",
                        help="write per-epoch metrics, timings and test results as JSON")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="draw the learning curves to an image (needs matplotlib: pip install 'dlc[plot]')")
    parser.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel training over the ranks of an MPI job (mpirun -n K dlc train ...; "
                             "--batch-size is per rank); needs pip install 'dlc[distributed]'")
    parser.add_argument("--sync-batch-stats", action="store_true",
                        help="with --distributed: average batch norm's moving statistics over the ranks "
                             "after every step (default: each rank keeps its own, rank 0's are saved)")
    parser.add_argument("--distributed-timeout", type=float, default=None, metavar="SECONDS",
                        help="with --distributed: how long a rank waits for the others before it stops "
                             "the job (default 120)")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="train on when the loss becomes NaN or infinite (default: stop, saving nothing, "
                             "and show the first .dl line whose value became non-finite)")


def run(args: argparse.Namespace) -> int:
    """Train, print the summary, write the requested files; 130 after Ctrl-C."""
    _check_options(args)
    distributed = _distributed(args)
    timer = StageTimer()
    start = time.perf_counter()
    with timer("frontend"):
        module, name = model_module(args.file)
        spec = model_data_spec(module)
    load_seconds = time.perf_counter() - start
    with timer("data"):
        data = command_data(args, spec)
        check_data(data, spec)                     # before the (slow) compile
        validation = _validation_data(args, spec)
    start = time.perf_counter()
    before = sum(timer.stages.values())
    model = Model(module, seed=args.seed, backend=args.backend, source=name,
                  passes=model_passes(args, timer if args.time_passes else None),
                  flush_denormals=args.flush_denormals)
    if isinstance(model.backend, NativeBackend):
        # compiled now rather than at first use, so that the load report covers them and the
        # first epoch's time is training: the step, and the evaluation of validation and test
        model.backend.compiled.compile_all([f for f in (TRAIN_STEP, "evaluate") if f in model.backend.compiled])
    _charge_model_setup(timer, model, time.perf_counter() - start, sum(timer.stages.values()) - before)
    if args.time_passes:
        sys.stderr.write(timer.report("Model load time report"))
    if args.weights:
        model.load_weights(args.weights, optimizer="reset")
    if args.resume:
        model.load_weights(args.resume, optimizer="restore")
    load_seconds += time.perf_counter() - start
    epochs = args.epochs or data.epochs or DEFAULT_EPOCHS
    if args.resume:
        epochs = _epochs_left(model, epochs, args.resume)
    batch_size = args.batch_size or _per_rank(data.batch_size or DEFAULT_BATCH_SIZE, distributed)
    root = not distributed or is_root()
    say = _printer(args.quiet or not root)
    resumed = f" from epoch {model.epochs_trained + 1} (step {model.step})" if args.resume else ""
    schedule = f" ({model.lr_schedule!r})" if model.lr_schedule is not None and args.lr is None else ""
    say(f"training {model.name} on {data.name} ({data.train_samples} samples): {_count(epochs, 'epoch')}"
        f"{resumed}, batch {batch_size}{_ranks(rank_and_size()[1] if distributed else 1)}, "
        f"{model.signature.optimizer.name} lr={args.lr or model.learning_rate:g}"
        f"{schedule}, backend {model.backend.name}")
    callbacks = training_callbacks(args, validation is not None or args.validation_split > 0)
    try:
        history = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                            validation_data=validation, validation_split=args.validation_split,
                            learning_rate=args.lr, verbose=_verbosity(args), callbacks=callbacks,
                            allow_nonfinite=args.allow_nonfinite, distributed=distributed,
                            class_weight=args.class_weight)
    except KeyboardInterrupt:
        return _interrupted(model, args, root)
    except NonFiniteLossError as e:
        written = [str(p) for c in callbacks if isinstance(c, ModelCheckpoint) for p in c.saved]
        if written:
            e.notes.append(f"the checkpoints written before that epoch stay: {', '.join(written)}")
        elif args.save:
            e.notes.append(f"nothing was saved: {args.save} is as it was")
        raise
    if not root:                               # rank 0 reports and writes the files
        return 0
    test = model.evaluate(data.x_test, data.y_test) if data.has_test and not args.no_test else None
    report = _report(model, data, history, test, epochs, batch_size, load_seconds, args)
    print(_summary(model, report, callbacks), flush=True)
    saved = _save(model, args)
    if saved:
        print(f"saved checkpoint to {saved}")
    if args.metrics_out:
        text = json.dumps(report, indent=2) + "\n"
        write_output_file(args.metrics_out, lambda f: f.write(text.encode()), "--metrics-out")
        print(f"wrote metrics to {args.metrics_out}")
    if args.plot:
        plot_history(history, args.plot, model.name)
        print(f"wrote learning curves to {args.plot}")
    return 0


def check_data(data: Dataset, spec: DataSpec, role: str = "training") -> None:
    """The data set's arrays against the model's inputs and targets (names, shapes, dtypes,
    labels, NaN/inf), as ``fit`` checks them; an error lists what the model expects.
    ``role`` names the data set's training arrays in messages (``validation`` for
    ``--validation-data``)."""
    splits = [(role, data.x_train, data.y_train)]
    if data.x_test is not None and data.y_test is not None:     # data.has_test
        splits.append(("test", data.x_test, data.y_test))
    try:
        for split, x, y in splits:
            xs = prepare_inputs(x, spec, f"{split} input")
            prepare_targets(y, spec, len(xs[0]), f"{split} target")
    except DlRuntimeError as e:
        has = f"{describe(data.x_train, 'x')}, {describe(data.y_train, 'y')}"
        raise DlRuntimeError(f"data set '{data.name}' does not fit model '{spec.model_name}': {e.message}",
                             notes=[expected_arrays(spec), f"the data set has {has}"]) from None


def training_callbacks(args: argparse.Namespace, validates: bool) -> list[Callback]:
    """The callbacks ``--early-stopping``, ``--save-best`` and ``--checkpoint-every`` ask for."""
    monitor = args.monitor or ("val_loss" if validates else "loss")
    callbacks: list[Callback] = []
    if args.early_stopping is not None:
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True))
    if args.save_best:
        callbacks.append(ModelCheckpoint(args.save, monitor=monitor, save_best_only=True))
    if args.checkpoint_every is not None:
        callbacks.append(ModelCheckpoint(args.save, period=args.checkpoint_every))
    return callbacks


def _verbosity(args: argparse.Namespace) -> int:
    """``fit``'s verbose: 1 a bar, 2 a line per epoch, 0 nothing."""
    progress = "none" if args.quiet else args.progress
    if progress is None:
        progress = "bar" if sys.stderr.isatty() else "epoch"
    return {"bar": 1, "epoch": 2, "none": 0}[progress]


def _epochs_left(model: Model, epochs: int, path: str) -> int:
    """``--resume``: the epochs still to train to reach ``--epochs`` in all."""
    if model.epochs_trained >= epochs:
        raise DlRuntimeError(f"{path}: the checkpoint has already trained {_count(model.epochs_trained, 'epoch')}; "
                             f"--epochs {epochs} counts those too (ask for more to continue)")
    return epochs - model.epochs_trained


def command_data(args: argparse.Namespace, spec: DataSpec) -> Dataset:
    """The data set of ``--data`` (or the model's default) or of the ``--input`` files."""
    if args.inputs:
        if args.label_column:
            raise DlRuntimeError("--label-column applies to a .csv data file, not to --input files")
        return load_named(args.inputs, spec)
    return load_data(args.data, spec, seed=args.seed, label_column=_label_column(args, args.data))


def _validation_data(args: argparse.Namespace, spec: DataSpec) -> tuple[Any, Any] | None:
    """``--validation-data``: the training arrays of that data set, checked against the model."""
    if args.validation_data is None:
        return None
    data = load_data(args.validation_data, spec, seed=args.seed,
                     label_column=_label_column(args, args.validation_data))
    check_data(data, spec, "validation")
    return data.x_train, data.y_train


def _label_column(args: argparse.Namespace, source: str | None) -> str | None:
    """``--label-column`` for ``source`` (``--data`` or ``--validation-data``): it names the column
    of every CSV file among them; given for ``--data`` when neither is a CSV file, which says so."""
    def is_csv(text: str | None) -> bool:
        return text is not None and Path(text).suffix.lower() == ".csv"
    validation = getattr(args, "validation_data", None)        # dlc evaluate has no --validation-data
    if is_csv(source) or (source == args.data and not is_csv(validation)):
        return args.label_column
    return None


def _check_options(args: argparse.Namespace) -> None:
    """Fail before any work on options that cannot succeed."""
    check_validation_split(args.validation_split, "--validation-split")
    if args.class_weight is not None:
        args.class_weight = parse_class_weight(args.class_weight)
    if args.validation_split and args.validation_data is not None:
        raise DlRuntimeError("give --validation-split or --validation-data, not both")
    for key in ("epochs", "batch_size"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise DlRuntimeError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise DlRuntimeError(f"--lr must be a positive number, got {args.lr}")
    for key in ("early_stopping", "checkpoint_every"):
        value = getattr(args, key)
        if value is not None and value < (0 if key == "early_stopping" else 1):
            raise DlRuntimeError(f"--{key.replace('_', '-')} must be at least "
                                 f"{0 if key == 'early_stopping' else 1}, got {value}")
    for option in ("save_best", "checkpoint_every"):
        if getattr(args, option) not in (None, False) and not args.save:
            raise DlRuntimeError(f"--{option.replace('_', '-')} writes the checkpoint --save names; give --save PATH")
    if args.save_best and args.checkpoint_every is not None:
        raise DlRuntimeError("give --save-best or --checkpoint-every, not both (they write the same --save path)")
    if args.plot:
        plot_format(args.plot)
    for option in ("save", "metrics_out", "plot"):
        path = getattr(args, option)
        if path:
            check_output(save_path(path, 1) if option == "save" else path, f"--{option.replace('_', '-')}")


def _charge_model_setup(timer: StageTimer, model: Model, seconds: float, passes: float) -> None:
    """Charge ``seconds`` of ``Model(...)`` to ``timer``: the native compile's own stages,
    and the rest (training step, initial weights) as the model's set-up (``passes``: the
    part already charged by the pass flags)."""
    compiled = getattr(model.backend, "compiled", None)
    compile_seconds = 0.0
    for one in (compiled.modules.values() if compiled is not None else ()):
        for stage, value in one.timings.stages.items():
            timer.add(stage, value)
        compile_seconds += one.timings.total
    timer.add("model set-up (training step, initial weights)", seconds - passes - compile_seconds)
    timer.finish()


def _printer(quiet: bool) -> Any:
    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)
    return say


def _per_rank(batch_size: int, distributed: Distributed | bool) -> int:
    """The default batch of each rank: the data set's recommended batch split over the ranks,
    so that the global batch stays what it recommends (128 on 2 ranks: 64 each)."""
    return max(1, batch_size // rank_and_size()[1]) if distributed else batch_size


def _distributed(args: argparse.Namespace) -> Distributed | bool:
    """``fit``'s ``distributed`` argument for ``--distributed`` and its options (MPI is
    started here: an error says what to install when mpi4py is missing)."""
    if not args.distributed:
        if args.sync_batch_stats or args.distributed_timeout is not None:
            raise DlRuntimeError("--sync-batch-stats and --distributed-timeout need --distributed")
        return False
    mpi()
    timeout = Distributed.timeout if args.distributed_timeout is None else args.distributed_timeout
    return Distributed(sync_batch_stats=args.sync_batch_stats, timeout=timeout)


def _interrupted(model: Model, args: argparse.Namespace, root: bool = True) -> int:
    print(f"\ninterrupted after {model.step} steps ({model.epochs_trained} complete epochs); "
          "the weights are those of the last completed step", file=sys.stderr)
    saved = _save(model, args) if root else None
    if saved:
        print(f"saved checkpoint to {saved}", file=sys.stderr)
    return 130


def _save(model: Model, args: argparse.Namespace) -> str | None:
    """Write ``--save`` (its ``{epoch}`` filled in) unless ``--save-best`` already wrote the best epoch's."""
    if not args.save or args.save_best:
        return None
    path = save_path(args.save, model.epochs_trained)
    model.save(path)
    return path


def save_path(pattern: str, epoch: int) -> str:
    """``--save``'s path for ``epoch`` (1-based): ``{epoch}`` / ``{epoch:03d}`` filled in."""
    try:
        return pattern.format(epoch=epoch)
    except (KeyError, IndexError, ValueError) as e:
        raise DlRuntimeError(f"--save {pattern}: braces may only name the epoch ({{epoch}}, {{epoch:03d}}); "
                             f"got {e!r}") from None


def _report(model: Model, data: Dataset, history: History, test: dict[str, float] | None,
            epochs: int, batch_size: int, load_seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    n = history.train_samples
    ranks = rank_and_size()[1] if args.distributed else 1
    return {
        "model": model.name,
        "file": args.file,
        "data": data.name,
        "train_samples": n,
        "validation": _validation_source(args),
        "validation_samples": history.validation_samples,
        "test_samples": data.test_samples if test is not None else 0,
        "backend": model.backend.name,
        "optimizer": model.signature.optimizer.name,
        "learning_rate": model.learning_rate,
        "epochs": epochs,
        "batch_size": batch_size,          # per rank
        "ranks": ranks,
        "seed": args.seed,
        "steps_per_epoch": math.ceil(n / (batch_size * ranks)),
        "compile_seconds": model.backend.compile_seconds,
        "load_seconds": load_seconds,
        "history": history.history,
        "epoch_seconds": history.epoch_seconds,
        "samples_per_second": history.samples_per_second,
        "native_calls_per_epoch": history.calls_per_epoch if model.backend.name == "native" else [],
        "backend_calls_per_epoch": history.calls_per_epoch,
        "test": test,
        "weights": _small_weights(model),
    }


def _validation_source(args: argparse.Namespace) -> str | None:
    """What ``val_*`` was measured on, in words; None without validation."""
    if args.validation_split:
        return f"the last {args.validation_split:g} of the training data"
    return args.validation_data


def _small_weights(model: Model, limit: int = 16) -> dict[str, Any] | None:
    """The weights themselves when the model is tiny (linear regression's w and b)."""
    weights = model.weights
    if sum(w.size for w in weights.values()) > limit:
        return None
    return {name: w.tolist() for name, w in weights.items()}


def _summary(model: Model, report: dict[str, Any], callbacks: list[Callback]) -> str:
    history = report["history"]
    last = {k: v[-1] for k, v in history.items() if v}
    seconds = report["epoch_seconds"]
    lines = [
        f"model {model.name} on {report['data']} ({report['train_samples']} training samples): "
        f"{_count(len(history['loss']), 'epoch')} x {_count(report['steps_per_epoch'], 'step')} "
        f"(batch {report['batch_size']}{_ranks(report['ranks'])}), backend {report['backend']}",
        f"compile time: {report['compile_seconds']:.2f} s (load + compile {report['load_seconds']:.2f} s)",
        f"time per epoch: {np.mean(seconds):.2f} s, {_rate(report['train_samples'], float(np.mean(seconds)))} "
        "samples/s, "
        f"{report['backend_calls_per_epoch'][-1]} {report['backend']} calls per epoch",
        f"loss: {history['loss'][0]:.4f} (epoch 1) -> {history['loss'][-1]:.4f} (epoch {len(history['loss'])})",
        "final epoch: " + "  ".join(f"{k}={v:.4f}" for k, v in last.items() if not k.startswith("val_")),
    ]
    if report["validation"] is not None:
        lines.append(f"validation ({report['validation']}, {report['validation_samples']} samples): "
                     + "  ".join(f"{k[4:]}={v:.4f}" for k, v in last.items() if k.startswith("val_")))
    for c in callbacks:
        if isinstance(c, EarlyStopping) and c.stopped_epoch is not None:
            lines.append(f"early stopping: {c.watch.monitor} did not improve for {_count(c.patience, 'epoch')} "
                         f"after epoch {(c.best_epoch or 0) + 1}; stopped after epoch {c.stopped_epoch + 1}, "
                         f"weights of epoch {(c.best_epoch or 0) + 1}")
        if isinstance(c, ModelCheckpoint) and c.saved:
            what = f"best {c.watch.monitor}" if c.save_best_only else f"every {_count(c.period, 'epoch')}"
            lines.append(f"checkpoints ({what}): {_count(len(c.saved), 'file')} written, last {c.saved[-1]}")
    if report["test"] is not None:
        lines.append("test: " + "  ".join(f"{k}={v:.4f}" for k, v in report["test"].items()))
    if report["weights"] is not None:
        lines.append("weights: " + "  ".join(f"{k}={np.array2string(np.asarray(v), precision=4)}"
                                              for k, v in report["weights"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Learning curves


def require_matplotlib() -> Any:
    """The ``matplotlib`` module, or a clear error how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise DlRuntimeError("--plot needs matplotlib, which is not installed; install it with "
                             "pip install 'dlc[plot]' (or pip install matplotlib)") from None
    return matplotlib


def plot_format(path: str | Path) -> str:
    """The image format ``--plot PATH`` writes: its suffix (``png`` without one), checked
    against the formats matplotlib writes, so a wrong suffix is reported before training."""
    require_matplotlib()
    from matplotlib.figure import Figure

    suffix = Path(path).suffix.lower().lstrip(".")
    supported = Figure().canvas.get_supported_filetypes()
    if suffix and suffix not in supported:
        raise DlRuntimeError(f"--plot {path}: matplotlib cannot write '.{suffix}' images "
                             f"(it writes {', '.join('.' + k for k in sorted(supported))})")
    return suffix or "png"


def history_figure(history: History, title: str) -> Any:
    """A matplotlib ``Figure`` of the learning curves: one axes per quantity (loss, each
    metric), its training curve and, when validated, its validation curve, over epochs 1, 2, ..."""
    require_matplotlib()
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    names = [k for k in history.history if not k.startswith("val_")]
    fig = Figure(figsize=(5 * max(len(names), 1), 3.5))
    axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
    epochs = [e + 1 for e in history.epoch]
    for ax, name in zip(axes, names):
        ax.plot(epochs, history.history[name], marker="o", label="train")
        if f"val_{name}" in history.history:
            ax.plot(epochs, history.history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.xaxis.get_major_locator().set_params(integer=True)     # epochs are whole numbers
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: History, path: str | Path, title: str) -> None:
    """Write :func:`history_figure` to ``path``, in the format of its suffix (:func:`plot_format`)."""
    fmt = plot_format(path)
    figure = history_figure(history, title)
    write_output_file(path, lambda f: figure.savefig(f, format=fmt), "--plot")


def _ranks(ranks: int) -> str:
    """`` x 4 ranks`` after the batch size of distributed training (nothing for one process)."""
    return f" x {ranks} ranks" if ranks > 1 else ""
def _rate(samples: int, seconds: float) -> str:
    """Samples per second over the mean epoch time, so the two figures of the line agree
    (a mean of per-epoch rates would not: the mean of n/t is not n over the mean of t)."""
    return f"{samples / seconds:,.0f}" if seconds > 0 else "inf"


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``5 epochs``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
