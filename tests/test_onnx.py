"""ONNX export and import (runtime/interop/): every example model into onnxruntime, small
ONNX models built with ``onnx.helper`` into dlc (run, fine-tuned), the op table both ways,
errors, the CLI, and a fast subset of ONNX's backend node tests."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'dlc[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'dlc[onnx]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import runtime  # noqa: E402
from compiler.ir.builder import new_function  # noqa: E402
from compiler.ir.interpreter import interpret  # noqa: E402
from compiler.ir.types import DType, TensorType  # noqa: E402
from compiler.ops import OPS  # noqa: E402
from compiler.ops.base import ELEMENTWISE  # noqa: E402
from runtime.cli import main  # noqa: E402
from runtime.interop.conformance import collect, run_case, summarize  # noqa: E402
from runtime.interop.onnx_export import OnnxExportError, export_function  # noqa: E402
from runtime.interop.onnx_import import OnnxImportError, import_onnx  # noqa: E402
from runtime.interop.onnx_table import EXPORTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = [p for p in sorted((ROOT / "examples").glob("*.dl")) if "model " in p.read_text()]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def ort_run(proto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def sample_input(model: runtime.model.Model, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    def dims(shape: tuple) -> tuple[int, ...]:       # a symbol past the batch (char_gpt's T) is 5
        return (n, *(d if isinstance(d, int) else 5 for d in shape[1:]))
    return {s.name: rng.random(dims(s.shape)).astype(s.dtype) for s in model.data_spec.inputs}


# ---------------------------------------------------------------------------
# Export


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_every_example_model_runs_in_onnxruntime_with_dlcs_numbers(path: Path) -> None:
    model = runtime.load_model(path, seed=3, backend="interp")
    constants = {**model.weights, **model.model_state}       # batch norm's moving statistics too
    proto = export_function(model.module.get("predict"), constants, name=model.name)
    assert proto.opset_import[0].version >= 17
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param == "N"                    # one graph for every batch size
    assert [list(i.dims) for i in proto.graph.initializer] == [list(w.shape) for w in constants.values()]
    for n in (1, 7):
        feeds = sample_input(model, n)
        expected = model.predict(feeds if len(feeds) > 1 else next(iter(feeds.values())))
        got = ort_run(proto, feeds)[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_model_export_writes_a_checked_file_and_native_numbers_agree(tmp_path: Path) -> None:
    model = runtime.load_model(ROOT / "examples/mnist_mlp.dl", seed=0)
    path = model.export(tmp_path / "mnist.onnx")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.initializer] == model.param_names
    x = np.random.default_rng(1).random((32, 784), dtype=np.float32)
    np.testing.assert_allclose(ort_run(proto, {"x": x})[0], model.predict(x), rtol=1e-5, atol=1e-5)


def _unary_function(op: str, dtype: DType):
    func, b = new_function(op, [("x", TensorType(dtype, ("N", 3)))])
    func.outputs = [b.emit(op, func.params[0])]
    return func


UNARY_FLOAT = sorted(n for n, d in OPS.items() if d.kind == ELEMENTWISE and d.operands == ("x",)
                     and n not in ("cast", "logical_not"))
BINARY = sorted(n for n, d in OPS.items() if d.kind == ELEMENTWISE and d.operands == ("lhs", "rhs")
                and n not in ("logical_and", "logical_or"))


@pytest.mark.parametrize("op", UNARY_FLOAT)
def test_each_unary_op_exports_with_its_meaning(op: str) -> None:
    func = _unary_function(op, DType.f32)
    x = np.array([[-2.5, -0.3, 0.0], [0.4, 1.5, 3.2]], dtype=np.float32)
    expected = interpret(func, [x])[0]
    got = ort_run(export_function(func), {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# div is float-only in dl; integer pow with a negative exponent has no ONNX equivalent
@pytest.mark.parametrize("op, dtype", [(op, DType.f32) for op in BINARY]
                         + [(op, DType.i32) for op in BINARY if op not in ("div", "pow")])
def test_each_binary_op_exports_with_its_meaning(op: str, dtype: DType) -> None:
    func, b = new_function(op, [("a", TensorType(dtype, ("N", 3))), ("b", TensorType(dtype, (3,)))])
    func.outputs = [b.emit(op, *func.params)]
    a = np.array([[-7, -2, 0], [3, 5, 9]]).astype(dtype.np)
    c = np.array([2, -3, 4]).astype(dtype.np)
    if dtype.is_float:
        a = a * np.float32(0.75)
    expected = interpret(func, [a, c])[0]
    np.testing.assert_allclose(ort_run(export_function(func), {"a": a, "b": c})[0], expected, rtol=1e-5)


def test_composites_export_through_their_decomposition() -> None:
    # mse has no ONNX op: its decompose rule's expansion is what is written
    assert "mse" not in EXPORTS
    func, b = new_function("f", [("p", TensorType(DType.f32, ("N", 2))), ("t", TensorType(DType.f32, ("N", 2)))])
    func.outputs = [b.mse(*func.params), b.var(func.params[0], axes=(1,)),
                    b.reshape(func.params[0], shape=(2, "N"))]
    p = np.arange(6, dtype=np.float32).reshape(3, 2)
    t = np.ones((3, 2), np.float32)
    got = ort_run(export_function(func), {"p": p, "t": t})
    for g, e in zip(got, interpret(func, [p, t])):
        np.testing.assert_allclose(g, e, rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_iota_exports_as_range_reshape_expand_and_cast(axis: int) -> None:
    func, b = new_function("f", [("x", TensorType(DType.f32, ("N", 3)))])
    func.outputs = [b.add(func.params[0], b.iota(dtype=DType.f32, shape=("N", 3), axis=axis))]
    x = np.zeros((4, 3), np.float32)
    np.testing.assert_array_equal(ort_run(export_function(func), {"x": x})[0], interpret(func, [x])[0])


def test_an_op_without_an_onnx_form_is_an_error_at_its_line() -> None:
    from compiler.diagnostics import Location

    func, b = new_function("f", [("key", TensorType(DType.i64, ()))])
    with b.at(Location("f.dl", 3, 5)):
        func.outputs = [b.fold_in(func.params[0], func.params[0])]
    with pytest.raises(OnnxExportError, match="dl.fold_in has no ONNX form") as e:
        export_function(func)
    assert e.value.loc.line == 3


# ---------------------------------------------------------------------------
# Import


def torch_like_mlp(batch: str | int = "batch_size") -> onnx.ModelProto:
    """What torch.onnx.export makes of Linear(4, 8) -> ReLU -> Linear(8, 3) -> Softmax: Gemm with
    transB=1 and [out, in] weights, plus a Flatten and a Shape/Gather/Concat/Reshape chain."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "fc1.weight"),
             numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "fc1.bias"),
             numpy_helper.from_array(rng.normal(size=(3, 8)).astype(np.float32), "fc2.weight"),
             numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "fc2.bias"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1, name="/Flatten"),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["h"], transB=1, name="/fc1/Gemm"),
        helper.make_node("Relu", ["h"], ["r"], name="/act/Relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0, name="/Gather"),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Constant", [], ["axes0"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0, name="/Concat"),
        helper.make_node("Reshape", ["r", "target"], ["r2"], name="/Reshape"),
        helper.make_node("Gemm", ["r2", "fc2.weight", "fc2.bias"], ["logits"], transB=1, name="/fc2/Gemm"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1, name="/Softmax"),
    ]
    nodes.insert(5, nodes.pop(6))       # the Constant before its user
    graph = helper.make_graph(nodes, "torch_mlp",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 3])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def test_an_imported_mlp_gives_onnxruntimes_numbers() -> None:
    proto = torch_like_mlp()
    graph = import_onnx(proto)
    assert [p.name for p in graph.function.params] == ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias", "input"]
    assert graph.function.params[-1].type.shape == ("batch_size", 4)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    got = interpret(graph.function, [*graph.weights.values(), x])[0]
    np.testing.assert_allclose(got, ort_run(proto, {"input": x})[0], rtol=1e-5, atol=1e-6)
    # the Shape -> Gather -> Concat chain folded into one reshape with the symbolic dim
    reshapes = [op for op in graph.function.ops if op.name == "reshape"]
    assert [op.attrs["shape"] for op in reshapes] == [("batch_size", 4), ("batch_size", 8)]


def test_import_writes_a_readable_dl_file_that_trains(tmp_path: Path) -> None:
    onnx.save(torch_like_mlp(), str(tmp_path / "mlp.onnx"))
    code, out, err = run_cli("import", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "mlp.dl"))
    assert code == 0, err
    assert "wrote" in out and (tmp_path / "mlp.npz").is_file()
    text = (tmp_path / "mlp.dl").read_text()
    assert "param fc1_weight: f32[8, 4]" in text
    assert "input input: f32[batch_size, 4]" in text
    assert "loss sparse_categorical_crossentropy(probs, y)" in text
    assert "# '/fc1/Gemm' (Gemm)" in text
    model = runtime.load_model(tmp_path / "mlp.dl", weights=tmp_path / "mlp.npz", backend="interp")
    x = np.random.default_rng(3).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), ort_run(torch_like_mlp(), {"input": x})[0], rtol=1e-5, atol=1e-6)
    # fine-tuning: gradients flow through the imported graph into every weight
    before = model.weights
    y = (np.arange(16) % 3).astype(np.int32)
    history = model.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(not np.array_equal(before[k], v) for k, v in model.weights.items())


def test_dlc_train_fine_tunes_from_imported_weights(tmp_path: Path) -> None:
    onnx.save(torch_like_mlp(), str(tmp_path / "mlp.onnx"))
    assert run_cli("import", str(tmp_path / "mlp.onnx"), "-o", str(tmp_path / "mlp.dl"))[0] == 0
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(8, 4)).astype(np.float32),
             y=(np.arange(8) % 3).astype(np.int32))
    code, _, err = run_cli("train", str(tmp_path / "mlp.dl"), "--weights", str(tmp_path / "mlp.npz"),
                           "--data", str(tmp_path / "data.npz"), "--epochs", "1", "--lr", "1e-12",
                           "--backend", "interp", "--quiet", "--save", str(tmp_path / "tuned.npz"))
    assert code == 0, err
    # a step of 1e-12 leaves the imported weights where they were (not the initializers')
    imported, tuned = np.load(tmp_path / "mlp.npz"), np.load(tmp_path / "tuned.npz")
    np.testing.assert_allclose(tuned["param/fc1_weight"], imported["param/fc1_weight"], atol=1e-6)


def test_load_onnx_returns_a_trainable_model_that_exports_back(tmp_path: Path) -> None:
    onnx.save(torch_like_mlp(), str(tmp_path / "mlp.onnx"))
    model = runtime.load_onnx(tmp_path / "mlp.onnx", backend="interp")
    x = np.random.default_rng(4).normal(size=(6, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), ort_run(torch_like_mlp(), {"input": x})[0], rtol=1e-5, atol=1e-6)
    model.fit(x, np.zeros(6, np.int32), epochs=1, batch_size=6, verbose=0)
    back = onnx.load(str(model.export(tmp_path / "tuned.onnx")))
    np.testing.assert_allclose(ort_run(back, {"input": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)


def test_unsupported_ops_are_listed_together_by_node_name(tmp_path: Path) -> None:
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="where_nonzero"),
             helper.make_node("Relu", ["x"], ["r"], name="ok"),
             helper.make_node("NonZero", ["r"], ["nz2"], name="second"),
             helper.make_node("Hardmax", ["r"], ["hm"], name="hard")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in
                               [("nz", TensorProto.INT64, [2, "k"]), ("nz2", TensorProto.INT64, [2, "k2"]),
                                ("hm", TensorProto.FLOAT, [2, 3])]])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError) as e:
        import_onnx(proto)
    assert "cannot import 3 node(s)" in e.value.message
    assert "unsupported op NonZero: 'where_nonzero', 'second'" in e.value.message
    assert "unsupported op Hardmax: 'hard'" in e.value.message
    onnx.save(proto, str(tmp_path / "g.onnx"))
    code, _, err = run_cli("import", str(tmp_path / "g.onnx"), "-o", str(tmp_path / "g.dl"))
    assert code == 1 and "unsupported op NonZero" in err and not (tmp_path / "g.dl").exists()


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf at all")
    code, _, err = run_cli("import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "bad.dl"))
    assert code == 1 and "not a valid ONNX model" in err


# ---------------------------------------------------------------------------
# CLI and the op table both ways


def test_dlc_export_then_import_round_trips(tmp_path: Path) -> None:
    code, out, err = run_cli("export", "examples/xor.dl", "-o", str(tmp_path / "xor.onnx"), "--seed", "2")
    assert code == 0, err
    assert "inputs x: f32[N, 2]" in out and "4 initializers" in out
    code, _, err = run_cli("import", str(tmp_path / "xor.onnx"), "-o", str(tmp_path / "xor.dl"))
    assert code == 0, err
    original = runtime.load_model(ROOT / "examples/xor.dl", seed=2, backend="interp")
    back = runtime.load_model(tmp_path / "xor.dl", weights=tmp_path / "xor.npz", backend="interp")
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    np.testing.assert_allclose(back.predict(x), original.predict(x), rtol=1e-6)
    assert "loss binary_crossentropy(p, y)" in (tmp_path / "xor.dl").read_text()


def test_cli_export_writes_moving_statistics_as_initializers(tmp_path: Path) -> None:
    out = tmp_path / "f.onnx"
    code, text, _ = run_cli("export", str(ROOT / "examples/fmnist_mlp_dropout_bn.dl"), "-o", str(out))
    assert code == 0 and "12 initializers" in text
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == ["x"]
    assert "batch_norm_1.moving_mean" in [i.name for i in proto.graph.initializer]


def test_export_needs_a_known_format(tmp_path: Path) -> None:
    code, _, err = run_cli("export", "examples/xor.dl", "-o", str(tmp_path / "xor.bin"))
    assert code == 1 and "cannot tell the format" in err


def test_every_export_rule_names_a_real_op() -> None:
    assert set(EXPORTS) <= set(OPS)


def test_onnx_backend_node_tests_subset() -> None:
    """A fast slice of ONNX's own node tests (bench/onnx_conformance.py runs all of them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect(["add", "relu", "gemm", "softmax", "logsoftmax", "reducesum", "reducemean",
                         "matmul", "transpose", "reshape", "where", "clip", "leakyrelu", "erf", "sigmoid"])
    outcomes = [run_case(c) for c in cases]
    failures = [f"{o.name}: {o.detail}" for o in outcomes if o.status == "failed"]
    assert failures == []
    counts = summarize(outcomes)
    assert counts["passed"] >= 90, counts


def test_convolutions_and_pools_export_in_nchw_with_dlcs_numbers() -> None:
    # dl is NHWC/HWIO, ONNX NCHW/OIHW: each conv or pool is written between transposes
    f32 = DType.f32
    func, b = new_function("f", [("x", TensorType(f32, ("N", 9, 8, 4))), ("w", TensorType(f32, (3, 2, 2, 6)))])
    x, w = func.params
    y = b.conv2d(x, w, strides=(2, 1), padding=(1, 2, 0, 1), dilations=(1, 2), groups=2)
    func.outputs = [b.max_pool2d(y, pool_size=(2, 2), strides=(1, 2), padding=(0, 1, 1, 0)),
                    b.avg_pool2d(y, pool_size=(3, 2), padding=(1, 1, 0, 1)),
                    b.avg_pool2d(y, pool_size=(2, 2), padding=(1, 0, 0, 1), count_include_pad=True),
                    b.flatten(y)]
    func.output_names = ["a", "b", "c", "d"]
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((3, 9, 8, 4)).astype(np.float32)
    wv = rng.standard_normal((3, 2, 2, 6)).astype(np.float32)
    proto = export_function(func, {"w": wv}, name="convs")
    got = ort_run(proto, {"x": xv})
    for g, want in zip(got, interpret(func, [xv, wv])):
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)


# -- importing convolutions and pools (NCHW graphs, as PyTorch exports them) -----------------


def _image_graph(nodes: list, inits: list, c: int, size: int, out_shape: list) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "img", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


CONV_VARIANTS = [
    dict(pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[0, 1, 2, 1]),
    dict(dilations=[2, 2]),
    dict(group=3, pads=[1, 1, 1, 1]),                       # depthwise: 3 channels, 3 groups
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="VALID"),
]


@pytest.mark.parametrize("attrs", CONV_VARIANTS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_an_imported_conv_gives_onnxruntimes_numbers(attrs: dict) -> None:
    rng = np.random.default_rng(7)
    groups = attrs.get("group", 1)
    w = rng.normal(size=(6, 3 // groups, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "conv.weight"),
             numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "conv.bias")]
    proto = _image_graph([helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"], kernel_shape=[3, 3],
                                           name="/conv/Conv", **attrs)], inits, 3, 9, ["N", 6, "h", "w"])
    graph = import_onnx(proto)
    x = rng.normal(size=(2, 3, 9, 9)).astype(np.float32)
    got = interpret(graph.function, [*graph.weights.values(), x])[0]
    np.testing.assert_allclose(got, ort_run(proto, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("GlobalAveragePool", {}),
    ("GlobalMaxPool", {}),
])
def test_imported_pools_give_onnxruntimes_numbers(op: str, attrs: dict) -> None:
    proto = _image_graph([helper.make_node(op, ["x"], ["y"], name=f"/{op}", **attrs)], [], 4, 7,
                         ["N", 4, "h", "w"])
    graph = import_onnx(proto)
    x = np.random.default_rng(8).normal(size=(3, 4, 7, 7)).astype(np.float32)
    got = interpret(graph.function, [*graph.weights.values(), x])[0]
    np.testing.assert_allclose(got, ort_run(proto, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_pool_and_conv_variants_dlc_cannot_import_are_named() -> None:
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[2, 2], ceil_mode=1, name="ceil"),
             helper.make_node("MaxPool", ["x"], ["b"], kernel_shape=[2, 2], dilations=[2, 2], name="dilated"),
             helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    proto = _image_graph(nodes, [], 2, 6, ["N", 2, 3, 3])
    with pytest.raises(OnnxImportError) as e:
        import_onnx(proto)
    assert "ceil_mode=1" in e.value.message and "'ceil'" in e.value.message
    assert "dilations=[2, 2]" in e.value.message and "'dilated'" in e.value.message


def test_an_imported_cnn_runs_natively_and_fine_tunes(tmp_path: Path) -> None:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm, as torch.onnx.export writes a small CNN."""
    rng = np.random.default_rng(9)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32) / 3, "c.weight"),
             numpy_helper.from_array(np.zeros(4, np.float32), "c.bias"),
             numpy_helper.from_array(rng.normal(size=(3, 4 * 3 * 3)).astype(np.float32) / 6, "fc.weight"),
             numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")]
    nodes = [helper.make_node("Conv", ["x", "c.weight", "c.bias"], ["c"], pads=[1, 1, 1, 1], name="/c/Conv"),
             helper.make_node("Relu", ["c"], ["r"], name="/r/Relu"),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="/p/MaxPool"),
             helper.make_node("Flatten", ["p"], ["f"], axis=1, name="/f/Flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], transB=1, name="/fc/Gemm")]
    proto = _image_graph(nodes, inits, 1, 6, ["N", 3])
    onnx.save(proto, str(tmp_path / "cnn.onnx"))
    model = runtime.load_onnx(tmp_path / "cnn.onnx")
    x = rng.normal(size=(8, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), ort_run(proto, {"x": x})[0], rtol=1e-5, atol=1e-5)
    before = model.weights
    model.fit(x, (np.arange(8) % 3).astype(np.int32), epochs=2, batch_size=8, verbose=0)
    assert all(not np.array_equal(before[k], v) for k, v in model.weights.items())
