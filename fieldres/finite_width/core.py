# jaxtyping dimension strings ("Lp1 Lp1") are not forward references:
# ruff: noqa: F722
r"""Finite width: the :math:`1/N` (next-to-leading-order) theory of the kernel statistics.

At finite width ``N`` the empirical kernels of a ResNet (THEORY §1, §4)

.. math::

    \hat C^{(l)} = \frac1N \sum_i \phi(h^{(l)}_i)^2, \qquad
    \hat K^{(l)} = \frac1N \sum_i (h^{(l)}_i)^2

fluctuate from network to network. This module computes, for a **single input** (``P = 1``),
the two :math:`O(1/N)` quantities that describe them (Fischer, Dahmen, Helias,
*Field theory for optimal signal propagation in ResNets*, arXiv:2305.07715, Sec. 3 and
App.; ``THEORY.md`` §4, reference numbers §5):

* the covariance :math:`N\,\mathrm{Cov}(\hat C^{(k)}, \hat C^{(k')})` for all layers, the
  variance :math:`N\,\mathrm{Var}\,\hat K^{(l)}` and that of the output kernel
  :math:`\sigma^2_{w,\mathrm{out}} \hat C^{(L)} + \sigma^2_{b,\mathrm{out}}`;
* the mean shift :math:`\Delta^{(l)} = N(\mathbb E\hat C^{(l)} - C_\phi(K^{(l)}))` and
  :math:`N(\mathbb E\hat K^{(l)} - K^{(l)})`.

Notation: :math:`a = \rho^2\sigma_w^2`, :math:`b = \rho^2\sigma_b^2`, leading-order kernel
:math:`K^{(l+1)} = K^{(l)} + a C(K^{(l)}) + b`, :math:`C(K) = \mathbb E_{h\sim\mathcal N(0,K)}
\phi(h)^2`, :math:`G^{(k)} = C'(K^{(k)})`. At leading order one neuron's trajectory
:math:`(h^{(0)},\dots,h^{(L)})` is a Gaussian random walk, :math:`\mathbb E[h^{(j)} h^{(k)}] =
K^{(\min(j,k))}`.

**Kernel covariance (linear response).** With the intrinsic cross-layer covariances
:math:`\Xi^{(j,k)} = \mathrm{Cov}[\phi^2(h^{(j)}), \phi^2(h^{(k)})]` and the block lower
triangular coupling :math:`\mathcal G^{(k,j)} = a G^{(k)}` (:math:`j < k`),

.. math::

    \delta\hat C = \varepsilon + \mathcal G\,\delta\hat C, \qquad
    R = (1 - \mathcal G)^{-1}, \qquad N\,\mathrm{Cov}(\hat C, \hat C) = R\,\Xi\,R^T .

For the pre-activation kernel the observable at layer ``l`` is :math:`h^2` whose mean
responds to the accumulated kernel with slope one:
:math:`\delta\hat K^{(l)} = \varepsilon_K^{(l)} + a\sum_{m<l}\delta\hat C^{(m)}`, hence

.. math::

    N\,\mathrm{Var}\,\hat K^{(l)} = r^{(l)T}\Xi\,r^{(l)} + 2\, r^{(l)T} c + 2 (K^{(l)})^2,
    \qquad r^{(l)}_j = a \sum_{j\le m<l} R^{(m,j)},
    \qquad c_j = \mathrm{Cov}[\phi^2(h^{(j)}), (h^{(j)})^2],

using :math:`\mathrm{Cov}[\phi^2(h^{(j)}), (h^{(l)})^2] = \mathrm{Cov}[\phi^2(h^{(j)}),
(h^{(j)})^2]` for :math:`j \le l` (the later increments are independent and centred) and
:math:`\mathrm{Var}[(h^{(l)})^2] = 2 (K^{(l)})^2`. Equivalently (exact martingale
decomposition, the check used in the tests): :math:`\hat K^{(l)} = \hat K^{(0)} + \sum_{m<l}
(a\hat C^{(m)} + b) + \sum_{m<l} M_m` where the martingale increments :math:`M_m` (cross term
and the centred square of the Gaussian increment) have conditional variance
:math:`(4\rho^2 K^{(m)} s_m + 2\rho^4 s_m^2)/N`, :math:`s_m = \sigma_w^2 C(K^{(m)}) + \sigma_b^2`,
and are correlated with the *later* :math:`\hat C` (the same neurons carry the noise).

**Mean shift.** Expanding the exact conditional recursion
:math:`\mathbb E[\langle F\rangle_{m+1}\,|\,\text{layer } m] = \langle T_{S^{(m)}} F\rangle_m`
(:math:`T_S`: Gaussian smoothing with variance :math:`S^{(m)} = a\hat C^{(m)} + b`) to second
order in :math:`\delta\hat C^{(m)}` at every layer, with the heat equation
:math:`\partial_S T_S F = \tfrac12 T_S F''`, gives :math:`\Delta = R\,s` with the source

.. math::

    s^{(l)} = \tfrac12 a^2 C''(K^{(l)})\, N\,\mathrm{Var}\Bigl(\sum_{m<l}\hat C^{(m)}\Bigr)
      + a \sum_{m<l} \sum_{j \le m} R^{(m,j)}\,
        \tfrac12\mathrm{Cov}[\phi^2(h^{(j)}), (\phi^2)''(h^{(l)})],

which is THEORY §4's recursion with the diagonal and the :math:`a C''\sum_{j<m}
N\mathrm{Cov}(\hat C^{(m)}, \hat C^{(j)})` terms combined into the variance of the
accumulated kernel. Exactly, :math:`\mathbb E\hat K^{(l)} = K^{(0)} + \sum_{m<l}(a\,
\mathbb E\hat C^{(m)} + b)`, so :math:`N(\mathbb E\hat K^{(l)} - K^{(l)}) = a\sum_{m<l}
\Delta^{(m)}`. All results are :math:`O(1)` coefficients of :math:`1/N`; the corrections to
them are :math:`O(1/N)`.

**Gaussian integrals.** Every cross-layer moment is a 2-D integral
:math:`\mathrm{Cov}[f(x), g(x + \sqrt{D} v)]`, :math:`x\sim\mathcal N(0, K^{(j)})`,
:math:`D = K^{(k)} - K^{(j)} \ge 0`, computed with a tensor-product probabilists'
Gauss–Hermite rule in the independent variables :math:`(x/\sqrt{K^{(j)}}, v)` (stable: no
Cholesky factor of a nearly singular matrix) and with the means subtracted before the
product. For smooth activations (erf, tanh) the default ``degree = 128`` gives ~1e-12
(tested against ``degree = 256``). The activation enters only through ``activation.fn``
(derivatives by :func:`jax.grad`) and ``activation.variance`` (:math:`C, C', C''`); the
quadrature assumes a smooth :math:`\phi` (not ReLU, whose :math:`(\phi^2)''` jumps).

**Several inputs, feed-forward nets, outputs, response.** :func:`finite_width` is the
general-``P`` theory (every entry for ``P <= 4``, or up to four selected inputs of a larger
kernel), for the ResNet and the feed-forward net; for ``P = 1`` it reproduces
:func:`finite_width_single`. Its default *walk* method (``P <= 2``) needs no layer-pair
integrals: the cross-layer moments are accumulated in one forward pass along one neuron's
random walk, a density-weighted conditional mean convolved from layer to layer on a grid
(FFT), ``O(L)``; the *pairs* method (any ``P``) integrates every pair of layers, ``O(L^2)``,
and also returns covariances between different layers. The conditional
Gaussianity of the outputs turns the output-kernel covariance into the output prior's
fourth cumulant (:meth:`FiniteWidth.output_prior`). :func:`chi_out_nlo` differentiates the
NLO mean output kernel with respect to :math:`K^{(0)}` and :func:`rho_star_width` gives
:math:`\rho^*(N)`. :func:`simulate_nlo` measures the same statistics in finite networks.
The derivation for general ``P`` is in ``docs/finite_width.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_depth, check_finite, check_nonnegative
from ..kernels.activations import Activation, get_activation
from ..kernels.quadrature import gauss_hermite, gauss_legendre, gauss_trapezoid
from ..kernels.recursion import Hyper

__all__ = [
    "FiniteWidth",
    "SingleInputNLO",
    "WidthOptimum",
    "SimulatedNLO",
    "bvn_excess",
    "chi_out_nlo",
    "rho_star_width",
    "simulate_nlo",
    "finite_width",
    "finite_width_single",
    "gauss_cov_pair",
]


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



def _elementwise_derivative(f: Callable, order: int) -> Callable:
    """``order``-th derivative of an elementwise function, applied to arrays."""
    for _ in range(order):
        f = (lambda g: lambda x: jax.grad(lambda y: jnp.sum(g(y)))(x))(f)
    return f


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
    b = rho**2 * hyper.sigma_b2

    def step(K, _):
        K_new = K + a * act.variance(K) + b
        return K_new, K_new

    _, Ks = jax.lax.scan(step, k0, None, length=depth)
    K = jnp.concatenate([k0[None], Ks])  # (L+1,)
    n = depth + 1

    C0 = jax.vmap(act.variance)(K)
    C1 = jax.vmap(jax.grad(act.variance))(K)
    C2 = jax.vmap(jax.grad(jax.grad(act.variance)))(K)

    def phi2(x):
        return act.fn(x) ** 2

    phi2_dd = _elementwise_derivative(phi2, 2)

    # Intrinsic covariances Xi[j, k] = Cov[phi^2(h^(j)), phi^2(h^(k))] (symmetric).
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
    c = gauss_cov_pair(phi2, lambda y: y**2, K, 0.0, degree)
    K_var = jnp.einsum("lj,jk,lk->l", r, Xi, r) + 2.0 * r @ c + 2.0 * K**2

    # Mean shift Delta = R s.
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
        out=wo * C0[-1] + hyper.sigma_b2_out,
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
        A smooth activation: ``"erf"``, ``"tanh"``, an :class:`Activation` or a callable.
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
    >>> from fieldres.finite_width.core import finite_width_single
    >>> r = finite_width_single(0.5, 0.3, 10, fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.05))
    >>> round(float(r.C_var[-1]), 5), round(float(r.K_var[-1]), 4)
    (0.15901, 2.7575)
    """
    k0 = jnp.asarray(k0)
    if k0.size != 1:
        raise ValueError(f"finite_width_single needs a single input kernel, got shape {k0.shape}")
    k0 = k0.reshape(())
    if not jnp.issubdtype(k0.dtype, jnp.floating):
        k0 = k0.astype(jnp.result_type(float))
    check_finite("k0", k0)
    if not bool(k0 > 0):
        raise ValueError(f"k0 must be positive, got {float(k0)}")
    check_finite("rho", rho)
    check_nonnegative("rho (the residual scaling)", rho)
    check_depth(depth)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be a Python int, got {type(depth).__name__}")
    if int(degree) < 8:
        raise ValueError(f"degree must be >= 8, got {degree}")
    act = get_activation(activation)
    if hyper is None:
        hyper = Hyper()
    dt = k0.dtype
    rho = jnp.asarray(rho, dt)
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    return _single(k0, rho, hyper, act, int(depth), int(degree), bool(cross_layer))


# ==========================================================================================
# General P: the 1/N theory for several inputs, ResNet and feed-forward net
# ==========================================================================================
#
# Layout. Kernels are P x P matrices; linear maps on (symmetric) kernels are P^2 x P^2
# matrices acting on vec(E) (row-major), and covariances between kernel entries are tensors
# with two symmetric index pairs. Using the full P^2 layout (rather than the P(P+1)/2 unique
# entries) removes every multiplicity factor of symmetric-matrix derivatives: the Jacobian
# and Hessian of C_phi are those of K -> C_phi((K + K^T) / 2), which act correctly on
# symmetric directions, and all sums over index pairs run over ordered pairs.
#
# Gaussian integrals. Every intrinsic (one-neuron) moment is a covariance between a
# function of x = (h^(j)_k, h^(j)_l) and one of y = (h^(m)_a, h^(m)_b), j <= m, a 4-D
# centred Gaussian with E[x y^T] = K^(j) (the later increments are independent). A
# lower-triangular factor F of its covariance (zero pivots allowed: repeated inputs, equal
# layers) conditions y on x exactly: x = F11 z, y = F21 z + F22 w. The outer integral over
# z in R^2 is a tensor trapezoid rule (see kernels.quadrature.gauss_trapezoid: plain
# Gauss--Hermite converges
# slowly once K^(l) exceeds ~1); the inner one over w is
#   * for erf, in closed form: E[erf(y_1) erf(y_2)] for y ~ N(m, S) is a bivariate normal
#     probability (erf(y) = E_zeta sign(sqrt2 y - zeta)), whose excess over the product of
#     the marginals is a smooth 1-D integral over theta in [0, arcsin r] (Gauss--Legendre),
#     and whose second derivatives with respect to m are elementary;
#   * for any other smooth activation, a 2-D trapezoid rule.




def _std_normal_pdf(x):
    return jnp.exp(-0.5 * x * x) / jnp.sqrt(2.0 * jnp.pi)


def _std_normal_cdf(x):
    return 0.5 * jax.scipy.special.erfc(-x / jnp.sqrt(2.0))


def bvn_excess(u1: ArrayLike, u2: ArrayLike, r: ArrayLike, n_theta: int = 32) -> Array:
    r"""``Phi_2(u1, u2; r) - Phi(u1) Phi(u2)`` for the standard bivariate normal CDF.

    .. math::

        \Phi_2(u_1, u_2; r) - \Phi(u_1)\Phi(u_2) = \frac{1}{2\pi}
        \int_0^{\arcsin r} \exp\Bigl(-\frac{u_1^2 + u_2^2 - 2u_1u_2\sin\theta}
        {2\cos^2\theta}\Bigr)\,d\theta

    (Sheppard's formula in the angle parametrisation of Drezner & Wesolowsky), evaluated
    with ``n_theta``-point Gauss--Legendre. The integrand is analytic; for ``|r| <= 0.95``
    32 nodes give ~1e-14. Elementwise over broadcast arrays.
    """
    x, w = (jnp.asarray(a) for a in gauss_legendre(n_theta))
    u1, u2, r = (jnp.asarray(a)[..., None] for a in (u1, u2, r))
    t = jnp.arcsin(jnp.clip(r, -1.0, 1.0))
    th = 0.5 * t * (1.0 + x)
    s, c = jnp.sin(th), jnp.cos(th)
    f = jnp.exp(-(u1 * u1 + u2 * u2 - 2.0 * u1 * u2 * s) / (2.0 * c * c))
    return (0.5 * t[..., 0]) * jnp.sum(w * f, axis=-1) / (2.0 * jnp.pi)


def _erf_inner(m, S, n_theta):
    """``E[erf(y1) erf(y2)]`` and its Hessian in ``m`` for ``y ~ N(m, S)``.

    ``m``: ``(..., 2)``; ``S``: ``(2, 2)`` (broadcast). Returns value ``(...)`` and Hessian
    ``(..., 2, 2)``. With independent ``zeta_i ~ N(0, 1)``, ``erf(y) = E sign(sqrt2 y - zeta)``,
    so the value is ``E[sign U1 sign U2]`` with ``U ~ N(sqrt2 m, 2S + I)``:
    ``(2Phi(u1) - 1)(2Phi(u2) - 1) + 4 (Phi_2(u1, u2; r) - Phi(u1)Phi(u2))``.
    """
    s1 = jnp.sqrt(1.0 + 2.0 * S[..., 0, 0])
    s2 = jnp.sqrt(1.0 + 2.0 * S[..., 1, 1])
    r = 2.0 * S[..., 0, 1] / (s1 * s2)
    c1, c2 = jnp.sqrt(2.0) / s1, jnp.sqrt(2.0) / s2
    u1, u2 = c1 * m[..., 0], c2 * m[..., 1]
    e1 = jax.scipy.special.erf(u1 / jnp.sqrt(2.0))
    e2 = jax.scipy.special.erf(u2 / jnp.sqrt(2.0))
    val = e1 * e2 + 4.0 * bvn_excess(u1, u2, r, n_theta)
    q = jnp.sqrt(1.0 - r * r)
    w21 = (u2 - r * u1) / q
    w12 = (u1 - r * u2) / q
    p1, p2 = _std_normal_pdf(u1), _std_normal_pdf(u2)
    h11 = 2.0 * u1 * p1 * (1.0 - 2.0 * _std_normal_cdf(w21)) - 4.0 * r * p1 * _std_normal_pdf(
        w21) / q
    h22 = 2.0 * u2 * p2 * (1.0 - 2.0 * _std_normal_cdf(w12)) - 4.0 * r * p2 * _std_normal_pdf(
        w12) / q
    h12 = 4.0 * p1 * _std_normal_pdf(w21) / q
    H = jnp.stack([jnp.stack([c1 * c1 * h11, c1 * c2 * h12], -1),
                   jnp.stack([c1 * c2 * h12, c2 * c2 * h22], -1)], -2)
    return val, H


def _generic_inner(phi_derivs, m, F22, z, w):
    """``E[phi(y1) phi(y2)]`` and ``E[d_a d_b (phi(y1) phi(y2))]``, ``y = m + F22 v``.

    ``phi_derivs = (phi, phi', phi'')``; ``z, w``: 2-D rule for N(0, I): nodes ``(n, 2)`` and
    weights ``(n,)``; ``m``: ``(..., 2)``; ``F22``: ``(2, 2)``.
    """
    y = m[..., None, :] + z @ F22.T  # (..., n, 2)
    f0, f1, f2 = phi_derivs
    a0, a1, a2 = f0(y[..., 0]), f1(y[..., 0]), f2(y[..., 0])
    b0, b1, b2 = f0(y[..., 1]), f1(y[..., 1]), f2(y[..., 1])
    val = jnp.sum(w * a0 * b0, -1)
    h11 = jnp.sum(w * a2 * b0, -1)
    h12 = jnp.sum(w * a1 * b1, -1)
    h22 = jnp.sum(w * a0 * b2, -1)
    H = jnp.stack([jnp.stack([h11, h12], -1), jnp.stack([h12, h22], -1)], -2)
    return val, H


def _psd_factor(S: Array, rtol: float = 1e-12) -> Array:
    """Lower-triangular ``F`` with ``F F^T = S`` for a PSD ``S``; zero pivots give zero columns.

    The pivoting-free Cholesky recursion with pivots below ``rtol * max(diag)`` treated as
    exactly zero (repeated inputs, equal layers). Safe ``sqrt``/division under autodiff.
    """
    n = S.shape[-1]
    tol = rtol * jnp.max(jnp.diagonal(S))
    F = jnp.zeros_like(S)
    for k in range(n):
        d = S[k, k] - jnp.sum(F[k, :k] ** 2)
        ok = d > tol
        dk = jnp.sqrt(jnp.where(ok, d, 1.0))
        col = (S[k + 1:, k] - F[k + 1:, :k] @ F[k, :k]) / dk
        F = F.at[k, k].set(jnp.where(ok, dk, 0.0))
        F = F.at[k + 1:, k].set(jnp.where(ok, col, 0.0))
    return F


def _unique_entries(P: int) -> list[tuple[int, int]]:
    """Upper-triangle index pairs ``(a, b)``, ``a <= b``, in row-major order."""
    return [(a, b) for a in range(P) for b in range(a, P)]


def _element_moments(Sig, erf_closed, phi_derivs, zo, wo, zi, wi, n_theta):
    """Intrinsic moments of one 4-D Gaussian ``(x1, x2, y1, y2)`` with covariance ``Sig``.

    Returns ``(cCC, cKC, cCK, Y)``: ``Cov[phi phi(x), phi phi(y)]``, ``Cov[x1 x2, phi phi(y)]``,
    ``Cov[phi phi(x), y1 y2]`` and ``Cov[phi phi(x), d_a d_b phi phi(y)]`` (2 x 2).
    """
    F = _psd_factor(Sig)
    x = zo @ F[:2, :2].T  # (n, 2)
    m = zo @ F[2:, :2].T
    F22 = F[2:, 2:]
    S = F22 @ F22.T
    phi = phi_derivs[0]
    fC = phi(x[:, 0]) * phi(x[:, 1])
    fK = x[:, 0] * x[:, 1]
    if erf_closed:
        gC, H = _erf_inner(m, S, n_theta)
    else:
        gC, H = _generic_inner(phi_derivs, m, F22, zi, wi)
    gK = m[:, 0] * m[:, 1] + S[0, 1]

    def centred(v):
        return v - jnp.sum(wo * v, 0)

    fC, fK, gC, gK = centred(fC), centred(fK), centred(gC), centred(gK)
    H = H - jnp.einsum("n,nab->ab", wo, H)
    cCC = jnp.sum(wo * fC * gC)
    cKC = jnp.sum(wo * fK * gC)
    cCK = jnp.sum(wo * fC * gK)
    Y = jnp.einsum("n,n,nab->ab", wo, fC, H)
    return cCC, cKC, cCK, Y


def _elements(depth: int, P: int, pairs_mode: str):
    """Static index arrays of the intrinsic moments to compute.

    ``pairs_mode``: ``"all"`` (every layer pair ``j <= m``, ResNet) or ``"diag"`` (``j = m``).
    Each element is (j, m, k, l, a, b): ``x = (h^(j)_k, h^(j)_l)``, ``y = (h^(m)_a, h^(m)_b)``.
    """
    ent = _unique_entries(P)
    n = depth + 1
    rows = []
    for m in range(n):
        js = range(m + 1) if pairs_mode == "all" else (m,)
        for j in js:
            for d, (k, l) in enumerate(ent):
                for u, (a, b) in enumerate(ent):
                    rows.append((j, m, d, u, k, l, a, b))
    return np.asarray(rows, dtype=np.int32).reshape(-1, 8)


def _intrinsic(Ks, act, erf_closed, pairs_mode, degree, inner_degree, n_theta, block):
    """All intrinsic moments; returns full tensors ``(n, n, P, P, P, P)`` and the Y elements."""
    n, P = Ks.shape[0], Ks.shape[1]
    el = _elements(n - 1, P, pairs_mode)
    j, m, d, u, k, l, a, b = (jnp.asarray(el[:, i]) for i in range(8))
    idx = jnp.stack([k, l, a, b], 1)  # (E, 4)
    Kj = Ks[j][jnp.arange(len(el))[:, None, None], idx[:, :, None], idx[:, None, :]]
    Km = Ks[m][jnp.arange(len(el))[:, None, None], idx[:, :, None], idx[:, None, :]]
    yy = np.zeros((4, 4), bool)
    yy[2:, 2:] = True
    Sig = jnp.where(jnp.asarray(yy), Km, Kj)

    xh, wh = gauss_trapezoid(degree)
    zo = jnp.asarray(np.stack(np.meshgrid(xh, xh, indexing="ij"), -1).reshape(-1, 2))
    wo = jnp.asarray(np.outer(wh, wh).reshape(-1))
    # x = (h_k, h_k) (k = l) is a rank-one Gaussian: its second pivot is exactly zero, the
    # integrand does not depend on z_2, and a 1-D outer rule (z, 0) is exact.
    zo1 = jnp.asarray(np.stack([xh, np.zeros_like(xh)], -1))
    wo1 = jnp.asarray(wh)
    xi, wi_ = gauss_trapezoid(inner_degree)
    zi = jnp.asarray(np.stack(np.meshgrid(xi, xi, indexing="ij"), -1).reshape(-1, 2))
    wi = jnp.asarray(np.outer(wi_, wi_).reshape(-1))
    f0 = act.fn
    phi_derivs = (f0, _elementwise_derivative(f0, 1), _elementwise_derivative(f0, 2))

    def run(S_group, z_out, w_out, blk):
        def one(S):
            return _element_moments(S, erf_closed, phi_derivs, z_out, w_out, zi, wi, n_theta)

        E = S_group.shape[0]
        nb = -(-E // blk)
        pad = nb * blk - E
        eye = jnp.broadcast_to(jnp.eye(4, dtype=S_group.dtype), (pad, 4, 4))
        S_p = jnp.concatenate([S_group, eye])
        res = jax.lax.map(lambda S: jax.vmap(one)(S), S_p.reshape(nb, blk, 4, 4))
        return tuple(o.reshape((nb * blk,) + o.shape[2:])[:E] for o in res)

    rank1 = el[:, 4] == el[:, 5]
    groups = []
    for sel, z_out, w_out, blk in ((~rank1, zo, wo, block), (rank1, zo1, wo1, block * degree)):
        idx_g = np.nonzero(sel)[0]
        if idx_g.size:
            groups.append((idx_g, run(Sig[jnp.asarray(idx_g)], z_out, w_out,
                                      min(blk, int(idx_g.size)))))
    order = np.argsort(np.concatenate([g[0] for g in groups]))
    cCC, cKC, cCK, Y = (jnp.concatenate([g[1][i] for g in groups])[jnp.asarray(order)]
                        for i in range(4))

    # Scatter to full tensors, using the symmetries in (k, l), (a, b) and (j <-> m).
    def scatter(vals, swap_vals=None):
        T = jnp.zeros((n, n, P, P, P, P), Ks.dtype)
        for (kk, ll) in ((k, l), (l, k)):
            for (aa, bb) in ((a, b), (b, a)):
                T = T.at[j, m, kk, ll, aa, bb].set(vals)
        if swap_vals is not None:
            for (kk, ll) in ((k, l), (l, k)):
                for (aa, bb) in ((a, b), (b, a)):
                    T = T.at[m, j, aa, bb, kk, ll].set(swap_vals)
        return T

    Xi_CC = scatter(cCC, cCC)
    Xi_CK = scatter(cCK, cKC)  # Cov[phi phi(h^(p)), h h(h^(q))]
    return Xi_CC, Xi_CK, (el, Y)


def _isserlis_same(K):
    """Isserlis: ``Cov[h_k h_l, h_a h_b] = K_ka K_lb + K_kb K_la``, batched over leading axes."""
    return jnp.einsum("...ka,...lb->...klab", K, K) + jnp.einsum("...kb,...la->...klab", K, K)


def _isserlis(Ks, residual):
    """``Cov[h^(p)_k h^(p)_l, h^(q)_a h^(q)_b]`` for the one-neuron Gaussian trajectory."""
    n = Ks.shape[0]
    p, q = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    T = _isserlis_same(Ks[np.minimum(p, q)])  # Cov(h^(p), h^(q)) = K^(min(p, q))
    if not residual:
        T = T * jnp.asarray(p == q, Ks.dtype)[:, :, None, None, None, None]
    return T


def _to_big(T):
    """``(n, n, P, P, P, P)`` -> ``(n P^2, n P^2)``."""
    n, P = T.shape[0], T.shape[2]
    return jnp.transpose(T, (0, 2, 3, 1, 4, 5)).reshape(n * P * P, n * P * P)


def _from_big(M, n, P):
    return jnp.transpose(M.reshape(n, P, P, n, P, P), (0, 3, 1, 2, 4, 5))


class FiniteWidth(eqx.Module):
    r"""Leading order and :math:`O(1/N)` coefficients of the kernel statistics, ``P`` inputs.

    Covariances and shifts are multiplied by the width ``N``. Layers ``l = 0..L``.
    Covariance tensors are indexed ``[l, a, b, c, d]`` =
    :math:`N\,\mathrm{Cov}(\hat X^{(l)}_{ab}, \hat Y^{(l)}_{cd})` (same layer), and the
    cross-layer tables ``[l, l', a, b, c, d]`` =
    :math:`N\,\mathrm{Cov}(\hat X^{(l)}_{ab}, \hat Y^{(l')}_{cd})`.

    Attributes
    ----------
    K, C:
        ``(L+1, P, P)`` leading-order kernels :math:`K^{(l)}` and :math:`C_\phi(K^{(l)})`.
    out:
        ``(P, P)`` leading-order output kernel.
    C_cov, K_cov:
        ``(L+1, P, P, P, P)`` :math:`N\,\mathrm{Cov}` between the entries of
        :math:`\hat C^{(l)}` and of :math:`\hat K^{(l)}` at every layer.
    CK_cov:
        ``(L+1, P, P, P, P)`` :math:`N\,\mathrm{Cov}(\hat C^{(l)}_{ab}, \hat K^{(l)}_{cd})`.
    out_cov:
        ``(P, P, P, P)`` :math:`N\,\mathrm{Cov}` of the output kernel
        :math:`\sigma^2_{w,out}\hat C^{(L)} + \sigma^2_{b,out}`.
    C_shift, K_shift:
        ``(L+1, P, P)`` :math:`N(\mathbb E\hat C^{(l)} - C^{(l)})`, :math:`N(\mathbb E\hat K^{(l)}
        - K^{(l)})`.
    out_shift:
        ``(P, P)`` :math:`N(\mathbb E\hat K^{out} - K^{out})`.
    C_cov_layers, K_cov_layers, CK_cov_layers:
        ``(L+1, L+1, P, P, P, P)`` the same between any two layers ``l, l'``; only from
        ``method="pairs"`` (``None`` from the walk method).
    residual:
        ``True`` for the ResNet, ``False`` for the feed-forward net.
    method:
        ``"walk"`` or ``"pairs"`` (see :func:`finite_width`).
    """

    K: Float[Array, "Lp1 P P"]
    C: Float[Array, "Lp1 P P"]
    out: Float[Array, "P P"]
    C_cov: Float[Array, "Lp1 P P P P"]
    K_cov: Float[Array, "Lp1 P P P P"]
    CK_cov: Float[Array, "Lp1 P P P P"]
    out_cov: Float[Array, "P P P P"]
    C_shift: Float[Array, "Lp1 P P"]
    K_shift: Float[Array, "Lp1 P P"]
    out_shift: Float[Array, "P P"]
    C_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    K_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    CK_cov_layers: Float[Array, "Lp1 Lp1 P P P P"] | None
    residual: bool = eqx.field(static=True)
    method: str = eqx.field(static=True)

    @property
    def entries(self) -> list[tuple[int, int]]:
        """Upper-triangle index pairs ``(a, b)``, ``a <= b``, row-major."""
        return _unique_entries(self.K.shape[-1])

    def mean(self, name: str, width: float) -> Array:
        """NLO mean ``LO + shift / N`` of ``"C"``, ``"K"`` or ``"out"`` (all layers for C, K)."""
        lo = {"C": self.C, "K": self.K, "out": self.out}[name]
        return lo + getattr(self, f"{name}_shift") / width

    def output_cumulant4(self) -> Float[Array, "P P P P"]:
        r"""``N`` times the fourth cumulant of the outputs, :math:`N\kappa_4(y_a, y_b, y_c, y_d)`.

        Given the network the outputs are Gaussian with kernel :math:`\hat K^{out}`, so
        :math:`\kappa_4(y_a,y_b,y_c,y_d) = \mathrm{Cov}(\hat K^{out}_{ab}, \hat K^{out}_{cd})
        + \mathrm{Cov}(\hat K^{out}_{ac}, \hat K^{out}_{bd}) + \mathrm{Cov}(\hat K^{out}_{ad},
        \hat K^{out}_{bc})` exactly; the prior is Gaussian only at :math:`N = \infty`.
        """
        T = self.out_cov
        return T + jnp.transpose(T, (0, 2, 1, 3)) + jnp.transpose(T, (0, 3, 2, 1))

    def output_prior(self, width: float) -> dict[str, Array]:
        r"""Non-Gaussianity of the output prior at width ``N`` (to :math:`O(1/N)`).

        Returns ``excess_kurtosis`` ``(P,)``: :math:`\kappa_4(y_a^4)/(\mathbb E y_a^2)^2 =
        3\,\mathrm{Var}\hat K^{out}_{aa}/(K^{out}_{aa})^2`; ``cov_y2`` ``(P, P)``:
        :math:`\mathrm{Cov}(y_a^2, y_b^2) = 2(\mathbb E y_ay_b)^2 + \kappa_4(y_a,y_a,y_b,y_b)`
        with the NLO mean :math:`\mathbb E y_ay_b = K^{out}_{ab} + \mathrm{shift}_{ab}/N`;
        ``cov_y2_gaussian`` ``(P, P)``: the infinite-width value :math:`2(K^{out}_{ab})^2`.
        """
        k4 = self.output_cumulant4() / width
        P = self.out.shape[0]
        i = jnp.arange(P)
        mean = self.out + self.out_shift / width
        kurt = k4[i, i, i, i] / jnp.diagonal(self.out) ** 2
        k4_aabb = k4[i[:, None], i[:, None], i[None, :], i[None, :]]
        return {"excess_kurtosis": kurt, "cov_y2": 2.0 * mean**2 + k4_aabb,
                "cov_y2_gaussian": 2.0 * self.out**2}

    def cov_matrix(self, name: str, layer: int = -1) -> Array:
        """``(n_e, n_e)`` matrix of :math:`N\\,\\mathrm{Cov}` over :attr:`entries` at one layer.

        ``name`` is ``"C"``, ``"K"`` or ``"out"`` (``layer`` ignored for ``"out"``).
        """
        T = self.out_cov if name == "out" else getattr(self, f"{name}_cov")[layer]
        e = np.asarray(self.entries)
        return T[e[:, 0][:, None], e[:, 1][:, None], e[:, 0][None, :], e[:, 1][None, :]]


def _layer_kernels(K0, rho, hyper, act, depth, residual):
    """Leading-order kernels ``K^(l)``, ``C(K^(l))``, ``l = 0..L`` (``(n, P, P)`` each)."""

    def step(K, _):
        branch = hyper.sigma_w2 * act.kernel(K) + hyper.sigma_b2
        K_new = K + rho**2 * branch if residual else branch
        return K_new, K_new

    _, Ks = jax.lax.scan(step, K0, None, length=depth)
    Ks = jnp.concatenate([K0[None], Ks])  # (n, P, P)
    return Ks, jax.vmap(act.kernel)(Ks)


_layer_kernels_jit = eqx.filter_jit(_layer_kernels)


def _kernel_maps(Ks, act):
    """Jacobian ``(n, P^2, P^2)`` and Hessian ``(n, P^2, P^2, P^2)`` of ``K -> C(K)``."""
    n, P = Ks.shape[0], Ks.shape[1]

    def cmap(Kv):
        K = Kv.reshape(P, P)
        return act.kernel(0.5 * (K + K.T)).reshape(-1)

    J = jax.vmap(jax.jacfwd(cmap))(Ks.reshape(n, -1))
    Hs = jax.vmap(jax.jacfwd(jax.jacfwd(cmap)))(Ks.reshape(n, -1))
    return J, Hs


@eqx.filter_jit
def _general(K0, rho, hyper, act, depth, residual, cross_layer, erf_closed, degree,
             inner_degree, n_theta, block):
    P = K0.shape[0]
    n = depth + 1
    dt = K0.dtype
    if residual:
        a = rho**2 * hyper.sigma_w2
        A = a * jnp.tril(jnp.ones((n, n), dt), -1)
    else:
        A = hyper.sigma_w2 * jnp.eye(n, k=-1, dtype=dt)

    Ks, Cs = _layer_kernels(K0, rho, hyper, act, depth, residual)
    J, Hs = _kernel_maps(Ks, act)

    p2 = P * P
    G = (A[:, :, None, None] * J[:, None, :, :])  # (l, m, P^2, P^2)
    Gbig = jnp.transpose(G, (0, 2, 1, 3)).reshape(n * p2, n * p2)
    eye = jnp.eye(n * p2, dtype=dt)
    R = jax.scipy.linalg.solve_triangular(eye - Gbig, eye, lower=True)
    Abig = jnp.kron(A, jnp.eye(p2, dtype=dt))
    W = Abig @ R  # response of the accumulated kernel sum_m A[l, m] dC^(m) to eps_C

    mode = "all" if (residual and cross_layer) else "diag"
    Xi_CC, Xi_CK, (el, Y) = _intrinsic(Ks, act, erf_closed, mode, degree, inner_degree,
                                       n_theta, block)
    Xi_KK = _isserlis(Ks, residual and cross_layer)
    XCC, XCK, XKK = _to_big(Xi_CC), _to_big(Xi_CK), _to_big(Xi_KK)

    cov_CC = R @ XCC @ R.T
    WX = W @ XCK
    cov_KK = XKK + WX + WX.T + W @ XCC @ W.T
    cov_CK = R @ XCK + R @ XCC @ W.T
    acc = W @ XCC @ W.T  # Cov of the accumulated kernel sum
    V = jnp.stack([acc[i * p2:(i + 1) * p2, i * p2:(i + 1) * p2] for i in range(n)])
    src = 0.5 * jnp.einsum("luvw,lvw->lu", Hs, V)  # (n, P^2)

    if residual and cross_layer:
        # e^(m)_ab = 1/2 sum_{j<m} sum_{kl} sum_{a'b'} W^(m,j)[(ab)_a', (ab)_b'; kl] Y
        Wt = _from_big(W, n, P)  # (m, j, P, P, P, P): [m, j, mu, nu, k, l]
        jj, mm, kk, ll = (jnp.asarray(el[:, i]) for i in (0, 1, 4, 5))
        aa, bb = el[:, 6], el[:, 7]
        ab = np.stack([aa, bb], 1)  # (E, 2) local coordinate -> input index
        mu = jnp.asarray(ab[:, :, None] * np.ones((1, 1, 2), np.int32))
        nu = jnp.asarray(ab[:, None, :] * np.ones((1, 2, 1), np.int32))
        w1 = Wt[mm[:, None, None], jj[:, None, None], mu, nu, kk[:, None, None],
                ll[:, None, None]]
        w2 = Wt[mm[:, None, None], jj[:, None, None], mu, nu, ll[:, None, None],
                kk[:, None, None]]
        mult = jnp.where(kk != ll, 1.0, 0.0)[:, None, None]
        contrib = 0.5 * jnp.sum((w1 + mult * w2) * Y, axis=(1, 2))
        contrib = jnp.where(jnp.asarray(el[:, 0] < el[:, 1]), contrib, 0.0)
        e = jnp.zeros((n, P, P), dt)
        e = e.at[mm, jnp.asarray(aa), jnp.asarray(bb)].add(contrib)
        # entries a < b were accumulated once on (a, b): mirror them
        e = jnp.triu(e) + jnp.transpose(jnp.triu(e, 1), (0, 2, 1))
        src = src + e.reshape(n, p2)

    C_shift = (R @ src.reshape(-1)).reshape(n, P, P)
    K_shift = jnp.einsum("lm,mab->lab", A, C_shift)

    C_cov = _from_big(cov_CC, n, P)
    K_cov = _from_big(cov_KK, n, P)
    CK_cov = _from_big(cov_CK, n, P)
    il = jnp.arange(n)
    wo = hyper.sigma_w2_out
    return FiniteWidth(
        K=Ks,
        C=Cs,
        out=wo * Cs[-1] + hyper.sigma_b2_out,
        C_cov=C_cov[il, il],
        K_cov=K_cov[il, il],
        CK_cov=CK_cov[il, il],
        out_cov=wo**2 * C_cov[-1, -1],
        C_shift=C_shift,
        K_shift=K_shift,
        out_shift=wo * C_shift[-1],
        C_cov_layers=C_cov,
        K_cov_layers=K_cov,
        CK_cov_layers=CK_cov,
        residual=residual,
        method="pairs",
    )


# Grid of the walk method: half-width in units of the final kernel (exp(-50) tails) and the
# largest spacing, in h, that resolves phi (band limit of erf ~exp(-k^2/4), of tanh-like
# activations ~exp(-pi k/2)); calibrated in tests/test_finite_width_walk.py.
_WALK_HALF_WIDTH = 10.0
_WALK_SPACING = {"erf": 0.3, "linear": 1.0}
_WALK_SPACING_DEFAULT = 0.15
_WALK_MAX_GRID = 1024


def _walk_grid_size(Ks: np.ndarray, act: Activation) -> int:
    """Grid points per axis for the walk method (from concrete leading-order kernels).

    In the coordinates ``u = M^-1 h`` (``M M^T = K^(L)``) the grid spans ``[-10, 10]^P``
    with spacing ``du``. It must resolve ``phi(h_a)`` (frequency ``sqrt(K^(L)_aa)`` times that
    of ``phi``) and every layer density ``p_l`` (thinnest variance ``lam`` = the smallest
    eigenvalue of ``K_u = M^-1 K^(l) M^-T``), with ``s = sqrt(lam) / du`` points per standard
    deviation: the trapezoid sums need ``exp(-2 pi^2 s^2) < 1e-15`` (``s^2 >= 1.7``), and the
    FFT convolution of ``f p_l`` with the increment ``D`` aliases the spectrum beyond the
    Nyquist frequency, damped by the convolution itself: the error is
    ``exp(-pi^2 s^2 (1 + r) / 2)`` for a relative damping ``r = D / lam <= 1`` and
    ``exp(-2 pi^2 s^2 r / (1 + r))`` for ``r > 1`` (``r``: the smallest eigenvalue of
    ``K_u^-1/2 D_u K_u^-1/2``); both must be below ``e^-37``.
    """
    Ks = np.asarray(Ks, np.float64)
    M = np.linalg.cholesky(Ks[-1])
    Minv = np.linalg.inv(M)
    Ku = np.einsum("ab,lbc,dc->lad", Minv, Ks, Minv)
    du = _WALK_SPACING.get(act.name, _WALK_SPACING_DEFAULT) / math.sqrt(
        float(np.max(np.diagonal(Ks[-1]))))
    for l in range(len(Ks)):
        w, V = np.linalg.eigh(Ku[l])
        if not w[0] > 0:
            return _WALK_MAX_GRID + 1
        s2 = 1.7
        if l + 1 < len(Ks):
            S = V @ np.diag(w**-0.5) @ V.T
            r = max(float(np.linalg.eigvalsh(S @ (Ku[l + 1] - Ku[l]) @ S)[0]), 0.0)
            s2 = max(s2, 74.0 / (math.pi**2 * (1.0 + r)) if r <= 1.0
                     else 37.0 * (1.0 + r) / (2.0 * math.pi**2 * r))
        du = min(du, math.sqrt(w[0] / s2))
    return _round_grid(int(math.ceil(2.0 * _WALK_HALF_WIDTH / du)))


def _same_layer_grid_size(Ks: np.ndarray, act: Activation) -> int:
    """Grid points per axis for the same-layer moments (per-layer whitened coordinates)."""
    dh = _WALK_SPACING.get(act.name, _WALK_SPACING_DEFAULT)
    kmax = float(np.max(np.diagonal(np.asarray(Ks, np.float64), axis1=1, axis2=2)))
    return _round_grid(int(math.ceil(2.0 * _WALK_HALF_WIDTH * math.sqrt(kmax) / dh)))


def _round_grid(n: int) -> int:
    """Round up to 2^k x {1, 5/4, 3/2, 7/4}, at least 32: FFT-friendly, and few distinct
    sizes to compile when rho or K0 change (the grid size is static)."""
    n = max(32, n)
    k = 2 ** (n.bit_length() - 1)
    return next(m for m in (k, 5 * k // 4, 3 * k // 2, 7 * k // 4, 2 * k) if m >= n)


def _periodic_grid(n_grid, P, dt):
    """Spacing ``du`` and the nodes ``U`` ``(P, n_grid, ..., n_grid)`` of the periodic grid
    on ``[-10, 10)^P``."""
    du = 2.0 * _WALK_HALF_WIDTH / n_grid
    ax = -_WALK_HALF_WIDTH + du * jnp.arange(n_grid, dtype=dt)
    return du, jnp.stack(jnp.meshgrid(*([ax] * P), indexing="ij"), 0)


def _same_layer_moments(Ks, act, n_grid):
    """Same-layer intrinsic moments ``Cov[phi phi, phi phi]`` and ``Cov[phi phi, h h]``.

    ``(n, P^2, P^2)`` each, by the trapezoid rule on ``[-10, 10]^P`` in the coordinates
    whitened by each layer's kernel (the density is then a standard normal; the rule is
    spectrally accurate for these entire integrands).
    """
    P = Ks.shape[1]
    p2 = P * P
    _, U = _periodic_grid(n_grid, P, Ks.dtype)
    U = U.reshape(P, -1)
    w = jnp.exp(-0.5 * jnp.sum(U * U, 0))
    w = w / jnp.sum(w)

    def one(K):
        H = jnp.linalg.cholesky(K) @ U
        F = act.fn(H)
        f = (F[:, None] * F[None, :]).reshape(p2, -1)
        g = (H[:, None] * H[None, :]).reshape(p2, -1)
        f = f - f @ w[:, None]
        g = g - g @ w[:, None]
        return (f * w) @ f.T, (f * w) @ g.T

    return jax.lax.map(one, Ks)


def _walk_moments(Ks, J, act, a, n_grid):
    r"""Cross-layer moments of the ResNet by one forward pass along the one-neuron walk.

    ``V^(l) = sum_{m<l} W^(l,m) f~_m(h^(m))`` (the accumulated-kernel response to the
    intrinsic fluctuations ``f~_m = phi phi(h^(m)) - C^(m)``, a ``P^2`` vector) obeys
    ``V^(l+1) = (1 + a J^(l)) V^(l) + a f~_l(h^(l))``. Its density-weighted conditional mean
    ``v_l(h) = E[V^(l) | h^(l) = h] p_l(h)`` is carried on a periodic grid in
    ``u = M^-1 h`` and moves from layer to layer by a Gaussian convolution (an FFT multiplier)
    with the increment covariance ``K^(l+1) - K^(l)``. Returns, for every layer,
    ``X^(l) = N Cov(S^(l), eps^(l)) = int v_l f~_l^T`` ``(n, P^2, P^2)`` and the mean-shift
    source ``e^(l)_ab = 1/2 sum_cd int v_l[cd] d_c d_d phi_a phi_b`` ``(n, P^2)``.
    """
    P = Ks.shape[1]
    p2 = P * P
    dt = Ks.dtype
    M = jnp.linalg.cholesky(Ks[-1])
    Minv = jax.scipy.linalg.solve_triangular(M, jnp.eye(P, dtype=dt), lower=True)
    du, U = _periodic_grid(n_grid, P, dt)
    grid = U.shape[1:]
    H = jnp.einsum("ab,b...->a...", M, U)
    F0 = act.fn(H)
    F1 = _elementwise_derivative(act.fn, 1)(H)
    F2 = _elementwise_derivative(act.fn, 2)(H)
    f = (F0[:, None] * F0[None, :]).reshape((p2,) + grid)
    vol = du**P
    axes = tuple(range(1, P + 1))
    freqs = [np.fft.fftfreq(n_grid)] * (P - 1) + [np.fft.rfftfreq(n_grid)]
    Kf = jnp.stack(jnp.meshgrid(*[jnp.asarray(2.0 * np.pi * fr, dt) / du for fr in freqs],
                                indexing="ij"), 0)
    Ku = jnp.einsum("ab,lbc,dc->lad", Minv, Ks, Minv)
    Dk = jnp.concatenate([Ku[1:] - Ku[:-1], jnp.zeros((1, P, P), dt)])
    Bs = jnp.eye(p2, dtype=dt) + a * J
    norm = -0.5 * P * math.log(2.0 * math.pi)

    def step(v, inp):
        S, D, B = inp
        Ls = jnp.linalg.cholesky(S)
        z = jax.scipy.linalg.solve_triangular(Ls, U.reshape(P, -1), lower=True)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(Ls)))
        p = jnp.exp(-0.5 * jnp.sum(z * z, 0) - 0.5 * logdet + norm).reshape(grid)
        ft = f - (jnp.sum(f * p, axis=axes) * vol).reshape((p2,) + (1,) * P)
        X = jnp.einsum("c...,u...->cu", v, ft) * vol
        vm = v.reshape((P, P) + grid)
        vd = jnp.stack([vm[i, i] for i in range(P)])
        t1 = jnp.einsum("a...,b...->ab", vd * F2, F0)
        t3 = jnp.einsum("ab...,a...,b...->ab", vm + jnp.swapaxes(vm, 0, 1), F1, F1)
        e = 0.5 * vol * (t1 + t1.T + t3)
        w = jnp.einsum("cd,d...->c...", B, v) + a * ft * p
        mult = jnp.exp(-0.5 * jnp.einsum("a...,ab,b...->...", Kf, D, Kf))
        v_new = jnp.fft.irfftn(jnp.fft.rfftn(w, axes=axes) * mult, s=grid, axes=axes)
        return v_new, (X, e.reshape(p2))

    _, (X, e) = jax.lax.scan(step, jnp.zeros((p2,) + grid, dt), (Ku, Dk, Bs))
    return X, e


@eqx.filter_jit
def _walk(K0, rho, hyper, act, depth, residual, cross_layer, erf_closed, degree,
          inner_degree, n_theta, block, n_grid, n_same):
    """Same-layer covariances and mean shifts at every layer in ``O(L)`` (walk method).

    The linear response of the pairs method, rewritten as forward recursions for the
    accumulated-kernel perturbation ``S^(l+1) = B^(l) S^(l) + c eps^(l)`` (ResNet
    ``B = 1 + aJ``, ``c = a``; FFNet ``B = sigma_w^2 J``, ``c = sigma_w^2``): its covariance
    ``Sigma``, its covariance with the pre-activation noise ``Y`` and its mean ``Z``. The
    cross-layer intrinsic moments enter only through :func:`_walk_moments`.
    """
    P = K0.shape[0]
    n = depth + 1
    dt = K0.dtype
    p2 = P * P
    Ks, Cs = _layer_kernels(K0, rho, hyper, act, depth, residual)
    J, Hs = _kernel_maps(Ks, act)
    Xi, XCK = _same_layer_moments(Ks, act, n_same)  # XCK: Cov[phi phi(h^(l)), h h(h^(l))]
    XKK = _isserlis_same(Ks).reshape(n, p2, p2)
    eye = jnp.eye(p2, dtype=dt)
    if residual:
        c = rho**2 * hyper.sigma_w2
        Bs = eye + c * J
    else:
        c = hyper.sigma_w2
        Bs = c * J
    if residual and cross_layer:
        X, e = _walk_moments(Ks, J, act, c, n_grid)
        Ysrc = XCK  # Cov[phi phi(h^(m)), h h(h^(l))] = XCK^(m) for m <= l (martingale)
    else:
        X = jnp.zeros((n, p2, p2), dt)
        e = jnp.zeros((n, p2), dt)
        Ysrc = jnp.zeros_like(XCK)

    def step(state, inp):
        Sig, Y, Z = state
        Jl, Hl, B, Xl, el, Xil, XCKl, XKKl, Ys = inp
        C_cov = Xil + Jl @ Xl + Xl.T @ Jl.T + Jl @ Sig @ Jl.T
        K_cov = XKKl + Y + Y.T + Sig
        CK_cov = XCKl + Jl @ Y + Xl.T + Jl @ Sig
        src = 0.5 * jnp.einsum("uvw,vw->u", Hl, Sig) + el
        C_shift = src + Jl @ Z
        state = (B @ Sig @ B.T + c * (B @ Xl + Xl.T @ B.T) + c**2 * Xil,
                 B @ Y + c * Ys, B @ Z + c * src)
        return state, (C_cov, K_cov, CK_cov, C_shift, Z)

    z = jnp.zeros((p2, p2), dt)
    _, (C_cov, K_cov, CK_cov, C_shift, K_shift) = jax.lax.scan(
        step, (z, z, jnp.zeros(p2, dt)), (J, Hs, Bs, X, e, Xi, XCK, XKK, Ysrc))
    C_cov, K_cov, CK_cov = (T.reshape(n, P, P, P, P) for T in (C_cov, K_cov, CK_cov))
    C_shift = C_shift.reshape(n, P, P)
    wo = hyper.sigma_w2_out
    return FiniteWidth(
        K=Ks,
        C=Cs,
        out=wo * Cs[-1] + hyper.sigma_b2_out,
        C_cov=C_cov,
        K_cov=K_cov,
        CK_cov=CK_cov,
        out_cov=wo**2 * C_cov[-1],
        C_shift=C_shift,
        K_shift=K_shift.reshape(n, P, P),
        out_shift=wo * C_shift[-1],
        C_cov_layers=None,
        K_cov_layers=None,
        CK_cov_layers=None,
        residual=residual,
        method="walk",
    )


def finite_width(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    residual: bool = True,
    inputs: tuple[int, ...] | None = None,
    cross_layer: bool = True,
    degree: int | None = None,
    inner_degree: int = 20,
    n_theta: int = 20,
    block: int | None = None,
    method: str = "auto",
    grid: int | None = None,
) -> FiniteWidth:
    r"""The :math:`1/N` kernel covariances and mean shifts for ``P`` inputs (ResNet or FFNet).

    Parameters
    ----------
    K0:
        ``(P, P)`` input kernel (symmetric PSD, positive diagonal). ``P <= 4`` unless
        ``inputs`` selects at most four of the inputs (every :math:`1/N` quantity of the
        entries among a set of inputs depends only on that sub-block of ``K0``).
    rho:
        Residual scaling (ignored for ``residual=False``).
    depth:
        Number of hidden layers ``L >= 1`` (static).
    hyper:
        :class:`~fieldres.kernels.recursion.Hyper` (default ``Hyper()``).
    activation:
        A smooth activation (``"erf"`` uses closed-form inner integrals; ``"tanh"``, callables
        and the quadrature activations use 2-D Gauss--Hermite).
    residual:
        ResNet (default) or feed-forward net :math:`h^{(l)} = W\phi(h^{(l-1)}) + b`.
    inputs:
        Indices of at most four inputs whose sub-block of ``K0`` is used.
    cross_layer:
        Keep the cross-layer intrinsic moments of the ResNet (``False`` is the wrong
        independent-layer approximation; for comparison only).
    degree, inner_degree, n_theta:
        Pairs method only: trapezoid nodes per dimension of the outer 2-D rule (default 80
        for erf, 48 otherwise) and of the inner 2-D rule (non-erf activations),
        Gauss--Legendre nodes of the bivariate-normal integral (erf). These defaults are good
        to ~1e-11 for moderate kernels; strongly correlated kernels with large entries and
        tanh need more (see ``docs/finite_width.md``).
    block:
        Pairs method: intrinsic moments evaluated per vectorised block (memory).
    method:
        ``"walk"``: every same-layer statistic in ``O(L)``, the cross-layer intrinsic moments
        of the ResNet accumulated along one neuron's random walk on a ``P``-dimensional grid
        (``P <= 2``). ``"pairs"``: a 4-D integral for every pair of layers, ``O(L^2)``, which
        also returns the cross-layer tables ``*_cov_layers``. ``"auto"`` (default): the walk
        when ``P <= 2`` and the kernel is not (nearly) singular, otherwise the pairs.
    grid:
        Walk method: points per axis of its grids (default from the kernels and the
        activation, see ``docs/finite_width.md``; the default is converged to ~1e-12).

    Returns
    -------
    FiniteWidth

    Notes
    -----
    The derivation (``docs/finite_width.md``): linear response of the empirical kernels to
    their own fluctuations, :math:`\delta\hat C = R\,\varepsilon`, for the covariances, and
    the second-order expansion of the exact conditional recursion
    :math:`\mathbb E[\langle F\rangle_{l+1}\,|\,l] = \langle T_{S^{(l)}}F\rangle_l` for the
    mean. For ``P = 1`` it coincides with :func:`finite_width_single`.
    """
    K0 = jnp.asarray(K0)
    if not jnp.issubdtype(K0.dtype, jnp.floating):
        K0 = K0.astype(jnp.result_type(float))
    from .._validation import check_kernel

    check_kernel(K0)
    if inputs is not None:
        inputs = tuple(int(i) for i in inputs)
        if not 1 <= len(inputs) <= 4 or len(set(inputs)) != len(inputs):
            raise ValueError(f"inputs must be 1 to 4 distinct input indices, got {inputs}")
        if min(inputs) < 0 or max(inputs) >= K0.shape[0]:
            raise ValueError(f"inputs {inputs} out of range for a {K0.shape[0]} x "
                             f"{K0.shape[0]} kernel")
        K0 = K0[jnp.asarray(inputs)][:, jnp.asarray(inputs)]
    if K0.shape[0] > 4:
        raise ValueError(f"finite_width computes every entry for P <= 4 inputs; got P = "
                         f"{K0.shape[0]}: select up to four with inputs=(...)")
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be a Python int, got {type(depth).__name__}")
    check_depth(depth)
    check_finite("rho", rho)
    check_nonnegative("rho (the residual scaling)", rho)
    act = get_activation(activation)
    from ..kernels.activations import Erf

    erf_closed = isinstance(act, Erf)
    if degree is None:
        degree = 80 if erf_closed else 48
    for name, v in (("degree", degree), ("inner_degree", inner_degree), ("n_theta", n_theta)):
        if int(v) < 8:
            raise ValueError(f"{name} must be >= 8, got {v}")
    if hyper is None:
        hyper = Hyper()
    if block is None:
        per = degree**2 * (n_theta if erf_closed else inner_degree**2)
        block = max(1, min(256, 2**22 // per))
    dt = K0.dtype
    rho = jnp.asarray(rho, dt)
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    method, grids = _choose_method(method, grid, K0, rho, hyper, act, int(depth),
                                   bool(residual), bool(cross_layer))
    fn = _walk if method == "walk" else _general
    return fn(K0, rho, hyper, act, int(depth), bool(residual), bool(cross_layer), erf_closed,
              int(degree), int(inner_degree), int(n_theta), int(block), *grids)


_WALK_TRACED_GRID = 256  # grid when the kernels are traced (inside jax transforms)


def _choose_method(method, grid, K0, rho, hyper, act, depth, residual, cross_layer):
    """``("walk", (n_grid, n_same))`` or ``("pairs", ())`` for :func:`finite_width`.

    ``n_grid``: points per axis of the ResNet's cross-layer walk (0: not needed);
    ``n_same``: of the same-layer moments.
    """
    from .._validation import is_concrete

    if method not in ("auto", "walk", "pairs"):
        raise ValueError(f"method must be 'auto', 'walk' or 'pairs', got {method!r}")
    P = K0.shape[0]
    if method == "pairs":
        return "pairs", ()
    if P > 2:
        if method == "walk":
            raise ValueError(f"the walk method handles P <= 2 inputs (a grid in P dimensions); "
                             f"got P = {P}: use method='pairs'")
        return "pairs", ()
    walk = residual and cross_layer
    if grid is not None:
        if int(grid) < 16:
            raise ValueError(f"grid must be >= 16 points per axis, got {grid}")
        g = int(grid) + int(grid) % 2
        return "walk", (g if walk else 0, g)
    if not all(is_concrete(x) for x in (K0, rho, *jax.tree.leaves(hyper))):
        return "walk", (_WALK_TRACED_GRID if walk else 0, _WALK_TRACED_GRID)
    Ks = np.asarray(_layer_kernels_jit(K0, rho, hyper, act, depth, residual)[0])
    lam = min(np.linalg.eigvalsh(K)[0] / np.max(np.diagonal(K)) for K in Ks)
    n = _walk_grid_size(Ks, act) if (walk and lam > 1e-12) else 0
    if lam > 1e-12 and n <= _WALK_MAX_GRID:
        return "walk", (n, _same_layer_grid_size(Ks, act))
    if method == "walk":
        raise ValueError(
            f"the walk method needs a grid of more than {_WALK_MAX_GRID} points per axis: "
            f"the kernel is (nearly) singular (inputs almost identical or opposite); use "
            f"method='pairs' or pass grid=...")
    return "pairs", ()


# ==========================================================================================
# Monte-Carlo counterpart: the same statistics from simulated finite networks
# ==========================================================================================


class SimulatedNLO(eqx.Module):
    r"""Monte-Carlo estimates of the last-layer kernel statistics, with standard errors.

    For ``X`` in ``C`` (:math:`\hat C^{(L)}`), ``K`` (:math:`\hat K^{(L)}`) and ``out``
    (:math:`\sigma^2_{w,out}\hat C^{(L)} + \sigma^2_{b,out}`): ``X_mean`` and ``X_mean_se``
    ``(P, P)``; ``X_ncov`` and ``X_ncov_se`` ``(n_e, n_e)``: the width times the sample
    covariance over networks between the :attr:`entries` (upper triangle, row-major), and
    its standard error (from the fourth moments: the standard error of the mean of the
    products of centred samples). ``C_layers_mean``/``_se``, ``K_layers_mean``/``_se``:
    ``(L+1, P, P)`` means over all layers.
    """

    C_mean: Array
    C_mean_se: Array
    C_ncov: Array
    C_ncov_se: Array
    K_mean: Array
    K_mean_se: Array
    K_ncov: Array
    K_ncov_se: Array
    out_mean: Array
    out_mean_se: Array
    out_ncov: Array
    out_ncov_se: Array
    C_layers_mean: Array
    C_layers_se: Array
    K_layers_mean: Array
    K_layers_se: Array
    width: int = eqx.field(static=True)
    n_networks: int = eqx.field(static=True)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return _unique_entries(self.C_mean.shape[-1])


def _ncov_with_se(samples: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``N`` x sample covariance of the columns and its standard error."""
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    xc = x - x.mean(0)
    prod = xc[:, :, None] * xc[:, None, :]
    cov = prod.sum(0) / (n - 1)
    se = prod.std(0, ddof=1) / np.sqrt(n)
    return width * cov, width * se


def simulate_nlo(
    key,
    K0: Float[ArrayLike, "P P"],
    *,
    rho: float,
    depth: int,
    width: int,
    n_networks: int,
    hyper: Hyper | None = None,
    activation: str | Callable = "erf",
    residual: bool = True,
    method: str = "sampler",
    batch_size: int = 2048,
    progress: bool = False,
) -> SimulatedNLO:
    """Simulate finite networks (:func:`fieldres.simulation.simulate_kernels`) and return the
    statistics that :func:`finite_width` predicts: means with standard errors and ``N`` times
    the covariances between entries at the last layer, with standard errors."""
    from ..simulation.engine import simulate_kernels

    if hyper is None:
        hyper = Hyper()
    act = activation
    if isinstance(act, str):
        act = get_activation(act).fn if act not in ("erf", "tanh", "relu", "linear") else act
    s = simulate_kernels(
        key, jnp.asarray(K0), rho=rho, depth=depth, width=width, n_networks=n_networks,
        activation=act, sigma_w2=float(hyper.sigma_w2), sigma_b2=float(hyper.sigma_b2),
        sigma_w2_out=float(hyper.sigma_w2_out), sigma_b2_out=float(hyper.sigma_b2_out),
        residual=residual, method=method, batch_size=batch_size, keep_last=True,
        progress=progress,
    )
    P = np.shape(K0)[0]
    e = np.asarray(_unique_entries(P))
    out = {}
    for name, last in (("C", s.C_last), ("K", s.K_last), ("out", s.out_last)):
        x = np.asarray(last, np.float64)
        flat = x[:, e[:, 0], e[:, 1]]
        ncov, ncov_se = _ncov_with_se(flat, width)
        out[f"{name}_mean"] = jnp.asarray(x.mean(0))
        out[f"{name}_mean_se"] = jnp.asarray(x.std(0, ddof=1) / np.sqrt(x.shape[0]))
        out[f"{name}_ncov"] = jnp.asarray(ncov)
        out[f"{name}_ncov_se"] = jnp.asarray(ncov_se)
    return SimulatedNLO(
        **out,
        C_layers_mean=s.C_mean,
        C_layers_se=s.C_stderr,
        K_layers_mean=s.K_mean,
        K_layers_se=s.K_stderr,
        width=int(width),
        n_networks=int(n_networks),
    )


# ==========================================================================================
# Response at finite width and the optimal scaling rho*(N)
# ==========================================================================================


class WidthOptimum(eqx.Module):
    r"""The optimal residual scaling at infinite and at finite width ``N``.

    Attributes
    ----------
    rho_star_inf:
        :math:`\rho^*(\infty) = \arg\max_\rho \chi^{out}_0(\rho)` (leading order; ``nan`` when
        there is no interior maximum, see ``status``).
    rho_star:
        :math:`\rho^*(N) = \rho^*(\infty)\,\exp(c/N)` to :math:`O(1/N)`.
    shift:
        :math:`c = N\,\delta\ln\rho^* = -\partial_u\chi_1/\partial_u^2\chi_0` at
        :math:`u = \ln\rho^*(\infty)`, where :math:`\chi^{out}_N = \chi_0 + \chi_1/N`.
    chi_inf, chi_1:
        :math:`\chi_0(\rho^*)` and the :math:`1/N` coefficient :math:`\chi_1(\rho^*)` of the
        response at the optimum (so :math:`\max_\rho\chi^{out}_N = \chi_0 + \chi_1/N +
        O(1/N^2)`).
    status:
        :class:`fieldres.signal.optimal.Status` of the leading-order search.
    """

    rho_star_inf: Array
    rho_star: Array
    shift: Array
    chi_inf: Array
    chi_1: Array
    status: Array


def _entry_block(K0, entry):
    a, b = entry
    if a == b:
        return K0[a, a].reshape(1, 1), jnp.ones((1, 1), K0.dtype), (0, 0)
    block = jnp.stack([jnp.stack([K0[a, a], K0[a, b]]), jnp.stack([K0[b, a], K0[b, b]])])
    T = jnp.array([[0.0, 1.0], [1.0, 0.0]], K0.dtype)
    return block, T, (0, 1)


def chi_out_nlo(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    entry: tuple[int, int] = (0, 0),
    degree: int = 80,
    n_theta: int = 20,
    inner_degree: int = 24,
) -> tuple[Array, Array]:
    r"""The output response and its :math:`1/N` coefficient, :math:`(\chi_0, \chi_1)`.

    :math:`\chi^{out}_N = \partial(K^{out} + N^{-1}\,\mathrm{shift}^{out})/\partial K^{(0)}`
    for the paper's diagonal (``entry=(a, a)``, direction :math:`e_ae_a^T`) or off-diagonal
    (``entry=(a, b)``, direction :math:`e_ae_b^T + e_be_a^T`) summary: the derivative of the
    NLO mean output kernel (forward mode through :func:`finite_width`). Differentiable.
    """
    K0 = jnp.asarray(K0)
    if hyper is None:
        hyper = Hyper()
    act = get_activation(activation)
    from ..kernels.activations import Erf

    erf_closed = isinstance(act, Erf)
    block, T, (i, k) = _entry_block(K0, entry)
    dt = K0.dtype
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    per = degree**2 * (n_theta if erf_closed else inner_degree**2)
    blk = max(1, min(256, 2**22 // per))
    rho = jnp.asarray(rho, dt)
    fn = _nlo_fn(block, rho, hyper, act, int(depth))

    def stats(Kb):
        r = fn(Kb, rho, hyper, act, int(depth), True, True, erf_closed, degree, inner_degree,
               n_theta, blk)
        return jnp.stack([r.out[i, k], r.out_shift[i, k]])

    return tuple(jax.jvp(stats, (block,), (T,))[1])


def _nlo_fn(block, rho, hyper, act, depth):
    """The ResNet NLO routine for a ``P <= 2`` block: the walk (grid chosen at these values),
    or the pairs method for a singular block."""
    method, grids = _choose_method("auto", None, block, rho, hyper, act, depth, True, True)
    if method == "pairs":
        return _general
    return lambda *args: _walk(*args, *grids)


@eqx.filter_jit
def _chi_derivatives(block, T, u, hyper, act, depth, ik, erf_closed, degree, inner_degree,
                     n_theta, blk, grids):
    """``(chi_0, chi_1)``, ``d chi_1 / du`` and ``d^2 chi_0 / du^2`` in one nested JVP
    (walk method with these ``grids``; the pairs method when ``grids`` is empty)."""
    i, k = ik

    def chi(uu):
        def stats(Kb):
            args = (Kb, jnp.exp(uu), hyper, act, depth, True, True, erf_closed, degree,
                    inner_degree, n_theta, blk)
            r = _walk(*args, *grids) if grids else _general(*args)
            return jnp.stack([r.out[i, k], r.out_shift[i, k]])

        return jax.jvp(stats, (block,), (T,))[1]

    def d_chi(uu):
        return jax.jvp(chi, (uu,), (jnp.ones_like(uu),))

    (c, d), (_, dd) = jax.jvp(d_chi, (u,), (jnp.ones_like(u),))
    return c, d[1], dd[0]


def rho_star_width(
    K0: Float[ArrayLike, "P P"],
    depth: int,
    width: ArrayLike,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    entry: tuple[int, int] = (0, 0),
    rho_range: tuple[float, float] = (1e-3, 1e2),
    degree: int = 80,
    n_theta: int = 20,
    inner_degree: int = 24,
) -> WidthOptimum:
    r"""How the optimal residual scaling moves with the width: :math:`\rho^*(N)` to :math:`O(1/N)`.

    The finite-width response is :math:`\chi^{out}_N(\rho) = \chi_0(\rho) + \chi_1(\rho)/N`
    (:func:`chi_out_nlo`). Expanding :math:`\partial_u\chi^{out}_N = 0` (:math:`u = \ln\rho`)
    around the leading-order optimum :math:`u_0 = \ln\rho^*(\infty)`
    (:func:`fieldres.rho_star`) gives, consistently to first order in :math:`1/N`,

    .. math::

        \ln\rho^*(N) = u_0 - \frac{1}{N}\,\frac{\partial_u\chi_1(u_0)}{\partial_u^2\chi_0(u_0)}.

    Differentiable with :func:`jax.grad` (implicit function theorem for :math:`u_0`, forward
    mode for the derivatives). ``width`` may be an array (the correction is computed once).
    """
    from ..signal.optimal import rho_star as _rho_star

    K0 = jnp.asarray(K0)
    if not jnp.issubdtype(K0.dtype, jnp.floating):
        K0 = K0.astype(jnp.result_type(float))
    if hyper is None:
        hyper = Hyper()
    lo = _rho_star(K0, depth, hyper, activation, entry=entry, rho_range=rho_range)
    u0 = jnp.log(lo.rho_star)
    ok = lo.status == 0
    u_safe = jnp.where(ok, u0, 0.0)

    act = get_activation(activation)
    from ..kernels.activations import Erf

    erf_closed = isinstance(act, Erf)
    block, T, ik = _entry_block(K0, entry)
    dt = K0.dtype
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    per = degree**2 * (n_theta if erf_closed else inner_degree**2)
    blk = max(1, min(256, 2**22 // per))
    _, grids = _choose_method("auto", None, block, jnp.exp(u_safe), hyper, act, int(depth),
                              True, True)
    (c0, c1), d1, dd0 = _chi_derivatives(block, T, u_safe, hyper, act, int(depth), ik,
                                         erf_closed, int(degree), int(inner_degree),
                                         int(n_theta), blk, grids)
    shift = -d1 / dd0
    width = jnp.asarray(width, K0.dtype)
    rho_N = jnp.exp(u_safe + shift / width)
    nan = jnp.asarray(jnp.nan, K0.dtype)
    return WidthOptimum(
        rho_star_inf=lo.rho_star,
        rho_star=jnp.where(ok, rho_N, nan),
        shift=jnp.where(ok, shift, nan),
        chi_inf=jnp.where(ok, c0, nan),
        chi_1=jnp.where(ok, c1, nan),
        status=lo.status,
    )
