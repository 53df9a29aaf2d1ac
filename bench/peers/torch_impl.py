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
from ..cases import (
    ADAM_EPSILON,
    ADDER_T,
    ADDER_VOCAB,
    BN_EPSILON,
    BN_MOMENTUM,
    CHAR_CONTEXT,
    CHAR_VOCAB,
    CNN_FILTERS,
    CNN_HIDDEN,
    CNN_IMAGE,
    CNN_LR,
    GPT_HEADS,
    MLP_HIDDEN,
    MLP_IN,
    MLP_LR,
    MLP_OUT,
    MLPBN_DROPOUT,
    MLPBN_HIDDEN,
    TORCH_COMPILE,
    Case,
)
from . import (
    Unavailable,
    builder_kind,
    check_attention,
    check_close,
    check_conv_forward,
    check_conv_grads,
    check_finite_loss,
    check_gpt_step,
    check_greedy,
    check_logits,
    check_loss,
    check_params,
    check_sgemm,
)


def limit_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` (intra-op pool)."""
    torch.set_num_threads(threads)


def describe(threads: int) -> dict:
    """torch version, thread counts and the CPU kernel level it dispatches to."""
    return {"torch": torch.__version__, "num_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": torch.backends.mkl.is_available()}


class Trainer:
    """A module, an optimizer (default ``optim.Adam`` with Keras' epsilon) and cross-entropy from
    logits; ``forward`` is the compiled module for torch.compile.  The module stays in training
    mode: the CNN has no layer that differs at inference, and the dropout + batch-norm MLP is
    only ever stepped."""

    def __init__(self, module: nn.Module, compiled: bool, opt: torch.optim.Optimizer | None = None) -> None:
        self.module = module
        self.opt = opt or torch.optim.Adam(module.parameters(), lr=CNN_LR, eps=ADAM_EPSILON)
        self.forward = torch.compile(module) if compiled else module

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step; returns the loss before the update."""
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.forward(x), y)
        loss.backward()
        self.opt.step()
        return loss

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(x)


class TorchMlp(Trainer):
    """The MLP as ``nn.Sequential``, cross-entropy from logits, ``optim.SGD``."""

    def __init__(self, params: data.MlpParams, compiled: bool) -> None:
        model = nn.Sequential(nn.Linear(MLP_IN, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, MLP_OUT))
        with torch.no_grad():
            model[0].weight.copy_(torch.from_numpy(params.w1.T.copy()))
            model[0].bias.copy_(torch.from_numpy(params.b1))
            model[2].weight.copy_(torch.from_numpy(params.w2.T.copy()))
            model[2].bias.copy_(torch.from_numpy(params.b2))
        super().__init__(model, compiled, torch.optim.SGD(model.parameters(), lr=MLP_LR))

    def params(self) -> data.MlpParams:
        def grab(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy()
        m = self.module
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


def epoch_loop(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tx: torch.Tensor,
               ty: torch.Tensor, size: int) -> Callable[[], torch.Tensor]:
    """One shuffled pass over ``(tx, ty)`` in batches of ``size`` (seeded permutation)."""
    gen = torch.Generator().manual_seed(0)

    def epoch() -> torch.Tensor:
        order = torch.randperm(len(ty), generator=gen)
        loss = torch.zeros(())
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            loss = step(tx[idx], ty[idx])
        return loss

    return epoch


def _epoch(impl: str, case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    mlp = TorchMlp(data.mlp_params(), compiled=impl == TORCH_COMPILE)
    return epoch_loop(mlp.step, torch.from_numpy(mnist.x), _labels(mnist.y), case.params["batch"])


# -- convolutions, the MNIST CNN, the dropout + batch-norm MLP ---------------------------------


def _nchw(x: np.ndarray) -> torch.Tensor:
    """An NHWC array as PyTorch's NCHW tensor in channels_last memory (the same bytes, no copy)."""
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def _oihw(w: np.ndarray) -> torch.Tensor:
    """An HWIO kernel as PyTorch's OIHW weight, stored channels_last."""
    return torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(memory_format=torch.channels_last)


def _nhwc(t: torch.Tensor) -> np.ndarray:
    return t.detach().permute(0, 2, 3, 1).numpy()


def _conv(impl: str, case: Case) -> Callable[[], object]:
    """``F.conv2d`` on channels_last tensors (oneDNN); the backward is the one ATen call autograd
    makes, ``convolution_backward`` with the input and weight gradients (no bias)."""
    p = case.params
    x, w, dy = data.conv_operands(p["n"], p["size"], p["c"], p["oc"], p["k"])
    pad = (p["k"] - 1) // 2
    tx, tw, tdy = _nchw(x), _oihw(w), _nchw(dy)

    def forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, b, padding=pad)

    def backward(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dx, dw, _ = torch.ops.aten.convolution_backward(
            g, a, b, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, False])
        return dx, dw

    if p["direction"] == "fwd":
        fwd = torch.compile(forward) if impl == TORCH_COMPILE else forward
        with torch.no_grad():
            check_conv_forward(_nhwc(fwd(tx, tw)), x, w, pad)
        return lambda: fwd(tx, tw)
    bwd = torch.compile(backward) if impl == TORCH_COMPILE else backward
    with torch.no_grad():
        dx, dw = bwd(tx, tw, tdy)
        check_conv_grads((_nhwc(dx), dw.detach().permute(2, 3, 1, 0).numpy()), x, w, dy, pad)
    return lambda: bwd(tx, tw, tdy)


class TorchCnn(nn.Module):
    """The LeNet-style CNN, channels_last; flattens in NHWC order so it shares the dense weights."""

    def __init__(self, p: data.CnnParams) -> None:
        super().__init__()
        (c1, c2), flat = CNN_FILTERS, 5 * 5 * CNN_FILTERS[1]
        self.conv1, self.conv2 = nn.Conv2d(CNN_IMAGE[2], c1, 3), nn.Conv2d(c1, c2, 3)
        self.fc1, self.fc2 = nn.Linear(flat, CNN_HIDDEN), nn.Linear(CNN_HIDDEN, MLP_OUT)
        with torch.no_grad():
            for layer, (kernel, bias) in ((self.conv1, ("k1", "b1")), (self.conv2, ("k2", "b2"))):
                layer.weight.copy_(torch.from_numpy(p[kernel]).permute(3, 2, 0, 1))
                layer.bias.copy_(torch.from_numpy(p[bias]))
            for layer, (kernel, bias) in ((self.fc1, ("w3", "b3")), (self.fc2, ("w4", "b4"))):
                layer.weight.copy_(torch.from_numpy(p[kernel].T.copy()))
                layer.bias.copy_(torch.from_numpy(p[bias]))
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(h.permute(0, 2, 3, 1).flatten(1)))
        return self.fc2(h)


def _cnn_step(impl: str, case: Case) -> Callable[[], object]:
    x, y = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    trainer = Trainer(TorchCnn(params), impl == TORCH_COMPILE)
    tx, ty = _nchw(x), _labels(y)
    want = data.softmax_cross_entropy(data.reference_cnn_logits(params, x), y)
    check_loss(impl, trainer.step(tx, ty).item(), want)
    return lambda: trainer.step(tx, ty)


def _cnn_infer(impl: str, case: Case) -> Callable[[], object]:
    x, _ = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    trainer = Trainer(TorchCnn(params), impl == TORCH_COMPILE)
    tx = _nchw(x)
    check_logits(trainer.logits(tx).numpy(), data.reference_cnn_logits(params, x))
    return lambda: trainer.logits(tx)


def _cnn_epoch(impl: str, case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    trainer = Trainer(TorchCnn(data.cnn_params()), impl == TORCH_COMPILE)
    return epoch_loop(trainer.step, _nchw(mnist.x.reshape(len(mnist.y), *CNN_IMAGE)), _labels(mnist.y),
                      case.params["batch"])


def mlpbn_module(p: dict[str, np.ndarray]) -> nn.Sequential:
    """``Linear(no bias) -> BatchNorm1d -> ReLU -> Dropout`` twice, then ``Linear``: Keras'
    momentum 0.99 is PyTorch's 0.01."""
    (h1, h2), rate = MLPBN_HIDDEN, MLPBN_DROPOUT
    bn = {"eps": BN_EPSILON, "momentum": 1.0 - BN_MOMENTUM}
    module = nn.Sequential(nn.Linear(MLP_IN, h1, bias=False), nn.BatchNorm1d(h1, **bn), nn.ReLU(), nn.Dropout(rate),
                           nn.Linear(h1, h2, bias=False), nn.BatchNorm1d(h2, **bn), nn.ReLU(), nn.Dropout(rate),
                           nn.Linear(h2, MLP_OUT))
    with torch.no_grad():
        module[0].weight.copy_(torch.from_numpy(p["w1"].T.copy()))
        module[4].weight.copy_(torch.from_numpy(p["w2"].T.copy()))
        module[8].weight.copy_(torch.from_numpy(p["w3"].T.copy()))
        module[8].bias.copy_(torch.from_numpy(p["b3"]))
    return module


def _mlpbn_step(impl: str, case: Case) -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], "mnist")
    torch.manual_seed(0)
    trainer = Trainer(mlpbn_module(data.mlpbn_params()), impl == TORCH_COMPILE)
    tx, ty = torch.from_numpy(x), _labels(y)
    check_finite_loss(impl, trainer.step(tx, ty).item())
    return lambda: trainer.step(tx, ty)


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


# -- the GPTs of issue 22 -----------------------------------------------------------------------


class Block(nn.Module):
    """A pre-norm transformer block as minGPT writes it: one ``[d, 3d]`` projection for q, k and
    v, ``scaled_dot_product_attention``, exact gelu MLP.  With ``cache`` (a list, per block, of
    ``(k, v)`` so far, ``[B, H, S, hd]``) it attends over the cached keys and values too and
    appends the new ones: the standard KV cache of generation."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=data.GPT_EPSILON), nn.LayerNorm(dim, eps=data.GPT_EPSILON)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (h.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for h in self.qkv(self.ln1(x)).split(d, dim=2))
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            cache[:] = [k, v]
        # a single new query sees every cached key; a whole sequence (training, or the prompt
        # with an empty cache) is causal
        o = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        x = x + self.out(o.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class TorchGpt(nn.Module):
    """Token and position embeddings, the blocks, a final layer norm and the head, with the
    bench's weights (dlc's names and ``[in, out]`` kernels, transposed into ``nn.Linear``)."""

    def __init__(self, p: data.GptParams, heads: int = GPT_HEADS) -> None:
        super().__init__()
        vocab, dim = p["tok.embeddings"].shape
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(p["pos.table.embeddings"].shape))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(data.gpt_blocks(p)))
        self.ln_f = nn.LayerNorm(dim, eps=data.GPT_EPSILON)
        self.head = nn.Linear(dim, p["head.kernel"].shape[1])
        for name, value in self.as_dlc().items():
            with torch.no_grad():
                value.copy_(torch.from_numpy(p[name]))

    def as_dlc(self) -> dict[str, torch.Tensor]:
        """Views of the parameters in dlc's names and layouts (kernels ``[in, out]``)."""
        views = {"tok.embeddings": self.tok.weight, "pos.table.embeddings": self.pos,
                 "ln_f.gamma": self.ln_f.weight, "ln_f.beta": self.ln_f.bias,
                 "head.kernel": self.head.weight.T, "head.bias": self.head.bias}
        for i, blk in enumerate(self.blocks, 1):
            b, dim = f"transformer_block_{i}.", blk.out.weight.shape[0]
            views.update({b + "ln1.gamma": blk.ln1.weight, b + "ln1.beta": blk.ln1.bias,
                          b + "ln2.gamma": blk.ln2.weight, b + "ln2.beta": blk.ln2.bias,
                          b + "attn.output_kernel": blk.out.weight.T, b + "attn.output_bias": blk.out.bias,
                          b + "mlp.up.kernel": blk.up.weight.T, b + "mlp.up.bias": blk.up.bias,
                          b + "mlp.down.kernel": blk.down.weight.T, b + "mlp.down.bias": blk.down.bias})
            for j, which in enumerate(("query", "key", "value")):
                rows = slice(j * dim, (j + 1) * dim)
                views[f"{b}attn.{which}_kernel"] = blk.qkv.weight[rows].T
                views[f"{b}attn.{which}_bias"] = blk.qkv.bias[rows]
        return views

    def forward(self, idx: torch.Tensor, caches: list[list] | None = None, start: int = 0) -> torch.Tensor:
        x = self.tok(idx) + self.pos[start:start + idx.shape[1]]
        for i, blk in enumerate(self.blocks):
            x = blk(x, caches[i] if caches is not None else None)
        return self.head(self.ln_f(x))


class GptTrainer:
    """adder_gpt's step: cross-entropy on the answer positions, ``clip_grad_norm_(1.0)``,
    ``optim.AdamW(lr 1e-3, weight_decay 0.01)``.  PyTorch's Adam adds epsilon to
    ``sqrt(v / (1 - beta_2^t))``, Keras' to ``sqrt(v)``: epsilon is Keras' 1e-7 divided by
    ``sqrt(1 - beta_2)``, which makes the first step -- the one checked -- Keras' exactly (later
    steps differ in that epsilon only; the work per step is the same)."""

    def __init__(self, p: data.GptParams, compiled: bool) -> None:
        self.module = TorchGpt(p)
        self.forward = torch.compile(self.module) if compiled else self.module
        self.opt = torch.optim.AdamW(self.module.parameters(), lr=data.GPT_LR, betas=data.ADAM_BETAS,
                                     weight_decay=data.GPT_WEIGHT_DECAY,
                                     eps=ADAM_EPSILON / float(np.sqrt(1 - data.ADAM_BETAS[1])))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        logits = self.forward(x)[:, x.shape[1] - y.shape[1]:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), data.GPT_CLIPNORM)
        self.opt.step()
        return loss


def _gpt_step(impl: str, case: Case) -> Callable[[], object]:
    x, y = data.adder_batch(case.params["batch"])
    params = data.gpt_params(ADDER_VOCAB, ADDER_T, ADDER_VOCAB)
    trainer = GptTrainer(params, impl == TORCH_COMPILE)
    tx, ty = _labels(x), _labels(y)
    want, loss = data.reference_gpt_step(params, x, y, ADAM_EPSILON)
    got = trainer.step(tx, ty).item()
    check_gpt_step(impl, got, {k: v.detach().numpy() for k, v in trainer.module.as_dlc().items()}, loss, want)
    return lambda: trainer.step(tx, ty)


def gpt_generate(model: TorchGpt, prompt: list[int], count: int) -> list[int]:
    """Greedy decoding with a KV cache: the prompt in one forward pass, then one token at a time."""
    caches: list[list] = [[] for _ in model.blocks]
    tokens = list(prompt)
    with torch.inference_mode():
        logits = model(torch.tensor([prompt]), caches)
        for _ in range(count):
            token = int(logits[0, -1].argmax())
            tokens.append(token)
            if len(tokens) == len(prompt) + count:
                break
            logits = model(torch.tensor([[token]]), caches, start=len(tokens) - 1)
    return tokens


def _gpt_generate(impl: str, case: Case) -> Callable[[], object]:
    if impl == TORCH_COMPILE:
        raise Unavailable("not measured: the issue compares generation with PyTorch eager")
    params = data.gpt_params(CHAR_VOCAB, CHAR_CONTEXT, CHAR_VOCAB)
    model = TorchGpt(params).eval()
    prompt, count = data.char_prompt(case.params["prompt"]), case.params["tokens"]
    check_greedy(impl, gpt_generate(model, prompt, count), prompt, count, params)
    return lambda: gpt_generate(model, prompt, count)


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "conv": _conv,
            "cnn-step": _cnn_step, "cnn-infer": _cnn_infer, "cnn-epoch": _cnn_epoch,
            "mlpbn-step": _mlpbn_step,
            "attention": _attention, "gpt-step": _gpt_step, "gpt-generate": _gpt_generate}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    kind = builder_kind(case)
    if kind not in BUILDERS:
        raise Unavailable(f"no {impl} implementation of {kind}")
    if kind == "sgemm" and impl == TORCH_COMPILE:
        raise Unavailable("torch.compile adds nothing to one matmul")
    return BUILDERS[kind](impl, case)
