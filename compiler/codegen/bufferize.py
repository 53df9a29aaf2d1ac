"""dl IR -> loop IR: composite expansion, fusion, bufferization, scheduling.

The steps, in order (:func:`lower_function`):

1. **Expand composites** with their op-table ``decompose`` rule, recursively,
   so only primitives remain; then merge duplicates (``cse``): a loss and
   the softmax of its gradient decompose into the same max/exp/sum.
2. **Walk the ops**, giving each value either an *expression* (a virtual value:
   elementwise ops, broadcasts, transposes, squeezes, iota, scalar
   constants -- nothing is computed yet) or a *buffer* (a materialized value).
   An elementwise value is materialized when it has several uses (so it is
   computed once), when it is a function output, or when a consumer needs
   memory (matmul operands, reshapes that are not squeezes).  A single-use
   chain therefore fuses into its consumer: one loop nest, or the input of a
   reduction.  Loads of buffers, constants and iotas are *cheap* and are
   inlined into every consumer.
3. **Matmul epilogues**: an elementwise kernel that is the only reader of a
   matmul's result, at the same shape, becomes that matmul's epilogue.
   Then **multi-output kernels** (:func:`fuse_sibling_outputs`): a function
   output read by one later elementwise kernel of its shape, element for
   element, is computed in that kernel's loop (Adam's moments and weights in
   one pass), and such a kernel reading a plain matmul's result becomes its
   epilogue too (``Matmul.extra``).
   Last, **batched matmuls that are one GEMM** become one: ``x [B.., M, K] @ w [K, N]``
   (a dense layer over a sequence, and its input gradient) is ``[B..M, K] @ [K, N]``,
   and ``sum over B.. of x^T @ g`` (its kernel gradient) is ``[B..K, M]^T @ [B..K, N]``
   (a matmul carrying ``extra`` outputs keeps its batch loop).
4. **In-place outputs** (``Function.attrs["inplace"]``): the kernel writing
   such an output writes straight into its parameter's memory when that is
   safe -- it reads the parameter only element-for-element and every other
   reader of the parameter can be scheduled before it; otherwise the result
   goes to a temporary copied into place at the very end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from ..diagnostics import LoweringError
from ..ir import dims
from ..ir.builder import Builder, new_function
from ..ir.core import Function, Op, Value
from ..ir.types import Dim, DType, TensorType
from ..ops.base import COMPOSITE, ELEMENTWISE, get_op, normalize_axes
from ..ops.random import PHILOX_OPS
from .attention import lower_attention
from .gemm_lowp import LowpMatmul, lowp_kernel
from .gemm_lowp import native as native_lowp
from .indexing import INDEXING_FAMILIES
from .loops import (
    CONST,
    CONV_KINDS,
    MAX_EXPR_NODES,
    OUTPUT,
    PARAM,
    TEMP,
    VIEW,
    Acc,
    Apply,
    Attention,
    Buffer,
    Const,
    DimValue,
    Elementwise,
    Expr,
    Iota,
    Kernel,
    Load,
    Matmul,
    MemoryPlan,
    Pool,
    Program,
    Reduce,
    Scan,
    Scatter,
    TopK,
    buffers_read,
    conv_kernel,
    expr_size,
    fuse_row_softmax,
    has_take,
    identity_index,
    loads,
    remap,
    replace_buffer,
    replace_loads,
    takes,
    walk,
)
from .pool import lower_pool
from .target import CodegenOptions

# ---------------------------------------------------------------------------
# 1. Composite expansion


def expand_composites(func: Function, origin: dict[Op, set[Op]] | None = None,
                      also: Callable[[Op], bool] | None = None) -> Function:
    """A copy of ``func`` with every composite op replaced by its decomposition.

    ``origin``, when given, receives for each op of the copy the set holding
    the op of ``func`` it comes from.  ``also`` names further ops to replace by
    their ``decompose`` rule (a target without a form of their own: the MLIR
    exporter writes ``attention`` as its unfused composition).
    """
    new, b = new_function(func.name, [(p.name or f"arg{i}", p.type) for i, p in enumerate(func.params)],
                          loc=func.loc)
    vmap: dict[Value, Value] = dict(zip(func.params, new.params))
    for op in func.ops:
        first = len(new.ops)
        results = _emit_expanded(b, op, [vmap[v] for v in op.operands], also)
        vmap.update(zip(op.results, results))
        if origin is not None:
            for emitted in new.ops[first:]:
                origin[emitted] = {op}
    new.outputs = [vmap[v] for v in func.outputs]
    new.output_names = list(func.output_names)
    new.attrs = dict(func.attrs)
    return new


def _emit_expanded(b: Builder, op: Op, operands: list[Value],
                   also: Callable[[Op], bool] | None = None) -> list[Value]:
    opdef = get_op(op.name)
    if opdef is None:
        raise LoweringError(f"unknown op dl.{op.name}", op.loc)
    if opdef.widens and any(v.type.dtype in _HALF for v in operands):
        return _emit_widened(b, op, operands, also)
    if opdef.kind != COMPOSITE and not (opdef.expand is not None and opdef.expand(op)) \
            and not (also is not None and opdef.decompose is not None and also(op)):
        new_op = Builder.make(op.name, operands, dict(op.attrs), op.loc)
        b.func.ops.append(new_op)
        return list(new_op.results)
    if opdef.decompose is None:
        raise LoweringError(f"composite op dl.{op.name} has no decompose rule", op.loc)
    scratch, sb = new_function("decompose", [(f"a{i}", v.type) for i, v in enumerate(operands)],
                               loc=op.loc)
    stand_in = Op(op.name, list(scratch.params), list(op.results), dict(op.attrs), op.loc)
    with sb.at(op.loc):
        outs = opdef.decompose(sb, stand_in)
    smap: dict[Value, Value] = dict(zip(scratch.params, operands))
    for sop in scratch.ops:
        smap.update(zip(sop.results, _emit_expanded(b, sop, [smap[v] for v in sop.operands], also)))
    return [smap[v] for v in outs]


_HALF = frozenset((DType.f16, DType.bf16))


def _emit_widened(b: Builder, op: Op, operands: list[Value],
                  also: Callable[[Op], bool] | None = None) -> list[Value]:
    """An op that computes f16/bf16 in f32 (``OpDef.computes_widened``): its half operands
    cast to f32, the f32 op expanded as any other, each half result rounded back once."""
    with b.at(op.loc):
        wide = [b.cast(v, dtype=DType.f32) if v.type.dtype in _HALF else v for v in operands]
        f32_op = Builder.make(op.name, wide, dict(op.attrs), op.loc)
        results = _emit_expanded(b, f32_op, wide, also)
        return [b.cast(r, dtype=old.type.dtype) if old.type.dtype in _HALF else r
                for r, old in zip(results, op.results)]


# ---------------------------------------------------------------------------
# 2. Bufferization and fusion


# Elementwise ops worth computing once and storing, rather than again in every consumer.
_COSTLY = frozenset({"exp", "log", "tanh", "sigmoid", "pow", "sqrt", "div", "reciprocal",
                     "erf", "expm1", "log1p", "sin", "cos", "softplus", "silu", "gelu", "elu", "selu"})
_COSTLY |= PHILOX_OPS          # random numbers: ten rounds of Philox multiplies each


def _is_leaf(expr: Expr) -> bool:
    return isinstance(expr, (Load, Const, Iota, DimValue))


def _is_cheap(expr: Expr) -> bool:
    """Recomputing beats a buffer: a leaf (a load or less), or one inexpensive op of leaves
    (``x > 0``, ``iota == label``, ``a - b``).  Cheap values inline into every consumer."""
    if _is_leaf(expr):
        return True
    return isinstance(expr, Apply) and expr.op not in _COSTLY and all(_is_leaf(a) for a in expr.args)


def broadcast_map(src: tuple, dst: tuple) -> list[int | None]:
    """numpy broadcasting of shape ``src`` into ``dst`` as an axis map."""
    off = len(dst) - len(src)
    return [None if (d == 1 and dst[j + off] != 1) else j + off for j, d in enumerate(src)]


def squeeze_map(src: tuple, dst: tuple) -> list[int | None] | None:
    """The axis map of a reshape that only adds or drops 1s, else None."""
    src_big = [i for i, d in enumerate(src) if d != 1]
    dst_big = [i for i, d in enumerate(dst) if d != 1]
    if [src[i] for i in src_big] != [dst[i] for i in dst_big]:
        return None
    amap: list[int | None] = [None] * len(src)
    for s, d in zip(src_big, dst_big):
        amap[s] = d
    return amap


def compute_dtype(types: list[TensorType]) -> DType:
    """An elementwise op's operand dtype: that of its non-bool operands (else bool)."""
    for t in reversed(types):
        if t.dtype is not DType.bool:
            return t.dtype
    return DType.bool


class Lowering:
    """Turns one (composite-free) function into a :class:`Program`.

    Non-elementwise ops are lowered by their op-table ``lower(L, op)`` rule,
    which names a kernel family (``op.lowers_to("reduction")``, see
    :data:`KERNEL_FAMILIES`) or builds kernels itself with :meth:`expr`,
    :meth:`buffer`, :meth:`define`, :meth:`new_buffer` and :meth:`add_kernel`.
    """

    def __init__(self, func: Function, fuse: bool = True):
        self.func = func
        self.fuse = fuse
        self.uses: Counter[Value] = Counter(v for op in func.ops for v in op.operands)
        self.uses.update(func.outputs)
        self.exprs: dict[Value, Expr] = {}
        self.buffers: dict[Value, Buffer] = {}
        self.kernels: list[Kernel] = []
        self.extra: list[Buffer] = []
        self.outputs: list[Buffer] = [
            Buffer(f"%out{i}", v.type.dtype, v.type.shape, OUTPUT, i) for i, v in enumerate(func.outputs)]
        self._claimed: set[int] = set()
        self._counter = Counter[str]()
        self.checks: dict[Buffer, str] = {}         # run-time checks (Program.checks)
        self._op: Op | None = None                   # the op being lowered
        self.contrib: dict[Value, set[Op]] = {}      # the ops a virtual value's expression holds
        self.kernel_ops: dict[Kernel, set[Op]] = {}
        self.params = [Buffer(f"%{p.name or f'arg{i}'}", p.type.dtype, p.type.shape, PARAM, i)
                       for i, p in enumerate(func.params)]
        self.buffers.update(zip(func.params, self.params))

    # -- the API lowering rules use ------------------------------------------------------

    def expr(self, v: Value) -> Expr:
        """``v`` as an expression over its own axes (a load if it is materialized)."""
        if v in self.buffers:
            buf = self.buffers[v]
            return Load(buf, identity_index(buf.rank))
        return self.exprs[v]

    def operand_expr(self, v: Value, shape: tuple) -> Expr:
        """``v`` broadcast (numpy rules) to ``shape``, as an expression over its axes."""
        axis_map = broadcast_map(v.type.shape, shape)
        if axis_map == list(range(len(shape))):
            return self.expr(v)                 # same shape: the expression as it is
        return remap(self.expr(v), axis_map)

    def define(self, v: Value, expr: Expr) -> None:
        """Give ``v`` an expression; materialize it now if it is used more than once, or
        if the expression has grown past ``MAX_EXPR_NODES`` (a long fused chain)."""
        self.exprs[v] = expr
        self.contrib[v] = self._current_ops()
        if not _is_cheap(expr) and (self.uses[v] > 1 or not self.fuse
                                    or expr_size(expr, MAX_EXPR_NODES) > MAX_EXPR_NODES):
            self.buffer(v)

    def buffer(self, v: Value) -> Buffer:
        """``v``'s buffer, materializing its expression with an elementwise kernel."""
        if v not in self.buffers:
            expr = self.exprs[v]
            out = self.new_buffer(v)
            self.add_kernel(Elementwise(out, v.type.shape, expr), self.contrib.get(v, set()))
            self.buffers[v] = out
        return self.buffers[v]

    def new_buffer(self, v: Value) -> Buffer:
        """A buffer for ``v``: the output buffer if ``v`` is a not-yet-written output."""
        for i, out in enumerate(self.func.outputs):
            if out is v and i not in self._claimed:
                self._claimed.add(i)
                return self.outputs[i]
        return self.temp(v.type.dtype, v.type.shape)

    def temp(self, dtype: DType, shape: tuple) -> Buffer:
        buf = Buffer(self._name("t"), dtype, tuple(shape), TEMP)
        self.extra.append(buf)
        return buf

    def view(self, base: Buffer, shape: tuple) -> Buffer:
        """``base``'s memory seen with another shape (a reshape without a copy)."""
        buf = Buffer(self._name("v"), base.dtype, tuple(shape), VIEW, base=base)
        self.extra.append(buf)
        return buf

    def add_kernel(self, k: Kernel, ops: set[Op] | None = None) -> None:
        """Append kernel ``k``; it computes ``ops`` (default: the op being lowered and
        the virtual operands fused into it)."""
        self.kernels.append(k)
        self.kernel_ops[k] = set(ops) if ops is not None else self._current_ops()

    def _current_ops(self) -> set[Op]:
        """The op being lowered and the ops of its operands' expressions (fused into it)."""
        op = self._op
        if op is None:
            return set()
        ops = {op}
        for u in op.operands:
            if u not in self.buffers:
                ops |= self.contrib.get(u, set())
        return ops

    def _name(self, prefix: str) -> str:
        n = self._counter[prefix]
        self._counter[prefix] += 1
        return f"%{prefix}{n}"

    # -- driver -----------------------------------------------------------------------------

    def run(self) -> Program:
        for op in self.func.ops:
            if all(self.uses[r] == 0 for r in op.results):
                continue                        # dead code
            self._op = op
            self._lower_op(op)
        self._op = None
        self._write_outputs()
        prog = Program(self.func.name, self.func.symbols, self.params, self.outputs,
                       self.extra, self.kernels)
        prog.kernel_ops = {k: list(ops) for k, ops in self.kernel_ops.items()}
        prog.checks = dict(self.checks)
        if self.fuse:
            fuse_row_softmax(prog)
            fuse_epilogues(prog)
            fuse_sibling_outputs(prog)
            fuse_epilogues(prog)            # a multi-output kernel into the matmul it reads
            if FUSE_POOLS:
                fuse_pools(prog)
        flatten_batched_matmuls(prog)
        apply_inplace(prog, self.func)
        _drop_unused(prog)
        return prog

    def kernel(self, family: str, op: Op) -> None:
        """Lower ``op`` with the kernel family its op definition names (see KERNEL_FAMILIES)."""
        KERNEL_FAMILIES[family](self, op)

    def _lower_op(self, op: Op) -> None:
        opdef = get_op(op.name)
        assert opdef is not None
        if opdef.lower is not None:
            opdef.lower(self, op)
        elif opdef.kind == ELEMENTWISE:
            self._elementwise(op)
        else:
            raise LoweringError(f"no lowering to native code for dl.{op.name}", op.loc)

    def _elementwise(self, op: Op) -> None:
        opdef = get_op(op.name)
        if opdef.emit is None:
            raise LoweringError(f"elementwise op dl.{op.name} has no emit rule", op.loc)
        v = op.result
        args = tuple(self.operand_expr(u, v.type.shape) for u in op.operands)
        in_dtype = compute_dtype([u.type for u in op.operands])
        self.define(v, Apply(op.name, args, v.type.dtype, in_dtype, tuple(sorted(op.attrs.items()))))

    def _write_outputs(self) -> None:
        for i, v in enumerate(self.func.outputs):
            if i in self._claimed:
                continue
            if v not in self.buffers and v in self.exprs and not _is_cheap(self.exprs[v]):
                buf = self.buffer(v)            # claims output i
                if buf is self.outputs[i]:
                    continue
            out = self.outputs[i]
            self._claimed.add(i)
            ops = self.contrib.get(v, set()) if v not in self.buffers else set()
            self.add_kernel(Elementwise(out, v.type.shape, self.expr(v)), ops)


# -- built-in lowerings of non-elementwise ops -------------------------------------------------


def _lower_constant(L: Lowering, op: Op) -> None:
    v = op.result
    value = op.attrs["value"]
    dtype = op.attrs["dtype"]
    if isinstance(value, np.ndarray) and value.ndim > 0:
        buf = Buffer(L._name("c"), dtype, v.type.shape, CONST, data=np.ascontiguousarray(value, dtype.np))
        L.extra.append(buf)
        L.buffers[v] = buf
        return
    scalar = np.asarray(value, dtype=dtype.np)[()]
    # a NaN stays a numpy scalar: its payload bits reach the LLVM constant (llvmutil.const)
    L.define(v, Const(scalar if dtype.is_float and np.isnan(scalar) else scalar.item(), dtype))


def _lower_iota(L: Lowering, op: Op) -> None:
    v = op.result
    L.define(v, Iota(op.attrs["axis"] % v.type.rank, v.type.dtype))


def _lower_dim_size(L: Lowering, op: Op) -> None:
    x = op.operands[0]
    dim = x.type.shape[op.attrs["axis"] % x.type.rank]
    dtype = op.attrs["dtype"]
    L.define(op.result, Const(dim, dtype) if isinstance(dim, int) else DimValue(dim, dtype))


def _lower_broadcast_to(L: Lowering, op: Op) -> None:
    v = op.result
    L.define(v, L.operand_expr(op.operands[0], v.type.shape))


def _lower_transpose(L: Lowering, op: Op) -> None:
    from ..ops.layout import resolve_perm

    x, v = op.operands[0], op.result
    perm = resolve_perm(op.attrs["perm"], x.type.rank)
    amap: list[int | None] = [0] * x.type.rank
    for i, p in enumerate(perm):
        amap[p] = i
    L.define(v, remap(L.expr(x), amap))


def _lower_reshape(L: Lowering, op: Op) -> None:
    x, v = op.operands[0], op.result
    amap = squeeze_map(x.type.shape, v.type.shape)
    if amap is not None:
        L.define(v, remap(L.expr(x), amap))
        return
    L.buffers[v] = L.view(_dense_operand(L, x), v.type.shape)


def _lower_reduction(L: Lowering, op: Op) -> None:
    x, v = op.operands[0], op.result
    if op.name in ("argmax", "argmin"):
        axes = normalize_axes((op.attrs["axis"],), x.type.rank)
    else:
        axes = normalize_axes(op.attrs["axes"], x.type.rank)
    out = L.new_buffer(v)
    L.add_kernel(Reduce(out, op.name, x.type.shape, axes, L.expr(x)))
    L.buffers[v] = out


def _lower_scan(L: Lowering, op: Op) -> None:
    """``cumsum`` of the (fused) operand expression: a :class:`Scan` kernel (``scan.py``)."""
    x, v = op.operands[0], op.result
    out = L.new_buffer(v)
    axis = op.attrs["axis"] % x.type.rank
    L.add_kernel(Scan(out, x.type.shape, axis, L.expr(x), op.attrs["reverse"], op.attrs["exclusive"]))
    L.buffers[v] = out


def _lower_top_k(L: Lowering, op: Op) -> None:
    """``top_k``: a :class:`TopK` kernel (``topk.py``) per result that is used, each reading
    the operand from memory (a selection reads elements again)."""
    x = op.operands[0]
    expr = L.expr(x)
    if not isinstance(expr, Load):
        expr = Load(L.buffer(x), identity_index(x.type.rank))
    for result, v in zip(("values", "indices"), op.results):
        if L.uses[v] == 0:
            continue
        out = L.new_buffer(v)
        L.add_kernel(TopK(out, x.type.shape, op.attrs["k"], expr, result))
        L.buffers[v] = out


def _lower_matmul(L: Lowering, op: Op) -> None:
    lhs, rhs = op.operands
    v = op.result
    # rank-1 operands act as [1, K] and [K, 1] (numpy); views, no copies
    a, ta = _matmul_side(L, lhs, vector_shape=(1, lhs.type.shape[0]) if lhs.type.rank == 1 else None)
    b, tb = _matmul_side(L, rhs, vector_shape=(rhs.type.shape[0], 1) if rhs.type.rank == 1 else None)
    a_shape = a.shape if not ta else (*a.shape[:-2], a.shape[-1], a.shape[-2])
    b_shape = b.shape if not tb else (*b.shape[:-2], b.shape[-1], b.shape[-2])
    m, k = a_shape[-2], a_shape[-1]
    n = b_shape[-1]
    dropped = (lhs.type.rank == 1) + (rhs.type.rank == 1)     # axes numpy drops from the result
    batch = v.type.shape[:v.type.rank - (2 - dropped)]
    full = (*batch, m, n)
    out = L.new_buffer(v)
    target = out if tuple(out.shape) == full else L.view(out, full)
    kernel = Matmul(target, a, b, ta, tb, m, n, k, tuple(batch),
                    tuple(broadcast_map(a.shape[:-2], batch)),
                    tuple(broadcast_map(b.shape[:-2], batch)))
    if op.name == "matmul_lowp":         # a kernel form of its own (gemm_lowp.py)
        kernel = lowp_kernel(kernel, op.attrs["precision"])
    L.add_kernel(kernel)
    L.buffers[v] = out


def _matmul_side(L: Lowering, x: Value, vector_shape: tuple | None) -> tuple[Buffer, bool]:
    if vector_shape is not None:
        return L.view(L.buffer(x), vector_shape), False
    expr = L.expr(x)
    rank = x.type.rank
    if isinstance(expr, Load) and expr.buffer.rank == rank:
        batch = tuple(range(rank - 2))
        if expr.index == identity_index(rank):
            return expr.buffer, False
        if expr.index == (*batch, rank - 1, rank - 2):
            return expr.buffer, True
    return L.buffer(x), False


def _lower_conv(L: Lowering, op: Op) -> None:
    """``conv2d`` and its gradients: one :class:`Conv` kernel over dense operands."""
    from ..ops.conv import shape_of

    v = op.result
    a, b = (_dense_operand(L, u) for u in op.operands)
    out = L.new_buffer(v)
    L.add_kernel(conv_kernel(CONV_KINDS[op.name], shape_of(op), out, a, b))
    L.buffers[v] = out


def _dense_operand(L: Lowering, x: Value) -> Buffer:
    """``x``'s elements in row-major order: its buffer, or a view of the buffer that a
    reshape adding or dropping 1s reads (``conv1d``'s ``[N, L, C] -> [N, 1, L, C]``)."""
    expr = L.expr(x)
    if isinstance(expr, Load):
        buf = expr.buffer
        if expr.index == identity_index(buf.rank) and tuple(buf.shape) == tuple(x.type.shape):
            return buf
        if squeeze_map(tuple(buf.shape), tuple(x.type.shape)) == list(expr.index):
            return L.view(buf, x.type.shape)
    return L.buffer(x)


# The kernel families a non-elementwise op names in its ``lower`` rule
# (``compiler/ops``): the op says *which* kernel computes it, codegen says how.
KERNEL_FAMILIES: dict[str, Callable[[Lowering, Op], None]] = {
    "constant": _lower_constant,
    "iota": _lower_iota,
    "dim_size": _lower_dim_size,
    "broadcast": _lower_broadcast_to,
    "transpose": _lower_transpose,
    "view": _lower_reshape,
    "reduction": _lower_reduction,
    "matmul": _lower_matmul,
    "matmul_lowp": _lower_matmul,
    "scan": _lower_scan,
    "top_k": _lower_top_k,
    **INDEXING_FAMILIES,        # slice, slice_update, concat, gather, ..., scatter_add
    "pool": lower_pool,             # max_pool2d, avg_pool2d and their gradients (pool.py)
    "conv": _lower_conv,
    "attention": lower_attention,   # attention and its gradient (attention.py)
}


def has_lowering(name: str) -> bool:
    """Whether codegen can lower op ``name`` (directly, by emit, decompose or lower rule)."""
    opdef = get_op(name)
    if opdef is None:
        return False
    if opdef.lower is not None:
        return True
    if opdef.kind == ELEMENTWISE:
        return opdef.emit is not None
    return (opdef.kind == COMPOSITE or opdef.expand is not None) and opdef.decompose is not None


# ---------------------------------------------------------------------------
# 3. Matmul epilogues


def _producers(prog: Program) -> dict[Buffer, Kernel]:
    return {b.root: k for k in prog.kernels for b in k.writes()}


def _readers(prog: Program) -> dict[Buffer, list[Kernel]]:
    out: dict[Buffer, list[Kernel]] = {}
    for k in prog.kernels:
        for b in k.reads():
            out.setdefault(b.root, []).append(k)
    return out


def _contiguous_along_last_axis(expr: Expr, rank: int) -> bool:
    """Whether every load reads consecutive elements as the last loop axis advances
    (or does not depend on it): what a vectorised matmul epilogue can do."""
    last = rank - 1
    for ld in loads(expr):
        if last in ld.index:
            k = ld.index.index(last)
            if any(d != 1 for d in ld.buffer.shape[k + 1:]):
                return False
    return True


def fuse_epilogues(prog: Program) -> None:
    """Fold an elementwise kernel into the matmul whose temp result it alone reads."""
    producers = _producers(prog)
    readers = _readers(prog)
    for ew in list(prog.kernels):
        if not isinstance(ew, Elementwise):
            continue
        exprs = [e for _, e in ew.outputs()]
        for ld in loads(ew.expr):
            mm = producers.get(ld.buffer)
            if not (isinstance(mm, Matmul) and not isinstance(mm, LowpMatmul)
                    and mm.epilogue is None and mm.out is ld.buffer
                    and ld.buffer.role == TEMP and readers.get(ld.buffer) == [ew]
                    # a multi-output kernel (fuse_sibling_outputs) reads the sum in each of its
                    # expressions: a plain matmul's store writes them all.  Not a convolution's:
                    # its kernel gradient with an in-place epilogue accumulates in a region of
                    # its own first, which cost more than the separate pass over the (small)
                    # kernel saved (CNN step, b32 / b128: 1.6 / 2.6 % slower, b1 no faster)
                    and (len([x for x in loads(ew.expr) if x.buffer is ld.buffer]) == 1
                         if not ew.extra else type(mm) is Matmul)
                    and all(x.index == identity_index(ld.buffer.rank)
                            for e in exprs for x in loads(e) if x.buffer is ld.buffer)
                    and tuple(ew.shape) == tuple(ld.buffer.shape)
                    and all(buf.dtype is not DType.bool
                            # the GEMM stores its own dtype: an epilogue that casts stays a kernel of its own
                            and buf.dtype is ld.buffer.dtype for buf, _ in ew.outputs())
                    and not any(isinstance(e, Apply) and e.op == "cast" for x in exprs for e in walk(x))
                    and not any(has_take(e) for e in exprs)           # epilogues emit loads only
                    and all(_contiguous_along_last_axis(e, len(ew.shape)) for e in exprs)):
                continue

            def acc(e: Expr, t: Buffer = ld.buffer) -> Expr:
                return replace_loads(e, lambda one: Acc(one.dtype) if one.buffer is t else one)
            mm.epilogue = acc(ew.expr)
            mm.extra = tuple((buf, acc(e)) for buf, e in ew.extra)
            mm.out = ew.out
            merged = prog.kernel_ops.get(mm, []) + prog.kernel_ops.pop(ew, [])
            prog.kernel_ops[mm] = list(dict.fromkeys(merged))
            prog.kernels.remove(mm)
            prog.kernels[prog.kernels.index(ew)] = mm
            for buf in ew.writes():
                producers[buf.root] = mm
            break


FUSE_POOLS = True     # off: every pool its own kernel (tests and benchmarks compare the two)


def fuse_pools(prog: Program) -> None:
    """Fold a 2x2, stride-2 max pool into the forward convolution whose temp result (its
    bias and activation already fused) it alone reads, when the convolution runs on the
    direct path (``conv.pool_fusable``): the convolution pools each pair of output rows as
    it computes them and writes only the pooled image; the full-resolution one is never
    stored (docs/codegen.md, "Convolution").  Not when another kernel reads the result (a
    training step's pool gradient): writing it and pooling it while in L1 measured no
    faster than the separate pool."""
    from .conv import pool_fusable
    from .loops import Conv

    producers = _producers(prog)
    readers = _readers(prog)
    for pool in list(prog.kernels):
        if not isinstance(pool, Pool) or pool.kind != "max":
            continue
        x = pool.inputs[0]
        k = producers.get(x.root)
        if not (isinstance(k, Conv) and k.pooled is None and not k.extra and k.out is x
                and x.role == TEMP and x.base is None and readers.get(x) == [pool]
                and pool.out.role in (TEMP, OUTPUT) and pool.out.base is None and pool.out.dtype is x.dtype
                and x not in prog.checks and pool.out not in prog.checks
                and pool_fusable(k, pool.window)):
            continue
        k.pooled = pool.out
        merged = prog.kernel_ops.get(k, []) + prog.kernel_ops.pop(pool, [])
        prog.kernel_ops[k] = list(dict.fromkeys(merged))
        prog.kernels.remove(pool)
        producers[pool.out.root] = k


def _flat_dim(dims_: tuple, m: Dim) -> Dim | None:
    """``prod(dims_) * m`` as one dim, or None when that is a product of two symbols."""
    total = m
    for d in dims_:
        if isinstance(d, int) and isinstance(total, int):
            total = d * total
        elif isinstance(d, int):
            total = dims.scale(total, d)
        elif isinstance(total, int):
            total = dims.scale(d, total)
        else:
            return None
    return total


class _Views:
    """New view buffers of a program (a reshape without a copy), named apart from its own."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.made: dict[tuple[Buffer, tuple], Buffer] = {}

    def __call__(self, base: Buffer, shape: tuple) -> Buffer:
        """``base`` seen as ``shape`` (one view per buffer and shape)."""
        if tuple(base.shape) == tuple(shape):
            return base
        key = (base, tuple(shape))
        if key not in self.made:
            self.made[key] = Buffer(f"%flat{len(self.made) + 1}", base.dtype, tuple(shape), VIEW, base=base)
            self.prog.buffers.append(self.made[key])
        return self.made[key]


def _flat_epilogue(expr: Expr, batch: tuple, m: Dim, n: Dim, rows: Dim, view: _Views) -> Expr | None:
    """A ``[*batch, m, n]`` epilogue over the flat ``[rows, n]`` loop, or None: loads at the
    output's own element become loads of a ``[rows, n]`` view, loads along ``j`` only stay."""
    nb = len(batch)
    full, ident = (*batch, m, n), identity_index(nb + 2)
    if any(isinstance(e, Iota) and e.axis <= nb for e in walk(expr)) or has_take(expr):
        return None
    ok = True

    def flat(ld: Load) -> Expr:
        nonlocal ok
        if ld.index == ident and tuple(ld.buffer.shape) == full:
            return Load(view(ld.buffer, (rows, n)), (0, 1))
        if all(a is None or a == nb + 1 for a in ld.index):
            return Load(ld.buffer, tuple(None if a is None else 1 for a in ld.index))
        ok = False
        return ld

    out = replace_loads(expr, flat)
    return out if ok else None


def flatten_batched_matmuls(prog: Program) -> None:
    """Turn batched matmuls that are one GEMM into that GEMM (M or K times the batch larger):

    - ``a [*B, M, K] @ b [K, N]`` with ``b`` broadcast over every batch axis and ``a`` dense
      (not transposed) is ``a [B*M, K] @ b`` into the output seen as ``[B*M, N]``;
    - ``sum over *B of a^T @ b`` for ``a [*B, K, M]``, ``b [*B, K, N]`` (a matmul whose
      result only that reduction reads: a kernel's gradient through a dense layer over a
      sequence) is ``a [B*K, M]^T @ b [B*K, N]`` written straight into the sum's output.

    Both are the same sums in another order; the GEMM then sees one large operand instead
    of B small ones (``[N, 9, 128] @ [128, 512]`` is 64 GEMMs of 9 rows at batch 64)."""
    view = _Views(prog)
    producers = _producers(prog)
    readers = _readers(prog)
    for k in list(prog.kernels):
        if isinstance(k, Matmul) and not isinstance(k, LowpMatmul) and k.batch and not k.extra \
                and all(b is None for b in k.b_batch) \
                and not k.trans_a \
                and k.a_batch == identity_index(len(k.batch)) \
                and tuple(k.a.shape) == (*k.batch, k.m, k.k) \
                and tuple(k.out.shape) == (*k.batch, k.m, k.n):
            rows = _flat_dim(k.batch, k.m)
            if rows is None:
                continue
            epilogue = None
            if k.epilogue is not None:
                epilogue = _flat_epilogue(k.epilogue, k.batch, k.m, k.n, rows, view)
                if epilogue is None:
                    continue
            k.a, k.out, k.m = view(k.a, (rows, k.k)), view(k.out, (rows, k.n)), rows
            k.b = view(k.b, (k.k, k.n) if not k.trans_b else (k.n, k.k))
            k.batch, k.a_batch, k.b_batch, k.epilogue = (), (), (), epilogue
        elif isinstance(k, Reduce) and k.kind == "sum" and isinstance(k.expr, Load) and not k.extra:
            t = k.expr.buffer
            mm = producers.get(t)
            nb = len(k.axes)
            if not (isinstance(mm, Matmul) and not isinstance(mm, LowpMatmul) and mm.out is t
                    and t.role == TEMP and mm.epilogue is None and not mm.extra
                    and readers.get(t) == [k] and k.expr.index == identity_index(t.rank)
                    and nb == len(mm.batch) and k.axes == identity_index(nb)
                    and mm.trans_a and not mm.trans_b
                    and mm.a_batch == mm.b_batch == identity_index(nb)
                    and tuple(mm.a.shape) == (*mm.batch, mm.k, mm.m)
                    and tuple(mm.b.shape) == (*mm.batch, mm.k, mm.n)
                    and mm.out.dtype is k.out.dtype):
                continue
            depth = _flat_dim(mm.batch, mm.k)
            if depth is None:
                continue
            gemm = Matmul(view(k.out, (mm.m, mm.n)), view(mm.a, (depth, mm.m)), view(mm.b, (depth, mm.n)),
                          True, False, mm.m, mm.n, depth)
            prog.kernels[prog.kernels.index(k)] = gemm
            prog.kernels.remove(mm)
            prog.kernel_ops[gemm] = list(dict.fromkeys(prog.kernel_ops.pop(mm, []) + prog.kernel_ops.pop(k, [])))
            producers[k.out.root] = gemm


def fuse_sibling_outputs(prog: Program) -> None:
    """Fold an elementwise kernel whose result is a function output read by just one
    elementwise kernel of the same shape, element for element, into that reader: one loop
    computes and stores both (a multi-output kernel, ``Elementwise.extra``), the reader
    taking the value from the producer's expression instead of loading it back.

    Adam's update is the case: ``m' = m + (g - m) (1 - b1)`` and ``v' = ...`` are outputs
    (written over ``m`` and ``v`` in place) and ``w' = w - lr m' / (sqrt(v') + eps)``
    reads them: three passes over the parameter-sized arrays become one, which reads
    ``g m v w`` once and writes ``m' v' w'`` (7 streams instead of 10).  The values are
    the same operations on the same operands, so results do not change.  Runs before
    :func:`apply_inplace`, while every buffer is written by one kernel only, so moving a
    producer down to its reader cannot read anything a kernel in between wrote.
    """
    producers = _producers(prog)
    readers = _readers(prog)
    viewed = {b.base.root for b in prog.buffers if b.base is not None}
    for ew in list(prog.kernels):
        if not isinstance(ew, Elementwise):
            continue
        while True:
            src = _sibling_producer(ew, producers, readers, viewed)
            if src is None:
                break
            x = src.out
            merged = replace_loads(ew.expr, lambda ld, x=x, e=src.expr: e if ld.buffer is x else ld)
            ew.expr = merged
            ew.extra = (*ew.extra, (x, src.expr))
            prog.kernels.remove(src)
            ops = prog.kernel_ops.pop(src, []) + prog.kernel_ops.get(ew, [])
            prog.kernel_ops[ew] = list(dict.fromkeys(ops))
            producers[x] = ew
            for buf in buffers_read(src.expr):
                readers[buf.root] = list(dict.fromkeys(ew if r is src else r for r in readers[buf.root]))
            readers.pop(x, None)


def _sibling_producer(ew: Elementwise, producers: dict[Buffer, Kernel], readers: dict[Buffer, list[Kernel]],
                      viewed: set[Buffer]) -> Elementwise | None:
    """The kernel :func:`fuse_sibling_outputs` may fold into ``ew`` next, if any."""
    shape = tuple(ew.shape)
    ident = identity_index(len(shape))
    for ld in loads(ew.expr):
        x = ld.buffer
        src = producers.get(x)
        if not (isinstance(src, Elementwise) and src is not ew and not src.extra and src.out is x
                and x.role == OUTPUT and x.base is None and x not in viewed
                and readers.get(x) == [ew] and tuple(src.shape) == shape == tuple(x.shape)
                and not has_take(src.expr) and not any(t.buffer is x for t in takes(ew.expr))
                and all(other.index == ident for other in loads(ew.expr) if other.buffer is x)):
            continue
        grown = replace_loads(ew.expr, lambda other, x=x, e=src.expr: e if other.buffer is x else other)
        if expr_size(grown, MAX_EXPR_NODES) > MAX_EXPR_NODES:
            continue
        return src
    return None


# ---------------------------------------------------------------------------
# 4. In-place outputs and scheduling


def _reads_identity_only(k: Kernel, param: Buffer) -> bool:
    """Whether ``k`` reads ``param`` only at the element it writes (a take's read at computed
    coordinates never counts as that element)."""
    if isinstance(k, (Reduce, Scan, TopK, Pool, Attention)) or getattr(k, "pooled", None) is not None:
        return param not in [b.storage for b in k.reads()]      # an output element depends on many inputs
    if isinstance(k, Scatter):
        # out = base element by element, then the additions: they run over param's memory
        if any(b.storage is param for e in (*k.index, k.value) for b in buffers_read(e)):
            return False
        expr, shape = k.base, k.out.shape
    elif isinstance(k, Matmul):
        if param in (k.a.storage, k.b.storage):
            return False
        if k.extra:
            shape = (*k.batch, k.m, k.n)
            return all(_reads_identity_only(Elementwise(buf, shape, e), param)
                       for buf, e in [*k.extra, (k.out, k.epilogue)] if e is not None)
        expr = k.epilogue
        shape = (*k.batch, k.m, k.n)
    elif isinstance(k, Elementwise) and k.extra:
        return all(_reads_identity_only(Elementwise(buf, k.shape, e), param) for buf, e in k.outputs())
    else:
        expr, shape = k.expr, k.shape
    if expr is None:
        return True
    if any(t.buffer.storage is param for t in takes(expr)):
        return False
    for ld in loads(expr):
        if ld.buffer.storage is not param:
            continue
        if not (ld.buffer.shape == shape and k.out.shape == shape
                and ld.index == identity_index(len(shape))):
            return False
    return True


def _schedule(kernels: list[Kernel], extra_edges: list[tuple[Kernel, Kernel]]) -> list[Kernel] | None:
    """Kernels in an order respecting data dependences and ``extra_edges``
    (stable: keeps the given order where free); None if there is a cycle."""
    producer = {b.root: k for k in kernels for b in k.writes()}
    deps: dict[Kernel, set[Kernel]] = {k: set() for k in kernels}
    for k in kernels:
        for b in k.reads():
            p = producer.get(b.root)
            if p is not None and p is not k:
                deps[k].add(p)
    for before, after in extra_edges:
        if before is not after:
            deps[after].add(before)
    order: list[Kernel] = []
    done: set[Kernel] = set()
    pending = list(kernels)
    while pending:
        for k in pending:
            if deps[k] <= done:
                order.append(k)
                done.add(k)
                pending.remove(k)
                break
        else:
            return None
    return order


def apply_inplace(prog: Program, func: Function) -> None:
    """Honour ``func.attrs["inplace"]``: write outputs into their parameter's memory."""
    pairs = func.attrs.get("inplace") or ()
    names = {p.name: i for i, p in enumerate(func.params)}
    seen_out: set[int] = set()
    seen_param: set[str] = set()
    edges: list[tuple[Kernel, Kernel]] = []
    copies: list[Kernel] = []
    writers: list[Kernel] = []
    for out_index, param_name in pairs:
        if param_name not in names or not 0 <= out_index < len(prog.outputs):
            raise LoweringError(f"@{func.name}: inplace pair ({out_index}, '{param_name}') "
                                "names no such output or parameter", func.loc)
        if out_index in seen_out or param_name in seen_param:
            raise LoweringError(f"@{func.name}: output {out_index} or parameter '{param_name}' "
                                "appears in two inplace pairs", func.loc)
        seen_out.add(out_index)
        seen_param.add(param_name)
        out, param = prog.outputs[out_index], prog.params[names[param_name]]
        if out.dtype != param.dtype or tuple(out.shape) != tuple(param.shape):
            raise LoweringError(f"@{func.name}: inplace output {out_index} ({out.type_str()}) does not "
                                f"match parameter '{param_name}' ({param.type_str()})", func.loc)
        out.inplace_of = param
        writer = next(k for k in prog.kernels if any(w.root is out for w in k.writes()))
        others = [k for k in prog.kernels if k is not writer
                  and any(b.root is param for b in k.reads())]
        trial = edges + [(r, writer) for r in others]
        if _reads_identity_only(writer, param) and _schedule(prog.kernels, trial) is not None:
            edges = trial
            writers.append(writer)
            continue
        # Not safe in place: compute into a temporary, copy into the parameter at the end.
        tmp = Buffer(f"%t{len(prog.temps)}_{out.name[1:]}", out.dtype, out.shape, TEMP)
        prog.buffers.append(tmp)
        _retarget(prog, out, tmp)
        copies.append(Elementwise(out, out.shape, Load(tmp, identity_index(out.rank))))
    edges = _checks_first(prog, edges, writers)
    order = _schedule(prog.kernels, edges)
    assert order is not None
    prog.kernels = order + copies


def _checks_first(prog: Program, edges: list[tuple[Kernel, Kernel]],
                  writers: list[Kernel]) -> list[tuple[Kernel, Kernel]]:
    """``edges`` and, where the data allow it, an edge from each run-time check's kernel to
    each kernel writing a parameter in place: a failed check (an index out of range) then
    returns before any parameter changed."""
    for check in [k for k in prog.kernels if k.out in prog.checks]:
        for w in writers:
            trial = edges + [(check, w)]
            if _schedule(prog.kernels, trial) is not None:
                edges = trial
    return edges


def _retarget(prog: Program, old: Buffer, new: Buffer) -> None:
    """Make the kernel writing ``old`` write ``new``, and its readers read ``new``
    (through loads and takes)."""
    for b in prog.buffers:
        if b.base is old:
            b.base = new
    for k in prog.kernels:
        if k.out is old:
            k.out = new
        if isinstance(k, Elementwise) and k.extra:
            k.extra = tuple((new if buf is old else buf, replace_buffer(e, old, new)) for buf, e in k.extra)
        if isinstance(k, (Elementwise, Reduce, Scan, TopK)):
            k.expr = replace_buffer(k.expr, old, new)
        elif isinstance(k, Scatter):
            k.base, k.value = replace_buffer(k.base, old, new), replace_buffer(k.value, old, new)
            k.index = tuple(replace_buffer(e, old, new) for e in k.index)
        elif isinstance(k, Pool):
            k.inputs = tuple(new if b is old else b for b in k.inputs)
        elif isinstance(k, Attention):
            k.replace(old, new)
        else:
            k.a = new if k.a is old else k.a
            k.b = new if k.b is old else k.b
            if k.epilogue is not None:
                k.epilogue = replace_buffer(k.epilogue, old, new)
            k.extra = tuple((new if buf is old else buf, replace_buffer(e, old, new)) for buf, e in k.extra)


def _drop_unused(prog: Program) -> None:
    """Forget temps, views and consts no kernel touches (e.g. fused-away matmul results)."""
    needed: set[Buffer] = set()
    for k in prog.kernels:
        for buf in (*k.writes(), *k.reads()):
            while buf is not None:
                needed.add(buf)
                buf = buf.base
    prog.buffers = [b for b in prog.buffers if b in needed]


def lower_function(func: Function, fuse: bool = True, plan: bool = True,
                   options: CodegenOptions | None = None) -> Program:
    """Lower one dl function to loop IR (see the module docstring).

    ``options`` (default: the host's) decides which ``matmul_lowp`` kernel forms have
    their instructions (``gemm_lowp.native``); the others are their decomposition.

    ``prog.kernel_ops`` names, per kernel, the ops of ``func`` it computes
    (:func:`fusion_groups` turns it around); ``plan`` shares the workspace
    between temporaries whose lifetimes do not overlap (:func:`plan_memory`).
    """
    from ..passes.cse import cse_function, op_key

    origin: dict[Op, set[Op]] = {}
    primitives = expand_composites(
        func, origin, also=lambda op: op.name == "matmul_lowp" and not native_lowp(op, options))
    before = list(primitives.ops)
    cse_function(primitives)        # decompositions repeat work (a loss and its gradient's softmax)
    if len(primitives.ops) != len(before):
        survivor = {op_key(op): op for op in primitives.ops}
        kept = set(primitives.ops)
        for op in before:
            # a merged constant (each `0.5` of a program) is inlined in every kernel reading
            # the survivor: crediting each copy to all of them would cost constants x kernels
            if op not in kept and op.name != "constant":
                origin.setdefault(survivor[op_key(op)], set()).update(origin.get(op, ()))
    prog = Lowering(primitives, fuse=fuse).run()
    position = {op: i for i, op in enumerate(func.ops)}
    prog.kernel_ops = {k: sorted({o for p in ops for o in origin.get(p, ())}, key=position.__getitem__)
                       for k, ops in prog.kernel_ops.items()}
    if plan:
        plan_memory(prog)
    return prog


def fusion_groups(prog: Program) -> dict[Op, list[int]]:
    """Each dl op -> the indices of the kernels that compute it (several when a cheap
    value is recomputed in each consumer, or a composite spans kernels)."""
    groups: dict[Op, list[int]] = {}
    for i, k in enumerate(prog.kernels):
        for op in prog.kernel_ops.get(k, ()):
            groups.setdefault(op, []).append(i)
    return groups


def kernel_clusters(func: Function, fuse: bool = True) -> dict[Op, str]:
    """``func``'s ops -> the name of the native kernel(s) computing them (``k3``, or
    ``k3, k7`` for a value recomputed in several), for ``dlc graph --kernels``."""
    prog = lower_function(func, fuse=fuse, plan=False)
    return {op: ", ".join(f"k{i}" for i in ks) for op, ks in fusion_groups(prog).items()}


# ---------------------------------------------------------------------------
# 5. Memory planning


def liveness(prog: Program) -> dict[Buffer, tuple[int, int]]:
    """Each temporary's memory (a root buffer) -> (first, last) index of the kernels
    touching it, through any view."""
    live: dict[Buffer, tuple[int, int]] = {}
    for i, k in enumerate(prog.kernels):
        for buf in (*k.writes(), *k.reads()):
            root = buf.root
            if root.role == TEMP:
                first, _ = live.get(root, (i, i))
                live[root] = (first, i)
    return live


def _size_class(buf: Buffer) -> tuple[tuple[str, ...], int]:
    """(symbolic dims, sorted; bytes per unit of their product): two buffers of one
    class compare the same way for every value of the dims."""
    coeff = buf.dtype.itemsize
    for d in buf.shape:
        if isinstance(d, int):
            coeff *= d
    return tuple(sorted(str(d) for d in buf.shape if not isinstance(d, int))), coeff


def _writes_over(k: Kernel, operand: Buffer) -> bool:
    """Whether elementwise kernel ``k`` may store its result over ``operand``'s memory:
    it reads that memory only at the element it writes, at the same dtype and shape."""
    if not isinstance(k, Elementwise) or k.extra or k.out.base is not None or k.out.role != TEMP:
        return False
    if operand.dtype != k.out.dtype or tuple(operand.shape) != tuple(k.out.shape):
        return False
    if tuple(k.shape) != tuple(k.out.shape):
        return False
    identity = identity_index(len(k.shape))
    if any(t.buffer.root is operand for t in takes(k.expr)):
        return False
    return all(ld.buffer is operand and ld.index == identity
               for ld in loads(k.expr) if ld.buffer.root is operand)


def plan_memory(prog: Program) -> None:
    """Share the workspace between temporaries whose lifetimes do not overlap.

    1. In place: an elementwise kernel writes its temporary result over a
       temporary operand whose last use it is (same dtype and shape, read only
       at the element written); the result becomes a view of the operand.
    2. Greedy best fit, by first use: a temporary goes into a free slot of its
       size class (same symbolic dims, so sizes compare the same for every
       batch size): the smallest one at least as large, else the largest (which
       grows); else a new slot.  A slot's largest member stays a temporary; the
       others become views of it (another dtype and shape over the same memory).

    Records a :class:`~.loops.MemoryPlan` in ``prog.memory``.
    """
    before = [b for b in prog.buffers if b.role == TEMP]
    live = liveness(prog)
    inplace: list[tuple[Buffer, Buffer]] = []
    for i, k in enumerate(prog.kernels):
        out = k.out
        if out.root is not out or out.role != TEMP or live.get(out, (-1, -1))[0] != i:
            continue
        for ld in loads(k.expr) if isinstance(k, Elementwise) else ():
            operand = ld.buffer
            if operand.role == TEMP and operand.base is None and live[operand][1] == i \
                    and _writes_over(k, operand):
                out.role, out.base = VIEW, operand
                live[operand] = (live[operand][0], live.pop(out)[1])
                inplace.append((out, operand))
                break
    slots: list[list[Buffer]] = []
    slot_end: list[int] = []
    for buf in sorted(live, key=lambda b: live[b][0]):
        cls, size = _size_class(buf)
        free = [j for j, members in enumerate(slots)
                if slot_end[j] < live[buf][0] and _size_class(members[0])[0] == cls]
        if free:
            sizes = {j: max(_size_class(m)[1] for m in slots[j]) for j in free}
            fits = [j for j in free if sizes[j] >= size]
            j = min(fits, key=lambda j: sizes[j]) if fits else max(free, key=lambda j: sizes[j])
            slots[j].append(buf)
            slot_end[j] = live[buf][1]
        else:
            slots.append([buf])
            slot_end.append(live[buf][1])
    for members in slots:
        members.sort(key=lambda m: -_size_class(m)[1])      # the largest owns the memory
        owner = members[0]
        for m in members[1:]:
            m.role, m.base = VIEW, owner
    # views after the buffers they view, so the printed program reads top-down
    order = {b: i for i, b in enumerate(prog.buffers)}
    prog.buffers.sort(key=lambda b: (_depth(b), order[b]))
    prog.memory = MemoryPlan(before, slots, live, inplace)


def _depth(buf: Buffer) -> int:
    depth = 0
    while buf.base is not None:
        buf, depth = buf.base, depth + 1
    return depth


__all__ = ["lower_function", "expand_composites", "Lowering", "KERNEL_FAMILIES", "has_lowering",
           "fuse_epilogues", "fuse_pools", "apply_inplace", "fusion_groups", "kernel_clusters", "liveness",
           "plan_memory"]
