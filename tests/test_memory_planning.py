"""Memory planning (bufferize.plan_memory) and fusion groups: planned programs compute
exactly what unplanned ones do, and no two buffers live at once share memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from compiler.analysis.stats import with_train_step
from compiler.codegen.bufferize import fusion_groups, liveness, lower_function, plan_memory
from compiler.codegen.driver import memory_report
from compiler.codegen.loops import TEMP, Elementwise, Program, identity_index, loads, nbytes, takes
from compiler.codegen.target import CodegenOptions
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.types import DType, TensorType
from compiler.passes import run_pipeline
from runtime.commands import load_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dl")) + [ROOT / "bench" / "mlp_sgd.dl"]
F32 = DType.f32
FAST = CodegenOptions(opt_level=0)


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def example_functions(path: Path) -> list[Function]:
    module, _ = with_train_step(load_module(str(path)))
    return list(run_pipeline(module, "default").functions)


def planned(func: Function) -> tuple[Program, dict]:
    """``func`` lowered without planning, its liveness, then planned in place."""
    prog = lower_function(func, plan=False)
    live = liveness(prog)
    plan_memory(prog)
    return prog, live


def check_plan(prog: Program, live: dict) -> None:
    """No two temporaries live at the same time share memory (except an elementwise
    kernel writing over the operand it reads for the last time, element for element),
    and every slot's owner is at least as large as each member for any batch size."""
    plan = prog.memory
    assert plan is not None
    inplace = {(out, operand) for out, operand in plan.inplace}
    for out, operand in inplace:
        k = prog.kernels[live[out][0]]
        assert live[operand][1] == live[out][0] and isinstance(k, Elementwise) and k.out is out
        assert out.dtype == operand.dtype and out.shape == operand.shape
        assert all(ld.index == identity_index(len(k.shape)) for ld in loads(k.expr)
                   if ld.buffer.root is operand.root)
        assert not any(t.buffer.root is operand.root for t in takes(k.expr))
    by_root: dict = {}
    for t in plan.before:
        by_root.setdefault(t.root, []).append(t)
    assert {r for r in by_root} == {b for b in prog.buffers if b.role == TEMP}
    for root, members in by_root.items():
        for bindings in ({s: n for s in prog.symbols} for n in (0, 1, 7, 1000)):
            assert all(nbytes(root, bindings) >= nbytes(m, bindings) for m in members)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                (a0, a1), (b0, b1) = live[a], live[b]
                overlap = a0 <= b1 and b0 <= a1
                if overlap:
                    assert (a, b) in inplace or (b, a) in inplace or _chained(a, b, inplace), \
                        f"{a.name} {live[a]} and {b.name} {live[b]} overlap in one slot"


def _chained(a, b, inplace) -> bool:
    """``a`` and ``b`` are linked by in-place writes (a chain t1 -> t2 -> t3), whose
    lifetimes meet only at the kernels that write over."""
    return any(a in pair for pair in inplace) and any(b in pair for pair in inplace)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_plans_of_the_examples_never_overlap_live_buffers(path):
    for func in example_functions(path):
        check_plan(*planned(func))


def _random_inputs(func: Function, n: int, rng) -> list[np.ndarray]:
    arrays = []
    for p in func.params:
        shape = tuple(n if isinstance(d, str) else d for d in p.type.shape)
        if p.type.dtype.is_int:
            arrays.append(rng.integers(0, 2, shape).astype(p.type.dtype.np))
        else:
            arrays.append(rng.uniform(0.1, 0.9, shape).astype(p.type.dtype.np))
    return arrays


def _run(compiled, func: Function, args: list[np.ndarray]) -> list[np.ndarray]:
    out = compiled[func.name](*[a.copy() for a in args])    # in-place steps change their inputs
    return [np.array(o) for o in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_planned_programs_compute_exactly_what_unplanned_ones_do(path):
    module, _ = with_train_step(load_module(str(path)))
    on = runtime.compile(module, cache=False, options=FAST)
    off = runtime.compile(module, cache=False, options=CodegenOptions(opt_level=0, plan_memory=False))
    rng = np.random.default_rng(0)
    for func in on.module.functions:
        for n in (1, 5):
            args = _random_inputs(func, n, rng)
            for a, b in zip(_run(on, func, args), _run(off, func, args)):
                np.testing.assert_array_equal(a, b)


def test_mnist_train_step_reuses_memory():
    (func,) = [f for f in example_functions(ROOT / "examples" / "mnist_mlp.dl") if f.name == "train_step"]
    prog, live = planned(func)
    plan = prog.memory
    n = {"N": 128}
    before = sum(nbytes(t, n) for t in plan.before)
    after = sum(nbytes(slot[0], n) for slot in plan.slots)
    assert after < before and len(plan.slots) < len(plan.before)
    report = memory_report([prog], n)
    assert "before planning: " in report and f"= {before} at N=128" in report
    assert "after planning: " in report and f"= {after} at N=128" in report


def test_sigmoid_chain_gradient_writes_in_place():
    """sigmoid's backward reads a temporary for the last time where it writes
    one of the same shape: the planner reuses it in place."""
    (func,) = [f for f in example_functions(ROOT / "examples" / "sigmoid_chain.dl") if f.name == "dchain_loss"]
    prog, _ = planned(func)
    assert prog.memory.inplace


# ---------------------------------------------------------------------------
# Random programs: elementwise chains, reductions, matmuls, several uses


UNARY = ["neg", "exp", "relu", "square", "tanh"]
BINARY = ["add", "sub", "mul", "maximum"]


@st.composite
def programs(draw):
    steps = draw(st.lists(st.tuples(st.sampled_from(UNARY + BINARY + ["sum", "max", "matmul"]),
                                    st.integers(0, 99), st.integers(0, 99), st.integers(0, 1)),
                          min_size=2, max_size=9))
    outs = draw(st.lists(st.integers(0, 99), min_size=1, max_size=2))
    return steps, outs


def build_random(steps, outs) -> Function:
    f, b = new_function("rnd", [("x", T("N", 6)), ("w", T(6, 6))])
    values = list(f.params)
    for name, i, j, axis in steps:
        a, c = values[i % len(values)], values[j % len(values)]
        if name in UNARY:
            v = b.emit(name, a)
        elif name in BINARY:
            v = b.emit(name, a, c) if _broadcastable(a, c) else b.emit(name, a, a)
        elif name == "matmul":
            v = b.matmul(a, f.params[1]) if a.type.rank == 2 and a.type.shape[1] == 6 else b.neg(a)
        else:
            v = b.emit(name, a, axes=(axis % a.type.rank,), keepdims=True) if a.type.rank else b.neg(a)
        values.append(v)
    f.outputs = [values[2 + (k % (len(values) - 2))] for k in outs]
    return f


def _broadcastable(a, c) -> bool:
    sa, sc = a.type.shape, c.type.shape
    return len(sa) == len(sc) and all(x == y or x == 1 or y == 1 for x, y in zip(sa, sc))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_plans_never_overlap_live_buffers(prog):
    check_plan(*planned(build_random(*prog)))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(1, 9))
def test_random_planned_programs_match_unplanned(prog, n):
    f = build_random(*prog)
    module = Module([f])
    on = runtime.compile(module, cache=False, passes="", options=FAST)
    off = runtime.compile(module, cache=False, passes="",
                          options=CodegenOptions(opt_level=0, plan_memory=False))
    args = _random_inputs(f, n, np.random.default_rng(n))
    for a, b in zip(_run(on, f, args), _run(off, f, args)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Fusion groups


def test_fusion_groups_name_the_kernel_of_every_op():
    (func,) = [f for f in example_functions(ROOT / "bench" / "mlp_sgd.dl") if f.name == "train_step"]
    prog = lower_function(func)
    groups = fusion_groups(prog)
    computed = [op for op in func.ops if op.name not in ("constant",)]
    assert all(op in groups for op in computed), [op.name for op in computed if op not in groups]
    assert all(0 <= i < len(prog.kernels) for ks in groups.values() for i in ks)
    # the first layer's bias add and relu are one kernel; the optimizer update of W1 is
    # the epilogue of the matmul computing its gradient
    by_name: dict = {}
    for op, ks in groups.items():
        by_name.setdefault(op.name, []).append(ks)
    assert any(len(ks) == 1 for ks in by_name["relu"])
    relu_kernel = next(ks[0] for ks in by_name["relu"])
    assert any(relu_kernel in ks for ks in by_name["add"])
    last_matmul = [i for i, k in enumerate(prog.kernels) if type(k).__name__ == "Matmul"]
    assert any(set(ks) & set(last_matmul) for ks in by_name["sub"])


def test_dlc_graph_draws_fused_kernels_as_clusters():
    from compiler.analysis.graph import to_dot
    from compiler.codegen.bufferize import kernel_clusters

    module = run_pipeline(load_module(str(ROOT / "examples" / "xor.dl")), "default")
    func = module.get("predict")
    groups = kernel_clusters(func)
    dot = to_dot(module, [func], groups=groups)
    assert 'label="k0"' in dot and 'label="k1"' in dot
    assert {op.name for op, k in groups.items() if k == "k0"} == {"matmul", "add", "sigmoid"}
