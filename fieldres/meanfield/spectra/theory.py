r"""The infinite-width theory of the Jacobian spectrum: the effective cumulant from signal
propagation, the universal law, and the feed-forward contrast."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from ..._validation import FieldresInputError, check_depth, check_nonnegative, check_positive
from ...kernels.recursion import Hyper, layer_update
from .activations import _layer_moments, spectral_activation


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
        raise FieldresInputError(f"architecture must be one of {_ARCHS}, got {architecture!r}")
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
        raise FieldresInputError(
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
        raise FieldresInputError(f"the effective cumulant c must be positive and finite, got {c}")
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
            raise FieldresInputError(
                f"no fixed point q* for sigma_w2 = {sw:g}, sigma_b2 = {sigma_b2:g}"
            )
        return math.exp(scipy.optimize.brentq(g, lo, hi, xtol=1e-14))

    def chi1_minus_one(sw):
        return sw * float(mom(jnp.asarray(q_star(sw), dtype))[2]) - 1.0

    a, b = sigma_w2_range
    fa, fb = chi1_minus_one(a), chi1_minus_one(b)
    if fa * fb > 0:
        raise FieldresInputError(
            f"chi_1 - 1 does not change sign for sigma_w2 in [{a:g}, {b:g}] "
            f"({act.name}, sigma_b2 = {sigma_b2:g})"
        )
    sw = scipy.optimize.brentq(chi1_minus_one, a, b, xtol=1e-13)
    return float(sw), q_star(sw)
