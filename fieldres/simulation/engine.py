# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r"""Monte-Carlo simulation of finite-width residual networks.

This module samples the *empirical* kernels of real, finite networks so that the field theory
(leading-order NNGP kernel and its :math:`1/N` corrections) can be validated against them.
The network is the one of THEORY §1 (Fischer, Dahmen & Helias, *Field theory for optimal
signal propagation in ResNets*, arXiv:2305.07715):

.. math::

    h^{(0)} = W_\mathrm{in} x + b_\mathrm{in},\qquad
    h^{(l)} = h^{(l-1)} + \rho\,\bigl(W^{(l)}\phi(h^{(l-1)}) + b^{(l)}\bigr),\qquad
    y = W_\mathrm{out}\,\phi(h^{(L)}) + b_\mathrm{out},

with :math:`W^{(l)}_{ij}\sim\mathcal N(0,\sigma_w^2/N)` and :math:`b^{(l)}_i\sim\mathcal
N(0,\sigma_b^2)` (the feed-forward variant drops the skip connection and the factor
:math:`\rho`). For every network we record, at each layer :math:`l=0,\dots,L`, the
:math:`P\times P` empirical kernels

.. math::

    \hat C^{(l)} = \tfrac1N\,\phi(h^{(l)})^\top\phi(h^{(l)}),\qquad
    \hat K^{(l)} = \tfrac1N\,h^{(l)\top}h^{(l)},

where :math:`h^{(l)}` is the :math:`N\times P` matrix of pre-activations (neurons by inputs),
and the output kernel :math:`\sigma_{w,\mathrm{out}}^2\hat C^{(L)}+\sigma_{b,\mathrm{out}}^2`
(the covariance of the outputs conditioned on the last hidden layer).

Two exact samplers are provided; they agree in distribution (THEORY §6):

``method="sampler"`` -- :math:`O(NP^2)` per layer.
    Conditioned on layer :math:`l-1`, the rows of :math:`W^{(l)}\phi(h^{(l-1)})+b^{(l)}` are
    i.i.d. Gaussian over the :math:`P` inputs with covariance
    :math:`\sigma_w^2\hat C^{(l-1)}+\sigma_b^2\,\mathbf 1\mathbf 1^\top = M^\top M`,
    :math:`M=[\sigma_w\phi(h)/\sqrt N;\ \sigma_b\mathbf 1^\top]` (an :math:`(N+1)\times P`
    matrix). With :math:`R` the triangular factor of a Householder QR decomposition of
    :math:`M` (so :math:`R^\top R=M^\top M`, exact also when :math:`M` is rank deficient) the
    increment is :math:`\rho\,ZR` with :math:`Z\sim\mathcal N(0,1)^{N\times P}`. No
    :math:`N\times N` matrix is ever formed.
``method="full"`` -- :math:`O(N^2P)` per layer.
    The weights and biases are drawn explicitly, exactly as in a real network:
    :math:`[W^{(l)}\ b^{(l)}]` is an :math:`N\times(N+1)` Gaussian matrix and the increment is
    :math:`\rho\,[W^{(l)}\ b^{(l)}]\,[\phi(h);\mathbf 1^\top]`. This is the reference the
    sampler is tested against.

The input layer is built either from data ``X`` (shape ``(P, d_in)``; the full method draws
:math:`W_\mathrm{in}` and :math:`b_\mathrm{in}`, the sampler uses the QR trick on
:math:`[\sigma_{w,\mathrm{in}}X^\top/\sqrt{d_\mathrm{in}};\ \sigma_{b,\mathrm{in}}\mathbf 1^\top]`)
or directly from an input kernel ``K0``: the rows of :math:`h^{(0)}` are i.i.d.
:math:`\mathcal N(0, K^{(0)})` (both methods; Cholesky factor when ``K0`` is positive
definite, symmetric eigen square root when it is only semi-definite). The read-out of
:func:`simulate_outputs` is one more such layer with fresh weights.

Networks are vmapped in batches, the layer loop is a :func:`jax.lax.scan`, and each batch is a
single jit-compiled call (one compilation per static configuration; :math:`\rho` and the
variances are traced array arguments, so sweeping them does not recompile). Per-layer means
and variances are merged across batches in float64 (Chan's parallel update) so that only
summaries, not all layers of all networks, are kept. Network ``i`` uses the key
``fold_in(key, i)``, so results do not depend on ``batch_size``.

Everything is differentiable with respect to ``K0``, ``X`` and ``rho`` at a fixed key
(pathwise derivative): :func:`simulate_response` returns the Monte-Carlo estimate of the
response :math:`\partial\,\mathbb E[\hat K^\mathrm{out}]/\partial K^{(0)}` in a given direction
(THEORY §3). For this the factors are the unique ones with a non-negative diagonal (a
transposed Cholesky factor), which depend smoothly on the parameters, so that a network's
random numbers map to a smooth sample path. The derivative with respect to ``K0`` needs a
positive-definite ``K0``.

References
----------
.. [1] K. Fischer, D. Dahmen, M. Helias, "Field theory for optimal signal propagation in
   ResNets", arXiv:2305.07715.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from ..kernels.activations import get_activation

__all__ = [
    "ResponseResult",
    "SimulationResult",
    "simulate_kernels",
    "simulate_outputs",
    "simulate_response",
]


# --------------------------------------------------------------------------------------------
# Activation resolution
# --------------------------------------------------------------------------------------------


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


class SimulationResult(eqx.Module):
    r"""Monte-Carlo statistics of the empirical kernels of finite networks.

    Attributes
    ----------
    C_mean, C_var
        Mean and unbiased entrywise variance over networks of
        :math:`\hat C^{(l)}=\phi(h^{(l)})^\top\phi(h^{(l)})/N`, shape ``(L+1, P, P)`` for
        :math:`l = 0, \dots, L`.
    K_mean, K_var
        The same for :math:`\hat K^{(l)} = h^{(l)\top}h^{(l)}/N`, shape ``(L+1, P, P)``.
    out_mean, out_var
        Mean and variance of the output kernel
        :math:`\sigma_{w,\mathrm{out}}^2\hat C^{(L)} + \sigma_{b,\mathrm{out}}^2`, ``(P, P)``.
    C_last, K_last, out_last
        Per-network kernels at the last layer, shape ``(n_networks, P, P)``, or ``None`` when
        the simulation ran with ``keep_last=False``.
    n_networks
        Number of simulated networks (static).
    """

    C_mean: Float[Array, "Lp1 P P"]
    C_var: Float[Array, "Lp1 P P"]
    K_mean: Float[Array, "Lp1 P P"]
    K_var: Float[Array, "Lp1 P P"]
    out_mean: Float[Array, "P P"]
    out_var: Float[Array, "P P"]
    C_last: Float[Array, "n P P"] | None
    K_last: Float[Array, "n P P"] | None
    out_last: Float[Array, "n P P"] | None
    n_networks: int = eqx.field(static=True)

    def stderr(self, name: str) -> Float[Array, "*shape"]:
        """Standard error ``sqrt(var / n_networks)`` of the mean of ``"C"``, ``"K"`` or ``"out"``.

        ``"C_mean"``, ``"K_mean"`` and ``"out_mean"`` are accepted as aliases.
        """
        key = name.removesuffix("_mean")
        if key not in ("C", "K", "out"):
            raise ValueError(f"stderr: expected 'C', 'K' or 'out', got {name!r}")
        var = getattr(self, f"{key}_var")
        return jnp.sqrt(var / self.n_networks)

    @property
    def C_stderr(self) -> Float[Array, "Lp1 P P"]:
        """Standard error of ``C_mean``."""
        return self.stderr("C")

    @property
    def K_stderr(self) -> Float[Array, "Lp1 P P"]:
        """Standard error of ``K_mean``."""
        return self.stderr("K")

    @property
    def out_stderr(self) -> Float[Array, "P P"]:
        """Standard error of ``out_mean``."""
        return self.stderr("out")


class ResponseResult(NamedTuple):
    r"""Monte-Carlo estimate of the directional response of the output kernel.

    Attributes
    ----------
    mean
        Mean over networks of the pathwise JVP
        :math:`\sum_{\gamma\delta}\partial\hat K^\mathrm{out}_{\alpha\beta}/\partial
        K^{(0)}_{\gamma\delta}\,T_{\gamma\delta}` (plus the ``rho_tangent`` term), ``(P, P)``.
    stderr
        Its standard error, ``(P, P)``.
    out_mean, out_stderr
        Mean and standard error of the output kernel itself (the primal), ``(P, P)``.
    n_networks
        Number of simulated networks.
    """

    mean: Float[Array, "P P"]
    stderr: Float[Array, "P P"]
    out_mean: Float[Array, "P P"]
    out_stderr: Float[Array, "P P"]
    n_networks: int


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _is_traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_scalar(name: str, value: Any, *, nonnegative: bool) -> None:
    if _is_traced(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {arr.shape}")
    v = float(arr)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if nonnegative and v < 0:
        raise ValueError(f"{name} must be non-negative, got {v}")


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
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
        raise ValueError(f"K0 must be a square (P, P) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("K0 contains NaN or inf")
    scale = max(float(np.max(np.abs(arr))), np.finfo(np.float64).tiny)
    tol = 100.0 * float(jnp.finfo(dtype).eps) * scale
    if np.max(np.abs(arr - arr.T)) > tol:
        raise ValueError(
            f"K0 must be symmetric; max |K0 - K0^T| = {np.max(np.abs(arr - arr.T)):.3g}"
        )
    eig = np.linalg.eigvalsh(0.5 * (arr + arr.T))
    if eig[0] < -tol * arr.shape[0]:
        raise ValueError(f"K0 must be positive semi-definite; smallest eigenvalue is {eig[0]:.6g}")
    return bool(eig[0] > tol * arr.shape[0])


# --------------------------------------------------------------------------------------------
# Square-root factors
# --------------------------------------------------------------------------------------------


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


def _kernel_factor(K0: Float[Array, "P P"], use_cholesky: bool) -> Float[Array, "P P"]:
    """A factor ``R`` with ``R^T R = K0``: Cholesky (PD) or symmetric eigen square root (PSD)."""
    if use_cholesky:
        return jnp.linalg.cholesky(K0).T
    w, V = jnp.linalg.eigh(0.5 * (K0 + K0.T))
    return jnp.sqrt(jnp.clip(w, 0.0))[:, None] * V.T


# --------------------------------------------------------------------------------------------
# Core: one batch of networks
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


def _design(x: Float[Array, "n_in P"], s_w: Array, s_b: Array) -> Float[Array, "n_in+1 P"]:
    """``M = [s_w x / sqrt(n_in); s_b 1^T]``: an affine Gaussian layer applied to ``x`` is
    ``Z M`` with ``Z`` standard normal of shape ``(n_out, n_in + 1)`` (``Z = [W; b]`` scaled)."""
    n_in, P = x.shape
    bias_row = jnp.broadcast_to(s_b, (1, P)).astype(x.dtype)
    return jnp.concatenate([x * (s_w / math.sqrt(n_in)), bias_row], axis=0)


def _gaussian_layer(
    cfg: _Config, key: PRNGKeyArray, M: Float[Array, "m P"], n_rows: int
) -> Float[Array, "n_rows P"]:
    """Pre-activations ``[W b] [x; 1]`` of ``n_rows`` fresh neurons, given ``M = _design(x)``.

    ``method="full"`` draws the weights and bias explicitly, ``Z M`` with ``Z`` of shape
    ``(n_rows, m)``, O(n_rows m P). ``method="sampler"`` draws the rows directly from their
    joint distribution, ``N(0, M^T M)`` i.i.d.: ``z R`` with ``R^T R = M^T M`` (Householder QR of
    ``M``) and ``z`` of shape ``(n_rows, P)``, O((n_rows + m) P^2).
    """
    if cfg.method == "full":
        return jax.random.normal(key, (n_rows, M.shape[0]), M.dtype) @ M
    R = _gram_factor(M)
    return jax.random.normal(key, (n_rows, R.shape[0]), M.dtype) @ R


def _init_layer(cfg: _Config, key: PRNGKeyArray, inp: Array, p: _Params) -> Array:
    """Pre-activations h^(0), shape (N, P), of one network."""
    if cfg.input_mode == "factor":
        R0 = inp  # (r, P) with R0^T R0 = K0: rows of h^(0) ~ N(0, K0)
        return jax.random.normal(key, (cfg.width, R0.shape[0]), R0.dtype) @ R0
    X = inp  # (P, d_in): explicit input weights
    return _gaussian_layer(cfg, key, _design(X.T, p.s_w_in, p.s_b_in), cfg.width)


def _layer_step(cfg: _Config, key: PRNGKeyArray, h: Array, phi: Array, p: _Params) -> Array:
    """One hidden layer of one network: h^(l-1), phi(h^(l-1)) (N, P) -> h^(l) (N, P)."""
    pre = _gaussian_layer(cfg, key, _design(phi, p.s_w, p.s_b), cfg.width)
    if cfg.residual:
        return h + p.rho * pre
    return pre


def _kernels(h: Array, phi: Array) -> tuple[Array, Array]:
    N = h.shape[0]
    return phi.T @ phi / N, h.T @ h / N


def _masked_stats(x: Array, mask: Array, n: Array) -> tuple[Array, Array]:
    """Mean and sum of squared deviations over the valid networks of a batch (axis 0)."""
    w = mask.reshape((-1,) + (1,) * (x.ndim - 1))
    mean = jnp.sum(w * x, axis=0) / n
    m2 = jnp.sum(w * (x - mean) ** 2, axis=0)
    return mean, m2


def _network_keys(key: PRNGKeyArray, start: Array, batch_size: int) -> Array:
    idx = start + jnp.arange(batch_size, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, (None, 0))(key, idx)


def _forward_batch(
    cfg: _Config, key: PRNGKeyArray, start: Array, n_valid: Array, inp: Array, p: _Params
) -> tuple[tuple[Array, Array, Array, Array], Array, Array, Array, Array]:
    """Simulate one batch.

    Returns the per-layer ``(mean C, M2 C, mean K, M2 K)`` over the valid networks, the
    last-layer kernels ``C, K`` (B, P, P), ``phi(h^(L))`` (B, N, P) and the network keys.
    """
    keys = _network_keys(key, start, cfg.batch_size)
    mask = (jnp.arange(cfg.batch_size) < n_valid).astype(cfg.dtype)
    n = n_valid.astype(cfg.dtype)
    kernels = jax.vmap(_kernels)

    def stats(C, K):
        return (*_masked_stats(C, mask, n), *_masked_stats(K, mask, n))

    h0 = jax.vmap(lambda k: _init_layer(cfg, jax.random.fold_in(k, 0), inp, p))(keys)
    phi0 = cfg.act(h0)
    C0, K0 = kernels(h0, phi0)

    def body(carry, layer):
        h, phi, _, _ = carry
        lkeys = jax.vmap(jax.random.fold_in, (0, None))(keys, layer)
        h = jax.vmap(lambda k, hh, ff: _layer_step(cfg, k, hh, ff, p))(lkeys, h, phi)
        phi = cfg.act(h)
        C, K = kernels(h, phi)
        return (h, phi, C, K), stats(C, K)

    layers = jnp.arange(1, cfg.depth + 1, dtype=jnp.uint32)
    (_, phiL, C_last, K_last), stats_rest = jax.lax.scan(body, (h0, phi0, C0, K0), layers)
    all_stats = tuple(
        jnp.concatenate([s0[None], sr], axis=0)
        for s0, sr in zip(stats(C0, K0), stats_rest, strict=True)
    )
    return all_stats, C_last, K_last, phiL, keys


@jax.jit(static_argnums=0)
def _kernel_batch(cfg, key, start, n_valid, inp, p):
    all_stats, C_last, K_last, _, _ = _forward_batch(cfg, key, start, n_valid, inp, p)
    return all_stats, C_last, K_last


@jax.jit(static_argnums=(0, 1))
def _output_batch(cfg, n_outputs, key, start, n_valid, inp, p):
    _, _, _, phiL, keys = _forward_batch(cfg, key, start, n_valid, inp, p)

    def readout(k, phi):
        k = jax.random.fold_in(k, cfg.depth + 1)
        return _gaussian_layer(cfg, k, _design(phi, p.s_w_out, p.s_b_out), n_outputs)

    return jax.vmap(readout)(keys, phiL)


@jax.jit(static_argnums=0)
def _response_batch(cfg, key, start, n_valid, inp, d_inp, p, d_p):
    def out_kernel(inp_, p_):
        _, C_last, _, _, _ = _forward_batch(cfg, key, start, n_valid, inp_, p_)
        return p_.s_w_out**2 * C_last + p_.s_b_out**2

    out, d_out = jax.jvp(out_kernel, (inp, p), (d_inp, d_p))
    mask = (jnp.arange(cfg.batch_size) < n_valid).astype(cfg.dtype)
    n = n_valid.astype(cfg.dtype)
    return _masked_stats(out, mask, n), _masked_stats(d_out, mask, n)


# --------------------------------------------------------------------------------------------
# Accumulation across batches (Chan et al. parallel mean/variance update)
# --------------------------------------------------------------------------------------------


class _Welford:
    """Merge per-batch (count, mean, M2) summaries; float64 on the host unless traced."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Any = None
        self.m2: Any = None

    def add(self, n_b: int, mean_b: Any, m2_b: Any) -> None:
        if not (_is_traced(mean_b) or _is_traced(m2_b)):
            mean_b = np.asarray(mean_b, dtype=np.float64)
            m2_b = np.asarray(m2_b, dtype=np.float64)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n

    def result(self, dtype: Any) -> tuple[Array, Array]:
        mean = jnp.asarray(self.mean).astype(dtype)
        if self.n > 1:
            var = jnp.asarray(self.m2 / (self.n - 1)).astype(dtype)
        else:
            var = jnp.full(jnp.shape(self.mean), jnp.nan, dtype)
        return mean, var


# --------------------------------------------------------------------------------------------
# Argument handling shared by the public entry points
# --------------------------------------------------------------------------------------------


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
        raise ValueError(f"method must be 'sampler' or 'full', got {method!r}")
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
        raise ValueError("give exactly one of K0 (input kernel) and X (input data, (P, d_in))")

    dtype = jnp.dtype(_float_dtype(K0, X))
    use_cholesky = True
    if K0 is not None:
        route = "K0"
        if not _is_traced(K0):
            use_cholesky = _check_K0(K0, dtype)
        data = jnp.asarray(K0, dtype)
        if data.ndim != 2 or data.shape[0] != data.shape[1]:
            raise ValueError(f"K0 must be a square (P, P) matrix, got shape {data.shape}")
        input_mode = "factor"
    else:
        route = "X"
        if not _is_traced(X):
            Xa = np.asarray(X, dtype=np.float64)
            if Xa.ndim != 2 or Xa.shape[0] < 1 or Xa.shape[1] < 1:
                raise ValueError(f"X must have shape (P, d_in), got {Xa.shape}")
            if not np.all(np.isfinite(Xa)):
                raise ValueError("X contains NaN or inf")
        data = jnp.asarray(X, dtype)
        if data.ndim != 2:
            raise ValueError(f"X must have shape (P, d_in), got {data.shape}")
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
        return _kernel_factor(data, setup.use_cholesky)
    return _gram_factor(_design(data.T, params.s_w_in, params.s_b_in))


def _batches(n_networks: int, batch_size: int, progress: bool, desc: str):
    n_batches = -(-n_networks // batch_size)
    for b in tqdm(range(n_batches), disable=not progress, desc=desc, unit="batch"):
        start = b * batch_size
        yield start, min(batch_size, n_networks - start)


def _concat(chunks: list[Any]) -> Array:
    if any(_is_traced(c) for c in chunks):
        return jnp.concatenate(chunks, axis=0)
    return jnp.asarray(np.concatenate([np.asarray(c) for c in chunks], axis=0))


_COMMON_DOC = """
    Parameters
    ----------
    key
        A :func:`jax.random.PRNGKey`; network ``i`` uses ``fold_in(key, i)`` (independent of
        ``batch_size``).
    K0
        Input kernel :math:`K^{(0)}` (symmetric positive semi-definite, ``(P, P)``). The rows
        of :math:`h^{(0)}` are drawn i.i.d. from :math:`\\mathcal N(0, K^{(0)})`. Give either
        ``K0`` or ``X``.
    X
        Input data, shape ``(P, d_in)``: :math:`h^{(0)} = W_\\mathrm{in}X^\\top + b_\\mathrm{in}`
        (so that :math:`\\mathbb E\\hat K^{(0)} = \\sigma_{b,\\mathrm{in}}^2 +
        \\sigma_{w,\\mathrm{in}}^2 XX^\\top/d_\\mathrm{in}`).
    rho
        Residual scaling :math:`\\rho` (ignored when ``residual=False``).
    depth
        Number of hidden residual layers :math:`L \\ge 1`.
    width
        Network width :math:`N \\ge 1`.
    n_networks
        Number of independent networks.
    activation
        ``"erf"``, ``"relu"``, ``"tanh"``, ``"linear"`` or an elementwise jnp callable.
    sigma_w2, sigma_b2
        Hidden weight and bias variances (:math:`\\sigma_w^2/N` per weight).
    sigma_w2_out, sigma_b2_out
        Read-out weight and bias variances.
    sigma_w2_in, sigma_b2_in
        Input-layer variances (only used with ``X``).
    residual
        ``True`` for the ResNet, ``False`` for the feed-forward net
        :math:`h^{(l)} = W^{(l)}\\phi(h^{(l-1)}) + b^{(l)}`.
    method
        ``"sampler"`` (:math:`O(NP^2)` kernel sampler) or ``"full"`` (explicit :math:`N\\times N`
        weights, :math:`O(N^2P)`).
    batch_size
        Networks per compiled, vmapped call.
    progress
        Show a tqdm progress bar over batches.
"""


def simulate_kernels(
    key: PRNGKeyArray,
    K0: Float[Array, "P P"] | None = None,
    *,
    X: Float[Array, "P d_in"] | None = None,
    rho: float | Float[Array, ""],
    depth: int,
    width: int,
    n_networks: int,
    activation: str | Callable[[Array], Array] = "erf",
    sigma_w2: float = 1.25,
    sigma_b2: float = 0.05,
    sigma_w2_out: float = 1.25,
    sigma_b2_out: float = 0.05,
    sigma_w2_in: float = 1.0,
    sigma_b2_in: float = 0.0,
    residual: bool = True,
    method: str = "sampler",
    batch_size: int = 1024,
    keep_last: bool = True,
    progress: bool = False,
) -> SimulationResult:
    """Simulate finite networks and return statistics of their empirical kernels.
    {common}
    keep_last
        Also return the per-network kernels at the last layer (``C_last``, ``K_last``,
        ``out_last``; ``n_networks * P * P`` numbers each).

    Returns
    -------
    SimulationResult
        Per-layer means and unbiased variances (over networks) of :math:`\\hat C^{{(l)}}` and
        :math:`\\hat K^{{(l)}}`, ``l = 0..L``, of the output kernel, and optionally the
        per-network last-layer kernels. Differentiable (pathwise, at fixed ``key``) with
        respect to ``K0``, ``X`` and ``rho``.

    Notes
    -----
    Both samplers are exact; see the module docstring and THEORY §6. The per-batch summaries
    are merged in float64 (unless the call is being traced, e.g. under :func:`jax.jvp`, when
    they are merged in the simulation dtype).
    """
    s = _setup(
        K0,
        X,
        rho=rho,
        depth=depth,
        width=width,
        n_networks=n_networks,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        sigma_w2_out=sigma_w2_out,
        sigma_b2_out=sigma_b2_out,
        sigma_w2_in=sigma_w2_in,
        sigma_b2_in=sigma_b2_in,
        residual=residual,
        method=method,
        batch_size=batch_size,
    )
    cfg = s.cfg
    inp = _batch_input(s, s.data, s.params)
    acc = [_Welford(), _Welford()]
    C_chunks: list[Any] = []
    K_chunks: list[Any] = []
    for start, n_b in _batches(s.n_networks, cfg.batch_size, progress, "simulate_kernels"):
        (mC, m2C, mK, m2K), C_last, K_last = _kernel_batch(
            cfg, key, jnp.uint32(start), jnp.int32(n_b), inp, s.params
        )
        acc[0].add(n_b, mC, m2C)
        acc[1].add(n_b, mK, m2K)
        if keep_last:
            C_chunks.append(C_last[:n_b])
            K_chunks.append(K_last[:n_b])
    C_mean, C_var = acc[0].result(cfg.dtype)
    K_mean, K_var = acc[1].result(cfg.dtype)
    w_out2, b_out2 = s.params.s_w_out**2, s.params.s_b_out**2
    out_mean = w_out2 * C_mean[-1] + b_out2
    out_var = w_out2**2 * C_var[-1]
    C_last = K_last = out_last = None
    if keep_last:
        C_last, K_last = _concat(C_chunks), _concat(K_chunks)
        out_last = w_out2 * C_last + b_out2
    return SimulationResult(
        C_mean=C_mean,
        C_var=C_var,
        K_mean=K_mean,
        K_var=K_var,
        out_mean=out_mean,
        out_var=out_var,
        C_last=C_last,
        K_last=K_last,
        out_last=out_last,
        n_networks=s.n_networks,
    )


def simulate_outputs(
    key: PRNGKeyArray,
    K0: Float[Array, "P P"] | None = None,
    *,
    X: Float[Array, "P d_in"] | None = None,
    rho: float | Float[Array, ""],
    depth: int,
    width: int,
    n_networks: int,
    activation: str | Callable[[Array], Array] = "erf",
    sigma_w2: float = 1.25,
    sigma_b2: float = 0.05,
    sigma_w2_out: float = 1.25,
    sigma_b2_out: float = 0.05,
    sigma_w2_in: float = 1.0,
    sigma_b2_in: float = 0.0,
    residual: bool = True,
    method: str = "sampler",
    batch_size: int = 1024,
    n_outputs: int | None = None,
    progress: bool = False,
) -> Float[Array, "n_networks P"] | Float[Array, "n_networks n_outputs P"]:
    """Simulate finite networks and return their outputs on the ``P`` inputs.
    {common}
    n_outputs
        ``None`` (default): one read-out unit, result ``(n_networks, P)``. An integer: that
        many read-out units per network (sharing the hidden layers, fresh read-out weights
        each), result ``(n_networks, n_outputs, P)``. Units of one network are uncorrelated
        but not independent: they share the fluctuating kernel.

    Returns
    -------
    Array
        Network outputs :math:`y = W_\\mathrm{{out}}\\phi(h^{{(L)}}) + b_\\mathrm{{out}}` with
        fresh read-out weights (drawn explicitly for ``method="full"``, by the kernel sampler
        otherwise). Conditioned on the network, they are Gaussian with covariance
        :math:`\\sigma_{{w,\\mathrm{{out}}}}^2\\hat C^{{(L)}} + \\sigma_{{b,\\mathrm{{out}}}}^2`;
        marginally they are not.
    """
    s = _setup(
        K0,
        X,
        rho=rho,
        depth=depth,
        width=width,
        n_networks=n_networks,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        sigma_w2_out=sigma_w2_out,
        sigma_b2_out=sigma_b2_out,
        sigma_w2_in=sigma_w2_in,
        sigma_b2_in=sigma_b2_in,
        residual=residual,
        method=method,
        batch_size=batch_size,
    )
    n_units = 1 if n_outputs is None else _check_int("n_outputs", n_outputs, 1)
    cfg = s.cfg
    inp = _batch_input(s, s.data, s.params)
    chunks = []
    for start, n_b in _batches(s.n_networks, cfg.batch_size, progress, "simulate_outputs"):
        y = _output_batch(cfg, n_units, key, jnp.uint32(start), jnp.int32(n_b), inp, s.params)
        chunks.append(y[:n_b])
    y = _concat(chunks)
    return y[:, 0, :] if n_outputs is None else y


def simulate_response(
    key: PRNGKeyArray,
    K0: Float[Array, "P P"],
    tangent: Float[Array, "P P"],
    *,
    rho: float | Float[Array, ""],
    depth: int,
    width: int,
    n_networks: int,
    activation: str | Callable[[Array], Array] = "erf",
    sigma_w2: float = 1.25,
    sigma_b2: float = 0.05,
    sigma_w2_out: float = 1.25,
    sigma_b2_out: float = 0.05,
    residual: bool = True,
    method: str = "sampler",
    batch_size: int = 1024,
    rho_tangent: float = 0.0,
    progress: bool = False,
) -> ResponseResult:
    r"""Monte-Carlo estimate of the response of the output kernel to the input kernel.

    For every network the pathwise derivative (a :func:`jax.jvp` through the whole
    simulation at fixed random numbers) of its output kernel
    :math:`\hat K^\mathrm{out} = \sigma_{w,\mathrm{out}}^2\hat C^{(L)} + \sigma_{b,\mathrm{out}}^2`
    in the direction ``tangent`` of :math:`K^{(0)}` (and ``rho_tangent`` of :math:`\rho`) is
    computed; its mean over networks is an unbiased estimate of

    .. math::

        \sum_{\gamma\delta}\frac{\partial\,\mathbb E[\hat K^\mathrm{out}_{\alpha\beta}]}
        {\partial K^{(0)}_{\gamma\delta}}\,T_{\gamma\delta}
        + \frac{\partial\,\mathbb E[\hat K^\mathrm{out}_{\alpha\beta}]}{\partial\rho}\,
        \dot\rho,

    which tends to the leading-order response :math:`\chi^\mathrm{out}` (THEORY §3) as
    :math:`N\to\infty`. For the paper's diagonal response use ``T = e_α e_αᵀ``; for the
    off-diagonal one the symmetric ``T = e_α e_βᵀ + e_β e_αᵀ``.

    Parameters
    ----------
    key, K0, rho, depth, width, n_networks, activation, sigma_w2, sigma_b2, sigma_w2_out,
    sigma_b2_out, residual, method, batch_size, progress
        As in :func:`simulate_kernels` (``K0`` is required; it is the expansion point).
    tangent
        Symmetric ``(P, P)`` direction :math:`T` in the space of input kernels.
    rho_tangent
        Direction :math:`\dot\rho` in :math:`\rho` (default 0).

    Returns
    -------
    ResponseResult
        ``mean`` and ``stderr`` of the per-network JVP, ``(P, P)``, and the mean and standard
        error of the output kernel itself.
    """
    if K0 is None:
        raise ValueError("simulate_response needs the input kernel K0")
    s = _setup(
        K0,
        None,
        rho=rho,
        depth=depth,
        width=width,
        n_networks=n_networks,
        activation=activation,
        sigma_w2=sigma_w2,
        sigma_b2=sigma_b2,
        sigma_w2_out=sigma_w2_out,
        sigma_b2_out=sigma_b2_out,
        sigma_w2_in=1.0,
        sigma_b2_in=0.0,
        residual=residual,
        method=method,
        batch_size=batch_size,
    )
    cfg = s.cfg
    T = jnp.asarray(tangent, cfg.dtype)
    if T.shape != s.data.shape:
        raise ValueError(f"tangent must have the shape of K0 {s.data.shape}, got {T.shape}")
    if not _is_traced(tangent):
        Ta = np.asarray(tangent, dtype=np.float64)
        if not np.all(np.isfinite(Ta)):
            raise ValueError("tangent contains NaN or inf")
        if np.max(np.abs(Ta - Ta.T)) > 100 * float(jnp.finfo(cfg.dtype).eps) * max(
            float(np.max(np.abs(Ta))), 1e-300
        ):
            raise ValueError("tangent must be a symmetric (P, P) matrix")
    _check_scalar("rho_tangent", rho_tangent, nonnegative=False)

    inp, d_inp = jax.jvp(lambda K: _kernel_factor(K, s.use_cholesky), (s.data,), (T,))
    d_params = jax.tree.map(jnp.zeros_like, s.params)._replace(
        rho=jnp.asarray(rho_tangent, cfg.dtype)
    )
    acc_out, acc_d = _Welford(), _Welford()
    for start, n_b in _batches(s.n_networks, cfg.batch_size, progress, "simulate_response"):
        (m_o, m2_o), (m_d, m2_d) = _response_batch(
            cfg, key, jnp.uint32(start), jnp.int32(n_b), inp, d_inp, s.params, d_params
        )
        acc_out.add(n_b, m_o, m2_o)
        acc_d.add(n_b, m_d, m2_d)
    d_mean, d_var = acc_d.result(cfg.dtype)
    o_mean, o_var = acc_out.result(cfg.dtype)
    n = s.n_networks
    return ResponseResult(
        mean=d_mean,
        stderr=jnp.sqrt(d_var / n),
        out_mean=o_mean,
        out_stderr=jnp.sqrt(o_var / n),
        n_networks=n,
    )


simulate_kernels.__doc__ = simulate_kernels.__doc__.format(common=_COMMON_DOC)
simulate_outputs.__doc__ = simulate_outputs.__doc__.format(common=_COMMON_DOC)
