r"""Empirical Jacobian spectra of finite networks (the engine of :mod:`fieldres.simulation`),
their distance to the universal law, and their plot."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ..._validation import FieldresInputError, check_depth, check_positive
from ...simulation.sampler import INITS, bias_vector, jacobian_step, scan_layers, weight_matrix
from .theory import _checked, spectral_curve, universal_cdf

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
    act, (sw, sb, kk) = _checked(activation, depth, architecture, sigma_w2, sigma_b2, k0)
    check_depth(width, "width")
    check_depth(n_networks, "n_networks")
    if weights not in _WEIGHTS:
        raise FieldresInputError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    check_positive("rho", rho)
    mode = architecture if residual else "ffnet"
    if decorrelate and mode != "fieldres":
        raise FieldresInputError("decorrelate applies to the residual 'fieldres' architecture only")
    args = (jnp.asarray(rho, sw.dtype), sw, sb, kk)
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
        raise FieldresInputError("ks_distance needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise FieldresInputError("samples contain NaN or infinite values")
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
        raise FieldresInputError(f"need n >= 1 and 0 < alpha < 1, got n={n}, alpha={alpha}")
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


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
        from ...plotting import save

        save(fig, out)
    return fig if fig is not None else ax.figure
