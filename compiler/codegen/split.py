"""A module's kernels cut into parts that LLVM optimizes in parallel, then linked back.

LLVM's O3 pipeline is most of a cold compile (the MNIST training step: ~120 of
~190 ms of LLVM time on Zen 5), and it optimizes one function after another on
one core.  Kernels are ``noinline`` functions of their own (``llvm.py``), so
nothing O3 does crosses from one kernel group into another: :func:`split_text`
deals the kernel groups into parts of about equal size, each a module of its
own (its text), which ``driver.optimize`` parses into an LLVM context of its
own and optimizes on a thread of its own, then links back into one module
for instruction selection (one object, as before).

A part holds:

* its kernel groups: a kernel ``<entry>.k<i>`` and every function named after
  it (``.part``, ``.part.task``, ``.part.store``, ``.part.shallow``);
* part 0 also holds everything that is not a kernel: entry points, the
  thread pool, exported controls, and every global variable;
* a private copy of each internal function the part calls that is not a
  kernel (the thread pool's ``dlc.pool.run``, vector math): the same code,
  optimized where it is used, as in the whole module;
* declarations of what it uses from other parts.  Globals, and kernels called
  from another part, become ``hidden`` (external, yet local to the one linked
  module) so the parts can name them; an internal *constant* is copied instead.

Nothing is reordered inside a function and dlc's IR carries no fast-math
flags, so the code computes exactly what the whole module's does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llvmlite import ir

_KERNEL = re.compile(r"(dlc_[0-9A-Za-z_]+\.k[0-9]+)(?:\.|$)")   # names from llvm._ProgramEmitter
_REFERENCE = re.compile(r'@("(?:[^"\\]|\\.)*"|[-a-zA-Z$._][-a-zA-Z$._0-9]*)')
MIN_PART_WEIGHT = 400    # instructions a part must have to be worth a thread of its own


@dataclass(frozen=True)
class Split:
    """The parts' texts and, for the timer's report, their optimized instruction counts."""

    texts: list[str]
    weights: list[int]


def kernel_group(name: str) -> str | None:
    """The kernel ``name`` belongs to (``dlc_f.k3`` for ``dlc_f.k3.part.store``), or None."""
    m = _KERNEL.match(name)
    return m.group(1) if m else None


def _weight(fn: ir.Function) -> int:
    """What O3 spends on ``fn``, roughly: its instructions (an ``optnone`` function ~none)."""
    if "optnone" in fn.attributes:
        return 1
    return sum(len(block.instructions) for block in fn.blocks)


def _name_of(token: str) -> str:
    return token[1:-1] if token.startswith('"') else token


def split_text(mod: ir.Module, parts: int) -> Split | None:
    """``mod`` as the texts of up to ``parts`` modules to optimize apart and link (part 0
    first), or None when it is not worth cutting: fewer than two parts would get at least
    ``MIN_PART_WEIGHT`` instructions of kernels."""
    functions = [g for g in mod.globals.values() if isinstance(g, ir.Function)]
    defined = [f for f in functions if f.blocks]
    groups: dict[str, list[ir.Function]] = {}
    rest: list[ir.Function] = []
    for fn in defined:
        group = kernel_group(fn.name)
        (groups.setdefault(group, []) if group is not None else rest).append(fn)
    weights = {g: sum(_weight(f) for f in fns) for g, fns in groups.items()}
    total = sum(weights.values())
    parts = max(1, min(parts, len(groups), total // MIN_PART_WEIGHT))
    if parts < 2:
        return None
    # the heaviest group first, each into the lightest part (part 0 starts with the rest)
    load = [sum(_weight(f) for f in rest)] + [0] * (parts - 1)
    owner: dict[str, int] = {f.name: 0 for f in rest}
    for group in sorted(groups, key=lambda g: (-weights[g], g)):
        p = min(range(parts), key=lambda q: (load[q], q))
        load[p] += weights[group]
        for fn in groups[group]:
            owner[fn.name] = p
    text = {f.name: str(f) for f in defined}
    uses = {name: {_name_of(t) for t in _REFERENCE.findall(body)} for name, body in text.items()}
    by_name = {g.name: g for g in mod.globals.values()}

    # what each part defines: its own functions and copies of the internal non-kernel
    # functions they reach; what it takes from another part (declared there, exported here)
    owned: list[list[str]] = [[] for _ in range(parts)]
    for fn in defined:
        owned[owner[fn.name]].append(fn.name)
    exported: set[str] = set()
    bodies: list[set[str]] = []
    for p in range(parts):
        mine, todo = set(owned[p]), list(owned[p])
        while todo:
            for name in uses[todo.pop()]:
                g = by_name.get(name)
                if name in mine or g is None:
                    continue
                if isinstance(g, ir.Function):
                    if not g.blocks:
                        continue                         # an external declaration already
                    if owner[name] != p and (kernel_group(name) is not None or g.linkage != "internal"):
                        exported.add(name)               # another part's kernel, or an entry point
                        continue
                    mine.add(name)                       # a private copy of a helper
                    todo.append(name)
                elif isinstance(g, ir.GlobalVariable):
                    if p != 0 and not (g.global_constant and g.linkage in ("internal", "private")):
                        exported.add(name)               # one variable for all parts: part 0's
                    elif p != 0:
                        mine.add(name)                   # a private copy of a constant
        bodies.append(mine)

    header = [f'; ModuleID = "{mod.name}.part"', f'target triple = "{mod.triple}"',
              f'target datalayout = "{mod.data_layout}"', ""]
    header += [t.get_declaration() for t in mod.get_identified_types().values()]
    metadata = mod._get_metadata_lines()
    texts = []
    for p in range(parts):
        lines = list(header)
        wanted = set().union(*(uses[name] for name in bodies[p] if name in uses))
        for g in mod.globals.values():
            name = g.name
            if isinstance(g, ir.GlobalVariable) and (p == 0 or name in bodies[p]):
                lines.append(_exported_text(g) if p == 0 and name in exported else str(g))
            elif isinstance(g, ir.Function) and name in bodies[p]:
                lines.append(_exported_text(g) if name in exported else text[name])
            elif name in wanted:
                lines.append(_declaration(g))
        texts.append("\n".join(lines + metadata) + "\n")
    return Split(texts, load)


def _exported_text(g: ir.GlobalValue) -> str:
    """``g``'s definition, an internal one made hidden external so other parts may name it."""
    if g.linkage not in ("internal", "private"):
        return str(g)
    linkage = g.linkage
    g.linkage = ""
    try:
        text = str(g)
    finally:
        g.linkage = linkage
    if isinstance(g, ir.Function):
        return text.replace("define ", "define hidden ", 1)
    return text.replace(" = ", " = hidden ", 1)


def _declaration(g: ir.GlobalValue) -> str:
    """A declaration of ``g`` for a part that uses it and does not define it."""
    ref = g.get_reference()
    hidden = " hidden" if g.linkage in ("internal", "private") else ""
    if isinstance(g, ir.GlobalVariable):
        kind = "constant" if g.global_constant else "global"
        return f"{ref} = external{hidden} {kind} {g.value_type}"
    fn = g
    if not fn.blocks:
        return str(fn).rstrip("\n")         # an external function: its declaration as written
    cconv = f" {fn.calling_convention}" if fn.calling_convention else ""
    args = ", ".join(str(t) for t in fn.ftype.args) + (", ..." if fn.ftype.var_arg else "")
    return f"declare{hidden}{cconv} {fn.ftype.return_type} {ref}({args})"
