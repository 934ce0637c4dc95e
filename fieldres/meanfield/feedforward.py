# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Mean-field signal propagation in deep feed-forward networks: the edge of chaos.

For the feed-forward net :math:`h^{(l)} = W^{(l)}\phi(h^{(l-1)}) + b^{(l)}` with
:math:`W_{ij} \sim \mathcal N(0, \sigma_w^2/N)`, :math:`b_i \sim \mathcal N(0, \sigma_b^2)`,
the pre-activation length :math:`q^{(l)} = K^{(l)}_{\alpha\alpha}` and the correlation
:math:`c^{(l)} = K^{(l)}_{\alpha\beta}/q^{(l)}` of two inputs of equal length obey, at
infinite width (Poole et al. 2016, Eqs. 3 and 5),

.. math::

    q^{(l)} = \mathcal V(q^{(l-1)}) := \sigma_w^2\, \mathbb E_z\big[\phi(\sqrt{q^{(l-1)}}\,z)^2\big]
        + \sigma_b^2 ,
    \qquad
    c^{(l)} = f(c^{(l-1)}) := \frac{\sigma_w^2\, \mathbb E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q^*},

with :math:`(u_1, u_2)` centred Gaussian of variances :math:`q^*` and covariance
:math:`c\,q^*`. The length converges quickly to the fixed point :math:`q^*`; the correlation
map always has the fixed point :math:`c = 1`, whose stability is set by

.. math::

    \chi_1 = f'(1) = \sigma_w^2\, \mathbb E_z\big[\phi'(\sqrt{q^*}\,z)^2\big] .

:math:`\chi_1 < 1`: ordered phase, every pair of inputs converges (:math:`c^* = 1`);
:math:`\chi_1 > 1`: chaotic phase, correlations converge to a fixed point :math:`c^* < 1`.
The order-to-chaos line :math:`\sigma^2_{w,\mathrm{crit}}(\sigma_b^2)` is :math:`\chi_1 = 1`.
Near the fixed points the deviations decay exponentially with depth scales
(Schoenholz et al. 2017, Eqs. 6 and 9)

.. math::

    \xi_q^{-1} = -\log \chi_q, \quad \chi_q = \mathcal V'(q^*)
              = \chi_1 + \sigma_w^2\, \mathbb E[\phi''(\sqrt{q^*}z)\,\phi(\sqrt{q^*}z)],
    \qquad
    \xi_c^{-1} = -\log \chi_c, \quad \chi_c = f'(c^*) = \sigma_w^2\, \mathbb E[\phi'(u_1^*)\phi'(u_2^*)],

so :math:`\xi_c` diverges on the critical line. All Gaussian expectations come from
:mod:`fieldres.kernels.activations` (closed forms for erf, ReLU, linear; quadrature with
Price's-theorem derivatives for tanh and any callable). Fixed points are found with
``optimistix`` (Newton for :math:`q^*` and :math:`c^*`, bisection for the critical line), so
they are differentiable through the implicit function theorem.

The correlation map is convex on :math:`[0, 1]` (its Taylor coefficients in :math:`c` are
squared Hermite coefficients of :math:`\phi`), so Newton's method started at :math:`c = 0`
converges monotonically to the smallest fixed point in :math:`[0, 1]`: :math:`c^* = 1` in the
ordered phase, the unique :math:`c^* < 1` in the chaotic one.

References:
    B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, *Exponential
    expressivity in deep neural networks through transient chaos*, arXiv:1606.05340.

    S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, *Deep information
    propagation*, arXiv:1611.01232.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike

from .._validation import FieldresInputError, check_nonnegative
from ..kernels.activations import get_activation
from ..kernels.quadrature import gauss_legendre
from ..kernels.recursion import gaussian_layer
from ..status import Status, is_success, message

__all__ = [
    "MeanField",
    "CriticalPoint",
    "PhaseDiagram",
    "derivative_variance",
    "length_map",
    "correlation_map",
    "q_star",
    "c_star",
    "chi_1",
    "mean_field",
    "critical_sigma_w2",
    "phase_diagram",
    "plot_phase_diagram",
]


def status_message(status: int) -> str:
    """Readable text of a mean-field :class:`~fieldres.status.Status` code."""
    return message(status)


# ----------------------------------------------------------------------------------------
# Gaussian expectations needed here
# ----------------------------------------------------------------------------------------


def derivative_variance(activation, q: ArrayLike) -> Array:
    r""":math:`\mathbb E_z[\phi'(\sqrt q\, z)^2]`, elementwise in ``q``.

    :meth:`fieldres.kernels.activations.Activation.derivative_variance`: closed forms for
    erf (:math:`4/(\pi\sqrt{1+4q})`), ReLU (:math:`1/2`), leaky ReLU, linear (1) and
    alpha-ReLU; quadrature activations integrate :math:`\phi'^2` in one dimension; any other
    activation goes through Price's theorem, :math:`\partial_{K_{ab}} \mathbb E[\phi(a)\phi(b)]`
    at correlation one.
    """
    act = get_activation(activation)
    q = jnp.asarray(q)
    if not jnp.issubdtype(q.dtype, jnp.floating):
        q = q.astype(jnp.result_type(float))
    return act.derivative_variance(q)


def length_map(q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh") -> Array:
    r"""The length map :math:`\mathcal V(q) = \sigma_w^2 \mathbb E[\phi(\sqrt q z)^2] + \sigma_b^2`."""
    return _length(q, sigma_w2, sigma_b2, get_activation(activation))


def correlation_map(
    c: ArrayLike, q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh"
) -> Array:
    r"""The correlation map :math:`f(c) = (\sigma_w^2 \mathbb E[\phi(u_1)\phi(u_2)] + \sigma_b^2)/q`.

    ``q`` is the length of both inputs (normally :math:`q^*`; then :math:`f(1) = 1`).
    """
    return _correlation(c, jnp.asarray(q), sigma_w2, sigma_b2, get_activation(activation))


def _length(q, sigma_w2, sigma_b2, act):
    """``V(q)``: the one-input feed-forward layer of :mod:`fieldres.kernels.recursion`."""
    return gaussian_layer(act.variance(q), sigma_w2, sigma_b2)


def _correlation(c, q, sigma_w2, sigma_b2, act):
    """``f(c)``: the off-diagonal feed-forward layer at equal lengths ``q``, divided by ``q``."""
    return gaussian_layer(act.covariance(q, q, c * q), sigma_w2, sigma_b2) / q


def _chi_c(c, q, sigma_w2, act):
    """Slope of the correlation map, ``sigma_w^2 E[phi'(u_1) phi'(u_2)]`` (Price)."""
    return sigma_w2 * jax.grad(act.covariance, argnums=2)(q, q, c * q)


# ----------------------------------------------------------------------------------------
# Fixed points (pure, vmappable building blocks)
# ----------------------------------------------------------------------------------------

_N_ITER = 64  # plain iterations of the length map before Newton polishes the fixed point

#: Relative resolution of criticality: a slope ``chi`` of a map at its fixed point with
#: ``|chi - 1| <= CRITICAL_TOL`` is critical (its depth scale, beyond ``1 / CRITICAL_TOL``
#: layers, is reported as diverging), and a fixed point that a relative change of
#: ``sigma_w^2`` by ``CRITICAL_TOL`` would move by more than ``1 + q*`` is not resolved.
#: The critical line itself is bisected to ``1e-13`` in ``log sigma_w^2``.
CRITICAL_TOL = 1e-10


def _q_fixed(sw2, sb2, act, q0, rtol=1e-12, atol=1e-14):
    """``(q*, q_root, status)`` of the length map; see :func:`_q_star`.

    ``q_root`` is the root the solver found even where ``q*`` is reported as ``inf``
    (a marginal fixed point receding to infinity, where the slopes are still defined).
    """
    dtype = jnp.result_type(sw2, sb2, q0, float)
    sw2, sb2 = jnp.asarray(sw2, dtype), jnp.asarray(sb2, dtype)

    def lmap(q):
        return _length(jnp.maximum(q, 0.0), sw2, sb2, act)

    def body(_, q):
        q_new = lmap(q)
        return jnp.where(jnp.isfinite(q_new), q_new, q)

    start = jax.lax.stop_gradient(jax.lax.fori_loop(0, _N_ITER, body, jnp.asarray(q0, dtype)))

    def fn(q, args):
        w2, b2 = args
        return q - _length(jnp.maximum(q, 0.0), w2, b2, act)

    sol = optx.root_find(fn, optx.Newton(rtol=rtol, atol=atol), start, (sw2, sb2),
                         throw=False, max_steps=200)
    raw = sol.value
    # a root at q = 0 (no bias, ordered phase) may land a rounding error below zero
    q = jnp.where(raw > -1e-14, jnp.maximum(raw, 0.0), raw)
    slope = sw2 * jax.grad(lambda x: act.variance(x))(jnp.maximum(q, 0.0))
    residual = jnp.abs(fn(q, (sw2, sb2)))
    ok_root = (sol.result == optx.RESULTS.successful) & jnp.isfinite(q) & (
        residual <= 1e-8 * (1.0 + jnp.abs(q)))
    stable = (q >= 0.0) & (slope <= 1.0 + 1e-9)
    # A marginal root (slope -> 1) that recedes to infinity as sigma_w^2 approaches the
    # critical value, q* = sigma_b^2 / (1 - chi_q) for ReLU: a change of sigma_w^2 by its
    # resolution moves it by CRITICAL_TOL (q* - sigma_b^2) / (1 - chi_q) (implicit function
    # theorem). Beyond its own size the root is not a fixed point the net has: at the
    # critical sigma_w^2 itself q^(l) grows without bound (linearly for ReLU).
    receding = CRITICAL_TOL * jnp.abs(q - sb2) > (1.0 + jnp.abs(q)) * jnp.maximum(
        1.0 - slope, 0.0)
    marginal = jnp.abs(slope - 1.0) <= CRITICAL_TOL
    # the plain iteration still runs away: the map lies above the diagonal with slope >= 1
    start_slope = sw2 * jax.grad(lambda x: act.variance(x))(jnp.maximum(start, 0.0))
    diverging = ~jnp.isfinite(start) | (start > 1e12) | (
        (lmap(start) > start * (1.0 + 1e-12)) & (start_slope >= 1.0))
    status = jnp.where(
        ok_root & stable,
        jnp.where(receding, jnp.where(marginal, Status.CRITICAL, Status.NO_FIXED_POINT),
                  Status.OK),
        jnp.where(ok_root | diverging, Status.NO_FIXED_POINT, Status.SOLVER_FAILED),
    )
    # a diverging map: no stable root, whatever Newton did with the unstable one
    status = jnp.where(ok_root & ~stable, Status.NO_FIXED_POINT, status)
    found = (status == Status.OK) | ((status == Status.CRITICAL) & ~receding)
    q_root = jnp.where(ok_root, q, jnp.inf)
    return jnp.where(found, q, jnp.inf), q_root, status.astype(jnp.int32)


def _q_star(sw2, sb2, act, q0, rtol=1e-12, atol=1e-14):
    """``(q*, status)``: iterate the length map from ``q0``, then Newton (optimistix).

    ``status`` is ``OK`` for a stable fixed point, ``NO_FIXED_POINT`` (``q* = inf``) where
    ``q^(l)`` diverges, and ``CRITICAL`` (``q* = inf``) for the marginal case between them,
    a root receding to infinity at the critical point (ReLU at ``sigma_w^2 = 2``,
    ``sigma_b^2 > 0``).
    """
    q, _, status = _q_fixed(sw2, sb2, act, q0, rtol, atol)
    return q, status


_N_SECANT = 16  # Gauss-Legendre nodes for the mean slope of the correlation map near c = 1
_SECANT_SWITCH = 0.1  # 1 - c below which the mean slope replaces the difference quotient


def _secant_residual(c, q, sw2, sb2, act):
    """``h(c) = (f(c) - c) / (1 - c) = 1 - mean of f'`` over ``[c, 1]``.

    ``f(c) - c`` vanishes at ``c = 1`` and at ``c*``; dividing out the trivial root leaves
    ``h``, which is decreasing on ``[0, 1]`` (``f`` is convex there: ``h`` is minus the slope
    of the secant from ``c`` to 1), with ``h(0) = f(0) >= 0``, ``h(1) = 1 - chi_1``: a
    simple root ``c*`` that bisection brackets, however close to 1 (near criticality
    ``f(c) - c`` has a nearly double root at 1, where Newton on it stalls). Close to 1 the
    difference quotient cancels, so there ``h`` is the Gauss--Legendre mean of the Price
    slope ``f'(t) = sigma_w^2 E[phi'(u_1) phi'(u_2)]`` over ``[c, 1]``.
    """
    gap = 1.0 - c
    far = gap > _SECANT_SWITCH
    quotient = (_correlation(c, q, sw2, sb2, act) - c) / jnp.where(far, gap, 1.0)
    x, w = (jnp.asarray(v, q.dtype) for v in gauss_legendre(_N_SECANT))
    t = jnp.where(far, 1.0 - _SECANT_SWITCH, c) + 0.5 * jnp.minimum(gap, _SECANT_SWITCH) * (
        x + 1.0)
    slopes = jax.vmap(lambda tt: _chi_c(tt, q, sw2, act))(t)
    return jnp.where(far, quotient, 1.0 - 0.5 * jnp.sum(w * slopes))


def _c_star(q, sw2, sb2, act, chi1):
    """``(c*, status)``: 1 unless chaotic, else bisection on :func:`_secant_residual`.

    Chaotic means ``chi_1 > 1 + CRITICAL_TOL``; within ``CRITICAL_TOL`` of one the
    stable fixed point is the marginal ``c* = 1``.
    """
    dtype = jnp.result_type(q, float)
    finite_q = jnp.isfinite(q) & (q > 0)
    qq = jnp.where(finite_q, q, 1.0)

    chaotic = chi1 > 1.0 + CRITICAL_TOL

    def fn(c, args):
        qa, w2, b2 = args
        # not chaotic: c* = 1 is known; give the solver a trivial problem instead
        return jnp.where(chaotic, _secant_residual(c, qa, w2, b2, act), 0.5 - c)

    # h decreases (flip=True): h(0) = f(0) may round to -0 for an odd phi without bias
    sol = optx.root_find(fn, optx.Bisection(rtol=0.0, atol=1e-13, flip=True),
                         jnp.asarray(0.5, dtype),
                         (qq, sw2, sb2), options=dict(lower=jnp.zeros((), dtype),
                                                      upper=jnp.ones((), dtype)),
                         throw=False, max_steps=256)
    ok = (sol.result == optx.RESULTS.successful) & jnp.isfinite(sol.value)
    c = jnp.where(chaotic, jnp.clip(sol.value, 0.0, 1.0), jnp.ones((), dtype))
    status = jnp.where(~chaotic | ok, Status.OK, Status.SOLVER_FAILED)
    return c, status.astype(jnp.int32)


class MeanField(eqx.Module):
    r"""Fixed points and depth scales of the feed-forward mean field at one :math:`(\sigma_w^2, \sigma_b^2)`.

    Attributes
    ----------
    sigma_w2, sigma_b2:
        The variances (arrays; a grid when computed by :func:`phase_diagram`).
    q_star:
        Fixed point of the length map (``inf`` without a stable finite one).
    c_star:
        Stable fixed point of the correlation map (1 in the ordered phase).
    chi_1:
        :math:`\sigma_w^2 \mathbb E[\phi'(\sqrt{q^*} z)^2]`; the ordered phase is ``chi_1 < 1``.
    chi_c:
        Slope of the correlation map at :math:`c^*` (equals ``chi_1`` when ``c* = 1``).
    chi_q:
        Slope of the length map at :math:`q^*`.
    xi_q, xi_c:
        Depth scales :math:`-1/\log\chi_q`, :math:`-1/\log\chi_c` (``inf`` at criticality).
    status:
        :class:`~fieldres.status.Status` codes.
    """

    sigma_w2: Array
    sigma_b2: Array
    q_star: Array
    c_star: Array
    chi_1: Array
    chi_c: Array
    chi_q: Array
    xi_q: Array
    xi_c: Array
    status: Array

    @property
    def chaotic(self) -> Array:
        """``chi_1 > 1``."""
        return self.chi_1 > 1.0

    def messages(self) -> np.ndarray:
        st = np.asarray(self.status)
        return np.vectorize(status_message, otypes=[object])(st)


def _depth_scale(chi):
    """``-1 / log chi`` for ``0 < chi < 1``; ``inf`` within ``CRITICAL_TOL`` of 1; ``nan`` beyond."""
    critical = jnp.abs(chi - 1.0) <= CRITICAL_TOL
    below = (chi < 1.0) & ~critical
    return jnp.where(below, -1.0 / jnp.log(jnp.where(below, chi, 0.5)),
                     jnp.where(critical, jnp.inf, jnp.nan))


def _mean_field(sw2, sb2, act, q0):
    q, q_root, st_q = _q_fixed(sw2, sb2, act, q0)
    ok = is_success(st_q)
    # slopes at the root, also where a marginal root recedes to infinity (q* = inf)
    qq = jnp.where(ok, q_root, 1.0)
    dphi2 = derivative_variance(act, qq)
    chi1 = jnp.where(ok, sw2 * dphi2, jnp.nan)
    chiq = jnp.where(ok, sw2 * jax.grad(lambda x: act.variance(x))(qq), jnp.nan)
    c, st_c = _c_star(jnp.where(ok, qq, jnp.nan), sw2, sb2, act, jnp.where(ok, chi1, 0.0))
    chic = jnp.where(c < 1.0, _chi_c(jnp.minimum(c, 1.0), qq, sw2, act), chi1)
    chic = jnp.where(ok, chic, jnp.nan)
    c = jnp.where(ok, c, jnp.nan)
    critical = (st_q == Status.CRITICAL) | (jnp.abs(chi1 - 1.0) <= CRITICAL_TOL)
    status = jnp.where(ok, jnp.where((st_c == Status.OK) & critical, Status.CRITICAL, st_c),
                       st_q)
    return MeanField(jnp.asarray(sw2), jnp.asarray(sb2), q, c, chi1, chic, chiq,
                     _depth_scale(chiq), _depth_scale(chic), status.astype(jnp.int32))


@eqx.filter_jit
def _mean_field_grid(sw2, sb2, act, q0):
    # lax.map, not vmap: a batched while loop would run every point for as many Newton
    # steps as the slowest one (those next to the critical line) needs
    return jax.lax.map(lambda ab: _mean_field(ab[0], ab[1], act, q0), (sw2, sb2))


def _prep(sigma_w2, sigma_b2):
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    sw2, sb2 = jnp.broadcast_arrays(jnp.asarray(sigma_w2, float), jnp.asarray(sigma_b2, float))
    return sw2, sb2


def mean_field(
    sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh", *, q0: float = 1.0
) -> MeanField:
    r"""All mean-field quantities of a feed-forward net at :math:`(\sigma_w^2, \sigma_b^2)`.

    Broadcasts over arrays of variances (one compilation, ``vmap``). ``q0`` is where the
    length iteration starts (it selects the stable fixed point that a network reaches).

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> from fieldres.meanfield.feedforward import mean_field
    >>> mf = mean_field(1.0, 0.0, "erf")          # erf: sigma_w,crit^2 = pi/4 at sigma_b = 0
    >>> bool(mf.chi_1 > 1), float(mf.c_star)      # chaotic, inputs decorrelate completely
    (True, 0.0)
    """
    act = get_activation(activation)
    sw2, sb2 = _prep(sigma_w2, sigma_b2)
    shape = sw2.shape
    out = _mean_field_grid(sw2.reshape(-1), sb2.reshape(-1), act, jnp.asarray(q0, sw2.dtype))
    return jax.tree.map(lambda x: x.reshape(shape), out)


def q_star(sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh", *, q0: float = 1.0
           ) -> tuple[Array, Array]:
    r"""Fixed point :math:`q^* = \sigma_w^2 \mathbb E[\phi(\sqrt{q^*} z)^2] + \sigma_b^2` and its status.

    Differentiable in the variances (``optimistix`` Newton with implicit adjoint).
    """
    act = get_activation(activation)
    sw2, sb2 = _prep(sigma_w2, sigma_b2)
    f = jax.vmap(lambda a, b: _q_star(a, b, act, jnp.asarray(q0, sw2.dtype)))
    q, st = f(sw2.reshape(-1), sb2.reshape(-1))
    return q.reshape(sw2.shape), st.reshape(sw2.shape)


def chi_1(sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh", *, q0: float = 1.0
          ) -> Array:
    r""":math:`\chi_1 = \sigma_w^2 \mathbb E[\phi'(\sqrt{q^*} z)^2]` (``nan`` without a fixed point)."""
    return mean_field(sigma_w2, sigma_b2, activation, q0=q0).chi_1


def c_star(sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation="tanh", *, q0: float = 1.0
           ) -> Array:
    r"""Stable fixed point of the correlation map (1 in the ordered phase)."""
    return mean_field(sigma_w2, sigma_b2, activation, q0=q0).c_star


# ----------------------------------------------------------------------------------------
# The order-to-chaos transition
# ----------------------------------------------------------------------------------------


class CriticalPoint(NamedTuple):
    r""":math:`\sigma^2_{w,\mathrm{crit}}(\sigma_b^2)` with :math:`q^*` there and a status per entry."""

    sigma_b2: Array
    sigma_w2: Array
    q_star: Array
    status: Array

    def messages(self) -> np.ndarray:
        return np.vectorize(status_message, otypes=[object])(np.asarray(self.status))


def _log_chi1_or_beyond(u, sb2, act, q0):
    """``log chi_1`` at ``sigma_w^2 = e^u``; ``+1`` where the length diverges (beyond the edge)."""
    sw2 = jnp.exp(u)
    _, q_root, st = _q_fixed(sw2, sb2, act, q0)
    # a marginal root receding to infinity (ReLU next to sigma_w^2 = 2) still has its slope,
    # so that the function stays continuous up to the edge
    ok = is_success(st)
    chi = sw2 * derivative_variance(act, jnp.where(ok, q_root, 1.0))
    return jnp.where(ok, jnp.log(chi), 1.0)


def _critical_one(sb2, act, lo, hi, q0, atol):
    g_lo = _log_chi1_or_beyond(lo, sb2, act, q0)
    g_hi = _log_chi1_or_beyond(hi, sb2, act, q0)
    crossing = (g_lo < 0) & (g_hi > 0)

    def fn(u, args):
        b2 = args
        g = _log_chi1_or_beyond(u, b2, act, q0)
        return jnp.where(crossing, g, u - 0.5 * (lo + hi))

    sol = optx.root_find(fn, optx.Bisection(rtol=0.0, atol=atol), 0.5 * (lo + hi), sb2,
                         options=dict(lower=lo, upper=hi), throw=False, max_steps=400)
    ok = crossing & (sol.result == optx.RESULTS.successful)
    sw2 = jnp.where(ok, jnp.exp(sol.value), jnp.nan)
    q, st_q = _q_star(jnp.where(ok, sw2, 1.0), sb2, act, q0)
    status = jnp.where(~crossing, Status.NO_CROSSING,
                       jnp.where(ok, Status.OK, Status.SOLVER_FAILED))
    # ReLU-like activations: the edge coincides with the divergence of q* (q* = inf there)
    return sw2, jnp.where(ok & (st_q == Status.OK), q, jnp.inf), status.astype(jnp.int32)


@eqx.filter_jit
def _critical_batch(sb2, act, lo, hi, q0, atol):
    return jax.vmap(lambda b: _critical_one(b, act, lo, hi, q0, atol))(sb2)


def critical_sigma_w2(
    sigma_b2: ArrayLike,
    activation="tanh",
    *,
    bracket: tuple[float, float] = (1e-2, 1e2),
    q0: float = 1.0,
    atol: float = 1e-13,
) -> CriticalPoint:
    r"""The order-to-chaos line :math:`\chi_1(\sigma^2_{w,\mathrm{crit}}, \sigma_b^2) = 1`.

    Bisection in :math:`\log\sigma_w^2` inside ``bracket`` (``optimistix``), with the length
    fixed point solved inside each evaluation. Where the length map loses its stable fixed
    point before :math:`\chi_1` reaches one (ReLU: at :math:`\sigma_w^2 = 2`, where also
    :math:`\chi_1 = 1`), the edge is where :math:`q^*` diverges and ``q_star`` is ``inf``.
    Vectorised over ``sigma_b2``. Closed forms for checks: erf at :math:`\sigma_b = 0`:
    :math:`\pi/4`; tanh at :math:`\sigma_b = 0`: 1; ReLU: 2.

    Returns a :class:`CriticalPoint`; entries without a sign change of :math:`\chi_1 - 1`
    in the bracket have status ``NO_CROSSING`` and ``nan`` (never a bracket end).
    """
    act = get_activation(activation)
    check_nonnegative("sigma_b2", sigma_b2)
    lo, hi = bracket
    if not (0 < lo < hi and np.isfinite(hi)):
        raise FieldresInputError(f"bracket must satisfy 0 < lo < hi < inf, got {bracket}")
    sb2 = jnp.asarray(sigma_b2, float)
    shape = sb2.shape
    sw2, q, st = _critical_batch(sb2.reshape(-1), act, jnp.log(jnp.asarray(lo, sb2.dtype)),
                                 jnp.log(jnp.asarray(hi, sb2.dtype)),
                                 jnp.asarray(q0, sb2.dtype), atol)
    return CriticalPoint(sb2, sw2.reshape(shape), q.reshape(shape), st.reshape(shape))


class PhaseDiagram(NamedTuple):
    """Grid of :class:`MeanField` results and the critical line (for the heat map)."""

    sigma_w2: np.ndarray  # (n_w,)
    sigma_b2: np.ndarray  # (n_b,)
    grid: MeanField  # arrays of shape (n_b, n_w)
    critical: CriticalPoint  # on a finer sigma_b2 line


def phase_diagram(
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    activation="tanh",
    *,
    n_critical: int = 60,
    bracket: tuple[float, float] = (1e-2, 1e2),
) -> PhaseDiagram:
    r""":class:`MeanField` on the grid ``sigma_b2 x sigma_w2`` and the critical line.

    ``grid.xi_c[i, j]`` is :math:`\xi_c` at :math:`(\sigma_w^2, \sigma_b^2) =`
    ``(sigma_w2[j], sigma_b2[i])``; the line is computed on ``n_critical`` values of
    :math:`\sigma_b^2` spanning ``sigma_b2``.
    """
    w = np.asarray(sigma_w2, float)
    b = np.asarray(sigma_b2, float)
    if w.ndim != 1 or b.ndim != 1:
        raise FieldresInputError("phase_diagram takes 1-D grids of sigma_w2 and sigma_b2")
    W, B = np.meshgrid(w, b)
    grid = mean_field(W, B, activation)
    line = critical_sigma_w2(np.linspace(b.min(), b.max(), n_critical), activation,
                             bracket=bracket)
    return PhaseDiagram(w, b, grid, line)


def plot_phase_diagram(diagram: PhaseDiagram, *, title: str | None = None, out=None):
    r"""Heat map of :math:`\xi_c` over :math:`(\sigma_w^2, \sigma_b^2)` with the critical line.

    Colours are :math:`\log_{10}\xi_c` (clipped to ``[0, 3]``); white where :math:`q^*` does not
    exist. Returns the matplotlib figure (saved to ``out`` if given).
    """
    from .. import plotting  # headless backend

    plt = plotting.plt
    w, b = diagram.sigma_w2, diagram.sigma_b2
    xi = np.asarray(diagram.grid.xi_c, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.clip(np.log10(xi), 0.0, 3.0)
    z[~np.isfinite(xi) & np.asarray(is_success(diagram.grid.status))] = 3.0  # critical
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    mesh = ax.pcolormesh(w, b, np.ma.masked_invalid(z), shading="auto", cmap="magma",
                         vmin=0.0, vmax=3.0)
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label(r"$\log_{10}\xi_c$")
    line = diagram.critical
    ok = np.asarray(line.status) == 0
    ax.plot(np.asarray(line.sigma_w2)[ok], np.asarray(line.sigma_b2)[ok], "w--", lw=2,
            label=r"$\chi_1 = 1$")
    ax.set_xlim(w.min(), w.max())
    ax.set_ylim(b.min(), b.max())
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.text(0.03, 0.92, "ordered", transform=ax.transAxes, color="w")
    ax.text(0.80, 0.08, "chaotic", transform=ax.transAxes, color="w")
    ax.legend(loc="upper right", frameon=False, labelcolor="w", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plotting.save(fig, out)
    return fig
