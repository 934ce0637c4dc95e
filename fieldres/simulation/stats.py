# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
"""Result types and the statistics over simulated networks.

Network ``i`` uses the key ``fold_in(key, i)`` (:func:`network_keys`), so results do not
depend on the batch size; batches have a fixed shape (one compilation) and the padding
networks are masked out of :func:`masked_moments`; :class:`RunningMoments` merges the
per-batch summaries in float64 (Chan et al.'s parallel update).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from .._validation import FieldresInputError

__all__ = [
    "ResponseResult",
    "RunningMoments",
    "SimulationResult",
    "batch_ranges",
    "masked_moments",
    "ncov_with_se",
    "network_keys",
]


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
            raise FieldresInputError(f"stderr: expected 'C', 'K' or 'out', got {name!r}")
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


def masked_moments(x: Array, mask: Array, n: Array) -> tuple[Array, Array]:
    """Mean and sum of squared deviations over the valid networks of a batch (axis 0)."""
    w = mask.reshape((-1,) + (1,) * (x.ndim - 1))
    mean = jnp.sum(w * x, axis=0) / n
    m2 = jnp.sum(w * (x - mean) ** 2, axis=0)
    return mean, m2


def network_keys(key: PRNGKeyArray, start: Array, batch_size: int) -> Array:
    idx = start + jnp.arange(batch_size, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, (None, 0))(key, idx)


class RunningMoments:
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


def batch_ranges(n_networks: int, batch_size: int, progress: bool, desc: str):
    nbatch_ranges = -(-n_networks // batch_size)
    for b in tqdm(range(nbatch_ranges), disable=not progress, desc=desc, unit="batch"):
        start = b * batch_size
        yield start, min(batch_size, n_networks - start)


def _concat(chunks: list[Any]) -> Array:
    if any(_is_traced(c) for c in chunks):
        return jnp.concatenate(chunks, axis=0)
    return jnp.asarray(np.concatenate([np.asarray(c) for c in chunks], axis=0))


def ncov_with_se(samples: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``N`` x sample covariance of the columns and its standard error."""
    x = np.asarray(samples, np.float64)
    n = x.shape[0]
    xc = x - x.mean(0)
    prod = xc[:, :, None] * xc[:, None, :]
    cov = prod.sum(0) / (n - 1)
    se = prod.std(0, ddof=1) / np.sqrt(n)
    return width * cov, width * se
