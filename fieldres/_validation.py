"""Input checks shared by the public entry points.

Checks run on concrete values at the Python boundary and raise
:class:`FieldresInputError` (a ``ValueError``) naming the problem; under a caller's
``jit``/``vmap`` (traced values) they are skipped, and the numerical routines
report failures through result codes instead.
"""

from __future__ import annotations

from contextlib import nullcontext

import jax
import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["FieldresInputError", "is_concrete", "check_kernel", "check_nonnegative", "check_depth",
           "check_finite"]


class FieldresInputError(ValueError):
    """Bad input to a fieldres function (a user error, not a bug).

    Raised by the input checks of this module and by the data loaders
    (:class:`fieldres.DataNotFoundError`, :class:`fieldres.DataFormatError`), so that a caller
    such as the command line can tell a refusal of its input from a failure of the code.
    It is a ``ValueError``: ``except ValueError`` keeps catching it.
    """


def is_concrete(x) -> bool:
    """True when ``x`` holds a value now (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(name: str, x) -> None:
    if is_concrete(x):
        a = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(a)):
            raise FieldresInputError(f"{name} contains NaN or infinite values: {a!r}")


def check_nonnegative(name: str, x) -> None:
    if is_concrete(x):
        a = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(a)):
            raise FieldresInputError(f"{name} must be finite, got {a}")
        if np.any(a < 0):
            raise FieldresInputError(f"{name} must be non-negative (it is a variance), got {a}")


def check_positive(name: str, x) -> None:
    if is_concrete(x):
        a = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise FieldresInputError(f"{name} must be positive and finite, got {a}")


def check_depth(depth, name: str = "depth") -> None:
    if is_concrete(depth):
        d = np.asarray(depth)
        if not np.issubdtype(d.dtype, np.integer):
            if not np.all(np.isfinite(d)) or np.any(d != np.round(d)):
                raise FieldresInputError(f"{name} must be an integer, got {depth!r}")
        if np.any(d < 1):
            raise FieldresInputError(f"{name} must be >= 1, got {depth!r}")


def check_kernel(K, name: str = "K0", *, rtol: float = 1e-10) -> None:
    """A kernel must be a finite, symmetric, positive semi-definite ``P x P`` matrix."""
    shape = np.shape(K)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] == 0:
        raise FieldresInputError(f"{name} must be a square P x P matrix, got shape {shape}")
    if not is_concrete(K):
        return
    a = np.asarray(K, dtype=float)
    if not np.all(np.isfinite(a)):
        raise FieldresInputError(f"{name} contains NaN or infinite values")
    scale = max(float(np.max(np.abs(a))), 1e-300)
    if not np.allclose(a, a.T, rtol=0.0, atol=rtol * scale):
        raise FieldresInputError(
            f"{name} is not symmetric (max |K - K^T| = {np.max(np.abs(a - a.T)):.3g})")
    diag = np.diag(a)
    if np.any(diag <= 0):
        bad = np.flatnonzero(diag <= 0)
        shown = ", ".join(f"{name}[{i},{i}] = {diag[i]:.4g}" for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        raise FieldresInputError(
            f"{name} must have a positive diagonal (the input variances): {shown}{more}"
        )
    # One BLAS thread: right after an XLA computation, multi-threaded OpenBLAS calls on a
    # busy machine stall for 0.1-1 s (threads spinning for cores XLA holds); single-threaded
    # the check costs ~2 ms at P = 200 (benchmarks/bench_core.py, section "validation").
    # (Small kernels never start BLAS threads, and the limiter itself costs ~2 ms.)
    limit = threadpool_limits(limits=1, user_api="blas") if a.shape[0] >= 64 else nullcontext()
    with limit:
        try:  # cheap path: a Cholesky factor exists for every positive-definite kernel
            np.linalg.cholesky(a)
            return
        except np.linalg.LinAlgError:
            pass
        lam_min = float(np.linalg.eigvalsh(a)[0])  # semi-definite (repeated inputs) or not
    if lam_min < -1e-10 * scale:
        raise FieldresInputError(
            f"{name} is not positive semi-definite: smallest eigenvalue {lam_min:.3g} "
            f"(a kernel is a covariance matrix)"
        )
