# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
"""Validation of the public arguments of :mod:`fieldres.simulation.networks` and their
conversion to a static configuration and traced (differentiable) parameters."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._validation import FieldresInputError
from ..kernels.activations import get_activation
from .sampler import _gram_factor, design, kernel_factor
from .stats import _is_traced


def _resolve_activation(activation: Any) -> Callable[[Array], Array]:
    """The elementwise function of a name, an :class:`~fieldres.kernels.activations.Activation` or a
    callable, resolved like everywhere else (:func:`~fieldres.kernels.activations.get_activation`).

    The returned object is the ``Activation`` module itself (callable as ``phi(x)``): it is
    hashable and equal across calls with the same name, so compiled samplers are reused.
    """
    return get_activation(activation)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _check_scalar(name: str, value: Any, *, nonnegative: bool) -> None:
    if _is_traced(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise FieldresInputError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    v = float(arr)
    if not math.isfinite(v):
        raise FieldresInputError(f"{name} must be finite, got {v}")
    if nonnegative and v < 0:
        raise FieldresInputError(f"{name} must be non-negative, got {v}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise FieldresInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _float_dtype(*xs: Any) -> Any:
    """The caller's floating dtype (canonicalised by JAX; the default float for ints/lists)."""
    dtypes = []
    for x in xs:
        if x is None:
            continue
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating):
            dtypes.append(jax.dtypes.canonicalize_dtype(x.dtype))
    if not dtypes:
        return jax.dtypes.canonicalize_dtype(float)
    return jnp.promote_types(dtypes[0], dtypes[-1])


def _check_K0(K0: Any, dtype: Any) -> bool:
    """Validate a concrete input kernel; return True if it is numerically positive definite."""
    arr = np.asarray(K0, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise FieldresInputError(f"K0 must be a square (P, P) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise FieldresInputError("K0 contains NaN or inf")
    scale = max(float(np.max(np.abs(arr))), np.finfo(np.float64).tiny)
    tol = 100.0 * float(jnp.finfo(dtype).eps) * scale
    if np.max(np.abs(arr - arr.T)) > tol:
        raise FieldresInputError(
            f"K0 must be symmetric; max |K0 - K0^T| = {np.max(np.abs(arr - arr.T)):.3g}"
        )
    eig = np.linalg.eigvalsh(0.5 * (arr + arr.T))
    if eig[0] < -tol * arr.shape[0]:
        raise FieldresInputError(
            f"K0 must be positive semi-definite; smallest eigenvalue is {eig[0]:.6g}"
        )
    return bool(eig[0] > tol * arr.shape[0])


# --------------------------------------------------------------------------------------------
# Square-root factors
# --------------------------------------------------------------------------------------------


class _Config(NamedTuple):
    """Static configuration of a compiled batch (hashable)."""

    act: Callable[[Array], Array]
    depth: int
    width: int
    batch_size: int
    method: str  # "sampler" | "full"
    residual: bool
    input_mode: str  # "factor" (h0 = Z R0) | "weights" (h0 = W_in X^T + b_in)
    dtype: Any


class _Params(NamedTuple):
    """Traced (differentiable) hyperparameters: standard deviations and rho."""

    rho: Array
    s_w: Array
    s_b: Array
    s_w_in: Array
    s_b_in: Array
    s_w_out: Array
    s_b_out: Array


class _Setup(NamedTuple):
    cfg: _Config
    route: str  # "K0" | "X"
    data: Array  # K0 (P, P) or X (P, d_in), in the simulation dtype
    params: _Params
    n_networks: int
    use_cholesky: bool


def _setup(
    K0,
    X,
    *,
    rho,
    depth,
    width,
    n_networks,
    activation,
    sigma_w2,
    sigma_b2,
    sigma_w2_out,
    sigma_b2_out,
    sigma_w2_in,
    sigma_b2_in,
    residual,
    method,
    batch_size,
) -> _Setup:
    """Validate the public arguments and convert them to a static config and traced arrays."""
    depth = _check_int("depth", depth, 1)
    width = _check_int("width", width, 1)
    n_networks = _check_int("n_networks", n_networks, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    if method not in ("sampler", "full"):
        raise FieldresInputError(f"method must be 'sampler' or 'full', got {method!r}")
    _check_scalar("rho", rho, nonnegative=False)
    for name, value in (
        ("sigma_w2", sigma_w2),
        ("sigma_b2", sigma_b2),
        ("sigma_w2_out", sigma_w2_out),
        ("sigma_b2_out", sigma_b2_out),
        ("sigma_w2_in", sigma_w2_in),
        ("sigma_b2_in", sigma_b2_in),
    ):
        _check_scalar(name, value, nonnegative=True)
    act = _resolve_activation(activation)
    if (K0 is None) == (X is None):
        raise FieldresInputError(
            "give exactly one of K0 (input kernel) and X (input data, (P, d_in))"
        )

    dtype = jnp.dtype(_float_dtype(K0, X))
    use_cholesky = True
    if K0 is not None:
        route = "K0"
        if not _is_traced(K0):
            use_cholesky = _check_K0(K0, dtype)
        data = jnp.asarray(K0, dtype)
        if data.ndim != 2 or data.shape[0] != data.shape[1]:
            raise FieldresInputError(f"K0 must be a square (P, P) matrix, got shape {data.shape}")
        input_mode = "factor"
    else:
        route = "X"
        if not _is_traced(X):
            Xa = np.asarray(X, dtype=np.float64)
            if Xa.ndim != 2 or Xa.shape[0] < 1 or Xa.shape[1] < 1:
                raise FieldresInputError(f"X must have shape (P, d_in), got {Xa.shape}")
            if not np.all(np.isfinite(Xa)):
                raise FieldresInputError("X contains NaN or inf")
        data = jnp.asarray(X, dtype)
        if data.ndim != 2:
            raise FieldresInputError(f"X must have shape (P, d_in), got {data.shape}")
        input_mode = "weights" if method == "full" else "factor"

    def as_sd(v):
        return jnp.sqrt(jnp.asarray(v, dtype))

    params = _Params(
        rho=jnp.asarray(rho, dtype),
        s_w=as_sd(sigma_w2),
        s_b=as_sd(sigma_b2),
        s_w_in=as_sd(sigma_w2_in),
        s_b_in=as_sd(sigma_b2_in),
        s_w_out=as_sd(sigma_w2_out),
        s_b_out=as_sd(sigma_b2_out),
    )
    cfg = _Config(
        act=act,
        depth=depth,
        width=width,
        batch_size=min(batch_size, n_networks),
        method=method,
        residual=bool(residual),
        input_mode=input_mode,
        dtype=dtype,
    )
    return _Setup(cfg, route, data, params, n_networks, use_cholesky)


def _batch_input(setup: _Setup, data: Array, params: _Params) -> Array:
    """What the batch function receives: the factor R0 (R0^T R0 = K0) or X (full weights)."""
    if setup.cfg.input_mode == "weights":
        return data
    if setup.route == "K0":
        return kernel_factor(data, setup.use_cholesky)
    return _gram_factor(design(data.T, params.s_w_in, params.s_b_in))
