"""Analyses of dl IR that run nothing: FLOP and memory statistics, dataflow graphs.

- :mod:`.flops` -- per-op cost (FLOPs, transcendental calls) as polynomials in
  the symbolic dims (:class:`~.flops.Poly`);
- :mod:`.stats` -- per-function op counts, FLOPs and bytes, and model-level
  figures (parameters, gradients, optimizer state, a training step);
- :mod:`.graph` -- the dataflow graph of functions in Graphviz DOT.
"""

from .flops import Cost, Poly, function_cost, op_cost
from .graph import to_dot, write_graph
from .stats import FunctionStats, ModelStats, function_stats, model_stats

__all__ = ["Cost", "Poly", "function_cost", "op_cost", "to_dot", "write_graph",
           "FunctionStats", "ModelStats", "function_stats", "model_stats"]
