"""The decode function: a causal language model's ``predict`` rewritten to run new tokens
against a key/value cache, so that each generated token costs O(T) instead of a forward
pass over the whole window.

:func:`build_decode` derives from ``predict(params..., state..., tokens: i32[N, T])``::

    decode(params..., state..., tokens: i32[N, S], pos: i32[],
           kv.0.key: [N, H, L, Dh], kv.0.value: [N, H, L, Dh], ...)
        -> (outputs at the S new positions..., new kv.0.key, new kv.0.value, ...)

``tokens`` are the tokens at absolute positions ``pos .. pos+S-1`` (``S >= 1``: the
prompt's prefill and each next token are the same function), ``L`` the longest context
(the position table's size, a static ``T``, or what the caller gives), and there is one
key cache and one value cache per causal ``attention`` op, paired ``inplace`` with their
new values so native code updates them in their own buffers.  The caller keeps
``0 <= pos`` and ``pos + S <= L`` (``runtime/decode.py``'s session does); ``S = 0`` is an
index error when the function runs, as is a position past a position table.

The rewrite follows the sequence axis from ``tokens`` through the ops, one rule per kind
of op (the table in :meth:`_Decoder.op`): position-wise ops (elementwise, reductions and
softmaxes over other axes, ``matmul`` against weights, reshapes and transposes that keep
the axis identifiable, ``gather`` of embeddings) are rebuilt over ``S`` positions; an
``iota`` along the sequence becomes ``pos + iota`` (position embeddings; composites such
as ``sinusoidal_positions`` are expanded by their ``decompose`` rule and followed the same
way); each ``attention(causal=true)`` writes its new key and value rows into the caches at
``[pos, pos+S)`` and attends its ``S`` queries over the whole cache with the mask
``key j <= pos + i`` (rows past ``pos+S`` are masked out, whatever they hold).  Anything
that mixes positions in another way -- a reduction or a slice along the sequence, a
``[T, T]`` mask or score matrix written from ops (``std/nn.dl``'s
``causal_self_attention``), non-causal attention -- is a :class:`DecodeError` naming the op
and its source line; ``dlc generate`` then runs the model without a cache.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .diagnostics import DlError
from .ir import dims
from .ir.builder import Builder, new_function
from .ir.core import Function, Module, Op, Value
from .ir.dims import DimExpr
from .ir.types import Dim, DType, TensorType
from .ir.verifier import verify_function
from .ops.base import COMPOSITE, ELEMENTWISE, REDUCTION, SOURCE, get_op, shape_str
from .passes.dce import dce_function

DECODE = "decode"
POS_NAME = "pos"
SEQ_SYMBOL = "S"           # the new positions' count (another name if the model uses S)


class DecodeError(DlError):
    """A model whose ``predict`` cannot be rewritten to run against a key/value cache."""


@dataclass(frozen=True)
class DecodeSignature:
    """The layout of ``decode``'s arguments and results."""

    params: tuple[str, ...]                         # predict's parameters and state, in order
    tokens: str                                     # the token input's name
    caches: tuple[tuple[str, TensorType], ...]      # kv.<i>.key / kv.<i>.value, in order
    max_len: int                                    # L: positions the caches hold
    batch: Dim                                      # the tokens' batch dim (N), the caches' too
    outputs: tuple[str, ...]                        # predict's outputs (then the new caches)


def build_decode(module: Module, *, max_len: int | None = None, default_len: int | None = None
                 ) -> tuple[Function, DecodeSignature]:
    """``decode`` derived from ``module``'s ``predict`` (see the module docstring); raises
    :class:`DecodeError` for a model it cannot rewrite.  ``max_len`` is the longest context;
    by default a static ``T``, else the size of the table the positions index (the smallest,
    if several), else ``default_len``."""
    if "predict" not in module:
        raise DecodeError("the module has no predict function to derive a decode function from")
    predict = module.get("predict")
    info = module.attrs.get("model") or {}
    inputs = list(info.get("inputs") or [])
    if len(inputs) != 1:
        raise DecodeError(f"a KV cache needs a model with one input (the tokens), got {len(inputs)}: "
                          f"{', '.join(inputs) or 'none'}", predict.loc)
    tokens = predict.param(inputs[0])
    t = tokens.type
    if t.rank != 2 or not t.dtype.is_int or isinstance(t.shape[1], DimExpr):
        raise DecodeError(f"a KV cache needs tokens [N, T] (integers), got {inputs[0]}: {t.dsl_str()}",
                          predict.loc)
    if max_len is not None and max_len < 1:
        raise DecodeError(f"the context must be at least 1 position, got {max_len}")
    if max_len is None and isinstance(t.shape[1], int):
        max_len = t.shape[1]
    if max_len is None:
        limits = _Decoder(predict, tokens, 1).run().limits or ([default_len] if default_len else [])
        if not limits:
            raise DecodeError("cannot tell the longest context of a model whose sequence length is a "
                              "symbol and whose positions index no table: give a context", predict.loc)
        max_len = min(limits)
    decoder = _Decoder(predict, tokens, max_len).run()
    if decoder.limits and max_len > min(decoder.limits):
        raise DecodeError(f"a context of {max_len} positions is longer than the model's position table "
                          f"({min(decoder.limits)} rows)", predict.loc)
    func = decoder.func
    dce_function(func)
    verify_function(func)
    signature = DecodeSignature(
        params=tuple(p.name or "" for p in predict.params if p is not tokens),
        tokens=inputs[0], caches=tuple((p.name or "", p.type) for p in decoder.caches),
        max_len=max_len, batch=t.shape[0], outputs=tuple(n or f"out{i}" for i, n in enumerate(predict.output_names)))
    return func, signature


def decode_module(module: Module, *, max_len: int | None = None, default_len: int | None = None
                  ) -> tuple[Module, DecodeSignature]:
    """A module holding only ``decode`` (what the runtime compiles), and its signature."""
    func, signature = build_decode(module, max_len=max_len, default_len=default_len)
    return Module([func]), signature


# ---------------------------------------------------------------------------
# Dim arithmetic: which axis of a reshape's result is the sequence axis


def _factors(shape: tuple[Dim, ...]) -> tuple[int, Counter[str]] | None:
    """The product of ``shape`` as (static part, symbols), or None with a dim expression."""
    n, symbols = 1, Counter[str]()
    for d in shape:
        if isinstance(d, int):
            n *= d
        elif isinstance(d, str):
            symbols[d] += 1
        else:
            return None
    return n, symbols


# ---------------------------------------------------------------------------
# The rewrite


class _Decoder:
    """One walk over ``predict``'s ops, rebuilding each in ``decode`` and tracking, for every
    value, which axis is the sequence axis (None: the value does not depend on position)."""

    def __init__(self, predict: Function, tokens: Value, max_len: int):
        self.predict = predict
        self.seq: Dim = tokens.type.shape[1]           # T in predict: a symbol or an int
        used = set(predict.symbols)
        self.S = next(s for s in (SEQ_SYMBOL, "S_new", "S_decode") if s not in used)
        self.max_len = max_len
        params = [(p.name or f"arg{i}", p.type) for i, p in enumerate(predict.params) if p is not tokens]
        new_tokens = tokens.type.with_shape((tokens.type.shape[0], self.S))
        params += [(tokens.name or "tokens", new_tokens), (POS_NAME, TensorType(DType.i32, ()))]
        self.func, self.b = new_function(DECODE, params, predict.loc)
        self.env: dict[Value, Value] = {}
        self.axis: dict[Value, int | None] = {}
        self.positional: set[Value] = set()       # old values that hold absolute positions
        self.limits: list[int] = []               # sizes of tables indexed by position
        self.caches: list[Value] = []             # the cache parameters, key then value per op
        self.new_caches: list[Value] = []         # their new values, outputs in place over them
        self.expanding: list[str] = []            # the composites being followed through their pieces
        new = iter(self.func.params)
        for p in predict.params:
            if p is not tokens:
                self._set(p, next(new), None)
        self._set(tokens, next(new), 1)
        self.pos = next(new)

    # -- bookkeeping -------------------------------------------------------------------

    def _set(self, old: Value, new: Value, axis: int | None) -> None:
        self.env[old] = new
        self.axis[old] = axis

    def _fail(self, op: Op, why: str) -> DecodeError:
        inside = f" (in the decomposition of dl.{self.expanding[-1]})" if self.expanding else ""
        return DecodeError(f"cannot run this model with a KV cache: dl.{op.name}{inside} {why}", op.loc)

    def _has_seq(self, d: Dim) -> bool:
        if isinstance(self.seq, str) and isinstance(d, DimExpr):
            return self.seq in dims.free_symbols(d)
        return d == self.seq

    def _seq_axes(self, shape: tuple[Dim, ...]) -> list[int]:
        return [i for i, d in enumerate(shape) if self._has_seq(d)]

    def _shape_with_s(self, op: Op, shape: tuple[Dim, ...], at: int | None) -> tuple[Dim, ...]:
        """``shape`` (an attribute) with its sequence dim, at ``at``, replaced by S; any other
        mention of a symbolic sequence length is an error (a static one may be another dim of
        the same size)."""
        out = list(shape)
        for i, d in enumerate(shape):
            if i == at:
                if d != self.seq:
                    raise self._fail(op, f"has a dim {d} where the sequence axis is")
                out[i] = self.S
            elif isinstance(self.seq, str) and self._has_seq(d):
                raise self._fail(op, f"has a shape {shape_str(shape)} that uses the sequence length off the "
                                     "sequence axis")
        return tuple(out)

    def emit(self, op: Op, operands: list[Value], attrs: dict[str, Any], axis: int | None,
             name: str | None = None) -> None:
        """Rebuild ``op`` (or op ``name``) over the new operands; its result's sequence axis is
        ``axis``."""
        try:
            with self.b.at(op.loc):
                out = self.b.emit(name or op.name, *operands, **attrs)
        except DlError as e:
            raise self._fail(op, f"does not fit the shapes it gets over new positions: {e.message}") from None
        results = out if isinstance(out, tuple) else (out,)
        for old, new in zip(op.results, results):
            self._check(op, new, axis)
            self._set(old, new, axis)
        if any(v in self.positional for v in op.operands) and op.name != "gather":
            self.positional.update(op.results)

    def _check(self, op: Op, new: Value, axis: int | None) -> None:
        shape = new.type.shape
        bad = (axis is not None and shape[axis] != self.S) or \
            any(d == self.S or (isinstance(self.seq, str) and self._has_seq(d))
                for i, d in enumerate(shape) if i != axis)
        if bad:
            raise self._fail(op, f"gives {new.type.dsl_str()}: the sequence axis cannot be followed through it")

    def run(self) -> _Decoder:
        for op in self.predict.ops:
            self.op(op)
        self.func.outputs = [self.env[v] for v in self.predict.outputs]
        self.func.output_names = list(self.predict.output_names)
        self.func.outputs += self.new_caches
        self.func.output_names += [f"new.{c.name}" for c in self.caches]
        n = len(self.predict.outputs)
        self.func.attrs["inplace"] = tuple((n + i, c.name) for i, c in enumerate(self.caches))
        self.func.attrs["mode"] = "inference"
        return self

    # -- the rules, one per kind of op ----------------------------------------------------

    def op(self, op: Op) -> None:
        axes = [self.axis[v] for v in op.operands]
        opdef = get_op(op.name)
        assert opdef is not None
        if op.name == "attention":
            return self.attention(op)
        # a tensor made over the positions from nothing that depends on them: iota, constant,
        # sinusoidal_positions, a broadcast of weights
        sourced = (opdef.kind in (SOURCE, COMPOSITE) or op.name == "broadcast_to") and any(
            self._has_seq(d) for d in op.attrs.get("shape") or ())
        if all(a is None for a in axes) and not sourced:
            return self.emit(op, [self.env[v] for v in op.operands], dict(op.attrs), None)
        rule = _RULES.get(op.name) or _KIND_RULES.get(opdef.kind)
        if rule is None:
            raise self._fail(op, "reads across positions (the KV-cache rewrite follows position-wise "
                                 "ops, reshapes, gathers and the attention op only)")
        rule(self, op)

    def _aligned(self, op: Op) -> int:
        """The result's sequence axis of an op that broadcasts its operands: operand axis a of
        rank r is result axis a + (R - r) (numpy aligns shapes on the right)."""
        rank = op.results[0].type.rank
        found = {a + rank - v.type.rank for v in op.operands if (a := self.axis[v]) is not None}
        if len(found) != 1:
            raise self._fail(op, "combines values whose sequence axes do not line up")
        return found.pop()

    def elementwise(self, op: Op) -> None:
        self.emit(op, [self.env[v] for v in op.operands], dict(op.attrs), self._aligned(op))

    def softmax(self, op: Op) -> None:
        # softmax, log_softmax, masked_softmax: shaped as elementwise, reading along `axis`
        # (kept whole rather than expanded, so codegen's softmax kernel still sees them)
        at = self._aligned(op)
        if op.attrs["axis"] % op.result.type.rank == at:
            raise self._fail(op, "normalizes over the sequence axis (mixes positions)")
        self.emit(op, [self.env[v] for v in op.operands], dict(op.attrs), at)

    def reduction(self, op: Op) -> None:
        (x,) = op.operands
        a, rank = self.axis[x], x.type.rank
        assert a is not None
        if "axes" in op.attrs:
            axes = op.attrs["axes"]
            reduced = set(range(rank)) if axes is None else {d % rank for d in axes}
        else:
            axis = op.attrs["axis"]
            reduced = set(range(rank)) if axis is None else {axis % rank}
        if a in reduced:
            raise self._fail(op, "reduces over the sequence axis (mixes positions)")
        new = a if op.attrs.get("keepdims") else a - sum(d < a for d in reduced)
        self.emit(op, [self.env[x]], dict(op.attrs), new)

    def matmul(self, op: Op) -> None:
        x, w = op.operands
        ax, aw = self.axis[x], self.axis[w]
        rx, rw, rank = x.type.rank, w.type.rank, op.result.type.rank
        if ax is not None and aw is not None:
            raise self._fail(op, "multiplies two sequences (a [T, T] score matrix written from ops)")
        # numpy matmul: x [.., M, K] @ w [.., K, P] -> [.., M, P], batch dims aligned on the right;
        # a rank-1 x or w loses its M or P axis
        if ax is not None:
            if ax == rx - 1:
                raise self._fail(op, "contracts over the sequence axis (mixes positions)")
            if rw == 1:
                new = ax
            else:
                new = rank - 2 if ax == rx - 2 else ax + rank - rx
        else:
            assert aw is not None
            if rw == 1 or aw == rw - 2:
                raise self._fail(op, "contracts over the sequence axis (mixes positions)")
            if rx == 1:
                new = rank - 1 if aw == rw - 1 else aw
            else:
                new = rank - 1 if aw == rw - 1 else aw + rank - rw
        self.emit(op, [self.env[x], self.env[w]], {}, new)

    def iota(self, op: Op) -> None:
        shape = tuple(op.attrs["shape"])
        seq = self._seq_axes(shape)
        if len(seq) != 1:
            raise self._fail(op, f"builds a {shape_str(shape)} tensor over positions x positions (a mask "
                                 "or score matrix written from ops; use the attention op, causal=true)")
        at = seq[0]
        attrs = dict(op.attrs, shape=self._shape_with_s(op, shape, at))
        rank = len(shape)
        if op.attrs["axis"] % rank != at:
            return self.emit(op, [], attrs, at)
        # iota along the sequence -> pos + iota: the absolute positions of the new tokens
        with self.b.at(op.loc):
            index = self.b.emit("iota", **attrs)
            start = self.pos if attrs["dtype"] is DType.i32 else self.b.cast(self.pos, dtype=attrs["dtype"])
        self.emit(op, [index, start], {}, at, name="add")
        self.positional.update(op.results)

    def constant(self, op: Op) -> None:
        shape = tuple(op.attrs["shape"])
        seq = self._seq_axes(shape)
        if len(seq) != 1 or getattr(op.attrs["value"], "ndim", 0) > 0:
            raise self._fail(op, f"is a {shape_str(shape)} constant over the sequence")
        self.emit(op, [], dict(op.attrs, shape=self._shape_with_s(op, shape, seq[0])), seq[0])

    def composite(self, op: Op) -> None:
        # expand by the op's own decomposition and follow the pieces (sinusoidal_positions ->
        # pos + iota; softmax over features -> reductions over features)
        opdef = get_op(op.name)
        assert opdef is not None
        if opdef.decompose is None:
            raise self._fail(op, "has no decomposition to follow the sequence through")
        scratch = Function(f"{op.name}.pieces", [])
        with Builder(scratch, op.loc).at(op.loc) as b:
            outs = opdef.decompose(b, op)
        self.expanding.append(op.name)
        for inner in scratch.ops:
            self.op(inner)
        self.expanding.pop()
        for old, piece in zip(op.results, outs):
            self._set(old, self.env[piece], self.axis[piece])
            if piece in self.positional:
                self.positional.add(old)

    def reshape(self, op: Op) -> None:
        (x,) = op.operands
        a = self.axis[x]
        assert a is not None
        shape = tuple(op.attrs["shape"])
        before = _factors(x.type.shape[:a])   # the sequence axis is where the dims before it match
        found = [i for i, d in enumerate(shape) if d == self.seq and _factors(shape[:i]) == before]
        if before is None or len(found) != 1:
            raise self._fail(op, f"reshapes {x.type.dsl_str()} so that the sequence axis is lost")
        self.emit(op, [self.env[x]], {"shape": self._shape_with_s(op, shape, found[0])}, found[0])

    def transpose(self, op: Op) -> None:
        (x,) = op.operands
        perm = list(op.attrs["perm"])
        self.emit(op, [self.env[x]], dict(op.attrs), perm.index(self.axis[x]))

    def broadcast_to(self, op: Op) -> None:
        (x,) = op.operands
        shape = tuple(op.attrs["shape"])
        a = self.axis[x]
        if a is not None:
            at = a + len(shape) - x.type.rank
        else:
            seq = self._seq_axes(shape)
            if len(seq) != 1:
                raise self._fail(op, f"broadcasts to {shape_str(shape)}, over positions x positions")
            at = seq[0]
        self.emit(op, [self.env[x]], {"shape": self._shape_with_s(op, shape, at)}, at)

    def expand_dims(self, op: Op) -> None:
        (x,) = op.operands
        a = self.axis[x]
        assert a is not None
        rank = op.result.type.rank
        inserted = {d % rank for d in op.attrs["axis"]}
        kept = [i for i in range(rank) if i not in inserted]
        self.emit(op, [self.env[x]], dict(op.attrs), kept[a])

    def squeeze(self, op: Op) -> None:
        (x,) = op.operands
        a = self.axis[x]
        assert a is not None
        axis = op.attrs["axis"]
        dropped = {i for i, d in enumerate(x.type.shape) if d == 1} if axis is None \
            else {d % x.type.rank for d in axis}
        if a in dropped:
            raise self._fail(op, "drops the sequence axis")
        self.emit(op, [self.env[x]], dict(op.attrs), a - sum(d < a for d in dropped))

    def slice(self, op: Op) -> None:
        (x,) = op.operands
        a = self.axis[x]
        assert a is not None
        attrs = {k: list(op.attrs[k] or ()) for k in ("start", "stop", "step")}

        def at(k: str) -> Any:
            return attrs[k][a] if a < len(attrs[k]) else None
        if at("start") not in (None, 0) or at("step") not in (None, 1) or at("stop") not in (None, self.seq):
            raise self._fail(op, "slices along the sequence axis (mixes positions)")
        if a < len(attrs["stop"]):
            attrs["stop"][a] = None
        for bounds in attrs.values():
            if any(b is not None and not isinstance(b, int) and self._has_seq(b) for b in bounds):
                raise self._fail(op, "has a bound that depends on the sequence length")
        self.emit(op, [self.env[x]], {k: tuple(v) or None for k, v in attrs.items()}, a)

    def gather(self, op: Op) -> None:
        table, index = op.operands
        if self.axis[table] is not None:
            raise self._fail(op, "indexes into a sequence (mixes positions)")
        a = self.axis[index]
        assert a is not None
        axis = op.attrs["axis"] % table.type.rank
        if index in self.positional and isinstance(table.type.shape[axis], int):
            self.limits.append(table.type.shape[axis])      # a position table: its size bounds L
        self.emit(op, [self.env[table], self.env[index]], dict(op.attrs), axis + a)

    def concat(self, op: Op) -> None:
        rank = op.result.type.rank
        found = {self.axis[v] for v in op.operands}
        if len(found) != 1 or op.attrs["axis"] % rank in found:
            raise self._fail(op, "concatenates along or across the sequence axis")
        self.emit(op, [self.env[v] for v in op.operands], dict(op.attrs), found.pop())

    def dim_size(self, op: Op) -> None:
        (x,) = op.operands
        if op.attrs["axis"] % x.type.rank == self.axis[x]:
            raise self._fail(op, "reads the sequence length")
        self.emit(op, [self.env[x]], dict(op.attrs), None)

    def attention(self, op: Op) -> None:
        """``attention(q, k, v, mask, causal=true)`` over the new positions: write k and v into
        the caches at ``[pos, pos+S)``, attend over the caches with ``key j <= pos + i``."""
        q, k, v, mask = op.operands
        axes = [self.axis[x] for x in (q, k, v)]
        if all(a is None for a in axes) and self.axis[mask] is None:
            return self.emit(op, [self.env[x] for x in op.operands], dict(op.attrs), None)
        rank = q.type.rank
        if axes != [rank - 2] * 3:
            raise self._fail(op, "attends over something other than the sequence (cross-attention "
                                 "or a batch axis of positions)")
        if not op.attrs["causal"]:
            raise self._fail(op, "is not causal: earlier positions see later ones, so a cache of "
                                 "their keys and values would go stale")
        if self.axis[mask] is not None or any(d != 1 for d in mask.type.shape[-2:]):
            raise self._fail(op, "has a mask over queries or keys; only a mask that is the same "
                                 "for every position can be cached")
        nq, nk, nv, nmask = (self.env[x] for x in op.operands)
        caches = [self._cache(op, x, "key" if i == 0 else "value") for i, x in enumerate((nk, nv))]
        with self.b.at(op.loc):
            keys, values = (self._write(x, cache) for x, cache in zip((nk, nv), caches))
            # query i (position pos + i) sees key j when j <= pos + i
            grid = (self.S, self.max_len)
            i = self.b.add(self.b.iota(dtype=DType.i32, shape=grid, axis=0), self.pos)
            allowed = self.b.logical_and(self.b.le(self.b.iota(dtype=DType.i32, shape=grid, axis=1), i), nmask)
        self.emit(op, [nq, keys, values, allowed], dict(op.attrs, causal=False), rank - 2)

    def _cache(self, op: Op, x: Value, which: str) -> Value:
        t = x.type.with_shape((*x.type.shape[:-2], self.max_len, x.type.shape[-1]))
        p = Value(t, None, len(self.func.params), f"kv.{len(self.caches) // 2}.{which}")
        self.func.params.append(p)
        self.caches.append(p)
        return p

    def _write(self, x: Value, cache: Value) -> Value:
        """``cache`` with rows ``[pos, pos+S)`` along its sequence axis replaced by ``x``'s:
        ``select(0 <= j - pos < S, x[clip(j - pos, 0, S-1)], cache[j])``."""
        b, axis = self.b, x.type.rank - 2
        j = b.iota(dtype=DType.i32, shape=(self.max_len,), axis=0)
        rel = b.sub(j, self.pos)
        count = b.dim_size(x, axis=axis, dtype=DType.i32)
        zero, one = b.constant(0, DType.i32), b.constant(1, DType.i32)
        inside = b.logical_and(b.ge(rel, zero), b.lt(rel, count))
        rows = b.gather(x, b.maximum(b.minimum(rel, b.sub(count, one)), zero), axis=axis)
        new = b.select(b.reshape(inside, shape=(self.max_len, 1)), rows, cache)
        self.new_caches.append(new)
        return new


_Rule = Any
_RULES: dict[str, _Rule] = {
    "matmul": _Decoder.matmul, "iota": _Decoder.iota, "constant": _Decoder.constant,
    "reshape": _Decoder.reshape, "transpose": _Decoder.transpose, "broadcast_to": _Decoder.broadcast_to,
    "expand_dims": _Decoder.expand_dims, "squeeze": _Decoder.squeeze, "slice": _Decoder.slice,
    "gather": _Decoder.gather, "concat": _Decoder.concat, "dim_size": _Decoder.dim_size,
    "softmax": _Decoder.softmax, "log_softmax": _Decoder.softmax, "masked_softmax": _Decoder.softmax,
    # composites that reduce over `axes` (with keepdims) like the reductions
    "logsumexp": _Decoder.reduction, "var": _Decoder.reduction, "std": _Decoder.reduction,
    "norm": _Decoder.reduction,
}
_KIND_RULES: dict[str, _Rule] = {
    ELEMENTWISE: _Decoder.elementwise, REDUCTION: _Decoder.reduction, COMPOSITE: _Decoder.composite,
}
