"""Lower the typed AST of a whole ``.dl`` file to a dl IR :class:`~compiler.ir.core.Module`.

The top floor of the lowering.  Functions are lowered callees first (a call
may come before the callee's definition), each once; gradient functions are
built by the autodiff pass; the model block is lowered by
:mod:`frontend_dsl.model`.  Expressions and statements are
:mod:`frontend_dsl.exprs`'s job, names and error gathering
:mod:`frontend_dsl.scope`'s, compile-time constants
:mod:`frontend_dsl.constants`'s.

Errors are collected, not raised one at a time: each function, gradient
definition and model statement is lowered separately, and everything that
went wrong is raised together as one :class:`DlErrors`.
"""

from __future__ import annotations

from typing import Any

from compiler.diagnostics import DlError, DlTypeError, Location, NameResolutionError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module, Value
from compiler.ir.types import TensorType
from compiler.passes.autodiff import grad

from . import ast
from .blocks import block_reason
from .constants import resolve_type
from .exprs import GRAD_TRANSFORMS, Body
from .model import MODEL_FUNCTIONS, ModelLowering
from .scope import Binding, Poisoned, Scope, collect_errors, did_you_mean, nesting_limit, raise_all


def lower_program(program: ast.Program, *, defer_grads: bool = False) -> Module:
    """Lower a parsed program to a dl IR module.

    With ``defer_grads`` each gradient function is left as a placeholder
    (same parameters, no body, ``attrs["grad_of"]``) for the ``autodiff``
    pass to build, so the pass pipeline can show it working.

    Raises :class:`DlErrors` holding every independent error found.
    """
    return _Lowerer(program).run(defer_grads=defer_grads)


# ---------------------------------------------------------------------------
# The module-level lowerer


class _Lowerer:
    """Lowers a whole program; functions are lowered on demand (a call may come first)."""

    def __init__(self, program: ast.Program):
        self.program = program
        self.module = Module()
        self.errors: list[DlError] = []
        self.defs: dict[str, ast.FnDef | ast.GradDef] = {}
        self.done: dict[str, Function | None] = {}   # None: lowering failed (reported)
        self.active: list[str] = []                  # call stack, for recursion
        self.order: dict[str, tuple[int, int]] = {}  # function name -> source position
        self.grad_specs: dict[str, dict[str, Any]] = {}
        self.model: ast.ModelDef | None = None
        self.blocks: dict[str, str] = {}             # block function -> why it is one

    def run(self, *, defer_grads: bool) -> Module:
        self._collect_definitions()
        self._find_blocks()
        for name in self._callees_first():
            if name in self.blocks:
                continue                             # lowered at each call, in the model
            try:
                self.function(name)
            except Poisoned:
                pass  # its errors are collected
        if self.model is not None:
            self._guarded(self._model, self.model)
        raise_all(self.errors)
        self.module.functions.sort(key=lambda f: self.order.get(f.name, (1 << 30, 0)))
        if defer_grads:
            self._defer_grads()
        return self.module

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Poisoned:
            return None
        except DlError as e:
            collect_errors(self.errors, e)
            return None

    def _collect_definitions(self) -> None:
        """Top-level names: functions, gradient functions and at most one model."""
        seen: dict[str, Location] = {}

        def claim(name: str, span: Location, what: str) -> bool:
            if name in seen:
                self.errors.append(NameResolutionError(
                    f"{what} '{name}' is already defined", span,
                    notes=[f"previous definition at {seen[name]}"]))
                return False
            seen[name] = span
            return True

        for item in self.program.items:
            if isinstance(item, ast.ModelDef):
                if self.model is not None:
                    self.errors.append(NameResolutionError(
                        "only one model per file is supported", item.name.span,
                        notes=[f"the first model is at {self.model.name.span}"]))
                    continue
                self.model = item
                for fname in MODEL_FUNCTIONS:
                    self.order[fname] = (item.span.line, item.span.col)
                claim(item.name.id, item.name.span, "model")
                continue
            if claim(item.name.id, item.name.span, "function"):
                self.defs[item.name.id] = item
                self.order[item.name.id] = (item.span.line, item.span.col)
        # the model generates predict, loss and evaluate: user functions may not take those names
        if self.model is not None:
            for fname in MODEL_FUNCTIONS:
                item = self.defs.get(fname)
                if item is not None:
                    self.errors.append(NameResolutionError(
                        f"function '{fname}' clashes with the function the model generates",
                        item.name.span, notes=[f"model '{self.model.name.id}' at {self.model.name.span} "
                                               "defines predict, loss and evaluate"]))
                    del self.defs[fname]

    def _find_blocks(self) -> None:
        """The functions that create parameters when called (:mod:`frontend_dsl.blocks`): those
        calling layers, taking compile-time parameters, or calling such functions."""
        changed = True
        while changed:
            changed = False
            for name, item in self.defs.items():
                if name in self.blocks or not isinstance(item, ast.FnDef):
                    continue
                reason = block_reason(item, lambda f: f in self.blocks, self.is_function)
                if reason is not None:
                    self.blocks[name] = reason
                    changed = True

    def block(self, name: str) -> tuple[ast.FnDef, str] | None:
        if name not in self.blocks:
            return None
        item = self.defs[name]
        assert isinstance(item, ast.FnDef)
        return item, self.blocks[name]

    # -- functions ---------------------------------------------------------

    def _callees_first(self) -> list[str]:
        """The functions in source order, except that each comes after the functions it
        calls or differentiates: lowering one then finds its callees done and never
        recurses, however long a chain of calls is.  Functions on a recursive cycle come
        last, in source order, for :meth:`function` to report the cycle."""
        order: list[str] = []
        seen: set[str] = set()
        cyclic: set[str] = set()
        for root in self.defs:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(self._callees(root)))]
            depth = {root: 0}                   # the functions on the stack, by position
            while stack:
                name, callees = stack[-1]
                callee = None
                for c in callees:
                    if c in depth:              # a cycle: everything on the stack from c
                        cyclic.update(n for n, _ in stack[depth[c]:])
                    elif c not in seen:
                        callee = c
                        break
                if callee is None:
                    stack.pop()
                    del depth[name]
                    if name not in cyclic:
                        order.append(name)
                else:
                    seen.add(callee)
                    depth[callee] = len(stack)
                    stack.append((callee, iter(self._callees(callee))))
        return order + [name for name in self.defs if name in cyclic]

    def _callees(self, name: str) -> list[str]:
        """The functions ``name`` calls, differentiates or names (``activation=f``), in no
        particular order."""
        item = self.defs[name]
        if isinstance(item, ast.GradDef):
            target = item.transform.args[0] if item.transform.args else None
            return [target.id] if isinstance(target, ast.Name) and target.id in self.defs else []
        out: list[str] = []
        for node in ast.walk(item.body):
            if isinstance(node, ast.Call) and node.func in self.defs:
                out.append(node.func)
            elif isinstance(node, ast.Name) and node.id in self.defs:
                out.append(node.id)
        return out

    def is_function(self, name: str) -> bool:
        return name in self.defs

    def names(self) -> list[str]:
        return list(self.defs)

    def function(self, name: str, call_span: Location | None = None) -> Function:
        """The lowered function ``name`` (lowering it now if needed).

        Raises :class:`Poisoned` if it failed (its errors are already
        collected) and a :class:`NameResolutionError` for a recursive call.
        """
        if name in self.blocks:
            raise DlTypeError(f"'{name}' is a block ({self.blocks[name]}): it is expanded at each "
                              f"call, as {name}(...), inside a model, and is no function of its own",
                              call_span)
        if name in self.done:
            result = self.done[name]
            if result is None:
                raise Poisoned()
            return result
        if name in self.active:
            chain = " -> ".join([*self.active[self.active.index(name):], name])
            raise NameResolutionError(f"recursive call to '{name}' ({chain}); recursion is not supported",
                                      call_span)
        self.active.append(name)
        try:
            item = self.defs[name]
            if isinstance(item, ast.FnDef):
                result = self._guarded(self._fn, item)
            else:
                result = self._guarded(self._grad, item)
        finally:
            self.active.pop()
        self.done[name] = result
        if result is None:
            raise Poisoned()
        return result

    def _fn(self, fn: ast.FnDef) -> Function:
        errors: list[DlError] = []
        params, broken = self._params(fn.params, errors)
        symbols = {s for _, t in params for s in t.symbols}
        returns = self._return_types(fn, symbols, errors)

        # Lower the body even after a signature error, so its own errors show too.
        func, b = new_function(fn.name.id, params, loc=fn.name.span)
        scope = Scope()
        for value in func.params:
            scope.names[value.name or ""] = Binding(value, fn.name.span)
        scope.poison(broken)
        body = Body(self, b, scope, symbols)
        failed = False
        returned: ast.Return | None = None
        for stmt in fn.body:
            if returned is not None:
                errors.append(NameResolutionError("unreachable statement after 'return'", stmt.span))
                break
            try:
                with nesting_limit(stmt.span):
                    if isinstance(stmt, ast.Let):
                        body.let(stmt)
                    else:
                        returned = stmt
                        func.outputs, func.output_names = body.returns(stmt, returns, fn.name.id)
            except Poisoned:
                failed = True
                if isinstance(stmt, ast.Let):
                    scope.poison(stmt.names)
            except DlError as e:
                collect_errors(errors, e)
                if isinstance(stmt, ast.Let):
                    scope.poison(stmt.names)
        if returned is None:
            errors.append(NameResolutionError(f"function '{fn.name.id}' has no 'return'", fn.name.span))
        raise_all(errors)
        if failed:
            raise Poisoned()
        self.module.add(func)
        return func

    def _return_types(self, fn: ast.FnDef, symbols: set[str],
                      errors: list[DlError]) -> list[TensorType] | None:
        """The declared return types; None when omitted or when one does not resolve."""
        if fn.returns is None:
            return None
        out: list[TensorType] = []
        for t in fn.returns:
            try:
                out.append(resolve_type(t, symbols, what="return type"))
            except DlError as e:
                collect_errors(errors, e)
        return out if len(out) == len(fn.returns) else None

    def _params(self, params: tuple[ast.Param, ...],
                errors: list[DlError]) -> tuple[list[tuple[str, TensorType]], list[ast.Name]]:
        """The parameters that resolve, and the names of those that do not."""
        out: list[tuple[str, TensorType]] = []
        broken: list[ast.Name] = []
        seen: dict[str, Location] = {}
        for p in params:
            if p.name.id in seen:
                errors.append(NameResolutionError(f"parameter '{p.name.id}' is already defined", p.name.span,
                                                  notes=[f"previous definition at {seen[p.name.id]}"]))
                continue
            seen[p.name.id] = p.name.span
            try:
                assert p.type is not None, "a function with a compile-time parameter is a block"
                out.append((p.name.id, resolve_type(p.type, None)))
            except DlError as e:
                collect_errors(errors, e)
                broken.append(p.name)
        return out, broken

    def _grad(self, g: ast.GradDef) -> Function:
        """``fn g = grad(f, wrt=[...])``: the autodiff pass builds the function."""
        call = g.transform
        if call.func not in GRAD_TRANSFORMS:
            raise NameResolutionError(
                f"'fn {g.name.id} = ...' must be grad(f, wrt=[...]) or value_and_grad(f, wrt=[...]), "
                f"not '{call.func}'", call.func_span)
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
            raise DlTypeError(f"{call.func} takes one function name, e.g. {call.func}(loss, wrt=[w])",
                              call.span)
        target_name = call.args[0]
        if not self.is_function(target_name.id):
            raise NameResolutionError(f"unknown function '{target_name.id}'", target_name.span,
                                      notes=did_you_mean(target_name.id, self.defs))
        wrt_expr: ast.Expr | None = None
        for kw in call.kwargs:
            if kw.name != "wrt":
                raise DlTypeError(f"unknown keyword argument '{kw.name}' for {call.func} (allowed: wrt)",
                                  kw.span)
            wrt_expr = kw.value
        target = self.function(target_name.id, target_name.span)
        wrt = self._wrt(target, wrt_expr, call)
        with_value = call.func == "value_and_grad"
        func = grad(self.module, target.name, wrt, new_name=g.name.id, with_value=with_value,
                    loc=g.name.span)
        self.grad_specs[func.name] = {"fn": target.name, "wrt": list(wrt), "with_value": with_value}
        return func

    def _wrt(self, target: Function, expr: ast.Expr | None, call: ast.Call) -> list[str]:
        names = [p.name for p in target.params]
        if expr is None:
            wrt = [p.name for p in target.params if p.type.dtype.is_float]
            if not wrt:
                raise DlTypeError(f"'{target.name}' has no float parameter to differentiate", call.span)
            return [w for w in wrt if w is not None]
        items = expr.items if isinstance(expr, ast.ListExpr) else (expr,)
        out: list[str] = []
        for item in items:
            if not isinstance(item, ast.Name):
                raise DlTypeError("wrt= takes parameter names, e.g. wrt=[w, b]", item.span)
            if item.id not in names:
                raise NameResolutionError(
                    f"'{item.id}' is not a parameter of '{target.name}' "
                    f"(parameters: {', '.join(n for n in names if n)})", item.span,
                    notes=did_you_mean(item.id, [n for n in names if n]))
            if item.id in out:
                raise NameResolutionError(f"'{item.id}' appears twice in wrt=", item.span)
            out.append(item.id)
        if not out:
            raise DlTypeError("wrt= names no parameter", expr.span)
        return out

    def _defer_grads(self) -> None:
        """Replace each gradient function by a placeholder for the autodiff pass."""
        for f in list(self.module.functions):
            spec = self.grad_specs.get(f.name)
            if spec is None:
                continue
            placeholder = Function(f.name, [Value(p.type, None, j, p.name) for j, p in enumerate(f.params)],
                                   loc=f.loc)
            placeholder.attrs["grad_of"] = dict(spec)
            self.module.replace(placeholder)

    # -- models ------------------------------------------------------------

    def _model(self, m: ast.ModelDef) -> None:
        ModelLowering(self.module, self, m).run()
