"""Singular-value spectra of the input--output Jacobian: dynamical isometry of deep ResNets.

For a residual network the input--output Jacobian is a product of ``L`` factors
``1 + A_l``, one per residual block, where ``A_l`` is a random matrix whose law is invariant
under multiplication by orthogonal matrices on both sides (an *R-diagonal* element in free
probability) with

.. math::

    \\varepsilon_l = \\tfrac1N \\operatorname{tr} A_l A_l^T
        = s^2\\, \\mathbb{E}_{h \\sim \\mathcal N(0, K^{(l-1)})}[\\phi'(h)^2],

``s^2`` the variance of the branch's weights. When every ``epsilon_l = O(1/L)``, the
S-transform of ``J J^T`` tends, for ``N -> inf`` and then ``L -> inf``, to

.. math::

    S(z) = e^{-c\\,(2z + 1)}, \\qquad c = \\sum_{l=1}^{L} \\varepsilon_l ,

a universal law that depends on the activation only through one number, the *effective
cumulant* ``c`` (Tarnowski, Warcho\\l, Jastrz\\k{e}bski, Tabor, Nowak, arXiv:1809.08848,
Sec. II.1). With ``u = z G(z) - 1`` (``G`` the Green's function of ``J J^T``) the
Green's-function equation reads

.. math::

    z = \\frac{1 + u}{u}\\, e^{c(2u + 1)} .

This module solves it in closed parametric form: for ``z = lambda`` on the support, ``u``
runs along the curve ``arg u - arg(1 + u) = 2c Im u`` (an inscribed-angle condition), which
is parametrised by ``s = 2 Re u + 1`` in ``[-sqrt(1 + 2/c), sqrt(1 + 2/c)]``; the density is
``rho(lambda) = Im u / (pi lambda)`` and its distribution function has the closed form
``F = 1 - [arg u - 2c Im u (1 + Re u)] / pi`` (an exact antiderivative of ``G``). The support
edges and the condition number ``kappa = sqrt(lambda_+ / lambda_-)`` are explicit; the
moments follow from Lagrange inversion.

Two residual parametrisations are covered:

``architecture="fieldres"`` (THEORY Sec. 1, pre-activation residual blocks)
    ``h^(l) = h^(l-1) + rho (W^(l) phi(h^(l-1)) + b^(l))``, ``W ~ N(0, sigma_w^2 / N)``;
    ``J = dh^(L)/dh^(0) = prod_l (1 + rho W^(l) D^(l))``, ``D^(l) = diag phi'(h^(l-1))``,
    ``s^2 = rho^2 sigma_w^2`` and ``K^(l)`` from the NNGP recursion of
    :mod:`fieldres.kernels`.
``architecture="tarnowski"`` (the paper's Eq. 1 with ``a = 1``)
    ``x_l = x_{l-1} + phi(h_l)``, ``h_l = rho W_l x_{l-1} + b_l``; the paper's weight
    variance ``sigma^2 / (N L)`` is ``rho^2 sigma_w^2 / N``, i.e.
    ``sigma^2_Tarnowski = L rho^2 sigma_w^2`` (:func:`tarnowski_sigma2`). The Jacobian
    ``dx_L/dx_0 = prod_l (1 + D_l rho W_l)`` has the same structure, but the variance of
    ``h_l`` follows the paper's Eq. (35), in which a non-zero mean ``E phi`` (sigmoid, SELU,
    ReLU) accumulates along the skip path.

For odd activations without biases both give the same ``c``. The feed-forward net
(``h^(l) = W^(l) phi(h^(l-1)) + b^(l)``, ``J = prod_l W^(l) D^(l)``) is the contrast of
Pennington, Schoenholz, Ganguli (arXiv:1711.04735): there the relative variance of the
spectrum grows linearly with ``L`` unless the weights are orthogonal and ``phi'`` is nearly
constant (:func:`ffnet_spectrum_moments`).

References:
    Tarnowski, Warcho\\l, Jastrz\\k{e}bski, Tabor, Nowak, *Dynamical isometry is achieved in
    residual networks in a universal way for any activation function*, AISTATS 2019,
    arXiv:1809.08848.
    Pennington, Schoenholz, Ganguli, *Resurrecting the sigmoid in deep learning through
    dynamical isometry: theory and practice*, NeurIPS 2017, arXiv:1711.04735.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from .._validation import check_depth, check_nonnegative, check_positive
from ..kernels.quadrature import gauss_legendre
from ..kernels.recursion import Hyper, layer_update
from ..simulation.sampler import INITS, bias_vector, jacobian_step, scan_layers, weight_matrix

__all__ = [
    "SpectralActivation",
    "spectral_activation",
    "SPECTRAL_ACTIVATIONS",
    "gaussian_expectation",
    "EffectiveCumulant",
    "effective_cumulant",
    "tarnowski_sigma2",
    "rho_from_tarnowski",
    "spectrum_edges",
    "condition_number",
    "universal_moments",
    "spectral_curve",
    "universal_density",
    "universal_cdf",
    "jacobian_spectrum",
    "ks_distance",
    "ks_threshold",
    "equalising_rho",
    "FFMoments",
    "ffnet_spectrum_moments",
    "ffnet_critical_point",
    "plot_spectrum",
]


# ----------------------------------------------------------------------------------------
# Activations: phi, phi' and the positions of their kinks (for the quadrature panels)
# ----------------------------------------------------------------------------------------


class SpectralActivation(eqx.Module):
    """An activation with its derivative, as the Jacobian spectrum needs it.

    ``fn`` and ``deriv`` are elementwise ``jnp`` callables; ``kinks`` lists the points where
    ``phi`` or ``phi'`` is not smooth (they become quadrature panel ends, so that Gaussian
    expectations of piecewise functions converge exponentially). ``mean_zero`` is true when
    ``E phi(h) = 0`` for every centred Gaussian ``h`` (odd ``phi``).
    """

    name: str = eqx.field(static=True)
    fn: Callable = eqx.field(static=True)
    deriv: Callable = eqx.field(static=True)
    kinks: tuple[float, ...] = eqx.field(static=True, default=())
    mean_zero: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        return self.fn(x)

    def kernel(self, q):
        """``E phi(h)^2`` for ``h ~ N(0, q)`` (panel quadrature): the single-input C-map that
        :func:`fieldres.kernels.recursion.layer_update` propagates."""
        return _layer_moments(self, q)[1]


def _linear(x):
    return jnp.asarray(x)


def _one(x):
    return jnp.ones_like(x)


def _relu_d(x):
    return (x > 0).astype(jnp.result_type(x, float))


@functools.cache
def _leaky(alpha):
    def fn(x):
        return jnp.where(x > 0, x, alpha * x)

    def d(x):
        return jnp.where(x > 0, 1.0, alpha).astype(jnp.result_type(x, float))

    return fn, d


def _hard_tanh(x):
    return jnp.clip(x, -1.0, 1.0)


def _hard_tanh_d(x):
    return (jnp.abs(x) < 1.0).astype(jnp.result_type(x, float))


def _tanh_d(x):
    return 1.0 / jnp.cosh(x) ** 2


def _sigmoid_d(x):
    s = jax.nn.sigmoid(x)
    return s * (1.0 - s)


def _erf_d(x):
    return 2.0 / math.sqrt(math.pi) * jnp.exp(-x * x)


_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772


def _selu(x):
    return _SELU_L * jnp.where(x > 0, x, _SELU_A * jnp.expm1(jnp.minimum(x, 0.0)))


def _selu_d(x):
    return _SELU_L * jnp.where(x > 0, 1.0, _SELU_A * jnp.exp(jnp.minimum(x, 0.0)))


SPECTRAL_ACTIVATIONS: dict[str, Callable[[], SpectralActivation]] = {
    "linear": lambda: SpectralActivation("linear", _linear, _one, (), True),
    "relu": lambda: SpectralActivation("relu", jax.nn.relu, _relu_d, (0.0,), False),
    "leaky_relu": lambda: spectral_activation("leaky_relu:0.01"),
    "hard_tanh": lambda: SpectralActivation("hard_tanh", _hard_tanh, _hard_tanh_d,
                                            (-1.0, 1.0), True),
    "tanh": lambda: SpectralActivation("tanh", jnp.tanh, _tanh_d, (), True),
    "erf": lambda: SpectralActivation("erf", jax.scipy.special.erf, _erf_d, (), True),
    "sigmoid": lambda: SpectralActivation("sigmoid", jax.nn.sigmoid, _sigmoid_d, (), False),
    "selu": lambda: SpectralActivation("selu", _selu, _selu_d, (0.0,), False),
}


def spectral_activation(activation) -> SpectralActivation:
    """Resolve a name, a :class:`SpectralActivation`, a fieldres activation or a callable.

    Names: ``linear``, ``relu``, ``leaky_relu`` (slope ``0.01`` for ``x < 0``, as
    ``jax.nn.leaky_relu``; ``leaky_relu:0.2`` sets the slope), ``hard_tanh``, ``tanh``,
    ``erf``, ``sigmoid``, ``selu`` (Klambauer et al.'s constants). A fieldres
    :class:`~fieldres.kernels.activations.Activation` or a plain callable gets its derivative from
    :func:`jax.grad` (assumed smooth except possibly at 0).
    """
    if isinstance(activation, SpectralActivation):
        return activation
    if isinstance(activation, str):
        key = activation.strip().lower().replace("-", "_")
        if key.startswith("leaky_relu:"):
            try:
                alpha = float(key.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"leaky ReLU slope must be a number, got {activation!r}") from None
            if not math.isfinite(alpha):
                raise ValueError(f"leaky ReLU slope must be finite, got {alpha}")
            fn, d = _leaky(alpha)
            return SpectralActivation(f"leaky_relu:{alpha:g}", fn, d, (0.0,), alpha == -1.0)
        if key not in SPECTRAL_ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of "
                f"{sorted(SPECTRAL_ACTIVATIONS)} (or 'leaky_relu:SLOPE') or a callable"
            )
        return SPECTRAL_ACTIVATIONS[key]()
    from ..kernels.activations import Activation

    if isinstance(activation, Activation):
        if activation.name in SPECTRAL_ACTIVATIONS:
            return SPECTRAL_ACTIVATIONS[activation.name]()
        f = activation.fn
        name = activation.name
    elif callable(activation):
        f = activation
        name = getattr(activation, "__name__", "custom")
    else:
        raise TypeError(
            f"activation must be a name, an activation or a callable, got "
            f"{type(activation).__name__}"
        )
    return SpectralActivation(name, f, _grad_of(f), (0.0,), False)


@functools.cache
def _grad_of(f):
    return jnp.vectorize(jax.grad(lambda x: f(x) * 1.0))


# ----------------------------------------------------------------------------------------
# Gaussian expectations: composite Gauss--Legendre with kinks as panel ends
# ----------------------------------------------------------------------------------------

_WINDOW = 10.0  # |u| <= 10 standard deviations: tail mass 1.5e-23
_U_ENDS = (0.0, 1.0, 2.5, 4.5, 7.0, 10.0)  # panel ends in standard deviations
_X_ENDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # and in units of the activation's argument



def _panel_nodes(k, kinks, degree):
    """Nodes ``x`` and weights (summing to one) of ``E[f(h)]``, ``h ~ N(0, k)``; ``k`` scalar."""
    dtype = k.dtype
    sd = jnp.sqrt(jnp.maximum(k, jnp.finfo(dtype).tiny))
    u_ends = np.array(sorted({-e for e in _U_ENDS} | set(_U_ENDS)))
    x_ends = np.array(sorted({-e for e in _X_ENDS} | set(_X_ENDS) | set(kinks)))
    ends = jnp.concatenate([jnp.asarray(u_ends, dtype),
                            jnp.clip(jnp.asarray(x_ends, dtype) / sd, -_WINDOW, _WINDOW)])
    ends = jnp.sort(ends)
    xg, wg = (jnp.asarray(a, dtype) for a in gauss_legendre(degree))
    a, b = ends[:-1, None], ends[1:, None]
    u = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg * jnp.exp(-0.5 * u * u)
    u, w = u.ravel(), w.ravel()
    return sd * u, w / jnp.sum(w)


def gaussian_expectation(f: Callable, k: ArrayLike, kinks: tuple[float, ...] = (),
                         degree: int = 20) -> Array:
    """``E[f(h)]`` for ``h ~ N(0, k)``, elementwise in ``k``.

    Composite Gauss--Legendre over ``|h| <= 10 sqrt(k)`` whose panel ends merge the
    Gaussian's scale, the activation's scale (``|h| = 0.25 ... 16``) and the ``kinks`` of
    ``f``: each panel integrand is smooth, so piecewise functions (ReLU, hard tanh, SELU) are
    integrated to rounding error, and steep ones (``tanh`` at large ``k``) stay resolved.
    """
    k = jnp.asarray(k)
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.result_type(float))
    kinks = tuple(float(x) for x in kinks)

    def one(kk):
        x, w = _panel_nodes(kk, kinks, degree)
        return jnp.sum(w * f(x))

    return jnp.vectorize(one)(k)


def _layer_moments(act: SpectralActivation, q):
    """``(E phi, E phi^2, E phi'^2, E phi'^4)`` at pre-activation variance ``q``."""
    x, w = _panel_nodes(q, act.kinks, 20)
    p, d2 = act.fn(x), act.deriv(x) ** 2
    return jnp.sum(w * p), jnp.sum(w * p * p), jnp.sum(w * d2), jnp.sum(w * d2 * d2)


# ----------------------------------------------------------------------------------------
# Signal propagation and the effective cumulant
# ----------------------------------------------------------------------------------------


class EffectiveCumulant(eqx.Module):
    """Per-layer signal propagation and the effective cumulant of the Jacobian.

    Attributes
    ----------
    c:
        ``sum_l epsilon_l``, the one parameter of the universal large-depth spectrum.
    epsilon:
        ``(L,)`` per-layer ``epsilon_l = s^2 E[phi'(h_l)^2]`` (``s^2 = rho^2 sigma_w^2``).
    variance:
        ``(L,)`` variance of the pre-activation that ``phi'`` sees in block ``l``
        (``K^(l-1)`` for ``"fieldres"``, ``q_l`` for ``"tarnowski"``).
    mu2, mu4:
        ``(L,)`` ``E[phi'^2]`` and ``E[phi'^4]`` per block.
    mean_sv2:
        ``prod_l (1 + epsilon_l)``: the exact first moment ``tr(J J^T)/N`` at finite depth
        (``N -> inf``); the universal law has ``e^c``.
    relvar_gaussian, relvar_orthogonal:
        Exact relative variance ``m2/m1^2 - 1`` of the eigenvalues of ``J J^T`` at finite
        depth (``N -> inf``) for Gaussian and for scaled-orthogonal weights; the universal
        law has ``2 c`` for both.
    """

    c: Float[Array, ""]
    epsilon: Float[Array, " L"]
    variance: Float[Array, " L"]
    mu2: Float[Array, " L"]
    mu4: Float[Array, " L"]
    mean_sv2: Float[Array, ""]
    relvar_gaussian: Float[Array, ""]
    relvar_orthogonal: Float[Array, ""]


def tarnowski_sigma2(rho: ArrayLike, sigma_w2: ArrayLike, depth: int) -> Array:
    """Tarnowski et al.'s weight parameter ``sigma^2 = L rho^2 sigma_w^2``.

    Their branch weights are ``W ~ N(0, sigma^2/(N L))``; fieldres's are ``rho W`` with
    ``W ~ N(0, sigma_w^2/N)``.
    """
    return depth * jnp.asarray(rho) ** 2 * jnp.asarray(sigma_w2)


def rho_from_tarnowski(sigma2: ArrayLike, depth: int, sigma_w2: ArrayLike = 1.0) -> Array:
    """fieldres's ``rho`` with the same branch weights: ``sqrt(sigma^2 / (L sigma_w^2))``."""
    return jnp.sqrt(jnp.asarray(sigma2) / (depth * jnp.asarray(sigma_w2)))


_ARCHS = ("fieldres", "tarnowski")


@functools.partial(jax.jit, static_argnames=("act", "depth", "architecture"))
def _propagate(act, depth, architecture, rho, sigma_w2, sigma_b2, k0):
    s2 = rho**2 * sigma_w2

    if architecture == "fieldres":
        hyper = Hyper(sigma_w2=sigma_w2, sigma_b2=sigma_b2)

        def body(K, _):  # the NNGP recursion of fieldres.kernels, one input
            _, _, m2, m4 = _layer_moments(act, K)
            return layer_update(K, rho, hyper, act, True), (K, m2, m4)

        _, (var, mu2, mu4) = jax.lax.scan(body, k0, None, length=depth)
    else:
        # x_l = x_{l-1} + phi(h_l), h_l = rho W_l x_{l-1} + b_l; carry E[x^2] and E[x] of a
        # component of x (Eq. 35 of Tarnowski et al.): phi(h_l) is independent of x_{l-1,i}
        # as N -> inf, so E[x_{l-1} phi(h_l)] = E[x_{l-1}] E[phi(h_l)].
        def body(carry, _):
            m2x, mx = carry
            q = s2 * m2x + sigma_b2
            e1, e2, m2, m4 = _layer_moments(act, q)
            return (m2x + e2 + 2.0 * mx * e1, mx + e1), (q, m2, m4)

        _, (var, mu2, mu4) = jax.lax.scan(body, (k0, jnp.zeros_like(k0)), None, length=depth)
    eps = s2 * mu2
    m1 = 1.0 + eps
    quartic = s2**2 * mu4
    m2_gauss = 1.0 + 4.0 * eps + eps**2 + quartic
    m2_orth = 1.0 + 4.0 * eps + quartic
    return EffectiveCumulant(
        c=jnp.sum(eps),
        epsilon=eps,
        variance=var,
        mu2=mu2,
        mu4=mu4,
        mean_sv2=jnp.prod(m1),
        relvar_gaussian=jnp.sum(m2_gauss / m1**2 - 1.0),
        relvar_orthogonal=jnp.sum(m2_orth / m1**2 - 1.0),
    )


def effective_cumulant(
    activation,
    depth: int,
    rho: ArrayLike,
    sigma_w2: ArrayLike = 1.0,
    sigma_b2: ArrayLike = 0.0,
    k0: ArrayLike = 1.0,
    *,
    architecture: str = "fieldres",
) -> EffectiveCumulant:
    """The effective cumulant ``c`` of the ResNet Jacobian from signal propagation.

    .. math::

        c = \\rho^2 \\sigma_w^2 \\sum_{l=1}^{L}
            \\mathbb{E}_{h \\sim \\mathcal N(0, K^{(l-1)})}[\\phi'(h)^2]

    with ``K^(l)`` the single-input NNGP recursion ``K^(l) = K^(l-1) + rho^2 (sigma_w^2
    E[phi(h)^2] + sigma_b^2)`` (THEORY Sec. 2) for ``architecture="fieldres"``, or the
    variance recursion of Tarnowski et al., Eq. (35), for ``"tarnowski"`` (``k0`` is then
    ``E[x_0^2]``, and the bias enters every ``h_l`` unscaled). This is the paper's
    ``c = (sigma^2 / L) sum_l E[phi'(h_l)^2]`` with ``sigma^2 = L rho^2 sigma_w^2``.

    Closed forms (Tarnowski et al., Sec. II.3): linear ``c = L rho^2 sigma_w^2``, ReLU
    ``c = L rho^2 sigma_w^2 / 2``, leaky ReLU ``(1 + alpha^2)/2`` times that, whatever the
    variances; hard tanh ``rho^2 sigma_w^2 sum_l erf(1/sqrt(2 K^(l-1)))``; smooth ones by
    quadrature along the variance trajectory. The returned object also carries the exact
    finite-depth first two moments of the spectrum (``N -> inf``), which the universal law
    reproduces up to ``O(c^2/L)``.
    """
    check_positive("rho", rho)
    act, (sw, sb, kk) = _checked(activation, depth, architecture, sigma_w2, sigma_b2, k0)
    return _propagate(act, int(depth), architecture, jnp.asarray(rho, sw.dtype), sw, sb, kk)


def _checked(activation, depth, architecture, sigma_w2, sigma_b2, k0):
    """Validate the network shared by :func:`effective_cumulant` and :func:`equalising_rho`;
    returns the activation and ``(sigma_w2, sigma_b2, k0)`` as float arrays."""
    act = spectral_activation(activation)
    check_depth(depth)
    if architecture not in _ARCHS:
        raise ValueError(f"architecture must be one of {_ARCHS}, got {architecture!r}")
    check_positive("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_positive("k0 (the input variance)", k0)
    dtype = jnp.result_type(float)
    return act, tuple(jnp.asarray(v, dtype) for v in (sigma_w2, sigma_b2, k0))


def equalising_rho(
    activation,
    depth: int,
    c_target: float,
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    k0: float = 1.0,
    *,
    architecture: str = "fieldres",
    rho_range: tuple[float, float] = (1e-6, 1e3),
) -> float:
    """The residual scaling ``rho`` at which ``activation`` has effective cumulant ``c_target``.

    Networks initialised this way share one Jacobian spectrum (the universal law depends on
    ``c`` only), which removes the initialisation as a confounder when activations are
    compared (Tarnowski et al., Sec. V). ``c`` grows monotonically with ``rho`` (in the
    continuum it is an integral of a positive function up to ``t = rho^2 L``); the root is
    bracketed on a logarithmic grid in ``rho_range`` and refined by bisection
    (optimistix). In Tarnowski et al.'s parametrisation the answer is
    ``sigma^2 = L rho^2 sigma_w^2`` (:func:`tarnowski_sigma2`).

    Raises ``ValueError`` when ``c_target`` is not reached inside ``rho_range``.
    """
    check_positive("c_target", c_target)
    act, (sw, sb, kk) = _checked(activation, depth, architecture, sigma_w2, sigma_b2, k0)
    dtype = sw.dtype

    def log_c(u, _args=None):
        return jnp.log(_propagate(act, int(depth), architecture, jnp.exp(u), sw, sb, kk).c)

    grid = np.linspace(math.log(rho_range[0]), math.log(rho_range[1]), 61)
    vals = np.asarray(jax.vmap(log_c)(jnp.asarray(grid, dtype)))
    target = math.log(c_target)
    above = np.nonzero(np.isfinite(vals) & (vals >= target))[0]
    if above.size == 0 or above[0] == 0:
        lo, hi = (np.nanmin(vals), np.nanmax(vals))
        raise ValueError(
            f"c = {c_target:g} is not reached for rho in [{rho_range[0]:g}, {rho_range[1]:g}] "
            f"({act.name}, L = {depth}: c ranges over [{math.exp(lo):.3g}, {math.exp(hi):.3g}])"
        )
    i = int(above[0])
    sol = optx.root_find(
        lambda u, a: log_c(u) - target,
        optx.Bisection(rtol=0.0, atol=1e-12),
        jnp.asarray(grid[i], dtype),
        options=dict(lower=jnp.asarray(grid[i - 1], dtype), upper=jnp.asarray(grid[i], dtype)),
        max_steps=256,
    )
    return float(jnp.exp(sol.value))


# ----------------------------------------------------------------------------------------
# The universal density
# ----------------------------------------------------------------------------------------


def _check_c(c):
    c = float(c)
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"the effective cumulant c must be positive and finite, got {c}")
    return c


def spectrum_edges(c: float) -> tuple[float, float]:
    """Support ``[lambda_-, lambda_+]`` of the squared singular values in the universal law.

    The edges are the real critical points of ``z(u) = (1 + u)/u e^{c(2u+1)}``:
    ``u(1 + u) = 1/(2c)``, i.e. ``u_pm = (-1 pm s)/2`` with ``s = sqrt(1 + 2/c)``, so that
    ``lambda_+ = (s + 1)/(s - 1) e^{c s}`` and ``lambda_- = (s - 1)/(s + 1) e^{-c s}``
    (``lambda_+ lambda_- = 1``).
    """
    c = _check_c(c)
    s = math.sqrt(1.0 + 2.0 / c)
    r = (s + 1.0) / (s - 1.0)
    return math.exp(-c * s) / r, math.exp(c * s) * r


def condition_number(c: float) -> float:
    """Condition number ``kappa = sigma_max / sigma_min = sqrt(lambda_+ / lambda_-)``.

    ``kappa = (s + 1)/(s - 1) e^{c s}`` with ``s = sqrt(1 + 2/c)``.

    Small ``c``: ``kappa ~ 1 + 2 sqrt(2c)``; large ``c``: ``kappa ~ 2 c e^{c + 1}``.
    """
    lo, hi = spectrum_edges(c)
    return math.sqrt(hi / lo)


def universal_moments(c: float, kmax: int = 4) -> np.ndarray:
    """Moments ``m_k = int lambda^k rho(lambda) d lambda``, ``k = 1..kmax``, of the universal law.

    By Lagrange inversion of ``chi(u) = u e^{-c(2u+1)} / (1 + u)``:
    ``m_k = (e^{kc}/k) sum_{j=0}^{k-1} binom(k, j) (2kc)^{k-1-j} / (k-1-j)!``, so
    ``m_1 = e^c``, ``m_2 = e^{2c}(1 + 2c)`` (relative variance ``2c`` at any depth).
    """
    c = _check_c(c)
    out = []
    for k in range(1, int(kmax) + 1):
        tot = sum(math.comb(k, j) * (2 * k * c) ** (k - 1 - j) / math.factorial(k - 1 - j)
                  for j in range(k))
        out.append(math.exp(k * c) * tot / k)
    return np.asarray(out)


def _a_cot_a(a):
    small = jnp.abs(a) < 1e-4
    safe = jnp.where(small, 1.0, a)
    return jnp.where(small, 1.0 - a * a / 3.0, safe / jnp.tan(safe))


def _curve_y(s, c, iters=80):
    """``Im u > 0`` on the spectral curve at ``Re u = (s - 1)/2`` (bisection; ``D`` decreasing)."""
    target = s * s
    lo = jnp.zeros_like(s)
    hi = jnp.full_like(s, math.pi / (2.0 * c))

    def D(y):  # 1 - 4 y^2 + 4 y cot(2 c y)
        return 1.0 - 4.0 * y * y + (2.0 / c) * _a_cot_a(2.0 * c * y)

    def step(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        go_up = D(mid) > target
        return jnp.where(go_up, mid, lo), jnp.where(go_up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, step, (lo, hi))
    return 0.5 * (lo + hi)


def _curve(s, c):
    """``(lambda, density, cdf)`` at curve parameter ``s`` in ``[-sqrt(1+2/c), sqrt(1+2/c)]``."""
    x = 0.5 * (s - 1.0)
    y = _curve_y(s, c)
    u = x + 1j * y
    log_lam = c * s + 0.5 * jnp.log(((1.0 + x) ** 2 + y * y) / (x * x + y * y))
    lam = jnp.exp(log_lam)
    dens = y / (jnp.pi * lam)
    cdf = 1.0 - (jnp.angle(u) - 2.0 * c * y * (1.0 + x)) / jnp.pi
    return lam, dens, jnp.clip(cdf, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("n",))
def _curve_grid(c, n):
    s0 = jnp.sqrt(1.0 + 2.0 / c)
    s = -s0 * jnp.cos(jnp.linspace(0.0, jnp.pi, n))  # clustered at the edges
    return _curve(s, c)


def spectral_curve(c: float, n: int = 1001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The universal law on ``n`` points from edge to edge: ``(lambda, density, cdf)``.

    Points are spaced like Chebyshev nodes in the curve parameter ``s`` (dense near the
    square-root edges); ``lambda`` increases monotonically along them.
    """
    c = _check_c(c)
    lam, dens, cdf = _curve_grid(jnp.asarray(c, jnp.result_type(float)), int(n))
    return np.asarray(lam), np.asarray(dens), np.asarray(cdf)


@jax.jit
def _invert(lam, c):
    """Curve parameter ``s`` with ``lambda(s) = lam`` (bisection on the monotone map)."""
    s0 = jnp.sqrt(1.0 + 2.0 / c)
    lo, hi = -s0 * jnp.ones_like(lam), s0 * jnp.ones_like(lam)
    log_t = jnp.log(lam)

    def step(_, lh):
        lo, hi = lh
        mid = 0.5 * (lo + hi)
        up = jnp.log(_curve(mid, c)[0]) < log_t
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 64, step, (lo, hi))
    return _curve(0.5 * (lo + hi), c)


def _on_support(lam, c, which):
    c = _check_c(c)
    lam = np.asarray(lam, dtype=float)
    lo, hi = spectrum_edges(c)
    inside = (lam > lo) & (lam < hi)
    safe = np.where(inside, lam, math.sqrt(lo * hi))
    out = np.asarray(_invert(jnp.asarray(safe), jnp.asarray(c, jnp.result_type(float)))[which])
    return lam, inside, out, lo, hi


def universal_density(lam: ArrayLike, c: float) -> np.ndarray:
    """Density ``rho(lambda)`` of the squared singular values of the Jacobian (universal law).

    ``rho(lambda) = Im u / (pi lambda)`` with ``u`` the root of
    ``lambda = (1 + u)/u e^{c(2u + 1)}`` in the upper half plane; zero off
    ``[lambda_-, lambda_+]``. ``lam`` may be any array.
    """
    lam, inside, d, _, _ = _on_support(lam, c, 1)
    return np.where(inside, d, 0.0)


def universal_cdf(lam: ArrayLike, c: float) -> np.ndarray:
    """Distribution function ``F(lambda) = int_{lambda_-}^{lambda} rho``, closed form on the curve.

    ``int G d lambda = -log u + c (2u + u^2)`` along the curve, hence
    ``F = 1 - [arg u - 2c Im u (1 + Re u)] / pi``.
    """
    lam, inside, f, lo, hi = _on_support(lam, c, 2)
    return np.where(inside, f, np.where(lam >= hi, 1.0, 0.0))


# ----------------------------------------------------------------------------------------
# Empirical spectra of finite networks
# ----------------------------------------------------------------------------------------

_WEIGHTS = INITS  # the engine's weight initialisations


@functools.partial(jax.jit, static_argnames=("act", "depth", "width", "weights", "mode",
                                             "decorrelate"))
def _jacobian(key, act, depth, width, weights, mode, decorrelate, rho, sigma_w2, sigma_b2, k0):
    """The input--output Jacobian of one finite network, built from the engine's primitives
    (:mod:`fieldres.simulation.sampler`): explicit weights, one key per layer, and the
    Jacobian of every block by forward mode."""
    dtype = rho.dtype
    x = jnp.sqrt(k0) * jax.random.normal(jax.random.fold_in(key, 0), (width,), dtype)
    J = jnp.eye(width, dtype=dtype)

    def block(k, carry):
        x, J = carry
        W = weight_matrix(jax.random.fold_in(k, 0), width, sigma_w2, weights, dtype)
        b = bias_vector(jax.random.fold_in(k, 1), width, sigma_b2, dtype)
        if mode == "fieldres" and decorrelate:
            # h <- h + rho (W phi(h) + b), J <- (1 + rho W P[D]) J: a fresh permutation P of
            # the neurons in D = diag phi'(h) (a diagnostic; not the network's Jacobian)
            d = jax.random.permutation(jax.random.fold_in(k, 2), act.deriv(x))
            return (x + rho * (W @ act.fn(x) + b), J + rho * (W @ (d[:, None] * J))), None
        if mode == "fieldres":  # h <- h + rho (W phi(h) + b);  J <- (1 + rho W D) J
            def fn(x):
                return x + rho * (W @ act.fn(x) + b)
        elif mode == "tarnowski":  # x <- x + phi(rho W x + b);  J <- (1 + D rho W) J
            def fn(x):
                return x + act.fn(rho * (W @ x) + b)
        else:  # feed-forward: h <- W phi(h) + b;  J <- W D J
            def fn(x):
                return W @ act.fn(x) + b
        return jacobian_step(fn, x, J), None

    (x, J), _ = scan_layers(block, key, (x, J), depth)
    return J


def jacobian_spectrum(
    key,
    activation,
    depth: int,
    width: int,
    rho: float = 1.0,
    sigma_w2: float = 1.0,
    sigma_b2: float = 0.0,
    k0: float = 1.0,
    *,
    weights: str = "gaussian",
    architecture: str = "fieldres",
    residual: bool = True,
    n_networks: int = 1,
    decorrelate: bool = False,
) -> np.ndarray:
    """Squared singular values of the input--output Jacobian of random finite networks.

    For each of ``n_networks`` networks (weights drawn from ``key``) one input
    ``h^(0) ~ N(0, k0 I_N)`` is propagated and the ``N x N`` Jacobian accumulated layer by
    layer (``lax.scan``; the weights of a layer are drawn inside the scan, never stored):

    * ResNet, ``architecture="fieldres"``: ``J <- (1 + rho W D) J``, ``D = diag phi'(h)``;
    * ResNet, ``architecture="tarnowski"``: ``J <- (1 + D rho W) J``,
      ``D = diag phi'(rho W x + b)``;
    * ``residual=False``: the feed-forward net ``J <- W D J`` (``rho`` unused).

    ``weights="gaussian"``: ``W ~ N(0, sigma_w^2/N)``; ``"orthogonal"``: ``W = sigma_w O``
    with ``O`` Haar-distributed (QR of a Gaussian matrix with the sign fix).

    ``decorrelate=True`` (``"fieldres"`` only; a diagnostic) applies a fresh random
    permutation of the neurons to ``D`` in every block: the distribution of ``phi'`` within
    a layer is unchanged, its correlation from block to block (the pre-activations
    accumulate along the skip path, so a neuron's ``phi'`` persists over many blocks) is
    removed. The universal law assumes that correlation away; see the module docs.

    Returns the
    ``n_networks * N`` squared singular values (from a float64 SVD when x64 is enabled),
    sorted.
    """
    act = spectral_activation(activation)
    check_depth(depth)
    check_depth(width, "width")
    check_depth(n_networks, "n_networks")
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    if architecture not in _ARCHS:
        raise ValueError(f"architecture must be one of {_ARCHS}, got {architecture!r}")
    check_positive("rho", rho)
    check_positive("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_positive("k0 (the input variance)", k0)
    mode = architecture if residual else "ffnet"
    if decorrelate and mode != "fieldres":
        raise ValueError("decorrelate applies to the residual 'fieldres' architecture only")
    dtype = jnp.result_type(float)
    args = tuple(jnp.asarray(v, dtype) for v in (rho, sigma_w2, sigma_b2, k0))
    out = []
    for i in range(int(n_networks)):
        J = _jacobian(jax.random.fold_in(key, i), act, int(depth), int(width), weights, mode,
                      bool(decorrelate), *args)
        sv = np.linalg.svd(np.asarray(J, dtype=np.float64), compute_uv=False)
        out.append(sv**2)
    return np.sort(np.concatenate(out))


def ks_distance(samples: ArrayLike, c: float) -> float:
    """Kolmogorov--Smirnov distance ``sup |F_emp - F|`` between samples and the universal law."""
    x = np.sort(np.asarray(samples, dtype=float).ravel())
    n = x.size
    if n == 0:
        raise ValueError("ks_distance needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples contain NaN or infinite values")
    F = universal_cdf(x, c)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - F), np.max(F - (i - 1) / n)))


def ks_threshold(n: int, alpha: float = 1e-3) -> float:
    """Dvoretzky--Kiefer--Wolfowitz bound: ``P(KS > eps) <= alpha`` for ``n`` i.i.d. samples.

    ``eps = sqrt(log(2/alpha) / (2n))``. Eigenvalues of one random matrix repel each other
    and fluctuate far less than i.i.d. samples (their empirical distribution function
    deviates by ``O(log N / N)``), so for ``n = N`` eigenvalues this bound is conservative
    for the random part; systematic finite-``N`` and finite-``L`` deviations must fit under
    it as well.
    """
    if n < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


# ----------------------------------------------------------------------------------------
# Feed-forward contrast (Pennington, Schoenholz, Ganguli 2017)
# ----------------------------------------------------------------------------------------


class FFMoments(eqx.Module):
    """Exact (``N -> inf``) first two moments of the FFNet Jacobian spectrum at depth ``L``.

    ``mean_sv2 = prod_l sigma_w^2 E[phi'^2]`` (``= chi_1^L`` on a fixed point);
    ``relvar_gaussian`` / ``relvar_orthogonal`` are ``m2/m1^2 - 1`` of the eigenvalues of
    ``J J^T``: by multiplicativity of the S-transform the per-layer relative variances add,
    ``sum_l (E phi'^4 / E[phi'^2]^2 - 1) + L`` (Gaussian) or without the ``+ L``
    (orthogonal: ``W W^T = sigma_w^2``).
    """

    mean_sv2: Float[Array, ""]
    relvar_gaussian: Float[Array, ""]
    relvar_orthogonal: Float[Array, ""]
    variance: Float[Array, " L"]
    chi1: Float[Array, " L"]


@functools.partial(jax.jit, static_argnames=("act", "depth"))
def _ff_moments(act, depth, sigma_w2, sigma_b2, k0):
    hyper = Hyper(sigma_w2=sigma_w2, sigma_b2=sigma_b2)

    def body(q, _):  # the feed-forward NNGP recursion of fieldres.kernels, one input
        _, _, m2, m4 = _layer_moments(act, q)
        return layer_update(q, 1.0, hyper, act, False), (q, m2, m4)

    _, (var, mu2, mu4) = jax.lax.scan(body, k0, None, length=depth)
    v_d = jnp.sum(mu4 / mu2**2 - 1.0)
    return FFMoments(
        mean_sv2=jnp.prod(sigma_w2 * mu2),
        relvar_gaussian=v_d + depth,
        relvar_orthogonal=v_d,
        variance=var,
        chi1=sigma_w2 * mu2,
    )


def ffnet_spectrum_moments(activation, depth: int, sigma_w2: float = 1.0,
                           sigma_b2: float = 0.0, k0: float = 1.0) -> FFMoments:
    """Mean and relative variance of the squared singular values of a feed-forward Jacobian.

    ``J = prod_l W^(l) D^(l)`` with ``q^(l) = sigma_w^2 E phi(h)^2 + sigma_b^2`` from
    ``q^(0) = k0``. At criticality (``chi_1 = sigma_w^2 E phi'^2 = 1``) the mean stays 1,
    but the relative variance grows linearly with depth unless the weights are orthogonal
    *and* ``phi'^2`` barely varies over the pre-activations (tanh at small ``q*``):
    dynamical isometry. For ReLU ``E phi'^4 / (E phi'^2)^2 - 1 = 1`` per layer whatever
    the weights: no isometry. Contrast the ResNet's ``2c``, independent of ``L``.
    """
    act = spectral_activation(activation)
    check_depth(depth)
    check_positive("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_positive("k0 (the input variance)", k0)
    dtype = jnp.result_type(float)
    return _ff_moments(act, int(depth), *(jnp.asarray(v, dtype) for v in (sigma_w2, sigma_b2,
                                                                           k0)))


def ffnet_critical_point(activation, sigma_b2: float, *,
                         sigma_w2_range: tuple[float, float] = (0.5, 8.0)) -> tuple[float, float]:
    """``(sigma_w2, q*)`` on the FFNet's order-to-chaos line for a given ``sigma_b2``.

    ``q* = sigma_w^2 E phi(h)^2 + sigma_b^2`` (``h ~ N(0, q*)``) and
    ``chi_1 = sigma_w^2 E phi'(h)^2 = 1`` (Poole et al. 2016, Schoenholz et al. 2017):
    an inner root for ``q*`` (iteration is slow near criticality, so a bracketed solve) and
    an outer one for ``sigma_w2`` (scipy's Brent method; both are scalar and cheap). For
    ``sigma_b2 = 0`` and tanh the critical point is ``sigma_w2 = 1, q* = 0``, where the
    signal vanishes; take a small positive ``sigma_b2`` instead. ReLU with ``sigma_b2 = 0``
    is critical at ``sigma_w2 = 2`` for every ``q``: ``(2, nan)`` is returned.
    """
    import scipy.optimize

    act = spectral_activation(activation)
    check_nonnegative("sigma_b2", sigma_b2)
    dtype = jnp.result_type(float)
    mom = jax.jit(lambda q: _layer_moments(act, q))

    if act.name == "relu" and sigma_b2 == 0:
        return 2.0, float("nan")

    def q_star(sw):
        def g(logq):
            q = math.exp(logq)
            return sw * float(mom(jnp.asarray(q, dtype))[1]) + sigma_b2 - q

        lo, hi = math.log(1e-12), math.log(1e6)
        if g(lo) < 0 or g(hi) > 0:
            raise ValueError(f"no fixed point q* for sigma_w2 = {sw:g}, sigma_b2 = {sigma_b2:g}")
        return math.exp(scipy.optimize.brentq(g, lo, hi, xtol=1e-14))

    def chi1_minus_one(sw):
        return sw * float(mom(jnp.asarray(q_star(sw), dtype))[2]) - 1.0

    a, b = sigma_w2_range
    fa, fb = chi1_minus_one(a), chi1_minus_one(b)
    if fa * fb > 0:
        raise ValueError(
            f"chi_1 - 1 does not change sign for sigma_w2 in [{a:g}, {b:g}] "
            f"({act.name}, sigma_b2 = {sigma_b2:g})"
        )
    sw = scipy.optimize.brentq(chi1_minus_one, a, b, xtol=1e-13)
    return float(sw), q_star(sw)


def plot_spectrum(samples: ArrayLike, c: float, *, ax=None, out=None, bins: int = 60,
                  label: str | None = None, log: bool = True):
    """Histogram of squared singular values against the universal density (log-lambda axis).

    On a logarithmic axis the plotted density is ``lambda rho(lambda)`` (the density of
    ``log lambda``). Returns the figure; writes it to ``out`` when given.
    """
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = np.asarray(samples, dtype=float)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.6))
    lam, dens, _ = spectral_curve(c, 801)
    if log:
        edges = np.geomspace(min(x.min(), lam[0]) * 0.9, max(x.max(), lam[-1]) * 1.1, bins + 1)
        h, e = np.histogram(np.log(x), bins=np.log(edges), density=True)
        ax.stairs(h, edges, fill=True, alpha=0.35, label=label or f"finite net ({x.size} values)")
        ax.plot(lam, lam * dens, "k-", lw=1.5, label=f"universal law, c = {c:.3g}")
        ax.set_xscale("log")
        ax.set_ylabel(r"density of $\log\lambda$")
    else:
        ax.hist(x, bins=bins, density=True, alpha=0.35, label=label or "finite net")
        ax.plot(lam, dens, "k-", lw=1.5, label=f"universal law, c = {c:.3g}")
        ax.set_ylabel(r"$\rho(\lambda)$")
    ax.set_xlabel(r"squared singular value $\lambda$ of $J$")
    ax.legend(fontsize=7, frameon=False)
    if fig is not None and out is not None:
        from ..plotting import save

        save(fig, out)
    return fig if fig is not None else ax.figure
