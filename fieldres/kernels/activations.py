# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722
"""The activation registry: every activation with its value, derivatives, kinks and Gaussian
expectations (the one registry of fieldres).

Registry
--------
:func:`get_activation` resolves a name, ``NAME:VALUE`` for a parametrised family, an
:class:`Activation` (returned as is) or a plain callable (wrapped in :class:`GaussHermite`):

- closed forms: ``erf`` (:class:`Erf`, Williams 1997), ``relu`` (:class:`ReLU`, the
  arc-cosine kernel), ``linear`` (:class:`Linear`), ``leaky_relu`` / ``leaky_relu:SLOPE``
  (:class:`LeakyReLU`, slope 0.01 by default), ``alpha-relu:ALPHA``
  (:class:`~fieldres.kernels.alpha_relu.AlphaReLU`, a one-dimensional angular integral);
- quadrature (:class:`GaussHermite`): ``tanh``, ``sigmoid``, ``selu`` (kink at 0, a panel
  end of the rule) and ``erf-quadrature`` (erf through the quadrature, a check).

Every :class:`Activation` has

- ``fn(x)`` / ``__call__``: the value, elementwise; ``name`` (static);
- ``derivative(x, order=1)``: ``phi^(order)``; closed form for ``order = 1`` where known
  (all the registered ones), :func:`jax.grad` otherwise;
- ``derivative_variance(q)``: ``E[phi'(sqrt(q) z)^2]`` (closed forms; one-dimensional
  quadrature; Price's theorem as the generic fallback);
- ``kinks``: tuple of points where ``phi`` or ``phi'`` is not smooth (panel ends for a
  quadrature); ``odd``: ``phi(-x) = -phi(x)`` (so ``E phi(h) = 0``);
- ``variance(k)``, ``covariance(kaa, kbb, kab)``, ``kernel(K)``: the Gaussian second
  moments, the C-map of the NNGP recursion.

A kinked activation that is not registered (``hard_tanh``, say) can be passed as a
callable, but the quadrature below does not put panel ends at its kinks (its values then
converge slowly there, ~1e-2 for ``E[phi'^2]`` of hard tanh), and Price's-theorem
derivatives miss the Dirac terms of ``phi''`` at kinks where ``phi`` does not vanish: give it
a closed form instead.

Gaussian expectations
---------------------

For a centred Gaussian pre-activation ``h ~ N(0, K)`` over ``P`` inputs, the
post-activation second moment (the "C-map" of the NNGP recursion) is

.. math::

    C_\\phi(K)_{\\alpha\\beta} = \\mathbb{E}_{h \\sim \\mathcal{N}(0, K)}
        [\\phi(h_\\alpha)\\, \\phi(h_\\beta)] .

Closed forms are used where they exist (erf: Williams 1997; ReLU: the arc-cosine kernel of
Cho & Saul 2009; linear). Every other activation (tanh, or any user-supplied elementwise
callable) goes through Gaussian quadrature whose nodes are built once (:class:`GaussHermite`).
By default this is a composite Gauss--Legendre rule whose panels follow both the Gaussian's
scale and the activation's, accurate for variances from ``1e-4`` to beyond ``1e5`` (plain
Gauss--Hermite, still available as ``rule="hermite"``, loses accuracy above variances of a
few, where ``phi(sqrt(K) z)`` becomes steep). The quadrature expectations carry a custom JVP
given by Price's theorem,

.. math::

    \\partial_{K_{\\alpha\\beta}} \\mathbb{E}[f(h_\\alpha) g(h_\\beta)]
        = \\mathbb{E}[f'(h_\\alpha) g'(h_\\beta)], \\qquad
    \\partial_{K_{\\alpha\\alpha}} \\mathbb{E}[f(h_\\alpha) g(h_\\beta)]
        = \\tfrac12 \\mathbb{E}[f''(h_\\alpha) g(h_\\beta)],

so that derivatives of any order are again Gaussian expectations (no derivative of the
square root in the Cholesky parametrisation, which diverges at correlation one). All the
expectations a derivative of a given order needs are computed in one quadrature on shared
nodes, and the ``P x P`` map does one bivariate quadrature per unordered pair of inputs.

References:
    Fischer, Dahmen, Helias, *Field theory for optimal signal propagation in ResNets*,
    arXiv:2305.07715, Sec. 2 (the C-map of the erf network).
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError
from .gaussian import (
    _DEFAULT_DEGREE,
    _as_float,
    _expect1,
    _expect2,
    _moments,
    _Rule,
    evaluations_per_entry,
)

__all__ = [
    "Activation",
    "Erf",
    "ReLU",
    "Linear",
    "LeakyReLU",
    "GaussHermite",
    "evaluations_per_entry",
    "get_activation",
    "ACTIVATIONS",
]


class Activation(eqx.Module):
    """An elementwise activation ``phi`` with its Gaussian second moments.

    Subclasses implement :meth:`fn`, :meth:`variance` (single-input ``E[phi(h)^2]``) and
    :meth:`covariance` (``E[phi(h_a) phi(h_b)]`` for a bivariate Gaussian), both elementwise
    over broadcastable arrays. :meth:`kernel` assembles the whole ``P x P`` map.

    Every activation also knows its derivatives (:meth:`derivative`: closed forms where the
    subclass gives them, :func:`jax.grad` otherwise), :meth:`derivative_variance`
    (``E[phi'(h)^2]``, the slope ``chi_1`` of mean-field theory), its :attr:`kinks` (points
    where ``phi`` or ``phi'`` is not smooth: panel ends for quadratures) and whether it is
    :attr:`odd` (then ``E[phi(h)] = 0`` for every centred Gaussian ``h``).
    """

    #: Points where ``phi`` or ``phi'`` is not smooth (quadrature panel ends).
    kinks: ClassVar[tuple[float, ...]] = ()
    #: ``phi(-x) = -phi(x)``.
    odd: ClassVar[bool] = False

    name: eqx.AbstractVar[str]

    @abc.abstractmethod
    def fn(self, x: ArrayLike) -> Array:
        """The activation itself, elementwise."""

    def __call__(self, x: ArrayLike) -> Array:
        return self.fn(x)

    def derivative(self, x: ArrayLike, order: int = 1) -> Array:
        """``phi^(order)(x)`` elementwise (``order >= 0``; :func:`jax.grad` of :meth:`fn`).

        At a kink the one-sided value :func:`jax.grad` picks is returned; Dirac terms of
        higher derivatives at kinks are not represented.
        """
        order = int(order)
        if order < 0:
            raise FieldresInputError(f"derivative order must be >= 0, got {order}")
        f = self.fn
        for _ in range(order):
            f = jnp.vectorize(jax.grad(lambda y, g=f: g(y) * 1.0))
        return f(_as_float(x))

    def derivative_variance(self, q: ArrayLike) -> Array:
        r""":math:`\mathbb E_z[\phi'(\sqrt q\, z)^2]`, elementwise in ``q``.

        Default: Price's theorem, :math:`\partial_{K_{ab}} \mathbb E[\phi(a)\phi(b)]` at
        correlation one; subclasses with closed forms override it.
        """
        q = _as_float(q)

        def price(qq):
            return jax.grad(self.covariance, argnums=2)(qq, qq, qq)

        return jnp.vectorize(price)(q)

    @abc.abstractmethod
    def variance(self, k: ArrayLike) -> Array:
        """``E[phi(h)^2]`` for ``h ~ N(0, k)``, elementwise in ``k``."""

    @abc.abstractmethod
    def covariance(self, kaa: ArrayLike, kbb: ArrayLike, kab: ArrayLike) -> Array:
        """``E[phi(a) phi(b)]`` for ``(a, b)`` centred Gaussian with the given (co)variances."""

    def kernel(self, K: Float[Array, "P P"]) -> Float[Array, "P P"]:
        """The post-activation kernel ``C_phi(K)`` of a ``P x P`` pre-activation kernel."""
        K = jnp.asarray(K)
        d = jnp.diagonal(K)
        eye = jnp.eye(K.shape[-1], dtype=bool)
        # Keep the off-diagonal formula away from correlation one on the diagonal, where it
        # is not used: otherwise a where() would leak NaN cotangents (the 'double where').
        safe_off = jnp.where(eye, 0.0, K)
        off = self.covariance(d[:, None], d[None, :], safe_off)
        return jnp.where(eye, jnp.diag(self.variance(d)), off)


def _correlation(kaa, kbb, kab):
    # Rounding can push |c| a hair above one for (nearly) identical inputs; a genuine
    # violation (K not PSD) is rejected at the public entry points before we get here. The
    # clip must not touch the derivative: jnp.clip's would be halved at exactly +-1 (ties
    # split the gradient) and zero just beyond.
    c = kab / (jnp.sqrt(kaa) * jnp.sqrt(kbb))
    return c - jax.lax.stop_gradient(c - jnp.clip(c, -1.0, 1.0))


class Erf(Activation):
    """``phi(x) = erf(x)``; closed form ``C = (2/pi) arcsin(2 K_ab / sqrt((1+2K_aa)(1+2K_bb)))``."""

    name: str = eqx.field(default="erf", static=True)
    odd: ClassVar[bool] = True

    def fn(self, x):
        return jax.scipy.special.erf(x)

    def derivative(self, x, order=1):
        if int(order) == 1:
            x = _as_float(x)
            return (2.0 / math.sqrt(math.pi)) * jnp.exp(-x * x)
        return super().derivative(x, order)

    def derivative_variance(self, q):
        """``4 / (pi sqrt(1 + 4 q))``."""
        return (4.0 / jnp.pi) / jnp.sqrt(1.0 + 4.0 * _as_float(q))

    def variance(self, k):
        k = jnp.asarray(k)
        return (2.0 / jnp.pi) * jnp.arcsin(2.0 * k / (1.0 + 2.0 * k))

    def covariance(self, kaa, kbb, kab):
        # |argument| < 1 strictly for any PSD 2x2 block, so arcsin stays differentiable.
        arg = 2.0 * kab / jnp.sqrt((1.0 + 2.0 * kaa) * (1.0 + 2.0 * kbb))
        return (2.0 / jnp.pi) * jnp.arcsin(arg)

    def kernel(self, K):
        # One fused pass: the off-diagonal formula is exact on the diagonal too
        # (2K/(1+2K) < 1, so arcsin stays differentiable there), hence no masks and no
        # separate variance pass. The outer product of the rsqrt's is exactly symmetric.
        K = jnp.asarray(K)
        s = jax.lax.rsqrt(1.0 + 2.0 * jnp.diagonal(K))
        return (2.0 / jnp.pi) * jnp.arcsin(2.0 * K * (s[:, None] * s[None, :]))


@jax.custom_jvp
def _arccos_j1(c):
    """Arc-cosine kernel of order one: ``J(c) = sqrt(1 - c^2) + (pi - arccos c) c``."""
    return jnp.sqrt(jnp.maximum(1.0 - c * c, 0.0)) + (jnp.pi - jnp.arccos(c)) * c


@_arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
    (c,), (dc,) = primals, tangents
    # dJ/dc = pi - arccos(c): finite at c = +-1, unlike the two terms separately.
    return _arccos_j1(c), (jnp.pi - jnp.arccos(c)) * dc


class ReLU(Activation):
    """``phi(x) = max(x, 0)``; the arc-cosine kernel ``C = sqrt(K_aa K_bb) J(c) / (2 pi)``."""

    name: str = eqx.field(default="relu", static=True)
    kinks: ClassVar[tuple[float, ...]] = (0.0,)

    def fn(self, x):
        return jax.nn.relu(x)

    def derivative(self, x, order=1):
        x = _as_float(x)
        if int(order) == 1:
            return (x > 0).astype(x.dtype)
        return super().derivative(x, order)

    def derivative_variance(self, q):
        """``1 / 2`` for every ``q``."""
        return jnp.full_like(_as_float(q), 0.5)

    def variance(self, k):
        return 0.5 * jnp.asarray(k)

    def covariance(self, kaa, kbb, kab):
        c = _correlation(kaa, kbb, kab)
        return (jnp.sqrt(kaa) * jnp.sqrt(kbb)) * _arccos_j1(c) / (2.0 * jnp.pi)


class Linear(Activation):
    """``phi(x) = x``; ``C_phi(K) = K``."""

    name: str = eqx.field(default="linear", static=True)
    odd: ClassVar[bool] = True

    def fn(self, x):
        return jnp.asarray(x)

    def derivative(self, x, order=1):
        x = _as_float(x)
        if int(order) == 1:
            return jnp.ones_like(x)
        return super().derivative(x, order)

    def derivative_variance(self, q):
        """``1``."""
        return jnp.ones_like(_as_float(q))

    def variance(self, k):
        return jnp.asarray(k)

    def covariance(self, kaa, kbb, kab):
        shape = jnp.broadcast_shapes(*map(jnp.shape, (kaa, kbb, kab)))
        return jnp.broadcast_to(jnp.asarray(kab), shape)


class LeakyReLU(Activation):
    """``phi(x) = max(x, 0) + slope min(x, 0)``; closed form from the arc-cosine kernel.

    With ``r = relu``, ``phi(x) = r(x) - slope r(-x)``, so
    ``C = sqrt(K_aa K_bb) [(1 + slope^2) J(c) - 2 slope J(-c)] / (2 pi)`` and
    ``E[phi^2] = (1 + slope^2) k / 2``.
    """

    slope: float = eqx.field(static=True)
    name: str = eqx.field(static=True)
    kinks: ClassVar[tuple[float, ...]] = (0.0,)

    def __init__(self, slope: float = 0.01):
        slope = float(slope)
        if not math.isfinite(slope):
            raise FieldresInputError(f"leaky ReLU slope must be finite, got {slope}")
        self.slope = slope
        self.name = f"leaky_relu:{slope:g}"

    @property
    def odd(self) -> bool:
        return self.slope == -1.0

    def fn(self, x):
        x = jnp.asarray(x)
        return jnp.where(x > 0, x, self.slope * x)

    def derivative(self, x, order=1):
        x = _as_float(x)
        if int(order) == 1:
            return jnp.where(x > 0, 1.0, self.slope).astype(x.dtype)
        return super().derivative(x, order)

    def derivative_variance(self, q):
        """``(1 + slope^2) / 2``."""
        return jnp.full_like(_as_float(q), 0.5 * (1.0 + self.slope**2))

    def variance(self, k):
        return 0.5 * (1.0 + self.slope**2) * jnp.asarray(k)

    def covariance(self, kaa, kbb, kab):
        c = _correlation(kaa, kbb, kab)
        a = self.slope
        j = (1.0 + a * a) * _arccos_j1(c) - 2.0 * a * _arccos_j1(-c)
        return (jnp.sqrt(kaa) * jnp.sqrt(kbb)) * j / (2.0 * jnp.pi)


class GaussHermite(Activation):
    """Any smooth elementwise activation, with Gaussian expectations by numerical quadrature.

    ``E[phi(h)^2]``, ``E[phi(a) phi(b)]`` and the kernel map are computed by Gaussian
    quadrature whose nodes and weights are built once per rule (``functools.cache``).
    Derivatives of any order with respect to the (co)variances are again Gaussian
    expectations of derivatives of ``phi`` (Price's theorem, custom JVPs): the quadrature is
    never differentiated itself, node positions need no derivatives, and everything stays
    finite at correlation ``+-1``. All expectations that one order of differentiation needs
    share one set of nodes.

    Two rules (``rule=``):

    ``"composite"`` (default)
        Composite Gauss--Legendre in the standardised variable ``u = (x - mean) / sd`` over
        ``|u| <= 9``; the panel ends merge the Gaussian's scale (``u = 0, +-4, +-9``) with
        the activation's (``x = 0, +-3, +-8, +-16``) and are sorted at run time (static
        shapes, jit- and vmap-friendly). Bivariate expectations condition on the input of
        larger variance; the inner panels sit around the conditional mean and around zero,
        the outer ones also at the width ``sqrt(1 + s^2) / |beta|`` that the inner
        activation's step has as a function of the outer input. ``degree`` is the number of
        nodes per panel (default 16; twice that for one-dimensional expectations): 320
        evaluations per variance and 39 424 per covariance (:func:`evaluations_per_entry`).
        Measured with ``phi = erf`` against the closed form, for variances from ``1e-4`` to
        ``1e5`` (also unequal by a factor 10) and correlations in ``[-1, 1]`` including
        ``+-1``: values to ``1e-14``, first derivatives ``5e-14``, second ``5e-12``, third
        ``1e-10`` (relative to ``max(1, |value|)``); tanh agrees with adaptive scipy
        quadrature to ``1e-15``. The rule assumes that ``phi`` has its structure within a
        few units of the origin (tanh, erf, sigmoid, GELU, softplus, SiLU, ...); an
        activation oscillating on every scale, such as ``sin``, is resolved to ``1e-10``
        up to variances of about 16 only.
    ``"hermite"``
        Plain Gauss--Hermite in ``u`` with ``degree`` nodes per dimension (default 96;
        ``degree**2`` evaluations per covariance, ``4 * degree`` per variance): exact for
        polynomials of the standardised variable and the most economical rule for
        variances of order one, but ``phi(sd * u)`` steepens as the variance grows. With
        erf at degree 96 the error is ``1e-16`` up to variance 2, ``5e-13`` at 3, ``4e-9``
        at 5, ``7e-6`` at 10 and meaningless beyond ~100 -- kernels that the optimal-scaling
        search reaches at large ``rho``, where it produced spurious maxima. Hence the
        composite rule is the default; the class keeps its name (the expectations are
        still Gaussian quadratures with nodes built once).

    Parameters
    ----------
    function:
        Elementwise ``jnp`` function (must be differentiable by :func:`jax.grad` as many
        times as the derivatives you ask for: two more than the order of the kernel
        derivative). Kinks (ReLU-like) are not differentiable that way: use a closed form.
    name:
        Label used in outputs.
    degree:
        Nodes per panel (``"composite"``) or per dimension (``"hermite"``); ``None`` for the
        default of the rule.
    rule:
        ``"composite"`` or ``"hermite"``.
    derivative_fn:
        Closed-form ``phi'`` (elementwise); ``None``: :func:`jax.grad` of ``function``.
    kinks:
        Points where ``phi`` or ``phi'`` is not smooth (reported as :attr:`kinks`, for
        quadratures that put panel ends there; this class's own rule does not, so its
        kernel values converge more slowly there, and Price's-theorem derivatives miss the
        Dirac terms of ``phi''`` at kinks where ``phi`` does not vanish).
    odd:
        ``phi(-x) = -phi(x)``.
    """

    function: Callable = eqx.field(static=True)
    name: str = eqx.field(static=True)
    degree: int = eqx.field(static=True)
    rule: str = eqx.field(static=True)
    derivative_fn: Callable | None = eqx.field(static=True)
    breaks: tuple[float, ...] = eqx.field(static=True)
    is_odd: bool = eqx.field(static=True)

    def __init__(
        self,
        function: Callable,
        name: str = "custom",
        degree: int | None = None,
        *,
        rule: str = "composite",
        derivative_fn: Callable | None = None,
        kinks: tuple[float, ...] = (),
        odd: bool = False,
    ):
        if not callable(function):
            raise TypeError(f"GaussHermite needs a callable activation, got {function!r}")
        if rule not in _DEFAULT_DEGREE:
            raise FieldresInputError(f"unknown quadrature rule {rule!r}; expected one of "
                             f"{sorted(_DEFAULT_DEGREE)}")
        degree = _DEFAULT_DEGREE[rule] if degree is None else int(degree)
        if degree < 2:
            raise FieldresInputError(f"quadrature degree must be >= 2, got {degree}")
        self.function = function
        self.name = name
        self.degree = degree
        self.rule = rule
        self.derivative_fn = derivative_fn
        self.breaks = tuple(float(x) for x in kinks)
        self.is_odd = bool(odd)

    @property
    def kinks(self) -> tuple[float, ...]:
        return self.breaks

    @property
    def odd(self) -> bool:
        return self.is_odd

    @property
    def _rule(self) -> _Rule:
        return _Rule(self.rule, self.degree)

    def derivative(self, x, order=1):
        if int(order) == 1 and self.derivative_fn is not None:
            return self.derivative_fn(_as_float(x))
        return super().derivative(x, order)

    def derivative_variance(self, q):
        """``E[phi'(sqrt(q) z)^2]`` by the same one-dimensional quadrature as :meth:`variance`."""
        dfn = self.derivative_fn or _grad(self.function)
        return _derivative_activation(dfn, self.degree, self.rule).variance(q)

    def fn(self, x):
        return self.function(x)

    def variance(self, k):
        return _expect1(self.function, ((0, 0),), self._rule, _as_float(k))[0]

    def covariance(self, kaa, kbb, kab):
        kaa, kbb, kab = map(_as_float, (kaa, kbb, kab))
        return _expect2(self.function, ((0, 0),), self._rule, kaa, kbb, kab)[0]

    def kernel(self, K: Float[Array, "P P"]) -> Float[Array, "P P"]:
        """``C_phi(K)``; one bivariate quadrature per pair ``a < b`` (``K`` is symmetric).

        Derivatives treat the ``P^2`` entries of ``K`` as independent, like
        :meth:`Activation.kernel`.
        """
        return _moments(self.function, ((0, 0),), self._rule, _as_float(K))[0]


@functools.cache
def _grad(function: Callable) -> Callable:
    """Elementwise ``phi'`` by :func:`jax.grad`, built once per function."""
    return jnp.vectorize(jax.grad(lambda x: function(x) * 1.0))


@functools.cache
def _derivative_activation(dfn: Callable, degree: int, rule: str) -> GaussHermite:
    return GaussHermite(dfn, name="derivative", degree=degree, rule=rule)


def _tanh(x):
    return jnp.tanh(x)


def _erf(x):
    return jax.scipy.special.erf(x)


def _sigmoid(x):
    return jax.nn.sigmoid(x)


def _sigmoid_d(x):
    s = jax.nn.sigmoid(x)
    return s * (1.0 - s)


_SELU_L, _SELU_A = 1.0507009873554805, 1.6732632423543772  # Klambauer et al. 2017


def _selu(x):
    return _SELU_L * jnp.where(x > 0, x, _SELU_A * jnp.expm1(jnp.minimum(x, 0.0)))


def _selu_d(x):
    return _SELU_L * jnp.where(x > 0, 1.0, _SELU_A * jnp.exp(jnp.minimum(x, 0.0)))


#: Registered names and their constructors. Parametrised families take ``NAME:VALUE``
#: in :func:`get_activation`: ``leaky_relu:0.2`` (default slope 0.01, as
#: ``jax.nn.leaky_relu``) and ``alpha-relu:0.8`` (no default).
ACTIVATIONS: dict[str, Callable[[], Activation]] = {
    "erf": Erf,
    "relu": ReLU,
    "linear": Linear,
    "tanh": lambda: GaussHermite(_tanh, name="tanh", odd=True),
    "erf-quadrature": lambda: GaussHermite(_erf, name="erf-quadrature", odd=True),
    "leaky_relu": lambda: LeakyReLU(0.01),
    "sigmoid": lambda: GaussHermite(_sigmoid, name="sigmoid", derivative_fn=_sigmoid_d),
    "selu": lambda: GaussHermite(_selu, name="selu", derivative_fn=_selu_d, kinks=(0.0,)),
}

_FAMILIES: dict[str, Callable[[float], Activation]] = {
    "leaky_relu": lambda v: LeakyReLU(v),
    "alpha-relu": lambda v: _alpha_relu(v),
}


def _alpha_relu(alpha: float) -> Activation:
    from .alpha_relu import AlphaReLU  # it subclasses Activation: imported on use

    return AlphaReLU(alpha)


def _normalise(name: str) -> str:
    key = name.strip().lower()
    head, sep, tail = key.partition(":")
    if head.replace("_", "-") == "alpha-relu":
        head = "alpha-relu"
    elif head.replace("-", "_") == "leaky_relu":
        head = head.replace("-", "_")
    return head + sep + tail


def get_activation(activation: str | Activation | Callable) -> Activation:
    """Resolve a registered name, ``NAME:VALUE`` of a family, an :class:`Activation` or a callable.

    Names: see :data:`ACTIVATIONS` (``erf``, ``relu``, ``linear``, ``tanh``,
    ``erf-quadrature``, ``leaky_relu``, ``sigmoid``, ``selu``); families
    ``leaky_relu:SLOPE`` and ``alpha-relu:ALPHA``. Case, and ``-`` vs ``_``, do not matter.
    A plain callable becomes a :class:`GaussHermite` activation (quadrature expectations).
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = _normalise(activation)
        head, sep, tail = key.partition(":")
        if sep and head in _FAMILIES:
            try:
                value = float(tail)
            except ValueError:
                raise FieldresInputError(f"the parameter of {head} must be a number, got "
                                 f"{activation!r}") from None
            if not math.isfinite(value):
                raise FieldresInputError(f"the parameter of {head} must be finite, got {value}")
            return _FAMILIES[head](value)
        if key == "alpha-relu":
            raise FieldresInputError(
                "activation 'alpha-relu' needs its exponent, e.g. 'alpha-relu:0.8'"
            )
        if key not in ACTIVATIONS:
            raise FieldresInputError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}, "
                "'leaky_relu:SLOPE', 'alpha-relu:ALPHA' or an elementwise callable"
            )
        return ACTIVATIONS[key]()
    if callable(activation):
        return GaussHermite(activation, name=getattr(activation, "__name__", "custom"))
    raise TypeError(
        f"activation must be a name, an Activation or a callable, got {type(activation).__name__}"
    )
