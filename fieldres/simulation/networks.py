# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
r"""The finite ResNet / FFNet of THEORY Sec. 1 and the public Monte-Carlo entry points.

One batch of networks is one jit-compiled, vmapped call; the layer loop is a
:func:`jax.lax.scan`. See :mod:`fieldres.simulation` for the model and the two samplers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._validation import FieldresInputError
from ._setup import _batch_input, _check_int, _check_scalar, _Config, _Params, _setup
from .sampler import design, gaussian_layer, gaussian_rows, kernel_factor
from .stats import (
    ResponseResult,
    RunningMoments,
    SimulationResult,
    _concat,
    _is_traced,
    batch_ranges,
    masked_moments,
    network_keys,
)

__all__ = ["simulate_kernels", "simulate_outputs", "simulate_response"]


def _init_layer(cfg: _Config, key: PRNGKeyArray, inp: Array, p: _Params) -> Array:
    """Pre-activations h^(0), shape (N, P), of one network."""
    if cfg.input_mode == "factor":
        R0 = inp  # (r, P) with R0^T R0 = K0: rows of h^(0) ~ N(0, K0)
        return gaussian_rows(key, R0, cfg.width)
    X = inp  # (P, d_in): explicit input weights
    return gaussian_layer(key, design(X.T, p.s_w_in, p.s_b_in), cfg.width, cfg.method)


def _layer_step(cfg: _Config, key: PRNGKeyArray, h: Array, phi: Array, p: _Params) -> Array:
    """One hidden layer of one network: h^(l-1), phi(h^(l-1)) (N, P) -> h^(l) (N, P)."""
    pre = gaussian_layer(key, design(phi, p.s_w, p.s_b), cfg.width, cfg.method)
    if cfg.residual:
        return h + p.rho * pre
    return pre


def _kernels(h: Array, phi: Array) -> tuple[Array, Array]:
    N = h.shape[0]
    return phi.T @ phi / N, h.T @ h / N


def _forward_batch(
    cfg: _Config, key: PRNGKeyArray, start: Array, n_valid: Array, inp: Array, p: _Params
) -> tuple[tuple[Array, Array, Array, Array], Array, Array, Array, Array]:
    """Simulate one batch.

    Returns the per-layer ``(mean C, M2 C, mean K, M2 K)`` over the valid networks, the
    last-layer kernels ``C, K`` (B, P, P), ``phi(h^(L))`` (B, N, P) and the network keys.
    """
    keys = network_keys(key, start, cfg.batch_size)
    mask = (jnp.arange(cfg.batch_size) < n_valid).astype(cfg.dtype)
    n = n_valid.astype(cfg.dtype)
    kernels = jax.vmap(_kernels)

    def stats(C, K):
        return (*masked_moments(C, mask, n), *masked_moments(K, mask, n))

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
        return gaussian_layer(k, design(phi, p.s_w_out, p.s_b_out), n_outputs, cfg.method)

    return jax.vmap(readout)(keys, phiL)


@jax.jit(static_argnums=0)
def _response_batch(cfg, key, start, n_valid, inp, d_inp, p, d_p):
    def out_kernel(inp_, p_):
        _, C_last, _, _, _ = _forward_batch(cfg, key, start, n_valid, inp_, p_)
        return p_.s_w_out**2 * C_last + p_.s_b_out**2

    out, d_out = jax.jvp(out_kernel, (inp, p), (d_inp, d_p))
    mask = (jnp.arange(cfg.batch_size) < n_valid).astype(cfg.dtype)
    n = n_valid.astype(cfg.dtype)
    return masked_moments(out, mask, n), masked_moments(d_out, mask, n)


# --------------------------------------------------------------------------------------------
# Accumulation across batches (Chan et al. parallel mean/variance update)
# --------------------------------------------------------------------------------------------


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
    acc = [RunningMoments(), RunningMoments()]
    C_chunks: list[Any] = []
    K_chunks: list[Any] = []
    for start, n_b in batch_ranges(s.n_networks, cfg.batch_size, progress, "simulate_kernels"):
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
    for start, n_b in batch_ranges(s.n_networks, cfg.batch_size, progress, "simulate_outputs"):
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
        raise FieldresInputError("simulate_response needs the input kernel K0")
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
        raise FieldresInputError(f"tangent must have the shape of K0 {s.data.shape}, got {T.shape}")
    if not _is_traced(tangent):
        Ta = np.asarray(tangent, dtype=np.float64)
        if not np.all(np.isfinite(Ta)):
            raise FieldresInputError("tangent contains NaN or inf")
        if np.max(np.abs(Ta - Ta.T)) > 100 * float(jnp.finfo(cfg.dtype).eps) * max(
            float(np.max(np.abs(Ta))), 1e-300
        ):
            raise FieldresInputError("tangent must be a symmetric (P, P) matrix")
    _check_scalar("rho_tangent", rho_tangent, nonnegative=False)

    inp, d_inp = jax.jvp(lambda K: kernel_factor(K, s.use_cholesky), (s.data,), (T,))
    d_params = jax.tree.map(jnp.zeros_like, s.params)._replace(
        rho=jnp.asarray(rho_tangent, cfg.dtype)
    )
    acc_out, acc_d = RunningMoments(), RunningMoments()
    for start, n_b in batch_ranges(s.n_networks, cfg.batch_size, progress, "simulate_response"):
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
