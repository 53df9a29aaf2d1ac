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

from ..data import MlpParams, params_close


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
