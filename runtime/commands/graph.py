"""``dlc graph FILE -o out.dot|out.svg|out.png``: the dataflow graph of a module's functions.

Ops are nodes, tensor types label the edges, parameters and outputs are
marked apart, gradient (backward) ops are filled pink and labelled
``backward of line N``, and ops are clustered by source line.  ``.dot``
is written directly; ``.svg`` and ``.png`` need Graphviz's ``dot``.
Without ``-o`` the DOT text goes to stdout.  ``--after PASS`` (and every
pass flag) shows the graph at a point of the pipeline.
"""

from __future__ import annotations

import argparse

from . import pick_function
from .pass_flags import add_pass_arguments, load_for_passes, run_passes

NAME = "graph"
HELP = "draw the dataflow graph of a .dl file or IR text (DOT, or SVG/PNG through Graphviz)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc graph``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", metavar="NAME", action="append",
                        help="draw only this function (repeatable; default: all)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write .dot/.gv, or .svg/.png through Graphviz (default: DOT to stdout)")
    parser.add_argument("--kernels", action="store_true",
                        help="cluster ops by the fused native kernel that computes them "
                             "(as runtime.compile builds it) instead of by source line")
    add_pass_arguments(parser, after=True)


def run(args: argparse.Namespace) -> int:
    """Write or print the graph."""
    from compiler.analysis.graph import to_dot, write_graph

    module = run_passes(load_for_passes(args.file, args), args)
    functions = [pick_function(module, name, args.file) for name in args.fn] if args.fn else None
    groups = None
    if args.kernels:
        from compiler.codegen.bufferize import kernel_clusters

        groups = {}
        for func in functions or module.functions:
            groups.update(kernel_clusters(func))
    text = to_dot(module, functions, groups=groups)
    if args.output:
        write_graph(text, args.output)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    return 0
