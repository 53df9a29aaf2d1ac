"""The dataflow graph of dl functions, in Graphviz DOT.

One cluster per function; inside it:

- parameters as ellipses -- a model's trained parameters (weights) gold,
  other arguments (inputs, targets, optimizer state) light blue;
- ops as boxes labelled ``dl.<name>`` with their source line; constants as
  small notes showing their value; **backward ops** (gradient code, whose
  location is marked backward) filled pink, dashed, labelled
  ``backward of line N``;
- outputs as green double octagons with their names;
- edges from producer to user, labelled with the tensor type
  (``f32[N, 512]``);
- ops grouped in clusters: by ``groups`` when given (e.g. fused kernels:
  op -> group name), otherwise by source line (forward and backward code of
  a line apart).

:func:`write_graph` writes ``.dot`` itself and renders ``.svg``/``.png``
through Graphviz's ``dot`` program when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..diagnostics import DlError
from ..ir.core import Function, Module, Op, Value

PARAM_STYLE = 'shape=ellipse, style=filled, fillcolor="lightblue"'
WEIGHT_STYLE = 'shape=ellipse, style=filled, fillcolor="gold"'
OP_STYLE = 'shape=box, style="rounded,filled", fillcolor="white"'
BACKWARD_STYLE = 'shape=box, style="rounded,filled,dashed", fillcolor="mistyrose", color="firebrick"'
CONST_STYLE = 'shape=note, style=filled, fillcolor="whitesmoke", fontsize=10'
OUTPUT_STYLE = 'shape=doubleoctagon, style=filled, fillcolor="palegreen"'

RENDERED_FORMATS = {".svg": "svg", ".png": "png"}


def to_dot(module: Module, functions: Iterable[Function] | None = None,
           groups: dict[Op, str] | None = None) -> str:
    """The DOT text of ``functions`` (default: all of ``module``'s)."""
    weights = _weight_names(module)
    lines = ["digraph dl {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
             '  edge [fontname="Helvetica", fontsize=9];']
    chosen = list(functions) if functions is not None else list(module.functions)
    for i, func in enumerate(chosen):
        lines += _function_lines(func, f"f{i}", weights, groups)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _weight_names(module: Module) -> set[str]:
    info = module.attrs.get("model")
    if not isinstance(info, dict):
        return set()
    return {str(p.get("name")) for p in info.get("params", []) if isinstance(p, dict)}


def _function_lines(func: Function, prefix: str, weights: set[str],
                    groups: dict[Op, str] | None) -> list[str]:
    ids: dict[Value, str] = {}
    lines = [f"  subgraph cluster_{prefix} {{", f"    label={quote('@' + func.name)};",
             '    style="rounded"; color="gray40";']
    for i, p in enumerate(func.params):
        ids[p] = f"{prefix}_p{i}"
        style = WEIGHT_STYLE if p.name in weights else PARAM_STYLE
        label = f"{p.name}\\n{p.type.dsl_str()}"
        lines.append(f"    {ids[p]} [label={quote(label, escaped=True)}, {style}];")
    for cluster, ops in _clusters(func, groups):
        inner = [_op_node(op, f"{prefix}_op{j}", ids) for j, op in ops]
        if cluster is None:
            lines += [f"    {n}" for n in inner]
            continue
        key, label = cluster
        lines.append(f"    subgraph cluster_{prefix}_{key} {{")
        lines.append(f"      label={quote(label)}; style=dotted; color=\"gray60\";")
        lines += [f"      {n}" for n in inner]
        lines.append("    }")
    for op in func.ops:
        for v in op.operands:
            if v in ids:
                lines.append(f"    {ids[v]} -> {ids[op.results[0]]} "
                             f"[label={quote(v.type.dsl_str())}];")
    for k, v in enumerate(func.outputs):
        out_id = f"{prefix}_out{k}"
        name = func.output_names[k] if k < len(func.output_names) and func.output_names[k] else f"output {k}"
        lines.append(f"    {out_id} [label={quote(name)}, {OUTPUT_STYLE}];")
        if v in ids:
            lines.append(f"    {ids[v]} -> {out_id} [label={quote(v.type.dsl_str())}];")
    lines.append("  }")
    return lines


def _op_node(op: Op, node_id: str, ids: dict[Value, str]) -> str:
    for r in op.results:
        ids[r] = node_id
    if op.name == "constant":
        label = f"{_constant_text(op)}\\n{op.results[0].type.dsl_str()}"
        return f"{node_id} [label={quote(label, escaped=True)}, {CONST_STYLE}];"
    where = f"line {op.loc.line}" if op.loc.line > 0 else ""
    if op.loc.backward:
        label = f"dl.{op.name}\\nbackward of {where or 'an unknown line'}"
        return f"{node_id} [label={quote(label, escaped=True)}, {BACKWARD_STYLE}, class=\"backward\"];"
    label = f"dl.{op.name}" + (f"\\n{where}" if where else "")
    return f"{node_id} [label={quote(label, escaped=True)}, {OP_STYLE}];"


def _constant_text(op: Op) -> str:
    value = np.asarray(op.attrs["value"])
    if value.ndim == 0:
        return f"{value.item():g}" if value.dtype.kind == "f" else str(value.item())
    return f"dense {list(value.shape)}"


def _clusters(func: Function, groups: dict[Op, str] | None
              ) -> list[tuple[tuple[str, str] | None, list[tuple[int, Op]]]]:
    """Ops in clusters, in order of first appearance: ``((key, label) | None, [(index, op)])``."""
    order: list[tuple[str, str] | None] = []
    members: dict[tuple[str, str] | None, list[tuple[int, Op]]] = {}
    for j, op in enumerate(func.ops):
        cluster = _cluster_of(op, groups)
        if cluster not in members:
            order.append(cluster)
            members[cluster] = []
        members[cluster].append((j, op))
    return [(c, members[c]) for c in order]


def _cluster_of(op: Op, groups: dict[Op, str] | None) -> tuple[str, str] | None:
    if groups is not None:
        name = groups.get(op)
        return None if name is None else (_identifier(name), name)
    if op.loc.line <= 0:
        return None
    if op.loc.backward:
        return (f"bwd_L{op.loc.line}", f"backward of {op.loc.file}:{op.loc.line}")
    return (f"L{op.loc.line}", f"{op.loc.file}:{op.loc.line}")


def _identifier(text: str) -> str:
    return "g_" + "".join(c if c.isalnum() else "_" for c in text)


def quote(text: str, escaped: bool = False) -> str:
    """A DOT double-quoted string; ``escaped`` keeps ``\\n`` line breaks already in ``text``."""
    body = text if escaped else text.replace("\\", "\\\\")
    return '"' + body.replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# Writing files


class GraphOutputError(DlError):
    """The graph cannot be written in the requested format."""


def write_graph(dot_text: str, path: str | Path) -> None:
    """Write DOT to ``path``: ``.dot``/``.gv`` as text, ``.svg``/``.png`` through Graphviz ``dot``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".dot", ".gv"):
        _write_text(path, dot_text)
        return
    fmt = RENDERED_FORMATS.get(suffix)
    if fmt is None:
        raise GraphOutputError(f"cannot write a graph as '{suffix or path.name}': "
                               "use .dot, .gv, .svg or .png")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphOutputError(
            f"writing {path.name} needs Graphviz's 'dot' program, which is not installed",
            notes=["install it (Debian/Ubuntu: apt install graphviz), "
                   f"or write DOT text instead: -o {path.with_suffix('.dot')}"])
    try:
        done = subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=dot_text.encode(),
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GraphOutputError(f"running Graphviz 'dot' failed: {e}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise GraphOutputError(f"Graphviz 'dot' could not render {path}: {message}")


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise GraphOutputError(f"cannot write {path}: {e.strerror or e}") from None
