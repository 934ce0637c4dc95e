"""Output kernels of many inputs in tiles: rectangular blocks ``K^out(X_1, X_2)``.

The leading-order recursion of :mod:`fieldres.kernels.recursion` couples each entry
``K_ab`` only to its own diagonals ``K_aa, K_bb``; so the ``X_1 x X_2`` block of the output
kernel is computed from the per-layer diagonals (``O(L n)``) and row tiles of the block,
each of about ``tile_entries`` entries (one compilation for all tiles). The layer step is
:func:`fieldres.kernels.recursion.layer_step`, the same as every other kernel of fieldres.
Used by the GP posterior (:mod:`fieldres.bayes.gp`) for training kernels and batches of
test points.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError, check_depth, is_concrete
from ..defaults import Hyper
from .activations import Activation, get_activation
from .recursion import as_arrays, gaussian_layer, layer_step

__all__ = ["ARCHITECTURES", "TILE_ENTRIES", "nngp_kernel", "nngp_diagonal"]

ARCHITECTURES = ("resnet", "ffnet")

#: Entries per kernel tile (rows x columns): 2^22 float64 = 32 MB per copy.
TILE_ENTRIES = 1 << 22


def _check_architecture(architecture: str) -> bool:
    if architecture not in ARCHITECTURES:
        raise FieldresInputError(
            f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return architecture == "resnet"


@eqx.filter_jit
def _diag_trajectory(k0, rho, hyper, act, depth, residual):
    """Per-layer diagonals ``K^(0..L-1)_aa`` (``(L, n)``) and ``K^(L)_aa`` (``(n,)``)."""

    def step(k, _):
        return layer_step(k, act.variance(k), rho, hyper, residual), k

    k_L, traj = jax.lax.scan(step, k0, None, length=depth)
    return traj, k_L


@eqx.filter_jit
def _tile(X1, X2, d1, d2, d1L, d2L, same, rho, hyper, act, depth, residual):
    """``K^out`` between the rows of ``X1`` and of ``X2`` (``same``: identical inputs)."""
    K0 = hyper.sigma_b2_in + hyper.sigma_w2_in * (X1 @ X2.T) / X1.shape[1]

    def cov(K, a, b):
        # Identical inputs sit at correlation one, where some covariance formulas are not
        # differentiable: use the variance there, and keep the other branch away from it.
        c = act.covariance(a[:, None], b[None, :], jnp.where(same, 0.0, K))
        return jnp.where(same, jnp.broadcast_to(act.variance(a)[:, None], K.shape), c)

    def step(K, ab):
        a, b = ab
        return layer_step(K, cov(K, a, b), rho, hyper, residual), None

    K_L, _ = jax.lax.scan(step, K0, (d1, d2), length=depth)
    return gaussian_layer(cov(K_L, d1L, d2L), hyper.sigma_w2_out, hyper.sigma_b2_out)


def _check_inputs(X, name="inputs"):
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise FieldresInputError(f"{name} must have shape (n, d_in), got shape {X.shape}")
    if is_concrete(X) and not np.all(np.isfinite(np.asarray(X))):
        raise FieldresInputError(f"{name} contain NaN or infinite values")
    return X


def _prepare(X, rho, depth, hyper, activation, architecture):
    X = _check_inputs(X)
    check_depth(depth)
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise FieldresInputError(f"depth must be a Python int, got {depth!r}")
    residual = _check_architecture(architecture)
    if is_concrete(rho) and (not np.isfinite(float(rho)) or float(rho) < 0):
        raise FieldresInputError(f"rho (the residual scaling) must be finite and >= 0, got {rho}")
    act = get_activation(activation)
    rho, hyper = as_arrays((rho, hyper), X.dtype)
    return X, rho, hyper, act, int(depth), residual


def _k0_diag(X, hyper):
    return hyper.sigma_b2_in + hyper.sigma_w2_in * jnp.sum(X * X, axis=1) / X.shape[1]


def nngp_diagonal(
    X: Float[ArrayLike, "n d"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    architecture: str = "resnet",
) -> Float[Array, " n"]:
    """Diagonal ``K^out_aa`` of the output kernel (``O(L n)`` work, no matrix)."""
    X, rho, hyper, act, depth, residual = _prepare(X, rho, depth, hyper, activation,
                                                   architecture)
    _, kL = _diag_trajectory(_k0_diag(X, hyper), rho, hyper, act, depth, residual)
    return gaussian_layer(act.variance(kL), hyper.sigma_w2_out, hyper.sigma_b2_out)


def nngp_kernel(
    X1: Float[ArrayLike, "n1 d"],
    X2: Float[ArrayLike, "n2 d"] | None,
    rho: ArrayLike,
    depth: int,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    architecture: str = "resnet",
    *,
    tile_entries: int = TILE_ENTRIES,
) -> Float[Array, "n1 n2"]:
    r"""Output kernel :math:`K^\mathrm{out}(X_1, X_2)` of a ResNet or feed-forward net, in tiles.

    Same recursion as :func:`fieldres.resnet_kernels` / :func:`fieldres.ffnet_kernels`
    followed by :func:`fieldres.output_kernel` on ``input_kernel([X1; X2])``, restricted to the
    ``X1 x X2`` block: every entry ``K_ab`` evolves with its own diagonals ``K_aa, K_bb``, so
    the rows of ``X1`` are processed in tiles of about ``tile_entries`` entries (one
    compilation; the last tile is padded with copies of a row).

    Parameters
    ----------
    X1, X2:
        Inputs ``(n1, d_in)`` and ``(n2, d_in)``; ``X2=None`` means ``X2 = X1`` (the
        symmetric train kernel; the diagonal then uses the single-input formula).
    rho:
        Residual scaling (ignored by ``"ffnet"``); differentiable, like ``hyper``.
    depth:
        Number of hidden layers ``L`` (Python int).
    hyper, activation:
        Variances (:class:`fieldres.Hyper`, the input layer included) and activation.
    architecture:
        ``"resnet"`` or ``"ffnet"``.
    tile_entries:
        Entries per tile; the peak memory is a few tiles of float64 (forward) or ``L``
        tiles (under reverse-mode autodiff).

    Returns
    -------
    Array
        ``(n1, n2)`` output kernel.
    """
    symmetric = X2 is None
    X1, rho, hyper, act, depth, residual = _prepare(X1, rho, depth, hyper, activation,
                                                    architecture)
    X2 = X1 if symmetric else _check_inputs(X2, "X2").astype(X1.dtype)
    if X2.shape[1] != X1.shape[1]:
        raise FieldresInputError(f"X1 and X2 must have the same input dimension, got {X1.shape[1]} "
                         f"and {X2.shape[1]}")
    n1, n2 = X1.shape[0], X2.shape[0]
    d1, d1L = _diag_trajectory(_k0_diag(X1, hyper), rho, hyper, act, depth, residual)
    if symmetric:
        d2, d2L = d1, d1L
    else:
        d2, d2L = _diag_trajectory(_k0_diag(X2, hyper), rho, hyper, act, depth, residual)
    rows = max(1, min(n1, int(tile_entries) // max(n2, 1)))
    cols = np.arange(n2)
    out = []
    for start in range(0, n1, rows):
        idx = np.arange(start, min(start + rows, n1))
        pad = np.concatenate([idx, np.full(rows - idx.size, idx[0])])  # copies of one row
        same = (pad[:, None] == cols[None, :]) if symmetric else np.zeros((rows, n2), bool)
        t = _tile(X1[pad], X2, d1[:, pad], d2, d1L[pad], d2L, jnp.asarray(same), rho, hyper,
                  act, depth, residual)
        out.append(t[: idx.size])
    return out[0] if len(out) == 1 else jnp.concatenate(out, axis=0)
