r"""Intrinsic (one-neuron) Gaussian moments of the :math:`1/N` theory.

Every intrinsic moment is a covariance between a function of two pre-activations of one
neuron at layer ``j`` and one at layer ``m >= j`` along its leading-order Gaussian random walk:
the bivariate-normal excess :func:`bvn_excess` and the closed-form erf inner average, the
generic 2-D trapezoid inner average, the 4-point element moments with a pivot-tolerant
factor, the Isserlis moments of the pre-activations, and the entry layout.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ..kernels.quadrature import gauss_legendre, gauss_trapezoid

__all__ = ["bvn_excess"]


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


def _elementwise_derivative(f: Callable, order: int) -> Callable:
    """``order``-th derivative of an elementwise function, applied to arrays."""
    for _ in range(order):
        f = (lambda g: lambda x: jax.grad(lambda y: jnp.sum(g(y)))(x))(f)
    return f


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

    # Piecewise-linear phi (ReLU, leaky ReLU): closed-form inner averages and an outer rule
    # with panel ends on the kinks (finite_width/_piecewise.py).
    from ._piecewise import N_ANGLE, N_RADIUS, _pl_element_moments, piecewise_slope

    slope = piecewise_slope(act)

    def run(S_group, z_out, w_out, blk, rank1_group):
        def one(S):
            if slope is not None:
                return _pl_element_moments(S, slope, rank1_group, N_ANGLE, N_RADIUS, n_theta)
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
    for sel, z_out, w_out, blk, r1 in ((~rank1, zo, wo, block, False),
                                       (rank1, zo1, wo1, block * degree, True)):
        idx_g = np.nonzero(sel)[0]
        if idx_g.size:
            groups.append((idx_g, run(Sig[jnp.asarray(idx_g)], z_out, w_out,
                                      min(blk, int(idx_g.size)), r1)))
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
