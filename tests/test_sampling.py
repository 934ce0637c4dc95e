"""Langevin samplers on Bayesian linear regression, where the exact posterior is known.

Prior w ~ N(0, I), likelihood y ~ N(X w, T): the posterior is Gaussian with precision
A = I + X^T X / T and mean mu = A^-1 X^T y / T. MALA must reproduce (mu, A^-1); the
unadjusted (full-batch) Langevin algorithm with step eps has the exactly known stationary
covariance (A (I - eps A / 2))^-1; mini-batch SGLD's stationary moments follow from a
linear fixed-point equation over all mini-batches. Comparisons are in units of the
Monte-Carlo standard error over independent chains (fixed seeds).
"""

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fieldres.bayes import sampling as sampling

T = 0.5
D = 3


def _problem(n=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    w = rng.normal(size=D)
    y = X @ w + math.sqrt(T) * rng.normal(size=n)
    A = np.eye(D) + X.T @ X / T
    mu = np.linalg.solve(A, X.T @ y / T)
    return X, y, A, mu


def logprior(p, ctx):
    return -0.5 * jnp.sum(p**2)


def loglik(p, example, ctx):
    x, y = example
    return -0.5 * (y - x @ p) ** 2 / T


def logdensity(p, data, ctx):
    X, y = data
    return logprior(p, ctx) - 0.5 * jnp.sum((y - X @ p) ** 2) / T


def _identity(p, ctx):
    return p


def _moments_z(samples, mu, cov):
    """Per-chain mean and (exact-mean-centred) covariance vs truth, in SE over chains."""
    S, C, d = samples.shape
    means = samples.mean(0)  # (C, d)
    dev = samples - mu
    covs = np.einsum("sci,scj->cij", dev, dev) / S  # unbiased for any autocorrelation
    z_mean = (means.mean(0) - mu) / (means.std(0, ddof=1) / math.sqrt(C))
    se_cov = covs.std(0, ddof=1) / math.sqrt(C)
    z_cov = (covs.mean(0) - cov) / se_cov
    return z_mean, z_cov, se_cov


def test_mala_matches_exact_posterior():
    X, y, A, mu = _problem()
    Sigma = np.linalg.inv(A)
    C = 16
    pos = jax.random.normal(jax.random.key(1), (C, D))
    r = sampling.sample(jax.random.key(0), sampling.MALA(logdensity, (X, y)), pos,
                        n_steps=4000, burn_in=1000, trace_fn=_identity, step_size=0.1,
                        chunk_size=1000)
    assert r.message == "ok" and not r.diverged
    assert r.traces.shape == (3000, C, D) and r.valid.all()
    assert 0.45 < r.acceptance_rate.mean() < 0.7  # adapted towards 0.574
    z_mean, z_cov, se_cov = _moments_z(r.traces, mu, Sigma)
    assert np.abs(z_mean).max() < 4.0, z_mean
    assert np.abs(z_cov).max() < 4.0, z_cov
    # power: a 5 % error of the posterior variances would be > 4 SE
    assert np.all(np.diag(se_cov) < 0.05 * np.diag(Sigma) / 4)


def test_ula_matches_discretised_stationary_law():
    X, y, A, mu = _problem()
    eps = 0.01
    C = 16
    pos = jnp.asarray(np.tile(mu, (C, 1)))  # start at the mean: no burn-in bias
    r = sampling.sample(jax.random.key(2), sampling.ULA(logprior, loglik, (X, y)), pos,
                        n_steps=12000, burn_in=500, trace_fn=_identity, step_size=eps,
                        chunk_size=4000)
    Sigma_eps = np.linalg.inv(A @ (np.eye(D) - eps * A / 2))
    z_mean, z_cov, _ = _moments_z(r.traces, mu, Sigma_eps)
    assert np.abs(z_mean).max() < 4.0, z_mean
    assert np.abs(z_cov).max() < 4.0, z_cov
    # ... and is distinguishable from the continuous-time posterior (the O(eps) bias)
    _, z_cont, _ = _moments_z(r.traces, mu, np.linalg.inv(A))
    assert np.abs(z_cont).max() > 8.0
    np.testing.assert_allclose(r.acceptance_rate, 1.0)  # no accept/reject step


def _sgld_stationary(X, y, eps, b):
    """Exact stationary mean and covariance of mini-batch SGLD on the linear model."""
    n = len(y)
    batches = list(itertools.combinations(range(n), b))
    Ms, vs = [], []
    for B in batches:
        Xb, yb = X[list(B)], y[list(B)]
        A_B = np.eye(D) + (n / b) * Xb.T @ Xb / T
        Ms.append(np.eye(D) - eps * A_B)
        vs.append(eps * (n / b) * Xb.T @ yb / T)
    Ms, vs = np.array(Ms), np.array(vs)
    EM, Ev = Ms.mean(0), vs.mean(0)
    m = np.linalg.solve(np.eye(D) - EM, Ev)
    # Q = E[x x^T]: Q = E[M Q M^T] + E[M m v^T + v m^T M^T + v v^T] + 2 eps I
    EMM = np.einsum("bij,bkl->ikjl", Ms, Ms).reshape(D * D, D * D) / len(batches)
    rhs = (np.einsum("bij,j,bk->ik", Ms, m, vs) + np.einsum("bi,j,bkj->ik", vs, m, Ms)
           + np.einsum("bi,bk->ik", vs, vs)) / len(batches) + 2 * eps * np.eye(D)
    Q = np.linalg.solve(np.eye(D * D) - EMM, rhs.ravel()).reshape(D, D)
    return m, Q - np.outer(m, m)


def test_sgld_minibatch_matches_its_exact_stationary_law():
    X, y, A, mu = _problem(n=8, seed=3)
    eps, b = 0.01, 2
    m_exact, cov_exact = _sgld_stationary(X, y, eps, b)
    np.testing.assert_allclose(m_exact, mu, rtol=1e-10)  # unbiased mean
    assert np.abs(cov_exact - np.linalg.inv(A)).max() > 0.02  # the mini-batch noise is visible
    C = 16
    pos = jnp.asarray(np.tile(mu, (C, 1)))
    r = sampling.sample(jax.random.key(4), sampling.SGLD(logprior, loglik, (X, y), b), pos,
                        n_steps=12000, burn_in=500, trace_fn=_identity, step_size=eps,
                        chunk_size=4000)
    z_mean, z_cov, _ = _moments_z(r.traces, m_exact, cov_exact)
    assert np.abs(z_mean).max() < 4.0, z_mean
    assert np.abs(z_cov).max() < 4.0, z_cov


def test_resume_and_chunking_reproduce_the_same_chain(tmp_path):
    X, y, _, _ = _problem()
    pos = jax.random.normal(jax.random.key(1), (4, D))
    common = dict(n_steps=300, burn_in=100, thin=5, trace_fn=_identity, step_size=0.05)
    ref = sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                          chunk_size=1000, mean_fn=_identity, **common)
    chunked = sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                              chunk_size=35, mean_fn=_identity, **common)
    np.testing.assert_array_equal(ref.traces, chunked.traces)
    # interrupted after 170 steps, then resumed from the checkpoint
    path = tmp_path / "run.npz"
    part = sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                           chunk_size=35, mean_fn=_identity, save_path=path,
                           **(common | dict(n_steps=170)))
    assert part.steps == 170 and path.is_file() and path.with_suffix(".json").is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["n_chains"] == 4 and meta["sampler"] == "MALA"
    resumed = sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                              chunk_size=35, mean_fn=_identity, save_path=path, resume=True,
                              **common)
    assert resumed.steps == 300
    np.testing.assert_array_equal(resumed.traces, ref.traces)
    np.testing.assert_allclose(resumed.means, ref.means, rtol=1e-12)
    np.testing.assert_allclose(resumed.acceptance_rate, ref.acceptance_rate, rtol=1e-12)
    np.testing.assert_allclose(ref.means, ref.traces.mean(0), rtol=1e-12)
    # resuming with other settings is refused
    with pytest.raises(ValueError, match="cannot resume"):
        sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                        mean_fn=_identity, save_path=path, resume=True,
                        **(common | dict(thin=2)))
    with pytest.raises(ValueError, match="state arrays"):  # another structure (no mean_fn)
        sampling.sample(jax.random.key(7), sampling.MALA(logdensity, (X, y)), pos,
                        save_path=path, resume=True, **common)


def test_divergence_stops_and_keeps_samples():
    X, y, _, mu = _problem()
    pos = jnp.asarray(np.tile(mu, (4, 1)))
    # a step far beyond the stability limit 2 / lambda_max: the chain explodes
    r = sampling.sample(jax.random.key(0), sampling.ULA(logprior, loglik, (X, y)), pos,
                        n_steps=4000, burn_in=0, trace_fn=_identity, step_size=0.5,
                        chunk_size=50)
    assert r.diverged and "diverged" in r.message and "step size" in r.message
    assert r.steps < 4000
    assert np.all(np.asarray(r.state.diverged_at) >= 0)
    kept = r.traces[r.valid]
    assert kept.size > 0 and np.all(np.isfinite(kept))
    assert np.all(np.isfinite(np.asarray(r.positions)))  # frozen at the last finite state
    # a non-finite start is a divergence at step 0 (MALA itself rejects non-finite proposals)
    bad = pos.at[0, 0].set(jnp.nan)
    r2 = sampling.sample(jax.random.key(0), sampling.MALA(logdensity, (X, y)), bad,
                         n_steps=10, trace_fn=_identity)
    assert r2.diverged and r2.steps == 0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_steps=0), "n_steps"),
        (dict(n_steps=10, burn_in=10), "burn_in"),
        (dict(n_steps=10, burn_in=5, thin=6), "no samples"),
        (dict(n_steps=10, step_size=-1.0), "step_size"),
        (dict(n_steps=10, adapt_step_size=True, sampler="ula"), "acceptance"),
    ],
)
def test_bad_arguments(kw, match):
    X, y, _, _ = _problem()
    kw = dict(kw)
    smp = (sampling.ULA(logprior, loglik, (X, y)) if kw.pop("sampler", "mala") == "ula"
           else sampling.MALA(logdensity, (X, y)))
    with pytest.raises(ValueError, match=match):
        sampling.sample(jax.random.key(0), smp, jnp.zeros((2, D)), **kw)


def test_bad_positions_and_batch_size():
    X, y, _, _ = _problem()
    with pytest.raises(ValueError, match="chain axis"):
        sampling.sample(jax.random.key(0), sampling.MALA(logdensity, (X, y)),
                        {"a": jnp.zeros((2, D)), "b": jnp.zeros((3,))}, n_steps=4)
    with pytest.raises(ValueError, match="batch_size"):
        sampling.SGLD(logprior, loglik, (X, y), batch_size=100)


@pytest.mark.slow
def test_float32_chains_stay_float32():
    """blackjax's noise is float64 under x64; the driver keeps float32 runs in float32."""
    X, y, _, _ = _problem()
    data = (jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32))
    pos = jnp.zeros((2, D), jnp.float32)
    for smp in (sampling.MALA(logdensity, data), sampling.SGLD(logprior, loglik, data, 4)):
        r = sampling.sample(jax.random.key(0), smp, pos, n_steps=20, trace_fn=_identity)
        assert r.traces.dtype == np.float32 and r.positions.dtype == jnp.float32


@pytest.mark.slow
def test_chains_are_sharded_over_devices():
    """With two (virtual CPU) devices the chain axis is split and results are unchanged."""
    code = textwrap.dedent("""
        import os, json
        import jax, jax.numpy as jnp, numpy as np
        jax.config.update("jax_enable_x64", True)
        from fieldres.bayes import sampling as sampling
        def ld(p, data, c):
            return -0.5 * jnp.sum((p - c) ** 2)
        pos = jnp.zeros((4, 2))
        ctx = jnp.arange(4.0)
        runs = [sampling.sample(jax.random.key(0), sampling.MALA(ld), pos, n_steps=200,
                                context=ctx, trace_fn=lambda p, c: p, shard=s)
                for s in (True, False)]
        sh = runs[0].state.chain.position.sharding
        print(json.dumps(dict(n_dev=len(jax.devices()), n_shard=len(sh.device_set),
                              same=bool(np.allclose(runs[0].traces, runs[1].traces)),
                              means=runs[0].traces.mean((0, 2)).tolist())))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert d["n_dev"] == 2 and d["n_shard"] == 2 and d["same"]
    # each chain samples around its own context (per-chain model parameters)
    np.testing.assert_allclose(d["means"], [0, 1, 2, 3], atol=0.5)


def test_nuts_with_window_adaptation_matches_exact_posterior():
    X, y, A, mu = _problem()
    Sigma = np.linalg.inv(A)
    C = 16
    pos = jax.random.normal(jax.random.key(1), (C, D))
    r = sampling.sample(jax.random.key(3), sampling.NUTS(logdensity, (X, y)), pos,
                        n_steps=2500, burn_in=500, trace_fn=_identity, step_size=0.1,
                        chunk_size=2000)
    assert r.message == "ok" and r.traces.shape == (2000, C, D)
    assert np.all(r.divergences == 0)
    assert 0.6 < r.acceptance_rate.mean() < 0.97  # dual averaging towards 0.8
    # the adapted diagonal inverse mass matrix is close to the posterior variances
    imm = np.asarray(r.state.chain.inverse_mass_matrix)
    np.testing.assert_allclose(imm.mean(0), np.diag(Sigma), rtol=0.3)
    z_mean, z_cov, se_cov = _moments_z(r.traces, mu, Sigma)
    assert np.abs(z_mean).max() < 4.0, z_mean
    assert np.abs(z_cov).max() < 4.0, z_cov
    # power: a 10 % error of the posterior variances would be > 4 SE
    assert np.all(np.diag(se_cov) < 0.1 * np.diag(Sigma) / 4)


@pytest.mark.slow
def test_nuts_resume_after_warmup_reproduces_the_chain(tmp_path):
    X, y, _, _ = _problem()
    pos = jax.random.normal(jax.random.key(1), (4, D))
    common = dict(n_steps=200, burn_in=100, thin=2, trace_fn=_identity, chunk_size=30)
    smp = sampling.NUTS(logdensity, (X, y))
    ref = sampling.sample(jax.random.key(5), smp, pos, **common)
    path = tmp_path / "nuts.npz"
    part = sampling.sample(jax.random.key(5), smp, pos, save_path=path,
                           **(common | dict(n_steps=160)))
    assert part.steps == 160
    resumed = sampling.sample(jax.random.key(5), smp, pos, save_path=path, resume=True,
                              **common)
    np.testing.assert_array_equal(resumed.traces, ref.traces)
    np.testing.assert_array_equal(resumed.step_size, ref.step_size)


def _blackjax_names(module) -> set[str]:
    """Every ``blackjax.a.b...`` attribute chain and ``blackjax`` import in a module's code."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, n = [], node
            while isinstance(n, ast.Attribute):
                parts.append(n.attr)
                n = n.value
            if isinstance(n, ast.Name) and n.id == "blackjax":
                names.add(".".join(["blackjax"] + parts[::-1]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("blackjax"):
            names.add("from " + node.module)
        elif isinstance(node, ast.Import):
            names |= {"import " + a.name for a in node.names if a.name.startswith("blackjax.")}
    # keep the longest chains only (blackjax.mala is a prefix of blackjax.mala.init)
    return {a for a in names if not any(b.startswith(a + ".") for b in names)}


def test_samplers_use_only_blackjax_documented_api():
    """Only blackjax's documented entry points, no internals (``blackjax.mcmc.*`` etc.)."""
    from fieldres.bayes import samplers

    allowed = {"blackjax.mala.init", "blackjax.mala.build_kernel", "blackjax.nuts.init",
               "blackjax.nuts.build_kernel", "blackjax.nuts", "blackjax.window_adaptation",
               "blackjax.sgld.build_kernel", "blackjax.sgmcmc.gradients.grad_estimator",
               "blackjax.adaptation.base.get_filter_adapt_info_fn"}
    uses = _blackjax_names(samplers) | _blackjax_names(sampling)
    assert "blackjax.window_adaptation" in uses and "blackjax.mala.build_kernel" in uses
    assert uses <= allowed, uses - allowed
