"""alpha-ReLU, ``phi(x) = max(x, 0)^alpha``: closed-form Gaussian moments (registry name
``alpha-relu:ALPHA`` in :func:`fieldres.kernels.activations.get_activation`).

References:
    G. Yang, S. S. Schoenholz, *Mean field residual networks: on the edge of chaos*,
    NeurIPS 2017, arXiv:1712.08969.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .._validation import FieldresInputError
from .activations import Activation, _as_float
from .quadrature import tanh_sinh

__all__ = ["AlphaReLU"]


def _c_alpha(a: float) -> float:
    r""":math:`\mathbb E[\max(z, 0)^{2a}] = 2^{a-1}\Gamma(a + 1/2)/\sqrt\pi` (``a > -1/2``)."""
    return 2.0 ** (a - 1.0) * math.gamma(a + 0.5) / math.sqrt(math.pi)


def _jtilde_value(c, a: float):
    r""":math:`\mathbb E[\max(z_1,0)^a \max(z_2,0)^a]` for unit variances and correlation ``c``.

    Polar coordinates: the radius gives :math:`2^a\Gamma(a+1)/(2\pi)`, the angle
    :math:`\int_{-w/2}^{w/2} [\sin(w/2-\psi)\sin(w/2+\psi)]^a d\psi`, :math:`w = \pi - \arccos c`,
    integrated by tanh-sinh quadrature (endpoint powers of any sign; ``1e-14`` for
    ``a >= 0``, ``1e-11`` for ``a > -1/2`` up to ``1 - c = 1e-10``). At ``c = 1`` the closed
    form :math:`\mathbb E[\max(z,0)^{2a}]` is used.
    """
    dtype = jnp.result_type(c, float)
    u, wt = (jnp.asarray(x, dtype) for x in tanh_sinh())
    cc = jnp.clip(c, -1.0, 1.0)
    w = jnp.pi - jnp.arccos(cc)
    w_ = w[..., None]
    lo = w_ * jax.nn.sigmoid(-2.0 * u)  # w/2 - psi, accurate near the end point
    hi = w_ * jax.nn.sigmoid(2.0 * u)  # w/2 + psi
    dpsi = 0.5 * w_ * wt / jnp.cosh(u) ** 2
    ok = (dpsi > 0) & (lo > 0) & (hi > 0)
    f = jnp.where(ok, (jnp.sin(jnp.where(ok, lo, 1.0)) * jnp.sin(jnp.where(ok, hi, 1.0))) ** a,
                  0.0)
    val = 2.0**a * math.gamma(a + 1.0) / (2.0 * math.pi) * jnp.sum(f * dpsi, axis=-1)
    return jnp.where(cc >= 1.0, _c_alpha(a), val)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _jtilde(c, a: float):
    return _jtilde_value(c, a)


@_jtilde.defjvp
def _jtilde_jvp(a, primals, tangents):
    (c,), (dc,) = primals, tangents
    # Price's theorem: d/dc E[phi_a(z1) phi_a(z2)] = a^2 E[phi_{a-1}(z1) phi_{a-1}(z2)]
    return _jtilde(c, a), a * a * _jtilde(c, a - 1.0) * dc


class AlphaReLU(Activation):
    r""":math:`\phi(x) = \max(x, 0)^\alpha` with closed-form Gaussian moments.

    :math:`\mathbb E\phi(\sqrt q z)^2 = c_\alpha q^\alpha`, :math:`c_\alpha = 2^{\alpha-1}
    \Gamma(\alpha+\tfrac12)/\sqrt\pi`; :math:`\mathbb E\phi'(\sqrt q z)^2 = \alpha^2
    c_{\alpha-1} q^{\alpha-1}` (finite for :math:`\alpha > 1/2`); the covariance is
    :math:`(K_{aa}K_{bb})^{\alpha/2}\,\tilde J_\alpha(c)` with :math:`\tilde J_\alpha` a
    one-dimensional angular integral (tanh-sinh quadrature) whose derivative is
    :math:`\alpha^2\tilde J_{\alpha-1}` (Price). ``alpha = 1`` is ReLU.
    """

    alpha: float = eqx.field(static=True)
    name: str = eqx.field(static=True)
    kinks: ClassVar[tuple[float, ...]] = (0.0,)

    def __init__(self, alpha: float):
        alpha = float(alpha)
        if not (0.0 < alpha <= 2.0):
            raise FieldresInputError(f"alpha-ReLU needs 0 < alpha <= 2, got alpha = {alpha}")
        self.alpha = alpha
        self.name = f"alpha-relu({alpha:g})"

    def fn(self, x):
        x = jnp.asarray(x)
        pos = x > 0
        return jnp.where(pos, jnp.where(pos, x, 1.0) ** self.alpha, 0.0)

    def derivative(self, x, order=1):
        if int(order) == 1:
            x = _as_float(x)
            pos = x > 0
            return jnp.where(pos, self.alpha * jnp.where(pos, x, 1.0) ** (self.alpha - 1.0),
                             0.0)
        return super().derivative(x, order)

    def variance(self, k):
        k = jnp.asarray(k)
        return _c_alpha(self.alpha) * jnp.maximum(k, 0.0) ** self.alpha

    def derivative_variance(self, k):
        r""":math:`\mathbb E[\phi'(\sqrt k z)^2] = \alpha^2 c_{\alpha-1} k^{\alpha-1}`.

        Finite for ``alpha > 1/2`` only (``ValueError`` otherwise).
        """
        if self.alpha <= 0.5:
            raise FieldresInputError(
                f"E[phi'^2] diverges for alpha-ReLU with alpha <= 1/2 (got {self.alpha})")
        k = jnp.asarray(k)
        return self.alpha**2 * _c_alpha(self.alpha - 1.0) * k ** (self.alpha - 1.0)

    def covariance(self, kaa, kbb, kab):
        kaa, kbb, kab = jnp.broadcast_arrays(*map(jnp.asarray, (kaa, kbb, kab)))
        # sqrt(kaa) sqrt(kbb), not sqrt(kaa kbb): no overflow for lengths beyond 1e154
        root = jnp.sqrt(kaa) * jnp.sqrt(kbb)
        c = kab / root
        # identical inputs give c = 1 up to rounding; snap it (the kernel is not analytic at
        # c = 1, so a rounding error would show in its derivative) and clip, values only
        eps = 4.0 * jnp.finfo(c.dtype).eps
        snapped = jnp.where(jnp.abs(c) > 1.0 - eps, jnp.sign(c), c)
        c = c - jax.lax.stop_gradient(c - snapped)
        return root**self.alpha * _jtilde(c, self.alpha)

    def normalised_kernel(self, c):
        r""":math:`J_\alpha(c) = \tilde J_\alpha(c)/\tilde J_\alpha(1)`.

        The correlation map at large length.
        """
        return _jtilde(jnp.asarray(c, float), self.alpha) / _c_alpha(self.alpha)
