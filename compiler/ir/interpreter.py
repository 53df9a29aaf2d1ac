"""The reference interpreter: runs dl IR with numpy, one op's ``reference`` at a time.

It is the oracle for autodiff (finite differences) and for codegen
(differential tests), so it checks everything it can: the arguments against
the signature (count, dtype, rank, each dim, symbols bound consistently), and
every op's result against its (bound) inferred type.

    outputs = interpret(func, [x, w])            # positional
    outputs = interpret(func, {"x": x, "w": w})  # by parameter name

An op on ``f16`` or ``bf16`` operands computes in f32 and rounds its result to
nearest even; ``i8`` and ``u8`` wrap, as numpy's do.

Floating-point exceptions follow IEEE (``log(0) = -inf``, ``0/0 = nan``) with
numpy's warnings silenced, as native code behaves.  A ``max``, ``min`` or
``argmax`` over an axis that is empty raises :class:`DlRuntimeError` at the op
(``compiler.ops.reductions.NonEmptyAxes``; compiled code raises the same).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..diagnostics import DlError, DlRuntimeError, SizeLimitError
from ..ops import get_op
from ..ops.reductions import NonEmptyAxes
from .core import Function, Module, Op, Value
from .dims import DimExpr, evaluate, free_symbols
from .sizes import allocation_error, call_text, extent, type_problem
from .types import DType, TensorType, number_problem

Args = Sequence[Any] | Mapping[str, Any]


def interpret(func: Function, args: Args, *,
              on_op: Callable[[Op, list[np.ndarray]], None] | None = None) -> list[np.ndarray]:
    """Evaluate ``func`` on numpy arrays; returns one array per output.

    ``on_op(op, results)``, if given, sees every op's results as they are
    computed (the NaN trap of ``Model.fit`` looks for the first non-finite one).
    Raises :class:`DlRuntimeError` naming the argument when an argument does
    not fit the signature.
    """
    arrays = _bind_params(func, args)
    bindings: dict[str, int] = {}
    env: dict[Value, np.ndarray] = {}
    for param, array in zip(func.params, arrays):
        env[param] = _check_arg(func, param, array, bindings)
    for param in func.params:               # dims computed from symbols, once all are bound
        _check_computed_dims(func, param, env[param].shape, bindings)
    with np.errstate(all="ignore"):
        for op in func.ops:
            _run_op(op, env, bindings, call_text(f"@{func.name}", bindings))
            if on_op is not None:
                on_op(op, [env[v] for v in op.results])
    return [env[v] for v in func.outputs]


def interpret_module(module: Module, fn_name: str, args: Args) -> list[np.ndarray]:
    """Evaluate function ``fn_name`` of ``module``."""
    if fn_name not in module:
        names = ", ".join(f.name for f in module.functions) or "none"
        raise DlRuntimeError(f"no function named '{fn_name}' in the module (functions: {names})")
    return interpret(module.get(fn_name), args)


# ---------------------------------------------------------------------------
# Arguments


def _bind_params(func: Function, args: Args) -> list[Any]:
    """Arguments in parameter order, from a list or a name -> array mapping."""
    names = [p.name or f"#{i}" for i, p in enumerate(func.params)]
    if isinstance(args, Mapping):
        missing = [n for n in names if n not in args]
        extra = sorted(set(args) - set(names))
        if missing:
            raise DlRuntimeError(f"@{func.name}: missing argument '{missing[0]}'")
        if extra:
            raise DlRuntimeError(f"@{func.name}: unknown argument '{extra[0]}' "
                                 f"(parameters: {', '.join(names) or 'none'})")
        return [args[n] for n in names]
    args = list(args)
    if len(args) != len(func.params):
        raise DlRuntimeError(f"@{func.name} takes {len(func.params)} argument(s) "
                             f"({', '.join(names)}), got {len(args)}")
    return args


def _as_array(value: Any, t: TensorType, where: str) -> Any:
    """numpy scalars as 0-d arrays; a Python number as a 0-d array of ``t``'s dtype
    when it fits that dtype's kind (bool for bool, int for ints, int or float for floats)
    -- and its range (else an error naming the argument, ``where``)."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    if t.dtype is DType.bool:
        fits = isinstance(value, bool)
    elif t.dtype.is_int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not fits:
        return value
    problem = number_problem(value, t.dtype)
    if problem is not None:
        raise DlRuntimeError(f"{where} expects {t.dsl_str()}: {problem}")
    return np.asarray(value, dtype=t.dtype.np)


def _check_arg(func: Function, param: Value, array: Any, bindings: dict[str, int]) -> np.ndarray:
    """Check one argument against its parameter type, binding symbolic dims."""
    t = param.type
    where = f"@{func.name}: argument '{param.name}'"
    array = _as_array(array, t, where)
    if not isinstance(array, np.ndarray):
        raise DlRuntimeError(f"{where} must be a numpy array of {t.dsl_str()}, "
                             f"got {type(array).__name__}")
    if array.dtype != t.dtype.np:
        raise DlRuntimeError(f"{where} has dtype {array.dtype}, expected {t.dtype.np} ({t.dsl_str()})")
    if array.ndim != t.rank:
        raise DlRuntimeError(f"{where} has rank {array.ndim} (shape {list(array.shape)}), "
                             f"expected rank {t.rank} ({t.dsl_str()})")
    for axis, (dim, size) in enumerate(zip(t.shape, array.shape)):
        if isinstance(dim, DimExpr):
            continue                        # checked once every symbol is bound
        if isinstance(dim, int):
            if size != dim:
                raise DlRuntimeError(f"{where} has shape {list(array.shape)}, expected {t.dsl_str()}: "
                                     f"dim {axis} is {size}, not {dim}")
        elif dim not in bindings:
            bindings[dim] = size
        elif bindings[dim] != size:
            raise DlRuntimeError(f"{where} has shape {list(array.shape)}, expected {t.dsl_str()}: "
                                 f"dim {axis} ({dim}) is {size}, but {dim} = {bindings[dim]} "
                                 "from an earlier argument")
    return array


def _check_computed_dims(func: Function, param: Value, shape: tuple[int, ...],
                         bindings: dict[str, int]) -> None:
    """Each dim of ``param``'s type that is an expression (``max(N-1,0)``) against the argument."""
    for axis, (dim, size) in enumerate(zip(param.type.shape, shape)):
        if isinstance(dim, DimExpr) and evaluate(dim, bindings) != size:
            raise DlRuntimeError(f"{call_text(f'@{func.name}', bindings)}argument '{param.name}' has "
                                 f"shape {list(shape)}, expected {param.type.dsl_str()}: dim {axis} is "
                                 f"{size}, not {dim} = {evaluate(dim, bindings)}")


# ---------------------------------------------------------------------------
# Ops


def _run_op(op: Op, env: dict[Value, np.ndarray], bindings: dict[str, int], where: str) -> None:
    """Run ``op``'s reference; ``where`` (``@f: with N=3, ``) starts a size error's message,
    which is the one compiled code gives for the same call (``compiler/ir/sizes.py``)."""
    opdef = get_op(op.name)
    if opdef is None or opdef.reference is None:
        raise DlRuntimeError(f"the interpreter has no reference semantics for dl.{op.name}", op.loc)
    precondition = NonEmptyAxes.of(op)
    if precondition is not None:
        precondition.check(bindings, op.loc)
    for value in op.results:
        problem = type_problem(value.type, bindings)
        if problem is not None:
            raise SizeLimitError(f"{where}the result of dl.{op.name} at {op.loc} {problem}", op.loc)
    attrs = {k: _bind_attr(op, k, v, bindings) for k, v in op.attrs.items()}
    operands = [_in_compute_dtype(env[v], v.type.dtype) for v in op.operands]
    try:
        out = opdef.reference(*operands, **attrs)
    except MemoryError:
        nbytes = sum(extent(v.type.shape, bindings) * v.type.dtype.itemsize for v in op.results)
        raise allocation_error(f"{where}the result of dl.{op.name} at {op.loc}", nbytes) from None
    except DlError as e:            # a run-time error of the op (an index out of range): at the op
        if e.loc is None:
            e.loc = op.loc
        raise
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(outs) != len(op.results):
        raise DlRuntimeError(f"dl.{op.name} gave {len(outs)} result(s), expected {len(op.results)}",
                             op.loc)
    for value, array in zip(op.results, outs):
        env[value] = _check_result(op, value.type, np.asarray(array), bindings)


def _in_compute_dtype(array: np.ndarray, dtype: DType) -> np.ndarray:
    """An f16 or bf16 operand widened to f32, which its op computes in (the result is
    rounded back by :func:`_check_result`): numpy's float16 functions do the same, and a
    reference never sees bfloat16, which numpy does not know."""
    return array.astype(np.float32) if dtype.compute is not dtype else array


def _bind_attr(op: Op, key: str, value: Any, bindings: dict[str, int]) -> Any:
    """A ``dims`` or ``bounds`` attribute with its symbolic dims replaced by their values."""
    opdef = get_op(op.name)
    assert opdef is not None        # _run_op has checked the op has a definition
    spec = opdef.attrs.get(key)
    if spec is None or spec.kind not in ("dims", "bounds") or value is None:
        return value
    out = []
    for d in value:
        if d is not None and not isinstance(d, int):
            unbound = [s for s in free_symbols(d) if s not in bindings]
            if unbound:
                raise DlRuntimeError(f"dl.{op.name}: symbolic dim '{unbound[0]}' in attribute '{key}' "
                                     "is not bound by any argument", op.loc)
            d = evaluate(d, bindings)
        out.append(d)
    return tuple(out)


def _check_result(op: Op, t: TensorType, array: np.ndarray, bindings: dict[str, int]) -> np.ndarray:
    """The result cast to its dtype, its shape checked against the bound type."""
    expected = tuple(-1 if any(s not in bindings for s in free_symbols(d)) else evaluate(d, bindings)
                     for d in t.shape)
    if array.shape != expected:
        raise DlRuntimeError(f"dl.{op.name} produced shape {list(array.shape)}, but its type "
                             f"{t.dsl_str()} means {list(expected)}", op.loc)
    return np.asarray(array, dtype=t.dtype.np)
