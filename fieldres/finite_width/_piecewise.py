r"""Gaussian integrals of the :math:`1/N` theory for piecewise-linear activations.

For ReLU and leaky ReLU, :math:`\phi(y) = s\,y + (1 - s)\,\mathrm{relu}(y)` (slope ``s`` for
``y < 0``; ReLU: ``s = 0``), the derivatives that the mean shift needs are distributions
(:math:`\phi'' = (1 - s)\,\delta`), and the integrands of every intrinsic moment have kinks,
so the smooth-integrand rules of the erf/tanh theory (Gauss--Hermite, trapezoid, the FFT
walk) converge only algebraically. Here every integral is either in closed form or a
quadrature whose panels end at the kinks:

* **single input** (:func:`_pl_single_moments`): all the moments of one neuron at two layers
  ``j <= k`` (variances ``k_1 = K^{(j)} <= k_2 = K^{(k)}``, covariance ``k_1``, correlation
  :math:`\cos\theta = \sqrt{k_1/k_2}`) follow from the arc-cosine kernels of Cho & Saul
  (2009), :math:`\mathbb E[X_+^2 Y_+^2] = J_2(\theta)/2\pi`,
  :math:`J_2 = 3\sin\theta\cos\theta + (\pi - \theta)(1 + 2\cos^2\theta)`, and
  :math:`\mathbb E[X_+^2\,\Theta(Y)] = (\pi - \theta + \sin\theta\cos\theta)/2\pi`
  (standard normals ``X, Y`` with correlation :math:`\cos\theta`). With
  :math:`t = 1 - s^2`, :math:`\phi^2 = s^2h^2 + t\,h_+^2`, :math:`(\phi^2)'' = 2s^2 + 2t\,
  \Theta(h)` (no Dirac term: :math:`h^2\delta(h) = 0`), so

  .. math::

      \mathrm{Cov}[\phi^2(h^{(j)}), \phi^2(h^{(k)})] = 2 s^2 k_1^2
          + t^2 k_1 k_2 \Bigl(\frac{J_2(\theta)}{2\pi} - \frac14\Bigr), \qquad
      \mathrm{Cov}[\phi^2(h), h^2] = (1 + s^2) K^2,

      \tfrac12\mathrm{Cov}[\phi^2(h^{(j)}), (\phi^2)''(h^{(k)})] = t^2 k_1
          \Bigl(\frac{\pi - \theta + \sin\theta\cos\theta}{2\pi} - \frac14\Bigr).

* **several inputs** (:func:`_pl_element_moments`, the pairs method): the inner average over
  the later layer given the earlier one, :math:`g(m) = \mathbb E[\phi(y_1)\phi(y_2)]` for
  :math:`y \sim \mathcal N(m, S)`, and its Hessian in ``m`` (the Dirac terms included:
  :math:`\partial^2_{m_1} g = (1 - s)\,\mathbb E[\delta(y_1)\phi(y_2)]`) in closed form
  (:func:`_pl_inner`, Stein's identity and the bivariate normal CDF
  :func:`~fieldres.finite_width.moments.bvn_excess`); the outer 2-D Gaussian integral in
  polar coordinates, with Gauss--Legendre panels in the angle ending at every ray on which
  an argument of :math:`\phi` vanishes (the integrand is analytic inside each panel) and
  Gauss--Legendre panels in the radius.

References:
    Y. Cho and L. K. Saul, *Kernel methods for deep learning*, NeurIPS 2009 (the arc-cosine
    kernels :math:`J_n`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.activations import Activation, LeakyReLU, ReLU
from ..kernels.quadrature import gauss_legendre

#: Radial panel ends of the polar rule (``exp(-13^2/2) ~ 1e-37`` beyond).
_RADIAL_ENDS = (0.0, 2.0, 4.0, 6.5, 9.5, 13.0)
#: Default Gauss--Legendre nodes per angular and per radial panel (calibrated in
#: tests/test_finite_width_relu.py: ~1e-13 against twice the nodes).
N_ANGLE = 16
N_RADIUS = 16


def piecewise_slope(act: Activation) -> float | None:
    """The negative-side slope ``s`` of a registered piecewise-linear activation (ReLU:
    ``0``, leaky ReLU: its slope) or ``None`` for any other activation."""
    if isinstance(act, ReLU):
        return 0.0
    if isinstance(act, LeakyReLU):
        return float(act.slope)
    return None


def _pl_phi(y, s):
    return jnp.where(y > 0, y, s * y)


def _norm_cdf(x):
    return jax.scipy.special.ndtr(x)


def _norm_pdf(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _pl_single_moments(K, s):
    """Closed-form single-input moments along the depth (see the module docstring).

    ``K``: ``(n,)`` leading-order kernels. Returns ``U[j, k] = Cov[phi^2(h^(j)),
    phi^2(h^(k))]`` and ``Y[j, k] = 1/2 Cov[phi^2(h^(j)), (phi^2)''(h^(k))]`` for ``j <= k``
    (zero below the diagonal) and ``c[j] = Cov[phi^2(h^(j)), (h^(j))^2]``.
    """
    n = K.shape[0]
    j, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    upper = jnp.asarray(j <= k)
    k1 = K[np.minimum(j, k)]
    k2 = K[np.maximum(j, k)]
    d = jnp.maximum(k2 - k1, 0.0)
    cos = jnp.sqrt(k1 / k2)
    sin = jnp.sqrt(d / k2)
    th = jnp.arctan2(sin, cos)
    t = 1.0 - s * s
    J2 = 3.0 * sin * cos + (jnp.pi - th) * (1.0 + 2.0 * cos * cos)
    U = 2.0 * s * s * k1 * k1 + t * t * k1 * k2 * (J2 / (2.0 * jnp.pi) - 0.25)
    B20 = (jnp.pi - th + sin * cos) / (2.0 * jnp.pi)
    Y = t * t * k1 * (B20 - 0.25)
    c = (1.0 + s * s) * K * K
    return jnp.where(upper, U, 0.0), c, jnp.where(upper, Y, 0.0)


def _pl_inner(m, S, s, n_theta, tol=0.0):
    r"""``E[phi(y1) phi(y2)]`` and its Hessian in ``m`` for ``y ~ N(m, S)``, ``phi`` piecewise
    linear with slope ``s`` below zero.

    ``m``: ``(..., 2)``; ``S``: ``(2, 2)``. Returns value ``(...)`` and Hessian ``(..., 2, 2)``.
    With ``p = 1 - s``, ``phi(y) = s y + p y_+`` and, by Stein's identity
    :math:`\mathbb E[y_a f(y)] = m_a\mathbb E f + \sum_b S_{ab}\mathbb E\,\partial_b f`,

    * :math:`\mathbb E[y_{1+} y_{2+}] = m_1 A + S_{11} B_1 + S_{12}\Phi_2`,
      :math:`A = \mathbb E[\Theta(y_1) y_{2+}]`, :math:`B_1 = \mathbb E[\delta(y_1) y_{2+}]`,
      :math:`\Phi_2 = \mathbb E[\Theta(y_1)\Theta(y_2)]`; its Hessian is
      :math:`((B_1, \Phi_2), (\Phi_2, B_2))`;
    * :math:`\mathbb E[y_1 y_{2+}] = m_1(m_2\Phi(u_2) + s_2\varphi(u_2)) + S_{12}\Phi(u_2)`,
      Hessian :math:`((0, \Phi(u_2)), (\Phi(u_2), \mathbb E[y_1\delta(y_2)]))`.

    Three regimes: ``S_11 = 0`` or ``S_22 = 0`` (a coordinate at the same layer as the outer
    variables: ``phi(m_1) E phi(y_2)`` etc.; the Hessian is then a distribution and is
    returned as zero, the theory uses it only between different layers), ``S`` of rank
    one with correlation ``+1`` (one input twice: ``E[phi(y)^2]``, Hessian
    ``((0, E phi'^2), (E phi'^2, 0))`` as ``phi(0) = 0``) and ``S`` positive definite.
    Opposite inputs (correlation ``-1``) are not supported. Variances ``<= tol`` count as
    zero (rounding of the factor of a singular covariance).
    """
    from .moments import bvn_excess

    p = 1.0 - s
    m1, m2 = m[..., 0], m[..., 1]
    S11, S22, S12 = S[0, 0], S[1, 1], S[0, 1]
    z1, z2 = S11 <= tol, S22 <= tol
    zero = z1 | z2
    s1 = jnp.sqrt(jnp.where(z1, 1.0, S11))
    s2 = jnp.sqrt(jnp.where(z2, 1.0, S22))
    r = jnp.clip(jnp.where(zero, 0.0, S12) / (s1 * s2), -1.0, 1.0)
    q2 = 1.0 - r * r
    one = (q2 < 1e-10) & (r > 0) & ~zero
    q = jnp.sqrt(jnp.where(one, 1.0, jnp.maximum(q2, 1e-14)))
    u1, u2 = m1 / s1, m2 / s2
    F1, F2 = _norm_cdf(u1), _norm_cdf(u2)
    f1, f2 = _norm_pdf(u1), _norm_pdf(u2)
    w21, w12 = (u2 - r * u1) / q, (u1 - r * u2) / q
    P2 = F1 * F2 + bvn_excess(u1, u2, jnp.where(one, 0.0, r), n_theta)
    B1 = f1 * (s2 / s1) * ((u2 - r * u1) * _norm_cdf(w21) + q * _norm_pdf(w21))
    B2 = f2 * (s1 / s2) * ((u1 - r * u2) * _norm_cdf(w12) + q * _norm_pdf(w12))
    A = m2 * P2 + S12 * f1 * _norm_cdf(w21) / s1 + S22 * f2 * _norm_cdf(w12) / s2
    RR = m1 * A + S11 * B1 + S12 * P2
    LR = m1 * (m2 * F2 + s2 * f2) + S12 * F2
    RL = m2 * (m1 * F1 + s1 * f1) + S12 * F1
    LL = m1 * m2 + S12
    val = s * s * LL + s * p * (LR + RL) + p * p * RR
    h12 = s * s + s * p * (F1 + F2) + p * p * P2
    h11 = s * p * f1 / s1 * (m2 - r * s2 * u1) + p * p * B1
    h22 = s * p * f2 / s2 * (m1 - r * s1 * u2) + p * p * B2

    # One input twice (y1 = y2 - m2 + m1, in practice m1 = m2): E[phi(y)^2], y ~ N(m1, S11).
    ey2 = m1 * m1 + S11
    val_one = s * s * ey2 + (1.0 - s * s) * (ey2 * F1 + m1 * s1 * f1)
    h12_one = s * s + (1.0 - s * s) * F1
    # A coordinate without smoothing (the same layer as the outer one): phi(m_a) E phi(y_b).
    e1 = jnp.where(z1, _pl_phi(m1, s), s * m1 + p * (m1 * F1 + s1 * f1))
    e2 = jnp.where(z2, _pl_phi(m2, s), s * m2 + p * (m2 * F2 + s2 * f2))
    val_zero = e1 * e2

    val = jnp.where(zero, val_zero, jnp.where(one, val_one, val))
    h12 = jnp.where(zero, 0.0, jnp.where(one, h12_one, h12))
    h11 = jnp.where(zero | one, 0.0, h11)
    h22 = jnp.where(zero | one, 0.0, h22)
    H = jnp.stack([jnp.stack([h11, h12], -1), jnp.stack([h12, h22], -1)], -2)
    return val, H


def _radial_rule(n_rad):
    """Nodes ``r`` and weights of ``int_0^inf dr r exp(-r^2/2) (.)`` (panels, Gauss--Legendre)."""
    x, w = gauss_legendre(n_rad)
    rs, ws = [], []
    for a, b in zip(_RADIAL_ENDS[:-1], _RADIAL_ENDS[1:], strict=True):
        r = 0.5 * (b - a) * x + 0.5 * (a + b)
        rs.append(r)
        ws.append(0.5 * (b - a) * w * r * np.exp(-0.5 * r * r))
    return np.concatenate(rs), np.concatenate(ws)


def _half_line_rule(n_rad):
    """Nodes and weights of the ``N(0, 1)`` average on the real line, split at zero."""
    x, w = gauss_legendre(n_rad)
    zs, ws = [], []
    for a, b in zip(_RADIAL_ENDS[:-1], _RADIAL_ENDS[1:], strict=True):
        z = 0.5 * (b - a) * x + 0.5 * (a + b)
        zs.append(z)
        ws.append(0.5 * (b - a) * w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    z, wz = np.concatenate(zs), np.concatenate(ws)
    return np.concatenate([-z, z]), np.concatenate([wz, wz])


def _polar_nodes(rows, n_ang, n_rad, dt):
    """Polar rule for a ``N(0, I_2)`` average whose integrand has kinks on the lines
    ``rows[i] . z = 0`` (``rows``: ``(k, 2)``): angular panels end on their rays."""
    alpha = jnp.arctan2(rows[:, 0], -rows[:, 1])  # direction of the line rows[i] . z = 0
    two_pi = 2.0 * jnp.pi
    rays = jnp.concatenate([jnp.mod(alpha, two_pi), jnp.mod(alpha + jnp.pi, two_pi)])
    ends = jnp.sort(jnp.concatenate([jnp.zeros(1, dt), rays, jnp.full(1, two_pi, dt)]))
    x, w = (jnp.asarray(a, dt) for a in gauss_legendre(n_ang))
    lo, hi = ends[:-1, None], ends[1:, None]
    th = (0.5 * (hi - lo) * x + 0.5 * (hi + lo)).reshape(-1)
    wth = (0.5 * (hi - lo) * w).reshape(-1) / two_pi
    r, wr = (jnp.asarray(a, dt) for a in _radial_rule(n_rad))
    z = jnp.stack([jnp.cos(th)[:, None] * r, jnp.sin(th)[:, None] * r], -1).reshape(-1, 2)
    return z, (wth[:, None] * wr).reshape(-1)


def _pl_element_moments(Sig, s, rank1, n_ang, n_rad, n_theta):
    """:func:`fieldres.finite_width.moments._element_moments` for a piecewise-linear ``phi``.

    Same outputs ``(cCC, cKC, cCK, Y)`` for the 4-D Gaussian ``(x1, x2, y1, y2)`` with
    covariance ``Sig``: the inner average in closed form (:func:`_pl_inner`), the outer one by
    the polar rule with panel ends on the kinks (``rank1``: ``x1 = x2``, a 1-D rule split at
    zero).
    """
    from .moments import _psd_factor

    dt = Sig.dtype
    F = _psd_factor(Sig)
    if rank1:
        zz, wo = (jnp.asarray(a, dt) for a in _half_line_rule(n_rad))
        z = jnp.stack([zz, jnp.zeros_like(zz)], -1)
    else:
        z, wo = _polar_nodes(F[:, :2], n_ang, n_rad, dt)
    x = z @ F[:2, :2].T
    m = z @ F[2:, :2].T
    F22 = F[2:, 2:]
    S = F22 @ F22.T
    fC = _pl_phi(x[:, 0], s) * _pl_phi(x[:, 1], s)
    fK = x[:, 0] * x[:, 1]
    gC, H = _pl_inner(m, S, s, n_theta, 1e-12 * jnp.max(jnp.diagonal(Sig)))
    gK = m[:, 0] * m[:, 1] + S[0, 1]

    def centred(v):
        return v - jnp.sum(wo * v, 0)

    fC, fK, gC, gK = centred(fC), centred(fK), centred(gC), centred(gK)
    H = H - jnp.einsum("n,nab->ab", wo, H)
    return (jnp.sum(wo * fC * gC), jnp.sum(wo * fK * gC), jnp.sum(wo * fC * gK),
            jnp.einsum("n,n,nab->ab", wo, fC, H))
