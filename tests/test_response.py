"""Response function: product formula, finite differences, full Jacobian consistency."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr
from fieldres.signal.response import response, response_jacobian

K0 = jnp.array([[0.05, 0.03, 0.01], [0.03, 0.05, 0.02], [0.01, 0.02, 0.08]])


def product_formula(k0, rho, L, sw2=1.25, swo=1.25, act=fr.Erf()):
    """THEORY Sec. 3: chi^(L) = prod_l [1 + rho^2 sw2 C'(K^(l-1))], chi^out = swo C'(K^L) chi^L."""
    C1 = jax.grad(lambda k: act.variance(k))
    traj = fr.resnet_kernels(jnp.array([[k0]]), rho, L, activation=act).trajectory[:, 0, 0]
    chi = np.prod([1 + rho**2 * sw2 * float(C1(k)) for k in traj[:-1]])
    return chi, swo * float(C1(traj[-1])) * chi


@pytest.mark.parametrize("act", ["erf", "relu", "tanh"])
def test_single_input_product_formula(act):
    a = fr.get_activation(act)
    chi_L, chi_out = product_formula(0.5, 0.3, 10, act=a)
    r = response(jnp.array([[0.5]]), 0.3, 10, activation=a)
    assert float(r.chi_L[0, 0]) == pytest.approx(chi_L, rel=1e-12)
    assert float(r.chi_out[0, 0]) == pytest.approx(chi_out, rel=1e-12)


def test_summaries_match_finite_differences():
    r = response(K0, 0.4, 15)
    f = lambda K: fr.resnet_kernels(K, 0.4, 15).K_out
    eps = 1e-6
    P = K0.shape[0]
    for a in range(P):
        for b in range(P):
            E = jnp.zeros((P, P)).at[a, b].set(1.0).at[b, a].set(1.0)
            fd = (f(K0 + eps * E) - f(K0 - eps * E))[a, b] / (2 * eps)
            assert float(r.chi_out[a, b]) == pytest.approx(float(fd), rel=1e-6), (a, b)


def test_summaries_match_full_jacobian_and_trajectory():
    J = response_jacobian(K0, 0.4, 15)
    r = response(K0, 0.4, 15, trajectory=True)
    P = K0.shape[0]
    for a in range(P):
        for b in range(P):
            expect = J[a, b, a, b] if a == b else J[a, b, a, b] + J[a, b, b, a]
            assert float(r.chi_out[a, b]) == pytest.approx(float(expect), rel=1e-12)
    Jall = response_jacobian(K0, 0.4, 15, layer="all")
    assert Jall.shape == (16, P, P, P, P)
    np.testing.assert_allclose(r.trajectory[:, 1, 1], Jall[:, 1, 1, 1, 1], rtol=1e-12)
    np.testing.assert_allclose(r.trajectory[0], np.ones((P, P)))
    np.testing.assert_allclose(r.trajectory[-1], r.chi_L, rtol=1e-14)


def test_feedforward_response():
    r = response(jnp.array([[0.5]]), 1.0, 5, residual=False)
    C1 = jax.grad(lambda k: fr.Erf().variance(k))
    traj = fr.ffnet_kernels(jnp.array([[0.5]]), 5).trajectory[:, 0, 0]
    chi = np.prod([1.25 * float(C1(k)) for k in traj[:-1]])
    assert float(r.chi_L[0, 0]) == pytest.approx(chi, rel=1e-12)


def test_large_P_summaries_cheap():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 20))
    K = fr.input_kernel(X) * 0.05
    r = response(K, 0.1, 50)
    assert r.chi_out.shape == (100, 100) and np.all(np.isfinite(r.chi_out))
