r"""Convergence diagnostics of several chains: rank-normalised split-R̂ and bulk/tail ESS (ArviZ).

Nothing here is hand-written statistics: :func:`diagnose` hands every quantity's draws,
shaped ``(chain, draw, ...)``, to ``arviz.rhat(method="rank")`` (the rank-normalised,
folded split-R̂ of Vehtari, Gelman, Simpson, Carpenter & Bürkner, Bayesian Analysis 16,
2021) and ``arviz.ess(method="bulk" | "tail")``, and reduces the results to the worst
value over all scalar components (the largest R̂, the smallest ESS).

A run counts as converged when ``rhat_max < 1.01`` and ``ess_min >= 400`` (the thresholds
recommended by Vehtari et al.). Note that the maximum of R̂ over many quantities grows
with their number: for ``4 x 100`` independent draws of 500 quantities it is about 1.03,
so a run that reports many quantities needs more draws than one that reports a few.

A component that is constant over all chains and draws (e.g. the test error of a
posterior that classifies every test image identically) has no defined R̂ (ArviZ returns
NaN); it is skipped and counted in ``n_constant``. Any other NaN makes the run unconverged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .._validation import FieldresInputError

__all__ = ["RHAT_MAX", "ESS_MIN", "Diagnostics", "diagnose"]

#: thresholds of ``converged`` (Vehtari et al. 2021)
RHAT_MAX = 1.01
ESS_MIN = 400.0


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


@dataclass
class Diagnostics:
    """Worst-case R̂ and ESS over every scalar component of every quantity.

    Attributes
    ----------
    rhat_max : float
        Largest rank-normalised split-R̂ (NaN if undefined, e.g. fewer than 2 chains).
    ess_bulk_min, ess_tail_min : float
        Smallest bulk and tail effective sample sizes; ``ess_min`` is the smaller of both.
    converged : bool
        ``rhat_max < 1.01 and ess_min >= 400``.
    n_chains, n_draws : int
    n_constant : int
        Components skipped because they are constant over all draws.
    per_quantity : dict
        The same three numbers for every named quantity.
    """

    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    ess_min: float
    converged: bool
    n_chains: int
    n_draws: int
    n_constant: int = 0
    per_quantity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


def _worst(values: np.ndarray, constant: np.ndarray, largest: bool) -> float:
    v = np.asarray(values, np.float64)[~constant]
    if v.size == 0:
        return float("nan")
    if np.any(~np.isfinite(v)):
        return float("nan")
    return float(v.max() if largest else v.min())


def diagnose(draws: dict[str, np.ndarray], *, rhat_threshold: float = RHAT_MAX,
             ess_threshold: float = ESS_MIN) -> Diagnostics:
    """R̂ and ESS of named quantities, each an array ``(chain, draw, ...)``.

    Parameters
    ----------
    draws:
        ``{name: array}`` with the same ``(chain, draw)`` leading axes for every entry;
        trailing axes are components (each is diagnosed separately).
    rhat_threshold, ess_threshold:
        ``converged`` means ``rhat_max < rhat_threshold`` and ``ess_min >= ess_threshold``.

    Returns
    -------
    Diagnostics
    """
    if not draws:
        raise FieldresInputError("no quantities to diagnose")
    arrays = {k: np.asarray(v, np.float64) for k, v in draws.items()}
    shapes = {v.shape[:2] for v in arrays.values()}
    if any(v.ndim < 2 for v in arrays.values()) or len(shapes) != 1:
        raise FieldresInputError(f"every quantity needs the same (chain, draw) leading axes, got "
                         f"{ {k: v.shape for k, v in arrays.items()} }")
    n_chains, n_draws = shapes.pop()
    az = _arviz()
    per, worst_r, worst_b, worst_t, n_const = {}, [], [], [], 0
    for name, a in arrays.items():
        a = a.reshape(n_chains, n_draws, -1)
        constant = np.all(a == a[:1, :1], axis=(0, 1))
        n_const += int(constant.sum())
        ds = az.convert_to_dataset({"q": a})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = az.rhat(ds, method="rank")["q"].values
            b = az.ess(ds, method="bulk")["q"].values
            t = az.ess(ds, method="tail")["q"].values
        q = dict(rhat_max=_worst(r, constant, True), ess_bulk_min=_worst(b, constant, False),
                 ess_tail_min=_worst(t, constant, False))
        per[name] = {k: (None if not math.isfinite(v) else v) for k, v in q.items()}
        if not np.all(constant):
            worst_r.append(q["rhat_max"])
            worst_b.append(q["ess_bulk_min"])
            worst_t.append(q["ess_tail_min"])

    def red(v, f):
        return float("nan") if not v or any(not math.isfinite(x) for x in v) else float(f(v))

    rhat, bulk, tail = red(worst_r, max), red(worst_b, min), red(worst_t, min)
    ess = red([bulk, tail], min)
    ok = bool(math.isfinite(rhat) and math.isfinite(ess) and rhat < rhat_threshold
              and ess >= ess_threshold)
    return Diagnostics(rhat_max=rhat, ess_bulk_min=bulk, ess_tail_min=tail, ess_min=ess,
                       converged=ok, n_chains=int(n_chains), n_draws=int(n_draws),
                       n_constant=n_const, per_quantity=per)
