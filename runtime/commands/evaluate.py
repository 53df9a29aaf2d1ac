"""``dlc evaluate FILE --weights W``: loss and metrics of trained weights on a data set.

Evaluates the data set's test split when it has one (MNIST's 10000 test
images), else its training data, and says which.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from compiler.diagnostics import DlRuntimeError

from ..data import prepare_targets, samples
from ..model import Model, load_model
from ..report import classification_report, format_report
from . import check_output, write_output_file
from .train import add_data_arguments, add_model_arguments, command_data, model_passes

NAME = "evaluate"
HELP = "evaluate a trained model (loss and metrics) on a data set"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc evaluate``."""
    add_model_arguments(parser)
    parser.add_argument("--weights", required=True, metavar="PATH", help="a checkpoint written by dlc train --save")
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=256, help="samples per call (default 256)")
    parser.add_argument("--metrics-out", default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--report", action="store_true",
                        help="a classifier's confusion matrix, precision, recall, F1, top-5 accuracy "
                             "(binary: and ROC AUC), over the whole split")


def run(args: argparse.Namespace) -> int:
    """Print ``split: loss=... metric=...``."""
    if args.metrics_out:
        check_output(args.metrics_out, "--metrics-out")
    model = load_model(args.file, seed=args.seed, backend=args.backend, weights=args.weights,
                       passes=model_passes(args),
                       flush_denormals=args.flush_denormals)
    data = command_data(args, model.data_spec)
    if data.x_test is not None and data.y_test is not None:     # data.has_test
        split, x, y = "test", data.x_test, data.y_test
    else:
        split, x, y = "train", data.x_train, data.y_train
    results = model.evaluate(x, y, batch_size=args.batch_size)
    print(f"{model.name} on {data.name} ({split}, {samples(x)} samples): "
          + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    classes = classification(model, x, y, args.batch_size) if args.report else None
    if classes is not None:
        print(format_report(classes))
    if args.metrics_out:
        report = {"model": model.name, "data": data.name, "split": split, "samples": samples(x), **results}
        if classes is not None:
            report["report"] = classes
        text = json.dumps(report, indent=2) + "\n"
        write_output_file(args.metrics_out, lambda f: f.write(text.encode()), "--metrics-out")
    return 0


def classification(model: Model, x: Any, y: Any, batch_size: int) -> dict[str, Any]:
    """``--report``: the classification report of the model's first output against its first target."""
    if len(model.data_spec.targets) != 1:
        raise DlRuntimeError("--report needs a model with one target")
    if model.data_spec.num_classes is None and model.data_spec.loss != "binary_crossentropy":
        raise DlRuntimeError(f"--report is for classifiers; model '{model.name}' has loss "
                             f"'{model.data_spec.loss}' and no class output")
    scores = model.predict(x, batch_size=batch_size)
    if isinstance(scores, tuple):
        scores = scores[0]
    labels = prepare_targets(y, model.data_spec, len(scores), "evaluation target")[0]
    return classification_report(scores, labels)
