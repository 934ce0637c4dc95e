# jaxtyping dimension strings ("Lp1 Lp1") are not forward references:
# ruff: noqa: F722
r"""The response at finite width and the optimal scaling :math:`\rho^*(N)`.

:func:`chi_out_nlo` differentiates the NLO mean output kernel with respect to
:math:`K^{(0)}`; :func:`rho_star_width` expands the stationarity condition around the
leading-order optimum.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ..kernels.activations import Activation, get_activation
from ..kernels.recursion import Hyper
from .api import _choose_method
from .pairs import _general
from .walk import _walk

__all__ = ["WidthOptimum", "chi_out_nlo", "rho_star_width"]


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
    from .._validation import is_concrete
    from ..kernels.activations import Erf

    nan = jnp.asarray(jnp.nan, K0.dtype)
    if is_concrete(lo.status) and not bool(ok):
        # No leading-order optimum (e.g. ReLU, whose response grows monotonically with rho):
        # nothing to correct, and the 1/N derivatives would be computed for nothing.
        return WidthOptimum(rho_star_inf=lo.rho_star, rho_star=nan, shift=nan, chi_inf=nan,
                            chi_1=nan, status=lo.status)
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
    return WidthOptimum(
        rho_star_inf=lo.rho_star,
        rho_star=jnp.where(ok, rho_N, nan),
        shift=jnp.where(ok, shift, nan),
        chi_inf=jnp.where(ok, c0, nan),
        chi_1=jnp.where(ok, c1, nan),
        status=lo.status,
    )
