"""The optimal residual scaling ``rho* = argmax_rho chi^out(rho)``.

The output response (:mod:`fieldres.signal.response`) of a deep ResNet with a bounded activation
has a unique interior maximum in the residual scaling ``rho`` (Fischer, Dahmen, Helias,
arXiv:2305.07715, Sec. 4 and Fig. 4): too small a ``rho`` keeps the signal in the linear
range of ``phi``, too large a ``rho`` drives it into saturation. ``rho*`` is found by

1. evaluating ``chi^out`` on a logarithmic grid of ``rho`` (vmapped, one compilation) and
   bracketing the largest value between its grid neighbours;
2. solving ``d chi^out / d log rho = 0`` inside that bracket with optimistix's bisection,
   the derivative by forward-mode autodiff;
3. differentiating the solution by the implicit function theorem
   (``optimistix.ImplicitAdjoint``), so ``jax.grad`` of ``rho*`` with respect to the
   variances and the input kernel works.

When the largest grid value sits at an end of the grid there is no interior maximum in the
range: ``chi^out`` grows monotonically (e.g. ReLU, which is positively homogeneous) or falls
monotonically (the input kernel already lies beyond the optimal kernel ``K*``, so
``rho* -> 0``). These cases are reported by a status code and ``rho_star = nan``; a bracket
end is never returned as if it were optimal.

The large-depth (continuum) limit, ``t = rho^2 l``, ``dK/dt = sigma_w^2 C(K) + sigma_b^2``,
gives an equation for the optimal last-layer kernel ``K*`` independent of ``L`` and ``K0``,

.. math::

    \\sigma_w^2 C'(K^*) + \\frac{C''(K^*)}{C'(K^*)} (\\sigma_w^2 C(K^*) + \\sigma_b^2) = 0,
    \\qquad \\tau^* = \\int_{K^{(0)}}^{K^*} \\frac{dK}{\\sigma_w^2 C(K) + \\sigma_b^2},
    \\qquad \\rho^* \\approx \\sqrt{\\tau^* / L},

implemented in :func:`rho_star_continuum`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Int

from .._validation import FieldresInputError, check_depth, check_kernel, check_positive
from ..kernels.activations import Activation, get_activation
from ..kernels.quadrature import gauss_legendre
from ..kernels.recursion import Hyper, as_arrays, gaussian_layer, output_kernel, propagate
from ..status import Status, message

__all__ = [
    "OptimalScaling",
    "rho_star",
    "rho_star_entries",
    "rho_star_scaling",
    "ScalingFit",
    "Continuum",
    "rho_star_continuum",
    "chi_entry",
]


def status_message(status: int, rho_range: tuple[float, float]) -> str:
    """Readable text of a ``rho*`` :class:`~fieldres.status.Status` code."""
    return message(status, "rho_star", lo=rho_range[0], hi=rho_range[1])


class OptimalScaling(eqx.Module):
    """``rho*`` and the maximal response, with a status per entry.

    Attributes
    ----------
    rho_star:
        Optimal scaling (``nan`` where ``status != 0``).
    chi_max:
        ``chi^out(rho*)`` (``nan`` where ``status != 0``).
    status:
        :class:`~fieldres.status.Status` codes.
    rho_range:
        The searched range ``(rho_min, rho_max)``.
    """

    rho_star: Array
    chi_max: Array
    status: Int[Array, "..."]
    rho_range: tuple[float, float] = eqx.field(static=True)

    def messages(self) -> np.ndarray:
        """Human-readable status for every entry."""
        st = np.asarray(self.status)
        return np.vectorize(lambda s: status_message(s, self.rho_range), otypes=[object])(st)

    @property
    def ok(self) -> Array:
        return self.status == Status.OK


def chi_entry(rho, K0sub, hyper, act, n_steps, depth, diagonal: bool):
    """``chi^out`` of one entry on its own ``1 x 1`` (diagonal) or ``2 x 2`` block."""
    P = K0sub.shape[-1]
    if diagonal:
        tangent = jnp.eye(P, dtype=K0sub.dtype)[:1, :1] if P == 1 else jnp.zeros_like(K0sub).at[
            0, 0].set(1.0)
    else:
        tangent = jnp.array([[0.0, 1.0], [1.0, 0.0]], dtype=K0sub.dtype)

    def k_out(K0):
        K_L, _ = propagate(K0, rho, hyper, act, n_steps, depth, trajectory=False)
        return output_kernel(K_L, hyper, act)

    d = jax.jvp(k_out, (K0sub,), (tangent,))[1]
    return d[0, 0] if diagonal else d[0, 1]


def _solve_one(K0sub, hyper, depth, act, n_steps, diagonal, grid_u, atol):
    def chi_u(u, args):
        K0s, hyp, dep = args
        return chi_entry(jnp.exp(u), K0s, hyp, act, n_steps, dep, diagonal)

    args = (K0sub, hyper, depth)
    chi_grid = jax.vmap(lambda u: chi_u(u, args))(grid_u)
    # Non-finite values (e.g. an unbounded activation overflowing at huge rho) are invalid;
    # the largest valid value is bracketed by its grid neighbours.
    valid = jnp.isfinite(chi_grid)
    n = grid_u.shape[0]
    i = jnp.argmax(jnp.where(valid, chi_grid, -jnp.inf))
    j = jnp.clip(i, 1, n - 2)
    lower = jax.lax.stop_gradient(grid_u[j - 1])
    upper = jax.lax.stop_gradient(grid_u[j + 1])
    centre = jax.lax.stop_gradient(grid_u[j])

    def dchi_raw(u, args):
        return jax.jvp(lambda v: chi_u(v, args), (u,), (jnp.ones_like(u),))[1]

    last_valid = (i == n - 1) | ~valid[jnp.minimum(i + 1, n - 1)]
    first_valid = (i == 0) | ~valid[jnp.maximum(i - 1, 0)]
    # A genuine interior maximum: the derivative changes sign from + to - across the bracket.
    sign_change = (dchi_raw(lower, args) > 0) & (dchi_raw(upper, args) < 0)
    interior = ~last_valid & ~first_valid & sign_change

    def dchi(u, args):
        # Without an interior maximum the bracket holds no root; give the solver a dummy
        # one so it runs cleanly (the result is discarded by the status below).
        return jnp.where(interior, dchi_raw(u, args), centre - u)

    sol = optx.root_find(
        dchi,
        optx.Bisection(rtol=0.0, atol=atol),
        centre,
        args,
        options=dict(lower=lower, upper=upper),
        throw=False,
        max_steps=256,
    )
    status = jnp.where(
        first_valid,
        Status.DECREASING,
        jnp.where(
            last_valid,
            Status.INCREASING,
            jnp.where(interior & (sol.result == optx.RESULTS.successful), Status.OK,
                      Status.SOLVER_FAILED),
        ),
    )
    ok = status == Status.OK
    rho = jnp.where(ok, jnp.exp(sol.value), jnp.nan)
    chi = jnp.where(ok, chi_u(jnp.where(ok, sol.value, grid_u[j]), args), jnp.nan)
    return rho, chi, status.astype(jnp.int32)


@eqx.filter_jit
def _solve_batch(K0subs, hyper, depths, act, n_steps, diagonal, grid_u, atol):
    """vmap over a batch of blocks and depths (same leading shape)."""
    return jax.vmap(
        lambda K, d: _solve_one(K, hyper, d, act, n_steps, diagonal, grid_u, atol)
    )(K0subs, depths)


def _grid(rho_range, n_grid, dtype):
    lo, hi = rho_range
    if not (0 < lo < hi and np.isfinite(hi)):
        raise FieldresInputError(
            f"rho_range must satisfy 0 < rho_min < rho_max < inf, got {rho_range}"
        )
    if n_grid < 5:
        raise FieldresInputError(f"n_grid must be >= 5, got {n_grid}")
    # A wide range (e.g. rho_max = 1e300) must not thin the grid out so much that the
    # maximum falls between two points: keep the spacing in log rho at most that of the
    # default range (1e-3, 1e2) on 64 points (bounded: at most ~7,600 points in float64).
    span = float(np.log(hi) - np.log(lo))
    n_grid = max(int(n_grid), int(np.ceil(span / _MAX_LOG_STEP)) + 1)
    return jnp.linspace(np.log(lo), np.log(hi), n_grid, dtype=dtype)


_MAX_LOG_STEP = float(np.log(1e5) / 63)


def _prepare(K0, hyper, activation):
    K0 = jnp.asarray(K0)
    check_kernel(K0)
    act = get_activation(activation)
    hyper = as_arrays(hyper, K0.dtype)
    return K0, hyper, act


def _blocks(K0, entries):
    """``1 x 1`` diagonal and ``2 x 2`` off-diagonal blocks of ``K0`` for index pairs."""
    ii = jnp.asarray([e[0] for e in entries])
    jj = jnp.asarray([e[1] for e in entries])
    # The off-diagonal element enters as the symmetric average, so that a gradient with
    # respect to K0 is symmetric (half on K_ab, half on K_ba) like K0 itself.
    kab = 0.5 * (K0[ii, jj] + K0[jj, ii])
    block = jnp.stack(
        [jnp.stack([K0[ii, ii], kab], -1), jnp.stack([kab, K0[jj, jj]], -1)], -2
    )
    return block


def rho_star_entries(
    K0: Float[ArrayLike, "P P"],
    depth: int | Sequence[int],
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    entries: Sequence[tuple[int, int]] | None = None,
    rho_range: tuple[float, float] = (1e-3, 1e2),
    n_grid: int = 64,
    atol: float = 1e-12,
) -> OptimalScaling:
    """``rho*`` for a list of kernel entries ``(a, b)`` (diagonal where ``a == b``).

    ``chi^out_ab`` depends only on the ``2 x 2`` block of ``K0`` of the inputs ``a, b``, so
    each entry is solved on its own block and all entries are vmapped together (diagonal
    entries in one batch, off-diagonal ones in another). ``entries=None`` takes every
    diagonal entry and every pair ``a < b`` (the paper's Fig. 5 averages these). ``depth`` may
    be a sequence of the same length as ``entries`` (one compilation for all).

    Returns an :class:`OptimalScaling` whose arrays follow the order of ``entries``.
    """
    K0, hyper, act = _prepare(K0, hyper, activation)
    P = K0.shape[0]
    if entries is None:
        entries = [(a, a) for a in range(P)] + [(a, b) for a in range(P) for b in range(a + 1, P)]
    entries = [tuple(int(x) for x in e) for e in entries]
    for a, b in entries:
        if not (0 <= a < P and 0 <= b < P):
            raise FieldresInputError(f"entry {(a, b)} out of range for a {P} x {P} kernel")
    depths = np.broadcast_to(np.asarray(depth), (len(entries),))
    check_depth(depths)
    n_steps = int(depths.max())
    same_depth = bool(np.all(depths == n_steps))
    grid_u = _grid(rho_range, n_grid, K0.dtype)

    # jnp scatters (not numpy) so that jax.grad flows through the per-entry solutions
    rho = jnp.full(len(entries), jnp.nan, K0.dtype)
    chi = jnp.full(len(entries), jnp.nan, K0.dtype)
    status = jnp.zeros(len(entries), dtype=jnp.int32)
    for diagonal in (True, False):
        idx = [k for k, (a, b) in enumerate(entries) if (a == b) == diagonal]
        if not idx:
            continue
        blocks = _blocks(K0, [entries[k] for k in idx])
        if diagonal:
            blocks = blocks[:, :1, :1]
        if same_depth:
            r, c, s = _solve_batch_fixed(blocks, hyper, act, n_steps, diagonal, grid_u, atol)
        else:
            r, c, s = _solve_batch(blocks, hyper, jnp.asarray(depths[idx]), act, n_steps,
                                   diagonal, grid_u, atol)
        ix = jnp.asarray(idx)
        rho, chi = rho.at[ix].set(r), chi.at[ix].set(c)
        status = status.at[ix].set(s.astype(jnp.int32))
    return OptimalScaling(rho, chi, status, tuple(float(x) for x in rho_range))


@eqx.filter_jit
def _solve_batch_fixed(K0subs, hyper, act, n_steps, diagonal, grid_u, atol):
    return jax.vmap(
        lambda K: _solve_one(K, hyper, None, act, n_steps, diagonal, grid_u, atol)
    )(K0subs)


def rho_star(
    K0: Float[ArrayLike, "P P"],
    depth: int | ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    entry: tuple[int, int] = (0, 0),
    rho_range: tuple[float, float] = (1e-3, 1e2),
    n_grid: int = 64,
    atol: float = 1e-12,
    max_depth: int | None = None,
) -> OptimalScaling:
    """``rho*`` of one entry of the output response; differentiable (implicit function theorem).

    ``entry=(a, a)`` is the diagonal summary ``chi^out_aa``, ``entry=(a, b)`` the off-diagonal
    one. Works under ``jax.grad``/``jax.vmap`` with respect to ``K0`` and ``hyper``; ``depth``
    may be traced when ``max_depth`` is given. Returns scalars in an :class:`OptimalScaling`.

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp, fieldres
    >>> K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    >>> round(float(fieldres.rho_star(K0, 100).rho_star), 6)
    0.097219
    """
    K0 = jnp.asarray(K0)
    check_kernel(K0)
    act = get_activation(activation)
    hyper = as_arrays(hyper, K0.dtype)
    a, b = entry
    P = K0.shape[0]
    if not (0 <= a < P and 0 <= b < P):
        raise FieldresInputError(f"entry {entry} out of range for a {P} x {P} kernel")
    diagonal = a == b
    if diagonal:
        block = K0[a, a].reshape(1, 1)
    else:
        kab = 0.5 * (K0[a, b] + K0[b, a])  # symmetric gradient, see _blocks
        block = jnp.stack([jnp.stack([K0[a, a], kab]), jnp.stack([kab, K0[b, b]])])
    check_depth(depth)
    if max_depth is None:
        if not isinstance(depth, int | np.integer):
            raise FieldresInputError("pass max_depth when depth is an array or traced")
        n_steps, dmask = int(depth), None
    else:
        n_steps, dmask = int(max_depth), depth
    grid_u = _grid(rho_range, n_grid, K0.dtype)
    r, c, s = _solve_one_jit(block, hyper, dmask, act, n_steps, diagonal, grid_u, atol)
    return OptimalScaling(r, c, s, tuple(float(x) for x in rho_range))


_solve_one_jit = eqx.filter_jit(_solve_one)


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """``rho*(L)`` for both summaries and the fit ``rho* = A L^exponent`` (log-log least squares).

    The exponents come with their standard errors from the fit residuals.
    """

    depths: np.ndarray
    diagonal: OptimalScaling
    offdiagonal: OptimalScaling
    exponent_diagonal: float
    exponent_diagonal_se: float
    exponent_offdiagonal: float
    exponent_offdiagonal_se: float


def fit_power_law(x, y) -> tuple[float, float, float]:
    """Slope, its standard error and intercept of ``log y`` vs ``log x`` (finite points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    m = np.isfinite(y) & (y > 0)
    if m.sum() < 2:
        return float("nan"), float("nan"), float("nan")
    lx, ly = np.log(x[m]), np.log(y[m])
    A = np.stack([lx, np.ones_like(lx)], 1)
    coef, res, *_ = np.linalg.lstsq(A, ly, rcond=None)
    n = m.sum()
    if n > 2:
        resid = ly - A @ coef
        s2 = resid @ resid / (n - 2)
        se = float(np.sqrt(s2 * np.linalg.inv(A.T @ A)[0, 0]))
    else:
        se = float("nan")
    return float(coef[0]), se, float(coef[1])


def rho_star_scaling(
    K0: Float[ArrayLike, "P P"],
    depths: Sequence[int],
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    diagonal_entry: tuple[int, int] = (0, 0),
    offdiagonal_entry: tuple[int, int] = (0, 1),
    rho_range: tuple[float, float] = (1e-3, 1e2),
    n_grid: int = 64,
    atol: float = 1e-12,
) -> ScalingFit:
    """``rho*(L)`` over depths for one diagonal and one off-diagonal entry, with fitted exponents.

    All depths of one summary are solved in a single vmapped, jit-compiled call (the scan
    runs to ``max(depths)`` with later layers masked), i.e. one compilation per summary.
    The paper (Fig. 4c) finds exponent ``-1/2`` for both.
    """
    depths = np.asarray(depths, dtype=int)
    if depths.ndim != 1 or depths.size == 0:
        raise FieldresInputError(f"depths must be a non-empty list of integers, got {depths}")
    check_depth(depths)
    K0 = jnp.asarray(K0)
    if K0.shape[0] < 2:
        raise FieldresInputError("rho_star_scaling needs a kernel of at least two inputs (P >= 2)")
    n = len(depths)
    diag = rho_star_entries(K0, depths, hyper, activation, entries=[diagonal_entry] * n,
                            rho_range=rho_range, n_grid=n_grid, atol=atol)
    off = rho_star_entries(K0, depths, hyper, activation, entries=[offdiagonal_entry] * n,
                           rho_range=rho_range, n_grid=n_grid, atol=atol)
    ed, sed, _ = fit_power_law(depths, diag.rho_star)
    eo, seo, _ = fit_power_law(depths, off.rho_star)
    return ScalingFit(depths, diag, off, ed, sed, eo, seo)


# ----------------------------------------------------------------------------------------
# Continuum (large-depth) limit
# ----------------------------------------------------------------------------------------


class Continuum(eqx.Module):
    """Large-depth prediction for the single-input diagonal optimum.

    Attributes
    ----------
    K_star:
        Optimal last-layer kernel (independent of ``L`` and ``K0``).
    tau_star:
        ``tau* = rho*^2 L`` for the given ``K0``.
    rho_star:
        ``sqrt(tau* / L)`` (``nan`` unless ``status == 0``).
    status:
        :class:`Status` (``INCREASING`` when ``K*`` does not exist, ``DECREASING`` when
        ``K0 >= K*``).
    """

    K_star: Array
    tau_star: Array
    rho_star: Array
    status: Array


def _continuum_fns(act, hyper):
    C = act.variance
    C1 = jax.grad(lambda k: C(k))
    C2 = jax.grad(lambda k: C1(k))

    def G(k, args=None):
        return hyper.sigma_w2 * C1(k) + C2(k) / C1(k) * gaussian_layer(C(k), hyper.sigma_w2,
                                                                      hyper.sigma_b2)

    return C, G


def rho_star_continuum(
    k0: ArrayLike,
    depth: int | ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    k_range: tuple[float, float] = (1e-8, 1e4),
    n_grid: int = 400,
    n_quad: int = 96,
) -> Continuum:
    """Continuum-limit ``K*``, ``tau*`` and ``rho* ~ sqrt(tau*/L)`` for input variance ``k0``.

    ``K*`` is the first root (from small ``K``) where ``G(K) = sigma_w^2 C'(K) +
    C''(K)/C'(K) (sigma_w^2 C(K) + sigma_b^2)`` changes sign from positive to negative; the
    integral for ``tau*`` uses ``n_quad``-point Gauss--Legendre quadrature.
    """
    check_positive("k0 (the input variance)", k0)
    check_depth(depth)
    act = get_activation(activation)
    dtype = jnp.result_type(float)
    hyper = as_arrays(hyper, dtype)
    C, G = _continuum_fns(act, hyper)
    ks = jnp.exp(jnp.linspace(np.log(k_range[0]), np.log(k_range[1]), n_grid, dtype=dtype))
    g = np.asarray(jax.vmap(G)(ks))
    sign_change = np.nonzero((g[:-1] > 0) & (g[1:] <= 0))[0]
    if sign_change.size == 0:
        nan = jnp.asarray(np.nan, dtype)
        if not np.all(np.isfinite(g)):
            status = Status.SOLVER_FAILED
        else:  # G < 0 from the start: chi^out falls with rho; G > 0 throughout: it rises
            status = Status.DECREASING if g[0] <= 0 else Status.INCREASING
        return Continuum(nan, nan, nan, jnp.asarray(status))
    i = int(sign_change[0])
    sol = optx.root_find(
        lambda u, a: G(jnp.exp(u)),
        optx.Bisection(rtol=0.0, atol=1e-13),
        jnp.log(ks[i]),
        options=dict(lower=jnp.log(ks[i]), upper=jnp.log(ks[i + 1])),
        max_steps=256,
        throw=False,
    )
    if sol.result != optx.RESULTS.successful or not np.isfinite(float(sol.value)):
        nan = jnp.asarray(np.nan, dtype)  # e.g. sigma_w^2 = 1e300: G overflows in the bracket
        return Continuum(nan, nan, nan, jnp.asarray(Status.SOLVER_FAILED))
    k_star = jnp.exp(sol.value)
    k0 = jnp.asarray(k0, dtype)
    if float(k0) >= float(k_star):
        nan = jnp.asarray(np.nan, dtype)
        return Continuum(k_star, nan, nan, jnp.asarray(Status.DECREASING))
    x, w = gauss_legendre(n_quad)
    mid, half = 0.5 * (k_star + k0), 0.5 * (k_star - k0)
    kk = mid + half * jnp.asarray(x, dtype)
    tau = half * jnp.sum(jnp.asarray(w, dtype) / gaussian_layer(C(kk), hyper.sigma_w2,
                                                                hyper.sigma_b2))
    return Continuum(k_star, tau, jnp.sqrt(tau / depth), jnp.asarray(Status.OK))

