"""Leading-order theory (kernels, response) vs Monte Carlo of real finite networks.

Errors are measured in units of the Monte-Carlo standard error; the width is large enough
that the O(1/N) bias of the means is small against the standard error (checked below).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr
from fieldres.simulation import simulate_kernels, simulate_response

K0 = jnp.array([[0.30, 0.12], [0.12, 0.25]])
RHO, L, N = 0.5, 8, 400


@pytest.mark.parametrize("act", ["erf", pytest.param("tanh", marks=pytest.mark.slow), "relu"])
def test_kernel_trajectory_matches_simulation(act):
    theory = fr.resnet_kernels(K0, RHO, L, activation=act)
    sim = simulate_kernels(jax.random.PRNGKey(1), K0, rho=RHO, depth=L, width=N,
                           n_networks=4000, activation=act)
    z = np.abs(np.asarray(sim.K_mean - theory.trajectory)) / np.asarray(sim.K_stderr)
    assert z[1:].max() < 4.0, z.max()
    a = fr.get_activation(act)
    C_theory = jax.vmap(a.kernel)(theory.trajectory)
    zc = np.abs(np.asarray(sim.C_mean - C_theory)) / np.asarray(sim.C_stderr)
    assert zc.max() < 4.0, zc.max()
    zo = np.abs(np.asarray(sim.out_mean - theory.K_out)) / np.asarray(sim.out_stderr)
    assert zo.max() < 4.0


def test_simulation_detects_a_wrong_theory():
    """The same comparison rejects a theory with rho applied twice (the test can fail)."""
    wrong = fr.resnet_kernels(K0, RHO**2, L)
    sim = simulate_kernels(jax.random.PRNGKey(1), K0, rho=RHO, depth=L, width=N,
                           n_networks=4000)
    z = np.abs(np.asarray(sim.K_mean[-1] - wrong.K_L)) / np.asarray(sim.K_stderr[-1])
    assert z.max() > 10


@pytest.mark.parametrize("which", ["diagonal", "offdiagonal"])
def test_response_matches_pathwise_monte_carlo(which):
    P = K0.shape[0]
    eye = jnp.eye(P)
    tangent = eye if which == "diagonal" else jnp.ones((P, P)) - eye
    theory = fr.response(K0, RHO, L).chi_out
    sim = simulate_response(jax.random.PRNGKey(2), K0, tangent, rho=RHO, depth=L, width=N,
                            n_networks=4000)
    mask = np.asarray(eye if which == "diagonal" else 1 - eye, bool)
    z = np.abs(np.asarray(sim.mean - theory))[mask] / np.asarray(sim.stderr)[mask]
    assert z.max() < 4.0, z


def test_mean_error_shrinks_like_one_over_n():
    """E[C^(L)] - C_LO ~ Delta / N: fitted exponent -1 (THEORY §5 case, single input)."""
    k0 = jnp.array([[0.5]])
    lo = float(fr.Erf().kernel(fr.resnet_kernels(k0, 0.3, 10).K_L)[0, 0])
    widths = np.array([25, 50, 100])
    err, se = [], []
    for i, n in enumerate(widths):
        sim = simulate_kernels(jax.random.PRNGKey(10 + i), k0, rho=0.3, depth=10, width=int(n),
                               n_networks=40_000, keep_last=False, batch_size=8192)
        err.append(float(sim.C_mean[-1, 0, 0]) - lo)
        se.append(float(sim.C_stderr[-1, 0, 0]))
    err, se = np.array(err), np.array(se)
    assert np.all(err < 0) and np.all(np.abs(err) > 4 * se)  # resolved at every width
    # weighted least squares of log|err| on log N
    w = (np.abs(err) / se) ** 2
    A = np.stack([np.log(widths), np.ones(3)], 1)
    coef = np.linalg.solve(A.T @ (w[:, None] * A), A.T @ (w * np.log(np.abs(err))))
    cov = np.linalg.inv(A.T @ (w[:, None] * A))
    slope, slope_se = coef[0], np.sqrt(cov[0, 0])
    assert abs(slope + 1) < max(3 * slope_se, 0.1), (slope, slope_se)
