r"""The sampling driver: many chains in jitted ``lax.scan`` chunks, save/resume, divergences.

The posterior of THEORY §7 (Fischer, Dahmen, Helias, arXiv:2305.07715, Sec. 5) is

.. math::

    \log p(\theta \mid D) = \log p(\theta) + \sum_{i=1}^n \log p(y_i \mid f_\theta(x_i))
    + \mathrm{const},

and it is sampled by one of the samplers of :mod:`fieldres.bayes.samplers` (``MALA``,
``NUTS``, ``SGLD``, ``ULA``; all built on blackjax's documented API), re-exported here.

The driver :func:`sample` runs many chains at once (``vmap``; the chain axis is sharded
over all devices when there are several), in jitted chunks of ``lax.scan`` steps. Only
summaries leave a chunk: a user ``trace_fn(position, context)`` evaluated at every
``thin``-th step after burn-in (stacked: the thinned samples) and a ``mean_fn`` accumulated
as a running sum (posterior means of large objects such as kernels), plus acceptance and
divergence statistics. A tqdm progress bar follows the chunks. The random key of step ``t``
is ``fold_in(key, t)``, so a run is independent of the chunk size and a resumed run
(:func:`sample` with ``save_path`` and ``resume=True``) reproduces the uninterrupted one
exactly. Burn-in: MALA's step size is adapted per chain by Robbins--Monro on ``log ε``;
NUTS runs ``blackjax.window_adaptation`` over the whole burn-in in one jitted call (a
checkpoint is written after it; an interrupted warm-up is redone on resume). A chain whose
state becomes non-finite (NaN/inf) is frozen at its last finite state; the run then stops
after the current chunk with ``diverged = True`` and a message, keeping the samples drawn
before the divergence (samples after it are flagged invalid). MALA and NUTS never accept a
non-finite proposal, so for them such a divergence can only come from a non-finite starting
point; NUTS's *divergent transitions* (energy error above blackjax's threshold, rejected)
are counted separately (``SampleResult.divergences``).

Per-chain ``context`` (a pytree with a leading chain axis, e.g. the residual scaling ρ of
each chain) is passed to every density, so chains of different models are vmapped together.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray
from tqdm.auto import tqdm

from .._validation import FieldresInputError
from .samplers import MALA, NUTS, SGLD, ULA, NUTSChain, Sampler, _all_finite

__all__ = [
    "Sampler",
    "MALA",
    "NUTS",
    "NUTSChain",
    "ULA",
    "SGLD",
    "RunState",
    "SampleResult",
    "sample",
    "load_run",
    "chain_sharding",
]

PyTree = Any


# --------------------------------------------------------------------------------------
# Driver state and result
# --------------------------------------------------------------------------------------


class RunState(NamedTuple):
    """Everything the driver carries between chunks (all leaves have a chain axis or are scalars).

    ``chain``: sampler states; ``log_step_size`` ``(C,)``; ``step``: steps done;
    ``accept_sum`` ``(C,)`` and ``n_accept``: acceptance probabilities summed over the
    sampling phase; ``diverged_at`` ``(C,)``: step of the first non-finite state or -1;
    ``mean_sum`` / ``mean_count``: running sums of ``mean_fn`` over valid thinned samples;
    ``divergent_sum`` ``(C,)``: divergent transitions of the sampling phase (NUTS);
    ``warmup_divergent`` ``(C,)``: those of a sampler's own warm-up.
    """

    chain: PyTree
    log_step_size: Array
    step: Array
    accept_sum: Array
    accept_burn_sum: Array
    n_accept: Array
    diverged_at: Array
    mean_sum: PyTree
    mean_count: Array
    divergent_sum: Array
    warmup_divergent: Array


@dataclass
class SampleResult:
    """Output of :func:`sample`.

    Attributes
    ----------
    state : RunState
        Final driver state.
    positions : pytree
        Final positions of all chains (leading chain axis).
    traces : pytree of numpy arrays, leading axes ``(S, C)``
        ``trace_fn`` at the thinned steps (``None`` without ``trace_fn``).
    valid : ``(S, C)`` bool
        False for samples taken after the chain diverged.
    means : pytree ``(C, ...)`` or None
        Average of ``mean_fn`` over each chain's valid thinned samples.
    acceptance_rate : ``(C,)``
        Mean acceptance probability over the sampling phase (1 for SGLD/ULA).
    step_size : ``(C,)``
        Step size used after burn-in.
    divergences : ``(C,)`` int
        Divergent transitions after burn-in (NUTS; 0 for the other samplers).
    steps : int
        Steps done (burn-in included).
    diverged : bool
    message : str
    seconds : float
        Wall time of this call (compilation included).
    """

    state: RunState
    positions: PyTree
    traces: PyTree
    valid: np.ndarray
    means: PyTree
    acceptance_rate: np.ndarray
    step_size: np.ndarray
    steps: int
    n_steps: int
    burn_in: int
    thin: int
    diverged: bool
    message: str
    seconds: float
    meta: dict = field(default_factory=dict)
    divergences: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.valid.shape[0])


# --------------------------------------------------------------------------------------
# The chunk: nested lax.scan, jitted once per static configuration
# --------------------------------------------------------------------------------------


def _gain(t):
    return 1.0 / (1.0 + t) ** 0.6


@eqx.filter_jit
def _advance(sampler: Sampler, state: RunState, context, key, n_blocks: int, thin: int,
             burn_in: int, record: bool, adapt: bool, target_accept: float,
             trace_fn, mean_fn):
    C = state.log_step_size.shape[0]
    dtype = state.log_step_size.dtype

    def one_step(st: RunState, _):
        t = st.step
        keys = jax.random.split(jax.random.fold_in(key, t), C)
        eps = jnp.exp(st.log_step_size)
        new_chain, acc, div = jax.vmap(sampler.step)(keys, st.chain, context, eps)
        ok = jax.vmap(sampler.is_finite)(new_chain)
        alive = st.diverged_at < 0
        take = ok & alive

        def pick(n, o):
            return jnp.where(take.reshape((C,) + (1,) * (n.ndim - 1)), n, o)

        # freeze dead and newly non-finite chains; the select over the whole state runs only
        # at a step where some chain needs it (a scalar predicate: a real branch)
        chain = jax.lax.cond(jnp.all(take), lambda: new_chain,
                             lambda: jax.tree.map(pick, new_chain, st.chain))
        acc = jnp.where(take, jnp.nan_to_num(acc), 0.0).astype(dtype)
        in_burn = t < burn_in
        log_eps = st.log_step_size
        if adapt:
            upd = log_eps + _gain(t.astype(dtype)) * (acc - target_accept)
            log_eps = jnp.where(in_burn & take, upd, log_eps)
        return RunState(
            chain=chain,
            log_step_size=log_eps,
            step=t + 1,
            accept_sum=st.accept_sum + jnp.where(in_burn, 0.0, acc),
            accept_burn_sum=st.accept_burn_sum + jnp.where(in_burn, acc, 0.0),
            n_accept=st.n_accept + jnp.where(in_burn, 0, 1),
            diverged_at=jnp.where(alive & ~ok, t, st.diverged_at),
            mean_sum=st.mean_sum,
            mean_count=st.mean_count,
            divergent_sum=st.divergent_sum + (take & div & ~in_burn).astype(jnp.int32),
            warmup_divergent=st.warmup_divergent,
        ), None

    def block(st: RunState, _):
        st, _ = jax.lax.scan(one_step, st, None, length=thin)
        if not record:
            return st, None
        pos = jax.vmap(sampler.position)(st.chain)
        valid = st.diverged_at < 0
        out = None
        if trace_fn is not None:
            out = jax.vmap(trace_fn)(pos, context)
        mean_sum, mean_count = st.mean_sum, st.mean_count
        if mean_fn is not None:
            m = jax.vmap(mean_fn)(pos, context)

            def add(s, v):
                return s + jnp.where(valid.reshape((C,) + (1,) * (v.ndim - 1)), v, 0)

            mean_sum = jax.tree.map(add, mean_sum, m)
            mean_count = mean_count + valid.astype(mean_count.dtype)
        st = st._replace(mean_sum=mean_sum, mean_count=mean_count)
        return st, (out, valid)

    return jax.lax.scan(block, state, None, length=n_blocks)


#: ``fold_in`` tag of the warm-up key (steps use ``fold_in(key, t)`` with ``t < 2**31 - 1``)
_WARMUP_TAG = 2**31 - 1


@eqx.filter_jit
def _warmup(sampler: Sampler, state: RunState, context, key, n_steps: int):
    """A sampler's own warm-up (:meth:`Sampler.warmup`) over ``n_steps``, all chains at once."""
    C = state.log_step_size.shape[0]
    keys = jax.random.split(jax.random.fold_in(key, _WARMUP_TAG), C)
    chain, eps, acc, div = jax.vmap(
        lambda k, s, c, e: sampler.warmup(k, s, c, n_steps, e)
    )(keys, state.chain, context, jnp.exp(state.log_step_size))
    ok = jax.vmap(sampler.is_finite)(chain) & jnp.isfinite(eps) & (eps > 0)
    alive = state.diverged_at < 0
    take = ok & alive
    chain = jax.tree.map(
        lambda n, o: jnp.where(take.reshape((C,) + (1,) * (n.ndim - 1)), n, o),
        chain, state.chain)
    dtype = state.log_step_size.dtype
    return state._replace(
        chain=chain,
        log_step_size=jnp.where(take, jnp.log(eps).astype(dtype), state.log_step_size),
        step=state.step + n_steps,
        accept_burn_sum=state.accept_burn_sum + jnp.where(take, acc, 0.0) * n_steps,
        diverged_at=jnp.where(alive & ~ok, state.step, state.diverged_at),
        warmup_divergent=state.warmup_divergent + div,
    )


@eqx.filter_jit
def _init_chains(sampler: Sampler, positions, context):
    chain = jax.vmap(sampler.init)(positions, context)
    return chain, jax.vmap(sampler.position)(chain), jax.vmap(_all_finite)(chain)


@eqx.filter_jit
def _positions(sampler: Sampler, chain):
    return jax.vmap(sampler.position)(chain)


@eqx.filter_jit
def _apply_fn(fn, positions, context):
    return jax.vmap(fn)(positions, context)


# --------------------------------------------------------------------------------------
# Sharding over devices
# --------------------------------------------------------------------------------------


def chain_sharding(n_chains: int, devices=None):
    """A ``NamedSharding`` that splits a leading chain axis over all (given) devices.

    Returns ``None`` when there is one device or the chain count is not divisible by the
    device count (then everything stays on the default device).
    """
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) < 2 or n_chains % len(devices):
        return None
    mesh = jax.sharding.Mesh(np.asarray(devices), ("chains",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chains"))


def _shard(tree, sharding):
    if sharding is None:
        return tree
    return jax.tree.map(
        lambda x: jax.device_put(x, sharding) if getattr(x, "ndim", 0) >= 1 else x, tree
    )


# --------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------


def _key_data(key) -> np.ndarray:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    return np.asarray(key)


def _save(path: Path, state: RunState, traces: list, valids: list, meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for i, leaf in enumerate(jax.tree.leaves(state)):
        arrays[f"state_{i:04d}"] = np.asarray(leaf)
    if traces and jax.tree.leaves(traces[0]):
        cat = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *traces)
        for i, leaf in enumerate(jax.tree.leaves(cat)):
            arrays[f"trace_{i:04d}"] = np.asarray(leaf)
    C = int(state.log_step_size.shape[0])
    arrays["valid"] = (np.concatenate(valids, axis=0) if valids
                       else np.zeros((0, C), bool))
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_run(path: str | os.PathLike, like_state: RunState, like_trace=None):
    """Load a run saved by :func:`sample` (``save_path``).

    ``like_state`` is a :class:`RunState` of the same structure and shapes (e.g. the
    driver's initial state); ``like_trace`` the structure of one trace entry (or ``None``).
    Returns ``(state, traces, valid, meta)``. Raises ``ValueError`` if the file does not fit.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        leaves, treedef = jax.tree.flatten(like_state)
        names = sorted(k for k in f.files if k.startswith("state_"))
        if len(names) != len(leaves):
            raise FieldresInputError(f"{path}: saved run has {len(names)} state arrays, expected "
                             f"{len(leaves)} (different sampler or model?)")
        new = []
        for name, leaf in zip(names, leaves):
            a = f[name]
            if a.shape != tuple(leaf.shape):
                raise FieldresInputError(f"{path}: {name} has shape {a.shape}, expected "
                                 f"{tuple(leaf.shape)} (different model size or chain count?)")
            new.append(jnp.asarray(a, dtype=leaf.dtype))
        state = jax.tree.unflatten(treedef, new)
        valid = f["valid"]
        traces = None
        if like_trace is not None and jax.tree.leaves(like_trace):
            t_leaves, t_def = jax.tree.flatten(like_trace)
            tn = sorted(k for k in f.files if k.startswith("trace_"))
            if len(tn) != len(t_leaves):
                raise FieldresInputError(f"{path}: saved traces do not match trace_fn")
            traces = jax.tree.unflatten(t_def, [f[k] for k in tn])
    return state, traces, valid, meta


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise FieldresInputError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def sample(key: PRNGKeyArray, sampler: Sampler, positions: PyTree, **kwargs) -> SampleResult:
    """Run ``C`` chains of a :class:`Sampler`; see :func:`_sample` (docstring copied below)."""
    leaves = jax.tree.leaves(positions)
    low = bool(leaves) and all(getattr(x, "dtype", None) == jnp.float32 for x in leaves)
    if low and jax.config.jax_enable_x64:
        # blackjax 1.7.1's Gaussian noise (util.generate_gaussian_noise) is float64 for
        # float32 positions when x64 is on; the samplers here draw it in the leaves' dtype,
        # but a float32 run is still traced with x64 off, so that no float64 constant or
        # default dtype upcasts it (MALA's accept/reject cond needs equal dtypes).
        with jax.enable_x64(False):
            return _sample(key, sampler, positions, **kwargs)
    return _sample(key, sampler, positions, **kwargs)


def _sample(
    key: PRNGKeyArray,
    sampler: Sampler,
    positions: PyTree,
    *,
    n_steps: int,
    burn_in: int | None = None,
    thin: int = 1,
    context: PyTree = None,
    step_size: float | Array = 1e-3,
    adapt_step_size: bool | None = None,
    target_accept: float = 0.574,
    trace_fn: Callable | None = None,
    mean_fn: Callable | None = None,
    chunk_size: int = 100,
    progress: bool = False,
    desc: str = "sampling",
    save_path: str | os.PathLike | None = None,
    resume: bool = False,
    shard: bool = True,
    devices=None,
) -> SampleResult:
    """Run ``C`` chains of a :class:`Sampler` (vmapped, chunked ``lax.scan``).

    Float32 positions are sampled in float32 even when ``jax_enable_x64`` is on.

    Parameters
    ----------
    key:
        Base key; step ``t`` uses ``fold_in(key, t)`` (so results do not depend on
        ``chunk_size`` and a resumed run equals an uninterrupted one).
    sampler:
        :class:`MALA`, :class:`NUTS`, :class:`SGLD` or :func:`ULA`.
    positions:
        Initial positions, every leaf with a leading chain axis ``C``.
    n_steps:
        Total number of steps, burn-in included. The sampling phase is cut to a multiple
        of ``thin``.
    burn_in:
        Steps discarded first (default ``n_steps // 2``); MALA adapts its step size here,
        NUTS runs ``blackjax.window_adaptation`` (step size and diagonal mass matrix).
    thin:
        Keep every ``thin``-th state after burn-in.
    context:
        Per-chain pytree (leading axis ``C``) passed to the densities, e.g. ``rho``.
    step_size:
        Initial step size, scalar or ``(C,)``.
    adapt_step_size:
        Adapt ``log ε`` during burn-in towards ``target_accept`` (default: for MALA).
    trace_fn, mean_fn:
        ``fn(position, context) -> pytree``, evaluated at the thinned steps: ``trace_fn``
        values are stacked (``traces``), ``mean_fn`` values averaged (``means``).
    chunk_size:
        Steps per jitted call (progress bar and checkpoint granularity).
    progress:
        Show a tqdm progress bar.
    save_path:
        ``.npz`` checkpoint written after every chunk (plus a ``.json`` with the metadata).
    resume:
        Continue from ``save_path`` if it exists (same sampler, shapes and settings).
    shard:
        Spread the chain axis over all devices (when ``C`` is divisible by their number).

    Returns
    -------
    SampleResult
    """
    n_steps = _check_int("n_steps", n_steps, 1)
    burn_in = n_steps // 2 if burn_in is None else _check_int("burn_in", burn_in, 0)
    thin = _check_int("thin", thin, 1)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    if burn_in >= n_steps:
        raise FieldresInputError(f"burn_in ({burn_in}) must be smaller than n_steps ({n_steps})")
    n_samples = (n_steps - burn_in) // thin
    if n_samples < 1:
        raise FieldresInputError(
            f"no samples: n_steps - burn_in = {n_steps - burn_in} < thin = {thin}"
        )
    total = burn_in + n_samples * thin
    leaves = jax.tree.leaves(positions)
    if not leaves:
        raise FieldresInputError("positions is an empty pytree")
    C = int(leaves[0].shape[0])
    for x in leaves:
        if x.shape[:1] != (C,):
            raise FieldresInputError(f"every position leaf needs the same leading chain axis {C}, "
                             f"got shape {x.shape}")
    dtype = jnp.result_type(*[x.dtype for x in leaves])
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"positions must be floating point, got {dtype}")
    adapt = sampler.adaptive if adapt_step_size is None else bool(adapt_step_size)
    if adapt and not sampler.adaptive:
        raise FieldresInputError(f"{type(sampler).__name__} has no acceptance rate to adapt to"
                         + (" (it adapts in its own warm-up)" if sampler.has_warmup else ""))
    eps0 = jnp.broadcast_to(jnp.asarray(step_size, dtype), (C,))
    if not bool(jnp.all(jnp.isfinite(eps0) & (eps0 > 0))):
        raise FieldresInputError(f"step_size must be positive and finite, got {step_size}")
    if context is None:
        context = jnp.zeros((C,), dtype)
    t0 = time.perf_counter()

    sharding = chain_sharding(C, devices) if shard else None
    positions = _shard(positions, sharding)
    context = _shard(context, sharding)
    chain, pos0, finite0 = _init_chains(sampler, positions, context)
    mean_like = None if mean_fn is None else _apply_fn(mean_fn, pos0, context)
    trace_like = (None if trace_fn is None
                  else jax.eval_shape(lambda p, c: jax.vmap(trace_fn)(p, c), pos0, context))
    state = RunState(
        chain=chain,
        log_step_size=jnp.log(eps0),
        step=jnp.asarray(0, jnp.int32),
        accept_sum=jnp.zeros((C,), dtype),
        accept_burn_sum=jnp.zeros((C,), dtype),
        n_accept=jnp.asarray(0, jnp.int32),
        diverged_at=jnp.full((C,), -1, jnp.int32),
        mean_sum=None if mean_like is None else jax.tree.map(jnp.zeros_like, mean_like),
        mean_count=jnp.zeros((C,), dtype),
        divergent_sum=jnp.zeros((C,), jnp.int32),
        warmup_divergent=jnp.zeros((C,), jnp.int32),
    )
    meta = dict(n_chains=C, n_steps=n_steps, burn_in=burn_in, thin=thin, sampler=type(
        sampler).__name__, key=_key_data(key).tolist(), adapt=adapt,
        target_accept=target_accept)
    traces: list = []
    valids: list = []
    if save_path is not None and resume and Path(save_path).is_file():
        like_trace = (None if trace_like is None else
                      jax.tree.map(lambda s: np.zeros((0,) + s.shape, s.dtype), trace_like))
        state, tr, valid, old = load_run(save_path, state, like_trace)
        for k in ("n_chains", "burn_in", "thin", "sampler", "key", "adapt"):
            if old.get(k) != meta[k]:
                raise FieldresInputError(f"cannot resume {save_path}: saved {k} = {old.get(k)!r}, "
                                 f"requested {meta[k]!r}")
        state = _shard(state, sharding)
        if tr is not None:
            traces.append(tr)
        valids.append(np.asarray(valid))
    else:
        # a bad starting point is a divergence at step 0
        ok = np.asarray(finite0)
        state = state._replace(diverged_at=jnp.where(jnp.asarray(ok), -1, 0).astype(jnp.int32))

    kw = dict(target_accept=float(target_accept), trace_fn=trace_fn, mean_fn=mean_fn)
    done = int(state.step)
    bar = tqdm(total=total, initial=min(done, total), desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True)
    diverged = bool(np.any(np.asarray(state.diverged_at) >= 0))
    try:
        while done < total and not diverged:
            if done < burn_in and sampler.has_warmup:
                state = _warmup(sampler, state, context, key, burn_in - done)
            elif done < burn_in:
                n = min(chunk_size, burn_in - done)
                state, _ = _advance(sampler, state, context, key, n, 1, burn_in, False,
                                    adapt, **kw)
            else:
                blocks = max(1, min(chunk_size // thin, (total - done) // thin))
                state, (out, valid) = _advance(sampler, state, context, key, blocks, thin,
                                               burn_in, True, adapt, **kw)
                if out is not None:
                    traces.append(jax.tree.map(np.asarray, out))
                valids.append(np.asarray(valid))
            new_done = int(state.step)
            bar.update(new_done - done)
            done = new_done
            if progress:
                na = int(state.n_accept)
                acc = (np.asarray(state.accept_sum).mean() / na if na
                       else np.asarray(state.accept_burn_sum).mean() / max(done, 1))
                bar.set_postfix(accept=f"{acc:.2f}",
                                step_size=f"{float(jnp.exp(state.log_step_size).mean()):.2e}")
            diverged = bool(np.any(np.asarray(state.diverged_at) >= 0))
            if save_path is not None:
                _save(Path(save_path), state, traces, valids, meta)
    finally:
        bar.close()

    div_at = np.asarray(state.diverged_at)
    if diverged:
        bad = np.flatnonzero(div_at >= 0)
        message = (
            f"{len(bad)} of {C} chain(s) diverged (non-finite state) at step(s) "
            f"{sorted(set(div_at[bad].tolist()))}: chains {bad.tolist()}; stopped after "
            f"{done} of {total} steps, keeping the samples drawn before the divergence. "
            "Reduce the step size (or the temperature of the likelihood)."
        )
    else:
        message = "ok"
    if total < n_steps:
        message += f" (ran {total} steps: the sampling phase is cut to a multiple of thin)"
    valid = np.concatenate(valids, axis=0) if valids else np.zeros((0, C), bool)
    trace_out = None
    if trace_fn is not None:
        trace_out = (jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *traces) if traces
                     else jax.tree.map(lambda s: np.zeros((0,) + s.shape, s.dtype), trace_like))
    means = None
    if mean_fn is not None:
        cnt = np.asarray(state.mean_count)

        def avg(s):
            s = np.asarray(s)
            c = cnt.reshape((C,) + (1,) * (s.ndim - 1))
            return np.where(c > 0, s / np.maximum(c, 1), np.nan)

        means = jax.tree.map(avg, state.mean_sum)
    na = int(state.n_accept)
    acc = np.asarray(state.accept_sum) / na if na else np.full((C,), np.nan)
    return SampleResult(
        state=state,
        positions=_positions(sampler, state.chain),
        traces=trace_out,
        valid=valid,
        means=means,
        acceptance_rate=acc,
        step_size=np.exp(np.asarray(state.log_step_size)),
        steps=done,
        n_steps=total,
        burn_in=burn_in,
        thin=thin,
        diverged=diverged,
        message=message,
        seconds=time.perf_counter() - t0,
        meta=meta,
        divergences=np.asarray(state.divergent_sum),
    )


sample.__doc__ = _sample.__doc__
