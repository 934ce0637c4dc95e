# Math in docstrings makes long lines:
# ruff: noqa: E501
r"""The Yang--Schoenholz mean-field recursions of the FRN and the RRN, and the
:math:`\alpha`-ReLU activation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..._validation import FieldresInputError, check_depth, check_kernel, check_nonnegative
from ...kernels.activations import Activation, get_activation
from ...kernels.alpha_relu import AlphaReLU
from ..feedforward import derivative_variance

KINDS = ("full", "reduced")


# alpha-ReLU, phi(x) = max(x, 0)^alpha, lives in the one activation registry
# (fieldres.kernels.alpha_relu); this module resolves it by name with an exponent.


def resolve_activation(activation: Any, alpha: float | None = None) -> Activation:
    """``"tanh" | "relu" | "erf" | "alpha-relu"`` (with ``alpha``), an Activation or a callable."""
    if isinstance(activation, str) and activation.lower().replace("_", "-") in (
        "alpha-relu", "alpharelu", "arelu"
    ):
        if alpha is None:
            raise FieldresInputError("activation 'alpha-relu' needs alpha (e.g. --alpha 0.8)")
        return AlphaReLU(alpha)
    if alpha is not None:
        raise FieldresInputError(f"alpha is only used with activation 'alpha-relu', got {activation!r}")
    return get_activation(activation)


# ----------------------------------------------------------------------------------------
# The recursions
# ----------------------------------------------------------------------------------------


class ResHyper(eqx.Module):
    r"""Variances of Yang & Schoenholz's residual nets (array leaves, differentiable).

    ``sigma_w2``, ``sigma_b2``: the weights and biases applied to :math:`x` (FRN) or to
    :math:`\phi(x)` (RRN). ``sigma_v2``, ``sigma_a2``: the second (output) weights and biases
    of an FRN block (unused by the RRN).
    """

    sigma_w2: ArrayLike = 1.0
    sigma_b2: ArrayLike = 0.0
    sigma_v2: ArrayLike = 1.0
    sigma_a2: ArrayLike = 0.0

    def __check_init__(self):
        for name in ("sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2"):
            check_nonnegative(name, getattr(self, name))


def _branch(kind: str, hyper: ResHyper):
    """``(omega, beta_in, a, beta)``: q = omega p + beta_in; increment a V(q) + beta."""
    if kind == "full":
        return hyper.sigma_w2, hyper.sigma_b2, hyper.sigma_v2, hyper.sigma_a2
    return 1.0, 0.0, hyper.sigma_w2, hyper.sigma_b2


class ResMeanField(eqx.Module):
    r"""Mean-field trajectories of a residual net, layers :math:`l = 0, \dots, L`.

    Attributes
    ----------
    p, p2:
        Lengths :math:`p^{(l)}` of the two inputs' :math:`x^{(l)}`.
    gamma:
        :math:`\gamma^{(l)}`; ``nan`` for a single input.
    e:
        Correlation :math:`\gamma/\sqrt{p p'}`.
    s:
        Squared distance :math:`p + p' - 2\gamma`.
    q:
        Variance of the activation's input in layer :math:`l` (:math:`h^{(l)}` of the FRN,
        :math:`x^{(l-1)}` of the RRN); ``q[0]`` is ``nan``.
    log_chi_ratio:
        :math:`\log\chi^{(0)}/\chi^{(l)}` (0 at ``l = 0``).
    """

    p: Float[Array, " Lp1"]
    p2: Float[Array, " Lp1"]
    gamma: Float[Array, " Lp1"]
    e: Float[Array, " Lp1"]
    s: Float[Array, " Lp1"]
    q: Float[Array, " Lp1"]
    log_chi_ratio: Float[Array, " Lp1"]
    kind: str = eqx.field(static=True)

    @property
    def chi_ratio(self) -> Array:
        r""":math:`\chi^{(0)}/\chi^{(l)}`."""
        return jnp.exp(self.log_chi_ratio)

    @property
    def layers(self) -> np.ndarray:
        return np.arange(self.p.shape[-1])


def _propagate(K0, hyper, act, depth, kind):
    omega, beta_in, a, beta = _branch(kind, hyper)
    P = K0.shape[-1]

    def body(carry, _):
        K, logchi = carry
        Q = omega * K + beta_in
        K_new = K + a * act.kernel(Q) + beta
        factor = 1.0 + a * omega * derivative_variance(act, Q[0, 0])
        logchi = logchi + jnp.log(factor)
        return (K_new, logchi), (K_new, Q[0, 0], logchi)

    zero = jnp.zeros((), K0.dtype)
    _, (Ks, qs, logchis) = jax.lax.scan(body, (K0, zero), None, length=depth)
    Ks = jnp.concatenate([K0[None], Ks])
    qs = jnp.concatenate([jnp.full((1,), jnp.nan, K0.dtype), qs])
    logchis = jnp.concatenate([zero[None], logchis])
    p = Ks[:, 0, 0]
    if P == 1:
        nan = jnp.full_like(p, jnp.nan)
        return p, p, nan, nan, nan, qs, logchis
    p2, g = Ks[:, 1, 1], Ks[:, 0, 1]
    return p, p2, g, g / (jnp.sqrt(p) * jnp.sqrt(p2)), p + p2 - 2.0 * g, qs, logchis


@eqx.filter_jit
def _propagate_jit(K0, hyper, act, depth, kind):
    return _propagate(K0, hyper, act, depth, kind)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise FieldresInputError(f"kind must be one of {KINDS} (full / reduced residual net), got {kind!r}")
    return kind


def _as_K0(K0) -> Array:
    K0 = jnp.asarray(K0, dtype=jnp.result_type(float))
    if K0.ndim == 0:
        K0 = K0.reshape(1, 1)
    check_kernel(K0)
    if K0.shape[0] > 2:
        raise FieldresInputError(f"K0 must be 1 x 1 (one input) or 2 x 2 (two inputs), got {K0.shape}")
    return K0


def resnet_meanfield(
    kind: str = "full",
    depth: int = 100,
    hyper: ResHyper = ResHyper(),
    activation: str | Activation | Callable = "tanh",
    K0: ArrayLike = ((1.0, 0.5), (0.5, 1.0)),
) -> ResMeanField:
    r"""Mean-field trajectories :math:`p, \gamma, e, s, q, \chi^{(0)}/\chi^{(l)}` of an FRN/RRN.

    ``K0`` is the kernel of the inputs :math:`x^{(0)}` (``1 x 1`` or ``2 x 2``). The layer
    loop is a ``lax.scan`` (one compilation per depth); vmap over ``hyper`` for grids.

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> from fieldres.meanfield.residual import ResHyper, resnet_meanfield
    >>> mf = resnet_meanfield("full", 3, ResHyper(sigma_w2=1.0, sigma_v2=1.0), "relu", K0=[[1.0]])
    >>> [round(float(x), 6) for x in mf.p]          # p grows by (1 + sigma_v^2 sigma_w^2 / 2)
    [1.0, 1.5, 2.25, 3.375]
    """
    _check_kind(kind)
    check_depth(depth)
    K0 = _as_K0(K0)
    act = activation if isinstance(activation, Activation) else resolve_activation(activation)
    hyper = jax.tree.map(lambda x: jnp.asarray(x, K0.dtype), hyper)
    out = _propagate_jit(K0, hyper, act, int(depth), kind)
    return ResMeanField(*out, kind=kind)
