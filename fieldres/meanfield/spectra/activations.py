r"""Activations as the Jacobian spectrum needs them (:math:`\phi`, :math:`\phi'`, kinks) and
their Gaussian expectations by panel quadrature."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from ..._validation import FieldresInputError
from ...kernels.quadrature import gauss_legendre

# ----------------------------------------------------------------------------------------
# Activations: phi, phi' and the positions of their kinks (for the quadrature panels)
# ----------------------------------------------------------------------------------------


class SpectralActivation(eqx.Module):
    """An activation with its derivative, as the Jacobian spectrum needs it.

    ``fn`` and ``deriv`` are elementwise ``jnp`` callables; ``kinks`` lists the points where
    ``phi`` or ``phi'`` is not smooth (they become quadrature panel ends, so that Gaussian
    expectations of piecewise functions converge exponentially). ``mean_zero`` is true when
    ``E phi(h) = 0`` for every centred Gaussian ``h`` (odd ``phi``).
    """

    name: str = eqx.field(static=True)
    fn: Callable = eqx.field(static=True)
    deriv: Callable = eqx.field(static=True)
    kinks: tuple[float, ...] = eqx.field(static=True, default=())
    mean_zero: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        return self.fn(x)

    def kernel(self, q):
        """``E phi(h)^2`` for ``h ~ N(0, q)`` (panel quadrature): the single-input C-map that
        :func:`fieldres.kernels.recursion.layer_update` propagates."""
        return _layer_moments(self, q)[1]


def _linear(x):
    return jnp.asarray(x)


def _one(x):
    return jnp.ones_like(x)


def _relu_d(x):
    return (x > 0).astype(jnp.result_type(x, float))


@functools.cache
def _leaky(alpha):
    def fn(x):
        return jnp.where(x > 0, x, alpha * x)

    def d(x):
        return jnp.where(x > 0, 1.0, alpha).astype(jnp.result_type(x, float))

    return fn, d


def _hard_tanh(x):
    return jnp.clip(x, -1.0, 1.0)


def _hard_tanh_d(x):
    return (jnp.abs(x) < 1.0).astype(jnp.result_type(x, float))


def _tanh_d(x):
    return 1.0 / jnp.cosh(x) ** 2


def _sigmoid_d(x):
    s = jax.nn.sigmoid(x)
    return s * (1.0 - s)


def _erf_d(x):
    return 2.0 / math.sqrt(math.pi) * jnp.exp(-x * x)


_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772


def _selu(x):
    return _SELU_L * jnp.where(x > 0, x, _SELU_A * jnp.expm1(jnp.minimum(x, 0.0)))


def _selu_d(x):
    return _SELU_L * jnp.where(x > 0, 1.0, _SELU_A * jnp.exp(jnp.minimum(x, 0.0)))


SPECTRAL_ACTIVATIONS: dict[str, Callable[[], SpectralActivation]] = {
    "linear": lambda: SpectralActivation("linear", _linear, _one, (), True),
    "relu": lambda: SpectralActivation("relu", jax.nn.relu, _relu_d, (0.0,), False),
    "leaky_relu": lambda: spectral_activation("leaky_relu:0.01"),
    "hard_tanh": lambda: SpectralActivation("hard_tanh", _hard_tanh, _hard_tanh_d,
                                            (-1.0, 1.0), True),
    "tanh": lambda: SpectralActivation("tanh", jnp.tanh, _tanh_d, (), True),
    "erf": lambda: SpectralActivation("erf", jax.scipy.special.erf, _erf_d, (), True),
    "sigmoid": lambda: SpectralActivation("sigmoid", jax.nn.sigmoid, _sigmoid_d, (), False),
    "selu": lambda: SpectralActivation("selu", _selu, _selu_d, (0.0,), False),
}


def spectral_activation(activation) -> SpectralActivation:
    """Resolve a name, a :class:`SpectralActivation`, a fieldres activation or a callable.

    Names: ``linear``, ``relu``, ``leaky_relu`` (slope ``0.01`` for ``x < 0``, as
    ``jax.nn.leaky_relu``; ``leaky_relu:0.2`` sets the slope), ``hard_tanh``, ``tanh``,
    ``erf``, ``sigmoid``, ``selu`` (Klambauer et al.'s constants). A fieldres
    :class:`~fieldres.kernels.activations.Activation` or a plain callable gets its derivative from
    :func:`jax.grad` (assumed smooth except possibly at 0).
    """
    if isinstance(activation, SpectralActivation):
        return activation
    if isinstance(activation, str):
        key = activation.strip().lower().replace("-", "_")
        if key.startswith("leaky_relu:"):
            try:
                alpha = float(key.split(":", 1)[1])
            except ValueError:
                raise FieldresInputError(
                    f"leaky ReLU slope must be a number, got {activation!r}") from None
            if not math.isfinite(alpha):
                raise FieldresInputError(f"leaky ReLU slope must be finite, got {alpha}")
            fn, d = _leaky(alpha)
            return SpectralActivation(f"leaky_relu:{alpha:g}", fn, d, (0.0,), alpha == -1.0)
        if key not in SPECTRAL_ACTIVATIONS:
            raise FieldresInputError(
                f"unknown activation {activation!r}; expected one of "
                f"{sorted(SPECTRAL_ACTIVATIONS)} (or 'leaky_relu:SLOPE') or a callable"
            )
        return SPECTRAL_ACTIVATIONS[key]()
    from ...kernels.activations import Activation

    if isinstance(activation, Activation):
        if activation.name in SPECTRAL_ACTIVATIONS:
            return SPECTRAL_ACTIVATIONS[activation.name]()
        f = activation.fn
        name = activation.name
    elif callable(activation):
        f = activation
        name = getattr(activation, "__name__", "custom")
    else:
        raise TypeError(
            f"activation must be a name, an activation or a callable, got "
            f"{type(activation).__name__}"
        )
    return SpectralActivation(name, f, _grad_of(f), (0.0,), False)


@functools.cache
def _grad_of(f):
    return jnp.vectorize(jax.grad(lambda x: f(x) * 1.0))


# ----------------------------------------------------------------------------------------
# Gaussian expectations: composite Gauss--Legendre with kinks as panel ends
# ----------------------------------------------------------------------------------------

_WINDOW = 10.0  # |u| <= 10 standard deviations: tail mass 1.5e-23
_U_ENDS = (0.0, 1.0, 2.5, 4.5, 7.0, 10.0)  # panel ends in standard deviations
_X_ENDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # and in units of the activation's argument


def _panel_nodes(k, kinks, degree):
    """Nodes ``x`` and weights (summing to one) of ``E[f(h)]``, ``h ~ N(0, k)``; ``k`` scalar."""
    dtype = k.dtype
    sd = jnp.sqrt(jnp.maximum(k, jnp.finfo(dtype).tiny))
    u_ends = np.array(sorted({-e for e in _U_ENDS} | set(_U_ENDS)))
    x_ends = np.array(sorted({-e for e in _X_ENDS} | set(_X_ENDS) | set(kinks)))
    ends = jnp.concatenate([jnp.asarray(u_ends, dtype),
                            jnp.clip(jnp.asarray(x_ends, dtype) / sd, -_WINDOW, _WINDOW)])
    ends = jnp.sort(ends)
    xg, wg = (jnp.asarray(a, dtype) for a in gauss_legendre(degree))
    a, b = ends[:-1, None], ends[1:, None]
    u = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg * jnp.exp(-0.5 * u * u)
    u, w = u.ravel(), w.ravel()
    return sd * u, w / jnp.sum(w)


def gaussian_expectation(f: Callable, k: ArrayLike, kinks: tuple[float, ...] = (),
                         degree: int = 20) -> Array:
    """``E[f(h)]`` for ``h ~ N(0, k)``, elementwise in ``k``.

    Composite Gauss--Legendre over ``|h| <= 10 sqrt(k)`` whose panel ends merge the
    Gaussian's scale, the activation's scale (``|h| = 0.25 ... 16``) and the ``kinks`` of
    ``f``: each panel integrand is smooth, so piecewise functions (ReLU, hard tanh, SELU) are
    integrated to rounding error, and steep ones (``tanh`` at large ``k``) stay resolved.
    """
    k = jnp.asarray(k)
    if not jnp.issubdtype(k.dtype, jnp.floating):
        k = k.astype(jnp.result_type(float))
    kinks = tuple(float(x) for x in kinks)

    def one(kk):
        x, w = _panel_nodes(kk, kinks, degree)
        return jnp.sum(w * f(x))

    return jnp.vectorize(one)(k)


def _layer_moments(act: SpectralActivation, q):
    """``(E phi, E phi^2, E phi'^2, E phi'^4)`` at pre-activation variance ``q``."""
    x, w = _panel_nodes(q, act.kinks, 20)
    p, d2 = act.fn(x), act.deriv(x) ** 2
    return jnp.sum(w * p), jnp.sum(w * p * p), jnp.sum(w * d2), jnp.sum(w * d2 * d2)
