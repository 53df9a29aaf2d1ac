"""``dlc evaluate FILE --weights W``: loss and metrics of trained weights on a data set.

Evaluates the data set's test split when it has one (MNIST's 10000 test
images), else its training data, and says which.
"""

from __future__ import annotations

import argparse
import json

from ..data import samples
from ..model import load_model
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


def run(args: argparse.Namespace) -> int:
    """Print ``split: loss=... metric=...``."""
    if args.metrics_out:
        check_output(args.metrics_out, "--metrics-out")
    model = load_model(args.file, seed=args.seed, backend=args.backend, weights=args.weights,
                       passes=model_passes(args))
    data = command_data(args, model.data_spec)
    if data.x_test is not None and data.y_test is not None:     # data.has_test
        split, x, y = "test", data.x_test, data.y_test
    else:
        split, x, y = "train", data.x_train, data.y_train
    results = model.evaluate(x, y, batch_size=args.batch_size)
    print(f"{model.name} on {data.name} ({split}, {samples(x)} samples): "
          + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    if args.metrics_out:
        report = {"model": model.name, "data": data.name, "split": split, "samples": samples(x), **results}
        text = json.dumps(report, indent=2) + "\n"
        write_output_file(args.metrics_out, lambda f: f.write(text.encode()), "--metrics-out")
    return 0
