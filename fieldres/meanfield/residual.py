# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Mean-field theory of residual networks at initialisation (Yang & Schoenholz 2017).

Two architectures of width :math:`N` (Yang & Schoenholz, arXiv:1712.08969, Sec. 2), with
independent weights in every layer :math:`l = 1, \dots, L`:

*reduced* residual network (RRN),

.. math::

    x^{(l)} = x^{(l-1)} + W^{(l)} \phi(x^{(l-1)}) + b^{(l)},
    \qquad W_{ij} \sim \mathcal N(0, \sigma_w^2/N),\ b_i \sim \mathcal N(0, \sigma_b^2),

*full* residual network (FRN),

.. math::

    h^{(l)} = W^{(l)} x^{(l-1)} + b^{(l)}, \qquad
    x^{(l)} = x^{(l-1)} + V^{(l)} \phi(h^{(l)}) + a^{(l)},
    \qquad V_{ij} \sim \mathcal N(0, \sigma_v^2/N),\ a_i \sim \mathcal N(0, \sigma_a^2).

(The RRN is the ResNet of ``THEORY.md`` Sec. 1 at :math:`\rho = 1`.) For :math:`N\to\infty`
the neurons are Gaussian; with :math:`p^{(l)} = \mathbb E[(x^{(l)}_i)^2]`,
:math:`\gamma^{(l)} = \mathbb E[x^{(l)}_i x'^{(l)}_i]` for two inputs, and for the FRN
:math:`q^{(l)} = \mathbb E[(h^{(l)}_i)^2] = \sigma_w^2 p^{(l-1)} + \sigma_b^2`,
:math:`\lambda^{(l)} = \sigma_w^2 \gamma^{(l-1)} + \sigma_b^2`,

.. math::

    \text{FRN:}\quad p^{(l)} = p^{(l-1)} + \sigma_v^2\, \mathcal V\phi(q^{(l)}) + \sigma_a^2, \qquad
    \gamma^{(l)} = \gamma^{(l-1)} + \sigma_v^2\, \mathcal W\phi(q^{(l)}, \lambda^{(l)}) + \sigma_a^2,

    \text{RRN:}\quad p^{(l)} = p^{(l-1)} + \sigma_w^2\, \mathcal V\phi(p^{(l-1)}) + \sigma_b^2, \qquad
    \gamma^{(l)} = \gamma^{(l-1)} + \sigma_w^2\, \mathcal W\phi(p^{(l-1)}, \gamma^{(l-1)}) + \sigma_b^2,

with :math:`\mathcal V\phi(q) = \mathbb E[\phi(\sqrt q z)^2]` and :math:`\mathcal W\phi` the
covariance of :math:`\phi` for the bivariate Gaussian (the C-map of
:mod:`fieldres.kernels.activations`; for unequal lengths the full :math:`2\times 2` kernel is
propagated). The correlation is :math:`e^{(l)} = \gamma^{(l)}/\sqrt{p^{(l)}p'^{(l)}}` and the
squared distance :math:`s^{(l)} = p^{(l)} + p'^{(l)} - 2\gamma^{(l)}`. Back-propagated
gradients (with the gradient-independence assumption, Yang & Schoenholz's Axiom 3.2)
grow by

.. math::

    \frac{\chi^{(l-1)}}{\chi^{(l)}} = 1 + \sigma_v^2\sigma_w^2\, \mathcal V\phi'(q^{(l)}) \;\;\text{(FRN)},
    \qquad 1 + \sigma_w^2\, \mathcal V\phi'(p^{(l-1)}) \;\;\text{(RRN)},

so :math:`\chi^{(0)}/\chi^{(l)}` is the product of these factors over the first :math:`l`
layers (the same factor multiplies :math:`\mathbb E\|J u\|^2` of a forward tangent, which
is how :func:`simulate_resnet` measures it).

Large-depth laws (derived in ``docs/resnet_meanfield.md``; :func:`asymptotic_laws`), with
:math:`(a, \beta) = (\sigma_v^2, \sigma_a^2)`, :math:`\omega = \sigma_w^2` for the FRN and
:math:`(a, \beta) = (\sigma_w^2, \sigma_b^2)`, :math:`\omega = 1` for the RRN:

* tanh (any odd activation saturating at :math:`\pm 1`): :math:`p \simeq (a + \beta) l`;
  :math:`\log \chi^{(0)}/\chi^{(l)} \simeq A\sqrt l`, :math:`A = 2 a\sqrt\omega I_2/\sqrt{2\pi(a+\beta)}`,
  :math:`I_2 = \int \phi'^2` (a stretched exponential); :math:`e \to e^*` with
  :math:`(a+\beta)e^* = a\,\tfrac2\pi\arcsin e^* + \beta` as :math:`l^{-\delta}`,
  :math:`\delta = 1 - \tfrac{a}{a+\beta}\tfrac{2}{\pi\sqrt{1-e^{*2}}}`; :math:`s \simeq 2(a+\beta)(1-e^*) l`.
* ReLU: :math:`p, \chi^{(0)}/\chi^{(l)} \propto (1 + a\omega/2)^l`;
  :math:`1 - e \simeq 4/(k l)^2`, :math:`k = \tfrac{r}{1+r}\tfrac{2\sqrt2}{3\pi}`, :math:`r = a\omega/2`;
  :math:`s \propto (1 + a\omega/2)^l\, l^{-2}`.
* :math:`\alpha`-ReLU, :math:`\phi = \max(x, 0)^\alpha`, :math:`\tfrac12 < \alpha < 1`:
  :math:`p \simeq [(1-\alpha) a c_\alpha \omega^\alpha l]^{1/(1-\alpha)}`;
  :math:`\chi^{(0)}/\chi^{(l)} = \Theta(l^{\alpha^2/((1-\alpha)(2\alpha-1))})`; :math:`e \to e^*`,
  the fixed point of the normalised kernel :math:`J_\alpha(e^*) = e^*`, as :math:`l^{-\delta}`,
  :math:`\delta = (1 - J_\alpha'(e^*))/(1-\alpha)`; :math:`s \simeq 2(1-e^*)p`.

References:
    G. Yang, S. S. Schoenholz, *Mean Field Residual Networks: On the Edge of Chaos*,
    NeurIPS 2017, arXiv:1712.08969 (Secs. 3-5, Fig. 3).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import scipy.optimize
import scipy.special
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validation import check_depth, check_kernel, check_nonnegative
from ..kernels.activations import Activation, Erf, GaussHermite, ReLU, get_activation
from ..kernels.quadrature import tanh_sinh
from ..meanfield.feedforward import derivative_variance
from ..simulation.sampler import affine, gaussian_rows, kernel_factor, scan_layers
from ..simulation.stats import RunningMoments, batch_ranges, masked_moments, network_keys

__all__ = [
    "AlphaReLU",
    "ResHyper",
    "ResMeanField",
    "Law",
    "Fit",
    "ResSimulation",
    "resolve_activation",
    "resnet_meanfield",
    "asymptotic_laws",
    "fit_law",
    "fit_laws",
    "simulate_resnet",
    "initialisation_for_level",
    "xavier_he_comparison",
    "plot_laws",
    "KINDS",
]

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


# ----------------------------------------------------------------------------------------
# Asymptotic laws (derived) and fits (of the recursion or of simulations)
# ----------------------------------------------------------------------------------------


class Law(NamedTuple):
    r"""A derived large-depth law of one quantity.

    ``form``:
      ``"power"``: :math:`y \simeq C l^\kappa`;
      ``"approach"``: :math:`|y - y_\infty| \simeq C l^{-\kappa}` (``limit`` = :math:`y_\infty`);
      ``"stretched"``: :math:`\log y \simeq C l^\kappa` (``y`` = :math:`\chi^{(0)}/\chi^{(l)}`);
      ``"exponential"``: :math:`\log y \simeq \kappa\, l + \mu \log l + \mathrm{const}`
      (``log_power`` = :math:`\mu`).
    """

    quantity: str
    form: str
    exponent: float
    coefficient: float = math.nan
    limit: float = math.nan
    log_power: float = 0.0
    correction: float = math.nan  # exponent of the leading relative correction, for fits
    note: str = ""
    forcing: bool = True  # "approach": whether finite-length terms force y - y_inf directly


def _saturating_odd(act: Activation) -> float | None:
    r""":math:`I_2 = \int\phi'(x)^2 dx` for tanh/erf (odd, :math:`\phi(\pm\infty) = \pm 1`), else None."""
    if isinstance(act, Erf) or act.name in ("erf-quadrature",):
        return 4.0 / math.sqrt(2.0 * math.pi)
    if isinstance(act, GaussHermite) and act.name == "tanh":
        return 4.0 / 3.0
    return None


def _tanh_e_star(a: float, beta: float) -> float:
    B = a + beta
    if beta == 0.0:
        return 0.0
    g = lambda e: a * (2.0 / math.pi) * math.asin(e) + beta - B * e  # noqa: E731
    return float(scipy.optimize.brentq(g, 0.0, 1.0 - 1e-15, xtol=1e-16, rtol=1e-15))


def _alpha_e_star(act: AlphaReLU) -> tuple[float, float]:
    """Fixed point of the normalised kernel and its slope there."""
    J = lambda e: float(act.normalised_kernel(e))  # noqa: E731
    e_star = float(scipy.optimize.brentq(lambda e: J(e) - e, 0.0, 1.0 - 1e-9, xtol=1e-15,
                                         rtol=1e-15))
    slope = float(jax.grad(lambda e: act.normalised_kernel(e))(jnp.asarray(e_star)))
    return e_star, slope


def asymptotic_laws(
    kind: str = "full",
    activation: str | Activation = "tanh",
    hyper: ResHyper = ResHyper(),
) -> dict[str, Law]:
    r"""The derived large-depth laws of :math:`p, e, s` and :math:`\chi^{(0)}/\chi^{(l)}`.

    Keys ``"p"``, ``"e"`` (for ReLU: ``"1-e"``), ``"s"``, ``"chi"``. Covers tanh and erf
    (odd, saturating), ReLU and :class:`AlphaReLU` with ``1/2 < alpha < 1``; other
    activations raise ``ValueError`` (their recursions still run in
    :func:`resnet_meanfield`). See the module docstring for the formulas.
    """
    _check_kind(kind)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    omega, _, a, beta = (float(x) for x in _branch(kind, hyper))
    if a <= 0:
        raise ValueError("the residual branch has zero variance (sigma_v2 or sigma_w2 = 0)")
    I2 = _saturating_odd(act)
    if I2 is not None:
        B = a + beta
        e_star = _tanh_e_star(a, beta)
        delta = 1.0 - (a / B) * (2.0 / math.pi) / math.sqrt(1.0 - e_star**2)
        A = 2.0 * a * math.sqrt(omega) * I2 / math.sqrt(2.0 * math.pi * B)
        # the O(q^-1/2) = O(l^-1/2) departures of tanh from sign() force e - e* at order
        # l^-1/2: the approach is l^-min(delta, 1/2)
        d_eff = min(delta, 0.5)
        return {
            "p": Law("p", "power", 1.0, B, correction=0.5,
                     note="p ~ (a + beta) l: the branch saturates, V(q) -> 1"),
            "e": Law("e", "approach", delta, limit=e_star, correction=0.5,
                     # no bias in the branch: e* = 0 is a symmetry point of the odd phi
                     forcing=beta != 0.0 or float(_branch(kind, hyper)[1]) != 0.0,
                     note="e - e* ~ A l^-delta + B l^-1/2 (observed decay l^-min(delta, 1/2)); "
                          "(a+beta) e* = a (2/pi) arcsin e* + beta, "
                          "delta = 1 - a/(a+beta) 2/(pi sqrt(1-e*^2))"),
            "s": Law("s", "power", 1.0, 2.0 * B * (1.0 - e_star), correction=d_eff,
                     note="s ~ 2 (a + beta)(1 - e*) l"),
            "chi": Law("chi", "stretched", 0.5, A, correction=0.5,
                       note="log chi0/chil ~ A sqrt(l), A = 2 a sqrt(omega) I2/sqrt(2 pi (a+beta))"),
        }
    if isinstance(act, ReLU) or (isinstance(act, AlphaReLU) and act.alpha == 1.0):
        r = a * omega / 2.0
        rate = math.log1p(r)
        k = (r / (1.0 + r)) * 2.0 * math.sqrt(2.0) / (3.0 * math.pi)
        return {
            "p": Law("p", "exponential", rate, note="p ~ (1 + a omega/2)^l"),
            "e": Law("1-e", "power", -2.0, 4.0 / k**2, limit=1.0, correction=1.0,
                     note="1 - e ~ 4/(k l)^2, k = r/(1+r) 2 sqrt(2)/(3 pi), r = a omega/2"),
            "s": Law("s", "exponential", rate, log_power=-2.0,
                     note="s ~ (1 + a omega/2)^l l^-2"),
            "chi": Law("chi", "exponential", rate, note="chi0/chil = (1 + a omega/2)^l exactly"),
        }
    if isinstance(act, AlphaReLU):
        al = act.alpha
        if not (0.5 < al < 1.0):
            raise ValueError(f"the alpha-ReLU laws are derived for 1/2 < alpha < 1, got {al}")
        A = a * _c_alpha(al) * omega**al
        beta_p = 1.0 / (1.0 - al)
        Cp = ((1.0 - al) * A) ** beta_p
        e_star, slope = _alpha_e_star(act)
        delta = (1.0 - slope) / (1.0 - al)
        # relative corrections that force e - e*: discreteness / initial length (l^-1) and
        # the additive bias of the length (l^-alpha/(1-alpha))
        force = 1.0 if beta == 0.0 else min(1.0, al / (1.0 - al))
        d_eff = min(delta, force)
        kappa = al**2 / ((1.0 - al) * (2.0 * al - 1.0))
        return {
            "p": Law("p", "power", beta_p, Cp, correction=1.0,
                     note="p ~ [(1-alpha) a c_alpha omega^alpha l]^(1/(1-alpha))"),
            "e": Law("e", "approach", delta, limit=e_star, correction=force,
                     forcing=beta != 0.0 or float(_branch(kind, hyper)[1]) != 0.0,
                     note="e - e* ~ A l^-delta + B l^-f (observed decay l^-min(delta, f)); "
                          "J_alpha(e*) = e*, delta = (1 - J_alpha'(e*))/(1 - alpha)"),
            "s": Law("s", "power", beta_p, 2.0 * (1.0 - e_star) * Cp, correction=d_eff,
                     note="s ~ 2 (1 - e*) p"),
            "chi": Law("chi", "power", kappa, correction=1.0,
                       note="chi0/chil ~ l^(alpha^2/((1-alpha)(2 alpha-1)))"),
        }
    raise ValueError(
        f"asymptotic laws are derived for tanh, erf, relu and alpha-relu, not {act.name!r}")


class Fit(NamedTuple):
    """A fitted large-depth law: exponent (or rate) with its least-squares standard error."""

    quantity: str
    form: str
    exponent: float
    stderr: float
    coefficient: float
    l_min: int
    l_max: int


def _lstsq(X, y):
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    dof = max(len(y) - X.shape[1], 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.pinv(X.T @ X)
    return coef, np.sqrt(np.maximum(np.diag(cov), 0.0))


def _tail(l, y, l_min, n_points=200):
    l = np.asarray(l, float)
    y = np.asarray(y, float)
    sel = (l >= l_min) & np.isfinite(y)
    l, y = l[sel], y[sel]
    if len(l) > n_points:  # geometric thinning: every decade weighs the same
        idx = np.unique(np.round(np.geomspace(1, len(l), n_points)).astype(int) - 1)
        l, y = l[idx], y[idx]
    return l, y


def _profile(lt, yt, design, grid):
    """Minimise the residual sum of squares of ``yt ~ design(kappa) @ coef`` over ``kappa``.

    Least squares at every ``kappa`` of ``grid``, a parabola through the best three points;
    the standard error of ``kappa`` comes from the curvature of the sum of squares.
    """

    def sse(kappa):
        X = design(kappa)
        coef, _ = _lstsq(X, yt)
        r = yt - X @ coef
        return float(r @ r), coef

    vals = np.array([sse(k)[0] for k in grid])
    i = int(np.clip(np.argmin(vals), 1, len(grid) - 2))
    a2, a1, _ = np.polyfit(grid[i - 1:i + 2], vals[i - 1:i + 2], 2)
    kappa = float(-a1 / (2 * a2)) if a2 > 0 else float(grid[i])
    s, coef = sse(kappa)
    dof = max(len(yt) - design(kappa).shape[1] - 1, 1)
    se = float(np.sqrt(2.0 * (s / dof) / (2.0 * a2))) if a2 > 0 else math.nan
    return kappa, se, coef


def fit_law(
    layers: ArrayLike,
    values: ArrayLike,
    law: Law,
    *,
    l_min: int | None = None,
    corrections: bool = True,
) -> Fit:
    r"""Fit the form of ``law`` to ``values`` at layers ``>= l_min`` (default ``L/10``).

    The exponent (or rate) is always a free parameter; with ``corrections`` the known
    subleading terms are extra regressors so that they do not bias it:

    * ``"power"``: :math:`\log y = \kappa\log l + c + d_1 l^{-\omega} + d_2 l^{-2\omega}`
      (:math:`\omega` = ``law.correction``, the relative correction);
    * ``"approach"``: :math:`y - y_\infty = A l^{-\kappa} + B l^{-f}`, :math:`\kappa` profiled
      (:math:`f` = ``law.correction``, the order at which the finite-length terms force the
      approach);
    * ``"stretched"`` (``values`` = :math:`\log\chi^{(0)}/\chi^{(l)}`):
      :math:`A l^\kappa + B\log l + C`, :math:`\kappa` profiled;
    * ``"exponential"``: :math:`\log y - \mu\log l = \kappa l + c + d/l`
      (:math:`\mu` = ``law.log_power``).
    """
    l = np.asarray(layers, float)
    y = np.asarray(values, float)
    L = int(np.max(l))
    l_min = max(1, L // 10) if l_min is None else int(l_min)
    has_corr = corrections and np.isfinite(law.correction)
    if law.form == "power":
        lt, yt = _tail(l, y, l_min)
        lt, yt = lt[yt > 0], yt[yt > 0]
        cols = [np.log(lt), np.ones_like(lt)]
        if corrections:
            # l^-w and l^-2w for the law's own correction (skipped when w < 0.3: over one
            # or two decades l^-w is then nearly collinear with log l and the constant) and
            # l^-1 for the discreteness / initial condition of the recursion
            om = law.correction if has_corr else math.nan
            expo = ([om, 2.0 * om] if om >= 0.3 else []) + [1.0]
            cols += [lt ** (-w) for w in sorted(set(expo))]
        coef, se = _lstsq(np.stack(cols, 1), np.log(yt))
        return Fit(law.quantity, law.form, coef[0], se[0], float(np.exp(coef[1])),
                   int(lt[0]), int(lt[-1]))
    if law.form == "approach":
        lt, yt = _tail(l, y - law.limit, l_min)

        def design(kappa):
            cols = [lt ** (-kappa)]
            if has_corr:
                # the finite-length terms both correct the rate (l^-kappa-f) and, unless the
                # fixed point is a symmetry point (forcing = False), force the approach (l^-f)
                cols.append(lt ** (-kappa - law.correction))
                if law.forcing and abs(law.correction - kappa) > 1e-3:
                    cols.append(lt ** (-law.correction))
            return np.stack(cols, 1)

        kappa, se, coef = _profile(lt, yt, design, np.linspace(0.01, 3.0, 300))
        return Fit(law.quantity, law.form, kappa, se, float(abs(coef[0])), int(lt[0]),
                   int(lt[-1]))
    if law.form == "exponential":
        lt, yt = _tail(l, y, l_min)
        cols = [lt, np.ones_like(lt)]
        if corrections:
            cols += [1.0 / lt, 1.0 / lt**2]
        coef, se = _lstsq(np.stack(cols, 1), np.log(yt) - law.log_power * np.log(lt))
        return Fit(law.quantity, law.form, coef[0], se[0], float(np.exp(coef[1])),
                   int(lt[0]), int(lt[-1]))
    if law.form == "stretched":
        lt, yt = _tail(l, y, l_min)  # y = log chi ratio

        def design(kappa):
            cols = [lt**kappa, np.ones_like(lt)] + ([np.log(lt)] if corrections else [])
            return np.stack(cols, 1)

        kappa, se, coef = _profile(lt, yt, design, np.linspace(0.05, 0.95, 181))
        return Fit(law.quantity, law.form, kappa, se, float(coef[0]), int(lt[0]), int(lt[-1]))
    raise ValueError(f"unknown law form {law.form!r}")


def _law_values(mf: ResMeanField, law: Law) -> np.ndarray:
    if law.quantity == "p":
        return np.asarray(mf.p)
    if law.quantity == "s":
        return np.asarray(mf.s)
    if law.quantity == "e":
        return np.asarray(mf.e)
    if law.quantity == "1-e":
        return 1.0 - np.asarray(mf.e)
    if law.quantity == "chi":
        lc = np.asarray(mf.log_chi_ratio)
        return lc if law.form == "stretched" else np.exp(lc)
    raise ValueError(law.quantity)


def fit_laws(mf: ResMeanField, laws: dict[str, Law], *, l_min: int | None = None
             ) -> dict[str, Fit]:
    """:func:`fit_law` for every law on the matching trajectory of ``mf``."""
    layers = mf.layers
    out = {}
    for key, law in laws.items():
        vals = _law_values(mf, law)
        if law.quantity in ("e", "1-e", "s") and not np.all(np.isfinite(vals[1:])):
            continue  # single-input trajectory
        out[key] = fit_law(layers, vals, law, l_min=l_min)
    return out


# ----------------------------------------------------------------------------------------
# Finite-network Monte Carlo of the FRN / RRN, with a forward tangent for the gradients
# ----------------------------------------------------------------------------------------


class ResSimulation(NamedTuple):
    r"""Per-layer means and standard errors over finite networks.

    ``mean[name]``, ``stderr[name]`` are ``(L + 1,)`` arrays for ``name`` in ``"p"``,
    ``"p2"``, ``"gamma"``, ``"s"`` (the empirical :math:`x\cdot x/N` etc.) and ``"chi"``:
    :math:`\|J_{0\to l}u\|^2/N` for a standard normal tangent :math:`u`, whose mean is
    :math:`\|J_{0\to l}\|_F^2/N`, the mean-field :math:`\chi^{(0)}/\chi^{(l)}`.
    """

    mean: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    n_networks: int
    width: int


_SIM_NAMES = ("p", "p2", "gamma", "s", "chi")


def _dphi(fn):
    return jnp.vectorize(jax.grad(lambda x: fn(x) * 1.0))


def _one_network(key, R0, sd, act_fn, dact_fn, depth, width, kind, method):
    """One FRN / RRN of the engine's primitives (:mod:`fieldres.simulation.sampler`): the
    inputs ``x, x'`` and a tangent ``t`` are the three columns of one forward pass."""
    dtype = R0.dtype
    x0 = gaussian_rows(jax.random.fold_in(key, 0), R0, width)
    t0 = jax.random.normal(jax.random.fold_in(key, depth + 1), (width, 1), dtype)
    X0 = jnp.concatenate([x0, t0], axis=1)  # columns: x, x', tangent
    mask = jnp.asarray([1.0, 1.0, 0.0], dtype)  # the biases do not move the tangent
    s_w, s_b, s_v, s_a = sd

    def stats(X):
        x1, x2, t = X[:, 0], X[:, 1], X[:, 2]
        return jnp.stack([x1 @ x1, x2 @ x2, x1 @ x2, (x1 - x2) @ (x1 - x2), t @ t]) / width

    def branch_input(H):
        return jnp.stack([act_fn(H[:, 0]), act_fn(H[:, 1]), dact_fn(H[:, 0]) * H[:, 2]], axis=1)

    def block(k, X):
        if kind == "full":  # h = W x + b;  x <- x + V phi(h) + a
            H = affine(jax.random.fold_in(k, 0), X, s_w, s_b, method=method, bias_mask=mask)
            X = X + affine(jax.random.fold_in(k, 1), branch_input(H), s_v, s_a, method=method,
                           bias_mask=mask)
        else:  # x <- x + W phi(x) + b
            X = X + affine(k, branch_input(X), s_w, s_b, method=method, bias_mask=mask)
        return X, stats(X)

    _, rest = scan_layers(block, key, X0, depth)
    return jnp.concatenate([stats(X0)[None], rest], axis=0)  # (L+1, 5)


def simulate_resnet(
    key: PRNGKeyArray,
    kind: str = "full",
    depth: int = 50,
    width: int = 256,
    n_networks: int = 200,
    hyper: ResHyper = ResHyper(),
    activation: str | Activation | Callable = "tanh",
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
    *,
    method: str = "sampler",
    batch_size: int = 64,
) -> ResSimulation:
    r"""Monte-Carlo statistics of finite FRNs / RRNs (two inputs and a forward tangent).

    The rows of :math:`x^{(0)}` are i.i.d. :math:`\mathcal N(0, K_0)` and the tangent
    :math:`u \sim \mathcal N(0, I)`. ``method="full"`` draws every weight matrix
    (:math:`O(N^2)` per layer); ``method="sampler"`` (default) uses that, given the previous
    layer, the rows of :math:`W[x, x', t] + [b, b, 0]` are i.i.d. Gaussian with covariance
    :math:`\sigma_w^2 G/N + \sigma_b^2 mm^T` (:math:`G` the Gram matrix of the three
    columns): exact in distribution, :math:`O(N)` per layer. The tangent goes through the
    same weights (:math:`t \mapsto t + V(\phi'(h)\odot Wt)`), so nothing assumes gradient
    independence. Network ``i`` uses ``fold_in(key, i)``.
    """
    _check_kind(kind)
    check_depth(depth)
    if method not in ("sampler", "full"):
        raise ValueError(f"method must be 'sampler' or 'full', got {method!r}")
    for name, v in (("width", width), ("n_networks", n_networks), ("batch_size", batch_size)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    if int(n_networks) < 2:
        raise ValueError("n_networks must be >= 2 for a standard error")
    K0 = np.asarray(K0, float)
    if K0.shape != (2, 2):
        raise ValueError(f"simulate_resnet takes a 2 x 2 input kernel, got shape {K0.shape}")
    check_kernel(K0)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    R0 = kernel_factor(jnp.asarray(K0), use_cholesky=False)
    sd = tuple(jnp.sqrt(jnp.asarray(float(getattr(hyper, n)), R0.dtype))
               for n in ("sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2"))
    act_fn = act.fn
    dact_fn = _dphi(act.fn)
    n = int(n_networks)
    bs = min(int(batch_size), n)
    acc = RunningMoments()
    for start, m in batch_ranges(n, bs, False, "simulate_resnet"):
        # a fixed batch shape (one compilation); the padding networks are masked out
        mean_b, m2_b = _sim_masked(key, jnp.uint32(start), jnp.int32(m), R0, sd, act_fn,
                                   dact_fn, int(depth), int(width), kind, method, bs)
        acc.add(m, mean_b, m2_b)
    mean, var = np.asarray(acc.mean, np.float64), np.asarray(acc.m2, np.float64) / (n - 1)
    se = np.sqrt(var / n)
    return ResSimulation({k: mean[:, i] for i, k in enumerate(_SIM_NAMES)},
                         {k: se[:, i] for i, k in enumerate(_SIM_NAMES)}, n, int(width))


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10, 11))
def _sim_masked(key, start, n_valid, R0, sd, act_fn, dact_fn, depth, width, kind, method, bs):
    keys = network_keys(key, start, bs)
    out = jax.vmap(lambda k: _one_network(k, R0, sd, act_fn, dact_fn, depth, width, kind,
                                          method))(keys)
    mask = (jnp.arange(bs) < n_valid).astype(out.dtype)
    return masked_moments(out, mask, n_valid.astype(out.dtype))


# ----------------------------------------------------------------------------------------
# Depth-dependent initialisation
# ----------------------------------------------------------------------------------------

_QUANTITIES = ("log_chi", "log_p", "log_s")
_VARIED = ("sigma_v2", "sigma_w2", "sigma_a2", "sigma_b2")


def _quantity_at_depth(u, args):
    """Theory quantity at the last layer with ``exp(u)`` put into the varied variance."""
    hyper, vary, quantity, K0, act, depth, kind = args
    hyp = eqx.tree_at(lambda h: getattr(h, vary), hyper, jnp.exp(u))
    p, p2, g, e, s, q, logchi = _propagate(K0, hyp, act, depth, kind)
    if quantity == "log_chi":
        return logchi[-1]
    if quantity == "log_p":
        return jnp.log(p[-1])
    return jnp.log(s[-1])


def initialisation_for_level(
    depths: Sequence[int],
    level: float,
    *,
    quantity: str = "log_chi",
    vary: str = "sigma_v2",
    kind: str = "full",
    activation: str | Activation = "tanh",
    hyper: ResHyper = ResHyper(),
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
    bracket: tuple[float, float] = (1e-6, 1e2),
) -> dict[str, np.ndarray]:
    r"""The variance ``vary`` that puts a theory quantity at depth ``L`` on a given level.

    Yang & Schoenholz found the best MNIST test accuracy of tanh FRNs along a contour of the
    gradient explosion :math:`\chi^{(0)}/\chi^{(L)}` (``quantity="log_chi"``) and of
    :math:`\alpha`-ReLU nets along a contour of :math:`s^{(L)}` (``"log_s"``). Solving
    ``quantity(L, vary) = level`` for every depth gives the depth-dependent initialisation
    (bisection in :math:`\log` of the variance with ``optimistix``; ``nan`` and a message where
    the level is not reached inside ``bracket``). For tanh FRNs with :math:`\sigma_a = 0` the
    contour has :math:`\sigma_v^2 L \to` const: with :math:`\sigma_v^2 = \tau/L` the recursion
    has a continuum limit in :math:`t = l/L` (as for :math:`\rho^2 \sim 1/L` in
    :mod:`fieldres.optimal`), so :math:`\log\chi^{(0)}/\chi^{(L)}` depends on :math:`\tau` only
    (the large-:math:`p` stretched-exponential law gives the same :math:`1/L` but is not
    reached on the contour, where :math:`p^{(L)} = O(1)`). Xavier and He keep the variances
    fixed and drift across the contour with depth (:func:`xavier_he_comparison`).
    """
    _check_kind(kind)
    if quantity not in _QUANTITIES:
        raise ValueError(f"quantity must be one of {_QUANTITIES}, got {quantity!r}")
    if vary not in _VARIED:
        raise ValueError(f"vary must be one of {_VARIED}, got {vary!r}")
    lo, hi = bracket
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bracket must satisfy 0 < lo < hi < inf, got {bracket}")
    K0 = _as_K0(K0)
    if quantity != "log_s":
        K0 = K0[:1, :1]  # one input suffices (no bivariate expectations)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    hyper = jax.tree.map(lambda x: jnp.asarray(x, K0.dtype), hyper)
    ulo, uhi = math.log(lo), math.log(hi)
    values, messages = [], []
    for L in depths:
        check_depth(L)
        args = (hyper, vary, quantity, K0, act, int(L), kind)
        f_lo = float(_quantity_at_depth(jnp.asarray(ulo), args)) - level
        f_hi = float(_quantity_at_depth(jnp.asarray(uhi), args)) - level
        if not (np.isfinite(f_lo) and np.isfinite(f_hi)) or f_lo * f_hi > 0:
            values.append(math.nan)
            messages.append(f"level {level:g} not reached for {vary} in [{lo:g}, {hi:g}] at "
                            f"L = {L} (values {f_lo + level:.4g} .. {f_hi + level:.4g})")
            continue
        sol = _solve_level(jnp.asarray(ulo), jnp.asarray(uhi), jnp.asarray(level, K0.dtype),
                           args)
        ok = sol.result == optx.RESULTS.successful
        values.append(float(jnp.exp(sol.value)) if ok else math.nan)
        messages.append("ok" if ok else "bisection did not converge")
    return {"depths": np.asarray(depths), vary: np.asarray(values), "messages": messages}


def _solve_level(ulo, uhi, level, args):
    hyper, vary, quantity, K0, act, depth, kind = args

    @eqx.filter_jit
    def solve(ulo, uhi, level, hyper, K0):
        a = (hyper, vary, quantity, K0, act, depth, kind)
        return optx.root_find(lambda u, lv: _quantity_at_depth(u, a) - lv,
                              optx.Bisection(rtol=0.0, atol=1e-10), 0.5 * (ulo + uhi), level,
                              options=dict(lower=ulo, upper=uhi), throw=False, max_steps=200)

    return solve(ulo, uhi, level, hyper, K0)


def xavier_he_comparison(
    depths: Sequence[int],
    *,
    kind: str = "full",
    activation: str | Activation = "tanh",
    sigma_a2: float = 0.0,
    sigma_b2: float = 0.0,
    level: float | None = None,
) -> dict[str, Any]:
    r""":math:`\log\chi^{(0)}/\chi^{(L)}` under Xavier (:math:`\sigma_w^2 = \sigma_v^2 = 1`) and He
    (:math:`= 2`) against the depth-dependent :math:`\sigma_v^2(L)` that holds it at ``level``.

    ``level`` defaults to Xavier's value at the smallest depth, so both start equal and the
    table shows how a fixed-variance scheme drifts across the contour as ``L`` grows.
    """
    K0 = ((1.0,),)
    out: dict[str, Any] = {"depths": list(map(int, depths))}
    for name, v in (("xavier", 1.0), ("he", 2.0)):
        hyp = ResHyper(v, sigma_b2, v, sigma_a2)
        out[name] = [float(resnet_meanfield(kind, L, hyp, activation, K0).log_chi_ratio[-1])
                     for L in depths]
    if level is None:
        level = out["xavier"][0]
    opt = initialisation_for_level(depths, level, quantity="log_chi", vary="sigma_v2",
                                   kind=kind, activation=activation,
                                   hyper=ResHyper(1.0, sigma_b2, 1.0, sigma_a2), K0=K0)
    out["level"] = float(level)
    out["optimal_sigma_v2"] = opt["sigma_v2"].tolist()
    out["messages"] = opt["messages"]
    return out


def _law_curve(law: Law, mf: ResMeanField):
    """(label, y-values to plot on log-log axes, slope of the prediction there)."""
    l = mf.layers
    if law.quantity == "p":
        return r"$p^{(l)}$", np.asarray(mf.p), None
    if law.quantity == "s":
        return r"$s^{(l)}$", np.asarray(mf.s), None
    if law.quantity == "e":
        return r"$|e^{(l)} - e^*|$", np.abs(np.asarray(mf.e) - law.limit), None
    if law.quantity == "1-e":
        return r"$1 - e^{(l)}$", 1.0 - np.asarray(mf.e), None
    if law.form == "stretched":
        return r"$\log\chi^{(0)}/\chi^{(l)}$", np.asarray(mf.log_chi_ratio), l
    return r"$\chi^{(0)}/\chi^{(l)}$", np.exp(np.asarray(mf.log_chi_ratio)), l


def plot_laws(
    mf: ResMeanField,
    laws: dict[str, Law],
    fits: dict[str, Fit] | None = None,
    *,
    simulation: ResSimulation | None = None,
    title: str | None = None,
    out=None,
):
    r"""Log-log dynamics of :math:`p, e, s, \chi` with the derived slopes (dashed).

    Power laws and approaches appear as straight lines of the predicted slope; for the
    stretched exponential :math:`\log\chi^{(0)}/\chi^{(l)}` is plotted (slope 1/2); for
    exponential laws :math:`\log y` is plotted against ``l`` on linear axes (slope = rate).
    Simulation means :math:`\pm` standard errors are overlaid where given.
    """
    from .. import plotting

    plt = plotting.plt
    keys = [k for k in ("p", "e", "s", "chi") if k in laws]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.2))
    l = mf.layers.astype(float)
    sim_map = {"p": "p", "s": "s", "chi": "chi"}
    for ax, k in zip(np.atleast_1d(axes), keys):
        law = laws[k]
        label, y, _ = _law_curve(law, mf)
        fit = None if fits is None else fits.get(k)
        sel = (l >= 1) & np.isfinite(y) & (y > 0)
        if law.form == "exponential":
            ax.plot(l[sel], np.log(y[sel]), "-", color="tab:blue", label="mean field")
            anchor = np.log(y[sel][-1])
            pred = anchor + law.exponent * (l[sel] - l[sel][-1]) + law.log_power * np.log(
                l[sel] / l[sel][-1])
            ax.plot(l[sel], pred, "k--", lw=1, label=f"derived rate {law.exponent:.4g}")
            ax.set_xlabel("layer $l$")
            ax.set_ylabel(f"log {label}")
            if simulation is not None and k in sim_map:
                m = simulation.mean[sim_map[k]]
                se = simulation.stderr[sim_map[k]]
                ls = np.arange(len(m))
                ax.errorbar(ls[1:], np.log(m[1:]), yerr=se[1:] / m[1:], fmt="o", ms=3,
                            color="tab:red", label=f"N = {simulation.width}")
        else:
            ax.loglog(l[sel], y[sel], "-", color="tab:blue", label="mean field")
            slope = {"power": law.exponent, "approach": -law.exponent,
                     "stretched": law.exponent}[law.form]
            if law.form == "approach" and np.isfinite(law.correction):
                slope = -min(law.exponent, law.correction) if law.forcing else slope
            x_end, y_end = l[sel][-1], y[sel][-1]
            xs = np.geomspace(max(1.0, x_end / 300), x_end, 50)
            ax.loglog(xs, y_end * (xs / x_end) ** slope, "k--", lw=1,
                      label=f"derived slope {slope:.4g}")
            ax.set_xlabel("layer $l$")
            ax.set_ylabel(label)
            if simulation is not None and k in sim_map:
                m = simulation.mean[sim_map[k]]
                se = simulation.stderr[sim_map[k]]
                if law.form == "stretched":
                    m, se = np.log(m), se / m
                ls = np.arange(len(m))
                ok = ls >= 1
                ax.errorbar(ls[ok], m[ok], yerr=se[ok], fmt="o", ms=3, color="tab:red",
                            label=f"N = {simulation.width}")
        if fit is not None:
            ax.set_title(f"fit {fit.exponent:.4g} ± {fit.stderr:.1g} "
                         f"(derived {law.exponent:.4g})", fontsize=8)
        ax.legend(frameon=False, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plotting.save(fig, out)
    return fig
