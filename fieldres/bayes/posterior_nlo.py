# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r"""Finite-width Bayesian posterior to first order in 1/N (perturbative regime, n_train << N).

At width ``N`` the prior of the outputs is Gaussian only given the network: conditioned on
the last hidden layer the readout is linear in Gaussian weights, so ``f | K̂ ~ N(0, K̂)``
exactly, with the fluctuating output kernel ``K̂ = sigma_w2_out Ĉ^(L) + sigma_b2_out``
(THEORY §4). The posterior of any quantity ``g(K̂)`` computed by GP regression with ``K̂``
(posterior mean, second moment) is therefore the average over the kernel distribution
*reweighted by the evidence* ``w(K̂) = N(Y; 0, K̂_xx + T I)``:

.. math::

    \mathbb E[g \mid Y] = \frac{\mathbb E_{\hat K}[g(\hat K)\, w(\hat K)]}
                               {\mathbb E_{\hat K}[w(\hat K)]} .

With the mean shift ``E K̂ = K + Δ/N`` and covariance ``Cov(K̂_ab, K̂_cd) = V_abcd/N`` of
:func:`fieldres.finite_width.finite_width` (higher cumulants are ``O(1/N^2)``), a second-order
expansion of numerator and denominator around ``K`` gives, with ``ℓ = log w``,

.. math::

    \mathbb E[g \mid Y] = g + \frac1N\Big[\partial g\cdot\Delta + \tfrac12\,\partial^2 g : V
        + \partial g \cdot V \cdot \partial\ell\Big] + O(N^{-2}),

    \log \mathbb E[w] = \ell + \frac1N\Big[\partial\ell\cdot\Delta + \tfrac12(\partial^2\ell
        + \partial\ell\,\partial\ell) : V\Big] + O(N^{-2}).

The last term of the first line is the feature-learning term: the kernel fluctuations that
raise the evidence are preferred (Roberts, Yaida & Hanin, *The Principles of Deep Learning
Theory*, ch. 6, Bayesian learning at finite width; Naveh et al. 2021, arXiv:2004.01190). The
posterior variance follows from ``g = Var_GP + m^2`` minus the square of the corrected mean.
Derivatives are taken with respect to all ``P^2`` entries of the joint (train + test) kernel
by ``jax.jacfwd`` / ``jax.hessian`` (``V`` is symmetric under ``a <-> b`` and ``c <-> d``,
so the contraction equals the symmetric directional derivatives).

Validity: the expansion assumes the reweighting is weak, i.e. ``ℓ`` varies by much less than
one over the kernel fluctuations (``∂ℓ·V·∂ℓ / N << 1``, roughly ``n_train << sqrt(N)``),
and the higher cumulants of ``K̂`` negligible. :func:`fieldres.finite_width.finite_width` handles
at most four distinct inputs, so ``n_train + n_test <= 4`` here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError
from ..defaults import Hyper
from ..kernels.activations import Activation

__all__ = ["NLOPosterior", "nlo_posterior", "finite_width_posterior"]


class NLOPosterior(eqx.Module):
    """Posterior on the test points at infinite width and to ``O(1/N)``.

    Attributes
    ----------
    mean, variance:
        ``(m,)`` leading order (the GP limit).
    mean_shift, variance_shift:
        ``(m,)`` ``N`` times the ``O(1/N)`` corrections.
    mean_finite, variance_finite:
        ``mean + mean_shift / N`` and ``variance + variance_shift / N``.
    log_evidence, log_evidence_finite:
        ``log p(Y)`` at infinite width and to ``O(1/N)``.
    width:
        ``N``.
    """

    mean: Array
    variance: Array
    mean_shift: Array
    variance_shift: Array
    mean_finite: Array
    variance_finite: Array
    log_evidence: Array
    log_evidence_finite: Array
    width: float = eqx.field(static=True)


def _split(K, n):
    return K[:n, :n], K[n:, :n], K[n:, n:]


def _gp_mean(K, Y, T, n):
    Kxx, Ksx, _ = _split(K, n)
    return Ksx @ jnp.linalg.solve(Kxx + T * jnp.eye(n, dtype=K.dtype), Y)


def _gp_second(K, Y, T, n):
    Kxx, Ksx, Kss = _split(K, n)
    A = Kxx + T * jnp.eye(n, dtype=K.dtype)
    var = jnp.diagonal(Kss) - jnp.sum(Ksx * jnp.linalg.solve(A, Ksx.T).T, axis=1)
    m = Ksx @ jnp.linalg.solve(A, Y)
    return var + m**2


def _loglik(K, Y, T, n):
    A = K[:n, :n] + T * jnp.eye(n, dtype=K.dtype)
    _, logdet = jnp.linalg.slogdet(A)
    return -0.5 * Y @ jnp.linalg.solve(A, Y) - 0.5 * logdet - 0.5 * n * math.log(2 * math.pi)


def _first_order(g: Callable, K, shift, cov, dl):
    """``∂g·Δ + ½ ∂²g:V + ∂g·V·∂ℓ`` for ``g: (P, P) -> (m,)``."""
    J = jax.jacfwd(g)(K)
    H = jax.hessian(g)(K)
    return (jnp.einsum("mab,ab->m", J, shift) + 0.5 * jnp.einsum("mabcd,abcd->m", H, cov)
            + jnp.einsum("mab,abcd,cd->m", J, cov, dl))


def nlo_posterior(
    out: Float[ArrayLike, "P P"],
    out_shift: Float[ArrayLike, "P P"],
    out_cov: Float[ArrayLike, "P P P P"],
    Y_train: Float[ArrayLike, " n"],
    noise: ArrayLike,
    width: float,
) -> NLOPosterior:
    """The ``O(1/N)`` posterior from the output-kernel statistics of the joint inputs.

    Parameters
    ----------
    out, out_shift, out_cov:
        Leading-order output kernel ``K``, ``N (E K̂ - K)`` and ``N Cov(K̂_ab, K̂_cd)`` over
        the ``P = n + m`` joint inputs, training inputs first (e.g. ``FiniteWidth.out``,
        ``.out_shift``, ``.out_cov``).
    Y_train:
        ``(n,)`` targets (one output).
    noise:
        ``T > 0``.
    width:
        ``N``.
    """
    K = jnp.asarray(out)
    P = K.shape[0]
    Y = jnp.asarray(Y_train, K.dtype)
    n = Y.shape[0] if Y.ndim == 1 else -1
    if K.shape != (P, P) or jnp.shape(out_shift) != (P, P) or jnp.shape(out_cov) != (P,) * 4:
        raise FieldresInputError(
            f"out, out_shift, out_cov must be (P, P), (P, P), (P, P, P, P); got "
                         f"{K.shape}, {jnp.shape(out_shift)}, {jnp.shape(out_cov)}")
    if not 1 <= n < P:
        raise FieldresInputError(
            f"Y_train must be (n,) with 1 <= n < P = {P} (test points follow the "
                         f"training points), got shape {Y.shape}")
    T = float(noise)
    if not (math.isfinite(T) and T > 0):
        raise FieldresInputError(f"noise T must be a positive finite number, got {noise}")
    if not (math.isfinite(width) and width > 0):
        raise FieldresInputError(f"width must be positive, got {width}")
    shift = jnp.asarray(out_shift, K.dtype)
    cov = jnp.asarray(out_cov, K.dtype)

    def loglik(Kj):
        return _loglik(Kj, Y, T, n)

    dl = jax.grad(loglik)(K)
    d2l = jax.hessian(loglik)(K)
    mean = _gp_mean(K, Y, T, n)
    second = _gp_second(K, Y, T, n)
    c_mean = _first_order(lambda Kj: _gp_mean(Kj, Y, T, n), K, shift, cov, dl)
    c_second = _first_order(lambda Kj: _gp_second(Kj, Y, T, n), K, shift, cov, dl)
    var = second - mean**2
    c_var = c_second - 2.0 * mean * c_mean
    ll = loglik(K)
    c_ll = (jnp.sum(dl * shift)
            + 0.5 * jnp.einsum("abcd,abcd->", d2l + dl[:, :, None, None] * dl[None, None], cov))
    N = float(width)
    return NLOPosterior(mean, var, c_mean, c_var, mean + c_mean / N, var + c_var / N, ll,
                        ll + c_ll / N, N)


def finite_width_posterior(
    X_train: Float[ArrayLike, "n d"],
    Y_train: Float[ArrayLike, " n"],
    X_test: Float[ArrayLike, "m d"],
    *,
    rho: float,
    depth: int,
    noise: float,
    width: float,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    residual: bool = True,
) -> NLOPosterior:
    """Perturbative finite-width posterior of the ResNet (or FFNet) for ``n + m <= 4`` inputs.

    Builds ``K0 = input_kernel([X_train; X_test])`` and the output-kernel statistics with
    :func:`fieldres.finite_width.finite_width`, then applies :func:`nlo_posterior`.
    """
    from ..finite_width import finite_width
    from ..kernels.recursion import input_kernel

    X = np.concatenate([np.asarray(X_train, float), np.asarray(X_test, float)])
    if X.shape[0] > 4:
        raise FieldresInputError(f"the finite-width statistics cover at most 4 inputs; got "
                         f"n_train + n_test = {X.shape[0]}")
    K0 = input_kernel(X, hyper.sigma_w2_in, hyper.sigma_b2_in)
    fw = finite_width(K0, rho, depth, hyper, activation, residual=residual)
    return nlo_posterior(fw.out, fw.out_shift, fw.out_cov, Y_train, noise, width)
