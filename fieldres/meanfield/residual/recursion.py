# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""The Yang--Schoenholz mean-field recursions of the FRN and the RRN, and the
:math:`\alpha`-ReLU activation."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import check_depth, check_kernel, check_nonnegative
from ...kernels.activations import Activation, get_activation
from ...kernels.quadrature import tanh_sinh
from ..feedforward import derivative_variance

KINDS = ("full", "reduced")


# ----------------------------------------------------------------------------------------
# alpha-ReLU: phi(x) = max(x, 0)^alpha
# ----------------------------------------------------------------------------------------


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

    def __init__(self, alpha: float):
        alpha = float(alpha)
        if not (0.0 < alpha <= 2.0):
            raise ValueError(f"alpha-ReLU needs 0 < alpha <= 2, got alpha = {alpha}")
        self.alpha = alpha
        self.name = f"alpha-relu({alpha:g})"

    def fn(self, x):
        x = jnp.asarray(x)
        pos = x > 0
        return jnp.where(pos, jnp.where(pos, x, 1.0) ** self.alpha, 0.0)

    def variance(self, k):
        k = jnp.asarray(k)
        return _c_alpha(self.alpha) * jnp.maximum(k, 0.0) ** self.alpha

    def derivative_variance(self, k):
        r""":math:`\mathbb E[\phi'(\sqrt k z)^2] = \alpha^2 c_{\alpha-1} k^{\alpha-1}` (``alpha > 1/2``)."""
        if self.alpha <= 0.5:
            raise ValueError(
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
        r""":math:`J_\alpha(c) = \tilde J_\alpha(c)/\tilde J_\alpha(1)`: the correlation map at large length."""
        return _jtilde(jnp.asarray(c, float), self.alpha) / _c_alpha(self.alpha)


def resolve_activation(activation: Any, alpha: float | None = None) -> Activation:
    """``"tanh" | "relu" | "erf" | "alpha-relu"`` (with ``alpha``), an Activation or a callable."""
    if isinstance(activation, str) and activation.lower().replace("_", "-") in (
        "alpha-relu", "alpharelu", "arelu"
    ):
        if alpha is None:
            raise ValueError("activation 'alpha-relu' needs alpha (e.g. --alpha 0.8)")
        return AlphaReLU(alpha)
    if alpha is not None:
        raise ValueError(f"alpha is only used with activation 'alpha-relu', got {activation!r}")
    return get_activation(activation)


# ----------------------------------------------------------------------------------------
# The recursions
# ----------------------------------------------------------------------------------------


class ResHyper(eqx.Module):
    r"""Variances of Yang & Schoenholz's residual nets (array leaves, differentiable).

    ``sigma_w2``, ``sigma_b2``: the weights and biases applied to :math:`x` (FRN) or to
    :math:`\phi(x)` (RRN). ``sigma_v2``, ``sigma_a2``: the second (output) weights and biases
    of an FRN block (unused by the RRN).
    """

    sigma_w2: ArrayLike = 1.0
    sigma_b2: ArrayLike = 0.0
    sigma_v2: ArrayLike = 1.0
    sigma_a2: ArrayLike = 0.0

    def __check_init__(self):
        for name in ("sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2"):
            check_nonnegative(name, getattr(self, name))


def _branch(kind: str, hyper: ResHyper):
    """``(omega, beta_in, a, beta)``: q = omega p + beta_in; increment a V(q) + beta."""
    if kind == "full":
        return hyper.sigma_w2, hyper.sigma_b2, hyper.sigma_v2, hyper.sigma_a2
    return 1.0, 0.0, hyper.sigma_w2, hyper.sigma_b2


class ResMeanField(eqx.Module):
    r"""Mean-field trajectories of a residual net, layers :math:`l = 0, \dots, L`.

    Attributes
    ----------
    p, p2:
        Lengths :math:`p^{(l)}` of the two inputs' :math:`x^{(l)}`.
    gamma:
        :math:`\gamma^{(l)}`; ``nan`` for a single input.
    e:
        Correlation :math:`\gamma/\sqrt{p p'}`.
    s:
        Squared distance :math:`p + p' - 2\gamma`.
    q:
        Variance of the activation's input in layer :math:`l` (:math:`h^{(l)}` of the FRN,
        :math:`x^{(l-1)}` of the RRN); ``q[0]`` is ``nan``.
    log_chi_ratio:
        :math:`\log\chi^{(0)}/\chi^{(l)}` (0 at ``l = 0``).
    """

    p: Float[Array, " Lp1"]
    p2: Float[Array, " Lp1"]
    gamma: Float[Array, " Lp1"]
    e: Float[Array, " Lp1"]
    s: Float[Array, " Lp1"]
    q: Float[Array, " Lp1"]
    log_chi_ratio: Float[Array, " Lp1"]
    kind: str = eqx.field(static=True)

    @property
    def chi_ratio(self) -> Array:
        r""":math:`\chi^{(0)}/\chi^{(l)}`."""
        return jnp.exp(self.log_chi_ratio)

    @property
    def layers(self) -> np.ndarray:
        return np.arange(self.p.shape[-1])


def _propagate(K0, hyper, act, depth, kind):
    omega, beta_in, a, beta = _branch(kind, hyper)
    P = K0.shape[-1]

    def body(carry, _):
        K, logchi = carry
        Q = omega * K + beta_in
        K_new = K + a * act.kernel(Q) + beta
        factor = 1.0 + a * omega * derivative_variance(act, Q[0, 0])
        logchi = logchi + jnp.log(factor)
        return (K_new, logchi), (K_new, Q[0, 0], logchi)

    zero = jnp.zeros((), K0.dtype)
    _, (Ks, qs, logchis) = jax.lax.scan(body, (K0, zero), None, length=depth)
    Ks = jnp.concatenate([K0[None], Ks])
    qs = jnp.concatenate([jnp.full((1,), jnp.nan, K0.dtype), qs])
    logchis = jnp.concatenate([zero[None], logchis])
    p = Ks[:, 0, 0]
    if P == 1:
        nan = jnp.full_like(p, jnp.nan)
        return p, p, nan, nan, nan, qs, logchis
    p2, g = Ks[:, 1, 1], Ks[:, 0, 1]
    return p, p2, g, g / (jnp.sqrt(p) * jnp.sqrt(p2)), p + p2 - 2.0 * g, qs, logchis


@eqx.filter_jit
def _propagate_jit(K0, hyper, act, depth, kind):
    return _propagate(K0, hyper, act, depth, kind)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (full / reduced residual net), got {kind!r}")
    return kind


def _as_K0(K0) -> Array:
    K0 = jnp.asarray(K0, dtype=jnp.result_type(float))
    if K0.ndim == 0:
        K0 = K0.reshape(1, 1)
    check_kernel(K0)
    if K0.shape[0] > 2:
        raise ValueError(f"K0 must be 1 x 1 (one input) or 2 x 2 (two inputs), got {K0.shape}")
    return K0


def resnet_meanfield(
    kind: str = "full",
    depth: int = 100,
    hyper: ResHyper = ResHyper(),
    activation: str | Activation | Callable = "tanh",
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
) -> ResMeanField:
    r"""Mean-field trajectories :math:`p, \gamma, e, s, q, \chi^{(0)}/\chi^{(l)}` of an FRN/RRN.

    ``K0`` is the kernel of the inputs :math:`x^{(0)}` (``1 x 1`` or ``2 x 2``). The layer
    loop is a ``lax.scan`` (one compilation per depth); vmap over ``hyper`` for grids.

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> from fieldres.meanfield.residual import ResHyper, resnet_meanfield
    >>> mf = resnet_meanfield("full", 3, ResHyper(sigma_w2=1.0, sigma_v2=1.0), "relu", K0=[[1.0]])
    >>> [round(float(x), 6) for x in mf.p]          # p grows by (1 + sigma_v^2 sigma_w^2 / 2)
    [1.0, 1.5, 2.25, 3.375]
    """
    _check_kind(kind)
    check_depth(depth)
    K0 = _as_K0(K0)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    hyper = jax.tree.map(lambda x: jnp.asarray(x, K0.dtype), hyper)
    out = _propagate_jit(K0, hyper, act, int(depth), kind)
    return ResMeanField(*out, kind=kind)
