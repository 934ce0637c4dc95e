"""Leading-order (infinite-width) kernels: the NNGP recursion of ResNets and feed-forward nets.

The network (Fischer, Dahmen, Helias, arXiv:2305.07715, Sec. 2; ``THEORY.md`` Sec. 1):

.. math::

    h^{(0)} = W_\\mathrm{in} x + b_\\mathrm{in}, \\qquad
    h^{(l)} = h^{(l-1)} + \\rho\\,(W^{(l)} \\phi(h^{(l-1)}) + b^{(l)}), \\qquad
    y = W_\\mathrm{out} \\phi(h^{(L)}) + b_\\mathrm{out},

with ``W ~ N(0, sigma_w^2 / fan_in)`` and ``b ~ N(0, sigma_b^2)``. For width ``N -> inf``
every neuron is a centred Gaussian process over the inputs with kernel

.. math::

    K^{(0)} = \\sigma^2_{b,\\mathrm{in}} + \\sigma^2_{w,\\mathrm{in}} X X^T / d_\\mathrm{in},
    \\qquad K^{(l)} = K^{(l-1)} + \\rho^2 (\\sigma_w^2 C_\\phi(K^{(l-1)}) + \\sigma_b^2),
    \\qquad K^\\mathrm{out} = \\sigma^2_{w,\\mathrm{out}} C_\\phi(K^{(L)}) + \\sigma^2_{b,\\mathrm{out}}.

The feed-forward net replaces the update by ``K^(l) = sigma_w^2 C_phi(K^(l-1)) + sigma_b^2``.
The layer loop is a ``lax.scan``: compile time does not depend on the depth, and the depth
may be a traced integer (``max_depth`` then fixes the scan length and later steps are
masked), so sweeps over depths compile once.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._validation import (
    FieldresInputError,
    check_depth,
    check_finite,
    check_kernel,
    check_nonnegative,
    is_concrete,
)
from ..defaults import Hyper
from ..kernels.activations import Activation, get_activation

__all__ = [
    "Hyper",
    "Kernels",
    "input_kernel",
    "resnet_kernels",
    "ffnet_kernels",
    "output_kernel",
    "layer_update",
    "layer_step",
    "gaussian_layer",
    "propagate",
]


class Kernels(eqx.Module):
    """Result of a kernel recursion.

    Attributes
    ----------
    trajectory:
        ``(L + 1, P, P)`` pre-activation kernels ``K^(0..L)``, or ``None`` when only the
        final kernel was asked for (memory ``O(P^2)`` instead of ``O(L P^2)``). With a traced
        depth below ``max_depth`` the entries past the depth repeat ``K^(L)``.
    K_L:
        ``(P, P)`` kernel of the last hidden layer.
    K_out:
        ``(P, P)`` kernel of the network output.
    """

    trajectory: Float[Array, "Lp1 P P"] | None
    K_L: Float[Array, "P P"]
    K_out: Float[Array, "P P"]


def input_kernel(
    X: Float[ArrayLike, "P d_in"], sigma_w2_in: ArrayLike = 1.0, sigma_b2_in: ArrayLike = 0.0
) -> Float[Array, "P P"]:
    """``K^(0) = sigma_b2_in + sigma_w2_in X X^T / d_in`` for inputs ``X`` of shape ``(P, d_in)``."""
    X = jnp.asarray(X)
    if X.ndim != 2:
        raise FieldresInputError(f"X must have shape (P, d_in), got shape {X.shape}")
    check_finite("X", X)
    check_nonnegative("sigma_w2_in", sigma_w2_in)
    check_nonnegative("sigma_b2_in", sigma_b2_in)
    return sigma_b2_in + sigma_w2_in * (X @ X.T) / X.shape[1]


def gaussian_layer(C: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike) -> Array:
    """Kernel of ``W phi(h) + b`` from the post-activation kernel ``C = C_phi(K)``.

    .. math:: \\sigma_w^2\\, C + \\sigma_b^2

    The one affine step that every layer map shares: the residual and feed-forward updates
    (:func:`layer_update`), the output kernel (:func:`output_kernel`), the single-input
    length map of the mean field and the continuum flow ``dK/dt`` of ``rho*``.
    """
    return sigma_w2 * C + sigma_b2


def layer_update(
    K: Float[Array, "P P"], rho: ArrayLike, hyper: Hyper, activation: Activation, residual: bool
) -> Float[Array, "P P"]:
    """One layer of the leading-order recursion (ResNet if ``residual`` else feed-forward).

    .. math::

        K^{(l)} = K^{(l-1)} + \\rho^2 (\\sigma_w^2 C_\\phi(K^{(l-1)}) + \\sigma_b^2)
        \\quad\\text{or}\\quad K^{(l)} = \\sigma_w^2 C_\\phi(K^{(l-1)}) + \\sigma_b^2 .
    """
    return layer_step(K, activation.kernel(K), rho, hyper, residual)


def layer_step(K: ArrayLike, C: ArrayLike, rho: ArrayLike, hyper: Hyper, residual: bool) -> Array:
    """The layer step from the pre-activation kernel ``K`` and its ``C = C_phi(K)``.

    ``K + rho^2 (sigma_w^2 C + sigma_b^2)`` (ResNet) or ``sigma_w^2 C + sigma_b^2``
    (feed-forward); :func:`layer_update` computes ``C`` itself, the tiled kernels of
    :mod:`fieldres.kernels.tiled` pass the entries of a rectangular block.
    """
    branch = gaussian_layer(C, hyper.sigma_w2, hyper.sigma_b2)
    if residual:
        return K + rho**2 * branch
    return branch


def output_kernel(
    K_L: Float[Array, "P P"],
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
) -> Float[Array, "P P"]:
    """``K^out = sigma_w2_out C_phi(K^(L)) + sigma_b2_out``.

    ``activation`` is a name, an :class:`~fieldres.kernels.activations.Activation` (used
    as is, also under ``jit``) or an elementwise callable. No input checks: this is the
    building block that every output kernel goes through.
    """
    act = get_activation(activation)
    return gaussian_layer(act.kernel(K_L), hyper.sigma_w2_out, hyper.sigma_b2_out)


def propagate(
    K0: Float[Array, "P P"],
    rho: ArrayLike,
    hyper: Hyper,
    activation: Activation,
    n_steps: int,
    depth: ArrayLike | None = None,
    *,
    residual: bool = True,
    trajectory: bool = True,
    step: Callable | None = None,
) -> tuple[Float[Array, "P P"], Float[Array, "Lp1 P P"] | None]:
    """Run ``n_steps`` layers with ``lax.scan`` (no checks, no jit: the building block).

    ``depth`` (possibly traced) masks the steps ``l >= depth``. ``step`` replaces
    :func:`layer_update` (signature ``step(K) -> K``) for callers that need another update.
    """
    if step is None:
        def step(K):
            return layer_update(K, rho, hyper, activation, residual)

    def advance(K, l):
        K_new = step(K)
        if depth is not None:
            K_new = jnp.where(l < depth, K_new, K)
        return K_new

    if not trajectory:
        K_L, _ = jax.lax.scan(lambda K, l: (advance(K, l), None), K0, jnp.arange(n_steps))
        return K_L, None

    # The trajectory is written in place into one preallocated (n_steps + 1, P, P) buffer
    # carried by the scan, so the peak memory is one trajectory (stacking the scan outputs
    # and prepending K0 would need two).
    def body(carry, l):
        K, traj = carry
        K_new = advance(K, l)
        return (K_new, jax.lax.dynamic_update_index_in_dim(traj, K_new, l + 1, 0)), None

    traj0 = jnp.zeros((n_steps + 1, *K0.shape), K0.dtype).at[0].set(K0)
    (K_L, traj), _ = jax.lax.scan(body, (K0, traj0), jnp.arange(n_steps))
    return K_L, traj


@eqx.filter_jit
def _kernels(K0, rho, hyper, activation, n_steps, depth, residual, trajectory):
    K_L, traj = propagate(
        K0, rho, hyper, activation, n_steps, depth, residual=residual, trajectory=trajectory
    )
    return Kernels(traj, K_L, output_kernel(K_L, hyper, activation))


def _resolve_steps(depth, max_depth) -> tuple[int, ArrayLike | None]:
    """Static scan length and (optional) traced depth mask."""
    check_depth(depth)
    if isinstance(depth, int | jnp.integer) and not isinstance(depth, bool) and max_depth is None:
        return int(depth), None
    if max_depth is None:
        if is_concrete(depth) and jnp.ndim(depth) == 0:
            return int(depth), None
        raise FieldresInputError(
            "depth is a traced or array value: pass max_depth (a Python int >= every depth) "
            "to fix the length of the layer loop"
        )
    check_depth(max_depth, "max_depth")
    if is_concrete(depth) and jnp.any(jnp.asarray(depth) > max_depth):
        raise FieldresInputError(f"depth {depth} exceeds max_depth {max_depth}")
    return int(max_depth), depth


def _check_common(K0, rho):
    check_kernel(K0)
    if is_concrete(rho):
        check_finite("rho", rho)
        check_nonnegative("rho (the residual scaling)", rho)


def prepare(K0, rho, depth, max_depth, hyper, activation):
    """Checked inputs of every public recursion entry point.

    Returns ``(K0, rho, hyper, act, n_steps, depth_mask)``: arrays of the kernel's dtype
    (traced, not baked, by ``jit``), the resolved activation and the static scan length.
    """
    K0 = jnp.asarray(K0)
    _check_common(K0, rho)
    n_steps, depth_mask = _resolve_steps(depth, max_depth)
    act = get_activation(activation)
    rho, hyper = as_arrays((rho, hyper), K0.dtype)
    return K0, rho, hyper, act, n_steps, depth_mask


def as_arrays(tree, dtype):
    """Python scalars to arrays of the kernel's dtype, so that jit traces (not bakes) them."""
    return jax.tree.map(
        lambda x: jnp.asarray(x, dtype) if not isinstance(x, jax.core.Tracer) else x, tree
    )


def resnet_kernels(
    K0: Float[ArrayLike, "P P"],
    rho: ArrayLike,
    depth: int | ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    trajectory: bool = True,
    max_depth: int | None = None,
) -> Kernels:
    """Leading-order kernels of the ρ-scaled ResNet (THEORY Sec. 2).

    Parameters
    ----------
    K0:
        ``(P, P)`` input kernel (see :func:`input_kernel`); symmetric PSD.
    rho:
        Residual scaling ``ρ >= 0`` (differentiable; vmap over it for sweeps).
    depth:
        Number of residual layers ``L >= 1``. A Python int fixes the scan length; a traced
        or array depth needs ``max_depth``.
    hyper:
        :class:`Hyper` variances.
    activation:
        ``"erf" | "relu" | "tanh" | "linear"``, an :class:`Activation`, or a callable.
    trajectory:
        Return all ``L + 1`` layer kernels (``O(L P^2)`` memory) or only the last.
    max_depth:
        Static scan length when ``depth`` is traced (one compilation for a depth sweep).

    Returns
    -------
    Kernels
        ``trajectory`` (or ``None``), ``K_L`` and ``K_out``.

    Examples
    --------
    >>> import jax; jax.config.update("jax_enable_x64", True)
    >>> import jax.numpy as jnp, fieldres
    >>> K0 = jnp.array([[0.5]])
    >>> k = fieldres.resnet_kernels(K0, rho=0.3, depth=10, hyper=fieldres.Hyper(sigma_b2=0.05))
    >>> round(float(k.K_L[0, 0]), 6)
    0.989557
    """
    K0, rho, hyper, act, n_steps, depth_mask = prepare(K0, rho, depth, max_depth, hyper,
                                                       activation)
    return _kernels(K0, rho, hyper, act, n_steps, depth_mask, True, trajectory)


def ffnet_kernels(
    K0: Float[ArrayLike, "P P"],
    depth: int | ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    trajectory: bool = True,
    max_depth: int | None = None,
) -> Kernels:
    """Leading-order kernels of the feed-forward net ``h^(l) = W phi(h^(l-1)) + b``.

    Same conventions as :func:`resnet_kernels` (there is no ``rho``).
    """
    K0, one, hyper, act, n_steps, depth_mask = prepare(K0, 1.0, depth, max_depth, hyper,
                                                       activation)
    return _kernels(K0, one, hyper, act, n_steps, depth_mask, False, trajectory)
