r"""The *pairs* method of the general-``P`` :math:`1/N` theory: ``O(L^2 P^4)``.

Every intrinsic moment between two layers is one 4-D Gaussian integral
(:mod:`~fieldres.finite_width.moments`); the linear response is the dense block-triangular
solve :math:`R = (1 - \mathcal G)^{-1}` over all layers. Returns the covariances between any
two layers as well (``*_cov_layers``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.recursion import output_kernel
from ._leading import _kernel_maps, _layer_kernels
from .moments import _intrinsic, _isserlis
from .result import FiniteWidth


def _to_big(T):
    """``(n, n, P, P, P, P)`` -> ``(n P^2, n P^2)``."""
    n, P = T.shape[0], T.shape[2]
    return jnp.transpose(T, (0, 2, 3, 1, 4, 5)).reshape(n * P * P, n * P * P)


def _from_big(M, n, P):
    return jnp.transpose(M.reshape(n, P, P, n, P, P), (0, 3, 1, 2, 4, 5))


@eqx.filter_jit
def _general(K0, rho, hyper, act, depth, residual, cross_layer, erf_closed, degree,
             inner_degree, n_theta, block):
    P = K0.shape[0]
    n = depth + 1
    dt = K0.dtype
    if residual:
        a = rho**2 * hyper.sigma_w2
        A = a * jnp.tril(jnp.ones((n, n), dt), -1)
    else:
        A = hyper.sigma_w2 * jnp.eye(n, k=-1, dtype=dt)

    Ks, Cs = _layer_kernels(K0, rho, hyper, act, depth, residual)
    J, Hs = _kernel_maps(Ks, act)

    p2 = P * P
    G = (A[:, :, None, None] * J[:, None, :, :])  # (l, m, P^2, P^2)
    Gbig = jnp.transpose(G, (0, 2, 1, 3)).reshape(n * p2, n * p2)
    eye = jnp.eye(n * p2, dtype=dt)
    R = jax.scipy.linalg.solve_triangular(eye - Gbig, eye, lower=True)
    Abig = jnp.kron(A, jnp.eye(p2, dtype=dt))
    W = Abig @ R  # response of the accumulated kernel sum_m A[l, m] dC^(m) to eps_C

    mode = "all" if (residual and cross_layer) else "diag"
    Xi_CC, Xi_CK, (el, Y) = _intrinsic(Ks, act, erf_closed, mode, degree, inner_degree,
                                       n_theta, block)
    Xi_KK = _isserlis(Ks, residual and cross_layer)
    XCC, XCK, XKK = _to_big(Xi_CC), _to_big(Xi_CK), _to_big(Xi_KK)

    cov_CC = R @ XCC @ R.T
    WX = W @ XCK
    cov_KK = XKK + WX + WX.T + W @ XCC @ W.T
    cov_CK = R @ XCK + R @ XCC @ W.T
    acc = W @ XCC @ W.T  # Cov of the accumulated kernel sum
    V = jnp.stack([acc[i * p2:(i + 1) * p2, i * p2:(i + 1) * p2] for i in range(n)])
    src = 0.5 * jnp.einsum("luvw,lvw->lu", Hs, V)  # (n, P^2)

    if residual and cross_layer:
        # e^(m)_ab = 1/2 sum_{j<m} sum_{kl} sum_{a'b'} W^(m,j)[(ab)_a', (ab)_b'; kl] Y
        Wt = _from_big(W, n, P)  # (m, j, P, P, P, P): [m, j, mu, nu, k, l]
        jj, mm, kk, ll = (jnp.asarray(el[:, i]) for i in (0, 1, 4, 5))
        aa, bb = el[:, 6], el[:, 7]
        ab = np.stack([aa, bb], 1)  # (E, 2) local coordinate -> input index
        mu = jnp.asarray(ab[:, :, None] * np.ones((1, 1, 2), np.int32))
        nu = jnp.asarray(ab[:, None, :] * np.ones((1, 2, 1), np.int32))
        w1 = Wt[mm[:, None, None], jj[:, None, None], mu, nu, kk[:, None, None],
                ll[:, None, None]]
        w2 = Wt[mm[:, None, None], jj[:, None, None], mu, nu, ll[:, None, None],
                kk[:, None, None]]
        mult = jnp.where(kk != ll, 1.0, 0.0)[:, None, None]
        contrib = 0.5 * jnp.sum((w1 + mult * w2) * Y, axis=(1, 2))
        contrib = jnp.where(jnp.asarray(el[:, 0] < el[:, 1]), contrib, 0.0)
        e = jnp.zeros((n, P, P), dt)
        e = e.at[mm, jnp.asarray(aa), jnp.asarray(bb)].add(contrib)
        # entries a < b were accumulated once on (a, b): mirror them
        e = jnp.triu(e) + jnp.transpose(jnp.triu(e, 1), (0, 2, 1))
        src = src + e.reshape(n, p2)

    C_shift = (R @ src.reshape(-1)).reshape(n, P, P)
    K_shift = jnp.einsum("lm,mab->lab", A, C_shift)

    C_cov = _from_big(cov_CC, n, P)
    K_cov = _from_big(cov_KK, n, P)
    CK_cov = _from_big(cov_CK, n, P)
    il = jnp.arange(n)
    wo = hyper.sigma_w2_out
    return FiniteWidth(
        K=Ks,
        C=Cs,
        out=output_kernel(Ks[-1], hyper, act),
        C_cov=C_cov[il, il],
        K_cov=K_cov[il, il],
        CK_cov=CK_cov[il, il],
        out_cov=wo**2 * C_cov[-1, -1],
        C_shift=C_shift,
        K_shift=K_shift,
        out_shift=wo * C_shift[-1],
        C_cov_layers=C_cov,
        K_cov_layers=K_cov,
        CK_cov_layers=CK_cov,
        residual=residual,
        method="pairs",
    )
