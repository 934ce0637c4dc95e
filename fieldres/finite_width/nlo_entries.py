# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r""":math:`\rho^*(N)` for every diagonal entry and every pair of a ``P x P`` input kernel.

The leading-order data-driven optimum (the paper's Fig. 5, ``fieldres rho-star --dataset``)
averages :math:`\rho^*(\infty)` over the ``P`` diagonal responses :math:`\chi^{out}_{aa}` and
over the ``P (P - 1) / 2`` off-diagonal ones :math:`\chi^{out}_{ab}`;
:func:`rho_star_width_entries` does the same at finite width. Every entry depends only on its
own ``1 x 1`` (diagonal) or ``2 x 2`` (pair) sub-block of ``K0``, so each entry is exactly
:func:`~fieldres.finite_width.rho_star_width` on its block (walk method); the entries of one
kind share one compilation (one common walk grid: the largest that any entry of the kind
needs, so every entry is at least as converged as on its own) and run in one
:func:`jax.lax.map`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError, check_depth
from ..kernels.activations import Activation, Erf, get_activation
from ..kernels.recursion import Hyper, output_kernel
from ._leading import _layer_kernels
from .api import _choose_method
from .nlo import _entry_block
from .pairs import _general
from .walk import _walk

__all__ = ["WidthOptima", "check_pairs_invertible", "rho_star_width_entries"]

#: A pair's 2 x 2 block is singular (the walk method needs it invertible) when its smallest
#: eigenvalue is below this fraction of its largest diagonal entry (as in ``finite_width``).
_SINGULAR = 1e-12


class WidthOptima(eqx.Module):
    r""":math:`\rho^*(\infty)` and the :math:`1/N` shift of :math:`\rho^*` for a list of entries.

    Arrays follow the order of ``entries``. Entries without a leading-order optimum
    (``status != 0``) have ``nan`` in ``shift``, ``chi_inf`` and ``chi_1``.

    Attributes
    ----------
    entries:
        The kernel entries ``(a, b)`` (diagonal where ``a == b``).
    rho_star_inf:
        :math:`\rho^*(\infty)` of each entry (leading order).
    shift:
        :math:`c = N\,\delta\ln\rho^*` of each entry, so that
        :math:`\rho^*(N) = \rho^*(\infty)\,e^{c/N}` to :math:`O(1/N)`.
    chi_inf, chi_1:
        :math:`\chi_0` and the :math:`1/N` coefficient :math:`\chi_1` of the response at the
        leading-order optimum.
    status:
        :class:`fieldres.signal.optimal.Status` of each leading-order search.
    """

    entries: tuple[tuple[int, int], ...] = eqx.field(static=True)
    rho_star_inf: Array
    shift: Array
    chi_inf: Array
    chi_1: Array
    status: Array

    def rho_star(self, width: ArrayLike) -> np.ndarray:
        r""":math:`\rho^*(N)` of each entry, ``(E,)`` (or ``(len(width), E)`` for an array)."""
        w = np.asarray(width, np.float64)[..., None]
        return np.asarray(self.rho_star_inf) * np.exp(np.asarray(self.shift) / w)

    def valid(self, width: float) -> np.ndarray:
        r"""Entries whose :math:`1/N` expansion holds at ``width``: a leading-order optimum,
        :math:`|\chi_1/N| < |\chi_0|` and :math:`|c/N| < 1` (``(E,)`` booleans)."""
        c0, c1, c = (np.asarray(x) for x in (self.chi_inf, self.chi_1, self.shift))
        with np.errstate(invalid="ignore"):
            return (np.asarray(self.status) == 0) & np.isfinite(c) & (
                np.abs(c1 / width) < np.abs(c0)) & (np.abs(c / width) < 1.0)

    def summary(self, width: float) -> dict:
        r"""Averages over the diagonal and the off-diagonal entries at ``width``.

        The leading-order average is over the entries with an optimum (as
        ``fieldres rho-star`` averages them); the finite-width averages are over the entries
        whose expansion holds (:meth:`valid`), with :math:`\rho^*(\infty)` averaged over the
        same entries, so that ``rho_star_N = rho_star_inf_same * exp(log_shift_times_N / N)``
        defines the shift of the average.

        Returns
        -------
        dict
            ``{"diagonal": {...}, "offdiagonal": {...}}``, each with ``n_entries``, ``n_lo``
            (entries with a leading-order optimum), ``n_valid``, ``rho_star_inf`` (mean over
            ``n_lo``), ``rho_star_inf_same`` and ``rho_star_N`` (means over ``n_valid``),
            ``log_shift_times_N`` and ``chi_out_max_N`` (mean of :math:`\chi_0 + \chi_1/N`);
            ``None`` where the set is empty.
        """
        width = float(width)
        r0 = np.asarray(self.rho_star_inf)
        rN = self.rho_star(width)
        ok_lo = (np.asarray(self.status) == 0) & np.isfinite(r0)
        ok = self.valid(width)
        chiN = np.asarray(self.chi_inf) + np.asarray(self.chi_1) / width
        out = {}
        for kind, diag in (("diagonal", True), ("offdiagonal", False)):
            sel = np.array([(a == b) == diag for a, b in self.entries], bool)
            lo, v = sel & ok_lo, sel & ok
            d = {"n_entries": int(sel.sum()), "n_lo": int(lo.sum()), "n_valid": int(v.sum()),
                 "rho_star_inf": float(r0[lo].mean()) if lo.any() else None,
                 "rho_star_inf_same": None, "rho_star_N": None, "log_shift_times_N": None,
                 "chi_out_max_N": None}
            if v.any():
                m0, mN = float(r0[v].mean()), float(rN[v].mean())
                d.update(rho_star_inf_same=m0, rho_star_N=mN,
                         log_shift_times_N=float(width * np.log(mN / m0)),
                         chi_out_max_N=float(chiN[v].mean()))
            out[kind] = d
        return out


def check_pairs_invertible(K0: Float[ArrayLike, "P P"],
                           pairs: Sequence[tuple[int, int]] | None = None) -> None:
    """Raise :class:`~fieldres.FieldresInputError` if the ``2 x 2`` block of ``K0`` of a pair
    ``(a, b)`` (default: every pair ``a < b``) is singular: the walk method of the
    finite-width theory needs it invertible (inputs identical or opposite up to scale)."""
    Kn = np.asarray(K0, np.float64)
    P = Kn.shape[0]
    if pairs is None:
        pairs = [(a, b) for a in range(P) for b in range(a + 1, P)]
    for a, b in pairs:
        blk2 = Kn[np.ix_([a, b], [a, b])]
        if np.linalg.eigvalsh(blk2)[0] <= _SINGULAR * blk2.diagonal().max():
            raise FieldresInputError(
                f"inputs {a} and {b} are identical or opposite up to scale (their 2 x 2 "
                f"block of K0 is singular): the finite-width walk method needs it "
                f"invertible; drop one of the two inputs")


def _all_entries(P):
    return [(a, a) for a in range(P)] + [(a, b) for a in range(P) for b in range(a + 1, P)]


def _derivatives(block, T, u, hyper, act, depth, ik, erf_closed, degree, inner_degree,
                 n_theta, blk, grids):
    """``(chi_0, chi_1)``, ``d chi_1 / du`` and ``d^2 chi_0 / du^2`` at ``u = ln rho``.

    The same quantities as :func:`fieldres.finite_width.nlo._chi_derivatives`, at half its
    cost: the NLO routine (walk with these ``grids``; the pairs method when ``grids`` is
    empty) is differentiated once in ``K0`` and once in ``u``, and the second ``u``
    derivative of the *leading-order* response comes from the leading-order recursion
    alone (the NLO routine's ``out`` is that recursion's output kernel).
    """
    i, k = ik

    def chi(uu):
        def stats(Kb):
            args = (Kb, jnp.exp(uu), hyper, act, depth, True, True, erf_closed, degree,
                    inner_degree, n_theta, blk)
            r = _walk(*args, *grids) if grids else _general(*args)
            return jnp.stack([r.out[i, k], r.out_shift[i, k]])

        return jax.jvp(stats, (block,), (T,))[1]

    def chi0(uu):
        def out(Kb):
            Ks, _ = _layer_kernels(Kb, jnp.exp(uu), hyper, act, depth, True)
            return output_kernel(Ks[-1], hyper, act)[i, k]

        return jax.jvp(out, (block,), (T,))[1]

    one = jnp.ones_like(u)
    c, d = jax.jvp(chi, (u,), (one,))
    dd0 = jax.jvp(lambda uu: jax.jvp(chi0, (uu,), (one,))[1], (u,), (one,))[1]
    return c, d[1], dd0


@eqx.filter_jit
def _chi_derivatives_map(blocks, us, T, hyper, act, depth, ik, erf_closed, degree,
                         inner_degree, n_theta, blk, grids, batch_size):
    """:func:`_derivatives` of every ``(block, u)``: one compilation, ``lax.map``."""

    def one(x):
        b, u = x
        return _derivatives(b, T, u, hyper, act, depth, ik, erf_closed, degree, inner_degree,
                            n_theta, blk, grids)

    return jax.lax.map(one, (blocks, us), batch_size=batch_size)


def rho_star_width_entries(
    K0: Float[ArrayLike, "P P"],
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    entries: Sequence[tuple[int, int]] | None = None,
    rho_range: tuple[float, float] = (1e-3, 1e2),
    degree: int = 80,
    n_theta: int = 20,
    inner_degree: int = 24,
    batch_size: int | None = None,
) -> WidthOptima:
    r""":math:`\rho^*(\infty)` and its :math:`1/N` shift for many entries of ``K0`` at once.

    Entry by entry this is :func:`~fieldres.finite_width.rho_star_width` (the same
    first-order expansion of the stationarity condition around the leading-order optimum, on
    the entry's sub-block, walk method); the leading-order optima come from one batched
    :func:`~fieldres.signal.optimal.rho_star_entries`, and the :math:`1/N` derivatives of the
    entries of one kind (diagonal, off-diagonal) share one compilation with a common walk
    grid (the largest any of them needs).

    Parameters
    ----------
    K0:
        ``(P, P)`` input kernel (symmetric PSD, positive diagonal).
    depth:
        Number of residual layers ``L >= 1``.
    hyper, activation:
        As for :func:`~fieldres.finite_width.rho_star_width` (a smooth activation).
    entries:
        Kernel entries ``(a, b)``; default: every diagonal entry, then every pair ``a < b``
        (the order of ``fieldres rho-star``'s per-input and per-pair lists).
    rho_range:
        Search interval of the leading-order optimum.
    degree, n_theta, inner_degree:
        Quadrature of the pairs method (used only for a pair whose walk grid would exceed
        the walk's maximum).
    batch_size:
        Entries evaluated together in the :func:`jax.lax.map` of an off-diagonal group
        (default 1: the walk is compute bound and its grids are large); the diagonal group
        is always evaluated in one vectorised batch.

    Returns
    -------
    WidthOptima
        Per-entry results; :meth:`WidthOptima.summary` averages them.

    Raises
    ------
    FieldresInputError
        If a pair's ``2 x 2`` block is singular (two inputs identical or opposite up to
        scale): the walk method needs it invertible.
    """
    from ..signal.optimal import rho_star_entries

    K0 = jnp.asarray(K0)
    if not jnp.issubdtype(K0.dtype, jnp.floating):
        K0 = K0.astype(jnp.result_type(float))
    from .._validation import check_kernel

    check_kernel(K0)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be a Python int, got {type(depth).__name__}")
    check_depth(depth)
    depth = int(depth)
    if hyper is None:
        hyper = Hyper()
    P = K0.shape[0]
    entries = _all_entries(P) if entries is None else [tuple(int(x) for x in e)
                                                       for e in entries]
    for a, b in entries:
        if not (0 <= a < P and 0 <= b < P):
            raise FieldresInputError(f"entry {(a, b)} out of range for a {P} x {P} kernel")
    check_pairs_invertible(K0, [e for e in entries if e[0] != e[1]])

    lo = rho_star_entries(K0, depth, hyper, activation, entries=entries, rho_range=rho_range)
    r0 = np.asarray(lo.rho_star)
    status = np.asarray(lo.status)
    act = get_activation(activation)
    erf_closed = isinstance(act, Erf)
    dt = K0.dtype
    hyper_d = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    per = degree**2 * (n_theta if erf_closed else inner_degree**2)
    blk = max(1, min(256, 2**22 // per))

    E = len(entries)
    res = np.full((4, E), np.nan)
    ok = np.flatnonzero((status == 0) & np.isfinite(r0))
    groups: dict = {}
    for k in ok:
        block, T, ik = _entry_block(K0, entries[k])
        method, grids = _choose_method("auto", None, block, jnp.asarray(r0[k], dt), hyper_d,
                                       act, depth, True, True)
        key = (ik, method)
        g = groups.setdefault(key, {"idx": [], "blocks": [], "grids": [], "T": T})
        g["idx"].append(k)
        g["blocks"].append(block)
        g["grids"].append(grids)
    for (ik, method), g in groups.items():
        grids = () if method == "pairs" else tuple(int(max(x)) for x in zip(*g["grids"]))
        idx = np.asarray(g["idx"])
        bs = len(idx) if ik == (0, 0) else (batch_size or 1)
        c, d1, dd0 = _chi_derivatives_map(
            jnp.stack(g["blocks"]), jnp.log(jnp.asarray(r0[idx], dt)), g["T"], hyper_d, act,
            depth, ik, erf_closed, int(degree), int(inner_degree), int(n_theta), blk, grids,
            int(bs))
        c = np.asarray(c)
        res[:, idx] = np.stack([c[:, 0], c[:, 1], np.asarray(d1), np.asarray(dd0)])
    c0, c1, d1, dd0 = res
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = -d1 / dd0
    return WidthOptima(entries=tuple(entries), rho_star_inf=jnp.asarray(r0),
                       shift=jnp.asarray(shift), chi_inf=jnp.asarray(c0),
                       chi_1=jnp.asarray(c1), status=jnp.asarray(status))
