"""``dlc export FILE -o OUT``: a model (or one function) in another tool's format.

::

    dlc export examples/mnist_mlp.dl --weights w.npz -o mnist.onnx     # ONNX, for onnxruntime & co.
    dlc export examples/mnist_mlp.dl --weights w.npz -o mnist.mlir     # upstream MLIR (linalg, ...)

For a model file the exported function is ``predict`` with the weights of
``--weights`` (a checkpoint from ``dlc train --save``; without it, the
initial weights of ``--seed``) as initializers (MLIR: ``arith.constant``);
for any other function (``--fn``) every parameter is an input.  ``--format`` defaults to the
output's suffix.  See docs/interop.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from compiler.diagnostics import DlError
from compiler.ir.core import Function

from . import check_output, load_module, pick_function
from .train import _seed

NAME = "export"
HELP = "export a model or function as ONNX (--format onnx) or upstream MLIR (--format mlir)"

FORMATS = {".onnx": "onnx", ".mlir": "mlir"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc export``."""
    parser.add_argument("file", help="a .dl file (a model, or functions) or dl IR text (.mlir)")
    parser.add_argument("--output", "-o", metavar="PATH", required=True, help="the file to write")
    parser.add_argument("--format", choices=sorted(set(FORMATS.values())), default=None,
                        help="what to write (default: from the output's suffix)")
    parser.add_argument("--fn", metavar="NAME", help="the function to export (default: predict)")
    parser.add_argument("--weights", metavar="PATH", default=None,
                        help="a model's trained weights (a checkpoint from dlc train --save)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="without --weights: the seed of the initial weights (default 0)")


def output_format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return args.format
    fmt = FORMATS.get(Path(args.output).suffix)
    if fmt is None:
        raise DlError(f"cannot tell the format of {args.output} from its suffix: give --format "
                      f"({', '.join(sorted(set(FORMATS.values())))})")
    return fmt


def function_and_weights(args: argparse.Namespace) -> tuple[Function, dict[str, Any], str]:
    """The function to export, the weights that become constants, and the graph's name."""
    module = load_module(args.file)
    if "model" in module.attrs and args.fn in (None, "predict"):
        from ..model import load_model

        model = load_model(module, seed=args.seed, backend="interp", weights=args.weights)
        # the non-trainable state (batch norm's moving statistics) is constant too, as in
        # Model.export: predict reads it, nothing feeds it
        return module.get("predict"), {**model.weights, **model.model_state}, model.name
    if args.weights is not None:
        raise DlError(f"--weights needs a model: {args.file} has no model block (or --fn is not predict)")
    if args.fn == "train_step" and "model" in module.attrs:
        from compiler.analysis.stats import with_train_step

        module, _ = with_train_step(module)          # built as training builds it
    func = pick_function(module, args.fn, args.file)
    return func, {}, func.name


def run(args: argparse.Namespace) -> int:
    """Write the export; print what it holds."""
    fmt = output_format(args)
    check_output(args.output, "--output")
    func, weights, name = function_and_weights(args)
    if fmt == "mlir":
        what = _write_mlir(func, weights, args.output)
    else:
        what = _write_onnx(func, weights, name, args.output)
    shown = [f"{p.name}: {p.type.dsl_str()}" for p in func.params if p.name not in weights]
    outs = [f"{n or f'output_{i}'}: {v.type.dsl_str()}"
            for i, (n, v) in enumerate(zip(func.output_names or [None] * len(func.outputs), func.outputs))]
    count = sum(int(w.size) for w in weights.values())
    print(f"wrote {args.output} ({what}): inputs {', '.join(shown) or 'none'}; "
          f"outputs {', '.join(outs)}; {len(weights)} {'initializers' if fmt == 'onnx' else 'constants'} "
          f"({count:,} weights)")
    return 0


def _write_onnx(func: Function, weights: dict[str, Any], name: str, path: str) -> str:
    from ..interop.onnx_export import export_function, save_onnx

    proto = export_function(func, weights, name=name)
    save_onnx(proto, path)
    return f"onnx, opset {proto.opset_import[0].version}"


def _write_mlir(func: Function, weights: dict[str, Any], path: str) -> str:
    from ..interop.mlir_export import export_mlir

    text = export_mlir(func, weights)
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise DlError(f"{path}: cannot write ({e.strerror or e})") from None
    return "mlir: func, linalg, tensor, arith, math"
