# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Finite FRNs / RRNs by Monte Carlo (the engine of :mod:`fieldres.simulation`),
with a forward tangent for the gradients."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray

from ..._validation import FieldresInputError, check_depth, check_kernel
from ...kernels.activations import Activation
from ...simulation.sampler import affine, gaussian_rows, kernel_factor, scan_layers
from ...simulation.stats import RunningMoments, batch_ranges, masked_moments, network_keys
from .recursion import ResHyper, _check_kind, resolve_activation


class ResSimulation(NamedTuple):
    r"""Per-layer means and standard errors over finite networks.

    ``mean[name]``, ``stderr[name]`` are ``(L + 1,)`` arrays for ``name`` in ``"p"``,
    ``"p2"``, ``"gamma"``, ``"s"`` (the empirical :math:`x\cdot x/N` etc.) and ``"chi"``:
    :math:`\|J_{0\to l}u\|^2/N` for a standard normal tangent :math:`u`, whose mean is
    :math:`\|J_{0\to l}\|_F^2/N`, the mean-field :math:`\chi^{(0)}/\chi^{(l)}`.
    """

    mean: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    n_networks: int
    width: int


_SIM_NAMES = ("p", "p2", "gamma", "s", "chi")


def _dphi(fn):
    return jnp.vectorize(jax.grad(lambda x: fn(x) * 1.0))


def _one_network(key, R0, sd, act_fn, dact_fn, depth, width, kind, method):
    """One FRN / RRN of the engine's primitives (:mod:`fieldres.simulation.sampler`): the
    inputs ``x, x'`` and a tangent ``t`` are the three columns of one forward pass."""
    dtype = R0.dtype
    x0 = gaussian_rows(jax.random.fold_in(key, 0), R0, width)
    t0 = jax.random.normal(jax.random.fold_in(key, depth + 1), (width, 1), dtype)
    X0 = jnp.concatenate([x0, t0], axis=1)  # columns: x, x', tangent
    mask = jnp.asarray([1.0, 1.0, 0.0], dtype)  # the biases do not move the tangent
    s_w, s_b, s_v, s_a = sd

    def stats(X):
        x1, x2, t = X[:, 0], X[:, 1], X[:, 2]
        return jnp.stack([x1 @ x1, x2 @ x2, x1 @ x2, (x1 - x2) @ (x1 - x2), t @ t]) / width

    def branch_input(H):
        return jnp.stack([act_fn(H[:, 0]), act_fn(H[:, 1]), dact_fn(H[:, 0]) * H[:, 2]], axis=1)

    def block(k, X):
        if kind == "full":  # h = W x + b;  x <- x + V phi(h) + a
            H = affine(jax.random.fold_in(k, 0), X, s_w, s_b, method=method, bias_mask=mask)
            X = X + affine(jax.random.fold_in(k, 1), branch_input(H), s_v, s_a, method=method,
                           bias_mask=mask)
        else:  # x <- x + W phi(x) + b
            X = X + affine(k, branch_input(X), s_w, s_b, method=method, bias_mask=mask)
        return X, stats(X)

    _, rest = scan_layers(block, key, X0, depth)
    return jnp.concatenate([stats(X0)[None], rest], axis=0)  # (L+1, 5)


def simulate_resnet(
    key: PRNGKeyArray,
    kind: str = "full",
    depth: int = 50,
    width: int = 256,
    n_networks: int = 200,
    hyper: ResHyper = ResHyper(),
    activation: str | Activation | Callable = "tanh",
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
    *,
    method: str = "sampler",
    batch_size: int = 64,
) -> ResSimulation:
    r"""Monte-Carlo statistics of finite FRNs / RRNs (two inputs and a forward tangent).

    The rows of :math:`x^{(0)}` are i.i.d. :math:`\mathcal N(0, K_0)` and the tangent
    :math:`u \sim \mathcal N(0, I)`. ``method="full"`` draws every weight matrix
    (:math:`O(N^2)` per layer); ``method="sampler"`` (default) uses that, given the previous
    layer, the rows of :math:`W[x, x', t] + [b, b, 0]` are i.i.d. Gaussian with covariance
    :math:`\sigma_w^2 G/N + \sigma_b^2 mm^T` (:math:`G` the Gram matrix of the three
    columns): exact in distribution, :math:`O(N)` per layer. The tangent goes through the
    same weights (:math:`t \mapsto t + V(\phi'(h)\odot Wt)`), so nothing assumes gradient
    independence. Network ``i`` uses ``fold_in(key, i)``.
    """
    _check_kind(kind)
    check_depth(depth)
    if method not in ("sampler", "full"):
        raise FieldresInputError(f"method must be 'sampler' or 'full', got {method!r}")
    for name, v in (("width", width), ("n_networks", n_networks), ("batch_size", batch_size)):
        if int(v) < 1:
            raise FieldresInputError(f"{name} must be >= 1, got {v}")
    if int(n_networks) < 2:
        raise FieldresInputError("n_networks must be >= 2 for a standard error")
    K0 = np.asarray(K0, float)
    if K0.shape != (2, 2):
        raise FieldresInputError(f"simulate_resnet takes a 2 x 2 input kernel, got shape {K0.shape}")
    check_kernel(K0)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    R0 = kernel_factor(jnp.asarray(K0), use_cholesky=False)
    sd = tuple(jnp.sqrt(jnp.asarray(float(getattr(hyper, n)), R0.dtype))
               for n in ("sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2"))
    act_fn = act.fn
    dact_fn = _dphi(act.fn)
    n = int(n_networks)
    bs = min(int(batch_size), n)
    acc = RunningMoments()
    for start, m in batch_ranges(n, bs, False, "simulate_resnet"):
        # a fixed batch shape (one compilation); the padding networks are masked out
        mean_b, m2_b = _sim_masked(key, jnp.uint32(start), jnp.int32(m), R0, sd, act_fn,
                                   dact_fn, int(depth), int(width), kind, method, bs)
        acc.add(m, mean_b, m2_b)
    mean, var = np.asarray(acc.mean, np.float64), np.asarray(acc.m2, np.float64) / (n - 1)
    se = np.sqrt(var / n)
    return ResSimulation({k: mean[:, i] for i, k in enumerate(_SIM_NAMES)},
                         {k: se[:, i] for i, k in enumerate(_SIM_NAMES)}, n, int(width))


@functools.partial(jax.jit, static_argnums=(5, 6, 7, 8, 9, 10, 11))
def _sim_masked(key, start, n_valid, R0, sd, act_fn, dact_fn, depth, width, kind, method, bs):
    keys = network_keys(key, start, bs)
    out = jax.vmap(lambda k: _one_network(k, R0, sd, act_fn, dact_fn, depth, width, kind,
                                          method))(keys)
    mask = (jnp.arange(bs) < n_valid).astype(out.dtype)
    return masked_moments(out, mask, n_valid.astype(out.dtype))
