r"""The *walk* method of the general-``P`` :math:`1/N` theory: ``O(L)`` in depth, ``P <= 2``.

The cross-layer intrinsic moments of the ResNet are accumulated in one forward pass along
one neuron's random walk, a density-weighted conditional mean convolved from layer to layer
on a periodic grid (FFT); the same-layer moments use a trapezoid rule in whitened
coordinates. The grid rules (:func:`_walk_grid_size`, :func:`_same_layer_grid_size`) are
derived and calibrated in ``docs/finite_width.md`` and ``tests/test_finite_width_walk.py``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..kernels.activations import Activation
from ..kernels.recursion import output_kernel
from ._leading import _kernel_maps, _layer_kernels
from .moments import _elementwise_derivative, _isserlis_same
from .result import FiniteWidth

# Grid of the walk method: half-width in units of the final kernel (exp(-50) tails) and the
# largest spacing, in h, that resolves phi (band limit of erf ~exp(-k^2/4), of tanh-like
# activations ~exp(-pi k/2)); calibrated in tests/test_finite_width_walk.py.
_WALK_HALF_WIDTH = 10.0
_WALK_SPACING = {"erf": 0.3, "linear": 1.0}
_WALK_SPACING_DEFAULT = 0.15
_WALK_MAX_GRID = 1024


def _walk_grid_size(Ks: np.ndarray, act: Activation) -> int:
    """Grid points per axis for the walk method (from concrete leading-order kernels).

    In the coordinates ``u = M^-1 h`` (``M M^T = K^(L)``) the grid spans ``[-10, 10]^P``
    with spacing ``du``. It must resolve ``phi(h_a)`` (frequency ``sqrt(K^(L)_aa)`` times that
    of ``phi``) and every layer density ``p_l`` (thinnest variance ``lam`` = the smallest
    eigenvalue of ``K_u = M^-1 K^(l) M^-T``), with ``s = sqrt(lam) / du`` points per standard
    deviation: the trapezoid sums need ``exp(-2 pi^2 s^2) < 1e-15`` (``s^2 >= 1.7``), and the
    FFT convolution of ``f p_l`` with the increment ``D`` aliases the spectrum beyond the
    Nyquist frequency, damped by the convolution itself: the error is
    ``exp(-pi^2 s^2 (1 + r) / 2)`` for a relative damping ``r = D / lam <= 1`` and
    ``exp(-2 pi^2 s^2 r / (1 + r))`` for ``r > 1`` (``r``: the smallest eigenvalue of
    ``K_u^-1/2 D_u K_u^-1/2``); both must be below ``e^-37``.
    """
    Ks = np.asarray(Ks, np.float64)
    M = np.linalg.cholesky(Ks[-1])
    Minv = np.linalg.inv(M)
    Ku = np.einsum("ab,lbc,dc->lad", Minv, Ks, Minv)
    du = _WALK_SPACING.get(act.name, _WALK_SPACING_DEFAULT) / math.sqrt(
        float(np.max(np.diagonal(Ks[-1]))))
    for l in range(len(Ks)):
        w, V = np.linalg.eigh(Ku[l])
        if not w[0] > 0:
            return _WALK_MAX_GRID + 1
        s2 = 1.7
        if l + 1 < len(Ks):
            S = V @ np.diag(w**-0.5) @ V.T
            r = max(float(np.linalg.eigvalsh(S @ (Ku[l + 1] - Ku[l]) @ S)[0]), 0.0)
            s2 = max(s2, 74.0 / (math.pi**2 * (1.0 + r)) if r <= 1.0
                     else 37.0 * (1.0 + r) / (2.0 * math.pi**2 * r))
        du = min(du, math.sqrt(w[0] / s2))
    return _round_grid(int(math.ceil(2.0 * _WALK_HALF_WIDTH / du)))


def _same_layer_grid_size(Ks: np.ndarray, act: Activation) -> int:
    """Grid points per axis for the same-layer moments (per-layer whitened coordinates)."""
    dh = _WALK_SPACING.get(act.name, _WALK_SPACING_DEFAULT)
    kmax = float(np.max(np.diagonal(np.asarray(Ks, np.float64), axis1=1, axis2=2)))
    return _round_grid(int(math.ceil(2.0 * _WALK_HALF_WIDTH * math.sqrt(kmax) / dh)))


def _round_grid(n: int) -> int:
    """Round up to 2^k x {1, 5/4, 3/2, 7/4}, at least 32: FFT-friendly, and few distinct
    sizes to compile when rho or K0 change (the grid size is static)."""
    n = max(32, n)
    k = 2 ** (n.bit_length() - 1)
    return next(m for m in (k, 5 * k // 4, 3 * k // 2, 7 * k // 4, 2 * k) if m >= n)


def _periodic_grid(n_grid, P, dt):
    """Spacing ``du`` and the nodes ``U`` ``(P, n_grid, ..., n_grid)`` of the periodic grid
    on ``[-10, 10)^P``."""
    du = 2.0 * _WALK_HALF_WIDTH / n_grid
    ax = -_WALK_HALF_WIDTH + du * jnp.arange(n_grid, dtype=dt)
    return du, jnp.stack(jnp.meshgrid(*([ax] * P), indexing="ij"), 0)


def _same_layer_moments(Ks, act, n_grid):
    """Same-layer intrinsic moments ``Cov[phi phi, phi phi]`` and ``Cov[phi phi, h h]``.

    ``(n, P^2, P^2)`` each, by the trapezoid rule on ``[-10, 10]^P`` in the coordinates
    whitened by each layer's kernel (the density is then a standard normal; the rule is
    spectrally accurate for these entire integrands).
    """
    P = Ks.shape[1]
    p2 = P * P
    _, U = _periodic_grid(n_grid, P, Ks.dtype)
    U = U.reshape(P, -1)
    w = jnp.exp(-0.5 * jnp.sum(U * U, 0))
    w = w / jnp.sum(w)

    def one(K):
        H = jnp.linalg.cholesky(K) @ U
        F = act.fn(H)
        f = (F[:, None] * F[None, :]).reshape(p2, -1)
        g = (H[:, None] * H[None, :]).reshape(p2, -1)
        f = f - f @ w[:, None]
        g = g - g @ w[:, None]
        return (f * w) @ f.T, (f * w) @ g.T

    return jax.lax.map(one, Ks)


def _walk_moments(Ks, J, act, a, n_grid):
    r"""Cross-layer moments of the ResNet by one forward pass along the one-neuron walk.

    ``V^(l) = sum_{m<l} W^(l,m) f~_m(h^(m))`` (the accumulated-kernel response to the
    intrinsic fluctuations ``f~_m = phi phi(h^(m)) - C^(m)``, a ``P^2`` vector) obeys
    ``V^(l+1) = (1 + a J^(l)) V^(l) + a f~_l(h^(l))``. Its density-weighted conditional mean
    ``v_l(h) = E[V^(l) | h^(l) = h] p_l(h)`` is carried on a periodic grid in
    ``u = M^-1 h`` and moves from layer to layer by a Gaussian convolution (an FFT multiplier)
    with the increment covariance ``K^(l+1) - K^(l)``. Returns, for every layer,
    ``X^(l) = N Cov(S^(l), eps^(l)) = int v_l f~_l^T`` ``(n, P^2, P^2)`` and the mean-shift
    source ``e^(l)_ab = 1/2 sum_cd int v_l[cd] d_c d_d phi_a phi_b`` ``(n, P^2)``.
    """
    P = Ks.shape[1]
    p2 = P * P
    dt = Ks.dtype
    M = jnp.linalg.cholesky(Ks[-1])
    Minv = jax.scipy.linalg.solve_triangular(M, jnp.eye(P, dtype=dt), lower=True)
    du, U = _periodic_grid(n_grid, P, dt)
    grid = U.shape[1:]
    H = jnp.einsum("ab,b...->a...", M, U)
    F0 = act.fn(H)
    F1 = _elementwise_derivative(act.fn, 1)(H)
    F2 = _elementwise_derivative(act.fn, 2)(H)
    f = (F0[:, None] * F0[None, :]).reshape((p2,) + grid)
    vol = du**P
    axes = tuple(range(1, P + 1))
    freqs = [np.fft.fftfreq(n_grid)] * (P - 1) + [np.fft.rfftfreq(n_grid)]
    Kf = jnp.stack(jnp.meshgrid(*[jnp.asarray(2.0 * np.pi * fr, dt) / du for fr in freqs],
                                indexing="ij"), 0)
    Ku = jnp.einsum("ab,lbc,dc->lad", Minv, Ks, Minv)
    Dk = jnp.concatenate([Ku[1:] - Ku[:-1], jnp.zeros((1, P, P), dt)])
    Bs = jnp.eye(p2, dtype=dt) + a * J
    norm = -0.5 * P * math.log(2.0 * math.pi)

    def step(v, inp):
        S, D, B = inp
        Ls = jnp.linalg.cholesky(S)
        z = jax.scipy.linalg.solve_triangular(Ls, U.reshape(P, -1), lower=True)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(Ls)))
        p = jnp.exp(-0.5 * jnp.sum(z * z, 0) - 0.5 * logdet + norm).reshape(grid)
        ft = f - (jnp.sum(f * p, axis=axes) * vol).reshape((p2,) + (1,) * P)
        X = jnp.einsum("c...,u...->cu", v, ft) * vol
        vm = v.reshape((P, P) + grid)
        vd = jnp.stack([vm[i, i] for i in range(P)])
        t1 = jnp.einsum("a...,b...->ab", vd * F2, F0)
        t3 = jnp.einsum("ab...,a...,b...->ab", vm + jnp.swapaxes(vm, 0, 1), F1, F1)
        e = 0.5 * vol * (t1 + t1.T + t3)
        w = jnp.einsum("cd,d...->c...", B, v) + a * ft * p
        mult = jnp.exp(-0.5 * jnp.einsum("a...,ab,b...->...", Kf, D, Kf))
        v_new = jnp.fft.irfftn(jnp.fft.rfftn(w, axes=axes) * mult, s=grid, axes=axes)
        return v_new, (X, e.reshape(p2))

    _, (X, e) = jax.lax.scan(step, jnp.zeros((p2,) + grid, dt), (Ku, Dk, Bs))
    return X, e


@eqx.filter_jit
def _walk(K0, rho, hyper, act, depth, residual, cross_layer, erf_closed, degree,
          inner_degree, n_theta, block, n_grid, n_same):
    """Same-layer covariances and mean shifts at every layer in ``O(L)`` (walk method).

    The linear response of the pairs method, rewritten as forward recursions for the
    accumulated-kernel perturbation ``S^(l+1) = B^(l) S^(l) + c eps^(l)`` (ResNet
    ``B = 1 + aJ``, ``c = a``; FFNet ``B = sigma_w^2 J``, ``c = sigma_w^2``): its covariance
    ``Sigma``, its covariance with the pre-activation noise ``Y`` and its mean ``Z``. The
    cross-layer intrinsic moments enter only through :func:`_walk_moments`.
    """
    P = K0.shape[0]
    n = depth + 1
    dt = K0.dtype
    p2 = P * P
    Ks, Cs = _layer_kernels(K0, rho, hyper, act, depth, residual)
    J, Hs = _kernel_maps(Ks, act)
    Xi, XCK = _same_layer_moments(Ks, act, n_same)  # XCK: Cov[phi phi(h^(l)), h h(h^(l))]
    XKK = _isserlis_same(Ks).reshape(n, p2, p2)
    eye = jnp.eye(p2, dtype=dt)
    if residual:
        c = rho**2 * hyper.sigma_w2
        Bs = eye + c * J
    else:
        c = hyper.sigma_w2
        Bs = c * J
    if residual and cross_layer:
        X, e = _walk_moments(Ks, J, act, c, n_grid)
        Ysrc = XCK  # Cov[phi phi(h^(m)), h h(h^(l))] = XCK^(m) for m <= l (martingale)
    else:
        X = jnp.zeros((n, p2, p2), dt)
        e = jnp.zeros((n, p2), dt)
        Ysrc = jnp.zeros_like(XCK)

    def step(state, inp):
        Sig, Y, Z = state
        Jl, Hl, B, Xl, el, Xil, XCKl, XKKl, Ys = inp
        C_cov = Xil + Jl @ Xl + Xl.T @ Jl.T + Jl @ Sig @ Jl.T
        K_cov = XKKl + Y + Y.T + Sig
        CK_cov = XCKl + Jl @ Y + Xl.T + Jl @ Sig
        src = 0.5 * jnp.einsum("uvw,vw->u", Hl, Sig) + el
        C_shift = src + Jl @ Z
        state = (B @ Sig @ B.T + c * (B @ Xl + Xl.T @ B.T) + c**2 * Xil,
                 B @ Y + c * Ys, B @ Z + c * src)
        return state, (C_cov, K_cov, CK_cov, C_shift, Z)

    z = jnp.zeros((p2, p2), dt)
    _, (C_cov, K_cov, CK_cov, C_shift, K_shift) = jax.lax.scan(
        step, (z, z, jnp.zeros(p2, dt)), (J, Hs, Bs, X, e, Xi, XCK, XKK, Ysrc))
    C_cov, K_cov, CK_cov = (T.reshape(n, P, P, P, P) for T in (C_cov, K_cov, CK_cov))
    C_shift = C_shift.reshape(n, P, P)
    wo = hyper.sigma_w2_out
    return FiniteWidth(
        K=Ks,
        C=Cs,
        out=output_kernel(Ks[-1], hyper, act),
        C_cov=C_cov,
        K_cov=K_cov,
        CK_cov=CK_cov,
        out_cov=wo**2 * C_cov[-1],
        C_shift=C_shift,
        K_shift=K_shift.reshape(n, P, P),
        out_shift=wo * C_shift[-1],
        C_cov_layers=None,
        K_cov_layers=None,
        CK_cov_layers=None,
        residual=residual,
        method="walk",
    )
