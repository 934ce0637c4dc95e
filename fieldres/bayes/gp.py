# jaxtyping dimension strings ("n n") are not forward references:
# ruff: noqa: F722
r"""Gaussian-process regression with a network's output kernel (the infinite-width posterior).

At infinite width the prior over the network output is a centred Gaussian process with the
NNGP output kernel :math:`K^\mathrm{out}` (THEORY §2; Neal 1996, Lee et al. 2018,
arXiv:1711.00165; Matthews et al. 2018, arXiv:1804.11271). With a Gaussian likelihood
:math:`y_\alpha \sim \mathcal N(f(x_\alpha), T)` (noise, or temperature, ``T``) on ``n``
training points the posterior on test points is Gaussian (Rasmussen & Williams 2006, Eqs.
2.25--2.26, 2.30), output by output with the same kernel:

.. math::

    \bar f_* = K_{*x} (K_{xx} + T I)^{-1} Y, \qquad
    \mathrm{Var} f_* = k_{**} - K_{*x} (K_{xx} + T I)^{-1} K_{x*},

    \log p(Y) = -\tfrac12 \sum_{c} Y_c^T (K_{xx} + T I)^{-1} Y_c
      - \tfrac{k}{2} \log\det(K_{xx} + T I) - \tfrac{n k}{2} \log 2\pi ,

for ``k`` outputs ``Y_c``. Everything is solved with one Cholesky factor (float64 when
``jax_enable_x64`` is on) and differentiable (``jax.grad`` of the log evidence with respect to
the kernel, hence to ``rho``, ``T`` and the variances).

Kernels of many inputs are built in row tiles (:func:`nngp_kernel`): the leading-order
recursion acts entrywise given the per-layer diagonals, so a ``B x n2`` tile needs only its
own ``O(B n2)`` memory (no ``P x P`` trajectory). Memory of :func:`gp_posterior` at
``n`` training points: the kernel and its Cholesky factor, ``2 n^2 x 8`` bytes (1.6 GB at
``n = 10^4``), plus ``n x batch_size x 8`` bytes per test batch.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError, is_concrete
from ..kernels.tiled import ARCHITECTURES, nngp_diagonal, nngp_kernel

__all__ = [
    "ARCHITECTURES",
    "GPPosterior",
    "nngp_kernel",
    "nngp_diagonal",
    "gp_posterior",
    "GPFit",
    "gp_fit",
    "gp_predict",
    "gp_summary",
    "check_psd",
    "log_evidence",
    "kernel_alignment",
    "classification_error",
]

# ----------------------------------------------------------------------------------------
# GP regression
# ----------------------------------------------------------------------------------------


class GPPosterior(eqx.Module):
    """GP-regression posterior and its summaries (see :func:`gp_posterior`).

    Attributes
    ----------
    mean:
        ``(m,)`` or ``(m, k)`` posterior mean on the test points (``None`` without them).
    variance:
        ``(m,)`` posterior variance of the latent ``f`` on the test points (the predictive
        variance of a new target adds ``T``); the same for every output.
    train_mean:
        Posterior mean on the training points, ``Y - T (K + T I)^{-1} Y``.
    log_evidence:
        Log marginal likelihood ``log p(Y)`` (all outputs).
    train_mse, test_mse:
        Mean over points of the squared error summed over outputs (``nan`` without test
        targets).
    test_error:
        Fraction of test points misclassified: sign for one output (±1 targets), argmax for
        several (one-hot).
    kernel_alignment:
        Centred kernel--target alignment of the training kernel (:func:`kernel_alignment`).
    """

    mean: Array | None
    variance: Array | None
    train_mean: Array
    log_evidence: Array
    train_mse: Array
    test_mse: Array
    test_error: Array
    kernel_alignment: Array


def kernel_alignment(K: Float[ArrayLike, "n n"], Y: Float[ArrayLike, "n ..."]) -> Array:
    """Centred kernel--target alignment ``<K_c, Y_c Y_c^T>_F / (||K_c||_F ||Y_c Y_c^T||_F)``.

    Centring by ``H = I - 1 1^T / n`` on both sides (Cortes, Mohri & Rostamizadeh, JMLR 13,
    2012); ``Y`` is ``(n,)`` or ``(n, k)``. Differentiable; ``nan`` for constant targets.
    Computed without the ``n x n`` target matrix: ``<K_c, Y_c Y_c^T> = tr(Y_c^T K_c Y_c)``.
    """
    K = jnp.asarray(K)
    Y = jnp.asarray(Y, K.dtype)
    Y = Y[:, None] if Y.ndim == 1 else Y
    Kc = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()
    Yc = Y - Y.mean(0, keepdims=True)
    num = jnp.sum(Yc * (Kc @ Yc))
    yty = Yc.T @ Yc
    return num / (jnp.linalg.norm(Kc) * jnp.linalg.norm(yty))


def classification_error(F: ArrayLike, Y: ArrayLike) -> Array:
    """Error rate of predictions ``F`` against targets ``Y``: sign for ``(m,)`` or ``(m, 1)``
    (±1 targets), argmax for ``(m, k)`` with ``k >= 2`` (one-hot)."""
    F, Y = jnp.asarray(F), jnp.asarray(Y)
    if Y.ndim == 1 or Y.shape[1] == 1:
        return jnp.mean(jnp.sign(F.reshape(-1)) != jnp.sign(Y.reshape(-1)))
    return jnp.mean(jnp.argmax(F, -1) != jnp.argmax(Y, -1))


def _as_targets(Y, n, name):
    Y = jnp.asarray(Y)
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise FieldresInputError(f"{name} must have shape ({n},) or ({n}, k), got {Y.shape}")
    if is_concrete(Y) and not np.all(np.isfinite(np.asarray(Y))):
        raise FieldresInputError(f"{name} contains NaN or infinite values")
    return Y


def _check_noise(noise):
    if is_concrete(noise):
        T = np.asarray(noise, float)
        if T.ndim != 0 or not np.isfinite(T) or T <= 0:
            raise FieldresInputError(f"noise T must be a positive finite number (the likelihood "
                             f"variance), got {noise}")


def _check_square(K, name="K_train"):
    K = jnp.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape[0] == 0:
        raise FieldresInputError(f"{name} must be a square n x n matrix, got shape {K.shape}")
    if is_concrete(K):
        a = np.asarray(K)
        if not np.all(np.isfinite(a)):
            raise FieldresInputError(f"{name} contains NaN or infinite values")
        scale = float(np.max(np.abs(a)))
        asym = float(np.max(np.abs(a - a.T)))
        if asym > 1e-10 * max(scale, 1e-300):
            raise FieldresInputError(f"{name} is not symmetric (max |K - K^T| = {asym:.3g})")
    return K


def check_psd(K: ArrayLike, name: str = "K_train", rtol: float = 1e-10) -> None:
    """Refuse a kernel with an eigenvalue below ``-tol``, ``tol = max(rtol, 10 n eps) max|K|``.

    One Cholesky factorisation of ``K + tol I`` (it exists iff ``lambda_min(K) > -tol``);
    the smallest eigenvalue is computed only for the error message. Skipped under tracing.
    """
    if not is_concrete(K):
        return
    K = jnp.asarray(K)
    n = K.shape[0]
    scale = max(float(jnp.max(jnp.abs(K))), 1e-300)
    tol = max(rtol, 10 * n * float(jnp.finfo(K.dtype).eps)) * scale
    L = jnp.linalg.cholesky(K + tol * jnp.eye(n, dtype=K.dtype))
    if np.all(np.isfinite(np.asarray(L))):
        return
    lam = float(np.linalg.eigvalsh(np.asarray(K, np.float64))[0])
    raise FieldresInputError(f"{name} is not positive semi-definite: smallest eigenvalue {lam:.3g} "
                     f"(a kernel is a covariance matrix)")


def _factor(K, noise):
    n = K.shape[0]
    cho = jax.scipy.linalg.cho_factor(K + noise * jnp.eye(n, dtype=K.dtype), lower=True)
    if is_concrete(cho[0]) and not np.all(np.isfinite(np.asarray(cho[0]))):
        raise FieldresInputError("K_train + T I has no Cholesky factor (not positive definite); "
                         "increase the noise T or check the kernel")
    return cho


def _log_evidence(cho, Y2, alpha):
    n, k = Y2.shape
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(cho[0])))
    return -0.5 * jnp.sum(Y2 * alpha) - 0.5 * k * logdet - 0.5 * n * k * math.log(2 * math.pi)


def log_evidence(K_train: Float[ArrayLike, "n n"], Y: Float[ArrayLike, "n ..."],
                 noise: ArrayLike, *, check: bool = True) -> Array:
    """Log marginal likelihood ``log N(Y; 0, K + T I)`` summed over the outputs (differentiable).

    ``check=False`` skips the positive-semi-definiteness check (one extra factorisation).
    """
    K = _check_square(K_train)
    Y = _as_targets(Y, K.shape[0], "Y_train")
    _check_noise(noise)
    if check:
        check_psd(K)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    cho = _factor(K, jnp.asarray(noise, K.dtype))
    return _log_evidence(cho, Y2.astype(K.dtype), jax.scipy.linalg.cho_solve(cho, Y2))


def gp_posterior(
    K_train: Float[ArrayLike, "n n"],
    Y_train: Float[ArrayLike, "n ..."],
    noise: ArrayLike,
    K_cross: Float[ArrayLike, "n m"] | None = None,
    k_test: Float[ArrayLike, " m"] | None = None,
    Y_test: Float[ArrayLike, "m ..."] | None = None,
    *,
    batch_size: int = 1024,
    check: bool = True,
) -> GPPosterior:
    r"""GP regression with kernel ``K`` and Gaussian noise ``T`` (Rasmussen & Williams Eq. 2.25).

    Parameters
    ----------
    K_train:
        ``(n, n)`` prior kernel of the training points (PSD; checked unless ``check=False``).
    Y_train:
        ``(n,)`` or ``(n, k)`` targets (each output an independent GP with the same kernel).
    noise:
        ``T > 0``, the variance of the Gaussian likelihood (a temperature).
    K_cross, k_test:
        ``(n, m)`` train--test kernel and the ``(m,)`` test diagonal ``k(x_*, x_*)``; omit
        both for the training summaries only. The test columns are solved in batches of
        ``batch_size``.
    Y_test:
        ``(m,)`` or ``(m, k)`` test targets for ``test_mse`` and ``test_error``.

    Returns
    -------
    GPPosterior
    """
    fit = gp_fit(K_train, Y_train, noise, check=check)
    if (K_cross is None) != (k_test is None):
        raise FieldresInputError("give both K_cross and k_test (or neither)")
    n = fit.alpha.shape[0]
    batches = []
    if K_cross is not None:
        Kx, kt = jnp.asarray(K_cross), jnp.asarray(k_test)
        if Kx.ndim != 2 or Kx.shape[0] != n or kt.shape != (Kx.shape[1],):
            raise FieldresInputError(
                f"K_cross must be ({n}, m) and k_test (m,), got {Kx.shape} and "
                             f"{kt.shape}")
        b = int(batch_size)
        batches = [gp_predict(fit, Kx[:, s: s + b], kt[s: s + b])
                   for s in range(0, Kx.shape[1], b)]
    return gp_summary(fit, batches if K_cross is not None else None, Y_test)


class GPFit(eqx.Module):
    """Cholesky factor of ``K + T I``, ``alpha = (K + T I)^{-1} Y`` and training summaries."""

    cho: Array
    alpha: Array
    noise: Array
    log_evidence: Array
    train_mse: Array
    kernel_alignment: Array
    single_output: bool = eqx.field(static=True)


def gp_fit(K_train: Float[ArrayLike, "n n"], Y_train: Float[ArrayLike, "n ..."],
           noise: ArrayLike, *, check: bool = True) -> GPFit:
    """Factorise ``K + T I`` once (float64 Cholesky) and solve for the training targets."""
    K = _check_square(K_train)
    n = K.shape[0]
    Y = _as_targets(Y_train, n, "Y_train")
    _check_noise(noise)
    if check:
        check_psd(K)
    T = jnp.asarray(noise, K.dtype)
    Y2 = (Y[:, None] if Y.ndim == 1 else Y).astype(K.dtype)
    cho = _factor(K, T)
    alpha = jax.scipy.linalg.cho_solve(cho, Y2)
    return GPFit(cho[0], alpha, T, _log_evidence(cho, Y2, alpha),
                 jnp.mean(jnp.sum((T * alpha) ** 2, -1)), kernel_alignment(K, Y2), Y.ndim == 1)


def gp_predict(fit: GPFit, K_cross: Float[ArrayLike, "n b"],
               k_test: Float[ArrayLike, " b"]) -> tuple[Array, Array]:
    """Posterior mean ``(b, k)`` and latent variance ``(b,)`` of one batch of test points."""
    Kb = jnp.asarray(K_cross)
    v = jax.scipy.linalg.solve_triangular(fit.cho, Kb, lower=True)
    return Kb.T @ fit.alpha, jnp.asarray(k_test) - jnp.sum(v * v, 0)


def gp_summary(fit: GPFit, batches: list[tuple[Array, Array]] | None,
               Y_test: ArrayLike | None = None) -> GPPosterior:
    """Assemble a :class:`GPPosterior` from a fit and the predicted test batches."""
    dtype = fit.alpha.dtype
    k = fit.alpha.shape[1]
    train_mean = fit.cho @ (fit.cho.T @ fit.alpha)  # K alpha = Y - T alpha, to rounding
    train_mean = train_mean - fit.noise * fit.alpha
    shape = (lambda a: a[:, 0]) if fit.single_output else (lambda a: a)
    nan = jnp.asarray(jnp.nan, dtype)
    mean = var = None
    test_mse = test_err = nan
    if batches is not None:
        mean = (jnp.concatenate([b[0] for b in batches], 0) if batches
                else jnp.zeros((0, k), dtype))
        var = jnp.concatenate([b[1] for b in batches], 0) if batches else jnp.zeros((0,), dtype)
        if Y_test is not None:
            Yt = _as_targets(Y_test, mean.shape[0], "Y_test")
            Yt2 = (Yt[:, None] if Yt.ndim == 1 else Yt).astype(dtype)
            if Yt2.shape[1] != k:
                raise FieldresInputError(f"Y_test has {Yt2.shape[1]} outputs, Y_train {k}")
            test_mse = jnp.mean(jnp.sum((mean - Yt2) ** 2, -1))
            test_err = classification_error(mean, Yt2)
        mean = shape(mean)
    return GPPosterior(mean, var, shape(train_mean), fit.log_evidence, fit.train_mse, test_mse,
                       test_err, fit.kernel_alignment)
