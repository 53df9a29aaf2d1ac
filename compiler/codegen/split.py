"""A module's kernels cut into parts that LLVM optimizes and compiles in parallel.

LLVM is most of a cold compile (the MNIST training step: ~120 ms of O3 and
~70 ms of instruction selection and the rest of the backend, Zen 5), and it
works on one function after another on one core.  Kernels are ``noinline``
functions of their own (``llvm.py``), so nothing LLVM does crosses from one
kernel group into another: :func:`split` deals the kernel groups into parts of
about equal size, each a module of its own (:meth:`Parts.text`), which
``driver.machine_code`` parses into an LLVM context of its own, optimizes and
compiles to an object on a thread of its own.  The runtime loads a module's
objects into one engine (``runtime/native.py``), which links them.

A part holds:

* its kernel groups: a kernel ``<entry>.k<i>`` and every function named after
  it (``.part``, ``.part.task``, ``.part.store``, ``.part.shallow``);
* part 0 also holds everything that is not a kernel: entry points, the
  thread pool, exported controls, and every global variable;
* a private copy of each internal function the part calls that is not a
  kernel (the thread pool's ``dlc.pool.run``, vector math): the same code,
  optimized where it is used, as in the whole module;
* declarations of what it uses from other parts.  Globals used by other
  parts, and the kernels' entry functions (``<entry>.k<i>``) of every part but
  0, become external (``dso_local`` where defined) so the parts can name them;
  an internal *constant* is copied instead.  Not ``hidden``: LLVM reaches a
  hidden symbol with a 32-bit PC-relative offset, and the objects of one
  module may be loaded more than 2 GiB apart; a default-visibility
  declaration is reached through a GOT entry or call stub that the loader
  makes in the object that uses it.

Nothing is reordered inside a function and dlc's IR carries no fast-math
flags, so the code computes exactly what the whole module's does.
"""

from __future__ import annotations

import re

from llvmlite import ir

_KERNEL = re.compile(r"(dlc_[0-9A-Za-z_]+\.k[0-9]+)(?:\.|$)")   # names from llvm._ProgramEmitter
_REFERENCE = re.compile(r'@("(?:[^"\\]|\\.)*"|[-a-zA-Z$._][-a-zA-Z$._0-9]*)')
_LOCAL = re.compile(r"^(define |@\S+ = )(?:internal|private) ")      # as llvmlite prints them
MIN_PART_WEIGHT = 400    # instructions a part must have to be worth a thread of its own


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


class Parts:
    """``mod``'s functions dealt into parts: :func:`split` decides who owns what from the
    functions' sizes alone; :meth:`text` prints a part when it is asked for, the last
    parts first, so the caller can start optimizing them while it prints part 0.

    A part other than 0 always exports its kernels' entry functions (``<entry>.k<i>``, what
    part 0's entry points call) and declares the globals it uses; part 0, printed last,
    defines the globals (the ones other parts use made external) and must find everything
    it takes from another part among those exports, else :meth:`text` says None (then
    optimize the whole module instead)."""

    def __init__(self, mod: ir.Module, owner: dict[str, int], weights: list[int]):
        self.mod = mod
        self.owner = owner
        self.weights = weights
        self._by_name = {g.name: g for g in mod.globals.values()}
        self._text: dict[str, str] = {}
        self._uses: dict[str, set[str]] = {}
        self._globals_used: set[str] = set()       # by parts printed so far (other than 0)
        header = [f'; ModuleID = "{mod.name}.part"', f'target triple = "{mod.triple}"',
                  f'target datalayout = "{mod.data_layout}"', ""]
        self._header = header + [t.get_declaration() for t in mod.get_identified_types().values()]
        self._metadata = mod._get_metadata_lines()

    def __len__(self) -> int:
        return len(self.weights)

    def _function(self, name: str) -> str:
        text = self._text.get(name)
        if text is None:
            text = self._text[name] = str(self._by_name[name])
            self._uses[name] = {_name_of(t) for t in _REFERENCE.findall(text)}
        return text

    def text(self, p: int) -> str | None:
        """Part ``p``'s module text (None for part 0 when it needs what no part exports)."""
        owned = [name for name, q in self.owner.items() if q == p]
        body, todo = set(owned), list(owned)
        wanted: set[str] = set()
        exports = {name for name in owned if p != 0 and kernel_group(name) == name}
        while todo:
            name = todo.pop()
            self._function(name)
            for used in self._uses[name]:
                g = self._by_name.get(used)
                if used in body or g is None:
                    continue
                wanted.add(used)
                if isinstance(g, ir.Function):
                    group = kernel_group(used)
                    if not g.blocks or (group is None and g.linkage != "internal"):
                        continue                         # external: declared, linked by name
                    if group is None:
                        body.add(used)                   # a private copy of a helper
                        todo.append(used)
                    elif group != used or self.owner[used] == 0:
                        return None                      # no part exports what this one needs
                elif isinstance(g, ir.GlobalVariable) and p != 0:
                    if g.global_constant and g.linkage in ("internal", "private"):
                        body.add(used)                   # a private copy of a constant
                    else:
                        self._globals_used.add(used)     # one variable for all parts: part 0's
        lines = list(self._header)
        for g in self.mod.globals.values():
            name = g.name
            if isinstance(g, ir.GlobalVariable) and (p == 0 or name in body):
                lines.append(_exported(str(g)) if p == 0 and name in self._globals_used else str(g))
            elif isinstance(g, ir.Function) and name in body:
                text = self._function(name)
                lines.append(_exported(text) if name in exports else text)
            elif name in wanted:
                lines.append(_declaration(g))
        return "\n".join(lines + self._metadata) + "\n"


def split(mod: ir.Module, parts: int, head_start: float = 0.0) -> Parts | None:
    """``mod``'s kernel groups dealt into up to ``parts`` parts of about equal size (the
    heaviest first, each into the lightest part; part 0 starts with everything that is not
    a kernel, and with ``head_start`` times the kernels' total: the work its caller does
    before optimizing it), or None when fewer than two parts would get ``MIN_PART_WEIGHT``
    instructions."""
    groups: dict[str, list[ir.Function]] = {}
    rest: list[ir.Function] = []
    for fn in (g for g in mod.globals.values() if isinstance(g, ir.Function) and g.blocks):
        group = kernel_group(fn.name)
        (groups.setdefault(group, []) if group is not None else rest).append(fn)
    weights = {g: sum(_weight(f) for f in fns) for g, fns in groups.items()}
    total = sum(weights.values())
    parts = max(1, min(parts, len(groups), total // MIN_PART_WEIGHT))
    if parts < 2:
        return None
    load = [sum(_weight(f) for f in rest) + int(head_start * total)] + [0] * (parts - 1)
    owner: dict[str, int] = {f.name: 0 for f in rest}
    for group in sorted(groups, key=lambda g: (-weights[g], g)):
        p = min(range(parts), key=lambda q: (load[q], q))
        load[p] += weights[group]
        for fn in groups[group]:
            owner[fn.name] = p
    return Parts(mod, owner, load)


def _exported(text: str) -> str:
    """A definition's text (a function's, or a global's) with internal or private linkage
    made external, so other parts may name it (``dso_local``: its own part reaches it
    directly); other linkages as they are."""
    return _LOCAL.sub(r"\1dso_local ", text, count=1)


def _declaration(g: ir.GlobalValue) -> str:
    """A declaration of ``g`` for a part that uses it and does not define it."""
    ref = g.get_reference()
    if isinstance(g, ir.GlobalVariable):
        kind = "constant" if g.global_constant else "global"
        return f"{ref} = external {kind} {g.value_type}"
    fn = g
    if not fn.blocks:
        return str(fn).rstrip("\n")         # an external function: its declaration as written
    cconv = f" {fn.calling_convention}" if fn.calling_convention else ""
    args = ", ".join(str(t) for t in fn.ftype.args) + (", ..." if fn.ftype.var_arg else "")
    return f"declare{cconv} {fn.ftype.return_type} {ref}({args}) nonlazybind"     # driver.calls_through_got
