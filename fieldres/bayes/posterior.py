# jaxtyping dimension strings ("n d") are not forward references:
# ruff: noqa: F722
r"""Posterior theory of the ρ-scaled ResNet: what the Bayesian network learns, at infinite width.

At infinite width the posterior of a network trained by Bayes' rule with a Gaussian
likelihood of variance (temperature) ``T`` is GP regression with the network's NNGP output
kernel :math:`K^\mathrm{out}(\rho, L)` (:mod:`fieldres.bayes.gp`). This module puts that on
data and relates it to the optimal scaling of signal propagation:

* :func:`rho_star_data`: the data-driven ``rho*`` of a set of inputs, averaged over the
  diagonal entries ``rho*_aa`` and the pairs ``rho*_ab`` of ``argmax_rho chi^out`` as the
  paper's Fig. 5 does (Fischer, Dahmen, Helias, arXiv:2305.07715; entries without an interior
  maximum are not averaged; :func:`average_rho_star`);
* :func:`network_posterior`: posterior mean, variance and the summaries (test error, MSE,
  log evidence, kernel--target alignment) of a ResNet or feed-forward net on data;
* :func:`evidence_optimal_rho`: the ``rho`` that maximises the log evidence, bracketed on a
  log grid and solved with optimistix's bisection on ``d log p(Y) / d log rho`` (by
  ``jax.grad``) -- the Bayesian choice of ``rho`` that needs no test data;
* :func:`rho_scan`: the posterior over ``rho / rho*`` on a half-octave grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from .._validation import FieldresInputError
from ..defaults import Hyper
from ..kernels.activations import Activation
from ..signal.optimal import Status, rho_star_entries
from . import gp

__all__ = [
    "average_rho_star",
    "DataRhoStar",
    "rho_star_data",
    "network_posterior",
    "network_log_evidence",
    "EvidenceOptimum",
    "evidence_optimal_rho",
    "HALF_OCTAVES",
    "rho_scan",
]

#: ``rho / rho*`` of :func:`rho_scan`: 1/8 ... 8 in half-octave steps (13 values).
HALF_OCTAVES: tuple[float, ...] = tuple(float(2.0 ** (k / 2)) for k in range(-6, 7))


def average_rho_star(rho: ArrayLike, status: ArrayLike) -> dict:
    """Average ``rho*`` over the entries with an interior maximum (``status == 0``).

    Returns ``mean``, ``std`` and ``se`` (standard error of the mean) over those entries,
    ``n_ok``, ``n_total``, ``n_no_maximum`` and ``status_counts`` (code -> count); the
    statistics are ``nan`` when no entry has a maximum. This is the averaging of the paper's
    Fig. 5 (``experiments/fig5_data_rho_star.py``).
    """
    rho, status = np.asarray(rho, float), np.asarray(status)
    ok = status == Status.OK
    vals = rho[ok]
    nan = float("nan")
    return dict(
        mean=float(vals.mean()) if vals.size else nan,
        std=float(vals.std()) if vals.size else nan,
        se=float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else nan,
        n_ok=int(ok.sum()),
        n_total=int(status.size),
        n_no_maximum=int((~ok).sum()),
        status_counts={int(s): int((status == s).sum()) for s in np.unique(status)},
    )


@dataclasses.dataclass(frozen=True)
class DataRhoStar:
    """Data-driven ``rho*`` of a set of inputs (see :func:`rho_star_data`).

    ``diagonal`` and ``offdiagonal`` are the :func:`average_rho_star` summaries of the
    diagonal entries and of the (possibly sampled) pairs; ``n_pairs`` is the number of pairs
    of the data and ``pairs_sampled`` whether a random subset of them was averaged.
    """

    depth: int
    diagonal: dict
    offdiagonal: dict
    n_pairs: int
    pairs_sampled: bool

    @property
    def rho_star_diagonal(self) -> float:
        return self.diagonal["mean"]

    @property
    def rho_star_offdiagonal(self) -> float:
        return self.offdiagonal["mean"]


def rho_star_data(
    K0: Float[ArrayLike, "P P"],
    depth: int,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    *,
    max_pairs: int | None = 1000,
    seed: int = 0,
) -> DataRhoStar:
    """``rho*_diagonal`` and ``rho*_offdiagonal`` of the input kernel ``K0`` of a data set.

    Every diagonal entry and every pair ``a < b`` is solved with
    :func:`fieldres.rho_star_entries` and the results are averaged as in the paper's Fig. 5
    (:func:`average_rho_star`). With more than ``max_pairs`` pairs a uniformly random subset
    of ``max_pairs`` pairs (``numpy`` seed ``seed``) is averaged instead: at ``P = 500``
    (124 750 pairs) 1000 pairs give the mean to a standard error of ~0.4 % (reported as
    ``offdiagonal["se"]``) at 1/100 of the cost. ``max_pairs=None`` takes all pairs.
    """
    K0 = np.asarray(K0, float)
    P = K0.shape[0]
    if P < 2:
        raise FieldresInputError("rho_star_data needs at least two inputs (an off-diagonal entry)")
    if max_pairs is not None and max_pairs < 1:
        raise FieldresInputError(f"max_pairs must be >= 1 or None, got {max_pairs}")
    iu, ju = np.triu_indices(P, 1)
    n_pairs = iu.size
    sampled = max_pairs is not None and n_pairs > max_pairs
    if sampled:
        pick = np.sort(np.random.default_rng(seed).choice(n_pairs, max_pairs, replace=False))
        iu, ju = iu[pick], ju[pick]
    entries = [(a, a) for a in range(P)] + list(zip(iu.tolist(), ju.tolist(), strict=True))
    r = rho_star_entries(K0, int(depth), hyper, activation, entries=entries)
    rho, st = np.asarray(r.rho_star), np.asarray(r.status)
    return DataRhoStar(int(depth), average_rho_star(rho[:P], st[:P]),
                       average_rho_star(rho[P:], st[P:]), int(n_pairs), bool(sampled))


def network_posterior(
    X_train: Float[ArrayLike, "n d"],
    Y_train: Float[ArrayLike, "n ..."],
    X_test: Float[ArrayLike, "m d"] | None = None,
    Y_test: Float[ArrayLike, "m ..."] | None = None,
    *,
    rho: ArrayLike,
    depth: int,
    noise: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    architecture: str = "resnet",
    batch_size: int = 1024,
    check: bool = True,
) -> gp.GPPosterior:
    """Infinite-width Bayesian posterior of the network on data (GP regression with ``K^out``).

    The training kernel is built in tiles (:func:`fieldres.bayes.gp.nngp_kernel`) and
    factorised once; the test points are processed in batches of ``batch_size`` (their
    cross kernel, ``n x batch_size``, is built per batch). Memory: ``2 n^2`` float64 for the
    kernel and its factor plus ``n x batch_size`` per batch. ``architecture="ffnet"``
    ignores ``rho``. Differentiable in ``rho``, ``noise`` and ``hyper``.
    """
    kw = dict(hyper=hyper, activation=activation, architecture=architecture)
    K = gp.nngp_kernel(X_train, None, rho, depth, **kw)
    fit = gp.gp_fit(K, Y_train, noise, check=check)
    if X_test is None:
        if Y_test is not None:
            raise FieldresInputError("Y_test given without X_test")
        return gp.gp_summary(fit, None)
    X_test = jnp.asarray(X_test)
    b = int(batch_size)
    if b < 1:
        raise FieldresInputError(f"batch_size must be >= 1, got {batch_size}")
    batches = []
    for s in range(0, X_test.shape[0], b):
        Xb = X_test[s: s + b]
        batches.append(gp.gp_predict(fit, gp.nngp_kernel(X_train, Xb, rho, depth, **kw),
                                     gp.nngp_diagonal(Xb, rho, depth, **kw)))
    return gp.gp_summary(fit, batches, Y_test)


def network_log_evidence(
    X_train: Float[ArrayLike, "n d"],
    Y_train: Float[ArrayLike, "n ..."],
    *,
    rho: ArrayLike,
    depth: int,
    noise: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    architecture: str = "resnet",
    check: bool = True,
) -> Array:
    """``log p(Y | X; rho, T, hyper)`` of the infinite-width network (differentiable)."""
    K = gp.nngp_kernel(X_train, None, rho, depth, hyper, activation, architecture)
    return gp.log_evidence(K, Y_train, noise, check=check)


@dataclasses.dataclass(frozen=True)
class EvidenceOptimum:
    """Result of :func:`evidence_optimal_rho`.

    ``rho`` is ``nan`` unless ``status == Status.OK``; ``grid_rho`` / ``grid_log_evidence``
    are the bracketing grid; ``message`` says what happened.
    """

    rho: float
    log_evidence: float
    status: Status
    message: str
    grid_rho: np.ndarray
    grid_log_evidence: np.ndarray


def evidence_optimal_rho(
    X_train: Float[ArrayLike, "n d"],
    Y_train: Float[ArrayLike, "n ..."],
    *,
    depth: int,
    noise: ArrayLike,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    rho_grid: Sequence[float] | None = None,
    atol: float = 1e-5,
) -> EvidenceOptimum:
    r"""The residual scaling that maximises the log evidence :math:`\log p(Y\,|\,\rho)`.

    1. The log evidence on ``rho_grid`` (default: ``2^{k/2} / sqrt(L)``, ``k = -12..12``);
       the largest value is bracketed by its grid neighbours.
    2. ``d log p / d log rho = 0`` is solved in that bracket by ``optimistix.Bisection``
       (absolute tolerance ``atol`` in ``log rho``), the derivative by ``jax.grad``.

    A maximum at a grid end is reported (``Status.INCREASING`` / ``DECREASING``), never
    returned as if it were optimal.
    """
    if rho_grid is None:
        rho_grid = [2.0 ** (k / 2) / np.sqrt(depth) for k in range(-12, 13)]
    grid = np.asarray(sorted(float(r) for r in rho_grid))
    if grid.size < 3 or not np.all(grid > 0) or not np.all(np.isfinite(grid)):
        raise FieldresInputError("rho_grid needs at least three positive finite values")
    X = jnp.asarray(X_train)
    Y = jnp.asarray(Y_train)
    kw = dict(depth=depth, noise=noise, hyper=hyper, activation=activation)
    values = np.array([float(network_log_evidence(X, Y, rho=r, **kw)) for r in grid])
    i = int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)))
    if i == grid.size - 1:
        return EvidenceOptimum(float("nan"), float("nan"), Status.INCREASING,
                               f"log evidence increases up to the largest rho searched "
                               f"({grid[-1]:g})", grid, values)
    if i == 0:
        return EvidenceOptimum(float("nan"), float("nan"), Status.DECREASING,
                               f"log evidence decreases from the smallest rho searched "
                               f"({grid[0]:g})", grid, values)

    def dlogev(u, args):
        # the data travel as arguments: closed over, XLA would constant-fold X X^T
        Xa, Ya = args
        return jax.grad(lambda v: network_log_evidence(Xa, Ya, rho=jnp.exp(v), check=False,
                                                       **kw))(u)

    lo, hi = np.log(grid[i - 1]), np.log(grid[i + 1])
    d_lo, d_hi = (float(dlogev(jnp.asarray(u), (X, Y))) for u in (lo, hi))
    if not d_lo > 0 > d_hi:
        return EvidenceOptimum(float("nan"), float("nan"), Status.SOLVER_FAILED,
                               "d log evidence / d log rho does not change sign across the "
                               "bracket of the grid maximum", grid, values)
    sol = optx.root_find(dlogev, optx.Bisection(rtol=0.0, atol=atol), jnp.asarray(np.log(grid[i])),
                         (X, Y), options=dict(lower=jnp.asarray(lo), upper=jnp.asarray(hi)),
                         throw=False, max_steps=128)
    if sol.result != optx.RESULTS.successful:
        return EvidenceOptimum(float("nan"), float("nan"), Status.SOLVER_FAILED,
                               "the bisection did not converge inside the bracket", grid, values)
    rho = float(jnp.exp(sol.value))
    return EvidenceOptimum(rho, float(network_log_evidence(X, Y, rho=rho, **kw)), Status.OK,
                           "interior maximum found", grid, values)


def rho_scan(
    X_train: Float[ArrayLike, "n d"],
    Y_train: Float[ArrayLike, "n ..."],
    X_test: Float[ArrayLike, "m d"],
    Y_test: Float[ArrayLike, "m ..."],
    *,
    rho_ref: float,
    depth: int,
    noise: ArrayLike,
    factors: Sequence[float] = HALF_OCTAVES,
    hyper: Hyper = Hyper(),
    activation: str | Activation | Callable = "erf",
    batch_size: int = 1024,
) -> list[dict]:
    """The posterior at ``rho = f * rho_ref`` for every factor ``f``: a list of rows with
    ``rho_factor``, ``rho``, ``test_error``, ``test_mse``, ``train_mse``, ``log_evidence``,
    ``kernel_alignment`` (Python floats)."""
    if not (np.isfinite(rho_ref) and rho_ref > 0):
        raise FieldresInputError(f"rho_ref must be positive and finite, got {rho_ref}")
    rows = []
    for f in factors:
        r = network_posterior(X_train, Y_train, X_test, Y_test, rho=f * rho_ref, depth=depth,
                              noise=noise, hyper=hyper, activation=activation,
                              batch_size=batch_size)
        rows.append(dict(rho_factor=float(f), rho=float(f * rho_ref),
                         test_error=float(r.test_error), test_mse=float(r.test_mse),
                         train_mse=float(r.train_mse), log_evidence=float(r.log_evidence),
                         kernel_alignment=float(r.kernel_alignment)))
    return rows
