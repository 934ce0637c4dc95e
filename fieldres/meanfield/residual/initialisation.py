# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""Depth-dependent initialisation: the variances that hold a mean-field quantity at a
given level as the depth grows, and the Xavier / He drift."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import ArrayLike

from ..._validation import FieldresInputError, check_depth
from ...kernels.activations import Activation
from .recursion import (
    ResHyper,
    _as_K0,
    _check_kind,
    _propagate,
    resnet_meanfield,
    resolve_activation,
)

_QUANTITIES = ("log_chi", "log_p", "log_s")
_VARIED = ("sigma_v2", "sigma_w2", "sigma_a2", "sigma_b2")


def _quantity_at_depth(u, args):
    """Theory quantity at the last layer with ``exp(u)`` put into the varied variance."""
    hyper, vary, quantity, K0, act, depth, kind = args
    hyp = eqx.tree_at(lambda h: getattr(h, vary), hyper, jnp.exp(u))
    p, p2, g, e, s, q, logchi = _propagate(K0, hyp, act, depth, kind)
    if quantity == "log_chi":
        return logchi[-1]
    if quantity == "log_p":
        return jnp.log(p[-1])
    return jnp.log(s[-1])


def initialisation_for_level(
    depths: Sequence[int],
    level: float,
    *,
    quantity: str = "log_chi",
    vary: str = "sigma_v2",
    kind: str = "full",
    activation: str | Activation = "tanh",
    hyper: ResHyper = ResHyper(),
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
    bracket: tuple[float, float] = (1e-6, 1e2),
) -> dict[str, np.ndarray]:
    r"""The variance ``vary`` that puts a theory quantity at depth ``L`` on a given level.

    Yang & Schoenholz found the best MNIST test accuracy of tanh FRNs along a contour of the
    gradient explosion :math:`\chi^{(0)}/\chi^{(L)}` (``quantity="log_chi"``) and of
    :math:`\alpha`-ReLU nets along a contour of :math:`s^{(L)}` (``"log_s"``). Solving
    ``quantity(L, vary) = level`` for every depth gives the depth-dependent initialisation
    (bisection in :math:`\log` of the variance with ``optimistix``; ``nan`` and a message where
    the level is not reached inside ``bracket``). For tanh FRNs with :math:`\sigma_a = 0` the
    contour has :math:`\sigma_v^2 L \to` const: with :math:`\sigma_v^2 = \tau/L` the recursion
    has a continuum limit in :math:`t = l/L` (as for :math:`\rho^2 \sim 1/L` in
    :mod:`fieldres.optimal`), so :math:`\log\chi^{(0)}/\chi^{(L)}` depends on :math:`\tau` only
    (the large-:math:`p` stretched-exponential law gives the same :math:`1/L` but is not
    reached on the contour, where :math:`p^{(L)} = O(1)`). Xavier and He keep the variances
    fixed and drift across the contour with depth (:func:`xavier_he_comparison`).
    """
    _check_kind(kind)
    if quantity not in _QUANTITIES:
        raise FieldresInputError(f"quantity must be one of {_QUANTITIES}, got {quantity!r}")
    if vary not in _VARIED:
        raise FieldresInputError(f"vary must be one of {_VARIED}, got {vary!r}")
    lo, hi = bracket
    if not (0 < lo < hi and math.isfinite(hi)):
        raise FieldresInputError(f"bracket must satisfy 0 < lo < hi < inf, got {bracket}")
    K0 = _as_K0(K0)
    if quantity != "log_s":
        K0 = K0[:1, :1]  # one input suffices (no bivariate expectations)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    hyper = jax.tree.map(lambda x: jnp.asarray(x, K0.dtype), hyper)
    ulo, uhi = math.log(lo), math.log(hi)
    values, messages = [], []
    for L in depths:
        check_depth(L)
        args = (hyper, vary, quantity, K0, act, int(L), kind)
        f_lo = float(_quantity_at_depth(jnp.asarray(ulo), args)) - level
        f_hi = float(_quantity_at_depth(jnp.asarray(uhi), args)) - level
        if not (np.isfinite(f_lo) and np.isfinite(f_hi)) or f_lo * f_hi > 0:
            values.append(math.nan)
            messages.append(f"level {level:g} not reached for {vary} in [{lo:g}, {hi:g}] at "
                            f"L = {L} (values {f_lo + level:.4g} .. {f_hi + level:.4g})")
            continue
        sol = _solve_level(jnp.asarray(ulo), jnp.asarray(uhi), jnp.asarray(level, K0.dtype),
                           args)
        ok = sol.result == optx.RESULTS.successful
        values.append(float(jnp.exp(sol.value)) if ok else math.nan)
        messages.append("ok" if ok else "bisection did not converge")
    return {"depths": np.asarray(depths), vary: np.asarray(values), "messages": messages}


def _solve_level(ulo, uhi, level, args):
    hyper, vary, quantity, K0, act, depth, kind = args

    @eqx.filter_jit
    def solve(ulo, uhi, level, hyper, K0):
        a = (hyper, vary, quantity, K0, act, depth, kind)
        return optx.root_find(lambda u, lv: _quantity_at_depth(u, a) - lv,
                              optx.Bisection(rtol=0.0, atol=1e-10), 0.5 * (ulo + uhi), level,
                              options=dict(lower=ulo, upper=uhi), throw=False, max_steps=200)

    return solve(ulo, uhi, level, hyper, K0)


def xavier_he_comparison(
    depths: Sequence[int],
    *,
    kind: str = "full",
    activation: str | Activation = "tanh",
    sigma_a2: float = 0.0,
    sigma_b2: float = 0.0,
    level: float | None = None,
) -> dict[str, Any]:
    r""":math:`\log\chi^{(0)}/\chi^{(L)}` under Xavier (:math:`\sigma_w^2 = \sigma_v^2 = 1`) and He
    (:math:`= 2`) against the depth-dependent :math:`\sigma_v^2(L)` that holds it at ``level``.

    ``level`` defaults to Xavier's value at the smallest depth, so both start equal and the
    table shows how a fixed-variance scheme drifts across the contour as ``L`` grows.
    """
    K0 = ((1.0,),)
    out: dict[str, Any] = {"depths": list(map(int, depths))}
    for name, v in (("xavier", 1.0), ("he", 2.0)):
        hyp = ResHyper(v, sigma_b2, v, sigma_a2)
        out[name] = [float(resnet_meanfield(kind, L, hyp, activation, K0).log_chi_ratio[-1])
                     for L in depths]
    if level is None:
        level = out["xavier"][0]
    opt = initialisation_for_level(depths, level, quantity="log_chi", vary="sigma_v2",
                                   kind=kind, activation=activation,
                                   hyper=ResHyper(1.0, sigma_b2, 1.0, sigma_a2), K0=K0)
    out["level"] = float(level)
    out["optimal_sigma_v2"] = opt["sigma_v2"].tolist()
    out["messages"] = opt["messages"]
    return out
