"""``dlc import model.onnx -o model.dl``: an ONNX model as a .dl model file and its weights.

::

    dlc import mlp.onnx -o mlp.dl                # writes mlp.dl and mlp.npz
    dlc train mlp.dl --weights mlp.npz --data ...  # fine-tune it
    dlc predict mlp.dl --weights mlp.npz --input x.npy

The graph's float initializers become the model's parameters, written to
``--weights-out`` (default: the output with suffix ``.npz``); its inputs
become the model's inputs.  ONNX has no loss or optimizer: ``--loss`` and
``--optimizer`` choose them (defaults in docs/interop.md).  Nodes dlc cannot
import are listed together, by name, in one error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compiler.diagnostics import DlError

from . import check_output, write_output_file

NAME = "import"
HELP = "import an ONNX model as a .dl model file plus its weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc import``."""
    from ..interop.dl_source import LOSSES

    parser.add_argument("file", help="an ONNX model (.onnx)")
    parser.add_argument("--output", "-o", metavar="PATH", required=True, help="the .dl file to write")
    parser.add_argument("--weights-out", metavar="PATH", default=None,
                        help="where the weights go (.npz or .safetensors; default: the output with suffix .npz)")
    parser.add_argument("--loss", choices=LOSSES, default=None,
                        help="the model's loss (default: from the last op: softmax -> "
                             "sparse_categorical_crossentropy, sigmoid -> binary_crossentropy, else mse)")
    parser.add_argument("--optimizer", default="adam(lr=0.001)", metavar="EXPR",
                        help="the model's optimizer, in .dl syntax (default: adam(lr=0.001))")


def run(args: argparse.Namespace) -> int:
    """Import, check that the .dl file compiles, write it and the weights."""
    from frontend_dsl.api import compile_source

    from ..checkpoint import Checkpoint, save_checkpoint
    from ..interop.onnx_import import import_onnx

    out = Path(args.output)
    if out.suffix != ".dl":
        raise DlError(f"--output {out}: the model file needs the suffix .dl")
    weights_out = Path(args.weights_out) if args.weights_out else out.with_suffix(".npz")
    check_output(out, "--output")
    check_output(weights_out, "--weights-out")
    graph = import_onnx(args.file)
    source = graph.model_source(loss=args.loss, optimizer=args.optimizer, weights_file=weights_out.name)
    compile_source(source, str(out))            # the file is checked before anything is written
    write_output_file(out, lambda f: f.write(source.encode()), "--output")
    save_checkpoint(weights_out, Checkpoint(graph.name, graph.weights))
    count = sum(int(w.size) for w in graph.weights.values())
    print(f"wrote {out} (model {graph.name}: {len(graph.function.ops)} ops, {len(graph.weights)} parameters, "
          f"{count:,} weights) and {weights_out}")
    return 0
