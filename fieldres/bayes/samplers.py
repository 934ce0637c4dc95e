r"""Posterior samplers built on blackjax's documented API, behind one small interface.

Every sampler is an ``eqx.Module`` holding the model functions (static) and the data (array
leaves) and implementing one transition of one chain (:class:`Sampler`); the driver
:func:`fieldres.bayes.sampling.sample` vmaps it over chains and scans it over steps.

``MALA``
    full-batch Metropolis-adjusted Langevin: ``blackjax.mala.init`` and
    ``blackjax.mala.build_kernel()``. Exact stationary distribution; the step size is
    adapted per chain by the driver during burn-in (Robbins--Monro on ``log ε`` towards an
    acceptance rate of 0.574) and then frozen.
``NUTS``
    the no-U-turn sampler with a diagonal mass matrix: ``blackjax.window_adaptation``
    (Stan's windowed adaptation of the step size and the inverse mass matrix) over the
    burn-in, then ``blackjax.nuts.build_kernel()`` with the adapted parameters.
``SGLD`` / ``ULA``
    (mini-batch) stochastic-gradient Langevin: ``blackjax.sgld.build_kernel()`` with
    ``blackjax.sgmcmc.gradients.grad_estimator`` (vmaps a per-example log likelihood and
    rescales the mini-batch mean by the data size); with the whole data set as the batch
    this is the unadjusted Langevin algorithm, whose stationary law is biased by
    ``O(ε)`` (for a Gaussian target of precision ``A`` its covariance is exactly
    ``(A (I - ε A / 2))^{-1}``).

blackjax's convention: the step size ``ε`` multiplies the whole gradient,
:math:`\theta' = \theta + \varepsilon \nabla \log p(\theta) + \sqrt{2 T \varepsilon}\,\xi`.
A temperature ``T`` divides the log density of MALA and NUTS (blackjax's MALA and NUTS
have no temperature argument) and scales SGLD's noise (blackjax's ``temperature``).

For MALA and NUTS the log density handed to blackjax maps a non-finite value to
``-inf``, so that a proposal with ``+inf`` or NaN density is rejected (blackjax would accept
``+inf``); from a finite start a chain then stays finite.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._validation import FieldresInputError

__all__ = ["Sampler", "MALA", "NUTS", "SGLD", "ULA", "NUTSChain"]

PyTree = Any


def _all_finite(tree) -> Array:
    out = jnp.array(True)
    for x in jax.tree.leaves(tree):
        out = out & jnp.all(jnp.isfinite(x))
    return out


def _guard(ld: Callable) -> Callable:
    """``ld`` with every non-finite value (NaN, ``+inf``) mapped to ``-inf`` (rejected)."""

    def guarded(p):
        v = ld(p)
        return jnp.where(v < jnp.inf, v, -jnp.inf)

    return guarded


class Sampler(eqx.Module):
    """One transition of one chain: ``init`` / ``step`` / ``position`` over a position pytree.

    ``step(key, state, context, step_size) -> (state, acceptance_probability, divergent)``.
    A sampler with ``has_warmup`` also implements ``warmup(key, state, context, n_steps,
    step_size) -> (state, step_size, acceptance, divergences)``, run by the driver over the
    whole burn-in instead of the driver's own step-size adaptation.
    """

    @abc.abstractmethod
    def init(self, position: PyTree, context: PyTree) -> PyTree: ...

    @abc.abstractmethod
    def step(self, key, state, context, step_size) -> tuple[PyTree, Array, Array]: ...

    @abc.abstractmethod
    def position(self, state) -> PyTree: ...

    def is_finite(self, state) -> Array:
        return _all_finite(state)

    @property
    def adaptive(self) -> bool:
        """Whether the driver adapts the step size during burn-in (needs an acceptance rate)."""
        return False

    @property
    def has_warmup(self) -> bool:
        """Whether the sampler brings its own burn-in adaptation (:meth:`warmup`)."""
        return False


class MALA(Sampler):
    """Full-batch MALA (``blackjax.mala``) on ``logdensity_fn(position, data, context)``.

    ``temperature`` divides the log density (posterior tempering); ``1`` is the Bayesian
    posterior.
    """

    logdensity_fn: Callable = eqx.field(static=True)
    data: PyTree = None
    temperature: float = eqx.field(static=True, default=1.0)

    def _ld(self, context):
        return _guard(lambda p: self.logdensity_fn(p, self.data, context) / self.temperature)

    def init(self, position, context):
        return blackjax.mala.init(position, self._ld(context))

    def step(self, key, state, context, step_size):
        new, info = blackjax.mala.build_kernel()(key, state, self._ld(context), step_size)
        acc = jnp.asarray(info.acceptance_rate, step_size.dtype)
        return new, acc, jnp.zeros((), bool)

    def is_finite(self, state):
        # an accepted proposal has a finite log density (non-finite ones are rejected), so
        # the scalar log density suffices per step
        return jnp.isfinite(state.logdensity)

    def position(self, state):
        return state.position

    @property
    def adaptive(self) -> bool:
        return True


class NUTSChain(NamedTuple):
    """State of one NUTS chain: blackjax's ``HMCState`` and its (flat, diagonal) inverse mass."""

    hmc: Any
    inverse_mass_matrix: Array


class NUTS(Sampler):
    """NUTS (``blackjax.nuts``) with ``blackjax.window_adaptation`` over the burn-in.

    ``logdensity_fn(position, data, context)`` as for :class:`MALA`. The warm-up adapts the
    step size (dual averaging towards ``target_accept``) and a diagonal inverse mass matrix
    (Stan's expanding windows) per chain; the sampling phase keeps both fixed. A transition
    is *divergent* when the energy error of the trajectory exceeds ``divergence_threshold``
    (blackjax's default 1000); divergences after the warm-up are counted and reported.
    """

    logdensity_fn: Callable = eqx.field(static=True)
    data: PyTree = None
    temperature: float = eqx.field(static=True, default=1.0)
    max_num_doublings: int = eqx.field(static=True, default=10)
    target_accept: float = eqx.field(static=True, default=0.8)

    def _ld(self, context):
        return _guard(lambda p: self.logdensity_fn(p, self.data, context) / self.temperature)

    def init(self, position, context):
        flat, _ = ravel_pytree(position)
        return NUTSChain(blackjax.nuts.init(position, self._ld(context)), jnp.ones_like(flat))

    def step(self, key, state, context, step_size):
        kernel = blackjax.nuts.build_kernel()
        new, info = kernel(key, state.hmc, self._ld(context), step_size,
                           state.inverse_mass_matrix, max_num_doublings=self.max_num_doublings)
        acc = jnp.asarray(info.acceptance_rate, step_size.dtype)
        return NUTSChain(new, state.inverse_mass_matrix), acc, info.is_divergent

    def warmup(self, key, state, context, n_steps: int, step_size):
        """``blackjax.window_adaptation(blackjax.nuts, ...).run`` from the chain's position.

        Returns ``(state, step_size, mean acceptance, number of divergent transitions)``.
        """
        info_fn = blackjax.adaptation.base.get_filter_adapt_info_fn(
            info_keys={"acceptance_rate", "is_divergent"})
        adapt = blackjax.window_adaptation(
            blackjax.nuts, self._ld(context), is_mass_matrix_diagonal=True,
            initial_step_size=step_size, target_acceptance_rate=self.target_accept,
            adaptation_info_fn=info_fn, max_num_doublings=self.max_num_doublings)
        (hmc, params), info = adapt.run(key, self.position(state), n_steps)
        dtype = state.inverse_mass_matrix.dtype
        imm = jnp.asarray(params["inverse_mass_matrix"], dtype)
        eps = jnp.asarray(params["step_size"], dtype)
        acc = jnp.mean(info.info.acceptance_rate).astype(dtype)
        div = jnp.sum(info.info.is_divergent).astype(jnp.int32)
        return NUTSChain(hmc, imm), eps, acc, div

    def is_finite(self, state):
        return jnp.isfinite(state.hmc.logdensity)

    def position(self, state):
        return state.hmc.position

    @property
    def has_warmup(self) -> bool:
        return True


class SGLD(Sampler):
    """Mini-batch SGLD (``blackjax.sgld``): ``x + ε ∇log p̂(x) + sqrt(2 T ε) ξ``.

    ``logprior_fn(position, context)``; ``loglik_fn(position, example, context)`` is the log
    likelihood of ONE example (a slice of ``data`` along its leading axis). ``batch_size``
    examples are drawn without replacement at every step; ``None`` uses the full data set
    (then this is the unadjusted Langevin algorithm, see :func:`ULA`).
    """

    logprior_fn: Callable = eqx.field(static=True)
    loglik_fn: Callable = eqx.field(static=True)
    data: PyTree = None
    batch_size: int | None = eqx.field(static=True, default=None)
    temperature: float = eqx.field(static=True, default=1.0)

    @property
    def data_size(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])

    def __check_init__(self):
        n = self.data_size
        if self.batch_size is not None and not (1 <= self.batch_size <= n):
            raise FieldresInputError(f"batch_size must be in [1, {n}] (the data size), "
                             f"got {self.batch_size}")

    def init(self, position, context):
        return position

    def step(self, key, state, context, step_size):
        n = self.data_size
        k_batch, k_noise = jax.random.split(key)
        if self.batch_size is None or self.batch_size == n:
            batch = self.data
        else:
            idx = jax.random.choice(k_batch, n, (self.batch_size,), replace=False)
            batch = jax.tree.map(lambda a: a[idx], self.data)
        grad = blackjax.sgmcmc.gradients.grad_estimator(
            lambda p: self.logprior_fn(p, context),
            lambda p, ex: self.loglik_fn(p, ex, context),
            n,
        )
        new = blackjax.sgld.build_kernel()(k_noise, state, grad, batch, step_size,
                                           self.temperature)
        return new, jnp.ones((), step_size.dtype), jnp.zeros((), bool)

    def position(self, state):
        return state


def ULA(logprior_fn: Callable, loglik_fn: Callable, data: PyTree,
        temperature: float = 1.0) -> SGLD:
    """Unadjusted (full-batch) Langevin: :class:`SGLD` with the whole data set every step."""
    return SGLD(logprior_fn, loglik_fn, data, None, temperature)
