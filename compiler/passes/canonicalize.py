"""Canonicalization: constant folding and algebraic identities, to a fixed point.

Each rewrite is a small pattern function (see :mod:`.patterns`) that begins
with its identity in a comment; the worklist driver applies them until none
fires, then removes ops that no output needs.  Replacements always have the
exact type of what they replace: where dropping ``+ 0`` would shrink a
broadcast result, ``x`` is broadcast instead (``add(x, zeros[N, 3]) ->
broadcast_to(x)``).

Floating point.  By default a float rewrite must give bit-identical
results in IEEE arithmetic, signed zeros, infinities and NaNs included:
``x * 1``, ``x / 1``, ``x * -1 -> neg(x)``, ``neg(neg x)``, ``x + (-0.0)``
and ``x - (+0.0)`` always apply.  The pass option ``finite-math`` (like
``-ffinite-math-only -fno-signed-zeros``: no float value is NaN or ±inf,
and the sign of a zero does not matter) enables the rest:

- ``x + 0.0 -> x`` and ``x - (-0.0) -> x`` (``-0.0 + 0.0 = +0.0``, and
  ``1 / -0.0 = -inf`` makes the sign visible);
- ``x * 0 -> 0`` (``nan * 0 = nan``, ``inf * 0 = nan``, ``-1 * 0 = -0``);
- ``x - x -> 0`` (``inf - inf = nan``);
- ``log(exp x) -> x`` (``exp`` overflows to inf for x > 88 in f32; the
  rewrite is also not bit-exact);
- ``exp(log x) -> x`` (``log`` of a negative number is NaN).

For integer operands the zero rules always apply.  One rewrite may change a
result by design and is on by default: ``argmax(softmax z)`` (below).  No
rewrite changes what a loss means: a cross-entropy of softmax (sigmoid)
probabilities is *built* from the logits by the loss's own ``canonical`` rule
(``compiler/ops/losses.py``), before anything runs or differentiates it; a
loss op that reaches this pass in probability form (parsed IR text) keeps it.

``select(y > 0, max_pool2d_grad(y, dy), 0)`` masks the pooled gradient instead
(exact: see the pattern).

``argmax(softmax(z)) -> argmax(z)`` along the same axis: softmax is
increasing, so this drops the softmax an accuracy metric would compute.  The
only possible difference: two logits closer than float rounding can give
equal probabilities, where ``argmax`` of the probabilities picks the first
and ``argmax`` of the logits the larger.

Pass options (``run_pipeline(options={"canonicalize": {...}})``, or
``--pass-option canonicalize.KEY=VALUE`` on the command line):
``finite-math`` (bool, default false), ``fold-limit`` (int, default 4096:
the largest number of elements a folded dense constant may have).

Statistics: one counter per pattern applied, and ``dead-ops-erased``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..diagnostics import DlError
from ..ir.core import Module, Op, Value
from ..ir.types import TensorType
from ..ops.base import ELEMENTWISE, LAYOUT, SOURCE, get_op, normalize_axes
from ..ops.layout import resolve_perm
from .dce import dce_function
from .manager import PassContext, register_pass
from .patterns import (
    ANY_OP,
    PatternSet,
    Replacement,
    Rewriter,
    apply_patterns,
    constant_array,
    defining_op,
    is_splat,
    splat_value,
)

FOLD_LIMIT = 4096

CANONICAL = PatternSet()
pattern = CANONICAL.pattern


def _finite_math(rw: Rewriter) -> bool:
    return bool(rw.option("finite-math", False))


def _leaves_unchanged(zero: Value, rw: Rewriter, exact_sign: float) -> bool:
    """Whether ``zero`` is a zero constant that, added (``exact_sign = -1``: ``x + -0.0``)
    or subtracted (``exact_sign = 1``: ``x - +0.0``), leaves every float bit of ``x``
    unchanged -- or any zero when the dtype is an integer or with finite-math."""
    value = splat_value(zero)
    if value is None or isinstance(value, bool) or value != 0:
        return False
    if not zero.type.dtype.is_float or _finite_math(rw):
        return True
    return math.copysign(1.0, value) == exact_sign


def _zeros(rw: Rewriter, t: TensorType) -> Value:
    """A splat zero constant of type ``t`` (symbolic dims allowed)."""
    return rw.b.constant(0, t.dtype, t.shape)


def _other(op: Op, i: int) -> Value:
    """The operand of a binary op that is not operand ``i``."""
    return op.operands[1 - i]


# ---------------------------------------------------------------------------
# Constant folding


@pattern("fold-constants", ANY_OP)
def fold_constants(op: Op, rw: Rewriter) -> Replacement:
    # f(c1, .., cn) -> c, evaluated with f's numpy reference
    opdef = get_op(op.name)
    if (opdef is None or opdef.kind == SOURCE or opdef.reference is None or not op.operands
            or any(defining_op(v, "constant") is None for v in op.operands)):
        return None
    splats = [splat_value(v) for v in op.operands]
    if opdef.kind in (ELEMENTWISE, LAYOUT) and all(s is not None for s in splats):
        return _fold_splats(op, rw, splats)
    if not all(v.type.is_static for v in [*op.operands, *op.results]):
        return None
    limit = int(rw.option("fold-limit", FOLD_LIMIT))
    if sum(r.type.num_elements() for r in op.results) > limit:
        return None
    arrays = [np.broadcast_to(constant_array(v), v.type.shape).copy() for v in op.operands]
    try:
        with np.errstate(all="ignore"):
            out = opdef.reference(*arrays, **op.attrs)
    except DlError:             # the op fails when it runs (an index out of range): leave it to run time
        return None
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    return [_constant_of(rw, np.asarray(a), r.type) for a, r in zip(outs, op.results)]


def _fold_splats(op: Op, rw: Rewriter, splats: list[Any]) -> Replacement:
    """An elementwise or layout op of splat constants is a splat constant of its result type."""
    opdef = get_op(op.name)
    assert opdef is not None and opdef.reference is not None
    if opdef.kind == LAYOUT:
        return rw.b.constant(splats[0], op.result.type.dtype, op.result.type.shape)
    scalars = [np.asarray(s, dtype=v.type.dtype.np) for s, v in zip(splats, op.operands)]
    with np.errstate(all="ignore"):
        out = np.asarray(opdef.reference(*scalars, **op.attrs))
    t = op.result.type
    return rw.b.constant(out.astype(t.dtype.np)[()], t.dtype, t.shape)


def _constant_of(rw: Rewriter, array: np.ndarray, t: TensorType) -> Value:
    """A constant of type ``t`` holding ``array``: a splat when all elements are equal."""
    array = np.ascontiguousarray(array, dtype=t.dtype.np).reshape(t.concrete_shape({}))
    flat = array.reshape(-1)
    if flat.size > 0 and flat.tobytes() == flat[:1].tobytes() * flat.size:
        return rw.b.constant(flat[0], t.dtype, t.shape)
    return rw.b.constant(array, t.dtype)


@pattern("dim-size-static", "dim_size")
def dim_size_static(op: Op, rw: Rewriter) -> Replacement:
    # dim_size(x: [.., 7, ..], axis) -> 7   when that dim is static
    x = op.operands[0]
    dim = x.type.shape[op.attrs["axis"] % x.type.rank]
    if not isinstance(dim, int):
        return None
    return rw.b.constant(dim, op.attrs["dtype"])


# ---------------------------------------------------------------------------
# Arithmetic identities


@pattern("add-zero", "add")
def add_zero(op: Op, rw: Rewriter) -> Replacement:
    # x + 0 -> x,  0 + x -> x   (floats: -0.0 only, unless finite-math)
    for i in (1, 0):
        if _leaves_unchanged(op.operands[i], rw, exact_sign=-1.0):
            return rw.like(_other(op, i), op.result.type)
    return None


@pattern("sub-zero", "sub")
def sub_zero(op: Op, rw: Rewriter) -> Replacement:
    # x - 0 -> x   (floats: +0.0 only, unless finite-math)
    if _leaves_unchanged(op.operands[1], rw, exact_sign=1.0):
        return rw.like(op.operands[0], op.result.type)
    return None


@pattern("sub-self", "sub")
def sub_self(op: Op, rw: Rewriter) -> Replacement:
    # x - x -> 0   (integers; floats only with finite-math: inf - inf = nan)
    x, y = op.operands
    if x is not y or (x.type.dtype.is_float and not _finite_math(rw)):
        return None
    return _zeros(rw, op.result.type)


@pattern("mul-one", "mul")
def mul_one(op: Op, rw: Rewriter) -> Replacement:
    # x * 1 -> x,  1 * x -> x
    for i in (1, 0):
        if is_splat(op.operands[i], 1):
            return rw.like(_other(op, i), op.result.type)
    return None


@pattern("mul-zero", "mul")
def mul_zero(op: Op, rw: Rewriter) -> Replacement:
    # x * 0 -> 0,  0 * x -> 0   (integers; floats only with finite-math: nan * 0 = nan)
    if op.result.type.dtype.is_float and not _finite_math(rw):
        return None
    if any(is_splat(v, 0) for v in op.operands):
        return _zeros(rw, op.result.type)
    return None


@pattern("mul-minus-one", "mul")
def mul_minus_one(op: Op, rw: Rewriter) -> Replacement:
    # x * -1 -> neg(x),  -1 * x -> neg(x)
    for i in (1, 0):
        if is_splat(op.operands[i], -1):
            return rw.like(rw.b.neg(_other(op, i)), op.result.type)
    return None


@pattern("div-one", "div")
def div_one(op: Op, rw: Rewriter) -> Replacement:
    # x / 1 -> x
    if is_splat(op.operands[1], 1):
        return rw.like(op.operands[0], op.result.type)
    return None


@pattern("neg-neg", "neg")
def neg_neg(op: Op, rw: Rewriter) -> Replacement:
    # neg(neg(x)) -> x
    inner = defining_op(op.operands[0], "neg")
    return inner.operands[0] if inner is not None else None


@pattern("log-exp", "log")
def log_exp(op: Op, rw: Rewriter) -> Replacement:
    # log(exp(x)) -> x   (finite-math only: exp(100) = inf in f32)
    inner = defining_op(op.operands[0], "exp")
    if inner is None or not _finite_math(rw):
        return None
    return inner.operands[0]


@pattern("exp-log", "exp")
def exp_log(op: Op, rw: Rewriter) -> Replacement:
    # exp(log(x)) -> x   (finite-math only: log(x < 0) = nan)
    inner = defining_op(op.operands[0], "log")
    if inner is None or not _finite_math(rw):
        return None
    return inner.operands[0]


@pattern("select-constant-condition", "select")
def select_constant_condition(op: Op, rw: Rewriter) -> Replacement:
    # select(true, x, y) -> x,  select(false, x, y) -> y
    cond = splat_value(op.operands[0])
    if not isinstance(cond, bool):
        return None
    return rw.like(op.operands[1] if cond else op.operands[2], op.result.type)


@pattern("select-same-branches", "select")
def select_same_branches(op: Op, rw: Rewriter) -> Replacement:
    # select(c, x, x) -> x
    _, on_true, on_false = op.operands
    return rw.like(on_true, op.result.type) if on_true is on_false else None


@pattern("cast-same-dtype", "cast")
def cast_same_dtype(op: Op, rw: Rewriter) -> Replacement:
    # cast(x: T, dtype=T) -> x
    x = op.operands[0]
    return x if x.type == op.result.type else None


# ---------------------------------------------------------------------------
# Layout


@pattern("transpose-transpose", "transpose")
def transpose_transpose(op: Op, rw: Rewriter) -> Replacement:
    # transpose(transpose(x, p), q) -> transpose(x, [p[q[i]] for i])
    inner = defining_op(op.operands[0], "transpose")
    if inner is None:
        return None
    x = inner.operands[0]
    p = resolve_perm(inner.attrs["perm"], x.type.rank)
    q = resolve_perm(op.attrs["perm"], x.type.rank)
    return rw.b.transpose(x, perm=tuple(p[i] for i in q))


@pattern("transpose-identity", "transpose")
def transpose_identity(op: Op, rw: Rewriter) -> Replacement:
    # transpose(x, [0, 1, .., n-1]) -> x
    x = op.operands[0]
    perm = resolve_perm(op.attrs["perm"], x.type.rank)
    return x if perm == tuple(range(x.type.rank)) else None


@pattern("reshape-reshape", "reshape")
def reshape_reshape(op: Op, rw: Rewriter) -> Replacement:
    # reshape(reshape(x, s1), s2) -> reshape(x, s2)
    inner = defining_op(op.operands[0], "reshape")
    if inner is None:
        return None
    return rw.b.reshape(inner.operands[0], shape=op.result.type.shape)


@pattern("reshape-same-shape", "reshape")
def reshape_same_shape(op: Op, rw: Rewriter) -> Replacement:
    # reshape(x: [s], s) -> x
    x = op.operands[0]
    return x if x.type == op.result.type else None


@pattern("broadcast-same-shape", "broadcast_to")
def broadcast_same_shape(op: Op, rw: Rewriter) -> Replacement:
    # broadcast_to(x: [s], s) -> x
    x = op.operands[0]
    return x if x.type == op.result.type else None


@pattern("broadcast-broadcast", "broadcast_to")
def broadcast_broadcast(op: Op, rw: Rewriter) -> Replacement:
    # broadcast_to(broadcast_to(x, s1), s2) -> broadcast_to(x, s2)
    inner = defining_op(op.operands[0], "broadcast_to")
    if inner is None:
        return None
    return rw.b.broadcast_to(inner.operands[0], shape=op.result.type.shape)


@pattern("reduce-unit-axes", "sum", "mean", "max", "min")
def reduce_unit_axes(op: Op, rw: Rewriter) -> Replacement:
    # sum(x, axes) -> reshape(x)   when every reduced axis has size 1 (also mean, max, min)
    x = op.operands[0]
    axes = normalize_axes(op.attrs["axes"], x.type.rank)
    if not all(x.type.shape[a] == 1 for a in axes):
        return None
    return rw.b.reshape(x, shape=op.result.type.shape)


# ---------------------------------------------------------------------------
# Pooling


@pattern("mask-before-max-pool-grad", "select")
def mask_before_max_pool_grad(op: Op, rw: Rewriter) -> Replacement:
    # select(y > 0, max_pool2d_grad(y, dy), 0) -> max_pool2d_grad(y, select(max_pool2d(y) > 0, dy, 0))
    # The gradient is zero except at each window's first maximum p, where the window's
    # pooled value is y[p]: masking by the pooled value before the scatter masks exactly
    # the same additions (a NaN window routes its dy to the NaN, masked both ways; a window
    # wholly in the padding drops its dy both ways), zeros are +0.0 both ways. It moves a
    # relu's backward mask from the image onto the 4x smaller pooled gradient, where the
    # producer's epilogue (a conv's input gradient) applies it; CSE shares max_pool2d(y).
    cond, grad, zero = op.operands
    test, pool_grad = defining_op(cond, "gt"), defining_op(grad, "max_pool2d_grad")
    if test is None or pool_grad is None or not is_splat(test.operands[1], 0.0):
        return None
    y, dy = pool_grad.operands
    value = splat_value(zero)
    if (test.operands[0] is not y or test.result.type.shape != y.type.shape
            or value is None or isinstance(value, bool) or value != 0
            or math.copysign(1.0, value) != 1.0 or zero.type.dtype != grad.type.dtype):
        return None
    pooled = rw.b.max_pool2d(y, **pool_grad.attrs)
    masked = rw.b.select(rw.b.gt(pooled, rw.b.scalar_like(0, pooled)), dy, rw.b.scalar_like(0, dy))
    return rw.like(rw.b.max_pool2d_grad(y, masked, **pool_grad.attrs), op.result.type)


# ---------------------------------------------------------------------------
# Softmax


@pattern("argmax-of-softmax", "argmax")
def argmax_of_softmax(op: Op, rw: Rewriter) -> Replacement:
    # argmax(softmax(z, axis=a), axis=a) -> argmax(z, axis=a)   (softmax is increasing along a)
    act = defining_op(op.operands[0], "softmax")
    if act is None:
        return None
    rank = act.result.type.rank
    if op.attrs["axis"] % rank != act.attrs["axis"] % rank:
        return None
    return rw.b.argmax(act.operands[0], axis=op.attrs["axis"], keepdims=op.attrs["keepdims"])


# ---------------------------------------------------------------------------
# The pass


@register_pass("canonicalize",
               "fold constants and apply algebraic identities (x+0, neg(neg x), argmax(softmax)...) "
               "to a fixed point")
def canonicalize(module: Module, ctx: PassContext) -> Module:
    """Apply every canonicalization pattern to every function, then drop dead ops.

    Options: ``finite-math`` (bool), ``fold-limit`` (int); see the module docstring.
    """
    options = {"finite-math": bool(ctx.get("finite-math", False)),
               "fold-limit": int(ctx.get("fold-limit", FOLD_LIMIT))}
    counts: dict[str, int] = {}
    for func in module.functions:
        apply_patterns(func, CANONICAL, options, counts)
        ctx.count("dead-ops-erased", dce_function(func))
    for name, n in sorted(counts.items()):
        ctx.count(name, n)
    return module
