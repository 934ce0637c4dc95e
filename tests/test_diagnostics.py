"""Convergence diagnostics (ArviZ's rank-normalised split-R̂, bulk/tail ESS) on known targets."""

import math

import jax
import numpy as np
import pytest

from fieldres.bayes import sampling
from fieldres.bayes.diagnostics import diagnose


def _ar1(rng, C, S, phi, shape=()):
    x = np.empty((C, S) + shape)
    x[:, 0] = rng.normal(size=(C,) + shape)
    s = math.sqrt(1 - phi**2)
    for t in range(1, S):
        x[:, t] = phi * x[:, t - 1] + s * rng.normal(size=(C,) + shape)
    return x


def test_independent_gaussian_draws_have_rhat_one_and_full_ess():
    rng = np.random.default_rng(0)
    C, S = 4, 1000
    d = diagnose(dict(a=rng.normal(size=(C, S)), b=rng.normal(size=(C, S, 3))))
    assert d.n_chains == C and d.n_draws == S and d.n_constant == 0
    assert d.rhat_max < 1.01 and d.converged
    # independent draws: ESS ~ C S (bulk and tail; MC spread a few percent)
    assert 0.8 * C * S < d.ess_bulk_min <= d.per_quantity["a"]["ess_bulk_min"] < 1.25 * C * S
    assert 0.7 * C * S < d.ess_tail_min < 1.3 * C * S


def test_ar1_chain_ess_matches_its_integrated_autocorrelation():
    """AR(1) with coefficient phi: ESS = C S (1 - phi) / (1 + phi)."""
    rng = np.random.default_rng(1)
    C, S, phi = 4, 4000, 0.8
    x = _ar1(rng, C, S, phi, (4,))
    d = diagnose(dict(x=x))
    expected = C * S * (1 - phi) / (1 + phi)
    bulk = np.array([diagnose(dict(x=x[..., i])).ess_bulk_min for i in range(4)])
    assert np.all(np.abs(bulk / expected - 1) < 0.25), bulk / expected
    assert d.rhat_max < 1.01 and d.converged  # 4 x 1778 effective draws


def test_stuck_chain_has_large_rhat():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 500))
    x[3] += 3.0  # one chain sits in another mode
    d = diagnose(dict(x=x))
    assert d.rhat_max > 1.2 and not d.converged
    # a chain frozen at one value (never moves) is also caught
    y = rng.normal(size=(4, 500))
    y[0] = 2.5
    assert diagnose(dict(y=y)).rhat_max > 1.05


def test_too_few_effective_draws_are_not_converged():
    rng = np.random.default_rng(3)
    d = diagnose(dict(x=rng.normal(size=(4, 60))))  # ESS ~ 240 < 400
    assert d.ess_min < 400 and not d.converged


def test_constant_components_are_skipped_and_one_chain_is_undefined():
    rng = np.random.default_rng(4)
    x = np.stack([rng.normal(size=(4, 800)), np.ones((4, 800))], -1)
    d = diagnose(dict(x=x))
    assert d.n_constant == 1 and d.rhat_max < 1.01
    one = diagnose(dict(x=rng.normal(size=(1, 800))))
    assert not one.converged and math.isnan(one.rhat_max)
    assert one.to_dict()["rhat_max"] is None


def test_bad_input():
    with pytest.raises(ValueError, match="same"):
        diagnose(dict(a=np.zeros((4, 10)), b=np.zeros((3, 10))))
    with pytest.raises(ValueError, match="no quantities"):
        diagnose({})


def test_mala_on_a_gaussian_posterior_converges():
    """MALA on N(0, diag(1, 4)): R̂ -> 1 and ESS in the range MALA reaches in this budget."""
    def ld(p, data, c):
        return -0.5 * (p[0] ** 2 + p[1] ** 2 / 4.0)

    pos = 3.0 * jax.random.normal(jax.random.key(0), (4, 2))  # over-dispersed prior draws
    r = sampling.sample(jax.random.key(1), sampling.MALA(ld), pos, n_steps=6000,
                        trace_fn=lambda p, c: p, step_size=0.5, chunk_size=6000)
    draws = np.swapaxes(r.traces, 0, 1)  # (chain, draw, 2)
    d = diagnose(dict(theta=draws))
    assert d.rhat_max < 1.01 and d.converged
    assert 400 <= d.ess_min < 4 * 3000
    # burn-in samples of the same chains, started far apart, are not converged
    short = sampling.sample(jax.random.key(1), sampling.MALA(ld), 10.0 + 20.0 * pos,
                            n_steps=40, burn_in=1, trace_fn=lambda p, c: p, step_size=0.5,
                            adapt_step_size=False)
    assert diagnose(dict(theta=np.swapaxes(short.traces, 0, 1))).rhat_max > 1.1
