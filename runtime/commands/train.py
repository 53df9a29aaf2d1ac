"""``dlc train FILE``: train a model on a data set, with a progress bar, a summary and metrics JSON.

::

    dlc train examples/mnist_mlp.dl --epochs 5 --batch-size 128 --seed 0 --save w.npz

The data set defaults to the synthetic set named like the model, or MNIST
for a model with a 784-wide input and 10 classes (``runtime/data.py``);
``--epochs`` and ``--batch-size`` default to what that data set recommends
(MNIST: 5 and 128).  When the data set has a test split it is evaluated after
every epoch (``val_*``) and reported at the end.
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

from compiler.diagnostics import DlRuntimeError
from compiler.ir.core import Module

from ..data import Dataset, DataSpec, load_data, prepare_inputs, prepare_targets
from ..model import (
    BACKENDS,
    History,
    Model,
    NonFiniteLossError,
    model_data_spec,
    model_module,
)
from . import check_output, write_output_file
from .pass_flags import DEFAULT_PIPELINE, add_pass_arguments, run_passes

NAME = "train"
HELP = "train a model (compiled training step) and report loss and metrics"

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--label-column``, shared by train and evaluate."""
    parser.add_argument("--data", default=None, metavar="NAME|DIR|FILE",
                        help="mnist, fashion-mnist, a synthetic set (linear_regression, xor, student_pass, "
                             "student_grade, sigmoid_chain, text_classifier, adder_gpt), a directory of IDX files, "
                             "a .npz (x, y[, x_test, y_test]) "
                             "or a .csv; default: chosen from the model")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help="the target column of a CSV data file")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model file, ``--backend`` and ``--seed``, shared by train, evaluate and predict."""
    parser.add_argument("file", help="a .dl file with a model block")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="native code (default when available) or the reference interpreter")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed of the initial weights, shuffling and synthetic data (default 0)")
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


def model_passes(args: argparse.Namespace) -> Callable[[Module], Module]:
    """The passes the pass flags select, as ``load_model(passes=...)`` takes them."""
    return lambda module: run_passes(module, args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc train``."""
    add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the training data (default: the data set's, else {DEFAULT_EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"samples per step (default: the data set's, else {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (default: the model's optimizer declaration)")
    parser.add_argument("--no-validate", action="store_true",
                        help="do not evaluate the test split after every epoch")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="start from these weights (a checkpoint, e.g. from dlc import or --save) "
                             "instead of the initializers")
    parser.add_argument("--save", default=None, metavar="PATH",
                        help="write a checkpoint (.npz, or .safetensors) after training")
    parser.add_argument("--metrics-out", default=None, metavar="PATH",
                        help="write per-epoch metrics, timings and test results as JSON")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="draw the learning curves to an image (needs matplotlib: pip install 'dlc[plot]')")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only the summary")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="train on when the loss becomes NaN or infinite (default: stop, saving nothing, "
                             "and show the first .dl line whose value became non-finite)")


def run(args: argparse.Namespace) -> int:
    """Train, print the summary, write the requested files; 130 after Ctrl-C."""
    _check_options(args)
    start = time.perf_counter()
    module, name = model_module(args.file)
    spec = model_data_spec(module)
    load_seconds = time.perf_counter() - start
    data = load_data(args.data, spec, seed=args.seed, label_column=args.label_column)
    check_data(data, spec)                     # before the (slow) compile
    start = time.perf_counter()
    model = Model(module, seed=args.seed, backend=args.backend, source=name, passes=model_passes(args))
    if args.weights:
        model.load_weights(args.weights)
    load_seconds += time.perf_counter() - start
    epochs = args.epochs or data.epochs or DEFAULT_EPOCHS
    batch_size = args.batch_size or data.batch_size or DEFAULT_BATCH_SIZE
    validation = (data.x_test, data.y_test) if data.has_test and not args.no_validate else None
    say = _printer(args.quiet)
    say(f"training {model.name} on {data.name} ({len(data.x_train)} samples): {_count(epochs, 'epoch')}, "
        f"batch {batch_size}, {model.signature.optimizer.name} lr={args.lr or model.learning_rate:g}, "
        f"backend {model.backend.name}")
    try:
        history = model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
                            validation_data=validation, learning_rate=args.lr, verbose=0 if args.quiet else 1,
                            allow_nonfinite=args.allow_nonfinite)
    except KeyboardInterrupt:
        return _interrupted(model, args)
    except NonFiniteLossError as e:
        if args.save:
            e.notes.append(f"nothing was saved: {args.save} is as it was")
        raise
    test = model.evaluate(data.x_test, data.y_test) if data.has_test else None
    report = _report(model, data, history, test, epochs, batch_size, load_seconds, args)
    print(_summary(model, report), flush=True)
    if args.save:
        model.save(args.save)
        print(f"saved checkpoint to {args.save}")
    if args.metrics_out:
        text = json.dumps(report, indent=2) + "\n"
        write_output_file(args.metrics_out, lambda f: f.write(text.encode()), "--metrics-out")
        print(f"wrote metrics to {args.metrics_out}")
    if args.plot:
        plot_history(history, args.plot, model.name)
        print(f"wrote learning curves to {args.plot}")
    return 0


def check_data(data: Dataset, spec: DataSpec) -> None:
    """The data set's arrays against the model's inputs and targets (names, shapes, dtypes,
    labels, NaN/inf), as ``fit`` checks them; an error lists what the model expects."""
    splits = [("training", data.x_train, data.y_train)]
    if data.x_test is not None and data.y_test is not None:     # data.has_test
        splits.append(("test", data.x_test, data.y_test))
    try:
        for split, x, y in splits:
            xs = prepare_inputs(x, spec, f"{split} input")
            prepare_targets(y, spec, len(xs[0]), f"{split} target")
    except DlRuntimeError as e:
        expects = "; ".join(f"{kind} " + ", ".join(f"{s.name}: {s.dsl_str()}" for s in specs)
                            for kind, specs in (("inputs", spec.inputs), ("targets", spec.targets)))
        has = ", ".join(f"{k} {a.dtype} {list(a.shape)}" for k, a in (("x", data.x_train), ("y", data.y_train)))
        raise DlRuntimeError(f"data set '{data.name}' does not fit model '{spec.model_name}': {e.message}",
                             notes=[f"the model expects {expects}", f"the data set has {has}"]) from None


def _check_options(args: argparse.Namespace) -> None:
    """Fail before any work on options that cannot succeed."""
    for key in ("epochs", "batch_size"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise DlRuntimeError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise DlRuntimeError(f"--lr must be a positive number, got {args.lr}")
    if args.plot:
        require_matplotlib()
    for option in ("save", "metrics_out", "plot"):
        path = getattr(args, option)
        if path:
            check_output(path, f"--{option.replace('_', '-')}")


def _printer(quiet: bool) -> Any:
    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)
    return say


def _interrupted(model: Model, args: argparse.Namespace) -> int:
    print(f"\ninterrupted after {model.step} steps ({model.epochs_trained} complete epochs); "
          "the weights are those of the last completed step", file=sys.stderr)
    if args.save:
        model.save(args.save)
        print(f"saved checkpoint to {args.save}", file=sys.stderr)
    return 130


def _report(model: Model, data: Dataset, history: History, test: dict[str, float] | None,
            epochs: int, batch_size: int, load_seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    n = len(data.x_train)
    return {
        "model": model.name,
        "file": args.file,
        "data": data.name,
        "train_samples": n,
        "test_samples": len(data.x_test) if data.has_test and data.x_test is not None else 0,
        "backend": model.backend.name,
        "optimizer": model.signature.optimizer.name,
        "learning_rate": model.learning_rate,
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": args.seed,
        "steps_per_epoch": math.ceil(n / batch_size),
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


def _small_weights(model: Model, limit: int = 16) -> dict[str, Any] | None:
    """The weights themselves when the model is tiny (linear regression's w and b)."""
    weights = model.weights
    if sum(w.size for w in weights.values()) > limit:
        return None
    return {name: w.tolist() for name, w in weights.items()}


def _summary(model: Model, report: dict[str, Any]) -> str:
    history = report["history"]
    last = {k: v[-1] for k, v in history.items() if v}
    seconds = report["epoch_seconds"]
    lines = [
        f"model {model.name}: {_count(report['epochs'], 'epoch')} x {_count(report['steps_per_epoch'], 'step')} "
        f"(batch {report['batch_size']}), backend {report['backend']}",
        f"compile time: {report['compile_seconds']:.2f} s (load + compile {report['load_seconds']:.2f} s)",
        f"time per epoch: {np.mean(seconds):.2f} s, {np.mean(report['samples_per_second']):,.0f} samples/s, "
        f"{report['backend_calls_per_epoch'][-1]} {report['backend']} calls per epoch",
        f"loss: {history['loss'][0]:.4f} (epoch 1) -> {history['loss'][-1]:.4f} (epoch {len(history['loss'])})",
        "final epoch: " + "  ".join(f"{k}={v:.4f}" for k, v in last.items() if not k.startswith("val_")),
    ]
    if report["test"] is not None:
        lines.append("test: " + "  ".join(f"{k}={v:.4f}" for k, v in report["test"].items()))
    if report["weights"] is not None:
        lines.append("weights: " + "  ".join(f"{k}={np.array2string(np.asarray(v), precision=4)}"
                                              for k, v in report["weights"].items()))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Learning curves


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` with a non-interactive backend, or a clear error how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise DlRuntimeError("--plot needs matplotlib, which is not installed; install it with "
                             "pip install 'dlc[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: History, path: str | Path, title: str) -> None:
    """One panel per quantity (loss, each metric), training and validation curves."""
    plt = require_matplotlib()
    names = [k for k in history.history if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    epochs = [e + 1 for e in history.epoch]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, history.history[name], marker="o", label="train")
        if f"val_{name}" in history.history:
            ax.plot(epochs, history.history[f"val_{name}"], marker="o", label="test")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _count(n: int, noun: str) -> str:
    """``1 epoch``, ``5 epochs``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
