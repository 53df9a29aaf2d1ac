"""The benchmark suite's own logic, without torch or JAX and without timing anything.

Checks the case selection, the targets and the table, the workers'
environments, the numpy peer and the float64 oracle it is checked against,
the worker protocol end to end, the peak-RSS wrapper, and the dlc adapter on
the reference interpreter.  No assertion here depends on how fast anything is.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import cases as C  # noqa: E402
from bench import data  # noqa: E402
from bench.client import WorkerClient  # noqa: E402
from bench.peers import Unavailable, check_sgemm  # noqa: E402
from bench.peers.numpy_impl import NumpyMlp  # noqa: E402
from bench.report import Result, table, verdict  # noqa: E402
from bench.run import UsageError, main, parse_peers, parse_threads, rotated  # noqa: E402
from bench.worker import worker_env  # noqa: E402

# -- cases and options ----------------------------------------------------------


def test_select_groups_ids_and_quick_subset():
    everything = C.select(None, quick=False)
    quick = C.select(None, quick=True)
    assert {c.id for c in quick} < {c.id for c in everything}
    sgemm = C.select(["sgemm"], quick=False)
    assert [c.id for c in sgemm] == ["sgemm-256", "sgemm-512", "sgemm-1024", "sgemm-2048",
                                     "sgemm-fwd1", "sgemm-fwd2", "sgemm-dw1", "sgemm-dw2", "sgemm-dh"]
    assert [c.id for c in C.select(["step-32", "compile"], quick=False)] == \
        ["step-32", "compile-cold", "compile-xor", "compile-warm", "compile-import"]
    with pytest.raises(C.UnknownCase, match="'sgem'"):
        C.select(["sgem"], quick=False)


def test_every_issue_target_is_declared():
    targets = {(c.id, t): c.targets[t] for c in C.ALL_CASES + [C.SPEEDUP] for t in c.targets}
    for size in (512, 1024, 2048):
        for t in (1, 2):
            assert targets[(f"sgemm-{size}", t)] == C.Target(0.9, C.NUMPY, False)
    assert targets[("sgemm-fwd1", 2)] == C.Target(1.0, C.NUMPY, False)
    assert targets[("step-1", 1)].bound == 0.5 and targets[("step-128", 2)].bound == 0.75
    assert targets[("infer-1", 2)].bound == 0.5 and targets[("infer-128", 1)].bound == 0.8
    assert targets[("epoch", 1)].bound == 0.75
    assert targets[("compile-cold", 0)] == C.Target(0.3, "absolute", True)
    assert targets[("compile-xor", 0)] == C.Target(0.15, "absolute", True)
    assert targets[("compile-warm", 0)] == C.Target(20.0, "absolute", True)
    assert targets[("compile-import", 0)] == C.Target(150.0, "absolute", True)
    assert targets[("sgemm-1024-speedup", 0)] == C.Target(1.8, "absolute", False)
    assert all(targets[(f"vmath-{f}", 1)].versus == C.NUMPY for f in ("exp", "log", "tanh", "sigmoid"))


def test_case_figures_convert_seconds():
    sgemm = C.BY_ID["sgemm-1024"]
    assert sgemm.figure(2 * 1024**3 / 100e9) == pytest.approx(100.0)
    assert C.BY_ID["step-128"].figure(0.0015) == pytest.approx(1500.0)
    assert C.BY_ID["vmath-exp"].figure(C.VMATH_ELEMENTS / 2e9) == pytest.approx(2.0)


def test_parse_peers_and_threads():
    assert parse_peers(None, quick=False) == (C.NUMPY, C.TORCH, C.TORCH_COMPILE, C.JAX)
    assert parse_peers("torch,numpy", quick=True) == (C.NUMPY, C.TORCH)
    assert parse_peers("torch.compile", quick=True) == (C.TORCH_COMPILE,)
    with pytest.raises(UsageError, match="tensorflow"):
        parse_peers("tensorflow", quick=False)
    assert parse_threads("2,1,2") == (1, 2)
    with pytest.raises(UsageError):
        parse_threads("0")
    with pytest.raises(UsageError):
        parse_threads("one")


def test_rotation_changes_who_goes_first():
    order = ["dlc", "numpy", "jax"]
    assert [rotated(order, r)[0] for r in range(4)] == ["dlc", "numpy", "jax", "dlc"]
    assert sorted(rotated(order, 5)) == sorted(order)
    assert rotated([], 3) == []


# -- targets and the table --------------------------------------------------------


def _row(case_id: str, threads: int, **figures: float) -> Result:
    r = Result(C.BY_ID[case_id], threads)
    r.figures.update({k.replace("_", "."): v for k, v in figures.items()})
    return r


def test_verdict_against_the_fastest_peer():
    r = _row("step-128", 2, dlc=500.0, numpy=800.0, jax=700.0, torch=1400.0)
    v = verdict(r)
    assert v.versus == "jax" and v.ratio == pytest.approx(500 / 700) and v.status == "PASS"
    r.figures["dlc"] = 600.0
    assert verdict(r).status == "MISS"          # 600/700 > 0.75


def test_verdict_against_numpy_throughput_and_absolute():
    r = _row("sgemm-1024", 1, dlc=190.0, numpy=200.0, torch=250.0)
    v = verdict(r)
    assert v.versus == "numpy" and v.ratio == pytest.approx(0.95) and v.status == "PASS"
    r.figures["dlc"] = 170.0
    assert verdict(r).status == "MISS"
    cold = Result(C.COMPILE_COLD, 0, figures={"dlc": 0.29})
    assert verdict(cold).status == "PASS"
    cold.figures["dlc"] = 0.31
    assert verdict(cold).status == "MISS"
    assert verdict(Result(C.COMPILE_WARM, 0, figures={"dlc": 21.0})).status == "MISS"


def test_verdict_without_dlc_or_peers_or_target():
    missing = _row("step-1", 1, numpy=100.0)
    missing.na["dlc"] = "not built"
    assert verdict(missing).status == "n/a"
    assert verdict(_row("step-1", 1, dlc=10.0)).status == "n/a"     # no peer to compare with
    untargeted = verdict(_row("step-512", 2, dlc=10.0, numpy=20.0))
    assert untargeted.status == "-" and untargeted.ratio == pytest.approx(0.5)


def test_table_numbers_reasons_once():
    a = _row("step-1", 1, numpy=100.0)
    a.na["dlc"] = "runtime.compile missing"
    b = _row("step-1", 2, numpy=90.0)
    b.na["dlc"] = "runtime.compile missing"
    b.na["jax"] = "jax not importable"
    text = table([a, b], ("dlc", "numpy", "jax"))
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:4]] == ["case", "thr", "unit"]
    assert "n/a [1]" in lines[2] and "n/a [1]" in lines[3] and "n/a [2]" in lines[3]
    assert "| -" in lines[2]                        # jax not run at 1 thread: a dash, not n/a
    assert lines[-2:] == ["[1] runtime.compile missing", "[2] jax not importable"]


def test_busy_rows_also_show_cpu_time_figures():
    busy = _row("gpt-step-64", 1, dlc=30000.0, torch=40000.0, jax=35000.0)
    busy.background = [1.5, 1.4, 1.6]
    busy.add_cpu_samples("dlc", [12000.0, 11000.0, 13000.0])
    busy.add_cpu_samples("jax", [17000.0, 18000.0])
    busy.add_cpu_samples("torch", [22000.0])
    quiet = _row("gpt-step-64", 2, dlc=9000.0, jax=12000.0)
    quiet.add_cpu_samples("dlc", [9000.0])
    quiet.add_cpu_samples("jax", [12000.0])
    quiet.background = [0.1]
    from bench.report import cpu_ratio, to_json
    assert busy.cpu_figures["dlc"] == 12000.0
    # the verdict's reference is the wall-time fastest peer (jax); the CPU ratio is against it too
    assert cpu_ratio(busy) == pytest.approx(12000.0 / 17500.0)
    text = table([busy, quiet], ("dlc", "torch", "jax"))
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines == ["- adder GPT train step (AdamW, clipnorm), batch 64 (1 thr, us): dlc 12000, torch 22000, "
                     "jax 17500; dlc / jax 0.69"]                              # the quiet row has none
    assert to_json(busy)["cpu_ratio"] == pytest.approx(0.6857, abs=1e-4)
    assert to_json(_row("step-1", 1, dlc=1.0))["cpu_ratio"] is None


# -- worker environments ------------------------------------------------------------


def test_worker_env_unsets_openblas_tuning_for_numpy_only():
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "PATH": "/bin"}
    numpy_env = worker_env("numpy", 2, base)
    assert "OPENBLAS_CORETYPE" not in numpy_env and "OPENBLAS_L2_SIZE" not in numpy_env
    for family in ("dlc", "torch", "jax"):
        env = worker_env(family, 2, base)
        assert env["OPENBLAS_CORETYPE"] == "Haswell" and env["OPENBLAS_L2_SIZE"] == "1048576"
    assert worker_env("dlc", 1, base)["DLC_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in worker_env("jax", 1, base)["XLA_FLAGS"]
    assert "intra_op" not in worker_env("jax", 2, base)["XLA_FLAGS"]
    assert base == {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "PATH": "/bin"}


# -- the numpy peer and the oracle ---------------------------------------------------


def test_reference_step_gradient_matches_finite_differences():
    p = data.mlp_params(3)
    p = data.MlpParams(*(np.asarray(a, np.float64) for a in (p.w1, p.b1, p.w2, p.b2)))
    p.b1 += 0.05                     # keep ReLU inputs away from the kink
    x, y = data.batch(3)
    lr = 1.0
    new, loss = data.reference_step(p, x, y, lr)
    assert loss == pytest.approx(data.reference_loss(p, x, y))
    eps = 1e-6
    for name, index in (("w1", (5, 7)), ("b1", (11,)), ("w2", (3, 4)), ("b2", (9,))):
        plus, minus = p.copy(), p.copy()
        getattr(plus, name)[index] += eps
        getattr(minus, name)[index] -= eps
        numeric = (data.reference_loss(plus, x, y) - data.reference_loss(minus, x, y)) / (2 * eps)
        analytic = (getattr(p, name)[index] - getattr(new, name)[index]) / lr
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-8), name


def test_numpy_mlp_step_matches_reference():
    params = data.mlp_params()
    x, y = data.batch(16)
    mlp = NumpyMlp(params)
    want, loss = data.reference_step(params, x, y, C.MLP_LR)
    assert mlp.step(x, y) == pytest.approx(loss, rel=1e-5)
    assert data.params_close(mlp.p, want) is None
    assert data.params_close(params, want) is not None      # the step did change the weights
    np.testing.assert_allclose(mlp.logits(x), data.reference_logits(mlp.p, x), rtol=1e-4, atol=1e-4)


def test_sgemm_check_rejects_a_wrong_product():
    a, b = data.matrices(8, 16, 4)
    check_sgemm(a @ b, a, b)
    wrong = a @ b
    wrong[2, 3] += 1.0
    with pytest.raises(Unavailable, match="wrong result"):
        check_sgemm(wrong, a, b)


def test_read_idx_round_trip_and_rejection(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + images.tobytes()))
    np.testing.assert_array_equal(data.read_idx(path), images)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(bad)


# -- processes ---------------------------------------------------------------------


def test_worker_protocol_end_to_end():
    client = WorkerClient(sys.executable, "numpy", 1, worker_env("numpy", 1, {**__import__("os").environ}))
    try:
        info = client.request({"cmd": "describe"}, 60)["info"]
        assert info["family"] == "numpy" and info["threads"] == 1 and len(info["cpus"]) == 1
        prep = client.request({"cmd": "prepare", "impl": "numpy", "case": "sgemm-256",
                               "target_s": 0.001, "warmup_s": 0.0, "warmup_calls": 1}, 60)
        assert prep["ok"] and prep["n"] >= 1 and prep["per_call_s"] > 0
        timed = client.request({"cmd": "time", "impl": "numpy", "case": "sgemm-256"}, 60)
        assert timed["ok"] and timed["seconds"] > 0 and timed["n"] == prep["n"] and timed["cpu_per_call_s"] >= 0
        assert client.request({"cmd": "release", "impl": "numpy", "case": "sgemm-256"}, 60)["ok"]
        gone = client.request({"cmd": "time", "impl": "numpy", "case": "sgemm-256"}, 60)
        assert not gone["ok"] and "not prepared" in gone["reason"]
        assert "unknown command" in client.request({"cmd": "bogus"}, 60)["reason"]
        client.proc.kill()                          # a dead worker is restarted on the next request
        client.proc.wait()
        assert client.request({"cmd": "describe"}, 60)["ok"]
    finally:
        client.close()


def test_peak_rss_wrapper_sees_the_childs_memory():
    child = [sys.executable, "-c", "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum() > 0)"]
    out = subprocess.run([sys.executable, "-m", "bench.oneshot", "peak-rss", "--", *child],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["ok"] and report["returncode"] == 0
    assert 300 <= report["peak_rss_mb"] < 2000


def test_run_end_to_end_with_numpy(tmp_path):
    out = tmp_path / "r.json"
    code = main(["--quick", "--cases", "sgemm-512,vmath-exp", "--threads", "1", "--peers", "numpy",
                 "--reps", "1", "--python", sys.executable, "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    rows = {r["case"]: r for r in report["results"]}
    assert set(rows) == {"sgemm-512", "vmath-exp"}
    for row in rows.values():
        assert row["figures"]["numpy"] > 0 and len(row["samples"]["numpy"]) == 1
        assert ("dlc" in row["figures"]) != ("dlc" in row["na"])     # a figure or a reason
    assert report["workers"]["1"]["numpy"]["threads"] == 1
    assert "| sgemm 512x512 . 512x512" in report["table"]
    assert report["table"].startswith(f"CPU: {report['cpu']['name']}")
    assert report["cpu"]["fma_peak"]["gflops"] > 0 and report["cpu"]["features"]
    assert set(rows["sgemm-512"]["peak_fraction"]) == set(rows["sgemm-512"]["figures"])


def test_unknown_case_is_a_usage_error(capsys):
    assert main(["--cases", "nope", "--json", "/dev/null"]) == 2
    assert "unknown case 'nope'" in capsys.readouterr().err


# -- the dlc adapter, on the reference interpreter -------------------------------------


def test_dlc_adapter_trains_and_predicts_like_the_reference():
    from bench.peers import dlc_impl
    try:
        dlc_impl.runtime_module("load_model")
    except Unavailable as e:
        pytest.fail(f"runtime.load_model is part of dlc's contract: {e}")
    step = dlc_impl._step(C.Case("step-4", "", "us", (), {"batch": 4}), backend="interp")
    assert np.isfinite(float(step()))
    infer = dlc_impl._infer(C.Case("infer-3", "", "us", (), {"batch": 3}), backend="interp")
    assert infer().shape == (3, 10)


def test_update_readme_replaces_only_the_last_measured_section(tmp_path):
    from bench.run import readme_section, update_readme
    report = {
        "date": "2026-11-22T12:00:00+00:00", "seconds": 540.0, "command": "python bench/run.py",
        "threads": [1, 2], "summary": {"PASS": 3, "MISS": 2, "n/a": 1}, "table": "| case |\n|---|",
        "system": {"cpu": "AMD EPYC", "cores": 2, "commit": "abc1234", "loadavg": [1.0, 0, 0],
                   "loadavg_end": [1.5, 0, 0], "env": {"OPENBLAS_CORETYPE": "Haswell"}},
        "workers": {"1": {"numpy": {"numpy": "2.4", "blas": [{"internal_api": "openblas",
                                                               "version": "0.3.31",
                                                               "architecture": "SkylakeX"}]}}},
    }
    section = readme_section(report)
    assert "SkylakeX kernel" in section and "OPENBLAS_CORETYPE=Haswell" in section
    assert "Targets: 3 PASS, 2 MISS, 1 n/a." in section and "| case |" in section
    readme = tmp_path / "README.md"
    readme.write_text("# Bench\n\nintro\n\n## Last measured\n\nold table\n")
    update_readme(report, readme)
    update_readme(report, readme)                  # idempotent: one section, not two
    text = readme.read_text()
    assert text.startswith("# Bench\n\nintro\n\n## Last measured\n")
    assert "old table" not in text and text.count("## Last measured") == 1


def test_speedup_row_from_the_two_thread_counts():
    from bench.run import speedup
    one = _row("sgemm-1024", 1, dlc=100.0, numpy=200.0)
    two = _row("sgemm-1024", 2, dlc=190.0, numpy=390.0)
    two.na["jax"] = "jax not importable"
    one.background, two.background = [1.0, 1.2], [0.0]
    row = speedup([one, two, _row("sgemm-512", 2, dlc=1.0)])
    assert row.load == pytest.approx(1.0)          # a busy 1-thread row makes the ratio suspect
    assert row.figures == {"dlc": pytest.approx(1.9), "numpy": pytest.approx(1.95)}
    assert row.na == {"jax": "jax not importable"}
    assert verdict(row).status == "PASS"
    assert speedup([one]) is None


def test_a_step_slower_on_two_threads_than_on_one_misses():
    from bench.run import order_results, slowdowns
    rows = [_row("step-1", 1, dlc=74.0), _row("step-1", 2, dlc=277.0),
            _row("step-128", 1, dlc=900.0), _row("step-128", 2, dlc=600.0), _row("step-32", 1, dlc=5.0)]
    derived = {r.case.id: r for r in slowdowns(rows)}
    assert set(derived) == {"step-1-2t", "step-128-2t"}           # step-32 lacks its 2-thread row
    assert derived["step-1-2t"].figures["dlc"] == pytest.approx(277 / 74)
    assert verdict(derived["step-1-2t"]).status == "MISS"
    assert verdict(derived["step-128-2t"]).status == "PASS"
    ordered = [(r.case.id, r.threads) for r in order_results(rows + list(derived.values()))]
    assert ordered.index(("step-1-2t", 0)) == ordered.index(("step-1", 2)) + 1


def test_inference_slower_on_two_threads_than_on_one_misses():
    """(MLP inference at batch 1 took 24.6 us on 2 threads against 22.1 on 1, Zen 5, with no
    row to say so.)"""
    from bench.run import slowdowns
    rows = [_row("infer-1", 1, dlc=22.1), _row("infer-1", 2, dlc=24.6),
            _row("cnn-infer-128", 1, dlc=3148.0), _row("cnn-infer-128", 2, dlc=1662.0),
            _row("cnn-step-1", 1, dlc=155.0), _row("cnn-step-1", 2, dlc=172.0)]
    derived = {r.case.id: verdict(r).status for r in slowdowns(rows)}
    assert derived == {"infer-1-2t": "MISS", "cnn-infer-128-2t": "PASS", "cnn-step-1-2t": "MISS"}


def test_sgemm_figures_as_fractions_of_the_fma_peak():
    from bench.report import to_json
    one = _row("sgemm-1024", 1, dlc=75.0, numpy=150.0)
    two = _row("sgemm-1024", 2, dlc=150.0, numpy=100.0)
    step = _row("step-1", 1, dlc=10.0, numpy=20.0)
    text = table([one, two, step], ("dlc", "numpy"), peak_gflops=150.0, title="CPU: test")
    lines = text.splitlines()
    assert lines[0] == "CPU: test"
    assert "75.0 (50%)" in lines[4] and "150 (100%)" in lines[4]
    assert "150 (50%)" in lines[5] and "100 (33%)" in lines[5]     # 2 threads: twice the peak
    assert "%" not in lines[6]                                     # not an sgemm row
    assert "measured FMA peak, 150 GFLOP/s" in text
    assert to_json(two, 150.0)["peak_fraction"] == {"dlc": pytest.approx(0.5), "numpy": pytest.approx(1 / 3)}
    assert to_json(step, 150.0)["peak_fraction"] == {}
    assert "%" not in table([one], ("dlc", "numpy"))               # no peak measured: plain figures


def test_fma_peak_probe_and_cpu_names():
    from bench.peak import fma_peak, header, slug
    from compiler.codegen.target import host_target
    peak = fma_peak(iterations=1000, repeats=1)
    assert peak["gflops"] > 0 and peak["vector_bits"] == host_target().vector_bits
    cpu = {"name": "Intel(R) Xeon(R) Processor", "llvm_cpu": "emeraldrapids", "simd": ["avx512f"],
           "fma_peak": {"gflops": 240.4, "vector_bits": 512}}
    assert slug(cpu) == "intel-xeon-processor-emeraldrapids"
    assert header(cpu) == ("CPU: Intel(R) Xeon(R) Processor (emeraldrapids); avx512f; "
                           "FMA peak 240 GFLOP/s per core (512-bit, measured)")


def test_each_run_is_kept_under_its_cpu_name():
    from bench.run import OUT, default_json
    report = {"date": "2026-12-07T06:40:00+00:00", "cpu": {"name": "AMD EPYC 9R45", "llvm_cpu": "znver5"}}
    assert default_json(report) == OUT / "amd-epyc-9r45-znver5-2026-12-07T064000Z.json"


def test_load_is_the_median_background():
    from bench.run import machine_busy_seconds
    r = _row("step-1", 1, dlc=1.0, numpy=2.0)
    assert r.load is None
    assert table([r], ("dlc", "numpy")).splitlines()[2].rstrip().endswith("| -    |")
    r.background += [0.1, 1.2, 0.3]
    assert r.load == pytest.approx(0.3)
    assert table([r], ("dlc", "numpy")).splitlines()[2].rstrip().endswith("| 0.30 |")
    r.background += [0.9, 1.0]                     # median 0.9: a busy machine is flagged
    busy = table([r], ("dlc", "numpy")).splitlines()
    assert "| PASS*" in busy[2] and busy[-1].startswith("\\* timed while other processes")
    assert machine_busy_seconds() > 0


def test_forget_models_keeps_only_the_gemm_library(tmp_path, monkeypatch):
    from bench.oneshot import forget_models
    from runtime.cache import ObjectCache
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    store = ObjectCache()
    library, model, alias = "a" * 64, "b" * 64, "c" * 64
    store.store(library, b"library object", {"library": {"dtypes": ["f32"]}})
    store.store(model, b"model object", {"functions": [], "library": {"dtypes": ["f32"]}})
    store.store_alias(alias, model)
    assert forget_models() == {"ok": True, "kept": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [library + ".dlco"]


# -- the convolution, CNN and dropout + batch-norm cases (issues 16 and 17) ----------------


def test_conv_cnn_and_mlpbn_groups_targets_and_flops():
    assert [c.id for c in C.select(["conv"], quick=False)] == \
        ["conv-fwd-28", "conv-bwd-28", "conv-fwd-56", "conv-bwd-56"]
    assert [c.id for c in C.select(["cnn"], quick=False)] == \
        ["cnn-step-1", "cnn-step-32", "cnn-step-128", "cnn-infer-1", "cnn-infer-128", "cnn-epoch"]
    assert [c.id for c in C.select(["step"], quick=False)][0] == "step-1"       # not cnn-step-*
    assert C.BY_ID["conv-fwd-28"].targets[1] == C.Target(0.9, C.TORCH, False)
    assert C.BY_ID["cnn-step-1"].targets[2] == C.Target(0.5, "fastest peer", True)
    assert C.BY_ID["cnn-step-32"].targets[1].bound == C.BY_ID["cnn-step-128"].targets[2].bound == 0.8
    assert C.BY_ID["mlpbn-step-128"].targets[1] == C.Target(0.8, "fastest peer", True)
    assert C.BY_ID["cnn-epoch"].is_epoch and not C.BY_ID["cnn-step-32"].is_epoch
    fwd, bwd = C.BY_ID["conv-fwd-56"], C.BY_ID["conv-bwd-56"]
    assert fwd.params["flop"] == 2 * 32 * 56 * 56 * 9 * 64 * 64 and bwd.params["flop"] == 2 * fwd.params["flop"]
    assert fwd.figure(fwd.params["flop"] / 100e9) == pytest.approx(100.0)


def test_conv_references_agree_with_a_naive_loop_and_each_other():
    x, w, dy = data.conv_operands(2, 5, 3, 4)
    y = data.reference_conv(x, w, 1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    naive = np.array([[[[np.sum(xp[n, i:i + 3, j:j + 3, :] * w[..., o]) for o in range(4)]
                        for j in range(5)] for i in range(5)] for n in range(2)])
    np.testing.assert_allclose(y, naive, rtol=1e-12, atol=1e-12)
    dx, dw = data.reference_conv_grads(x, w, dy, 1)
    # <conv(x, w), dy> = <x, dx> = <w, dw>: the gradients of a bilinear form
    assert np.sum(y * dy) == pytest.approx(np.sum(x * dx), rel=1e-12) == pytest.approx(np.sum(w * dw), rel=1e-12)


def test_conv_checks_reject_a_wrong_gradient():
    from bench.peers import check_conv_forward, check_conv_grads
    x, w, dy = data.conv_operands(2, 5, 3, 4)
    dx, dw = data.reference_conv_grads(x, w, dy, 1)
    check_conv_forward(data.reference_conv(x, w, 1).astype(np.float32), x, w, 1)
    dw_wrong = dw.copy()
    dw_wrong[1, 1, 0, 0] += 0.01 * np.abs(dw).max()
    with pytest.raises(Unavailable, match="kernel gradient off"):
        check_conv_grads((dx, dw_wrong), x, w, dy, 1)


def test_builder_kinds():
    from bench.peers import builder_kind
    assert [builder_kind(C.BY_ID[i]) for i in ("conv-bwd-56", "cnn-step-32", "cnn-epoch", "mlpbn-step-128",
                                               "step-1", "epoch")] == \
        ["conv", "cnn-step", "cnn-epoch", "mlpbn-step", "step", "epoch"]


def test_dlc_cnn_adapter_matches_the_reference_model():
    """bench/cnn_adam.dl is the model the peers and the float64 reference compute (loss, logits)."""
    from bench.peers import dlc_impl
    step = dlc_impl._cnn_step(C.Case("cnn-step-2", "", "us", (), {"batch": 2}), backend="interp")
    assert np.isfinite(float(step()))
    infer = dlc_impl._cnn_infer(C.Case("cnn-infer-2", "", "us", (), {"batch": 2}), backend="interp")
    assert infer().shape == (2, 10)


# -- attention -------------------------------------------------------------------


def test_attention_cases_and_their_oracle():
    ids = [c.id for c in C.select(["attention"], quick=False)]
    assert ids == ["attention-fwd-8x4x256x32", "attention-train-8x4x256x32",
                   "attention-fwd-1x8x1024x64", "attention-train-1x8x1024x64"]
    assert C.BY_ID["attention-fwd-1x8x1024x64"].targets[1].versus == C.TORCH
    from compiler.ops.attention import attention_grad_np, attention_np
    q, k, v, w = (a[:1, :2, :9, :5] for a in data.attention_inputs((1, 2, 16, 8)))
    out, grads = data.reference_attention(q, k, v, w)
    args = [a.astype(np.float64) for a in (q, k, v)]
    np.testing.assert_allclose(out, attention_np(*args, np.array(True), scale=None, causal=True), rtol=1e-12)
    want = attention_grad_np(*args, np.array(True), out, w.astype(np.float64), scale=None, causal=True)
    for got, exact in zip(grads, want):
        np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-12)


def test_the_dlc_attention_adapter_checks_and_runs():
    from bench.peers import dlc_impl
    for backward in (False, True):
        case = C.Case("attention-x", "small", "GFLOP/s", (C.DLC,), {"shape": (1, 2, 24, 8), "backward": backward})
        run = dlc_impl.build(C.DLC, case)
        result = run()
        assert (len(result) == 3) if backward else (result.shape == (1, 2, 24, 8))


# -- the GPTs (issue 22) ---------------------------------------------------------


def test_gpt_group_cases_targets_and_units():
    assert [c.id for c in C.select(["gpt"], quick=False)] == ["gpt-step-64", "gpt-generate-1"]
    step, gen = C.BY_ID["gpt-step-64"], C.BY_ID["gpt-generate-1"]
    assert step.targets[1] == C.Target(0.8, "fastest peer", True) and step.unit == "us"
    assert gen.targets[1] == C.Target(1.5, C.TORCH, False) and gen.higher_is_better
    assert C.TORCH_COMPILE not in gen.impls
    assert gen.figure(0.5) == pytest.approx(2 * C.GENERATE_TOKENS)       # tokens per second
    assert C.GENERATE_PROMPT + C.GENERATE_TOKENS <= C.CHAR_CONTEXT       # never slides the window
    from bench.peers import builder_kind
    assert (builder_kind(step), builder_kind(gen)) == ("gpt-step", "gpt-generate")
    # a row: dlc 3000 tokens/s against torch's 1500 is 2.0x and passes the 1.5x bound
    row = _row("gpt-generate-1", 1, dlc=3000.0, torch=1500.0, jax=4000.0)
    assert verdict(row).ratio == pytest.approx(2.0) and verdict(row).status == "PASS"


def test_adder_batch_is_addition_in_the_examples_layout():
    x, y = data.adder_batch(5)
    assert x.shape == (5, 9) and y.shape == (5, 4) and x.dtype == y.dtype == np.int32
    for row, answer in zip(x, y):
        a, b = int("".join(map(str, row[:3]))), int("".join(map(str, row[3:6])))
        assert int("".join(map(str, answer[::-1]))) == a + b
        assert list(row[6:]) == list(answer[:3])                 # teacher forcing: c reversed, shifted


def test_gpt_reference_gradients_match_finite_differences():
    p = {k: v.astype(np.float64) for k, v in data.gpt_params(7, 5, 6, seed=1, dim=8, blocks=2).items()}
    rng = np.random.default_rng(0)
    tokens, answer = rng.integers(0, 7, (3, 5)), rng.integers(0, 6, (3, 2))
    loss, grads = data.gpt_loss_and_grads(p, tokens, answer, heads=2)
    assert set(grads) == set(p) and np.isfinite(loss)
    logits = data.gpt_logits(p, tokens, heads=2)
    assert data.softmax_cross_entropy(logits[:, 3:].reshape(-1, 6), answer.reshape(-1)) == pytest.approx(loss)
    for name in p:
        for index in ((0,) * p[name].ndim, tuple(s - 1 for s in p[name].shape)):
            moved = []
            for delta in (1e-6, -1e-6):
                q = {k: v.copy() for k, v in p.items()}
                q[name][index] += delta
                moved.append(data.gpt_loss_and_grads(q, tokens, answer, heads=2)[0])
            assert (moved[0] - moved[1]) / 2e-6 == pytest.approx(grads[name][index], abs=1e-7), name


def test_gpt_reference_step_clips_and_decays():
    p = data.gpt_params(7, 5, 6, seed=1, dim=8, blocks=1)
    tokens, answer = np.zeros((2, 5), np.int64), np.ones((2, 2), np.int64)
    new, loss = data.reference_gpt_step(p, tokens, answer, 1e-7, heads=2)
    _, grads = data.gpt_loss_and_grads(p, tokens, answer, heads=2)
    # an untouched embedding row has no gradient: only the decay moves it
    np.testing.assert_allclose(new["tok.embeddings"][3], p["tok.embeddings"][3] * (1 - data.GPT_WEIGHT_DECAY
                                                                                       * data.GPT_LR))
    # a large gradient's first Adam step is lr times its sign, after the decay
    name = "head.kernel"
    big = np.abs(grads[name]) > 1e-2
    step = p[name].astype(np.float64) * (1 - data.GPT_WEIGHT_DECAY * data.GPT_LR) - new[name]
    np.testing.assert_allclose(step[big], data.GPT_LR * np.sign(grads[name][big]), rtol=2e-2)
    assert big.sum() > 5
    assert data.gpt_params_close(new, new) is None
    wrong = dict(new, **{name: new[name] + 1e-3})
    assert "head.kernel" in data.gpt_params_close(wrong, new)


def test_greedy_check_accepts_the_reference_and_rejects_a_wrong_token():
    from bench.peers import check_greedy
    p = data.gpt_params(11, 8, 11, seed=2, dim=8, blocks=1)
    prompt, tokens = [1, 2], [1, 2]
    for _ in range(4):                                  # float64 greedy, four heads over 8 features
        tokens.append(int(data.gpt_logits(p, np.array([tokens]))[0, -1].argmax()))
    check_greedy("x", tokens, prompt, 4, p)
    wrong = tokens[:-1] + [(tokens[-1] + 1) % 11]
    with pytest.raises(Unavailable, match="token 5"):
        check_greedy("x", wrong, prompt, 4, p)
    with pytest.raises(Unavailable, match="expected the prompt"):
        check_greedy("x", tokens[1:], prompt, 4, p)


def test_the_dlc_gpt_adapters_check_and_run():
    """examples/adder_gpt.dl's native step matches the float64 step (loss and every weight); the
    char GPT's generation through the runtime's generate() is float64-greedy."""
    from bench.peers import dlc_impl
    step = dlc_impl.build(C.DLC, C.Case("gpt-step-2", "", "us", (C.DLC,), {"batch": 2}))
    assert np.isfinite(float(step()))
    gen = dlc_impl.build(C.DLC, C.Case("gpt-generate-1", "", "tokens/s", (C.DLC,), {"prompt": 3, "tokens": 2}))
    assert len(gen()) == 5
