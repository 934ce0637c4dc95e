# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r"""The :math:`1/N` statistics for many inputs: sub-block assembly and one-neuron path sampling.

**Sub-block identity.** At NLO the empirical kernels respond linearly to their own
fluctuations, :math:`\delta\hat C = R\varepsilon`, and the response is *entry-local*:
:math:`C_{ab}` depends only on :math:`K_{aa}, K_{bb}, K_{ab}`. Hence every statistic of the
entries among a set of inputs depends only on that sub-block of :math:`K^{(0)}`: the mean
shift of :math:`(a, b)` on the pair, :math:`N\mathrm{Cov}(\hat X_{ab}, \hat Y_{cd})` on the
inputs :math:`\{a, b, c, d\}` (at most four). :func:`finite_width_many` assembles the
``(L+1, P, P, P, P)`` tensors from batched sub-problems, each index quadruple taken from the
sub-problem of exactly its inputs: pairs by the ``O(L)`` walk method (or the pairs method for
nearly singular pairs), triples and quadruples by the pairs method, every sub-problem batched
with :func:`jax.lax.map`. Cost: ``P(P-1)/2`` walks plus ``C(P,3) + C(P,4)`` pairs-method
sub-problems of ``O(L^2)`` 4-D integrals each (measured in ``docs/finite_width.md``).

**One-neuron path functionals.** Exactly at NLO, :math:`\varepsilon^{(l)} = \frac1N\sum_i
\tilde f(h^{(l)}_i)` with i.i.d. neurons whose pre-activation paths
:math:`h^{(0)}, \dots, h^{(L)} \in\mathbb R^P` are the leading-order Gaussian random walk
(:math:`h^{(0)} \sim\mathcal N(0, K^{(0)})`, independent increments of covariance
:math:`K^{(l+1)} - K^{(l)}`). With the accumulated response :math:`S^{(l+1)} = B^{(l)}S^{(l)}
+ c\,\tilde f^{(l)}` (ResNet :math:`B = 1 + aJ, c = a`; FFNet :math:`B = \sigma_w^2J,
c = \sigma_w^2`) the one-neuron functionals

.. math::

    \Phi_C^{(l)} = \tilde f^{(l)} + J^{(l)}S^{(l)}, \qquad
    \Phi_K^{(l)} = h^{(l)}h^{(l)T} - K^{(l)} + S^{(l)}, \qquad
    \tilde f^{(l)} = \phi(h^{(l)})\phi(h^{(l)})^T - C^{(l)},

have mean zero and :math:`N\mathrm{Cov}(\hat X_{ab}, \hat Y_{cd}) = \mathbb E[\Phi_{X,ab}
\Phi_{Y,cd}]` (the very quantity the pairs and walk methods integrate). A contraction
:math:`V(A, B) = \sum V_{ab,cd}A_{ab}B_{cd}` is the path covariance of two scalar functionals,
:math:`\langle A, \Phi^{(L)}\rangle = \sum_{l\le L}\langle W^{(l)}_A, \tilde f^{(l)}\rangle
(+ \langle A, hh^T - K\rangle^{(L)})`, whose weights come from one backward (adjoint) pass,
:math:`G^{(l)} = B^{(l)T}G^{(l+1)}`, ``O(L P^2)``, because :math:`J^T` is entry-local too.
No factorisation of the four-point functions :math:`\mathbb E[\phi_a\phi_b\phi_c\phi_d]` of a
non-polynomial :math:`\phi` at four distinct inputs exists, so a *deterministic* contraction
costs ``O(P^4)`` integrals; :func:`sample_kernel_cov` and :func:`contract_kernel_cov` instead
estimate the path expectation by Monte Carlo over ``n_samples`` Gaussian paths (unbiased,
with batch-means standard errors; ``O(n_samples L P^2)`` time, ``O(L m P^2)`` memory for
``m`` contraction matrices). This is a quadrature of the NLO theory, not a simulation of
networks: no weights, no width.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import (
    FieldresInputError,
    check_depth,
    check_finite,
    check_kernel,
    check_nonnegative,
)
from ..kernels.activations import Activation, Erf, get_activation
from ..kernels.recursion import Hyper, output_kernel
from ._leading import _layer_kernels, _layer_kernels_jit
from .pairs import _general
from .result import FiniteWidth
from .walk import _walk

__all__ = ["KernelCovSample", "KernelContraction", "finite_width_many", "sample_kernel_cov",
           "contract_kernel_cov"]


def _prepare(K0, rho, depth, hyper, activation):
    """Validated ``(K0, rho, hyper, act)`` in one float dtype (bad input: FieldresInputError)."""
    K0 = jnp.asarray(K0)
    if not jnp.issubdtype(K0.dtype, jnp.floating):
        K0 = K0.astype(jnp.result_type(float))
    check_kernel(K0)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise FieldresInputError(f"depth must be an integer, got {type(depth).__name__}")
    check_depth(depth)
    check_finite("rho", rho)
    check_nonnegative("rho (the residual scaling)", rho)
    act = get_activation(activation)
    hyper = Hyper() if hyper is None else hyper
    dt = K0.dtype
    return K0, jnp.asarray(rho, dt), jax.tree.map(lambda v: jnp.asarray(v, dt), hyper), act


# ------------------------------------------------------------------------------------------
# Sub-block assembly (exact)


def _covering(s: int) -> np.ndarray:
    """Local index quadruples ``(i, j, k, l)`` in ``range(s)^4`` that use every one of ``s``."""
    q = [t for t in itertools.product(range(s), repeat=4) if set(t) == set(range(s))]
    return np.asarray(q, np.int64).reshape(-1, 4)


@eqx.filter_jit
def _run_group(Ksub, rho, hyper, act, depth, residual, cross_layer, quad, grids, batch):
    """Same-layer statistics of every sub-block in ``Ksub`` ``(n_sub, s, s)``: the walk method
    when ``grids`` is given, else the pairs method; ``lax.map``, vmapped in batches (module
    level and jitted, so that repeated calls reuse the compilation)."""
    fn, extra = (_walk, grids) if grids else (_general, ())

    def one(K):
        r = fn(K, rho, hyper, act, depth, residual, cross_layer, *quad, *extra)
        return r.C_cov, r.K_cov, r.CK_cov, r.C_shift, r.K_shift

    return jax.lax.map(one, Ksub, batch_size=max(1, min(batch, Ksub.shape[0])))


def finite_width_many(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    residual: bool = True,
    cross_layer: bool = True,
    degree: int | None = None,
    inner_degree: int = 20,
    n_theta: int = 20,
    batch: int = 4,
) -> FiniteWidth:
    r"""Every same-layer :math:`1/N` statistic for ``P`` inputs, assembled from sub-blocks.

    Exactly the numbers of :func:`~fieldres.finite_width.finite_width` (same equations, same
    quadrature) for any ``P``: each index quadruple of the ``(L+1, P, P, P, P)`` tensors is
    computed on the sub-block of ``K0`` of exactly its (at most four) inputs, each mean
    shift on its pair.

    Parameters
    ----------
    K0:
        ``(P, P)`` input kernel (symmetric PSD, positive diagonal).
    rho, depth, hyper, activation, residual, cross_layer:
        As for :func:`~fieldres.finite_width.finite_width` (smooth activations).
    degree, inner_degree, n_theta:
        Quadrature of the pairs-method sub-problems (triples, quadruples, nearly singular
        pairs); defaults as in :func:`~fieldres.finite_width.finite_width`.
    batch:
        Sub-problems evaluated together (vectorised); memory grows linearly with it.

    Returns
    -------
    FiniteWidth
        ``method="many"``; no cross-layer tables (``*_cov_layers`` are ``None``).

    Notes
    -----
    Cost: ``P(P-1)/2`` pair walks (``O(L)`` each) and ``C(P,3) + C(P,4)`` pairs-method
    sub-problems (``O(L^2)`` 4-D integrals each; at ``L = 50`` a four-input sub-problem is
    ~1 min on 2 cores, so this exact route suits ``P <= 6`` or small ``L``; for more inputs
    use :func:`sample_kernel_cov` / :func:`contract_kernel_cov`). Memory: the output,
    ``3 (L+1) P^4`` floats, plus ``batch`` sub-problems.
    """
    K0, rho, hyper, act = _prepare(K0, rho, depth, hyper, activation)
    from .api import _choose_method, finite_width

    P = K0.shape[0]
    if P <= 2:
        return finite_width(K0, rho, depth, hyper, act, residual=residual,
                            cross_layer=cross_layer, degree=degree, inner_degree=inner_degree,
                            n_theta=n_theta)
    residual, cross_layer, depth = bool(residual), bool(cross_layer), int(depth)
    erf_closed = isinstance(act, Erf)
    degree = int(degree) if degree is not None else (80 if erf_closed else 48)
    for name, v in (("degree", degree), ("inner_degree", inner_degree), ("n_theta", n_theta)):
        if int(v) < 8:
            raise FieldresInputError(f"{name} must be >= 8, got {v}")
    per = degree**2 * (n_theta if erf_closed else inner_degree**2)
    block = max(1, min(256, 2**22 // per))
    quad = (erf_closed, degree, int(inner_degree), int(n_theta), block)
    n = depth + 1
    Ks, Cs = _layer_kernels_jit(K0, rho, hyper, act, depth, residual)
    K0n = np.asarray(K0)

    def sub_blocks(idx):
        return jnp.asarray(K0n[idx[:, :, None], idx[:, None, :]])

    # Pairs: the walk where its grid is affordable (one common grid), else the pairs method.
    pairs = np.asarray(list(itertools.combinations(range(P), 2)), np.int64)
    choice = [_choose_method("auto", None, K, rho, hyper, act, depth, residual, cross_layer)
              for K in sub_blocks(pairs)]
    walk = np.asarray([c[0] == "walk" for c in choice])
    grids = tuple(max((c[1][i] for c in choice if c[0] == "walk"), default=0) for i in (0, 1))

    combos = [np.asarray(list(itertools.combinations(range(P), s)), np.int64) for s in (3, 4)]
    groups = [(pairs[walk], grids), (pairs[~walk], None), (combos[0], None), (combos[1], None)]
    covs = [np.zeros((n,) + (P,) * 4) for _ in range(3)]
    shifts = [np.zeros((n, P, P)) for _ in range(2)]
    for idx, grid in groups:
        if idx.size == 0:
            continue
        s = idx.shape[1]
        res = [np.asarray(r) for r in _run_group(sub_blocks(idx), rho, hyper, act, depth,
                                                 residual, cross_layer, quad, grid, int(batch))]
        # s = 2 also supplies the single-input entries; larger s only their covering ones
        q = np.asarray(list(itertools.product(range(2), repeat=4))) if s == 2 else _covering(s)
        g = idx[:, q]  # (n_sub, n_q, 4) global indices
        for T, R in zip(covs, res[:3]):
            T[:, g[..., 0], g[..., 1], g[..., 2], g[..., 3]] = np.moveaxis(
                R[:, :, q[:, 0], q[:, 1], q[:, 2], q[:, 3]], 1, 0)
        if s == 2:
            for T, R in zip(shifts, res[3:]):
                for i, j in itertools.product(range(2), repeat=2):
                    T[:, idx[:, i], idx[:, j]] = np.moveaxis(R[:, :, i, j], 1, 0)
    C_cov, K_cov, CK_cov = (jnp.asarray(T) for T in covs)
    C_shift, K_shift = (jnp.asarray(T) for T in shifts)
    wo = hyper.sigma_w2_out
    return FiniteWidth(K=Ks, C=Cs, out=output_kernel(Ks[-1], hyper, act), C_cov=C_cov,
                       K_cov=K_cov, CK_cov=CK_cov, out_cov=wo**2 * C_cov[-1], C_shift=C_shift,
                       K_shift=K_shift, out_shift=wo * C_shift[-1], C_cov_layers=None,
                       K_cov_layers=None, CK_cov_layers=None, residual=residual,
                       method="many")


# ------------------------------------------------------------------------------------------
# One-neuron path functionals (Monte Carlo over Gaussian paths)


def _local_jacobian(Ks, act):
    """Entry-local Jacobian of ``K -> C(K)`` per layer: ``d1, d3`` ``(n, P, P)``.

    ``(J S)_ab = d1_ab S_aa + d1_ba S_bb + d3_ab S_ab`` for symmetric ``S`` (``d1`` has a zero
    diagonal, ``d3_aa = C'(K_aa)``); ``J^T G = d3 * G + diag(sum_b (G_ab + G_ba) d1_ab)``.
    """
    P = Ks.shape[-1]
    eye = jnp.eye(P, dtype=bool)
    g = jax.grad(lambda x, y, z: act.covariance(x, y, z), argnums=(0, 2))
    gv = jax.vmap(jax.grad(lambda x: act.variance(x)))

    def one(K):
        d = jnp.diagonal(K)
        kaa, kbb = jnp.broadcast_to(d[:, None], K.shape), jnp.broadcast_to(d[None, :], K.shape)
        safe = jnp.where(eye, 0.0, K)
        d1, d3 = jax.vmap(g)(kaa.reshape(-1), kbb.reshape(-1), safe.reshape(-1))
        d1 = jnp.where(eye, 0.0, d1.reshape(P, P))
        d3 = jnp.where(eye, jnp.diag(gv(d)), d3.reshape(P, P))
        return d1, d3

    return jax.lax.map(one, Ks)


def _apply_J(d1, d3, S):
    """``J S`` for a batch ``S`` ``(..., P, P)`` of symmetric matrices."""
    s = jnp.diagonal(S, axis1=-2, axis2=-1)
    return d1 * s[..., :, None] + d1.T * s[..., None, :] + d3 * S


def _apply_JT(d1, d3, G):
    """``J^T G`` for a batch ``G`` ``(..., P, P)``."""
    return d3 * G + jnp.eye(G.shape[-1], dtype=G.dtype) * jnp.sum(
        (G + jnp.swapaxes(G, -1, -2)) * d1, -1)[..., :, None]


class _Path(eqx.Module):
    """Leading-order inputs of the path sampler (all layers)."""

    Ks: Array  # (n, P, P)
    Cs: Array  # (n, P, P)
    d1: Array
    d3: Array
    F0: Array  # (P, P) factor of K^(0)
    Fd: Array  # (n, P, P): factors of the increments (walk) or of K^(l) (independent)
    c: Array
    residual: bool = eqx.field(static=True)
    walk: bool = eqx.field(static=True)


def _sqrt_psd(M):
    w, V = jnp.linalg.eigh(0.5 * (M + jnp.swapaxes(M, -1, -2)))
    return V * jnp.sqrt(jnp.clip(w, 0.0))[..., None, :]


@eqx.filter_jit
def _path_setup(K0, rho, hyper, act, depth, residual, cross_layer):
    Ks, Cs = _layer_kernels(K0, rho, hyper, act, depth, residual)
    d1, d3 = _local_jacobian(Ks, act)
    walk = residual and cross_layer
    if walk:
        Fd = _sqrt_psd(jnp.concatenate([Ks[1:] - Ks[:-1], jnp.zeros_like(Ks[:1])]))
    else:
        Fd = _sqrt_psd(Ks)
    c = rho**2 * hyper.sigma_w2 if residual else hyper.sigma_w2
    return _Path(Ks, Cs, d1, d3, _sqrt_psd(Ks[0]), Fd, c, residual, walk)


def _paths(key, path: _Path, m: int, fn, carry0):
    """Scan ``fn(carry, h, l) -> carry`` over the layers of ``m`` sampled paths; returns
    ``(h^(L), carry)``."""
    n, P = path.Ks.shape[0], path.Ks.shape[-1]
    z = jax.random.normal(key, (n, m, P), path.Ks.dtype)
    h0 = z[0] @ path.F0.T

    def step(state, inp):
        h, carry = state
        l, zl, Fl = inp
        if path.walk:
            carry = fn(carry, h, l)
            h = h + zl @ Fl.T  # the increment to layer l+1 (zero factor after the last)
        else:
            h = zl @ Fl.T
            carry = fn(carry, h, l)
        return (h, carry), None

    zs = jnp.concatenate([z[1:], z[:1]]) if path.walk else z
    (h, carry), _ = jax.lax.scan(step, (h0, carry0), (jnp.arange(n), zs, path.Fd))
    return h, carry


class KernelCovSample(eqx.Module):
    r"""Path-sampled last-layer :math:`N\mathrm{Cov}` tensors ``(P, P, P, P)`` with standard errors.

    ``C_cov[a, b, c, d]`` :math:`= N\mathrm{Cov}(\hat C^{(L)}_{ab}, \hat C^{(L)}_{cd})`, likewise
    ``K_cov``, ``CK_cov`` (:math:`\hat C_{ab}` with :math:`\hat K_{cd}`) and ``out_cov`` (the
    output kernel); ``*_se`` their batch-means standard errors; ``n_samples`` paths.
    """

    C_cov: Array
    K_cov: Array
    CK_cov: Array
    out_cov: Array
    C_se: Array
    K_se: Array
    CK_se: Array
    out_se: Array
    n_samples: int = eqx.field(static=True)


class KernelContraction(eqx.Module):
    r"""``V[i, j]`` :math:`=\sum_{abcd} A_{i,ab}\,N\mathrm{Cov}(\hat X_{ab}, \hat Y_{cd})\,
    B_{j,cd}` and its batch-means standard error ``se``, from ``n_samples`` paths."""

    V: Array
    se: Array
    n_samples: int = eqx.field(static=True)


def _check_samples(n_samples, chunk):
    for name, v in (("n_samples", n_samples), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise FieldresInputError(f"{name} must be a positive integer, got {v!r}")
    n_chunks = -(-int(n_samples) // int(chunk))
    if n_chunks < 8:
        raise FieldresInputError(
            f"n_samples / chunk = {n_samples} / {chunk} gives {n_chunks} batches; the "
            f"standard error needs at least 8: lower chunk or raise n_samples")
    return n_chunks


def _batch_means(run, n_chunks, seed):
    """Mean and standard error over ``n_chunks`` batch results of ``run(key)``."""
    key = jax.random.PRNGKey(seed)
    vals = np.stack([np.asarray(run(jax.random.fold_in(key, i))) for i in range(n_chunks)])
    return vals.mean(0), vals.std(0, ddof=1) / math.sqrt(n_chunks)


@eqx.filter_jit
def _tensor_chunk(key, path, act, m, ia, ib, dpos):
    """Sample means of ``Phi Phi^T`` over ``m`` paths (unique entries): ``(3, n_e, n_e)``."""
    Cu, Ku = path.Cs[:, ia, ib], path.Ks[:, ia, ib]
    d1u, d1tu, d3u = path.d1[:, ia, ib], path.d1[:, ib, ia], path.d3[:, ia, ib]

    def fn(carry, h, l):
        S, _, _ = carry
        phi = act.fn(h)
        f = phi[:, ia] * phi[:, ib] - Cu[l]
        sd = S[:, dpos]
        JS = d1u[l] * sd[:, ia] + d1tu[l] * sd[:, ib] + d3u[l] * S
        S_new = S + path.c * JS if path.residual else path.c * JS
        return S_new + path.c * f, f + JS, h[:, ia] * h[:, ib] - Ku[l] + S

    z = jnp.zeros((m, ia.shape[0]), path.Ks.dtype)
    _, (_, C, K) = _paths(key, path, m, fn, (z, z, z))
    return jnp.stack([C.T @ C, K.T @ K, C.T @ K]) / m


@eqx.filter_jit
def _contract_chunk(key, path, act, m, W, Wk, wC, wK, mA):
    """Sample mean of ``Phi_A Phi_B^T`` over ``m`` paths from the adjoint weights."""
    def fn(acc, h, l):
        phi = act.fn(h)
        return acc + jnp.einsum("np,mpq,nq->nm", phi, W[l], phi) - wC[l]

    h, phi_all = _paths(key, path, m, fn, jnp.zeros((m, W.shape[1]), path.Ks.dtype))
    phi_all = phi_all + jnp.einsum("np,mpq,nq->nm", h, Wk, h) - wK
    return phi_all[:, :mA].T @ phi_all[:, mA:] / m


def sample_kernel_cov(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    residual: bool = True,
    cross_layer: bool = True,
    n_samples: int = 100_000,
    chunk: int = 5_000,
    seed: int = 0,
) -> KernelCovSample:
    r"""Last-layer :math:`N\mathrm{Cov}` tensors of the NLO theory by sampling one-neuron paths.

    Unbiased estimates of exactly the quantities of :func:`finite_width_many` at layer ``L``
    (the path functionals :math:`\Phi_C, \Phi_K` of the module docstring, forward recursion
    per path), ``O(n_samples L P^2)`` time; relative error ~ ``sqrt(2 / n_samples)``.

    Parameters
    ----------
    K0, rho, depth, hyper, activation, residual, cross_layer:
        As for :func:`~fieldres.finite_width.finite_width`.
    n_samples:
        Gaussian paths (rounded up to whole chunks).
    chunk:
        Paths per batch (memory ``chunk P^2`` floats); the standard error is over batches.
    seed:
        Random seed (results are reproducible).
    """
    K0, rho, hyper, act = _prepare(K0, rho, depth, hyper, activation)
    n_chunks = _check_samples(n_samples, chunk)
    path = _path_setup(K0, rho, hyper, act, int(depth), bool(residual), bool(cross_layer))
    P = K0.shape[0]
    m = int(chunk)
    # Unique entries a <= b only (the functionals are symmetric matrices).
    ia, ib = (jnp.asarray(x) for x in np.triu_indices(P))
    pos = np.zeros((P, P), np.int64)
    pos[np.triu_indices(P)] = np.arange(ia.shape[0])
    pos = pos + np.triu(pos, 1).T
    dpos = jnp.asarray(np.diagonal(pos).copy())
    run = functools.partial(_tensor_chunk, path=path, act=act, m=m, ia=ia, ib=ib, dpos=dpos)
    mean, se = _batch_means(run, n_chunks, seed)
    full = (slice(None), pos[:, :, None, None], pos[None, None, :, :])
    mean, se = mean[full], se[full]
    wo2 = float(hyper.sigma_w2_out) ** 2
    return KernelCovSample(*(jnp.asarray(x) for x in (mean[0], mean[1], mean[2],
                                                      wo2 * mean[0], se[0], se[1], se[2],
                                                      wo2 * se[0])),
                           n_samples=n_chunks * m)


def _adjoint_weights(path: _Path, A, kind):
    """Weights ``W (n, m, P, P)`` of ``f~^(l)`` and ``Wk (m, P, P)`` of ``hh^T - K`` at ``L``
    such that ``<A, Phi_X^(L)> = sum_l <W^(l), f~^(l)> + <Wk, hh^T - K^(L)>``."""
    d1, d3 = path.d1, path.d3
    if kind == "C":
        G = _apply_JT(d1[-1], d3[-1], A)
        last, Wk = A, jnp.zeros_like(A)
    else:
        G, last, Wk = A, jnp.zeros_like(A), A

    def back(G, inp):  # G = G^(l+1) -> weight of f~^(l), G^(l)
        e1, e3 = inp
        JG = _apply_JT(e1, e3, G)
        return (G + path.c * JG if path.residual else path.c * JG), path.c * G

    _, W = jax.lax.scan(back, G, (d1[:-1], d3[:-1]), reverse=True)
    return jnp.concatenate([W, last[None]]), Wk


def contract_kernel_cov(
    A: Float[ArrayLike, "m P P"],
    B: Float[ArrayLike, "k P P"] | None,
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    kind: str = "out",
    residual: bool = True,
    cross_layer: bool = True,
    n_samples: int = 20_000,
    chunk: int = 1_000,
    seed: int = 0,
) -> KernelContraction:
    r"""Contractions :math:`V(A_i, B_j) = \sum_{abcd} A_{i,ab} V_{ab,cd} B_{j,cd}` of the
    last-layer :math:`N\mathrm{Cov}` without the ``P^4`` tensor.

    The adjoint pass turns each matrix into layer weights (``O(L P^2)``); the covariance of
    the scalar path functionals is sampled over ``n_samples`` Gaussian paths,
    ``O(n_samples L P^2 (m + k))`` time, ``O(L (m + k) P^2 + chunk P)`` memory. Unbiased;
    ``se`` from batch means.

    Parameters
    ----------
    A, B:
        ``(m, P, P)`` and ``(k, P, P)`` matrices (a single ``(P, P)`` is allowed; ``B=None``
        means ``B = A``). Only their symmetric parts matter.
    K0, rho, depth, hyper, activation, residual, cross_layer:
        As for :func:`~fieldres.finite_width.finite_width`.
    kind:
        ``"C"`` (:math:`\hat C^{(L)}`), ``"K"`` (:math:`\hat K^{(L)}`), ``"out"`` (the output
        kernel, :math:`\sigma^4_{w,out}` times ``"C"``) or ``"CK"`` (:math:`\hat C` with ``A``,
        :math:`\hat K` with ``B``).
    n_samples, chunk, seed:
        Paths, paths per batch (at least 8 batches), random seed.

    Returns
    -------
    KernelContraction
        ``V`` and ``se``, ``(m, k)``.
    """
    K0, rho, hyper, act = _prepare(K0, rho, depth, hyper, activation)
    if kind not in ("C", "K", "out", "CK"):
        raise FieldresInputError(f"kind must be 'C', 'K', 'out' or 'CK', got {kind!r}")
    n_chunks = _check_samples(n_samples, chunk)
    P = K0.shape[0]
    mats = []
    for name, M in (("A", A), ("B", A if B is None else B)):
        M = jnp.asarray(M, K0.dtype)
        M = M[None] if M.ndim == 2 else M
        if M.ndim != 3 or M.shape[1:] != (P, P):
            raise FieldresInputError(f"{name} must be (m, {P}, {P}) or ({P}, {P}) for a "
                                     f"{P} x {P} K0, got shape {M.shape}")
        check_finite(name, M)
        mats.append(0.5 * (M + jnp.swapaxes(M, 1, 2)))
    path = _path_setup(K0, rho, hyper, act, int(depth), bool(residual), bool(cross_layer))
    kA, kB = {"C": ("C", "C"), "out": ("C", "C"), "K": ("K", "K"), "CK": ("C", "K")}[kind]
    WA, WkA = jax.vmap(lambda M: _adjoint_weights(path, M, kA), out_axes=(1, 0))(mats[0])
    WB, WkB = jax.vmap(lambda M: _adjoint_weights(path, M, kB), out_axes=(1, 0))(mats[1])
    mA = mats[0].shape[0]
    W = jnp.concatenate([WA, WB], 1)  # (n, m + k, P, P)
    Wk = jnp.concatenate([WkA, WkB], 0)  # (m + k, P, P)
    wC = jnp.einsum("lmab,lab->lm", W, path.Cs)  # <W^(l), C^(l)>
    wK = jnp.einsum("mab,ab->m", Wk, path.Ks[-1])
    run = functools.partial(_contract_chunk, path=path, act=act, m=int(chunk), W=W, Wk=Wk,
                            wC=wC, wK=wK, mA=mA)
    mean, se = _batch_means(run, n_chunks, seed)
    scale = float(hyper.sigma_w2_out) ** 2 if kind == "out" else 1.0
    return KernelContraction(jnp.asarray(scale * mean), jnp.asarray(scale * se),
                             n_samples=n_chunks * int(chunk))
