# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r"""Sampling primitives of finite networks: the one place where weights are drawn.

An affine Gaussian layer applied to the columns of ``x`` (``n_in`` neurons by ``P`` inputs or
tangents) is ``[W b] [x; m^T]`` with :math:`W_{ij}\sim\mathcal N(0, \sigma_w^2/n_\mathrm{in})`,
:math:`b_i\sim\mathcal N(0,\sigma_b^2)` and a bias mask ``m`` (1 for inputs, 0 for tangents).
Its ``n_out`` rows are i.i.d. :math:`\mathcal N(0, M^TM)`, :math:`M =
[\sigma_w x/\sqrt{n_\mathrm{in}};\ \sigma_b m^T]`: :func:`gaussian_layer` draws them either with
explicit weights (``method="full"``, :math:`O(n_\mathrm{out} n_\mathrm{in} P)`) or from a
square-root factor of :math:`M^TM` (``method="sampler"``, the exact :math:`O(NP^2)` kernel
sampler; Householder QR, differentiable, exact for rank-deficient ``M``). :func:`weight_matrix` and
:func:`bias_vector` draw explicit parameters (Gaussian or scaled-orthogonal), for networks
whose Jacobian is needed; :func:`scan_layers` runs a block function over the layers with one
key per layer, and :func:`jacobian_step` advances a Jacobian through a block by forward-mode
differentiation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import FieldresInputError

__all__ = [
    "affine",
    "bias_vector",
    "design",
    "gaussian_layer",
    "gaussian_rows",
    "haar_orthogonal",
    "jacobian_step",
    "kernel_factor",
    "layer_keys",
    "scan_layers",
    "weight_matrix",
]

METHODS = ("sampler", "full")
INITS = ("gaussian", "orthogonal")


def _householder_r(M: Float[Array, "m P"]) -> Float[Array, "P P"]:
    """Triangular factor of a Householder QR of ``M`` (``m >= P``), in plain jnp operations.

    The diagonal is made non-negative. ``R^T R = M^T M`` to rounding, also for rank-deficient
    ``M`` (a zero column of the remaining block gives a zero row of ``R``). Written out instead
    of calling :func:`jnp.linalg.qr` so that the pathwise JVP needs no LAPACK ``orgqr``/``trsm``
    calls: with jax/jaxlib 0.10 on CPU, large vmapped batches of the LAPACK QR JVP
    intermittently hung at run time. Guards keep the JVP finite at zero columns.
    """
    m, P = M.shape
    rows = jnp.arange(m)
    one = jnp.ones((), M.dtype)

    def reflect(j, A):
        x = jnp.where(rows >= j, A[:, j], 0.0)
        s = jnp.sum(x * x)
        nonzero = s > 0
        norm = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, s, one)), 0.0)
        alpha = -jnp.where(A[j, j] >= 0, one, -one) * norm
        v = x.at[j].add(-alpha)
        vn2 = jnp.sum(v * v)
        ok = vn2 > 0
        beta = jnp.where(ok, 2.0 / jnp.where(ok, vn2, one), 0.0)
        return A - beta * jnp.outer(v, v @ A)

    R = jnp.triu(jax.lax.fori_loop(0, P, reflect, M)[:P])
    # Make the diagonal non-negative: R is then the (unique, smooth) transposed Cholesky factor
    # of M^T M whenever M has full column rank, so that the sample Z R is a continuous function
    # of the parameters and the pathwise derivative is valid.
    sign = jnp.where(jnp.diagonal(R) < 0, -one, one)
    return sign[:, None] * R


def _gram_factor(M: Float[Array, "m P"]) -> Float[Array, "r P"]:
    """A factor ``R`` with ``R^T R = M^T M`` and ``r = min(m, P)`` rows (differentiable).

    For ``m > P`` this is the triangular factor of a Householder QR decomposition, which
    exists and is exact also for rank-deficient ``M``; otherwise ``M`` itself is returned.
    """
    m, P = M.shape
    if m <= P:
        return M
    return _householder_r(M)


def kernel_factor(K0: Float[Array, "P P"], use_cholesky: bool) -> Float[Array, "P P"]:
    """A factor ``R`` with ``R^T R = K0``: Cholesky (PD) or symmetric eigen square root (PSD)."""
    if use_cholesky:
        return jnp.linalg.cholesky(K0).T
    w, V = jnp.linalg.eigh(0.5 * (K0 + K0.T))
    return jnp.sqrt(jnp.clip(w, 0.0))[:, None] * V.T


# --------------------------------------------------------------------------------------------
# Core: one batch of networks
# --------------------------------------------------------------------------------------------


def design(
    x: Float[Array, "n_in P"], s_w: Array, s_b: Array, bias_mask: Array | None = None
) -> Float[Array, "n_in+1 P"]:
    """``M = [s_w x / sqrt(n_in); s_b m^T]``: an affine Gaussian layer applied to ``x`` is
    ``Z M`` with ``Z`` standard normal of shape ``(n_out, n_in + 1)`` (``Z = [W; b]`` scaled).

    ``bias_mask`` ``(P,)`` (default ones) says which columns receive the bias (0 for a
    tangent column, which the bias does not move)."""
    n_in, P = x.shape
    if bias_mask is None:
        bias_row = jnp.broadcast_to(s_b, (1, P)).astype(x.dtype)
    else:
        bias_row = (s_b * bias_mask)[None, :].astype(x.dtype)
    return jnp.concatenate([x * (s_w / math.sqrt(n_in)), bias_row], axis=0)


def gaussian_rows(key: PRNGKeyArray, R: Float[Array, "r P"], n_rows: int) -> Float[Array, "n P"]:
    r"""``n_rows`` i.i.d. rows from :math:`\mathcal N(0, R^TR)`: ``Z R``, ``Z`` standard normal."""
    return jax.random.normal(key, (n_rows, R.shape[0]), R.dtype) @ R


def gaussian_layer(
    key: PRNGKeyArray, M: Float[Array, "m P"], n_rows: int, method: str = "sampler"
) -> Float[Array, "n_rows P"]:
    """Pre-activations ``[W b] [x; m^T]`` of ``n_rows`` fresh neurons, given ``M = design(x)``.

    ``method="full"`` draws the weights and bias explicitly, ``Z M`` with ``Z`` of shape
    ``(n_rows, m)``, O(n_rows m P). ``method="sampler"`` draws the rows directly from their
    joint distribution, ``N(0, M^T M)`` i.i.d.: ``z R`` with ``R^T R = M^T M`` (Householder QR of
    ``M``) and ``z`` of shape ``(n_rows, P)``, O((n_rows + m) P^2).
    """
    if method == "full":
        return jax.random.normal(key, (n_rows, M.shape[0]), M.dtype) @ M
    return gaussian_rows(key, _gram_factor(M), n_rows)


def affine(
    key: PRNGKeyArray,
    x: Float[Array, "n_in P"],
    s_w: Array,
    s_b: Array,
    n_out: int | None = None,
    *,
    method: str = "sampler",
    bias_mask: Array | None = None,
) -> Float[Array, "n_out P"]:
    """A fresh affine Gaussian layer ``W x + b m^T`` (``n_out`` rows, default ``n_in``):
    :func:`gaussian_layer` of :func:`design`. ``s_w``, ``s_b`` are standard deviations."""
    n = x.shape[0] if n_out is None else n_out
    return gaussian_layer(key, design(x, s_w, s_b, bias_mask), n, method)


def haar_orthogonal(key: PRNGKeyArray, n: int, dtype: Any) -> Float[Array, "n n"]:
    """A Haar-distributed orthogonal ``n x n`` matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def weight_matrix(
    key: PRNGKeyArray, n: int, sigma_w2: Array, init: str = "gaussian", dtype: Any = None
) -> Float[Array, "n n"]:
    r"""An explicit ``n x n`` weight matrix: ``"gaussian"``, :math:`W_{ij}\sim\mathcal N(0,
    \sigma_w^2/n)`, or ``"orthogonal"``, :math:`W = \sigma_w O` with ``O`` Haar."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    if init == "gaussian":
        return jnp.sqrt(sigma_w2 / n) * jax.random.normal(key, (n, n), dtype)
    if init == "orthogonal":
        return jnp.sqrt(sigma_w2) * haar_orthogonal(key, n, dtype)
    raise FieldresInputError(f"init must be one of {INITS}, got {init!r}")


def bias_vector(key: PRNGKeyArray, n: int, sigma_b2: Array, dtype: Any = None) -> Array:
    r"""An explicit bias vector, :math:`b_i \sim \mathcal N(0, \sigma_b^2)`, shape ``(n,)``."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jnp.sqrt(sigma_b2) * jax.random.normal(key, (n,), dtype)


def layer_keys(key: PRNGKeyArray, depth: int, first: int = 1) -> Array:
    """Keys ``fold_in(key, l)`` of the layers ``l = first, ..., first + depth - 1``."""
    layers = jnp.arange(first, first + depth, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, (None, 0))(key, layers)


def scan_layers(
    block: Callable[[PRNGKeyArray, Any], tuple[Any, Any]], key: PRNGKeyArray, carry: Any,
    depth: int,
) -> tuple[Any, Any]:
    """The forward pass: ``carry <- block(key_l, carry)`` for the layers ``l = 1..depth``
    (:func:`layer_keys`) in one :func:`jax.lax.scan`; returns the last carry and the stacked
    per-layer outputs of ``block`` (``block(key, carry) -> (carry, out)``)."""
    return jax.lax.scan(lambda c, k: block(k, c), carry, layer_keys(key, depth))


def jacobian_step(
    fn: Callable[[Array], Array], x: Float[Array, " n"], J: Float[Array, "n m"]
) -> tuple[Float[Array, " n"], Float[Array, "n m"]]:
    """``(fn(x), dfn(x) J)``: a block applied to ``x`` and its Jacobian to the columns of ``J``
    (forward mode, the accumulation ``J <- (dfn/dx) J`` of an input--output Jacobian)."""
    y, lin = jax.linearize(fn, x)
    return y, jax.vmap(lin, in_axes=1, out_axes=1)(J)
