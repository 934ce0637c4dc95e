"""Response functions: linear response of the kernels to the input kernel.

.. math::

    \\chi^{(l)}_{\\alpha\\beta,\\gamma\\delta} = \\frac{\\partial K^{(l)}_{\\alpha\\beta}}
        {\\partial K^{(0)}_{\\gamma\\delta}}, \\qquad
    \\chi^\\mathrm{out}_{\\alpha\\beta,\\gamma\\delta} = \\frac{\\partial K^\\mathrm{out}_{\\alpha\\beta}}
        {\\partial K^{(0)}_{\\gamma\\delta}}

(Fischer, Dahmen, Helias, arXiv:2305.07715, Sec. 3; THEORY Sec. 3). The paper's summaries
are the diagonal ``chi_aa = dK_aa / dK0_aa`` and the off-diagonal ``chi_ab = dK_ab / dK0_ab``
(a symmetric perturbation of the ``ab`` and ``ba`` entries). Because ``K^(l)_aa`` depends only
on ``K^(0)_aa`` and ``K^(l)_ab`` only on the ``2 x 2`` block of ``a, b``, *all* diagonal
summaries come from one forward-mode JVP with tangent ``I`` and all off-diagonal ones from
one JVP with tangent ``11^T - I``: the cost is two kernel recursions, for any ``P``.
For a single input the diagonal response is the product
``chi^(L) = prod_l [1 + rho^2 sigma_w^2 C'(K^(l-1))]``, ``chi^out = sigma_w2_out C'(K^(L)) chi^(L)``.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError
from ..kernels.activations import Activation, get_activation
from ..kernels.recursion import (
    Hyper,
    _check_common,
    _resolve_steps,
    as_arrays,
    output_kernel,
    prepare,
    propagate,
)

__all__ = ["Response", "response", "response_curve", "response_jacobian", "chi_out"]


class Response(eqx.Module):
    """Summaries of the response function.

    Attributes
    ----------
    trajectory:
        ``(L + 1, P, P)`` per-layer summaries ``chi^(l)_ab = dK^(l)_ab / dK^(0)_ab`` (the
        diagonal holds the diagonal summary), or ``None``.
    chi_L:
        ``(P, P)`` summaries at the last hidden layer.
    chi_out:
        ``(P, P)`` summaries of the output kernel.
    """

    trajectory: Float[Array, "Lp1 P P"] | None
    chi_L: Float[Array, "P P"]
    chi_out: Float[Array, "P P"]


def _kernel_map(rho, hyper, act, n_steps, depth, residual, trajectory):
    def f(K0):
        K_L, traj = propagate(
            K0, rho, hyper, act, n_steps, depth, residual=residual, trajectory=trajectory
        )
        return traj, K_L, output_kernel(K_L, hyper, act)

    return f


def summaries(K0, rho, hyper, act, n_steps, depth, residual=True, trajectory=False):
    """Both summaries from two JVPs (no checks, no jit: the building block of ρ*)."""
    f = _kernel_map(rho, hyper, act, n_steps, depth, residual, trajectory)
    P = K0.shape[-1]
    eye = jnp.eye(P, dtype=K0.dtype)
    tangents = jnp.stack([eye, jnp.ones_like(eye) - eye])
    dout = jax.vmap(lambda t: jax.jvp(f, (K0,), (t,))[1])(tangents)
    eye_b = eye.astype(bool)
    pick = lambda x: None if x is None else jnp.where(eye_b, x[0], x[1])  # noqa: E731
    return Response(pick(dout[0]), pick(dout[1]), pick(dout[2]))


@eqx.filter_jit
def _response(K0, rho, hyper, act, n_steps, depth, residual, trajectory):
    return summaries(K0, rho, hyper, act, n_steps, depth, residual, trajectory)


def response(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int | ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    residual: bool = True,
    trajectory: bool = False,
    max_depth: int | None = None,
) -> Response:
    """Diagonal and off-diagonal response summaries of the ResNet (or feed-forward net).

    ``chi_out[a, a] = dK^out_aa / dK^(0)_aa`` and, for ``a != b``,
    ``chi_out[a, b] = dK^out_ab / dK^(0)_ab``; likewise ``chi_L`` and (optionally) every layer.
    Arguments as in :func:`fieldres.resnet_kernels`; ``residual=False`` gives the feed-forward
    net (``rho`` is then ignored).
    """
    K0, rho, hyper, act, n_steps, depth_mask = prepare(K0, rho, depth, max_depth, hyper,
                                                       activation)
    return _response(K0, rho, hyper, act, n_steps, depth_mask, residual, trajectory)


def chi_out(K0, rho, depth, hyper: Hyper = Hyper(), activation="erf", **kwargs) -> Array:
    """Shorthand for ``response(...).chi_out``: the ``(P, P)`` output-response summaries."""
    return response(K0, rho, depth, hyper, activation, **kwargs).chi_out


@eqx.filter_jit
def _jacobian(K0, rho, hyper, act, n_steps, residual, layer):
    f = _kernel_map(rho, hyper, act, n_steps, None, residual, layer == "all")

    def g(K):
        traj, K_L, K_out = f(K)
        return {"all": traj, "L": K_L, "out": K_out}[layer]

    return jax.jacfwd(g)(K0)


def response_jacobian(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    layer: str = "out",
    residual: bool = True,
) -> Array:
    """The full Jacobian ``dK_ab / dK^(0)_cd``, shape ``(P, P, P, P)`` (forward mode).

    ``layer="out"`` (output kernel), ``"L"`` (last hidden layer) or ``"all"`` (every layer,
    shape ``(L + 1, P, P, P, P)``). The Jacobian treats the ``P^2`` entries of ``K^(0)`` as
    independent; the paper's symmetric off-diagonal summary is
    ``J[a, b, a, b] + J[a, b, b, a]``. Memory grows as ``P^4``: use :func:`response` for
    large ``P``.
    """
    if layer not in ("out", "L", "all"):
        raise FieldresInputError(f"layer must be 'out', 'L' or 'all', got {layer!r}")
    K0, rho, hyper, act, n_steps, _ = prepare(K0, rho, depth, None, hyper, activation)
    return _jacobian(K0, rho, hyper, act, n_steps, residual, layer)


@eqx.filter_jit
def _response_curve(K0, rhos, hyper, act, n_steps, residual):
    return jax.vmap(lambda r: summaries(K0, r, hyper, act, n_steps, None, residual).chi_out)(rhos)


def response_curve(
    K0: Float[ArrayLike, "P P"],
    rhos: Float[ArrayLike, " n"],
    depth: int,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
) -> Float[Array, "n P P"]:
    """``chi^out`` summaries on a grid of ``rho`` values (vmapped; one compilation per depth)."""
    K0 = jnp.asarray(K0)
    rhos = jnp.asarray(rhos, K0.dtype)
    _check_common(K0, rhos)
    n_steps, _ = _resolve_steps(depth, None)
    act = get_activation(activation)
    hyper = as_arrays(hyper, K0.dtype)
    return _response_curve(K0, rhos, hyper, act, n_steps, True)
