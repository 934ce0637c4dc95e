# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
"""Gaussian expectations of activations by quadrature, with Price's-theorem derivatives.

The machinery behind :class:`fieldres.kernels.activations.GaussHermite` (and so behind
every activation without a closed form): one- and two-dimensional Gaussian quadrature on
nodes built once per rule (:mod:`fieldres.kernels.quadrature`), custom JVPs that turn
derivatives with respect to the (co)variances into further Gaussian expectations (Price's
theorem), and the assembly of the ``P x P`` kernel map from one bivariate quadrature per
unordered pair of inputs. See the :mod:`fieldres.kernels.activations` docstring for the
equations and the accuracy of the two rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .quadrature import gauss_hermite, panel_maps

__all__ = ["evaluations_per_entry"]

# ----------------------------------------------------------------------------------------
# Gaussian expectations by quadrature, with Price's-theorem derivatives
# ----------------------------------------------------------------------------------------
#
# Every expectation is an iterated one-dimensional integral against a normal density
# N(mu, s^2), taken in the standardised variable u = (x - mu) / s. Two rules:
#
# * "composite" (default): composite Gauss--Legendre on |u| <= 9 (tail mass 2e-19; the
#   weights, which include the density, are renormalised to sum to one). Panel ends merge
#   the Gaussian's own scale (u = 0, +-4, +-9) with the activation's scale (x = 0, +-3, +-8,
#   +-16, where a saturating activation turns over and its derivatives live), mapped into u,
#   clipped to the window and sorted at run time: the shapes are static, only the positions
#   move. This stays accurate however wide the Gaussian is compared with the activation's
#   features, which plain Gauss--Hermite in u is not.
# * "hermite": plain Gauss--Hermite in u (the original rule; exact for polynomials, fine for
#   variances of order one, slowly convergent for large ones).
#
# Bivariate expectations condition on the variable of larger variance, X: Y = beta X + s eps
# with beta = K_xy / K_xx, s^2 = K_yy - K_xy^2 / K_xx. The inner integral over Y has panels
# around its conditional mean beta X (scale s) and around Y = 0 (the activation's scale);
# the outer one around X = 0 at the scales sd(X), 1 and sqrt(1 + s^2) / |beta| (the width that
# the inner activation's step has as a function of X). Conditioning on the wider variable
# keeps |beta| <= 1 and s^2 <= K_yy; at correlation +-1, s = 0 and the inner rule collapses
# onto the conditional mean exactly. Node positions carry no derivative information:
# differentiation goes through the custom JVPs (Price's theorem), which only need the rule
# to evaluate other Gaussian expectations.

_WINDOW = 9.0
_GAUSS_BREAKS = (4.0, 9.0)  # panel ends in standard deviations from the mean
_ACT_BREAKS = (3.0, 8.0, 16.0)  # panel ends in units of the activation's argument
_MAPPED_BREAKS = (3.0, 8.0)  # the same for the inner activation seen through X
_BLOCK = 2**20  # nodes of the bivariate rule per vectorised block of entries
_DEFAULT_DEGREE = {"composite": 16, "hermite": 96}

_Pairs = tuple[tuple[int, int], ...]  # derivative orders (i, j): E[phi^(i)(a) phi^(j)(b)]


class _Rule(NamedTuple):
    """Static description of a quadrature rule (hashable: a non-differentiable argument)."""

    kind: str  # "composite" | "hermite"
    degree: int  # Gauss--Legendre nodes per panel | Gauss--Hermite nodes per dimension


def _n_panels() -> tuple[int, int, int]:
    """Panels of the composite rule: 1-D, outer and inner variable of the 2-D rule."""
    gauss = 2 * len(_GAUSS_BREAKS) + 1
    act = 2 * len(_ACT_BREAKS)
    return gauss + act - 1, gauss + act + 2 * len(_MAPPED_BREAKS) - 1, gauss + act


def evaluations_per_entry(rule: str = "composite", degree: int | None = None) -> tuple[int, int]:
    """Quadrature nodes ``(variance, covariance)`` per kernel entry of a rule.

    For the default composite rule (16 nodes per panel) this is ``(320, 39424)``; for plain
    Gauss--Hermite of degree ``d`` it is ``(4 d, d^2)``. Each node costs one evaluation of
    every function involved: ``phi`` for the kernel, ``phi, ..., phi^(2k)`` for its ``k``-th
    derivative (all derivative orders share one set of nodes).
    """
    degree = _DEFAULT_DEGREE[rule] if degree is None else int(degree)
    if rule == "hermite":
        return 4 * degree, degree * degree
    n1, n_out, n_in = _n_panels()
    return 2 * n1 * degree, n_out * n_in * degree * degree




@functools.cache
def _derivative(f: Callable, order: int) -> Callable:
    """Elementwise ``order``-th derivative of a scalar function, built once per function."""
    if order == 0:
        return f
    g = _derivative(f, order - 1)
    return jnp.vectorize(jax.grad(lambda x: g(x) * 1.0))


def _sort_small(e):
    """Sort along the last (short) axis by ranks: elementwise work that fuses, unlike sort."""
    m = e.shape[-1]
    idx = np.arange(m)
    ei, ej = e[..., :, None], e[..., None, :]
    before = (ej < ei) | ((ej == ei) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(before, axis=-1)
    return jnp.sum(jnp.where(rank[..., :, None] == idx, ei, 0.0), axis=-2)


def _composite_nodes(mu, s, features, degree):
    """Nodes ``x`` and weights ``w`` (summing to one) for ``E[F(x)]``, ``x ~ N(mu, s^2)``.

    ``mu``, ``s``: shape ``(...)``; ``features``: activation breakpoints (absolute positions,
    ``(..., m)``). Returns ``(..., n_panels * degree)`` arrays.
    """
    dtype = mu.dtype
    gauss = _symmetric(_GAUSS_BREAKS, dtype, zero=True)
    # s = 0 (a degenerate Gaussian): every feature lands on the window's edge or the mean.
    fu = (features - mu[..., None]) / jnp.maximum(s, jnp.finfo(dtype).tiny)[..., None]
    fu = jnp.clip(fu, -_WINDOW, _WINDOW)
    ends = jnp.concatenate([jnp.broadcast_to(gauss, fu.shape[:-1] + gauss.shape), fu], -1)
    ends = _sort_small(ends)
    A, B = (jnp.asarray(a, dtype) for a in panel_maps(ends.shape[-1], degree))
    hi = jax.lax.Precision.HIGHEST
    u = jnp.matmul(ends, A, precision=hi)
    w = jnp.matmul(ends, B, precision=hi) * jnp.exp(-0.5 * u * u)
    w = w / jnp.sum(w, axis=-1, keepdims=True)
    return mu[..., None] + s[..., None] * u, w


def _hermite_nodes(mu, s, degree):
    z, w = (jnp.asarray(a, mu.dtype) for a in gauss_hermite(degree))
    x = mu[..., None] + s[..., None] * z
    return x, jnp.broadcast_to(w, x.shape)


def _symmetric(points, dtype, zero=False):
    p = list(points)
    return jnp.asarray([-x for x in p[::-1]] + ([0.0] if zero else []) + p, dtype)


def _orders(pairs: _Pairs) -> list[int]:
    return sorted({m for p in pairs for m in p})


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _quad1(rule: _Rule, phi: Callable, pairs: _Pairs, k):
    """``E[phi^(i)(h) phi^(j)(h)]``, ``h ~ N(0, k)``, for each ``(i, j)``; elementwise in ``k``."""
    sd = jnp.sqrt(k)
    zero = jnp.zeros_like(k)
    if rule.kind == "hermite":
        x, w = _hermite_nodes(zero, sd, 4 * rule.degree)  # one dimension is cheap
    else:
        act = _symmetric(_ACT_BREAKS, k.dtype)
        feats = jnp.broadcast_to(act, k.shape + act.shape)
        x, w = _composite_nodes(zero, sd, feats, 2 * rule.degree)  # cheap: use a finer rule
    f = {m: _derivative(phi, m)(x) for m in _orders(pairs)}
    return tuple(jnp.sum(w * f[i] * f[j], axis=-1) for i, j in pairs)


def _quad2_block(rule: _Rule, phi: Callable, pairs: _Pairs, kxx, kyy, kxy):
    """``(E[f_i(X) f_j(Y)], E[f_j(X) f_i(Y)])`` per pair; 1-D arrays of entries."""
    dtype = kxx.dtype
    tiny = jnp.finfo(dtype).tiny
    pos = kxx > 0
    beta = jnp.where(pos, kxy / jnp.where(pos, kxx, 1.0), 0.0)
    s = jnp.sqrt(jnp.maximum(kyy - beta * kxy, 0.0))
    zero = jnp.zeros_like(kxx)
    if rule.kind == "hermite":
        x, wx = _hermite_nodes(zero, jnp.sqrt(kxx), rule.degree)
        y, wy = _hermite_nodes(beta[..., None] * x, jnp.broadcast_to(s[..., None], x.shape),
                               rule.degree)
    else:
        act = _symmetric(_ACT_BREAKS, dtype)
        width = jnp.sqrt(1.0 + s * s) / jnp.maximum(jnp.abs(beta), tiny)
        fx = jnp.concatenate([jnp.broadcast_to(act, kxx.shape + act.shape),
                              width[..., None] * _symmetric(_MAPPED_BREAKS, dtype)], -1)
        x, wx = _composite_nodes(zero, jnp.sqrt(kxx), fx, rule.degree)
        mu = beta[..., None] * x
        fy = _symmetric(_ACT_BREAKS, dtype, zero=True)
        y, wy = _composite_nodes(mu, jnp.broadcast_to(s[..., None], mu.shape),
                                 jnp.broadcast_to(fy, mu.shape + fy.shape), rule.degree)
    orders = _orders(pairs)
    inner = {m: jnp.sum(wy * _derivative(phi, m)(y), axis=-1) for m in orders}
    outer = {m: wx * _derivative(phi, m)(x) for m in orders}
    out = []
    for i, j in pairs:
        v1 = jnp.sum(outer[i] * inner[j], axis=-1)
        out.append((v1, v1 if i == j else jnp.sum(outer[j] * inner[i], axis=-1)))
    return tuple(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _quad2(rule: _Rule, phi: Callable, pairs: _Pairs, kxx, kyy, kxy):
    """:func:`_quad2_block` over arrays of any shape, in blocks that bound the memory."""
    shape = kxx.shape
    flat = [a.reshape(-1) for a in (kxx, kyy, kxy)]
    n = flat[0].shape[0]
    size = max(1, _BLOCK // evaluations_per_entry(rule.kind, rule.degree)[1])
    if n <= size:
        out = _quad2_block(rule, phi, pairs, *flat)
    else:
        m = -(-n // size)
        pad = m * size - n
        fill = (1.0, 1.0, 0.0)  # a harmless valid entry
        blocks = tuple(jnp.concatenate([a, jnp.full((pad,), v, a.dtype)]).reshape(m, size)
                       for a, v in zip(flat, fill, strict=True))
        out = jax.lax.map(lambda b: _quad2_block(rule, phi, pairs, *b), blocks)
        out = jax.tree.map(lambda o: o.reshape(-1)[:n], out)
    return jax.tree.map(lambda o: o.reshape(shape), out)


def _canonical(pairs: _Pairs) -> _Pairs:
    return tuple(sorted({(min(p), max(p)) for p in pairs}))


def _closure(pairs: _Pairs) -> _Pairs:
    """The pairs together with those their Price's-theorem derivatives need."""
    more = {q for i, j in pairs for q in ((i + 1, j + 1), (i + 2, j), (i, j + 2))}
    return tuple(sorted(set(pairs) | more))


def _ordered_values(phi, pairs, rule, kaa, kbb, kab):
    """``{(i, j): (E[f_i(a) f_j(b)], E[f_i(b) f_j(a)])}`` for ordered pairs, elementwise.

    One quadrature per canonical pair ``i <= j``, conditioned on the wider of ``a, b``.
    """
    swap = kaa < kbb
    kxx, kyy = jnp.where(swap, kbb, kaa), jnp.where(swap, kaa, kbb)
    canon = _canonical(pairs)
    vals = dict(zip(canon, _quad2(rule, phi, canon, kxx, kyy, kab), strict=True))
    out = {}
    for i, j in pairs:
        v1, v2 = vals[(min(i, j), max(i, j))]  # E[f_lo(X) f_hi(Y)], E[f_hi(X) f_lo(Y)]
        if i > j:
            v1, v2 = v2, v1
        # X = a unless swapped: E[f_i(a) f_j(b)] = v1, E[f_i(b) f_j(a)] = v2.
        out[(i, j)] = (jnp.where(swap, v2, v1), jnp.where(swap, v1, v2))
    return out


def _values1(phi, pairs, rule, k):
    canon = _canonical(pairs)
    vals = dict(zip(canon, _quad1(rule, phi, canon, k), strict=True))
    return tuple(vals[(min(p), max(p))] for p in pairs)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _expect1(phi: Callable, pairs: _Pairs, rule: _Rule, k):
    """``E[phi^(i)(h) phi^(j)(h)]`` for ``h ~ N(0, k)`` and each ``(i, j)``, elementwise."""
    return _values1(phi, pairs, rule, k)


@_expect1.defjvp
def _expect1_jvp(phi, pairs, rule, primals, tangents):
    (k,), (dk,) = primals, tangents
    # One quadrature gives the values and every coefficient (Price: d/dk E[F] = E[F''] / 2).
    every = _closure(pairs)
    g = dict(zip(every, _expect1(phi, every, rule, k), strict=True))
    out = tuple(g[p] for p in pairs)
    dout = tuple(0.5 * (g[(i + 2, j)] + 2.0 * g[(i + 1, j + 1)] + g[(i, j + 2)]) * dk
                 for i, j in pairs)
    return out, dout


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _expect2(phi: Callable, pairs: _Pairs, rule: _Rule, kaa, kbb, kab):
    """``E[phi^(i)(a) phi^(j)(b)]`` for centred Gaussian ``(a, b)``, each ``(i, j)``."""
    kaa, kbb, kab = jnp.broadcast_arrays(kaa, kbb, kab)
    vals = _ordered_values(phi, pairs, rule, kaa, kbb, kab)
    return tuple(vals[p][0] for p in pairs)


@_expect2.defjvp
def _expect2_jvp(phi, pairs, rule, primals, tangents):
    kaa, kbb, kab = primals
    dkaa, dkbb, dkab = tangents
    every = _closure(pairs)
    g = dict(zip(every, _expect2(phi, every, rule, kaa, kbb, kab), strict=True))
    out = tuple(g[p] for p in pairs)
    dout = tuple(
        jnp.broadcast_to(
            g[(i + 1, j + 1)] * dkab + 0.5 * g[(i + 2, j)] * dkaa + 0.5 * g[(i, j + 2)] * dkbb,
            g[(i, j)].shape,
        )
        for i, j in pairs
    )
    return out, dout


@functools.cache
def _assembly(P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle indices and the gather map from ``[diag, upper, lower]`` to ``P x P``."""
    iu, ju = np.triu_indices(P, 1)
    idx = np.empty((P, P), dtype=np.int32)
    idx[np.arange(P), np.arange(P)] = np.arange(P)
    idx[iu, ju] = P + np.arange(iu.size)
    idx[ju, iu] = P + iu.size + np.arange(iu.size)
    return iu, ju, idx


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _moments(phi: Callable, pairs: _Pairs, rule: _Rule, K):
    """``M_ab = E[phi^(i)(h_a) phi^(j)(h_b)]``, ``h ~ N(0, K)``, for each ``(i, j)``.

    Matrices over the last two axes of ``K``. One bivariate quadrature per unordered pair
    ``a < b`` (at the symmetrised covariance: ``K`` is a kernel) serves ``M_ab`` and ``M_ba``
    of every ``(i, j)``.
    """
    P = K.shape[-1]
    d = jnp.diagonal(K, axis1=-2, axis2=-1)
    diag = _values1(phi, pairs, rule, d)
    if P == 1:
        return tuple(v[..., None] for v in diag)
    iu, ju, idx = _assembly(P)
    kab = 0.5 * (K[..., iu, ju] + K[..., ju, iu])
    vals = _ordered_values(phi, pairs, rule, d[..., iu], d[..., ju], kab)
    return tuple(jnp.concatenate([dv, *vals[p]], axis=-1)[..., idx]
                 for dv, p in zip(diag, pairs, strict=True))


@_moments.defjvp
def _moments_jvp(phi, pairs, rule, primals, tangents):
    (K,), (dK,) = primals, tangents
    dd = jnp.diagonal(dK, axis1=-2, axis2=-1)
    every = _closure(pairs)
    g = dict(zip(every, _moments(phi, every, rule, K), strict=True))
    out = tuple(g[p] for p in pairs)
    # Price's theorem entry by entry (each M_ab a function of K_aa, K_bb and K_ab); on the
    # diagonal the three terms add up to E[(f_i f_j)''] / 2.
    dout = tuple(
        g[(i + 1, j + 1)] * dK
        + 0.5 * g[(i + 2, j)] * dd[..., :, None]
        + 0.5 * g[(i, j + 2)] * dd[..., None, :]
        for i, j in pairs
    )
    return out, dout


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))
