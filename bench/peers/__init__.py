"""One module per implementation family; each builds the runnable of a case.

A family module exposes

- ``describe(threads) -> dict``: versions, thread counts, kernels (for the
  report);
- ``build(impl, case) -> Callable[[], object]``: a runnable doing one unit of
  the case's work (one sgemm, one training step, one epoch, ...), already
  checked against the float64 reference in :mod:`bench.data`.  It raises
  :class:`Unavailable` with the reason when it cannot, and the report then
  shows "n/a (reason)".
"""

from __future__ import annotations

import numpy as np

from ..cases import Case
from ..data import MlpParams, params_close, reference_conv, reference_conv_grads


class Unavailable(Exception):
    """This implementation cannot run this case; the message says why."""


def check_close(what: str, got: np.ndarray, want: np.ndarray, scale: float, tol: float) -> None:
    """Raise :class:`Unavailable` unless ``max|got - want| / scale <= tol``."""
    got = np.asarray(got)
    if got.shape != want.shape:
        raise Unavailable(f"wrong result: {what} has shape {got.shape}, expected {want.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - want))) / scale
    if not err <= tol:
        raise Unavailable(f"wrong result: {what} off by {err:.2e} (relative), tolerance {tol:g}")


def check_sgemm(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Check an sgemm result against float64, error scaled by sqrt(K)."""
    want = a.astype(np.float64) @ b.astype(np.float64)
    check_close("a @ b", out, want, float(np.sqrt(a.shape[1])), 1e-4)


def check_vmath(fn: str, out: np.ndarray, want: np.ndarray) -> None:
    """Check a vector-math result: relative error 1e-5 with an absolute floor of 1e-6."""
    got = np.asarray(out, np.float64)
    if got.shape != want.shape:
        raise Unavailable(f"wrong result: {fn} has shape {got.shape}, expected {want.shape}")
    bad = np.abs(got - want) > 1e-5 * np.abs(want) + 1e-6
    if bad.any():
        i = int(np.argmax(bad))
        raise Unavailable(f"wrong result: {fn} off at element {i} ({got[i]!r} vs {want[i]!r})")


def check_loss(impl: str, got: float, want: float) -> None:
    """Check a training loss against the float64 reference (relative 1e-4)."""
    if not abs(float(got) - want) <= 1e-4 * max(1.0, abs(want)):
        raise Unavailable(f"wrong result: {impl} loss {float(got):.6f}, reference {want:.6f}")


def check_params(impl: str, got: MlpParams, want: MlpParams) -> None:
    """Check the weights after one SGD step against the float64 reference step."""
    problem = params_close(got, want)
    if problem is not None:
        raise Unavailable(f"wrong result: {impl} {problem}")


def builder_kind(case: Case) -> str:
    """Which builder serves ``case``: ``cnn-step`` / ``cnn-infer`` / ``cnn-epoch`` / ``mlpbn-step`` /
    ``gpt-step`` / ``gpt-generate`` for the model cases of those groups, else the id's first word
    (``sgemm``, ``conv``, ...)."""
    head = case.id.split("-")
    return "-".join(head[:2]) if head[0] in ("cnn", "mlpbn", "gpt") else head[0]


def check_logits(got: np.ndarray, want: np.ndarray) -> None:
    """Check inference logits against float64 (relative 1e-4 of their largest magnitude)."""
    check_close("logits", np.asarray(got), want, max(1.0, float(np.abs(want).max())), 1e-4)


def check_finite_loss(impl: str, got: float) -> None:
    """A stochastic step (dropout) cannot be compared number for number: its loss must be finite
    and plausible for 10 classes at initialization."""
    if not 0.0 < float(got) < 20.0:
        raise Unavailable(f"wrong result: {impl} loss {float(got)!r} after one step")


def check_conv_forward(out: np.ndarray, x: np.ndarray, w: np.ndarray, pad: int) -> None:
    """Check a convolution against float64 (error relative to the largest output)."""
    want = reference_conv(x, w, pad)
    check_close("conv2d", np.asarray(out), want, float(np.abs(want).max()), 1e-5)


def check_conv_grads(out: tuple[np.ndarray, np.ndarray], x: np.ndarray, w: np.ndarray,
                     dy: np.ndarray, pad: int) -> None:
    """Check ``(dx, dw)`` against float64 (each relative to its largest element)."""
    dx, dw = reference_conv_grads(x, w, dy, pad)
    check_close("input gradient", np.asarray(out[0]), dx, float(np.abs(dx).max()), 1e-5)
    check_close("kernel gradient", np.asarray(out[1]), dw, float(np.abs(dw).max()), 1e-5)
def check_attention(impl: str, got: object, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                    w: np.ndarray, backward: bool) -> None:
    """Check an attention output (``backward``: the gradients of q, k, v) against float64."""
    from ..data import reference_attention

    out, grads = reference_attention(q, k, v, w)
    if not backward:
        check_close(f"{impl} attention", np.asarray(got), out, 1.0, 1e-4)
        return
    for name, g, want in zip(("dq", "dk", "dv"), got, grads):
        check_close(f"{impl} {name}", np.asarray(g), want, max(1.0, float(np.abs(want).max())), 1e-4)


def check_gpt_step(impl: str, loss: float, params: dict[str, np.ndarray], want_loss: float,
                   want: dict[str, np.ndarray]) -> None:
    """Check the adder GPT's first step: the loss before it (relative 1e-4) and every weight after
    it (``data.reference_gpt_step``, 1e-4 of the weight's magnitude)."""
    from ..data import gpt_params_close

    check_loss(impl, loss, want_loss)
    problem = gpt_params_close(params, want)
    if problem is not None:
        raise Unavailable(f"wrong result: {impl} {problem}")


def check_greedy(impl: str, tokens: list[int], prompt: list[int], count: int,
                 params: dict[str, np.ndarray]) -> None:
    """Check a greedy continuation: ``prompt`` then ``count`` tokens, each of which is the most
    likely next token under the float64 model (``data.gpt_logits`` of the whole sequence,
    teacher-forced), to 1e-4 of the logits' magnitude -- a near tie may go either way in f32."""
    from ..data import gpt_logits

    tokens = [int(t) for t in tokens]
    if len(tokens) != len(prompt) + count or tokens[:len(prompt)] != list(prompt):
        raise Unavailable(f"wrong result: {impl} returned {len(tokens)} tokens starting "
                          f"{tokens[:len(prompt)]}, expected the prompt {list(prompt)} and {count} more")
    logits = gpt_logits(params, np.array([tokens[:-1]]))[0]
    for i in range(len(prompt), len(tokens)):
        row = logits[i - 1]
        if row[tokens[i]] < row.max() - 1e-4 * max(1.0, float(np.abs(row).max())):
            raise Unavailable(f"wrong result: {impl} token {i} is {tokens[i]}, float64 greedy picks "
                              f"{int(row.argmax())} (logit {row.max():.6f} vs {row[tokens[i]]:.6f})")
