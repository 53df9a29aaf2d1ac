"""Export to upstream MLIR dialects (runtime/interop/mlir_export.py): stock ``mlir-opt-22``
verifies what dlc writes without ``--allow-unregistered-dialect``, the standard lowering
turns it into code ``mlir-runner-22`` runs, and its numbers are dlc's native numbers.

Tests that run the tools skip, saying so, where Debian's ``mlir-22-tools`` is not
installed (``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.analysis.stats import with_train_step
from compiler.ir.core import Function, Module
from compiler.ir.parser import parse_module
from compiler.ir.types import DType
from frontend_dsl.api import compile_file
from runtime.interop.mlir_export import (
    LOWERING,
    MlirExportError,
    export_mlir,
    parse_runner_output,
    runner_program,
)
from runtime.interop.mlir_table import RULES

ROOT = Path(__file__).resolve().parents[1]
MODELS = [p for p in sorted((ROOT / "examples").glob("*.dl")) if "model " in p.read_text()]
MLIR_OPT = shutil.which("mlir-opt-22")
MLIR_RUNNER = shutil.which("mlir-runner-22")
LIB = Path("/usr/lib/llvm-22/lib")
RUNNER_LIBS = [LIB / "libmlir_runner_utils.so.22.1", LIB / "libmlir_c_runner_utils.so.22.1"]
needs_opt = pytest.mark.skipif(MLIR_OPT is None, reason="mlir-opt-22 is not installed (apt-get install mlir-22-tools)")
needs_runner = pytest.mark.skipif(
    MLIR_OPT is None or MLIR_RUNNER is None or not all(p.exists() for p in RUNNER_LIBS),
    reason="mlir-opt-22 / mlir-runner-22 and its runner utils are not installed (apt-get install mlir-22-tools)")

# Every example model's predict and training step is exported
UNSUPPORTED: set[tuple[str, str]] = set()


def module_of(path: Path) -> Module:
    module, _ = with_train_step(compile_file(str(path)))
    return module


def mlir_opt(text: str, *args: str) -> str:
    assert MLIR_OPT is not None
    done = subprocess.run([MLIR_OPT, *args], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:4000]
    return done.stdout


def run_in_mlir(func: Function, args: list[np.ndarray],
                weights: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
    """``func`` on ``args`` (``weights`` as constants) through mlir-opt's lowering and mlir-runner."""
    lowered = mlir_opt(runner_program(func, args, weights), *LOWERING)
    assert MLIR_RUNNER is not None
    done = subprocess.run([MLIR_RUNNER, "-e", "main", "-entry-point-result=void",
                           "-shared-libs=" + ",".join(map(str, RUNNER_LIBS))],
                          input=lowered, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[:4000]
    return parse_runner_output(done.stdout, [v.type.dtype for v in func.outputs])


def sample_args(func: Function, batch: int, seed: int = 0, path: Path | None = None) -> list[np.ndarray]:
    """Arguments every example accepts: a model's initial weights (from ``path``), other floats
    in [0, 0.1) (optimizer second moments must not be negative), bytes in [0, 256) (images),
    other ints in {0, 1} (class labels, token ids)."""
    rng = np.random.default_rng(seed)
    known: dict[str, np.ndarray] = {}
    if path is not None:
        model = runtime.load_model(path, seed=seed, backend="interp")
        known = {**model.weights, **model.model_state}
    args = []
    for p in func.params:
        shape = tuple(batch if isinstance(d, str) else d for d in p.type.shape)
        if p.name in known:
            args.append(known[p.name])
        elif p.type.dtype.is_float:
            args.append((rng.random(shape) * 0.1).astype(p.type.dtype.np))
        elif p.type.dtype is DType.u8:
            args.append(rng.integers(0, 256, shape).astype(np.uint8))      # image bytes
        else:
            args.append(rng.integers(0, 2, shape).astype(p.type.dtype.np))
    return args


def native(func: Function, args: list[np.ndarray]) -> list[np.ndarray]:
    compiled = runtime.compile(Module([func]), cache=False)
    out = getattr(compiled, func.name)(*[a.copy() for a in args])     # train_step overwrites in place
    return list(out) if isinstance(out, tuple) else [out]


# Run (not only verified): every predict, and the training steps of distinct kinds (the
# student models' steps are xor's dense layers and losses again, verified above)
RUN_SKIPPED = {("student_grade", "train_step"), ("student_pass", "train_step")}


def cases(fns: tuple[str, ...], leave_out: frozenset | set = frozenset()) -> list:
    return [pytest.param(p, fn, id=f"{p.stem}-{fn}") for p in MODELS for fn in fns
            if (p.stem, fn) not in UNSUPPORTED | leave_out]


@needs_opt
@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.dl")), ids=lambda p: p.stem)
def test_stock_mlir_opt_verifies_every_function_of_every_example(path: Path) -> None:
    """No --allow-unregistered-dialect: every op is upstream.  A model file's functions
    (predict, loss, evaluate) and its training step, or a file's plain functions."""
    module = module_of(path)
    text = export_mlir(module.functions)
    assert '"dl.' not in text
    back = mlir_opt(text)
    assert [f"func.func @{f.name}(" in back for f in module.functions] == [True] * len(module.functions)
    if "model" in module.attrs:
        assert "func.func @train_step(" in back and "func.func @predict(" in back


@needs_runner
@pytest.mark.parametrize("path,fn", cases(("predict", "train_step"), RUN_SKIPPED))
def test_mlir_runner_gives_dlcs_native_numbers(path: Path, fn: str) -> None:
    func = module_of(path).get(fn)
    args = sample_args(func, batch=3, path=path)
    got, want = run_in_mlir(func, args), native(func, args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@needs_runner
def test_one_export_serves_every_batch_size() -> None:
    path = ROOT / "examples/mnist_mlp.dl"
    func = module_of(path).get("predict")
    assert "tensor<?x784xf32>" in export_mlir(func)
    for batch in (1, 5):
        args = sample_args(func, batch, seed=batch, path=path)
        np.testing.assert_allclose(run_in_mlir(func, args)[0], native(func, args)[0], rtol=1e-5, atol=1e-5)


@needs_opt
def test_weights_become_constants_and_names_travel_as_attributes() -> None:
    model = runtime.load_model(ROOT / "examples/xor.dl", seed=1, backend="interp")
    func = model.module.get("predict")
    text = export_mlir(func, model.weights)
    back = mlir_opt(text)
    assert "arith.constant dense<" in back
    signature = back[back.index("func.func"):].split("\n", 1)[0]
    assert signature == ('func.func @predict(%arg0: tensor<?x2xf32> {dl.name = "x"}) '
                         '-> (tensor<?x1xf32> {dl.name = "p"}) {')


UNWRITABLE = """module {
  func.func @f(%x: tensor<4x6xf32>) -> (tensor<4x2xf32>, tensor<4x3xi64>) {
    %0, %1 = "dl.top_k"(%x) {k = 2} : (tensor<4x6xf32>) -> (tensor<4x2xf32>, tensor<4x2xi64>)
    %2, %3 = "dl.top_k"(%x) {k = 3} : (tensor<4x6xf32>) -> (tensor<4x3xf32>, tensor<4x3xi64>)
    func.return %0, %3 : tensor<4x2xf32>, tensor<4x3xi64>
  }
}
"""


def test_ops_without_a_rule_are_listed_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(RULES, "top_k")          # every op of the table has a rule today
    with pytest.raises(MlirExportError) as e:
        export_mlir(parse_module(UNWRITABLE, "f.mlir").get("f"))
    message = str(e.value)
    assert "@f has 2 op(s) with no upstream MLIR form" in message
    assert "dl.top_k (2x), first at f.mlir:3:5" in message
    assert "runtime/interop/mlir_table.py" in message


def test_a_weight_of_the_wrong_shape_is_refused() -> None:
    func = module_of(ROOT / "examples/xor.dl").get("predict")
    with pytest.raises(MlirExportError, match=r"the weight 'hidden.kernel' has shape \[3, 2\], the parameter is f32\[2, 2\]"):
        export_mlir(func, {"hidden.kernel": np.zeros((3, 2), np.float32)})
    with pytest.raises(MlirExportError, match="has no parameter 'nope'"):
        export_mlir(func, {"nope": np.zeros(2, np.float32)})


def test_a_variant_a_rule_refuses_names_the_op_and_why() -> None:
    module = parse_module("""module {
  func.func @f(%a: tensor<?xf32, "N">) -> (tensor<?xf32, "N">) {
    %0 = "dl.slice"(%a) {start = [unit], step = [-1], stop = [unit]} : (tensor<?xf32, "N">) -> tensor<?xf32, "N">
    func.return %0 : tensor<?xf32, "N">
  }
}""", "f.mlir")
    with pytest.raises(MlirExportError, match=r"f.mlir:3:5: error: dl.slice cannot be written in upstream "
                                              r"MLIR here: a negative step along a symbolic dim"):
        export_mlir(module.get("f"))


def test_a_computed_dim_is_refused_by_name(tmp_path: Path) -> None:
    """A slice of a symbolic dim has a computed dim (``max(N-1,0)``): no upstream form yet."""
    source = tmp_path / "f.dl"
    source.write_text("fn f(a: f32[N, 3]) { return a[1:] }\n")
    with pytest.raises(MlirExportError, match=r"a computed dim \(max\(N-1,0\), from slicing a symbolic dim\)"):
        export_mlir(compile_file(source).get("f"))


def test_the_table_holds_no_composite_op() -> None:
    """Composites are expanded by their decompose rule before the table is consulted."""
    from compiler.ops import OPS
    from compiler.ops.base import COMPOSITE

    assert sorted(n for n in RULES if n in OPS and OPS[n].kind == COMPOSITE) == []
    assert all(n in OPS for n in RULES)


ELEMENTWISE_CASES = ["add", "sub", "mul", "div", "maximum", "minimum", "pow", "exp", "log", "sqrt",
                     "tanh", "sigmoid", "relu", "neg", "abs", "square", "reciprocal", "floor", "ceil",
                     "round", "sin", "cos", "erf", "expm1", "log1p", "elu", "selu", "leaky_relu", "silu",
                     "softplus", "hard_sigmoid", "gelu", "sign", "isinf", "isnan"]


@needs_runner
def test_each_float_elementwise_rule_matches_the_interpreter() -> None:
    """One program holding every float elementwise op of the table, on values that cover
    signs, zero, ties of round, large magnitudes."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import DType, TensorType

    t = TensorType(DType.f32, (12,))
    func, b = new_function("f", [("x", t), ("y", t)])
    outs = []
    for name in ELEMENTWISE_CASES:
        arity = 2 if name in ("add", "sub", "mul", "div", "maximum", "minimum", "pow") else 1
        outs.append(b.emit(name, *func.params[:arity]))
    outs.append(b.emit("gelu", func.params[0], approximate=True))
    outs.append(b.emit("clip", *func.params, b.emit("add", func.params[1], func.params[1])))
    func.outputs = outs
    func.output_names = [*ELEMENTWISE_CASES, "gelu_tanh", "clip"]
    x = np.array([-2.5, -0.5, 0.0, 0.5, 1.5, 2.5, 30.0, -30.0, np.inf, -np.inf, np.nan, -0.0], np.float32)
    y = np.array([1.5, 2.0, 3.0, -1.0, 0.25, 2.0, 0.5, 4.0, 1.0, 2.0, 1.0, 3.0], np.float32)
    for name, g, w in zip(func.output_names, run_in_mlir(func, [x, y]), interpret(func, [x, y])):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------
# The CLI


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    from runtime.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_opt
def test_dlc_ir_emit_mlir_prints_what_mlir_opt_verifies(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "ir", str(ROOT / "examples/linear_regression.dl"), "--fn", "train_step",
                           "--emit", "mlir")
    assert code == 0 and "func.func @train_step(" in out and "linalg.generic" in out
    assert "func.func @train_step(" in mlir_opt(out)


@needs_runner
def test_dlc_export_format_mlir_writes_the_model_with_its_weights(capsys: pytest.CaptureFixture,
                                                                  tmp_path: Path) -> None:
    out_path = tmp_path / "xor.mlir"
    code, out, _ = run_cli(capsys, "export", str(ROOT / "examples/xor.dl"), "--seed", "4", "-o", str(out_path))
    assert code == 0 and "4 constants (9 weights)" in out
    text = out_path.read_text()
    assert text.startswith("module {") and "func.func @predict(%x: tensor<?x2xf32>" in text
    model = runtime.load_model(ROOT / "examples/xor.dl", seed=4)
    func = model.module.get("predict")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    got = run_in_mlir(func, [x], weights=model.weights)
    np.testing.assert_allclose(got[0], model.predict(x), rtol=1e-5, atol=1e-6)


@needs_opt
def test_dlc_export_writes_a_models_training_step(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    out = tmp_path / "step.mlir"
    code, text, _ = run_cli(capsys, "export", str(ROOT / "examples/mnist_mlp.dl"), "--fn", "train_step", "-o", str(out))
    assert code == 0 and "outputs loss: f32[]" in text and "0 constants" in text
    assert "func.func @train_step(" in mlir_opt(out.read_text())


def test_dlc_export_makes_a_models_moving_statistics_constants_too(capsys: pytest.CaptureFixture,
                                                                  tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "export", str(ROOT / "examples/fmnist_mlp_dropout_bn.dl"),
                           "-o", str(tmp_path / "f.mlir"))
    assert code == 0 and "inputs x: f32[N, 784];" in out and "12 constants" in out
    assert "func.func @predict(%x: tensor<?x784xf32>" in (tmp_path / "f.mlir").read_text()


def test_dlc_ir_emit_mlir_lists_the_ops_it_cannot_write(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(RULES, "top_k")
    path = tmp_path / "f.mlir"
    path.write_text(UNWRITABLE)
    code, _, err = run_cli(capsys, "ir", str(path), "--emit", "mlir")
    assert code == 1 and "dl.top_k (2x)" in err and "Traceback" not in err


@needs_runner
def test_convolution_and_pool_gradients_with_strides_padding_and_ties_match_the_interpreter() -> None:
    """The scatter-style rules (scf.for loops) on geometry the examples do not use: stride 2,
    uneven padding, dilation, a pool whose windows hold ties, a nan and padding."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    f32 = DType.f32
    x_t, w_t = TensorType(f32, ("N", 7, 6, 2)), TensorType(f32, (3, 2, 2, 3))
    func, b = new_function("f", [("x", x_t), ("w", w_t)])
    x, w = func.params
    geo = {"strides": (2, 1), "padding": (1, 0, 0, 1), "dilations": (1, 2), "groups": 1}
    y = b.emit("conv2d", x, w, **geo)
    dx = b.emit("conv2d_backprop_input", y, w, input_size=(7, 6), **geo)
    dw = b.emit("conv2d_backprop_filter", x, y, filter_size=(3, 2), **geo)
    window = {"pool_size": (2, 3), "strides": (2, 2), "padding": (1, 0, 1, 1)}
    p = b.emit("max_pool2d", x, **window)
    dp = b.emit("max_pool2d_grad", x, p, **window)
    func.outputs = [y, dx, dw, p, dp]
    rng = np.random.default_rng(7)
    xv = rng.integers(-2, 3, (2, 7, 6, 2)).astype(np.float32)        # small ints: ties in the pools
    xv[1, 3, 2, 0] = np.nan
    wv = rng.standard_normal((3, 2, 2, 3)).astype(np.float32)
    for g, want in zip(run_in_mlir(func, [xv, wv]), interpret(func, [xv, wv])):
        assert g.shape == want.shape
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


@needs_runner
@pytest.mark.parametrize("groups", [2, 4])
def test_grouped_and_depthwise_convolutions_and_their_gradients_match_the_interpreter(groups: int) -> None:
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    f32 = DType.f32
    func, b = new_function("f", [("x", TensorType(f32, ("N", 6, 5, 4))),
                                 ("w", TensorType(f32, (3, 2, 4 // groups, 8)))])
    x, w = func.params
    geo = {"strides": (2, 1), "padding": (1, 1, 0, 1), "dilations": (1, 2), "groups": groups}
    y = b.emit("conv2d", x, w, **geo)
    func.outputs = [y, b.emit("conv2d_backprop_input", y, w, input_size=(6, 5), **geo),
                    b.emit("conv2d_backprop_filter", x, y, filter_size=(3, 2), **geo)]
    rng = np.random.default_rng(groups)
    args = [rng.standard_normal((2, 6, 5, 4)).astype(np.float32),
            rng.standard_normal((3, 2, 4 // groups, 8)).astype(np.float32)]
    for k, (g, want) in enumerate(zip(run_in_mlir(func, args), interpret(func, args))):
        assert g.shape == want.shape, k
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5, err_msg=f"output {k}")


@needs_runner
def test_gather_and_scatter_add_take_negative_indices_and_stop_on_a_bad_one() -> None:
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    table_t, ids_t = TensorType(DType.f32, (5, 3)), TensorType(DType.i32, ("N",))
    func, b = new_function("f", [("table", table_t), ("ids", ids_t)])
    table, ids = func.params
    rows = b.emit("gather", table, ids, axis=0)
    func.outputs = [rows, b.emit("scatter_add", table, ids, rows, axis=0)]
    tv = np.arange(15, dtype=np.float32).reshape(5, 3)
    good = np.array([0, -1, 4, -5, 4], np.int32)                      # repeats add up
    for g, want in zip(run_in_mlir(func, [tv, good]), interpret(func, [tv, good])):
        np.testing.assert_array_equal(g, want)
    lowered = mlir_opt(runner_program(func, [tv, np.array([1, 5], np.int32)]), *LOWERING)
    assert MLIR_RUNNER is not None
    done = subprocess.run([MLIR_RUNNER, "-e", "main", "-entry-point-result=void",
                           "-shared-libs=" + ",".join(map(str, RUNNER_LIBS))],
                          input=lowered, capture_output=True, text=True)
    # cf.assert aborts (its message goes to a stdout buffer that abort does not flush)
    assert done.returncode == -signal.SIGABRT and "Unranked Memref" not in done.stdout


@needs_runner
def test_philox_random_numbers_are_dlcs_bits() -> None:
    """fold_in and philox_uniform (f32: 24 bits, f64: 53) in i32 arithmetic give the
    reference's numbers exactly, for keys and counters with their high bits set."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    func, b = new_function("f", [("key", TensorType(DType.i64, ())), ("counter", TensorType(DType.i64, ("N",)))])
    key, counter = func.params
    func.outputs = [b.emit("fold_in", key, counter), b.emit("philox_uniform", key, counter, dtype=DType.f32),
                    b.emit("philox_uniform", key, counter, dtype=DType.f64)]
    args = [np.array(-1234567890123, np.int64), np.array([0, 1, 2, 2**40 + 7, -1, 2**62], np.int64)]
    for got, want in zip(run_in_mlir(func, args), interpret(func, args)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@needs_runner
def test_philox_normal_numbers_agree_with_the_reference() -> None:
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    func, b = new_function("f", [("key", TensorType(DType.i64, ())), ("counter", TensorType(DType.i64, (64,)))])
    key, counter = func.params
    func.outputs = [b.emit("philox_normal", key, counter, dtype=DType.f32),
                    b.emit("philox_normal", key, counter, dtype=DType.f64)]
    args = [np.array(987654321, np.int64), np.arange(64, dtype=np.int64) * 7919]
    got, want = run_in_mlir(func, args), interpret(func, args)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12)
    assert np.std(want[0]) > 0.5                             # real normals, not a constant


@needs_runner
def test_integer_bool_cast_reduction_and_layout_rules_match_the_interpreter() -> None:
    """The rules beyond the float elementwise ones, on edge values: saturating float -> int
    casts (nan, inf, out of range), -0.0, i32 extremes, u8, reductions to a scalar, keepdims,
    argmin/argmax, 0-d reshape, strided slice, broadcast, vector-matrix products."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    f32, i32 = DType.f32, DType.i32
    func, b = new_function("f", [("x", TensorType(f32, ("N", 4))), ("k", TensorType(i32, ("N", 4))),
                                 ("u", TensorType(DType.u8, (4,)))])
    x, k, u = func.params
    outs = {
        "to_i32": b.emit("cast", x, dtype=i32),
        "to_u8": b.emit("cast", x, dtype=DType.u8),
        "to_bool": b.emit("cast", x, dtype=DType.bool),
        "i_to_f": b.emit("cast", k, dtype=f32),
        "to_f64": b.emit("cast", x, dtype=DType.f64),
        "i64": b.emit("cast", k, dtype=DType.i64),
        "imax": b.emit("maximum", k, b.emit("neg", k)),
        "iabs": b.emit("abs", k),
        "isq": b.emit("square", k),
        "ipow": b.emit("pow", k, k),                        # wraps; negative exponents: dl's rule
        "ipow64": b.emit("pow", b.emit("cast", k, dtype=DType.i64), b.emit("cast", b.emit("abs", k), dtype=DType.i64)),
        "irelu": b.emit("relu", k),
        "isign": b.emit("sign", k),
        "inan": b.emit("isnan", k),
        "ifloor": b.emit("floor", k),
        "iclip": b.emit("clip", k, b.emit("neg", b.emit("abs", k)), b.emit("abs", k)),
        "fmax": b.emit("maximum", x, b.emit("neg", x)),
        "fmin": b.emit("minimum", x, b.emit("neg", x)),
        "lt": b.emit("lt", x, b.emit("neg", x)),
        "ne": b.emit("ne", k, k),
        "nan": b.emit("isnan", x),
        "not": b.emit("logical_not", b.emit("gt", x, x)),
        "sum_all": b.emit("sum", x, axes=None, keepdims=False),
        "mean_all": b.emit("mean", x, axes=None, keepdims=False),
        "max0": b.emit("max", k, axes=(0,), keepdims=True),
        "imin": b.emit("min", k, axes=None, keepdims=False),
        "argmin": b.emit("argmin", x, axis=0, keepdims=True),
        "argmax_i": b.emit("argmax", k, axis=1, keepdims=False),
        "any": b.emit("any", b.emit("gt", x, b.emit("neg", x)), axes=(1,), keepdims=False),
        "all": b.emit("all", b.emit("gt", x, x), axes=None, keepdims=False),
        "prod": b.emit("prod", x, axes=(1,), keepdims=False),
        "r0": b.emit("reshape", b.emit("sum", x, axes=None, keepdims=True), shape=()),
        "sl": b.emit("slice", x, start=(None, 1), stop=(None, 4), step=(None, 2)),
        "rev": b.emit("slice", x, start=(None, 3), stop=(None, 0), step=(None, -2)),
        "rev_all": b.emit("slice", x, start=(None, None), stop=(None, None), step=(None, -1)),
        "bt": b.emit("broadcast_to", u, shape=("N", 4)),
        "ed": b.emit("expand_dims", u, axis=0),
        "tr": b.emit("transpose", x, perm=(1, 0)),
        "mv": b.emit("matmul", x, b.emit("cast", u, dtype=f32)),
        "vm": b.emit("matmul", b.emit("cast", u, dtype=f32), b.emit("transpose", x, perm=(1, 0))),
    }
    func.outputs = list(outs.values())
    func.output_names = list(outs)
    xv = np.array([[-3.7, -0.0, 0.0, 2.5e10], [np.nan, np.inf, -np.inf, 1.5], [300.0, -1.0, 7.25, -2e9]], np.float32)
    kv = np.array([[-5, 0, 7, -2**31], [3, 3, -1, 2**31 - 1], [1, 2, 3, 4]], np.int32)
    uv = np.array([0, 200, 255, 7], np.uint8)
    xv = np.array([[-3.7, -0.0, 0.0, 2.5e10], [np.nan, np.inf, -np.inf, 1.5], [300.0, -1.0, 7.25, -2e9]], np.float32)
    kv = np.array([[-5, 0, 7, -2**31], [3, 3, -1, 2**31 - 1], [1, 2, 3, 4]], np.int32)
    uv = np.array([0, 200, 255, 7], np.uint8)
    for name, g, w in zip(outs, run_in_mlir(func, [xv, kv, uv]), interpret(func, [xv, kv, uv])):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-6, atol=0, err_msg=name)
        signed = ~np.isnan(w.astype(np.float64))          # a nan's sign bit is not specified
        assert np.array_equal(np.signbit(g)[signed], np.signbit(w)[signed]), name


@needs_runner
def test_pool_family_cumsum_and_indexing_updates_match_the_interpreter() -> None:
    """avg_pool2d (both divisors) and its gradient, max_pool2d_gather, cumsum (each of its
    four forms), slice_update, take_along_axis and scatter_add_along_axis with negative
    indices."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    f32 = DType.f32
    func, b = new_function("f", [("x", TensorType(f32, ("N", 5, 4, 2))), ("v", TensorType(f32, ("N", 6))),
                                 ("i", TensorType(DType.i64, ("N", 2)))])
    x, v, i = func.params
    window = {"pool_size": (2, 2), "strides": (2, 1), "padding": (1, 0, 1, 1)}     # a corner of 1 place
    outs = [b.emit("avg_pool2d", x, count_include_pad=False, **window),
            b.emit("avg_pool2d", x, count_include_pad=True, **window)]
    outs.append(b.emit("avg_pool2d_grad", outs[0], count_include_pad=False, input_size=(5, 4), **window))
    outs.append(b.emit("max_pool2d_gather", x, b.emit("neg", x), **window))
    outs += [b.emit("cumsum", v, axis=1, exclusive=e, reverse=r) for e in (False, True) for r in (False, True)]
    outs.append(b.emit("slice_update", v, b.emit("slice", v, start=(None, 0), stop=(None, 6), step=(None, 3)),
                       start=(None, 1), stop=(None, 6), step=(None, 3)))
    outs.append(b.emit("take_along_axis", v, i, axis=1))
    outs.append(b.emit("scatter_add_along_axis", v, i, outs[-1], axis=1))     # repeated places add up
    func.outputs = outs
    rng = np.random.default_rng(3)
    xv = rng.integers(-3, 4, (2, 5, 4, 2)).astype(np.float32)       # ties for the first maximum
    vv = rng.standard_normal((2, 6)).astype(np.float32)
    iv = np.array([[0, -1], [5, -1]], np.int64)
    for k, (g, want) in enumerate(zip(run_in_mlir(func, [xv, vv, iv]), interpret(func, [xv, vv, iv]))):
        assert g.shape == want.shape, k
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=f"output {k}")


@needs_runner
def test_floor_div_and_mod_follow_numpys_sign_rules() -> None:
    """Every sign combination, zero divisors, MIN // -1 (no trap), inf and nan, in f32, i32
    and u8 -- against the interpreter (numpy's floor_divide and remainder)."""
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    n = 14
    func, b = new_function("f", [("x", TensorType(DType.f32, (n,))), ("y", TensorType(DType.f32, (n,))),
                                 ("i", TensorType(DType.i32, (n,))), ("j", TensorType(DType.i32, (n,))),
                                 ("u", TensorType(DType.u8, (n,))), ("v", TensorType(DType.u8, (n,)))])
    x, y, i, j, u, v = func.params
    func.outputs = [b.emit(op, p, q) for p, q in ((x, y), (i, j), (u, v)) for op in ("floor_div", "mod")]
    xv = np.array([7, -7, 7, -7, 0, -0.0, 5.5, 1, -1, np.inf, 3, np.nan, 1e30, 6], np.float32)
    yv = np.array([2, 2, -2, -2, 3, 3, 0, 0, 0, 2, np.inf, 1, 3, -0.0], np.float32)
    iv = np.array([7, -7, 7, -7, 0, -2**31, -2**31, 5, -5, 2**31 - 1, 1, -1, 9, 0], np.int32)
    jv = np.array([2, 2, -2, -2, 3, -1, 1, 0, 0, -1, -1, 7, -4, 0], np.int32)
    uv = np.array([7, 255, 0, 9, 200, 1, 3, 5, 250, 0, 17, 18, 19, 20], np.uint8)
    vv = np.array([2, 16, 3, 0, 7, 1, 3, 0, 251, 0, 5, 4, 3, 2], np.uint8)
    args = [xv, yv, iv, jv, uv, vv]
    with np.errstate(divide="ignore", invalid="ignore"):
        want = interpret(func, args)
    for k, (g, w) in enumerate(zip(run_in_mlir(func, args), want)):
        assert g.dtype == w.dtype, k
        np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
        assert np.array_equal(np.signbit(g)[~np.isnan(w)], np.signbit(w)[~np.isnan(w)]), k


@needs_runner
def test_top_k_is_a_stable_descending_sort_with_nan_first() -> None:
    from compiler.ir.builder import new_function
    from compiler.ir.interpreter import interpret
    from compiler.ir.types import TensorType

    func, b = new_function("f", [("x", TensorType(DType.f32, ("N", 7))), ("i", TensorType(DType.i32, (2, 5)))])
    x, i = func.params
    func.outputs = [*b.emit("top_k", x, k=4), *b.emit("top_k", i, k=5), *b.emit("top_k", x, k=0)]
    xv = np.array([[1.0, np.nan, 3.0, -0.0, 0.0, np.inf, 3.0],
                   [2.0, 2.0, 2.0, -np.inf, np.nan, np.nan, -1.0]], np.float32)
    iv = np.array([[5, -2**31, 5, 2**31 - 1, 0], [1, 1, 1, 1, 1]], np.int32)
    for k, (g, w) in enumerate(zip(run_in_mlir(func, [xv, iv]), interpret(func, [xv, iv]))):
        assert g.shape == w.shape and g.dtype == w.dtype, k
        np.testing.assert_array_equal(g, w, err_msg=f"output {k}")
        assert np.array_equal(np.signbit(g)[~np.isnan(w)], np.signbit(w)[~np.isnan(w)]), k
