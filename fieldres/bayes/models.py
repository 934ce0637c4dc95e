# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722, F821
r"""The ρ-scaled ResNet as an equinox model whose initialisation distribution is the prior.

The network is exactly the one of THEORY §1 (Fischer, Dahmen, Helias, arXiv:2305.07715,
Sec. 2):

.. math::

    h^{(0)} = W_\mathrm{in} x + b_\mathrm{in}, \qquad
    h^{(l)} = h^{(l-1)} + \rho\,\bigl(W^{(l)} \phi(h^{(l-1)}) + b^{(l)}\bigr), \qquad
    y = W_\mathrm{out}\,\phi(h^{(L)}) + b_\mathrm{out},

with :math:`W_\mathrm{in}\sim\mathcal N(0,\sigma^2_{w,\mathrm{in}}/d_\mathrm{in})`,
:math:`W^{(l)}\sim\mathcal N(0,\sigma^2_w/N)`,
:math:`W_\mathrm{out}\sim\mathcal N(0,\sigma^2_{w,\mathrm{out}}/N)` and biases
:math:`b\sim\mathcal N(0,\sigma_b^2)` of the matching layer (:class:`fieldres.Hyper`).

**Whitened coordinates.** The trainable leaves (:class:`ResNetParams`) are standard normal
numbers :math:`z`, and every weight is formed as :math:`W = (\sigma_w/\sqrt{\mathrm{fan\_in}})
\, z_W`, every bias as :math:`b = \sigma_b z_b`. The effective weights therefore have
exactly the variances of THEORY §1, so a freshly initialised model *is* a draw from the
prior, and the prior density in these coordinates is :math:`\mathcal N(0, I)`
(:func:`log_prior`). This is a fixed linear change of variables with a constant Jacobian:
the posterior over the effective weights is unchanged, and Langevin dynamics in ``z`` is
Langevin dynamics in the effective weights preconditioned by the prior covariance (one
step size then suits every layer, although their prior scales differ by orders of
magnitude).

Everything is a pure function of the parameters: :func:`forward` is the one-sample network
(batch it with ``jax.vmap``), the layer loop is a ``lax.scan`` (compile time independent of
the depth), and ``rho`` and the variances are traced array arguments (sweeps over ``rho``
vmap without recompiling). :class:`ResNet` bundles parameters and configuration for
convenience.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._validation import FieldresInputError
from ..kernels.activations import Activation, get_activation
from ..kernels.recursion import Hyper

__all__ = [
    "ResNetParams",
    "ResNet",
    "init_params",
    "forward",
    "apply",
    "hidden_states",
    "hidden_kernels",
    "log_prior",
    "effective_weights",
    "n_params",
]


class ResNetParams(NamedTuple):
    """Whitened trainable parameters (all standard normal under the prior).

    Attributes
    ----------
    w_in : ``(N, d_in)``;  b_in : ``(N,)``
    w : ``(L, N, N)``;  b : ``(L, N)`` (one slice per residual layer)
    w_out : ``(d_out, N)``;  b_out : ``(d_out,)``
    """

    w_in: Float[Array, "N d_in"]
    b_in: Float[Array, "N"]
    w: Float[Array, "L N N"]
    b: Float[Array, "L N"]
    w_out: Float[Array, "d_out N"]
    b_out: Float[Array, "d_out"]


def _resolve_phi(activation: str | Activation | Callable) -> Callable[[Array], Array]:
    return get_activation(activation).fn


def _check_sizes(d_in: int, width: int, depth: int, d_out: int) -> None:
    for name, v, lo in (("d_in", d_in, 1), ("width", width, 1), ("depth", depth, 1),
                        ("d_out", d_out, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise FieldresInputError(f"{name} must be an integer >= {lo}, got {v!r}")


def init_params(
    key: PRNGKeyArray, d_in: int, width: int, depth: int, d_out: int = 1, dtype=None
) -> ResNetParams:
    """Draw whitened parameters from the prior (every leaf i.i.d. ``N(0, 1)``)."""
    _check_sizes(d_in, width, depth, d_out)
    dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
    shapes = ResNetParams(
        (width, d_in), (width,), (depth, width, width), (depth, width), (d_out, width), (d_out,)
    )
    keys = jax.random.split(key, len(shapes))
    return ResNetParams(*(jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)))


def n_params(params: ResNetParams) -> int:
    """Number of scalar parameters."""
    return int(sum(math.prod(x.shape) for x in params))


def _scales(hyper: Hyper, d_in: int, width: int, dtype):
    f = lambda v: jnp.sqrt(jnp.asarray(v, dtype))
    return dict(
        w_in=f(hyper.sigma_w2_in) / math.sqrt(d_in),
        b_in=f(hyper.sigma_b2_in),
        w=f(hyper.sigma_w2) / math.sqrt(width),
        b=f(hyper.sigma_b2),
        w_out=f(hyper.sigma_w2_out) / math.sqrt(width),
        b_out=f(hyper.sigma_b2_out),
    )


def effective_weights(params: ResNetParams, hyper: Hyper = Hyper()) -> ResNetParams:
    """The weights and biases of THEORY §1 (``W = sigma / sqrt(fan_in) * z``, ``b = sigma * z``)."""
    width, d_in = params.w_in.shape
    s = _scales(hyper, d_in, width, params.w_in.dtype)
    return ResNetParams(*(getattr(params, k) * s[k] for k in ResNetParams._fields))


def hidden_states(
    params: ResNetParams,
    x: Float[ArrayLike, "d_in"],
    rho: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    all_layers: bool = False,
):
    """Pre-activations of one input: ``h^(L)`` ``(N,)``, or ``h^(0..L)`` ``(L+1, N)``."""
    phi = _resolve_phi(activation)
    width, d_in = params.w_in.shape
    dtype = params.w_in.dtype
    s = _scales(hyper, d_in, width, dtype)
    x = jnp.asarray(x, dtype)
    rho = jnp.asarray(rho, dtype)
    h0 = s["w_in"] * (params.w_in @ x) + s["b_in"] * params.b_in

    def layer(h, wb):
        w, b = wb
        h = h + rho * (s["w"] * (w @ phi(h)) + s["b"] * b)
        return h, (h if all_layers else None)

    hL, traj = jax.lax.scan(layer, h0, (params.w, params.b))
    if all_layers:
        return jnp.concatenate([h0[None], traj], axis=0)
    return hL


def forward(
    params: ResNetParams,
    x: Float[ArrayLike, "d_in"],
    rho: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
) -> Float[Array, "d_out"]:
    """Network output ``y = W_out phi(h^(L)) + b_out`` for ONE input ``x`` (vmap for batches)."""
    phi = _resolve_phi(activation)
    width, d_in = params.w_in.shape
    s = _scales(hyper, d_in, width, params.w_in.dtype)
    hL = hidden_states(params, x, rho, hyper, activation)
    return s["w_out"] * (params.w_out @ phi(hL)) + s["b_out"] * params.b_out


def apply(
    params: ResNetParams,
    X: Float[ArrayLike, "P d_in"],
    rho: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
) -> Float[Array, "P d_out"]:
    """Outputs for a batch of inputs ``X`` of shape ``(P, d_in)``."""
    return jax.vmap(lambda x: forward(params, x, rho, hyper, activation))(jnp.asarray(X))


def hidden_kernels(
    params: ResNetParams,
    X: Float[ArrayLike, "P d_in"],
    rho: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
) -> tuple[Float[Array, "P P"], Float[Array, "P P"]]:
    """Empirical kernels of the last hidden layer of one network (THEORY §4).

    Returns ``(K_hat, C_hat)`` with ``K_hat = h^(L) h^(L)^T / N`` (pre-activation) and
    ``C_hat = phi(h^(L)) phi(h^(L))^T / N`` (post-activation; the readout sees
    ``sigma_w,out^2 C_hat + sigma_b,out^2``). At initialisation their means over networks are
    the NNGP kernels ``K^(L)`` and ``C_phi(K^(L))`` of :func:`fieldres.resnet_kernels` up to
    ``O(1/N)``.
    """
    phi = _resolve_phi(activation)
    H = jax.vmap(lambda x: hidden_states(params, x, rho, hyper, activation))(jnp.asarray(X))
    N = H.shape[1]
    F = phi(H)
    return H @ H.T / N, F @ F.T / N


def log_prior(params: ResNetParams) -> Array:
    """Log prior density in whitened coordinates: ``sum log N(z; 0, 1)`` over all leaves.

    Up to the constant log-Jacobian ``-sum log(sigma / sqrt(fan_in))`` this equals the log
    density of the effective weights under THEORY §1's Gaussian prior.
    """
    leaves = jax.tree.leaves(params)
    sq = sum(jnp.sum(jnp.square(x)) for x in leaves)
    n = sum(x.size for x in leaves)
    return -0.5 * sq - 0.5 * n * math.log(2.0 * math.pi)


class ResNet(eqx.Module):
    """A ρ-scaled ResNet: whitened parameters plus the configuration (THEORY §1).

    ``ResNet.init(key, d_in, width, depth, ...)`` draws from the prior. Calling the model
    on ONE input returns its ``(d_out,)`` output; use ``jax.vmap`` (or :meth:`batch`) for
    several. ``rho`` and the variances are array leaves; the activation is static.

    Examples
    --------
    >>> import jax, fieldres.bayes.models as fm
    >>> net = fm.ResNet.init(jax.random.key(0), d_in=8, width=32, depth=4, rho=0.3)
    >>> net(jax.numpy.ones(8)).shape
    (1,)
    """

    params: ResNetParams
    rho: Array
    hyper: Hyper
    activation: Activation = eqx.field(static=True)

    @classmethod
    def init(
        cls,
        key: PRNGKeyArray,
        d_in: int,
        width: int,
        depth: int,
        d_out: int = 1,
        *,
        rho: ArrayLike = 1.0,
        hyper: Hyper = Hyper(),
        activation: str | Activation | Callable = "erf",
        dtype=None,
    ) -> ResNet:
        params = init_params(key, d_in, width, depth, d_out, dtype)
        dt = params.w_in.dtype
        hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
        return cls(params, jnp.asarray(rho, dt), hyper, get_activation(activation))

    @property
    def depth(self) -> int:
        return int(self.params.w.shape[0])

    @property
    def width(self) -> int:
        return int(self.params.w_in.shape[0])

    def __call__(self, x: Float[ArrayLike, "d_in"]) -> Float[Array, "d_out"]:
        return forward(self.params, x, self.rho, self.hyper, self.activation)

    def batch(self, X: Float[ArrayLike, "P d_in"]) -> Float[Array, "P d_out"]:
        return apply(self.params, X, self.rho, self.hyper, self.activation)

    def kernels(self, X: Float[ArrayLike, "P d_in"]):
        """``(K_hat, C_hat)`` of the last hidden layer (:func:`hidden_kernels`)."""
        return hidden_kernels(self.params, X, self.rho, self.hyper, self.activation)

    def log_prior(self) -> Array:
        return log_prior(self.params)
