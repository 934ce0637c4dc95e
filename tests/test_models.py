"""The equinox ResNet: THEORY §1 parametrisation, prior = initialisation, kernels vs theory."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fieldres
from fieldres.bayes import models as models

HYPER = fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.2, sigma_w2_out=1.1, sigma_b2_out=0.3,
                       sigma_w2_in=1.5, sigma_b2_in=0.1)


def _numpy_forward(eff, x, rho, phi):
    """THEORY §1 written out with explicit effective weights, in numpy."""
    eff = [np.asarray(a) for a in eff]
    w_in, b_in, w, b, w_out, b_out = eff
    h = w_in @ x + b_in
    for l in range(w.shape[0]):
        h = h + rho * (w[l] @ phi(h) + b[l])
    return w_out @ phi(h) + b_out, h


def test_forward_matches_numpy_reference():
    key = jax.random.key(3)
    params = models.init_params(key, d_in=7, width=11, depth=5, d_out=2)
    x = np.random.default_rng(0).normal(size=7)
    eff = models.effective_weights(params, HYPER)
    y_ref, h_ref = _numpy_forward(eff, x, 0.37, scipy.special.erf)
    y = models.forward(params, x, 0.37, HYPER, "erf")
    np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-12, atol=1e-12)
    h = models.hidden_states(params, x, 0.37, HYPER, "erf")
    np.testing.assert_allclose(np.asarray(h), h_ref, rtol=1e-12, atol=1e-12)
    traj = models.hidden_states(params, x, 0.37, HYPER, "erf", all_layers=True)
    assert traj.shape == (6, 11)
    np.testing.assert_allclose(np.asarray(traj[-1]), h_ref, rtol=1e-12)
    # rho = 0: every residual layer is the identity
    y0, h0 = _numpy_forward(eff, x, 0.0, scipy.special.erf)
    np.testing.assert_allclose(h0, np.asarray(eff[0]) @ x + np.asarray(eff[1]))


def test_effective_weight_variances_are_theory_variances():
    """Initialisation draws W ~ N(0, sigma^2 / fan_in), b ~ N(0, sigma_b^2) (THEORY §1)."""
    d_in, N, L = 300, 200, 3
    params = models.init_params(jax.random.key(0), d_in, N, L, d_out=50)
    eff = models.effective_weights(params, HYPER)
    expected = dict(w_in=HYPER.sigma_w2_in / d_in, b_in=HYPER.sigma_b2_in, w=HYPER.sigma_w2 / N,
                    b=HYPER.sigma_b2, w_out=HYPER.sigma_w2_out / N, b_out=HYPER.sigma_b2_out)
    for name, var in expected.items():
        a = np.asarray(getattr(eff, name)).ravel()
        # sample variance of n Gaussians: relative SE sqrt(2 / n)
        se = var * math.sqrt(2.0 / a.size)
        assert abs(np.mean(a**2) - var) < 4 * se, (name, np.mean(a**2), var)
        assert abs(np.mean(a)) < 4 * math.sqrt(var / a.size), name


def test_log_prior_is_standard_normal_in_whitened_coordinates():
    params = models.init_params(jax.random.key(1), 4, 5, 2, 3)
    flat = np.concatenate([np.asarray(x).ravel() for x in params])
    assert models.n_params(params) == flat.size == 5 * 4 + 5 + 2 * 25 + 2 * 5 + 3 * 5 + 3
    ref = scipy.stats.norm.logpdf(flat).sum()
    assert float(models.log_prior(params)) == pytest.approx(ref, rel=1e-12)
    g = jax.grad(models.log_prior)(params)
    for gi, pi in zip(g, params):
        np.testing.assert_allclose(np.asarray(gi), -np.asarray(pi), rtol=1e-12)
    # the effective-weight prior differs only by the constant log-Jacobian
    eff = models.effective_weights(params, HYPER)
    sig = models.effective_weights(jax.tree.map(jnp.ones_like, params), HYPER)
    lp_eff = sum(scipy.stats.norm.logpdf(np.asarray(e), scale=np.asarray(s)).sum()
                 for e, s in zip(eff, sig))
    log_jac = sum(np.log(np.asarray(s)).sum() for s in sig)
    assert lp_eff == pytest.approx(ref - log_jac, rel=1e-12)


def test_initialised_kernels_match_core_calculator():
    """Mean empirical kernels over fresh networks = resnet_kernels, in units of the MC SE.

    Checks the variances, rho placement and readout of the model against THEORY §2:
    K_hat^(L) vs K^(L), C_hat^(L) vs C_phi(K^(L)), and E[y y^T] vs K^out (P = 3 inputs).
    The O(1/N) finite-width shift (about 1e-3 here) is far below the SE.
    """
    P, d_in, N, L, rho = 3, 6, 256, 4, 0.6
    X = np.random.default_rng(1).normal(size=(P, d_in)) * 0.8
    K0 = fieldres.input_kernel(X, HYPER.sigma_w2_in, HYPER.sigma_b2_in)
    th = fieldres.resnet_kernels(K0, rho, L, HYPER, "erf", trajectory=False)
    act = fieldres.get_activation("erf")
    C_th = np.asarray(act.kernel(th.K_L))

    @jax.jit
    def batch(keys):
        def one(k):
            p = models.init_params(k, d_in, N, L, d_out=8)
            K, C = models.hidden_kernels(p, X, rho, HYPER, "erf")
            y = models.apply(p, X, rho, HYPER, "erf")  # (P, 8): 8 independent readouts
            return K, C, y @ y.T / y.shape[1]
        return jax.vmap(one)(keys)

    n_nets, per = 400, 50
    outs = [batch(jax.random.split(jax.random.key(10 + i), per)) for i in range(n_nets // per)]
    K, C, Y = (np.concatenate([np.asarray(o[j]) for o in outs]) for j in range(3))
    for name, samples, theory in (("K", K, th.K_L), ("C", C, C_th), ("Kout", Y, th.K_out)):
        mean = samples.mean(0)
        se = samples.std(0, ddof=1) / math.sqrt(n_nets)
        z = np.abs(mean - np.asarray(theory)) / se
        assert z.max() < 4.5, (name, z, mean, theory)
        # the test has power: the SE is below 3 % of the kernel's largest entry
        assert se.max() < 0.03 * np.abs(np.asarray(theory)).max(), (name, se)
    # a wrong rho is detected by the same comparison
    wrong = fieldres.resnet_kernels(K0, 1.3 * rho, L, HYPER, "erf", trajectory=False)
    se = K.std(0, ddof=1) / math.sqrt(n_nets)
    assert (np.abs(K.mean(0) - np.asarray(wrong.K_L)) / se).max() > 10


def test_resnet_module():
    net = models.ResNet.init(jax.random.key(0), d_in=5, width=16, depth=3, d_out=2, rho=0.4,
                             hyper=HYPER, activation="tanh")
    assert net.depth == 3 and net.width == 16
    X = jnp.asarray(np.random.default_rng(2).normal(size=(4, 5)))
    out = net.batch(X)
    assert out.shape == (4, 2)
    np.testing.assert_allclose(np.asarray(jax.vmap(net)(X)), np.asarray(out), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(out), np.asarray(models.apply(net.params, X, 0.4, HYPER, "tanh")), rtol=1e-12)
    K, C = net.kernels(X)
    assert K.shape == C.shape == (4, 4)
    np.testing.assert_allclose(np.asarray(K), np.asarray(K).T)
    assert float(net.log_prior()) == pytest.approx(float(models.log_prior(net.params)))
    # jit / grad through the module (rho and the variances are leaves)
    g = eqx.filter_grad(lambda m: jnp.sum(m.batch(X)))(net)
    assert np.isfinite(float(g.rho))
    net32 = models.ResNet.init(jax.random.key(0), 5, 8, 2, dtype="float32")
    assert net32(jnp.ones(5)).dtype == jnp.float32


@pytest.mark.parametrize("kw", [dict(width=0), dict(depth=0), dict(d_in=2.5), dict(d_out=True)])
def test_bad_sizes(kw):
    args = dict(d_in=3, width=4, depth=2, d_out=1) | kw
    with pytest.raises(ValueError):
        models.init_params(jax.random.key(0), **args)
