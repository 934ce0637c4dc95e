# jaxtyping dimension strings ("Lp1 Lp1") are not forward references:
# ruff: noqa: F722
"""The general-``P`` entry point :func:`finite_width`: validation and method selection."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from .._validation import FieldresInputError, check_depth, check_finite, check_nonnegative
from ..kernels.activations import Activation, get_activation
from ..kernels.recursion import Hyper
from ._leading import _layer_kernels_jit
from .pairs import _general
from .result import FiniteWidth
from .walk import _WALK_MAX_GRID, _same_layer_grid_size, _walk, _walk_grid_size

__all__ = ["finite_width"]


def finite_width(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int,
    hyper: Hyper | None = None,
    activation: str | Activation | Callable = "erf",
    *,
    residual: bool = True,
    inputs: tuple[int, ...] | None = None,
    cross_layer: bool = True,
    degree: int | None = None,
    inner_degree: int = 20,
    n_theta: int = 20,
    block: int | None = None,
    method: str = "auto",
    grid: int | None = None,
) -> FiniteWidth:
    r"""The :math:`1/N` kernel covariances and mean shifts for ``P`` inputs (ResNet or FFNet).

    Parameters
    ----------
    K0:
        ``(P, P)`` input kernel (symmetric PSD, positive diagonal). ``P <= 4`` unless
        ``inputs`` selects at most four of the inputs (every :math:`1/N` quantity of the
        entries among a set of inputs depends only on that sub-block of ``K0``).
    rho:
        Residual scaling (ignored for ``residual=False``).
    depth:
        Number of hidden layers ``L >= 1`` (static).
    hyper:
        :class:`~fieldres.kernels.recursion.Hyper` (default ``Hyper()``).
    activation:
        ``"erf"`` (closed-form inner integrals); ``"tanh"``, smooth callables and the
        quadrature activations (2-D rules); ``"relu"`` and ``"leaky_relu:SLOPE"`` (closed-form
        inner averages with their Dirac terms, kink-aligned outer rule; pairs method only).
    residual:
        ResNet (default) or feed-forward net :math:`h^{(l)} = W\phi(h^{(l-1)}) + b`.
    inputs:
        Indices of at most four inputs whose sub-block of ``K0`` is used.
    cross_layer:
        Keep the cross-layer intrinsic moments of the ResNet (``False`` is the wrong
        independent-layer approximation; for comparison only).
    degree, inner_degree, n_theta:
        Pairs method only: trapezoid nodes per dimension of the outer 2-D rule (default 80
        for erf, 48 otherwise) and of the inner 2-D rule (non-erf activations),
        Gauss--Legendre nodes of the bivariate-normal integral (erf). These defaults are good
        to ~1e-11 for moderate kernels; strongly correlated kernels with large entries and
        tanh need more (see ``docs/finite_width.md``).
    block:
        Pairs method: intrinsic moments evaluated per vectorised block (memory).
    method:
        ``"walk"``: every same-layer statistic in ``O(L)``, the cross-layer intrinsic moments
        of the ResNet accumulated along one neuron's random walk on a ``P``-dimensional grid
        (``P <= 2``). ``"pairs"``: a 4-D integral for every pair of layers, ``O(L^2)``, which
        also returns the cross-layer tables ``*_cov_layers``. ``"auto"`` (default): the walk
        when ``P <= 2`` and the kernel is not (nearly) singular, otherwise the pairs.
    grid:
        Walk method: points per axis of its grids (default from the kernels and the
        activation, see ``docs/finite_width.md``; the default is converged to ~1e-12).

    Returns
    -------
    FiniteWidth

    Notes
    -----
    The derivation (``docs/finite_width.md``): linear response of the empirical kernels to
    their own fluctuations, :math:`\delta\hat C = R\,\varepsilon`, for the covariances, and
    the second-order expansion of the exact conditional recursion
    :math:`\mathbb E[\langle F\rangle_{l+1}\,|\,l] = \langle T_{S^{(l)}}F\rangle_l` for the
    mean. For ``P = 1`` it coincides with :func:`finite_width_single`.
    """
    K0 = jnp.asarray(K0)
    if not jnp.issubdtype(K0.dtype, jnp.floating):
        K0 = K0.astype(jnp.result_type(float))
    from .._validation import check_kernel

    check_kernel(K0)
    if inputs is not None:
        inputs = tuple(int(i) for i in inputs)
        if not 1 <= len(inputs) <= 4 or len(set(inputs)) != len(inputs):
            raise FieldresInputError(f"inputs must be 1 to 4 distinct input indices, got {inputs}")
        if min(inputs) < 0 or max(inputs) >= K0.shape[0]:
            raise FieldresInputError(f"inputs {inputs} out of range for a {K0.shape[0]} x "
                             f"{K0.shape[0]} kernel")
        K0 = K0[jnp.asarray(inputs)][:, jnp.asarray(inputs)]
    if K0.shape[0] > 4:
        raise FieldresInputError(
            f"finite_width computes every entry for P <= 4 inputs; got P = {K0.shape[0]}: "
            f"select up to four with inputs=(...), or use fieldres.finite_width.many "
            f"(finite_width_many, contract_kernel_cov)")
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be a Python int, got {type(depth).__name__}")
    check_depth(depth)
    check_finite("rho", rho)
    check_nonnegative("rho (the residual scaling)", rho)
    act = get_activation(activation)
    from ..kernels.activations import Erf

    erf_closed = isinstance(act, Erf)
    if degree is None:
        degree = 80 if erf_closed else 48
    for name, v in (("degree", degree), ("inner_degree", inner_degree), ("n_theta", n_theta)):
        if int(v) < 8:
            raise FieldresInputError(f"{name} must be >= 8, got {v}")
    if hyper is None:
        hyper = Hyper()
    if block is None:
        per = degree**2 * (n_theta if erf_closed else inner_degree**2)
        block = max(1, min(256, 2**22 // per))
    dt = K0.dtype
    rho = jnp.asarray(rho, dt)
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    method, grids = _choose_method(method, grid, K0, rho, hyper, act, int(depth),
                                   bool(residual), bool(cross_layer))
    fn = _walk if method == "walk" else _general
    return fn(K0, rho, hyper, act, int(depth), bool(residual), bool(cross_layer), erf_closed,
              int(degree), int(inner_degree), int(n_theta), int(block), *grids)


_WALK_TRACED_GRID = 256  # grid when the kernels are traced (inside jax transforms)


def _choose_method(method, grid, K0, rho, hyper, act, depth, residual, cross_layer):
    """``("walk", (n_grid, n_same))`` or ``("pairs", ())`` for :func:`finite_width`.

    ``n_grid``: points per axis of the ResNet's cross-layer walk (0: not needed);
    ``n_same``: of the same-layer moments.
    """
    from .._validation import is_concrete

    if method not in ("auto", "walk", "pairs"):
        raise FieldresInputError(f"method must be 'auto', 'walk' or 'pairs', got {method!r}")
    P = K0.shape[0]
    if method == "pairs":
        return "pairs", ()
    from ._piecewise import piecewise_slope

    if piecewise_slope(act) is not None:  # ReLU, leaky ReLU: the grids assume a smooth phi
        if method == "walk":
            raise FieldresInputError(f"the walk method needs a smooth activation (its grids do not "
                             f"resolve the kink of {act.name}, and phi'' is a Dirac delta): "
                             f"use method='pairs' (the default for {act.name})")
        return "pairs", ()
    if P > 2:
        if method == "walk":
            raise FieldresInputError(
                f"the walk method handles P <= 2 inputs (a grid in P dimensions); "
                             f"got P = {P}: use method='pairs'")
        return "pairs", ()
    walk = residual and cross_layer
    if grid is not None:
        if int(grid) < 16:
            raise FieldresInputError(f"grid must be >= 16 points per axis, got {grid}")
        g = int(grid) + int(grid) % 2
        return "walk", (g if walk else 0, g)
    if not all(is_concrete(x) for x in (K0, rho, *jax.tree.leaves(hyper))):
        return "walk", (_WALK_TRACED_GRID if walk else 0, _WALK_TRACED_GRID)
    Ks = np.asarray(_layer_kernels_jit(K0, rho, hyper, act, depth, residual)[0])
    lam = min(np.linalg.eigvalsh(K)[0] / np.max(np.diagonal(K)) for K in Ks)
    n = _walk_grid_size(Ks, act) if (walk and lam > 1e-12) else 0
    if lam > 1e-12 and n <= _WALK_MAX_GRID:
        return "walk", (n, _same_layer_grid_size(Ks, act))
    if method == "walk":
        raise FieldresInputError(
            f"the walk method needs a grid of more than {_WALK_MAX_GRID} points per axis: "
            f"the kernel is (nearly) singular (inputs almost identical or opposite); use "
            f"method='pairs' or pass grid=...")
    return "pairs", ()
