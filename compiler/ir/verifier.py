"""The verifier: the invariants every dl IR module keeps between passes.

Checked per function (all problems are collected, then raised together):

- parameters: unique, valid names (``%x``, not ``%0``), tensor types, no owner;
- each op: a known op; its operands defined before use, in this function
  (dominance in one block); each result defined once and owned by its op;
  the operand count; attributes that satisfy the op's schema and are complete
  (``normalize_attrs``); result types equal to the op's shape rule;
- types: tensor types with non-negative static dims and identifier symbols,
  within the size limit (``sizes.py``; a symbolic dim counts as 1);
  at most ``MAX_RANK`` dims; a result's symbols are among its function's
  parameters' (nothing else could give them a size at run time);
- outputs: defined in the function; ``output_names`` empty or one per output;
- ``attrs["inplace"]``: ``(output index, parameter name)`` pairs naming an
  existing output and parameter of the same type, each at most once;
- the module: unique function names.

Every finding is a :class:`~compiler.diagnostics.VerifyError` at the op's
location (the user's ``.dl`` line when the op came from the frontend, the IR
line when it was parsed from text), naming the op (``dl.matmul: ...``).
"""

from __future__ import annotations

import re
from typing import Any

from ..diagnostics import DlErrors, VerifyError
from ..ops import get_op
from ..ops.base import ShapeError, normalize_attrs
from .core import Function, Module, Op, Value
from .dims import DimExpr, bounds, free_symbols
from .printer import value_names
from .sizes import type_problem as size_problem
from .types import DType, TensorType, shape_problem

_PARAM_NAME = re.compile(r"[A-Za-z_$.\-][A-Za-z0-9_$.\-]*\Z")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*\Z")


class VerifyErrors(DlErrors, VerifyError):
    """All findings of one verification; ``except VerifyError`` catches it too."""


def verify_module(module: Module) -> None:
    """Raise :class:`VerifyErrors` listing every broken invariant in ``module``."""
    errors: list[VerifyError] = []
    seen: set[str] = set()
    for func in module.functions:
        if func.name in seen:
            errors.append(VerifyError(f"@{func.name}: duplicate function name", func.loc))
        seen.add(func.name)
        errors.extend(function_errors(func))
    if errors:
        raise VerifyErrors(errors)


def verify_function(func: Function) -> None:
    """Raise :class:`VerifyErrors` listing every broken invariant in ``func``."""
    errors = function_errors(func)
    if errors:
        raise VerifyErrors(errors)


def function_errors(func: Function) -> list[VerifyError]:
    """The findings for one function, in op order (empty when it is valid)."""
    return _FunctionVerifier(func).run()


class _FunctionVerifier:
    def __init__(self, func: Function):
        self.func = func
        self.names = value_names(func)
        self.errors: list[VerifyError] = []
        self.defined: set[Value] = set()        # values available at the current op
        self.later: set[Value] = set()          # results of ops further down
        self.malformed: set[Value] = set()      # values whose type is not a valid tensor type
        # the symbolic dims a call binds: a result's dims must be among them (or static)
        self.symbols = {s for p in func.params if isinstance(p.type, TensorType) for s in p.type.symbols}
        for op in func.ops:
            self.later.update(op.results)

    def run(self) -> list[VerifyError]:
        self.check_params()
        seen_ops: set[Op] = set()
        for op in self.func.ops:
            if op in seen_ops:
                self.op_error(op, "the op appears twice in the function")
                continue
            seen_ops.add(op)
            self.check_op(op)
        self.check_outputs()
        self.check_inplace()
        return self.errors

    # -- reporting -----------------------------------------------------------

    def func_error(self, message: str) -> None:
        self.errors.append(VerifyError(f"@{self.func.name}: {message}", self.func.loc))

    def op_error(self, op: Op, message: str) -> None:
        self.errors.append(VerifyError(f"dl.{op.name}: {message}", op.loc))

    def describe(self, v: Value) -> str:
        return self.names.get(v, "a value")

    # -- parameters and types -----------------------------------------------------

    def check_params(self) -> None:
        names: set[str] = set()
        for i, p in enumerate(self.func.params):
            label = f"%{p.name}" if p.name is not None else f"parameter {i}"
            if p.name is not None and not _PARAM_NAME.match(p.name):
                self.func_error(f"parameter name '{p.name}' is not a valid IR name "
                                "(a letter, '_', '$', '.' or '-' first)")
            if p.name in names:
                self.func_error(f"parameter {label} is defined twice")
            names.add(p.name)  # type: ignore[arg-type]
            if p.owner is not None:
                self.func_error(f"parameter {label} is the result of dl.{p.owner.name}")
            problem = type_problem(p.type)
            if problem:
                self.func_error(f"parameter {label} has {problem}")
                self.malformed.add(p)
            elif unbound := [s for s in p.type.free_symbols if s not in self.symbols]:
                self.func_error(f"parameter {label} has dim '{unbound[0]}' inside an expression, "
                                f"which no parameter of @{self.func.name} binds as a plain dim")
                self.malformed.add(p)
            self.defined.add(p)

    # -- ops -------------------------------------------------------------------------

    def check_op(self, op: Op) -> None:
        operands_ok = self.check_operands(op)
        results_ok = self.check_results(op)
        opdef = get_op(op.name)
        if opdef is None:
            self.op_error(op, f"unknown op 'dl.{op.name}'")
            return
        if operands_ok and results_ok:
            self.check_against_table(op, opdef)

    def check_operands(self, op: Op) -> bool:
        ok = True
        for i, v in enumerate(op.operands):
            if not isinstance(v, Value):
                self.op_error(op, f"operand {i} is not a value ({type(v).__name__})")
                ok = False
            elif v not in self.defined:
                ok = False
                if v in self.later:
                    self.op_error(op, f"operand {i} ({self.describe(v)}) is used before its definition")
                elif v.owner is None:
                    self.op_error(op, f"operand {i} is parameter %{v.name} of another function")
                else:
                    self.op_error(op, f"operand {i} is defined outside @{self.func.name} "
                                      f"(by dl.{v.owner.name} at {v.owner.loc})")
            elif v in self.malformed:
                ok = False      # reported where it is defined
        return ok

    def check_results(self, op: Op) -> bool:
        ok = True
        # a dim an operand already brought in unbound is reported there, not at every use
        inherited = {s for v in op.operands
                     if isinstance(v, Value) and v in self.malformed and isinstance(v.type, TensorType)
                     for s in v.type.free_symbols}
        for i, r in enumerate(op.results):
            name = self.describe(r)
            if r.owner is not op or r.index != i:
                self.op_error(op, f"result {i} ({name}) records a different defining op or index")
                ok = False
            if r in self.defined:
                self.op_error(op, f"result {i} ({name}) is defined twice")
                ok = False
            problem = type_problem(r.type)
            if problem:
                self.op_error(op, f"result {i} ({name}) has {problem}")
                self.malformed.add(r)
                ok = False
            elif unbound := [s for s in r.type.free_symbols if s not in self.symbols]:
                if not set(unbound) <= inherited:
                    self.op_error(op, f"result {i} ({name}) has dim '{unbound[0]}', which no "
                                      f"parameter of @{self.func.name} binds")
                self.malformed.add(r)
                ok = False
            self.defined.add(r)
            self.later.discard(r)
        return ok

    def check_against_table(self, op: Op, opdef: Any) -> None:
        """Arity, attribute schema and the shape rule, as the builder checks them."""
        n, expected = len(op.operands), len(opdef.operands)
        if (opdef.variadic and n < expected) or (not opdef.variadic and n != expected):
            want = f"at least {expected}" if opdef.variadic else str(expected)
            self.op_error(op, f"takes {want} operand(s), got {n}")
            return
        try:
            full = normalize_attrs(opdef, op.attrs)
        except ShapeError as e:
            self.op_error(op, str(e))
            return
        missing = [k for k in full if k not in op.attrs]
        if missing:
            self.op_error(op, f"attribute '{missing[0]}' is missing (the builder fills defaults)")
            return
        try:
            types = opdef.result_types(*(v.type for v in op.operands), **full)
        except ShapeError as e:
            self.op_error(op, str(e))
            return
        actual = [r.type for r in op.results]
        if len(types) != len(actual):
            self.op_error(op, f"has {len(actual)} result(s), the op defines {len(types)}")
            return
        for i, (want, got) in enumerate(zip(types, actual)):
            if want != got:
                self.op_error(op, f"result {i} has type {got}, but the shape rule gives {want}")

    # -- outputs ---------------------------------------------------------------------

    def check_outputs(self) -> None:
        for i, v in enumerate(self.func.outputs):
            if not isinstance(v, Value) or v not in self.defined:
                self.func_error(f"output {i} is not defined in the function")
        names = self.func.output_names
        if names and len(names) != len(self.func.outputs):
            self.func_error(f"{len(names)} output name(s) for {len(self.func.outputs)} output(s)")
        for name in names:
            if name is not None and not isinstance(name, str):
                self.func_error(f"output name {name!r} is not a string")

    def check_inplace(self) -> None:
        pairs = self.func.attrs.get("inplace")
        if pairs is None:
            return
        if not isinstance(pairs, (tuple, list)) or not all(_is_pair(p) for p in pairs):
            self.func_error("attribute 'inplace' must be a list of [output index, parameter name] pairs")
            return
        params = {p.name: p for p in self.func.params}
        outputs, used = set(), set()
        for index, name in pairs:
            where = f"inplace pair [{index}, \"{name}\"]"
            if not 0 <= index < len(self.func.outputs):
                self.func_error(f"{where}: there is no output {index}")
                continue
            if name not in params:
                self.func_error(f"{where}: there is no parameter %{name}")
                continue
            out_type, param_type = self.func.outputs[index].type, params[name].type
            if out_type != param_type:
                self.func_error(f"{where}: output {index} has type {out_type}, "
                                f"but %{name} has type {param_type}")
            if index in outputs:
                self.func_error(f"{where}: output {index} is written in place twice")
            if name in used:
                self.func_error(f"{where}: %{name} is overwritten twice")
            outputs.add(index)
            used.add(name)


def _is_pair(p: Any) -> bool:
    return (isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], int)
            and not isinstance(p[0], bool) and isinstance(p[1], str))


def type_problem(t: Any) -> str | None:
    """Why ``t`` is not a well-formed tensor type, or None if it is one."""
    if not isinstance(t, TensorType):
        return f"a non-tensor type {t!r}"
    if not isinstance(t.dtype, DType):
        return f"an invalid element type {t.dtype!r}"
    for d in t.shape:
        if isinstance(d, bool) or not isinstance(d, (int, str, DimExpr)):
            return f"an invalid dim {d!r} in {t}"
        if isinstance(d, DimExpr) and bounds(d)[0] < 0:
            return (f"dim {d} in {t}, which is negative for some sizes of "
                    f"{', '.join(free_symbols(d))} (clamp it: max({d},0))")
        if isinstance(d, int) and d < 0:
            return f"a negative dim {d} in {t}"
        if isinstance(d, str) and not _SYMBOL.match(d):
            return f"an invalid symbol name '{d}' in {t}"
    problem = shape_problem(t.shape)
    if problem is not None:
        return f"a malformed type {t}: {problem}"
    too_large = size_problem(t)
    if too_large is not None:
        return f"type {t.dsl_str()}, which {too_large}"
    return None

