"""IR inspection: FLOP polynomials, stats (MNIST numbers), DOT graphs, and the commands
opt / passes / graph / stats / ir --after and the pass flags, run in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat

import numpy as np
import pytest

from compiler.analysis.flops import Cost, Poly, function_cost, op_cost
from compiler.analysis.graph import GraphOutputError, to_dot, write_graph
from compiler.analysis.stats import function_stats, model_stats, peak_live_bytes, with_train_step
from compiler.ir.builder import new_function
from compiler.ir.types import DType, TensorType

F32 = DType.f32
MNIST = "examples/mnist_mlp.dl"
CHAIN = "examples/sigmoid_chain.dl"


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def dlc(*argv: str) -> tuple[int, str, str]:
    from runtime.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def load(path: str, defer_grads: bool = False):
    from frontend_dsl.api import compile_file

    return compile_file(path, defer_grads=defer_grads)


# ---------------------------------------------------------------------------
# Polynomials and op costs


def test_poly_arithmetic_printing_and_evaluation():
    n = Poly.of("N")
    p = n * 2 * 784 * 512 + n * n + 10 + Poly.of("M") * n
    assert str(p) == "M*N + N^2 + 802816*N + 10"
    assert p.evaluate({"N": 3, "M": 5}) == 15 + 9 + 802816 * 3 + 10
    assert Poly.product(["N", 784]) == n * 784
    assert str(Poly()) == "0" and Poly.of(0) == Poly()
    with pytest.raises(KeyError):
        n.evaluate({})


def test_op_costs_follow_the_model():
    f, b = new_function("f", [("x", T("N", 784)), ("w", T(784, 512)), ("v", T(512))])
    x, w, v = f.params
    h = b.matmul(x, w)
    e = b.exp(h)
    s = b.sum(e, axes=(1,))
    r = b.reshape(s, shape=("N", 1))
    f.outputs = [b.add(r, b.constant(1.0, F32))]
    n = Poly.of("N")
    costs = [op_cost(op) for op in f.ops]
    assert costs[0] == Cost(flops=n * 2 * 784 * 512)                 # matmul 2MNK
    assert costs[1] == Cost(transcendentals=n * 512)                 # exp: transcendental
    assert costs[2] == Cost(flops=n * 512)                           # sum: one per element
    assert costs[3] == Cost()                                         # reshape: data movement
    assert function_cost(f).flops == n * (2 * 784 * 512 + 512 + 1)


def test_composite_ops_cost_their_decomposition():
    f, b = new_function("f", [("z", T("N", 10))])
    f.outputs = [b.softmax(f.params[0])]
    # max, sub, exp, sum, div over [N, 10]: 4 FLOPs and 1 exp per element
    assert function_cost(f) == Cost(flops=Poly.of("N") * 40, transcendentals=Poly.of("N") * 10)


def test_peak_live_bytes_frees_values_after_their_last_use():
    f, b = new_function("f", [("x", T(256))])       # 1 KiB values
    a = b.neg(f.params[0])
    c = b.neg(a)                                    # a dies here
    d = b.neg(c)                                    # c dies here
    f.outputs = [d]
    assert peak_live_bytes(f, {}) == 2 * 1024
    assert function_stats(f).intermediate_bytes.evaluate() == 3 * 1024


# ---------------------------------------------------------------------------
# MNIST numbers


def test_mnist_parameters_gradients_and_optimizer_state():
    module, note = with_train_step(load(MNIST))
    assert note is None and "train_step" in module
    m = model_stats(module)
    assert m.param_count == 784 * 512 + 512 + 512 * 10 + 10 == 407050
    assert m.param_bytes == m.gradient_bytes == 4 * 407050
    assert m.optimizer == "rmsprop" and m.state_bytes == 4 * 407050     # one velocity per param


def test_mnist_forward_flops_at_batch_128():
    m = model_stats(load(MNIST))
    b = 128
    matmuls = 2 * b * (784 * 512 + 512 * 10)
    elementwise = b * 512 + b * 512 + b * 10           # bias add, relu, bias add
    softmax = 4 * b * 10                               # max, sub, sum, div (exp counted apart)
    assert m.forward.cost.flops.evaluate({"N": b}) == matmuls + elementwise + softmax
    assert m.forward.cost.transcendentals.evaluate({"N": b}) == b * 10
    assert m.forward.cost_by_op["matmul"].flops.evaluate({"N": b}) == matmuls


def test_mnist_training_step_matmuls():
    from compiler.passes import run_pipeline

    module, _ = with_train_step(load(MNIST))
    step = model_stats(run_pipeline(module, "inference")).train_step
    # forward 2 matmuls; backward: dW for both layers and dx for the second only
    # (the input x needs no gradient)
    per_row = 2 * (784 * 512) * 2 + 2 * (512 * 10) * 3
    assert step.cost_by_op["matmul"].flops == Poly.of("N") * per_row
    assert step.cost.transcendentals.evaluate({"N": 128}) >= 407050      # rmsprop's sqrt


def test_stats_command_report_and_json():
    code, out, _ = dlc("stats", MNIST, "--batch", "128")
    assert code == 0
    assert "model mnist_mlp: 407,050 parameters in 4 tensors" in out
    assert "104,208,640 (814130*N)" in out          # forward FLOPs at N=128, and the formula
    assert "training step (@train_step" in out
    assert "symbolic dims evaluated at N=128" in out
    code, out, _ = dlc("stats", MNIST, "--json", "--batch", "2", "--fn", "predict")
    data = json.loads(out)
    assert data["bindings"] == {"N": 2}
    assert [f["name"] for f in data["functions"]] == ["predict"]
    assert data["functions"][0]["flops"] == 814130 * 2
    assert data["model"]["param_count"] == 407050


def test_stats_of_plain_functions_and_errors():
    code, out, _ = dlc("stats", CHAIN, "--fn", "chain", "--dim", "N=10")
    assert code == 0 and "@chain: 6 ops (mul 3, sigmoid 3)" in out
    assert "transcendental    30 (3*N)" in out
    code, _, err = dlc("stats", CHAIN, "--batch", "0")
    assert code == 1 and "--batch must be positive" in err


# ---------------------------------------------------------------------------
# Graphs


def _nodes(dot: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(f\d+_\w+) \[(.*)\];$", dot, re.M))


def test_graph_nodes_edges_and_marks():
    module = load(MNIST)
    dot = to_dot(module, [module.get("predict")])
    nodes = _nodes(dot)
    assert dot.startswith("digraph dl {") and dot.rstrip().endswith("}")
    assert 'label="@predict"' in dot
    assert 'fillcolor="gold"' in nodes["f0_p0"] and "dense_1.kernel" in nodes["f0_p0"]
    assert 'fillcolor="lightblue"' in nodes["f0_p4"]                     # the input x
    assert [n for n in nodes if n.startswith("f0_op")] == [f"f0_op{i}" for i in range(6)]
    assert "dl.softmax" in nodes["f0_op5"]
    assert "doubleoctagon" in nodes["f0_out0"] and '"probs"' in nodes["f0_out0"]
    assert 'f0_p4 -> f0_op0 [label="f32[N, 784]"];' in dot
    assert 'f0_op0 -> f0_op1 [label="f32[N, 512]"];' in dot
    assert 'f0_op5 -> f0_out0 [label="f32[N, 10]"];' in dot
    assert "subgraph cluster_f0_L" in dot                                # clusters by source line
    assert "backward" not in dot


def test_graph_marks_backward_ops():
    module = load(CHAIN)
    dot = to_dot(module, [module.get("dchain_loss")])
    backward = [n for n, attrs in _nodes(dot).items() if 'class="backward"' in attrs]
    forward = [n for n, attrs in _nodes(dot).items()
               if "dl." in attrs and 'class="backward"' not in attrs]
    assert len(forward) == 6 and len(backward) > 6
    assert all('fillcolor="mistyrose"' in _nodes(dot)[n] for n in backward)
    assert "backward of line 17" in dot
    assert 'label="backward of examples/sigmoid_chain.dl:17"' in dot


def test_graph_groups_override_line_clusters():
    module = load(CHAIN)
    func = module.get("chain")
    groups = {op: ("kernel 0" if i < 3 else "kernel 1") for i, op in enumerate(func.ops)}
    dot = to_dot(module, [func], groups=groups)
    assert dot.count("subgraph cluster_f0_g_kernel") == 2 and 'label="kernel 1"' in dot
    assert "cluster_f0_L" not in dot


def test_writing_svg_without_graphviz_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphOutputError) as info:
        write_graph("digraph {}\n", tmp_path / "g.svg")
    assert "needs Graphviz's 'dot' program" in info.value.message
    assert any("apt install graphviz" in n and "g.dot" in n for n in info.value.notes)
    with pytest.raises(GraphOutputError, match="use .dot, .gv, .svg or .png"):
        write_graph("digraph {}\n", tmp_path / "g.pdf")


def test_writing_svg_runs_dot(tmp_path, monkeypatch):
    fake = tmp_path / "dot"          # a stand-in for Graphviz: records its arguments and input
    fake.write_text("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n"
                    "cat > \"$(dirname \"$0\")/stdin\"\necho '<svg/>' > \"$3\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "g.svg"
    code, stdout, _ = dlc("graph", "examples/xor.dl", "--fn", "predict", "-o", str(out))
    assert code == 0 and stdout == f"wrote {out}\n"
    assert (tmp_path / "args").read_text().split() == ["-Tsvg", "-o", str(out)]
    assert (tmp_path / "stdin").read_text().startswith("digraph dl {")
    assert out.read_text() == "<svg/>\n"


def test_graph_command_writes_dot_and_takes_after(tmp_path):
    path = tmp_path / "g.dot"
    code, out, _ = dlc("graph", CHAIN, "--after", "autodiff", "--fn", "dchain_loss", "-o", str(path))
    assert code == 0 and out == f"wrote {path}\n"
    assert 'class="backward"' in path.read_text()
    code, out, _ = dlc("graph", "examples/xor.dl", "--fn", "predict")
    assert out.startswith("digraph dl {")


# ---------------------------------------------------------------------------
# opt, passes, ir --after and the pass flags


def test_passes_command_lists_passes_patterns_and_pipelines():
    code, out, _ = dlc("passes", "--patterns")
    assert code == 0
    for name in ("autodiff", "canonicalize", "cse", "dce"):
        assert re.search(rf"^  {name} +\S", out, re.M)
    assert re.search(r"^  inference +canonicalize,cse,dce$", out, re.M)
    assert re.search(r"^  train +autodiff,canonicalize,cse,dce$", out, re.M)
    assert re.search(r"^  neg-neg +neg\(neg\(x\)\) -> x$", out, re.M)


def test_ir_after_autodiff_shows_the_backward_pass():
    code, out, _ = dlc("ir", CHAIN, "--after", "autodiff", "--fn", "dchain_loss",
                       "--debug-locations")
    assert code == 0
    assert 'loc("backward"("examples/sigmoid_chain.dl":17' in out
    code, later, _ = dlc("ir", CHAIN, "--after", "cse", "--fn", "dchain_loss")
    assert later.count('"dl.constant"') < out.count('"dl.constant"')     # equal 1.0s merged


def test_ir_after_errors():
    code, _, err = dlc("ir", CHAIN, "--after", "nope")
    assert code == 1 and "--after: unknown pass 'nope'" in err
    code, _, err = dlc("ir", CHAIN, "--passes", "cse,dce", "--after", "autodiff")
    assert code == 1 and "pass 'autodiff' is not in the pipeline 'cse,dce'" in err


def test_opt_reads_ir_text_and_prints_dumps_timing_and_stats(tmp_path):
    src = tmp_path / "m.mlir"
    code, text, _ = dlc("opt", "examples/student_pass.dl")
    assert code == 0
    src.write_text(text)
    code, out, err = dlc("opt", str(src), "--passes", "inference", "--print-ir-after=all",
                         "--time-passes", "--pass-stats", "--pass-option",
                         "canonicalize.fold-limit=16")
    assert code == 0 and out.startswith("module")
    assert err.count("// -----// IR Dump After") == 3
    assert "... Execution time report ..." in err and "... Pass statistics report ..." in err
    code, out2, err2 = dlc("opt", str(src), "--passes", "inference", "--print-ir-before",
                           "cse", "--no-verify", "-o", str(tmp_path / "o.mlir"))
    assert code == 0 and out2 == "" and err2.count("IR Dump Before cse") == 1
    assert (tmp_path / "o.mlir").read_text() == out


def test_print_after_change_skips_unchanged_passes():
    code, _, err = dlc("opt", MNIST, "--passes", "dce,canonicalize", "--print-ir-after-change")
    assert code == 0
    assert "IR Dump After canonicalize" in err and "IR Dump After dce" not in err


def test_pass_flag_errors():
    code, _, err = dlc("opt", CHAIN, "--passes", "canonicalise")
    assert code == 1 and "unknown pass 'canonicalise'" in err
    code, _, err = dlc("opt", CHAIN, "--pass-option", "canonicalize")
    assert code == 1 and "--pass-option expects PASS.KEY=VALUE" in err
    code, _, err = dlc("opt", CHAIN, "--pass-option", "nopass.x=1")
    assert code == 1 and "--pass-option: unknown pass 'nopass'" in err


def test_finite_math_option_reaches_the_pass(tmp_path):
    src = tmp_path / "m.mlir"
    src.write_text('func.func @f(%x: tensor<3xf32>) -> (tensor<3xf32>) {\n'
                   '  %0 = "dl.sub"(%x, %x) : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>\n'
                   '  func.return %0 : tensor<3xf32>\n}\n')
    _, exact, _ = dlc("opt", str(src), "--passes", "canonicalize")
    _, fast, _ = dlc("opt", str(src), "--passes", "canonicalize", "--pass-option",
                     "canonicalize.finite-math=true")
    assert '"dl.sub"' in exact and '"dl.sub"' not in fast


def test_run_takes_pass_flags(tmp_path):
    code, out, err = dlc("run", CHAIN, "--fn", "chain", "--interp", "--passes", "inference",
                         "--check-each-pass", "--time-passes", "-i", "x=[[0.5],[1.0]]",
                         "-i", "w1=1.0", "-i", "w2=2.0", "-i", "w3=-1.0")
    assert code == 0, err
    assert "Execution time report" in err
    x = np.array([[0.5], [1.0]])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = sig(-1.0 * sig(2.0 * sig(x)))
    numbers = [float(t) for t in re.findall(r"-?\d+\.\d+", out.split("\n", 1)[1])]
    np.testing.assert_allclose(numbers, expected.ravel(), rtol=1e-5)


CNN_SOURCE = """model tiny_cnn {
    input x: f32[N, 28, 28, 1]
    target y: i32[N]
    let c1 = max_pool(conv2d(x, filters=32, kernel=3, activation=relu), 2)
    let c2 = conv2d(c1, filters=64, kernel=3, strides=2, padding=same)
    output probs = dense(flatten(c2), 10, activation=softmax)
    loss sparse_categorical_crossentropy(probs, y)
    optimizer adam(lr=0.001)
}
"""


def test_stats_lists_each_convolution_with_its_location_shapes_and_flops(tmp_path):
    path = tmp_path / "cnn.dl"
    path.write_text(CNN_SOURCE)
    code, out, _ = dlc("stats", str(path), "--fn", "predict", "--batch", "2")
    assert code == 0
    lines = out.split("FLOPs per convolution:\n")[1].splitlines()
    first, second = lines[0].split(), lines[1].split()
    # 26 x 26 outputs x 9 taps x 1 -> 32 channels x 2; 'same' with stride 2: 7 x 7 outputs of 9 x 32 -> 64
    assert first[:2] == ["conv2d", f"{path}:4:23"] and first[-2:] == ["778,752", "(389376*N)"]
    assert "f32[N, 28, 28, 1] * f32[3, 3, 1, 32] -> f32[N, 26, 26, 32] (kernel conv2d_1.kernel)" in lines[0]
    assert second[:2] == ["conv2d", f"{path}:5:14"] and second[-2:] == ["3,612,672", "(1806336*N)"]
    assert 389376 + 1806336 == 2 * 9 * (26 * 26 * 32 + 7 * 7 * 32 * 64)
    code, out, _ = dlc("stats", str(path), "--json", "--fn", "train_step", "--batch", "2")
    convs = json.loads(out)["functions"][0]["convolutions"]
    assert [(c["op"], c["location"]) for c in convs] == [
        ("conv2d", f"{path}:4:23"), ("conv2d", f"{path}:5:14"),
        ("conv2d_backprop_input", f"backward of {path}:5:14"),
        ("conv2d_backprop_filter", f"backward of {path}:5:14"),
        ("conv2d_backprop_filter", f"backward of {path}:4:23")]
    assert convs[2]["kernel"] == "conv2d_2.kernel" and convs[3]["flops"] == 1806336 * 2
