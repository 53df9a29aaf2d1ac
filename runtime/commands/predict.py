"""``dlc predict FILE --weights W --input x.npy``: run a trained model's ``predict``.

The input is a ``.npy`` array (read without pickle) of the model's input
shape, or a ``.npz`` holding one array per model input, by name.  Without
``--output`` the predictions are printed; with it they are written as
``.npy`` (one output) or ``.npz`` (several, by output name).
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from compiler.diagnostics import DlRuntimeError

from ..data import read_arrays
from ..model import load_model
from . import check_output, write_output_file
from .train import add_model_arguments, model_passes

NAME = "predict"
HELP = "run a trained model on inputs from a .npy file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc predict``."""
    add_model_arguments(parser)
    parser.add_argument("--weights", required=True, metavar="PATH", help="a checkpoint written by dlc train --save")
    parser.add_argument("--input", required=True, metavar="PATH",
                        help="a .npy array, or a .npz with one array per model input")
    parser.add_argument("--output", default=None, metavar="PATH",
                        help="write predictions to .npy (or .npz for several outputs) instead of printing")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per call (default 256)")


def run(args: argparse.Namespace) -> int:
    """Predict and print or save the outputs."""
    if args.output:
        check_output(args.output, "--output")
    model = load_model(args.file, seed=args.seed, backend=args.backend, weights=args.weights,
                       passes=model_passes(args),
                       flush_denormals=args.flush_denormals)
    x = read_input(Path(args.input))
    outputs = model.predict(x, batch_size=args.batch_size)
    named = dict(zip([s.name for s in model.data_spec.outputs],
                     outputs if isinstance(outputs, tuple) else (outputs,)))
    if args.output:
        write_output(Path(args.output), named)
        print(f"wrote {', '.join(f'{k} {list(v.shape)}' for k, v in named.items())} to {args.output}")
        return 0
    with np.printoptions(precision=4, suppress=True, threshold=200):
        for name, value in named.items():
            print(f"{name} = {value!r}")
    return 0


def read_input(path: Path) -> Any:
    """The model input(s) from a .npy file, or a dict of arrays from a .npz file (numbers
    only, read without pickle)."""
    if not path.is_file():
        raise DlRuntimeError(f"{path}: no such input file")
    with open(path, "rb") as f:
        magic = f.read(6)
    if not (magic == b"\x93NUMPY" or zipfile.is_zipfile(path)):
        raise DlRuntimeError(f"{path}: not a .npy or .npz array file")
    return read_arrays(path)


def write_output(path: Path, named: dict[str, np.ndarray]) -> None:
    """One output as .npy; several as .npz by output name (to ``path`` exactly: no suffix is added)."""
    if len(named) == 1 and path.suffix != ".npz":
        write_output_file(path, lambda f: np.save(f, next(iter(named.values()))), "--output")
    else:
        # cast: mypy matches a str-keyed ** against savez's allow_pickle: bool
        write_output_file(path, lambda f: np.savez(f, **cast(dict[str, Any], named)), "--output")
