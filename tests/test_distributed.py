"""Data-parallel training on MPI (runtime/distributed.py, docs/distributed.md).

The training step in two functions is checked against the fused step in this
process; the rest runs two local ranks under the ``mpirun`` of the MPI that
``pip install '.[test]'`` installs (tests/distributed_worker.py is each rank).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compiler.train_step import APPLY_STEP, GRADS_STEP, build_split_step, grad_name
from runtime.arguments import ArgumentTypeError
from runtime.cli import main
from runtime.distributed import ALIGN, Distributed, DistributedError, FlatBuffer, shard
from runtime.model import load_model

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "tests" / "distributed_worker.py"

TINY = """
model tiny {
    input x: f32[N, 8]
    target y: i32[N]
    let h = dense(x, 16, activation=relu)
    output probs = dense(h, 3, activation=softmax)
    loss sparse_categorical_crossentropy(probs, y)
    optimizer sgd(lr=0.1)
    metrics [accuracy]
}
"""

# batch norm (model state), dropout (random numbers) and Adam (shared optimizer state)
STATEFUL = """
model stateful {
    input x: f32[N, 8]
    target y: i32[N]
    let h = dense(x, 16, activation=relu)
    let n = batch_norm(h)
    let d = dropout(n, 0.25)
    output probs = dense(d, 3, activation=softmax)
    loss sparse_categorical_crossentropy(probs, y)
    optimizer adam(lr=0.01)
    metrics [accuracy]
}
"""


def _model_file(tmp_path: Path, source: str = TINY) -> Path:
    path = tmp_path / "model.dl"
    path.write_text(source)
    return path


# ---------------------------------------------------------------------------
# In this process: the split step, shards, the flat buffer


def test_split_step_computes_what_the_fused_step_computes(tmp_path: Path) -> None:
    model = load_model(_model_file(tmp_path, STATEFUL), seed=1)
    split = model._split_backend()
    sig = model.signature
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=6).astype(np.int32)
    lr = np.array(0.05, dtype=np.float32)
    random = [np.array(model.seed, dtype=np.int64), np.array(0, dtype=np.int64)] if sig.random else []
    tensors = [t.copy() for t in model._tensors]
    fused = [np.array(o) for o in model.backend.train_step([*tensors, x, y, lr, *random])]

    k, m = len(sig.params), len(sig.params) + len(sig.model_state)
    tensors = [t.copy() for t in model._tensors]
    grads = [np.zeros(t.concrete_shape({}), np.float32) for _, t in sig.params]
    out = split.caller(GRADS_STEP)([*tensors[:m], *grads, x, y, *random])
    assert all(o is g for o, g in zip(out[1:1 + k], grads))          # written in place
    split.caller(APPLY_STEP)([*tensors[:k], *tensors[m:], *grads, lr])
    np.testing.assert_allclose(out[0], fused[0], rtol=1e-6)
    for new, old in zip(tensors, fused[1:1 + len(tensors)]):
        np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([float(v) for v in out[1 + m:]], [float(v) for v in fused[1 + len(tensors):]])


def test_split_step_names_its_gradient_buffers(tmp_path: Path) -> None:
    model = load_model(_model_file(tmp_path), seed=0, backend="interp")     # nothing compiled
    split = build_split_step(model.module)
    grads = split.get(GRADS_STEP)
    assert [p.name for p in grads.params][4:8] == [grad_name(n) for n in model.param_names]
    assert dict(grads.attrs["inplace"]) == {1 + i: grad_name(n) for i, n in enumerate(model.param_names)}
    assert [p.name for p in split.get(APPLY_STEP).params][-1] == "lr"


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_of_every_global_batch_are_disjoint_and_cover_it(size: int) -> None:
    for lo, hi in [(0, 0), (0, 1), (5, 12), (16, 32), (3, 100)]:
        parts = [shard(lo, hi, r, size) for r in range(size)]
        assert [p[0] for p in parts] == [lo] + [p[1] for p in parts[:-1]]      # contiguous, in rank order
        assert parts[-1][1] == hi
        sizes = [b - a for a, b in parts]
        assert max(sizes) - min(sizes) <= 1


def test_flat_buffer_parts_are_aligned_views_of_one_array() -> None:
    buffer = FlatBuffer([("w", (3, 5)), ("b", (5,)), ("loss", ())])
    base = buffer.array.ctypes.data
    assert base % 64 == 0
    assert len(buffer.array) == 16 + 16 + 16
    for name, view in buffer.views.items():
        assert view.base is buffer.array.base and view.flags.c_contiguous
        assert (view.ctypes.data - base) % (4 * ALIGN) == 0, name
    buffer.views["b"][...] = 2
    assert buffer.array.sum() == 10


def test_distributed_without_mpi4py_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # import mpi4py raises ImportError
    assert main(["train", str(_model_file(tmp_path)), "--data", "xor", "--distributed"]) == 1
    err = capsys.readouterr().err
    assert "distributed training needs mpi4py" in err
    assert "pip install 'dlc[distributed]'" in err


def test_fit_takes_true_or_distributed_options(tmp_path: Path) -> None:
    model = load_model(_model_file(tmp_path), backend="interp")
    x, y = np.zeros((4, 8), np.float32), np.zeros(4, np.int32)
    with pytest.raises(ArgumentTypeError, match="argument 'distributed' must be True, False or a"):
        model.fit(x, y, verbose=0, distributed="yes")       # checked before MPI starts
    with pytest.raises(DistributedError, match="'timeout' must be a positive number of seconds"):
        Distributed(timeout=0)


def test_distributed_options_need_distributed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(_model_file(tmp_path)), "--data", "xor", "--sync-batch-stats"]) == 1
    assert "need --distributed" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Two ranks under mpirun


def _mpirun(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``mpirun -n 2 python ARGS`` with the MPI installed beside this Python (or on PATH)."""
    here = os.path.dirname(sys.executable)
    launcher = shutil.which("mpirun", path=here) or shutil.which("mpiexec", path=here) \
        or shutil.which("mpirun") or shutil.which("mpiexec")
    assert launcher is not None, "no mpirun: pip install '.[test]' installs mpi4py and Open MPI"
    version = subprocess.run([launcher, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version else []    # 2 ranks on a machine of 1 core
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               DLC_NUM_THREADS="1")
    return subprocess.run([launcher, "-n", "2", *extra, sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_two_ranks_train_as_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """Two ranks of 4 rows per step reach the weights one process reaches with batches of 8.
    The gradient of the batch is summed in another order (two half-batch means, then
    their mean): after 8 SGD steps the weights agree to 1e-6 (measured: 3e-8)."""
    batchnorm = tmp_path / "batchnorm.dl"
    batchnorm.write_text(STATEFUL)
    run = _mpirun(str(WORKER), "train", str(_model_file(tmp_path)), str(tmp_path), str(batchnorm))
    assert run.returncode == 0, run.stderr
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    single = np.load(tmp_path / "single.npz")
    assert int(ranks[0]["step"]) == int(single["step"]) == 8       # 2 epochs of ceil(25 / 8) steps
    for name in ["dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"]:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])        # the ranks agree exactly
        np.testing.assert_allclose(ranks[0][name], single[name], rtol=0, atol=1e-6)
        assert not np.array_equal(single[name], load_model(_model_file(tmp_path), seed=3).weights[name])
    np.testing.assert_allclose(ranks[0]["loss"], single["loss"], rtol=1e-6)  # metrics of the global batch

    # batch norm's moving statistics: the ranks' own by default, their average with sync_batch_stats
    synced, local = ([np.load(tmp_path / f"{kind}{r}.npz") for r in (0, 1)] for kind in ("synced", "local"))
    assert synced[0].files and synced[0].files == local[0].files
    for name in synced[0].files:
        np.testing.assert_array_equal(synced[0][name], synced[1][name])
        assert not np.array_equal(local[0][name], local[1][name]), name


def test_cli_writes_the_checkpoint_and_prints_on_rank_0_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int32))
    run = _mpirun("-m", "runtime.cli", "train", str(_model_file(tmp_path)), "--data", str(tmp_path / "data.npz"),
                  "--distributed", "--epochs", "1", "--quiet",
                  "--save", str(tmp_path / "ck.npz"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("saved checkpoint to") == 1
    # the default batch (32) split over the ranks: 16 rows each, 2 steps of 32
    assert run.stdout.count("model tiny on data (40 training samples): 1 epoch x 2 steps (batch 16 x 2 ranks)") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz", "data.npz", "model.dl"]   # no temp files
    model = load_model(_model_file(tmp_path), weights=tmp_path / "ck.npz")
    assert model.step == 2

    # a 2-rank checkpoint resumes on one process, and that one's on 2 ranks again
    assert main(["train", str(_model_file(tmp_path)), "--data", str(tmp_path / "data.npz"), "--quiet",
                 "--resume", str(tmp_path / "ck.npz"), "--epochs", "2", "--save", str(tmp_path / "ck2.npz")]) == 0
    assert load_model(_model_file(tmp_path), weights=tmp_path / "ck2.npz").step == 4    # + 2 steps of 32
    run = _mpirun("-m", "runtime.cli", "train", str(_model_file(tmp_path)), "--data", str(tmp_path / "data.npz"),
                  "--distributed", "--quiet", "--resume", str(tmp_path / "ck2.npz"), "--epochs", "3",
                  "--save", str(tmp_path / "ck3.npz"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    resumed = load_model(_model_file(tmp_path), weights=tmp_path / "ck3.npz")
    assert resumed.step == 6 and resumed.epochs_trained == 3


def test_ranks_that_train_differently_stop_with_an_error_before_training(tmp_path: Path) -> None:
    run = _mpirun(str(WORKER), "disagree", str(_model_file(tmp_path)), str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.count("error: the ranks disagree on batch_size; every rank must train the same model "
                            "on the same data with the same options") == 2, run.stderr


def test_a_killed_rank_stops_the_job(tmp_path: Path) -> None:
    run = _mpirun(str(WORKER), "kill", str(_model_file(tmp_path)), str(tmp_path))
    assert run.returncode != 0
    assert "training finished" not in run.stdout
    assert "rank 1" in run.stderr and "signal 9" in run.stderr, run.stderr


def test_a_stopped_rank_makes_the_others_stop_the_job_after_the_timeout(tmp_path: Path) -> None:
    run = _mpirun(str(WORKER), "stop", str(_model_file(tmp_path)), str(tmp_path))
    assert run.returncode != 0
    assert "training finished" not in run.stdout
    assert ("error: rank 0 of 2 waited 3 s for the other ranks in the gradient sum; a rank has died, "
            "hangs or stopped") in run.stderr, run.stderr
