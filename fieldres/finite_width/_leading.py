"""Leading-order kernels along the depth and the first two derivatives of ``K -> C(K)``
(the inputs of the pairs and the walk methods)."""

from __future__ import annotations

import equinox as eqx
import jax

from ..kernels.recursion import propagate


def _layer_kernels(K0, rho, hyper, act, depth, residual):
    """Leading-order kernels ``K^(l)``, ``C(K^(l))``, ``l = 0..L`` (``(n, P, P)`` each): the
    one recursion, :func:`fieldres.kernels.recursion.propagate`."""
    _, Ks = propagate(K0, rho, hyper, act, depth, residual=residual)
    return Ks, jax.vmap(act.kernel)(Ks)


_layer_kernels_jit = eqx.filter_jit(_layer_kernels)


def _kernel_maps(Ks, act):
    """Jacobian ``(n, P^2, P^2)`` and Hessian ``(n, P^2, P^2, P^2)`` of ``K -> C(K)``."""
    n, P = Ks.shape[0], Ks.shape[1]

    def cmap(Kv):
        K = Kv.reshape(P, P)
        return act.kernel(0.5 * (K + K.T)).reshape(-1)

    J = jax.vmap(jax.jacfwd(cmap))(Ks.reshape(n, -1))
    Hs = jax.vmap(jax.jacfwd(jax.jacfwd(cmap)))(Ks.reshape(n, -1))
    return J, Hs
