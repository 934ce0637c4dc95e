# jaxtyping dimension strings ("Lp1 Lp1") are not forward references:
# ruff: noqa: F722
r"""The single-input (``P = 1``) :math:`1/N` theory of the ResNet's kernel statistics.

The derivation is in the package docstring (:mod:`fieldres.finite_width`): the linear
response :math:`R = (1 - \mathcal G)^{-1}` of the empirical kernels to the intrinsic
cross-layer covariances :math:`\Xi`, and the mean shift :math:`\Delta = R s`. Every
cross-layer moment is one 2-D Gauss--Hermite integral, :func:`gauss_cov_pair`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError, check_depth, check_finite, check_nonnegative
from ..kernels.activations import Activation, get_activation
from ..kernels.quadrature import gauss_hermite
from ..kernels.recursion import Hyper, output_kernel, propagate
from ._piecewise import _pl_single_moments, piecewise_slope
from .moments import _elementwise_derivative

__all__ = ["SingleInputNLO", "finite_width_single", "gauss_cov_pair"]


class SingleInputNLO(eqx.Module):
    """Leading order and :math:`O(1/N)` coefficients of the single-input kernel statistics.

    All ``*_cov``, ``*_var`` and ``*_shift`` entries are multiplied by the width ``N``
    (they are the coefficients of ``1/N``). Layers are indexed ``l = 0..L``.

    Attributes
    ----------
    K:
        ``(L+1,)`` leading-order pre-activation kernels :math:`K^{(l)}`.
    C:
        ``(L+1,)`` leading-order :math:`C_\\phi(K^{(l)})`.
    C_cov:
        ``(L+1, L+1)`` :math:`N\\,\\mathrm{Cov}(\\hat C^{(k)}, \\hat C^{(k')})`.
    K_var:
        ``(L+1,)`` :math:`N\\,\\mathrm{Var}\\,\\hat K^{(l)}`.
    C_shift:
        ``(L+1,)`` :math:`\\Delta^{(l)} = N(\\mathbb E\\hat C^{(l)} - C_\\phi(K^{(l)}))`.
    K_shift:
        ``(L+1,)`` :math:`N(\\mathbb E\\hat K^{(l)} - K^{(l)}) = a\\sum_{m<l}\\Delta^{(m)}`.
    out:
        Leading-order output kernel :math:`\\sigma^2_{w,out} C_\\phi(K^{(L)}) + \\sigma^2_{b,out}`.
    out_var:
        :math:`N\\,\\mathrm{Var}` of the output kernel, :math:`\\sigma^4_{w,out}` ``C_cov[L, L]``.
    out_shift:
        :math:`N(\\mathbb E\\hat K^{out} - K^{out}) = \\sigma^2_{w,out}\\Delta^{(L)}`.
    Xi:
        ``(L+1, L+1)`` intrinsic covariances :math:`\\Xi^{(j,k)}` (zeroed off the diagonal
        when ``cross_layer=False``).
    R:
        ``(L+1, L+1)`` linear-response propagator :math:`(1 - \\mathcal G)^{-1}`.
    """

    K: Float[Array, " Lp1"]
    C: Float[Array, " Lp1"]
    C_cov: Float[Array, "Lp1 Lp1"]
    K_var: Float[Array, " Lp1"]
    C_shift: Float[Array, " Lp1"]
    K_shift: Float[Array, " Lp1"]
    out: Float[Array, ""]
    out_var: Float[Array, ""]
    out_shift: Float[Array, ""]
    Xi: Float[Array, "Lp1 Lp1"]
    R: Float[Array, "Lp1 Lp1"]

    @property
    def C_var(self) -> Float[Array, " Lp1"]:
        """``(L+1,)`` :math:`N\\,\\mathrm{Var}\\,\\hat C^{(l)}` (diagonal of ``C_cov``)."""
        return jnp.diagonal(self.C_cov)


def gauss_cov_pair(
    f: Callable, g: Callable, k1: ArrayLike, d: ArrayLike, degree: int = 128
) -> Array:
    """``Cov[f(x), g(x + sqrt(d) v)]`` with ``x ~ N(0, k1)``, ``v ~ N(0, 1)`` independent.

    This is the covariance of two functions of a bivariate centred Gaussian ``(x, y)`` with
    ``Var x = k1``, ``Var y = k1 + d``, ``E[x y] = k1`` (two layers of one neuron's random
    walk). Tensor-product Gauss--Hermite rule of ``degree`` nodes per dimension in the
    independent variables; the means are subtracted before the product (no cancellation).
    Elementwise over the broadcast shape of ``k1`` and ``d`` (memory ``O(size * degree^2)``).
    """
    x, w = (jnp.asarray(a) for a in gauss_hermite(degree))
    k1, d = jnp.broadcast_arrays(jnp.asarray(k1), jnp.asarray(d))
    xs = jnp.sqrt(k1)[..., None] * x  # (..., n)
    ys = xs[..., :, None] + jnp.sqrt(jnp.maximum(d, 0.0))[..., None, None] * x  # (..., n, n)
    Tg = jnp.sum(w * g(ys), axis=-1)  # (T_d g)(x) at the nodes
    fx = f(xs)
    fx = fx - jnp.sum(w * fx, axis=-1, keepdims=True)
    Tg = Tg - jnp.sum(w * Tg, axis=-1, keepdims=True)
    return jnp.sum(w * fx * Tg, axis=-1)


def _pair_matrix(f, g, K, degree):
    """``M[j, k] = Cov[f(h^(j)), g(h^(k))]`` for ``j <= k`` (zero for ``j > k``)."""
    n = K.shape[0]
    j, k = jnp.meshgrid(jnp.arange(n), jnp.arange(n), indexing="ij")
    upper = j <= k
    D = jnp.where(upper, K[k] - K[j], 0.0)

    def row(args):
        kj, drow = args
        return gauss_cov_pair(f, g, kj, drow, degree)

    M = jax.lax.map(row, (K, D))
    return jnp.where(upper, M, 0.0)


@eqx.filter_jit
def _single(k0, rho, hyper, act: Activation, depth: int, degree: int, cross_layer: bool):
    a = rho**2 * hyper.sigma_w2

    _, Ktraj = propagate(k0.reshape(1, 1), rho, hyper, act, depth)  # the one LO recursion
    K = Ktraj[:, 0, 0]  # (L+1,)
    n = depth + 1

    C0 = jax.vmap(act.variance)(K)
    C1 = jax.vmap(jax.grad(act.variance))(K)
    C2 = jax.vmap(jax.grad(jax.grad(act.variance)))(K)

    def phi2(x):
        return act.fn(x) ** 2

    phi2_dd = _elementwise_derivative(phi2, 2)
    slope = piecewise_slope(act)
    if slope is not None:  # ReLU, leaky ReLU: arc-cosine closed forms (_piecewise.py)
        U, c, Y = _pl_single_moments(K, slope)

    # Intrinsic covariances Xi[j, k] = Cov[phi^2(h^(j)), phi^2(h^(k))] (symmetric).
    if slope is None:
        U = _pair_matrix(phi2, phi2, K, degree)
    Xi = U + U.T - jnp.diag(jnp.diagonal(U))
    if not cross_layer:
        Xi = jnp.diag(jnp.diagonal(Xi))

    # Propagator R = (1 - G)^-1, G[k, j] = a C'(K^(k)) for j < k.
    strict_lower = jnp.tril(jnp.ones((n, n)), -1)
    Gmat = a * C1[:, None] * strict_lower
    eye = jnp.eye(n)
    R = jax.scipy.linalg.solve_triangular(eye - Gmat, eye, lower=True)
    C_cov = R @ Xi @ R.T

    # Pre-activation kernel: r[l, j] = a sum_{j <= m < l} R[m, j];  c_j = Cov[phi^2(x), x^2].
    r = a * strict_lower @ R  # (strict_lower @ R)[l, j] = sum_{m<l} R[m, j]
    if slope is None:
        c = gauss_cov_pair(phi2, lambda y: y**2, K, 0.0, degree)
    K_var = jnp.einsum("lj,jk,lk->l", r, Xi, r) + 2.0 * r @ c + 2.0 * K**2

    # Mean shift Delta = R s.
    if slope is None:
        Y = 0.5 * _pair_matrix(phi2, phi2_dd, K, degree)  # Y[j, l], j <= l
    if not cross_layer:
        Y = jnp.diag(jnp.diagonal(Y))
    acc_var = jnp.einsum("lm,mk,lk->l", strict_lower, C_cov, strict_lower)  # Var sum_{m<l}
    RY = R @ Y  # RY[m, l] = sum_{j <= m} R[m, j] Y[j, l]
    src = 0.5 * a**2 * C2 * acc_var + a * jnp.sum(strict_lower.T * RY, axis=0)
    C_shift = R @ src
    K_shift = a * strict_lower @ C_shift

    wo = hyper.sigma_w2_out
    return SingleInputNLO(
        K=K,
        C=C0,
        C_cov=C_cov,
        K_var=K_var,
        C_shift=C_shift,
        K_shift=K_shift,
        out=output_kernel(Ktraj[-1], hyper, act)[0, 0],
        out_var=wo**2 * C_cov[-1, -1],
        out_shift=wo * C_shift[-1],
        Xi=Xi,
        R=R,
    )


def finite_width_single(
    k0: ArrayLike,
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    cross_layer: bool = True,
    degree: int = 128,
) -> SingleInputNLO:
    """The :math:`1/N` kernel covariance and mean shift of a ResNet for one input.

    Parameters
    ----------
    k0:
        Input kernel :math:`K^{(0)} > 0` (scalar, or a ``(1, 1)`` array).
    rho:
        Residual scaling :math:`\\rho \\ge 0`.
    depth:
        Number of residual layers ``L >= 1`` (static Python int).
    hyper:
        :class:`~fieldres.kernels.recursion.Hyper` variances (default ``Hyper()``); ``sigma_w2``,
        ``sigma_b2`` and the output ones are used, the input-layer ones are not (``k0`` is
        the input kernel).
    activation:
        ``"erf"``, ``"tanh"``, an :class:`Activation` or a smooth callable (Gauss--Hermite
        integrals), or ``"relu"`` / ``"leaky_relu:SLOPE"`` (arc-cosine closed forms, exact).
    cross_layer:
        Keep the cross-layer intrinsic covariances :math:`\\Xi^{(j,k)}, j\\ne k` (and the
        cross-layer moments of the mean shift). ``False`` is the (wrong) approximation that
        treats the noise of different layers as independent; it is provided to show that the
        terms matter (THEORY §4).
    degree:
        Gauss--Hermite nodes per dimension of the 2-D rule.

    Returns
    -------
    SingleInputNLO
        Leading-order kernels and the :math:`N`-scaled covariances and mean shifts. For the
        reference case of THEORY §5 (erf, :math:`\\sigma_w^2 = 1.25, \\sigma_b^2 = 0.05,
        \\rho = 0.3, K^{(0)} = 0.5, L = 10`): ``C[-1] = 0.462566``, ``C_var[-1] = 0.15901``,
        ``C_shift[-1] = -0.1496``, ``K[-1] = 0.989557``, ``K_var[-1] = 2.7575``,
        ``K_shift[-1] = -0.0836``.

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> import fieldres
    >>> from fieldres.finite_width import finite_width_single
    >>> r = finite_width_single(0.5, 0.3, 10, fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.05))
    >>> round(float(r.C_var[-1]), 5), round(float(r.K_var[-1]), 4)
    (0.15901, 2.7575)
    """
    k0 = jnp.asarray(k0)
    if k0.size != 1:
        raise FieldresInputError(
            f"finite_width_single needs a single input kernel, got shape {k0.shape}"
        )
    k0 = k0.reshape(())
    if not jnp.issubdtype(k0.dtype, jnp.floating):
        k0 = k0.astype(jnp.result_type(float))
    check_finite("k0", k0)
    if not bool(k0 > 0):
        raise FieldresInputError(f"k0 must be positive, got {float(k0)}")
    check_finite("rho", rho)
    check_nonnegative("rho (the residual scaling)", rho)
    check_depth(depth)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be a Python int, got {type(depth).__name__}")
    if int(degree) < 8:
        raise FieldresInputError(f"degree must be >= 8, got {degree}")
    act = get_activation(activation)
    if hyper is None:
        hyper = Hyper()
    dt = k0.dtype
    rho = jnp.asarray(rho, dt)
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    return _single(k0, rho, hyper, act, int(depth), int(degree), bool(cross_layer))


# ==========================================================================================
