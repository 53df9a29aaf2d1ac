"""PyTorch eager and ``torch.compile``: the idiomatic ``nn.Sequential`` + ``optim.SGD`` MLP.

The worker calls :func:`limit_threads` (``torch.set_num_threads``) before
anything runs.  ``torch.compile`` compiles the module (forward and, through
AOTAutograd, backward) and leaves ``optim.SGD`` eager: compiling the whole step
function instead was slower here (2.5 ms vs 1.9 ms at batch 128) and took 33 s
to compile.  Its first call per input shape compiles, which the warm-up
absorbs (and :mod:`bench.worker` reports as ``first_call_s``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..cases import MLP_HIDDEN, MLP_IN, MLP_LR, MLP_OUT, TORCH_COMPILE, Case
from . import Unavailable, check_attention, check_close, check_loss, check_params, check_sgemm


def limit_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` (intra-op pool)."""
    torch.set_num_threads(threads)


def describe(threads: int) -> dict:
    """torch version, thread counts and the CPU kernel level it dispatches to."""
    return {"torch": torch.__version__, "num_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": torch.backends.mkl.is_available()}


class TorchMlp:
    """The MLP as ``nn.Sequential``, cross-entropy from logits, ``optim.SGD``."""

    def __init__(self, params: data.MlpParams, compiled: bool) -> None:
        self.model = nn.Sequential(nn.Linear(MLP_IN, MLP_HIDDEN), nn.ReLU(),
                                   nn.Linear(MLP_HIDDEN, MLP_OUT))
        with torch.no_grad():
            self.model[0].weight.copy_(torch.from_numpy(params.w1.T.copy()))
            self.model[0].bias.copy_(torch.from_numpy(params.b1))
            self.model[2].weight.copy_(torch.from_numpy(params.w2.T.copy()))
            self.model[2].bias.copy_(torch.from_numpy(params.b2))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=MLP_LR)
        self.forward = torch.compile(self.model) if compiled else self.model

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns the loss before the update."""
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(x), y)
        loss.backward()
        self.opt.step()
        return loss

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(x)

    def params(self) -> data.MlpParams:
        def grab(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy()
        m = self.model
        return data.MlpParams(grab(m[0].weight).T, grab(m[0].bias), grab(m[2].weight).T,
                              grab(m[2].bias))


def _sgemm(impl: str, case: Case) -> Callable[[], object]:
    a, b = data.matrices(case.params["m"], case.params["k"], case.params["n"])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    check_sgemm(torch.mm(ta, tb).numpy(), a, b)
    return lambda: torch.mm(ta, tb)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64))


def _step(impl: str, case: Case) -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    mlp = TorchMlp(params, compiled=impl == TORCH_COMPILE)
    tx, ty = torch.from_numpy(x), _labels(y)
    want, loss = data.reference_step(params, x, y, MLP_LR)
    check_loss(impl, mlp.step(tx, ty).item(), loss)
    check_params(impl, mlp.params(), want)
    return lambda: mlp.step(tx, ty)


def _infer(impl: str, case: Case) -> Callable[[], object]:
    x, _ = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    mlp = TorchMlp(params, compiled=impl == TORCH_COMPILE)
    tx = torch.from_numpy(x)
    want = data.reference_logits(params, x)
    check_close("logits", mlp.logits(tx).numpy(), want, max(1.0, float(np.abs(want).max())), 1e-4)
    return lambda: mlp.logits(tx)


def _epoch(impl: str, case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    mlp = TorchMlp(data.mlp_params(), compiled=impl == TORCH_COMPILE)
    tx, ty = torch.from_numpy(mnist.x), _labels(mnist.y)
    gen = torch.Generator().manual_seed(0)
    size = case.params["batch"]

    def epoch() -> torch.Tensor:
        order = torch.randperm(len(ty), generator=gen)
        loss = torch.zeros(())
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            loss = mlp.step(tx[idx], ty[idx])
        return loss

    return epoch


def _attention(impl: str, case: Case) -> Callable[[], object]:
    """``F.scaled_dot_product_attention(is_causal=True)``: under ``no_grad`` for the forward;
    forward and ``autograd.grad`` of ``sum(out * w)`` for the backward (torch.compile
    compiles the attention function, AOTAutograd its backward)."""
    q, k, v, w = (torch.from_numpy(a) for a in data.attention_inputs(tuple(case.params["shape"])))

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    attn = torch.compile(attend) if impl == TORCH_COMPILE else attend
    if not case.params["backward"]:
        def forward() -> torch.Tensor:
            with torch.no_grad():
                return attn(q, k, v)
        run: Callable[[], object] = forward
    else:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]

        def train() -> tuple[torch.Tensor, ...]:
            return torch.autograd.grad((attn(*leaves) * w).sum(), leaves)
        run = train
    got = run()
    check_attention(impl, got.numpy() if isinstance(got, torch.Tensor) else [g.numpy() for g in got],
                    *(t.numpy() for t in (q, k, v, w)), case.params["backward"])
    return run


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "attention": _attention}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    kind = case.id.split("-")[0]
    if kind not in BUILDERS:
        raise Unavailable(f"no {impl} implementation of {kind}")
    if kind == "sgemm" and impl == TORCH_COMPILE:
        raise Unavailable("torch.compile adds nothing to one matmul")
    return BUILDERS[kind](impl, case)
