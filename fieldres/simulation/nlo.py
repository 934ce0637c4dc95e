"""Monte-Carlo counterpart of the :math:`1/N` theory: the statistics that
:func:`fieldres.finite_width.finite_width` predicts, measured in simulated finite networks."""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..finite_width.moments import _unique_entries
from ..kernels.activations import get_activation
from ..kernels.recursion import Hyper
from .stats import ncov_with_se

__all__ = ["SimulatedNLO", "simulate_nlo"]


class SimulatedNLO(eqx.Module):
    r"""Monte-Carlo estimates of the last-layer kernel statistics, with standard errors.

    For ``X`` in ``C`` (:math:`\hat C^{(L)}`), ``K`` (:math:`\hat K^{(L)}`) and ``out``
    (:math:`\sigma^2_{w,out}\hat C^{(L)} + \sigma^2_{b,out}`): ``X_mean`` and ``X_mean_se``
    ``(P, P)``; ``X_ncov`` and ``X_ncov_se`` ``(n_e, n_e)``: the width times the sample
    covariance over networks between the :attr:`entries` (upper triangle, row-major), and
    its standard error (from the fourth moments: the standard error of the mean of the
    products of centred samples). ``C_layers_mean``/``_se``, ``K_layers_mean``/``_se``:
    ``(L+1, P, P)`` means over all layers.
    """

    C_mean: Array
    C_mean_se: Array
    C_ncov: Array
    C_ncov_se: Array
    K_mean: Array
    K_mean_se: Array
    K_ncov: Array
    K_ncov_se: Array
    out_mean: Array
    out_mean_se: Array
    out_ncov: Array
    out_ncov_se: Array
    C_layers_mean: Array
    C_layers_se: Array
    K_layers_mean: Array
    K_layers_se: Array
    width: int = eqx.field(static=True)
    n_networks: int = eqx.field(static=True)

    @property
    def entries(self) -> list[tuple[int, int]]:
        return _unique_entries(self.C_mean.shape[-1])


def simulate_nlo(
    key,
    K0: Float[ArrayLike, "P P"],
    *,
    rho: float,
    depth: int,
    width: int,
    n_networks: int,
    hyper: Hyper | None = None,
    activation: str | Callable = "erf",
    residual: bool = True,
    method: str = "sampler",
    batch_size: int = 2048,
    progress: bool = False,
) -> SimulatedNLO:
    """Simulate finite networks (:func:`fieldres.simulation.simulate_kernels`) and return the
    statistics that :func:`finite_width` predicts: means with standard errors and ``N`` times
    the covariances between entries at the last layer, with standard errors."""
    from .networks import simulate_kernels

    if hyper is None:
        hyper = Hyper()
    act = activation
    if isinstance(act, str):
        act = get_activation(act).fn if act not in ("erf", "tanh", "relu", "linear") else act
    s = simulate_kernels(
        key, jnp.asarray(K0), rho=rho, depth=depth, width=width, n_networks=n_networks,
        activation=act, sigma_w2=float(hyper.sigma_w2), sigma_b2=float(hyper.sigma_b2),
        sigma_w2_out=float(hyper.sigma_w2_out), sigma_b2_out=float(hyper.sigma_b2_out),
        residual=residual, method=method, batch_size=batch_size, keep_last=True,
        progress=progress,
    )
    P = np.shape(K0)[0]
    e = np.asarray(_unique_entries(P))
    out = {}
    for name, last in (("C", s.C_last), ("K", s.K_last), ("out", s.out_last)):
        x = np.asarray(last, np.float64)
        flat = x[:, e[:, 0], e[:, 1]]
        ncov, ncov_se = ncov_with_se(flat, width)
        out[f"{name}_mean"] = jnp.asarray(x.mean(0))
        out[f"{name}_mean_se"] = jnp.asarray(x.std(0, ddof=1) / np.sqrt(x.shape[0]))
        out[f"{name}_ncov"] = jnp.asarray(ncov)
        out[f"{name}_ncov_se"] = jnp.asarray(ncov_se)
    return SimulatedNLO(
        **out,
        C_layers_mean=s.C_mean,
        C_layers_se=s.C_stderr,
        K_layers_mean=s.K_mean,
        K_layers_se=s.K_stderr,
        width=int(width),
        n_networks=int(n_networks),
    )
