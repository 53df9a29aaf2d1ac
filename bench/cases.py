"""The benchmark cases: what is measured, in which unit, and the issue's targets.

A case is timed in a worker process (see :mod:`bench.worker`); its figure is
the median of interleaved repetitions after warm-up.  Cases that are not
timed in a worker (compile time, peak memory) are run by :mod:`bench.run`
through their own subprocesses.

Case ids: ``sgemm-<size>`` / ``sgemm-<mlp shape>``, ``step-<batch>``,
``epoch``, ``infer-<batch>``, ``vmath-<fn>``, ``conv-<fwd|bwd>-<image size>``,
``cnn-step-<batch>``, ``cnn-infer-<batch>``, ``cnn-epoch``, ``mlpbn-step-<batch>``,
``attention-fwd-<BxHxTxD>``, ``attention-train-<BxHxTxD>``, ``gpt-step-<batch>``,
``gpt-generate-<batch>``, ``compile-cold``, ``compile-xor``,
``compile-warm``, ``compile-import``, ``memory``.  Groups (``--cases sgemm,step``) select every
case whose id starts with the group name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Implementations.  A worker "family" serves one or more of them.
DLC = "dlc"
NUMPY = "numpy"
TORCH = "torch"
TORCH_COMPILE = "torch.compile"
JAX = "jax"
IMPLS = (DLC, NUMPY, TORCH, TORCH_COMPILE, JAX)
PEERS = (NUMPY, TORCH, TORCH_COMPILE, JAX)
FAMILY = {DLC: "dlc", NUMPY: "numpy", TORCH: "torch", TORCH_COMPILE: "torch", JAX: "jax"}

# The MNIST MLP of FACTS.md: 784-512(relu)-10, softmax cross-entropy, SGD.
MLP_IN, MLP_HIDDEN, MLP_OUT = 784, 512, 10
MLP_LR = 0.1
EPOCH_SAMPLES = 60000
EPOCH_BATCH = 128
# The LeNet-style MNIST CNN of issue 16 (NHWC images, HWIO kernels, valid 3x3
# convolutions, 2x2 max pooling), trained with Adam at Keras' defaults.
CNN_IMAGE = (28, 28, 1)
CNN_FILTERS = (32, 64)
CNN_HIDDEN = 128
CNN_LR = 0.001
ADAM_EPSILON = 1e-7    # Keras' (and dlc's) default; PyTorch's is 1e-8
# The issue-17 MLP: 784 -> dense 512 (no bias) -> batch norm -> relu -> dropout
# 0.2 -> dense 256 (no bias) -> batch norm -> relu -> dropout 0.2 -> dense 10.
MLPBN_HIDDEN = (512, 256)
MLPBN_DROPOUT = 0.2
BN_MOMENTUM = 0.99     # Keras' convention: moving = moving * momentum + batch * (1 - momentum)
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class Target:
    """An issue target: ``ratio <= bound`` (``lower_is_better``) or ``ratio >= bound``.

    ``versus`` names the reference: an implementation, ``"fastest peer"``,
    or ``"absolute"`` (then the bound is compared with dlc's own figure).
    """

    bound: float
    versus: str
    lower_is_better: bool

    def holds(self, ratio: float) -> bool:
        """Whether a measured ratio (or absolute figure) meets the target."""
        return ratio <= self.bound if self.lower_is_better else ratio >= self.bound

    def describe(self) -> str:
        """Short text for the table, e.g. ``<=0.75x fastest peer``."""
        op = "<=" if self.lower_is_better else ">="
        if self.versus == "absolute":
            return f"{op}{self.bound:g}"
        return f"{op}{self.bound:g}x {self.versus}"


@dataclass(frozen=True)
class Case:
    """One measured quantity.

    ``unit`` is ``GFLOP/s``, ``Gelem/s`` or ``tokens/s`` (higher is better; the worker
    measures seconds per call and :func:`figure` converts) or a time unit.
    ``impls`` are the implementations that take part; ``params`` is what the
    workers need to build the runnable (shapes, batch size, function name).
    """

    id: str
    label: str
    unit: str
    impls: tuple[str, ...]
    params: dict = field(default_factory=dict)
    targets: dict[int, Target] = field(default_factory=dict)   # threads -> target
    threads: tuple[int, ...] | None = None   # None: every requested thread count
    quick: bool = True                      # part of --quick

    @property
    def is_epoch(self) -> bool:
        """A whole epoch: warmed up by one call and timed one call at a time."""
        return self.id == "epoch" or self.id.endswith("-epoch")

    @property
    def higher_is_better(self) -> bool:
        return self.unit in ("GFLOP/s", "Gelem/s", "tokens/s")

    def figure(self, seconds: float) -> float:
        """Convert seconds per call into this case's unit."""
        if self.unit == "GFLOP/s":
            return self.params["flop"] / seconds / 1e9
        if self.unit == "Gelem/s":
            return self.params["elements"] / seconds / 1e9
        if self.unit == "tokens/s":
            return self.params["tokens"] / seconds
        return seconds * TIME_SCALE[self.unit]


TIME_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}


def _every_thread_count(target: Target) -> dict[int, Target]:
    return {1: target, 2: target}


def _sgemm(id_: str, m: int, k: int, n: int, bound: float | None, quick: bool) -> Case:
    targets = _every_thread_count(Target(bound, NUMPY, False)) if bound else {}
    return Case(id_, f"sgemm {m}x{k} . {k}x{n}", "GFLOP/s", (DLC, NUMPY, TORCH, JAX),
                {"m": m, "k": k, "n": n, "flop": 2.0 * m * k * n}, targets, quick=quick)


def _sgemm_cases() -> list[Case]:
    square = [_sgemm(f"sgemm-{s}", s, s, s, 0.9 if s >= 512 else None, s in (512, 1024))
              for s in (256, 512, 1024, 2048)]
    mlp = [
        _sgemm("sgemm-fwd1", 128, 784, 512, 1.0, True),     # x . W1
        _sgemm("sgemm-fwd2", 128, 512, 10, 1.0, False),     # h . W2
        _sgemm("sgemm-dw1", 784, 128, 512, 1.0, False),     # x^T . dh
        _sgemm("sgemm-dw2", 512, 128, 10, 1.0, False),      # h^T . dlogits
        _sgemm("sgemm-dh", 128, 10, 512, 1.0, False),       # dlogits . W2^T
    ]
    return square + mlp


STEP_BOUNDS = {1: 0.5, 32: 0.75, 128: 0.75}
INFER_BOUNDS = {1: 0.5, 128: 0.8}


def _step_cases() -> list[Case]:
    """Steps on random images (every pixel non-zero), then on real MNIST images (mostly zeros)."""
    cases = []
    for images, batches in (("random", (1, 32, 128, 512)), ("mnist", (1, 32, 128))):
        for batch in batches:
            bound = STEP_BOUNDS.get(batch)
            targets = _every_thread_count(Target(bound, "fastest peer", True)) if bound else {}
            id_, label = (f"step-{batch}", f"MLP train step, batch {batch}") if images == "random" else \
                (f"step-mnist-{batch}", f"MLP train step, batch {batch}, MNIST images")
            cases.append(Case(id_, label, "us", IMPLS, {"batch": batch, "images": images}, targets,
                              quick=images == "random" and batch in (1, 128)))
    return cases


def _infer_cases() -> list[Case]:
    cases = []
    for images in ("random", "mnist"):
        for batch, bound in INFER_BOUNDS.items():
            id_, label = (f"infer-{batch}", f"MLP inference, batch {batch}") if images == "random" else \
                (f"infer-mnist-{batch}", f"MLP inference, batch {batch}, MNIST images")
            cases.append(Case(id_, label, "us", IMPLS, {"batch": batch, "images": images},
                              _every_thread_count(Target(bound, "fastest peer", True)),
                              quick=images == "random"))
    return cases


def _epoch_case() -> Case:
    return Case("epoch", f"MNIST epoch ({EPOCH_SAMPLES} samples, batch {EPOCH_BATCH})", "ms",
                IMPLS, {"batch": EPOCH_BATCH},
                _every_thread_count(Target(0.75, "fastest peer", True)), quick=False)


VMATH_ELEMENTS = 1 << 20


def _vmath_cases() -> list[Case]:
    return [Case(f"vmath-{fn}", f"{fn} on {VMATH_ELEMENTS} f32", "Gelem/s", (DLC, NUMPY),
                 {"fn": fn, "elements": VMATH_ELEMENTS},
                 _every_thread_count(Target(1.0, NUMPY, False)), quick=fn in ("exp", "tanh"))
            for fn in ("exp", "log", "tanh", "sigmoid")]


def conv_flop(n: int, h: int, w: int, c: int, oc: int, k: int) -> float:
    """Multiply-adds x 2 of a stride-1 'same' k x k convolution (one of its gradients costs the same)."""
    return 2.0 * n * h * w * k * k * c * oc


def _conv_cases() -> list[Case]:
    """conv2d 3x3, stride 1, 'same' padding: forward, and backward (input and kernel gradients).

    The target (issue 16) is forward GFLOP/s >= 0.9x PyTorch eager's (oneDNN);
    the backward rows carry the same bound ("backward at the same efficiency").
    """
    cases = []
    for n, size, c, oc in ((128, 28, 32, 64), (32, 56, 64, 64)):
        flop = conv_flop(n, size, size, c, oc, 3)
        for direction, what, factor in (("fwd", "forward", 1), ("bwd", "input + kernel grads", 2)):
            cases.append(Case(f"conv-{direction}-{size}", f"conv2d 3x3 {what}, {n}x{size}x{size}, {c}->{oc}",
                              "GFLOP/s", (DLC, TORCH, TORCH_COMPILE, JAX),
                              {"n": n, "size": size, "c": c, "oc": oc, "k": 3, "direction": direction,
                               "flop": factor * flop},
                              _every_thread_count(Target(0.9, TORCH, False)),
                              quick=(direction, size) == ("fwd", 28)))
    return cases


CNN_STEP_BOUNDS = {1: 0.5, 32: 0.8, 128: 0.8}


def _cnn_cases() -> list[Case]:
    """The MNIST CNN: Adam training steps, inference (no target in the issue), a whole epoch."""
    impls = (DLC, TORCH, TORCH_COMPILE, JAX)
    steps = [Case(f"cnn-step-{b}", f"CNN train step (Adam), batch {b}", "us", impls, {"batch": b},
                  _every_thread_count(Target(bound, "fastest peer", True)), quick=b in (1, 128))
             for b, bound in CNN_STEP_BOUNDS.items()]
    infer = [Case(f"cnn-infer-{b}", f"CNN inference, batch {b}", "us", impls, {"batch": b}, quick=False)
             for b in (1, 128)]
    epoch = Case("cnn-epoch", f"CNN epoch ({EPOCH_SAMPLES} samples, batch {EPOCH_BATCH})", "ms", impls,
                 {"batch": EPOCH_BATCH}, quick=False)
    return [*steps, *infer, epoch]


def _mlpbn_cases() -> list[Case]:
    """Issue 17's row: the dropout + batch-norm MLP's Adam training step."""
    return [Case("mlpbn-step-128", "MLP dropout+BN train step (Adam), batch 128", "us",
                 (DLC, TORCH, TORCH_COMPILE, JAX), {"batch": 128},
                 _every_thread_count(Target(0.8, "fastest peer", True)))]


# Causal attention over [B, H, T, D] (issue 22): the op alone, forward and forward + backward.
ATTENTION_SHAPES = ((8, 4, 256, 32), (1, 8, 1024, 64))


def attention_flop(shape: tuple[int, int, int, int], backward: bool) -> float:
    """Multiply-adds x 2 of causal attention (half the T x T scores): 2 products forward,
    5 more backward (scores and ``do v^T`` again, ``dv``, ``dk``, ``dq``)."""
    b, h, t, d = shape
    products = 2 + (5 if backward else 0)
    return 2.0 * b * h * t * t * d * products / 2


def _attention_cases() -> list[Case]:
    """Forward (target: at least PyTorch's ``scaled_dot_product_attention``) and forward +
    backward, each in GFLOP/s of the causal work."""
    cases = []
    for shape in ATTENTION_SHAPES:
        dims = "x".join(str(n) for n in shape)
        for backward in (False, True):
            what = "forward + backward" if backward else "forward"
            targets = {} if backward else _every_thread_count(Target(1.0, TORCH, False))
            cases.append(Case(f"attention-{'train' if backward else 'fwd'}-{dims}",
                              f"causal attention {what}, [B, H, T, D] = {list(shape)}", "GFLOP/s",
                              (DLC, TORCH, TORCH_COMPILE, JAX),
                              {"shape": shape, "backward": backward, "flop": attention_flop(shape, backward)},
                              targets, quick=shape == ATTENTION_SHAPES[0]))
    return cases


# The GPTs of issue 22: examples/adder_gpt.dl's training step (2 pre-norm blocks, 4 heads,
# d = 128, T = 9, loss on positions 5..8, AdamW with global-norm clipping) and greedy
# generation from examples/char_gpt.dl (vocabulary 256, context 64).
GPT_HEADS, GPT_DIM = 4, 128
ADDER_VOCAB, ADDER_T, ADDER_ANSWER = 10, 9, 4
CHAR_VOCAB, CHAR_CONTEXT = 256, 64
GENERATE_PROMPT, GENERATE_TOKENS = 8, 56    # 8 + 56 = 64 tokens: the whole context, no sliding


def _gpt_cases() -> list[Case]:
    """The adder GPT's AdamW step (<= 0.8x the fastest peer's time) and greedy generation's
    tokens per second at batch 1 (>= 1.5x PyTorch eager with a KV cache)."""
    impls = (DLC, TORCH, TORCH_COMPILE, JAX)
    step = Case("gpt-step-64", "adder GPT train step (AdamW, clipnorm), batch 64", "us", impls,
                {"batch": 64}, _every_thread_count(Target(0.8, "fastest peer", True)))
    generate = Case("gpt-generate-1", f"char GPT greedy generation, {GENERATE_TOKENS} tokens after "
                    f"{GENERATE_PROMPT}, batch 1", "tokens/s", (DLC, TORCH, JAX),
                    {"prompt": GENERATE_PROMPT, "tokens": GENERATE_TOKENS},
                    _every_thread_count(Target(1.5, TORCH, False)), quick=False)
    return [step, generate]


# Cases run by bench.run itself (subprocesses), not timed in a worker.
# (issue 19's goals: the MNIST training step cold in 0.3 s, XOR's in 0.15 s, a cache hit in
# 20 ms, import in 150 ms; load_model compiles nothing, the first step compiles the step)
COMPILE_COLD = Case("compile-cold", "dlc load_model + first step, cold cache (MLP)", "s", (DLC,),
                    targets={0: Target(0.3, "absolute", True)}, threads=(0,))
COMPILE_XOR = Case("compile-xor", "dlc load_model + first step, cold cache (XOR)", "s", (DLC,),
                   targets={0: Target(0.15, "absolute", True)}, threads=(0,))
COMPILE_WARM = Case("compile-warm", "dlc load_model + first step, warm cache (MLP)", "ms", (DLC,),
                    targets={0: Target(20.0, "absolute", True)}, threads=(0,))
COMPILE_IMPORT = Case("compile-import", "import of dlc's runtime and compiler (fresh process)", "ms",
                      (DLC,), targets={0: Target(150.0, "absolute", True)}, threads=(0,))
MEMORY = Case("memory", "peak RSS, one MNIST training epoch", "MB",
              (DLC, NUMPY, TORCH, JAX), threads=(0,), quick=False)
SPEEDUP = Case("sgemm-1024-speedup", "sgemm 1024, 2-thread speedup", "x", (DLC, NUMPY, TORCH, JAX),
               targets={0: Target(1.8, "absolute", False)}, threads=(0,))

WORKER_CASES: list[Case] = (_sgemm_cases() + _step_cases() + _infer_cases() + _vmath_cases()
                            + [_epoch_case()] + _conv_cases() + _cnn_cases() + _mlpbn_cases()
                            + _attention_cases() + _gpt_cases())


def _thread_scaling(case: Case) -> Case:
    """dlc's time on 2 threads over its time on 1 for a training-step or inference case: 2
    threads must never be slower than 1, at any batch size (issue 19's "never a slowdown")."""
    return Case(f"{case.id}-2t", f"{case.label}: 2 threads / 1 thread", "x", (DLC,),
                targets={0: Target(1.0, "absolute", True)}, threads=(0,))


# Rows derived from two thread counts of a worker case, not timed themselves.
SCALING: dict[str, Case] = {c.id: _thread_scaling(c) for c in WORKER_CASES
                            if c.id.startswith(("step-", "infer-", "cnn-step-", "cnn-infer-"))}
PROCESS_CASES: list[Case] = [COMPILE_COLD, COMPILE_XOR, COMPILE_WARM, COMPILE_IMPORT, MEMORY]
ALL_CASES: list[Case] = WORKER_CASES + PROCESS_CASES
BY_ID: dict[str, Case] = {c.id: c for c in ALL_CASES + [SPEEDUP, *SCALING.values()]}
GROUPS = ("sgemm", "step", "infer", "vmath", "epoch", "conv", "cnn", "mlpbn", "attention", "gpt", "compile",
          "memory")


class UnknownCase(ValueError):
    """A ``--cases`` entry that names no case or group."""


def select(names: list[str] | None, quick: bool) -> list[Case]:
    """The cases to run, in table order.

    ``names`` are case ids or group names (a group selects every case whose
    id starts with it).  ``None`` means every case, or the quick subset.
    Raises :class:`UnknownCase` for a name that matches nothing.
    """
    if names is None:
        return [c for c in ALL_CASES if c.quick or not quick]
    chosen: set[str] = set()
    for name in names:
        matched = [c.id for c in ALL_CASES if c.id == name or c.id.startswith(name + "-")
                   or (name in GROUPS and c.id == name)]
        if not matched:
            known = ", ".join(GROUPS + tuple(c.id for c in ALL_CASES))
            raise UnknownCase(f"unknown case {name!r}; known: {known}")
        chosen.update(matched)
    return [c for c in ALL_CASES if c.id in chosen]
