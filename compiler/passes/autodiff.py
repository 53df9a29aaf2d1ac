"""Reverse-mode automatic differentiation as an IR-to-IR transformation.

``grad(module, "loss", ["w", "b"], new_name="dloss")`` adds a function with the
same parameters as ``@loss`` that returns ``d loss / d w`` and ``d loss / d b``
(after the primal outputs with ``with_value=True``).  It works like JAX's
autodidax backward pass:

1. copy the forward ops into the new function, so forward values (e.g. the
   result of ``tanh``) are available to the backward code;
2. find the *active* values -- those that depend differentiably on a ``wrt``
   parameter -- and check that every op on a path from ``wrt`` to the output
   has a VJP rule (all missing rules are reported at once);
3. seed the output's cotangent with ``1`` and walk the copied ops backwards
   with a cotangent map, calling each op's ``vjp`` rule with a builder that
   gives every gradient op the forward op's location, marked backward;
   fan-out (a value used several times) is summed with ``dl.add``;
4. give parameters that no cotangent reaches zeros of their type, and remove
   the forward code that the gradients do not need (DCE).

The result is ordinary dl IR, so it prints, verifies, optimizes and can be
differentiated again (grad of grad).

Non-differentiable ops (``differentiable=False``: comparisons, argmax,
one_hot, casts to int) stop the gradient: no cotangent flows into their
operands, which is not an error.

The pass ``autodiff`` materializes placeholder functions whose
``attrs["grad_of"] = {"fn": name, "wrt": [names], "with_value": bool}``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from ..diagnostics import AutodiffError, DlError, DlErrors, Location
from ..ir.builder import Builder, new_function
from ..ir.core import Function, Module, Op, Value
from ..ops.base import get_op
from ..ops.rules import zeros
from .dce import dce_function
from .manager import PassContext, register_pass

AttrTransform = Callable[[Op], dict[str, Any]]


def grad(module: Module, fn_name: str, wrt: list[str], *, new_name: str,
         with_value: bool = False, loc: Location | None = None) -> Function:
    """Add and return ``new_name``: the gradient of ``@fn_name`` with respect to ``wrt``
    (:func:`gradient_function`, added to ``module``)."""
    if new_name in module:
        func = _lookup(module, fn_name, loc)
        raise AutodiffError(f"a function named '{new_name}' already exists",
                            loc if loc is not None else func.loc)
    return module.add(gradient_function(module, fn_name, wrt, new_name=new_name,
                                        with_value=with_value, loc=loc))


def gradient_function(module: Module, fn_name: str, wrt: list[str], *, new_name: str,
                      with_value: bool = False, loc: Location | None = None) -> Function:
    """The gradient of ``@fn_name`` with respect to ``wrt``, as function ``new_name``
    (not added to ``module``).

    The new function has the same parameters as ``@fn_name`` and returns one
    gradient per ``wrt`` parameter (same type as the parameter), preceded by
    the primal outputs when ``with_value`` is true.  Output names are the
    primal names (``"loss"``) then ``"d_<param>"``.

    ``@fn_name``'s first output is differentiated and must be a float scalar;
    any further outputs are auxiliary: returned with ``with_value``, never
    differentiated.

    Raises :class:`AutodiffError` (several at once as ``DlErrors``) at ``loc``
    (the ``grad(...)`` call; default: the function's location) for a bad
    request, and at each op's own location for ops without a VJP rule.
    """
    func = _lookup(module, fn_name, loc)
    where = loc if loc is not None else func.loc
    check_request(func, wrt, where)

    new, b = new_function(new_name, [(p.name, p.type) for p in func.params], loc=where)
    env = inline_function(b, func, new.params)
    forward_ops = list(new.ops)
    output = env[func.outputs[0]]
    sources = [new.params[_param_index(func, name)] for name in wrt]

    active = _active_values(forward_ops, sources)
    _check_rules(forward_ops, output, active)
    cotangents = _backward(b, forward_ops, output, active)

    grads = []
    for p in sources:
        g = cotangents.get(p)
        if g is None:
            with b.at(where):
                g = zeros(b, p.type)
        grads.append(g)
    primal = [env[v] for v in func.outputs]
    names = _primal_names(func)
    new.outputs = [*primal, *grads] if with_value else grads
    new.output_names = [*(names if with_value else []), *(f"d_{n}" for n in wrt)]
    dce_function(new)
    return new


# ---------------------------------------------------------------------------
# Copying a function body


def inline_function(b: Builder, func: Function, args: list[Value], *,
                    attrs: AttrTransform | None = None) -> dict[Value, Value]:
    """Append a copy of ``func``'s ops to ``b``'s function, applied to ``args``.

    Every op keeps its location; shape rules run again, so ``args`` may have
    other (compatible) types than ``func``'s parameters.  ``attrs(op)``, if
    given, supplies each copied op's attributes.  Returns the map from
    ``func``'s values (parameters and op results) to the copies.
    """
    assert len(args) == len(func.params), f"@{func.name} takes {len(func.params)} arguments"
    env: dict[Value, Value] = dict(zip(func.params, args))
    for op in func.ops:
        new_attrs = attrs(op) if attrs is not None else dict(op.attrs)
        copy = Builder.make(op.name, [env[v] for v in op.operands], new_attrs, op.loc)
        b.func.ops.append(copy)
        env.update(zip(op.results, copy.results))
    return env


# ---------------------------------------------------------------------------
# Checking the request


def _lookup(module: Module, fn_name: str, where: Location | None) -> Function:
    if fn_name not in module:
        known = ", ".join(f.name for f in module.functions) or "none"
        raise AutodiffError(f"cannot differentiate unknown function '{fn_name}'", where,
                            notes=[f"functions in this module: {known}"])
    return module.get(fn_name)


def _param_index(func: Function, name: str) -> int:
    return next(i for i, p in enumerate(func.params) if p.name == name)


def check_request(func: Function, wrt: list[str], where: Location | None) -> None:
    """Raise every problem with differentiating ``func`` with respect to ``wrt``, at once.

    Checks the ``wrt`` names (known, float, not repeated, at least one) and
    the first output (a float scalar); errors point at ``where``.
    """
    errors: list[DlError] = []
    if not wrt:
        errors.append(AutodiffError("grad needs at least one parameter in 'wrt'", where))
    params = {p.name: p for p in func.params}
    seen: set[str] = set()
    for name in wrt:
        p = params.get(name)
        if p is None:
            errors.append(AutodiffError(
                f"'{name}' is not a parameter of '{func.name}'", where,
                notes=[f"parameters of '{func.name}': {', '.join(params) or 'none'}"]))
        elif not p.type.dtype.is_float:
            errors.append(AutodiffError(
                f"cannot differentiate with respect to '{name}': its type "
                f"{p.type.dsl_str()} is not a float type", where))
        elif name in seen:
            errors.append(AutodiffError(f"'{name}' appears twice in 'wrt'", where))
        seen.add(name)
    if not func.outputs:
        errors.append(AutodiffError(f"'{func.name}' has no output to differentiate", where))
    else:
        out = func.outputs[0].type
        if out.rank != 0 or not out.dtype.is_float:
            errors.append(AutodiffError(
                f"grad needs a scalar float output, but '{func.name}' returns {out.dsl_str()}",
                where))
    _raise(errors)


def _raise(errors: list[DlError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DlErrors(errors)


# ---------------------------------------------------------------------------
# Activity analysis and the backward walk


def _differentiable(op: Op) -> bool:
    opdef = get_op(op.name)
    assert opdef is not None, f"unknown op dl.{op.name}"
    return opdef.differentiable


def _active_values(ops: list[Op], sources: list[Value]) -> set[Value]:
    """Float values that depend on ``sources`` through differentiable ops."""
    active: set[Value] = set(sources)
    for op in ops:
        if _differentiable(op) and any(v in active for v in op.operands):
            active.update(r for r in op.results if r.type.dtype.is_float)
    return active


def _on_path(op: Op, needed: Container[Value], active: set[Value]) -> bool:
    """Whether a cotangent reaches ``op`` and can flow on into an active operand."""
    return (any(r in needed for r in op.results) and _differentiable(op)
            and any(v in active for v in op.operands))


def _check_rules(ops: list[Op], output: Value, active: set[Value]) -> None:
    """Every op between the ``wrt`` parameters and the output needs a VJP rule."""
    needed: set[Value] = {output}
    errors: list[DlError] = []
    for op in reversed(ops):
        if not _on_path(op, needed, active):
            continue
        needed.update(v for v in op.operands if v in active)
        if get_op(op.name).vjp is None:  # type: ignore[union-attr]
            errors.append(AutodiffError(f"no gradient rule for dl.{op.name}", op.loc))
    errors.reverse()
    _raise(errors)


def _backward(b: Builder, ops: list[Op], output: Value, active: set[Value]) -> dict[Value, Value]:
    """Walk ``ops`` in reverse, emitting gradient code; returns the cotangent map."""
    cotangents: dict[Value, Value] = {}
    seed_loc = output.owner.loc.as_backward() if output.owner is not None else b.loc
    with b.at(seed_loc):
        cotangents[output] = b.constant(1.0, output.type.dtype)
    for op in reversed(ops):
        if not _on_path(op, cotangents.keys(), active):
            continue
        opdef = get_op(op.name)
        assert opdef is not None and opdef.vjp is not None, f"dl.{op.name} has no VJP rule"
        with b.at(op.loc.as_backward()):
            result_cts = [cotangents[r] if r in cotangents else zeros(b, r.type)
                          for r in op.results]
            operand_cts = opdef.vjp(b, op, *result_cts)
            _check_rule_output(op, operand_cts)
            for v, g in zip(op.operands, operand_cts):
                if g is None or v not in active:
                    continue
                previous = cotangents.get(v)
                cotangents[v] = g if previous is None else b.add(previous, g)
    return cotangents


def _check_rule_output(op: Op, cts: Any) -> None:
    """A VJP rule returns one cotangent (or None) per operand, of the operand's type."""
    assert isinstance(cts, (list, tuple)), (
        f"VJP rule of dl.{op.name} returned {type(cts).__name__}, not a list")
    assert len(cts) == len(op.operands), (
        f"VJP rule of dl.{op.name} returned {len(cts)} cotangents for {len(op.operands)} operands")
    for i, (v, g) in enumerate(zip(op.operands, cts)):
        if g is None:
            continue
        assert isinstance(g, Value), (
            f"VJP rule of dl.{op.name}: cotangent {i} is a {type(g).__name__}, not a Value")
        assert g.type == v.type, (
            f"VJP rule of dl.{op.name}: cotangent {i} has type {g.type}, operand has {v.type}")


def _primal_names(func: Function) -> list[str]:
    names = list(func.output_names) + [None] * (len(func.outputs) - len(func.output_names))
    if len(func.outputs) == 1:
        return [names[0] or func.name]
    return [n or f"{func.name}_{i}" for i, n in enumerate(names)]


# ---------------------------------------------------------------------------
# The pass


@register_pass("autodiff", "build the gradient functions marked attrs['grad_of'] (reverse mode)")
def autodiff(module: Module, ctx: PassContext) -> Module:
    """Replace each placeholder with ``attrs["grad_of"]`` by its gradient function.

    A placeholder ``@dloss`` with ``grad_of = {"fn": "loss", "wrt": ["w"],
    "with_value": false}`` becomes ``grad(module, "loss", ["w"],
    new_name="dloss")`` at the same position in the module.  Placeholders may
    refer to each other (grad of grad); they are built in dependency order.
    """
    pending = {f.name: f for f in module.functions if "grad_of" in f.attrs}
    errors: list[DlError] = []
    for name in _dependency_order(pending):
        placeholder = pending[name]
        try:
            fn, wrt, with_value = _grad_spec(placeholder)
            new = gradient_function(module, fn, wrt, new_name=name, with_value=with_value,
                                    loc=placeholder.loc)
        except DlErrors as e:
            errors.extend(e.errors)
            continue
        except DlError as e:
            errors.append(e)
            continue
        module.replace(new)                     # in the placeholder's place
        new.attrs.update({k: v for k, v in placeholder.attrs.items() if k != "grad_of"})
        ctx.count("gradient-functions")
    _raise(errors)
    return module


def _grad_spec(placeholder: Function) -> tuple[str, list[str], bool]:
    spec = placeholder.attrs["grad_of"]
    ok = (isinstance(spec, dict) and isinstance(spec.get("fn"), str)
          and isinstance(spec.get("wrt"), (list, tuple))
          and all(isinstance(w, str) for w in spec["wrt"])
          and isinstance(spec.get("with_value", False), bool))
    if not ok:
        raise AutodiffError(
            f"malformed grad_of attribute on '{placeholder.name}': expected "
            "{fn = \"name\", wrt = [\"param\", ...], with_value = false}", placeholder.loc)
    return spec["fn"], list(spec["wrt"]), bool(spec.get("with_value", False))


def _dependency_order(pending: dict[str, Function]) -> list[str]:
    """Placeholder names, each after the placeholder it differentiates (if any)."""
    order: list[str] = []
    done: set[str] = set()
    for start in pending:
        chain: list[str] = []                   # start, what it differentiates, ... (a path)
        on_chain: set[str] = set()
        name: str | None = start
        while name is not None and name not in done:
            if name in on_chain:
                raise AutodiffError(f"gradient function '{name}' depends on itself",
                                    pending[name].loc)
            chain.append(name)
            on_chain.add(name)
            spec = pending[name].attrs["grad_of"]
            target = spec.get("fn") if isinstance(spec, dict) else None
            name = target if isinstance(target, str) and target in pending else None
        for name in reversed(chain):
            order.append(name)
            done.add(name)
    return order
