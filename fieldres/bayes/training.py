# jaxtyping dimension strings ("P P") are not forward references:
# ruff: noqa: F722, F821
r"""Bayesian training of the ResNet by Langevin dynamics, and what it measures.

THEORY §7 (Fischer, Dahmen, Helias, arXiv:2305.07715, Sec. 5): the prior is the
initialisation distribution of THEORY §1 (:mod:`fieldres.bayes.models`, whitened coordinates),
the likelihood

* ``"gaussian"``: :math:`y \sim \mathcal N(f(x), T)` for ``±1`` labels (two classes) or
  one-hot targets (several classes), :math:`T` = ``noise``;
* ``"softmax"``: :math:`p(y = k \mid x) = \mathrm{softmax}(f(x))_k` (``d_out`` = classes),

and the posterior is sampled with :mod:`fieldres.bayes.sampling` (MALA, NUTS, ULA or SGLD;
chains, 4 by default, start from independent prior draws, i.e. freshly initialised
networks). :func:`train_sweep` runs
several residual scalings ``rho`` at one depth in a single vmapped (and device-sharded) run;
:func:`train` is one ``rho`` on a CIFAR-10/MNIST subset and is what ``fieldres train`` calls.

Measurements (per ``rho``; pooled over chains, with standard errors over chains):

``test_error`` / ``test_mse``
    classification error and mean squared error of the **posterior-predictive mean**
    :math:`\bar f(x) = \mathbb E_{\theta\mid D} f_\theta(x)` (average over the thinned
    samples of all chains; for ``softmax`` the averaged class probabilities, and
    ``test_mse`` is the Brier score). ``*_se``: standard error over chains of the same
    quantity computed per chain.
``train_mse``
    the same on the training set; ``train_loss`` is the posterior average of the per-sample
    training MSE (the loss the sampler sees; for softmax the mean negative log likelihood).
``kernel_change``
    data adaptation: relative Frobenius distance
    :math:`\lVert \bar C_\mathrm{post} - C_\mathrm{prior} \rVert_F / \lVert C_\mathrm{prior}
    \rVert_F` between the posterior-mean last-hidden-layer kernel
    :math:`\bar C_\mathrm{post} = \mathbb E_{\theta\mid D}[\phi(h^{(L)})\phi(h^{(L)})^T / N]`
    on (up to ``n_kernel`` of) the training inputs and the prior-mean kernel, the NNGP kernel
    :math:`C_\phi(K^{(L)})` of :func:`fieldres.resnet_kernels` (exact up to ``O(1/N)``).
    A finite-width network's kernel fluctuates by ``O(1/sqrt(N))`` around its mean, so the
    plain distance of a Monte-Carlo average from ``C_prior`` has a positive floor even
    without any data; :func:`debiased_change` removes it using the spread between the chains
    (each chain's time average is one independent estimate; needs >= 2 chains).
    ``kernel_change_raw`` is the plain distance; ``kernel_change_prior`` (and ``_raw``) the
    same for the chains' starting networks (prior draws): the debiased value should be
    near 0 there. ``kernel_change_se``: jackknife over chains (>= 3 chains).
    ``kernel_change_from_init``: each chain's posterior-mean kernel against its own starting
    kernel, averaged over chains (includes the chain's wandering through the prior).
``rhat_max`` / ``ess_min`` / ``converged``
    convergence diagnostics (:mod:`fieldres.bayes.diagnostics`, ArviZ): the largest
    rank-normalised split-R̂ and the smallest bulk/tail ESS over the per-draw test
    predictions :math:`f_\theta(x)`, the per-draw test error and training loss, and the
    entries of the output kernel :math:`\sigma^2_{w,\mathrm{out}} \hat C +
    \sigma^2_{b,\mathrm{out}}` on the first :data:`N_KERNEL_DIAGNOSED` kernel inputs;
    ``converged`` is ``rhat_max < 1.01 and ess_min >= 400``; ``ess_per_second`` is
    ``ess_min`` over the wall time of the sampling run (warm-up and compilation included;
    for a sweep the run of all its ``rho``); ``divergences``: NUTS's divergent transitions
    after warm-up. Only chains that never diverged enter.
``kernel_alignment``
    centred kernel--target alignment :math:`A(K, Y) = \langle K_c, Y_c Y_c^T\rangle_F /
    (\lVert K_c\rVert_F \lVert Y_c Y_c^T\rVert_F)` (Cortes, Mohri, Rostamizadeh 2012) of the
    posterior-mean kernel; ``kernel_alignment_prior`` of the starting kernels.

Numerics: sampling runs in ``dtype`` (default float32, the fast path on CPUs and GPUs; MALA's
acceptance test then carries a rounding error of roughly ``1e-7 |log p|``); the NNGP reference
kernel and the measurements are computed in float64 when ``jax_enable_x64`` is on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import FieldresInputError
from ..bayes.diagnostics import Diagnostics, diagnose
from ..bayes.measures import debiased_change, kernel_alignment, relative_change
from ..bayes.models import apply, hidden_kernels, init_params, log_prior
from ..bayes.sampling import MALA, NUTS, SGLD, sample
from ..kernels.activations import get_activation
from ..kernels.recursion import Hyper, input_kernel, resnet_kernels

__all__ = [
    "TrainResult",
    "TRAIN_PRESETS",
    "train",
    "train_sweep",
    "kernel_alignment",
    "relative_change",
    "debiased_change",
    "make_log_density",
]

SAMPLERS = ("mala", "nuts", "ula", "sgld")
LIKELIHOODS = ("gaussian", "softmax")

#: Settings of ``fieldres train --preset NAME`` (overridden by explicit options).
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # a few seconds of sampling on 2 CPU cores (plus compilation)
    "smoke": dict(n_train=40, n_test=100, depth=4, width=32, steps=200, n_chains=4),
    # the defaults of ``fieldres train``: a small job, minutes on 2 CPU cores
    "default": dict(n_train=100, n_test=500, depth=10, width=64, steps=1000, n_chains=4),
    # the posterior of the paper's experiment (issue 13): sized for a GPU
    "paper": dict(n_train=500, n_test=2000, depth=10, width=256, steps=4000, n_chains=4),
}

#: How many of the kernel inputs enter the diagnostics of the output kernel: the
#: ``n (n + 1) / 2`` entries of ``sigma_w,out^2 C_hat + sigma_b,out^2`` on the first ``n``.
N_KERNEL_DIAGNOSED = 8


@dataclass
class TrainResult:
    """Measurements of one posterior (one ``rho``, one depth); see the module docstring."""

    rho: float
    depth: int
    width: int
    n_chains: int
    sampler: str
    test_error: float
    test_error_se: float | None
    test_mse: float
    test_mse_se: float | None
    train_error: float
    train_mse: float
    train_mse_se: float | None
    train_loss: float
    kernel_change: float
    kernel_change_se: float | None
    kernel_change_prior: float
    kernel_change_raw: float
    kernel_change_prior_raw: float
    kernel_change_from_init: float
    kernel_alignment: float
    kernel_alignment_se: float | None
    kernel_alignment_prior: float
    acceptance_rate: float | None
    step_size: float
    steps: int
    n_samples: int
    seconds: float
    diverged: bool = False
    message: str = "ok"
    rhat_max: float = float("nan")
    ess_min: float = float("nan")
    ess_bulk_min: float = float("nan")
    ess_tail_min: float = float("nan")
    ess_per_second: float = float("nan")
    divergences: int = 0
    converged: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        return {k: _clean(v) for k, v in (d | extra).items()}


def _clean(v):
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------


def make_log_density(likelihood: str, noise: float, hyper: Hyper, activation):
    """``(logprior, loglik_example, logdensity)`` of the ResNet posterior; ``context = rho``.

    ``loglik_example(params, (x, y), rho)`` is one example's log likelihood;
    ``logdensity(params, (X, Y), rho)`` the full-batch log posterior (up to a constant).
    """
    if likelihood not in LIKELIHOODS:
        raise FieldresInputError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise > 0):
        raise FieldresInputError(f"noise (the likelihood variance T) must be positive, got {noise}")
    act = get_activation(activation)

    def logprior(params, rho):
        return log_prior(params)

    def loglik_rows(params, X, Y, rho):
        F = apply(params, X, rho, hyper, act)
        if likelihood == "gaussian":
            return -0.5 * jnp.sum((F - Y) ** 2, axis=-1) / noise
        return jnp.take_along_axis(jax.nn.log_softmax(F, axis=-1), Y[:, None], axis=-1)[:, 0]

    def loglik_example(params, example, rho):
        x, y = example
        return loglik_rows(params, x[None], y[None], rho)[0]

    def logdensity(params, data, rho):
        X, Y = data
        return logprior(params, rho) + jnp.sum(loglik_rows(params, X, Y, rho))

    return logprior, loglik_example, logdensity


def _predict_metrics(F, y, likelihood):
    """Error and MSE of predictions ``F`` ``(P, d_out)`` (mean outputs or probabilities)."""
    if likelihood == "gaussian":
        if F.shape[-1] == 1:
            err = np.mean(np.sign(F[:, 0]) != np.sign(y[:, 0]))
        else:
            err = np.mean(np.argmax(F, -1) != np.argmax(y, -1))
        mse = np.mean(np.sum((F - y) ** 2, -1))
    else:
        onehot = np.eye(F.shape[-1])[y]
        err = np.mean(np.argmax(F, -1) != y)
        mse = np.mean(np.sum((F - onehot) ** 2, -1))
    return float(err), float(mse)


def _version() -> str:
    from .. import __version__

    return str(__version__)


def _diagnose_group(res, cs, f_te, yte, per_sample_loss, likelihood):
    """ArviZ diagnostics of one ``rho``'s chains (those that never diverged)."""
    keep = [j for j, c in enumerate(cs) if res.valid[:, c].all()]
    f = np.asarray(f_te)[:, keep]  # (S, c, n_test, d_out)
    probs = np.asarray(jax.nn.softmax(f, axis=-1)) if likelihood == "softmax" else f
    err = np.array([[_predict_metrics(probs[s, j], yte, likelihood)[0]
                     for j in range(len(keep))] for s in range(f.shape[0])])
    kern = np.asarray(res.traces["kernel"], np.float64)[:, np.asarray(cs)[keep]]
    draws = dict(test_predictions=f, test_error=err,
                 train_loss=np.asarray(per_sample_loss)[:, keep], output_kernel=kern)
    if not keep or f.shape[0] < 4:
        nan = float("nan")
        return Diagnostics(nan, nan, nan, nan, False, len(keep), int(f.shape[0]))
    return diagnose({k: np.swapaxes(v, 0, 1) for k, v in draws.items()})


def _se(v) -> float | None:
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else None


# --------------------------------------------------------------------------------------
# Sweep over rho at one depth (one vmapped, sharded run)
# --------------------------------------------------------------------------------------


def _check_pos_int(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
        raise FieldresInputError(f"{name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def train_sweep(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    depth: int,
    rhos: Sequence[float],
    width: int = 64,
    activation: str = "erf",
    hyper: Hyper = Hyper(),
    likelihood: str = "gaussian",
    noise: float = 0.1,
    temperature: float = 1.0,
    sampler: str = "mala",
    steps: int = 1000,
    burn_in: int | None = None,
    thin: int | None = None,
    step_size: float = 1e-3,
    batch_size: int | None = None,
    n_chains: int = 4,
    n_kernel: int = 200,
    seed: int = 0,
    max_num_doublings: int = 10,
    dtype: str = "float32",
    chunk_size: int = 100,
    progress: bool = False,
    save_path=None,
    resume: bool = False,
) -> list[TrainResult]:
    """Sample the posterior for every ``rho`` in ``rhos`` at one depth, all in one run.

    The ``len(rhos) * n_chains`` chains are vmapped together (one compilation) and their
    axis is sharded over all available devices (:func:`fieldres.bayes.sampling.chain_sharding`).
    Inputs are arrays: ``x_*`` ``(n, d_in)``; ``y_*`` ``(n,)`` ±1 labels, ``(n, k)`` one-hot
    targets (``gaussian``) or ``(n,)`` integer classes (``softmax``).

    Returns one :class:`TrainResult` per ``rho``, in order.
    """
    depth = _check_pos_int("depth", depth)
    width = _check_pos_int("width", width)
    n_chains = _check_pos_int("n_chains", n_chains)
    steps = _check_pos_int("steps", steps, 2)
    n_kernel = _check_pos_int("n_kernel", n_kernel, 2)
    if sampler not in SAMPLERS:
        raise FieldresInputError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if sampler != "sgld" and batch_size is not None:
        raise FieldresInputError(f"batch_size is for sgld only (sampler {sampler!r} is full-batch)")
    rhos = np.atleast_1d(np.asarray(rhos, np.float64))
    if rhos.ndim != 1 or rhos.size == 0 or not np.all(np.isfinite(rhos) & (rhos >= 0)):
        raise FieldresInputError(f"rhos must be finite non-negative numbers, got {rhos}")
    for name, v in (("noise", noise), ("temperature", temperature), ("step_size", step_size)):
        if not (math.isfinite(float(v)) and float(v) > 0):
            raise FieldresInputError(f"{name} must be positive and finite, got {v}")
    burn_in = steps // 2 if burn_in is None else int(burn_in)
    if thin is None:
        thin = max(1, (steps - burn_in) // 100)
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype("float32"), jnp.dtype("float64")):
        raise FieldresInputError(f"dtype must be float32 or float64, got {dtype!r}")
    if dt == jnp.dtype("float64") and not jax.config.jax_enable_x64:
        raise FieldresInputError("dtype float64 needs jax_enable_x64 (jax.config.update(...))")

    xtr = np.asarray(x_train, np.float64)
    xte = np.asarray(x_test, np.float64)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise FieldresInputError(f"x_train and x_test must be (n, d_in) with the same d_in, got "
                         f"{xtr.shape} and {xte.shape}")
    if len(xtr) < 2 or len(xte) < 1:
        raise FieldresInputError("need at least 2 training and 1 test example")
    if likelihood == "softmax":
        ytr = np.asarray(y_train).astype(np.int64)
        yte = np.asarray(y_test).astype(np.int64)
        if ytr.ndim != 1:
            raise FieldresInputError("softmax likelihood needs integer class labels of shape (n,)")
        d_out = int(max(ytr.max(), yte.max())) + 1
        y_kernel = np.eye(d_out)[ytr]
    else:
        ytr = np.asarray(y_train, np.float64)
        yte = np.asarray(y_test, np.float64)
        ytr = ytr[:, None] if ytr.ndim == 1 else ytr
        yte = yte[:, None] if yte.ndim == 1 else yte
        d_out = ytr.shape[1]
        y_kernel = ytr
    if len(ytr) != len(xtr) or len(yte) != len(xte):
        raise FieldresInputError("x and y have different numbers of examples")
    d_in = xtr.shape[1]
    act = get_activation(activation)
    hyper_s = jax.tree.map(lambda v: jnp.asarray(v, dt), hyper)
    logprior, loglik, logdensity = make_log_density(likelihood, noise, hyper_s, act)

    G = rhos.size
    C = G * n_chains
    ytr_j = jnp.asarray(ytr) if likelihood == "softmax" else jnp.asarray(ytr, dt)
    data = (jnp.asarray(xtr, dt), ytr_j)
    if sampler == "mala":
        smp = MALA(logdensity, data, temperature)
    elif sampler == "nuts":
        smp = NUTS(logdensity, data, temperature, max_num_doublings=max_num_doublings)
    else:
        bs = None if sampler == "ula" else (batch_size or min(len(xtr), 32))
        smp = SGLD(logprior, loglik, data, bs, temperature)

    key = jax.random.key(seed)
    k_init, k_run = jax.random.split(key)
    init = jax.vmap(lambda k: init_params(k, d_in, width, depth, d_out, dt))(
        jax.random.split(k_init, C))
    rho_chain = jnp.asarray(np.repeat(rhos, n_chains), dt)
    Xk = jnp.asarray(xtr[:n_kernel], dt)
    Xte_j = jnp.asarray(xte, dt)
    Xtr_j = data[0]

    iu = np.triu_indices(min(N_KERNEL_DIAGNOSED, len(Xk)))

    def trace_fn(p, rho):
        Ck = hidden_kernels(p, Xk[:N_KERNEL_DIAGNOSED], rho, hyper_s, act)[1]
        return dict(test=apply(p, Xte_j, rho, hyper_s, act),
                    train=apply(p, Xtr_j, rho, hyper_s, act),
                    kernel=hyper_s.sigma_w2_out * Ck[iu] + hyper_s.sigma_b2_out)

    def kernel_fn(p, rho):
        return hidden_kernels(p, Xk, rho, hyper_s, act)[1]

    C_init = np.asarray(jax.jit(jax.vmap(kernel_fn))(init, rho_chain), np.float64)
    t0 = time.perf_counter()
    res = sample(k_run, smp, init, n_steps=steps, burn_in=burn_in, thin=thin,
                 context=rho_chain, step_size=step_size, trace_fn=trace_fn, mean_fn=kernel_fn,
                 chunk_size=chunk_size, progress=progress,
                 desc=f"L={depth} {sampler} x{C} chains", save_path=save_path, resume=resume)
    seconds = time.perf_counter() - t0

    # NNGP prior kernel of the kernel inputs (float64 where enabled)
    hyper64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.result_type(float)), hyper)
    K0 = input_kernel(xtr[:n_kernel], hyper64.sigma_w2_in, hyper64.sigma_b2_in)
    C_theory = [np.asarray(act.kernel(resnet_kernels(K0, float(r), depth, hyper64, act,
                                                     trajectory=False).K_L)) for r in rhos]

    valid = res.valid  # (S, C)
    f_te = np.asarray(res.traces["test"], np.float64)  # (S, C, n, d_out)
    f_tr = np.asarray(res.traces["train"], np.float64)
    C_post = np.asarray(res.means, np.float64)  # (C, P, P)
    yk = y_kernel[:n_kernel]
    out = []
    for g, rho in enumerate(rhos):
        cs = np.arange(g * n_chains, (g + 1) * n_chains)
        w = valid[:, cs].astype(np.float64)  # (S, c)
        n_valid = w.sum()

        def pred(f, chains=cs, w=w):
            v = f[:, chains]
            if likelihood == "softmax":
                v = np.asarray(jax.nn.softmax(v, axis=-1))
            return v, w

        def pooled(f):
            v, ww = pred(f)
            if ww.sum() == 0:
                return np.full(v.shape[2:], np.nan)
            return np.einsum("sc,sc...->...", ww, v) / ww.sum()

        def per_chain(f, ytrue, n=len(cs)):
            v, ww = pred(f)
            errs, mses = [], []
            for j in range(n):
                if ww[:, j].sum() == 0:
                    errs.append(np.nan)
                    mses.append(np.nan)
                    continue
                m = np.einsum("s,s...->...", ww[:, j], v[:, j]) / ww[:, j].sum()
                e, s = _predict_metrics(m, ytrue, likelihood)
                errs.append(e)
                mses.append(s)
            return errs, mses

        te_err, te_mse = _predict_metrics(pooled(f_te), yte, likelihood)
        tr_err, tr_mse = _predict_metrics(pooled(f_tr), ytr, likelihood)
        te_errs, te_mses = per_chain(f_te, yte)
        _, tr_mses = per_chain(f_tr, ytr)
        # posterior average of the per-sample training loss
        v = f_tr[:, cs]
        if likelihood == "gaussian":
            per_sample = np.mean(np.sum((v - ytr) ** 2, -1), -1)
        else:
            logp = np.asarray(jax.nn.log_softmax(v, axis=-1))
            per_sample = -np.mean(np.take_along_axis(logp, ytr[None, None, :, None], -1)[..., 0],
                                  -1)
        train_loss = float(np.sum(per_sample * w) / n_valid) if n_valid else float("nan")
        diag = _diagnose_group(res, cs, f_te[:, cs], yte, per_sample, likelihood)
        n_div = int(np.sum(np.asarray(res.divergences)[cs]))
        ok = [c for c in cs if np.all(np.isfinite(C_post[c]))]
        change, change_raw = debiased_change(C_post[ok], C_theory[g])
        # jackknife over chains (leave one chain out; needs 3 chains for the debiasing)
        jk = [debiased_change(C_post[[c for c in ok if c != d]], C_theory[g])[0]
              for d in ok] if len(ok) >= 3 else []
        change_se = (math.sqrt((len(jk) - 1) / len(jk) * np.sum((np.array(jk) - np.mean(jk))
                                                                   ** 2)) if jk else None)
        change_prior, change_prior_raw = debiased_change(C_init[cs], C_theory[g])
        from_init = [relative_change(C_post[c], C_init[c]) for c in ok]
        aligns = [kernel_alignment(C_post[c], yk) for c in ok]
        aligns0 = [kernel_alignment(C_init[c], yk) for c in cs]
        acc = res.acceptance_rate[cs]
        out.append(TrainResult(
            rho=float(rho),
            depth=depth,
            width=width,
            n_chains=n_chains,
            sampler=sampler,
            test_error=te_err,
            test_error_se=_se(te_errs),
            test_mse=te_mse,
            test_mse_se=_se(te_mses),
            train_error=tr_err,
            train_mse=tr_mse,
            train_mse_se=_se(tr_mses),
            train_loss=train_loss,
            kernel_change=change,
            kernel_change_se=change_se,
            kernel_change_prior=change_prior,
            kernel_change_raw=change_raw,
            kernel_change_prior_raw=change_prior_raw,
            kernel_change_from_init=float(np.mean(from_init)) if from_init else float("nan"),
            kernel_alignment=float(np.mean(aligns)) if aligns else float("nan"),
            kernel_alignment_se=_se(aligns),
            kernel_alignment_prior=float(np.mean(aligns0)),
            acceptance_rate=float(np.nanmean(acc)) if sampler in ("mala", "nuts") else None,
            step_size=float(np.mean(res.step_size[cs])),
            steps=res.steps,
            n_samples=int(n_valid),
            seconds=seconds,
            diverged=bool(np.any(np.asarray(res.state.diverged_at)[cs] >= 0)),
            message=res.message,
            rhat_max=diag.rhat_max,
            ess_min=diag.ess_min,
            ess_bulk_min=diag.ess_bulk_min,
            ess_tail_min=diag.ess_tail_min,
            ess_per_second=diag.ess_min / seconds,
            divergences=n_div,
            converged=diag.converged and n_div == 0,
            extra=dict(
                diagnostics=diag.per_quantity,
                n_chains_diagnosed=diag.n_chains,
                warmup_divergences=int(np.sum(np.asarray(res.state.warmup_divergent)[cs])),
                activation=act.name,
                hyper={k: float(getattr(hyper, k)) for k in ("sigma_w2", "sigma_b2",
                       "sigma_w2_out", "sigma_b2_out", "sigma_w2_in", "sigma_b2_in")},
                seed=int(seed),
                fieldres_version=_version(),
                burn_in=res.burn_in,
                thin=res.thin,
                noise=float(noise),
                likelihood=likelihood,
                temperature=float(temperature),
                n_train=int(len(xtr)),
                n_test=int(len(xte)),
                n_kernel=int(len(yk)),
                kernel_change_from_init_per_chain=from_init,
                test_error_per_chain=te_errs,
                acceptance_rate_per_chain=acc.tolist(),
                step_size_per_chain=res.step_size[cs].tolist(),
                sweep_seconds_total=seconds,
                n_rho_in_run=int(G),
                devices=[str(d) for d in jax.devices()],
            ),
        ))
    return out


# --------------------------------------------------------------------------------------
# One run on a data set (the CLI)
# --------------------------------------------------------------------------------------


def train(
    *,
    dataset: str = "cifar10",
    classes: Sequence[str] = ("dog", "airplane"),
    n_train: int = 100,
    n_test: int = 500,
    depth: int = 10,
    rho: float = 0.3,
    width: int = 64,
    sampler: str = "mala",
    steps: int = 1000,
    k0_scale: float | None = 0.05,
    data_dir=None,
    seed: int = 0,
    data=None,
    **kwargs,
) -> TrainResult:
    """Bayesian training of one ResNet on a class subset of CIFAR-10 or MNIST.

    The data come from :func:`fieldres.make_dataset` (balanced subsets drawn with ``seed``,
    per-pixel standardisation, inputs rescaled so that the mean diagonal of
    ``K^(0) = X X^T / d_in`` is ``k0_scale``) unless a :class:`fieldres.Dataset` is passed as
    ``data``. Two classes give ±1 labels, more give one-hot targets (``gaussian``) or class
    indices (``likelihood="softmax"``). Other keyword arguments go to :func:`train_sweep`
    (``noise``, ``n_chains``, ``burn_in``, ``thin``, ``step_size``, ``batch_size``, ``hyper``,
    ``activation``, ``dtype``, ``progress``, ``save_path``, ``resume``, ...).

    Returns the :class:`TrainResult` (``.to_dict()`` for JSON); ``extra`` holds the data
    description and the theoretical context.
    """
    from ..data.subsets import make_dataset

    likelihood = kwargs.get("likelihood", "gaussian")
    if data is None:
        data = make_dataset(dataset, classes=tuple(classes), n_train=n_train, n_test=n_test,
                            seed=seed, data_dir=data_dir, k0_scale=k0_scale,
                            labels="int" if likelihood == "softmax" else "auto")
    res = train_sweep(data.x_train, data.y_train, data.x_test, data.y_test, depth=depth,
                      rhos=[rho], width=width, sampler=sampler, steps=steps, seed=seed,
                      **kwargs)[0]
    res.extra.update(dataset=data.dataset, classes=list(data.classes),
                     k0_scale=data.k0_scale, data_seed=data.seed,
                     source_dir=data.metadata.get("source_dir"))
    return res
