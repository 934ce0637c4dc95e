"""Yang-Schoenholz residual mean field (fieldres.meanfield.residual).

Independent routes: the alpha-ReLU kernel against SciPy quadrature and against the ReLU
closed form; the recursions against a NumPy reference; the large-depth laws derived
analytically against fits of the exact recursion; theory against Monte-Carlo simulation of
finite FRN/RRNs in units of the standard error (exact sampler vs explicit weights, and the RRN
against the independent ResNet sampler of fieldres.simulation); the depth-dependent
initialisation; the CLI.
"""

import json
import math

import jax
import numpy as np
import pytest
from scipy import integrate

import fieldres
from fieldres.cli import main
from fieldres.meanfield import residual as rm


def _K(e, p0=1.0):
    return [[p0, p0 * e], [p0 * e, p0]]


# ----------------------------------------------------------------------------------------
# alpha-ReLU Gaussian moments
# ----------------------------------------------------------------------------------------


def _ref_jtilde(c, a):
    """E[max(z1,0)^a max(z2,0)^a] by nested adaptive quadrature (independent of the code)."""
    s = math.sqrt(1 - c * c)

    def inner(x):
        lo = -c * x / s
        f = lambda z: (c * x + s * z) ** a * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return integrate.quad(f, lo, np.inf, epsabs=1e-14, epsrel=1e-12)[0]

    g = lambda x: x**a * math.exp(-x * x / 2) / math.sqrt(2 * math.pi) * inner(x)  # noqa: E731
    return integrate.quad(g, 0, np.inf, epsabs=1e-13, epsrel=1e-11)[0]


@pytest.mark.parametrize("alpha", [0.75, pytest.param(0.6, marks=pytest.mark.slow)])
def test_alpha_relu_kernel_against_quadrature(alpha):
    act = rm.AlphaReLU(alpha)
    for c in (-0.7, 0.0, 0.45, 0.9):
        got = float(act.covariance(2.0, 0.5, c * 1.0))  # sqrt(2 * 0.5) = 1
        assert got == pytest.approx(_ref_jtilde(c, alpha), rel=1e-9, abs=1e-13)
    # moments of one input: E phi^2 and E phi'^2
    q = 1.7
    v = integrate.quad(lambda z: max(z * math.sqrt(q), 0) ** (2 * alpha) * math.exp(-z * z / 2)
                       / math.sqrt(2 * math.pi), 0, np.inf, epsabs=1e-14)[0]
    assert float(act.variance(q)) == pytest.approx(v, rel=1e-10)
    dv = integrate.quad(lambda z: (alpha * (z * math.sqrt(q)) ** (alpha - 1)) ** 2
                        * math.exp(-z * z / 2) / math.sqrt(2 * math.pi), 0, np.inf,
                        epsabs=1e-13)[0]
    assert float(act.derivative_variance(q)) == pytest.approx(dv, rel=1e-8)
    # the diagonal of the kernel is the variance (c = 1 closed form)
    K = np.array([[q, 0.3], [0.3, 0.8]])
    Kc = np.asarray(act.kernel(K))
    assert Kc[0, 0] == pytest.approx(v, rel=1e-10)


def test_alpha_one_is_relu_and_price_derivative():
    a1, relu = rm.AlphaReLU(1.0), fieldres.ReLU()
    for c in (-0.99, -0.3, 0.2, 0.8, 0.999999):
        assert float(a1.covariance(1.3, 0.7, c * math.sqrt(0.91))) == pytest.approx(
            float(relu.covariance(1.3, 0.7, c * math.sqrt(0.91))), rel=1e-12)
    # d/dK_ab E[phi(a) phi(b)] = E[phi'(a) phi'(b)] (Price), against central differences
    act = rm.AlphaReLU(0.75)
    g = float(jax.grad(act.covariance, argnums=2)(1.0, 1.0, 0.4))
    h = 1e-6
    fd = (float(act.covariance(1.0, 1.0, 0.4 + h)) - float(act.covariance(1.0, 1.0, 0.4 - h))
          ) / (2 * h)
    assert g == pytest.approx(fd, rel=1e-7)
    # ... and at correlation one it is E[phi'^2]
    g1 = float(jax.grad(act.covariance, argnums=2)(2.0, 2.0, 2.0))
    assert g1 == pytest.approx(float(act.derivative_variance(2.0)), rel=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        rm.AlphaReLU(0.0)
    with pytest.raises(ValueError, match="diverges"):
        rm.AlphaReLU(0.5).derivative_variance(1.0)


# ----------------------------------------------------------------------------------------
# The recursions
# ----------------------------------------------------------------------------------------


def _numpy_frn_relu(K0, L, w2, b2, v2, a2):
    """The FRN recursion with the arc-cosine kernel written out in NumPy."""
    K = np.array(K0, float)
    logchi = 0.0
    out = [(K.copy(), 0.0)]
    for _ in range(L):
        Q = w2 * K + b2
        d = np.sqrt(np.diag(Q))
        c = np.clip(Q / np.outer(d, d), -1, 1)
        C = np.outer(d, d) * (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c) / (2 * np.pi)
        K = K + v2 * C + a2
        logchi += math.log(1 + v2 * w2 * 0.5)
        out.append((K.copy(), logchi))
    return out


def test_recursion_against_numpy_reference():
    hyp = rm.ResHyper(1.3, 0.2, 0.7, 0.1)
    K0 = [[1.0, 0.3], [0.3, 2.0]]
    mf = rm.resnet_meanfield("full", 25, hyp, "relu", K0)
    ref = _numpy_frn_relu(K0, 25, 1.3, 0.2, 0.7, 0.1)
    np.testing.assert_allclose(np.asarray(mf.p), [k[0, 0] for k, _ in ref], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mf.p2), [k[1, 1] for k, _ in ref], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mf.gamma), [k[0, 1] for k, _ in ref], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(mf.log_chi_ratio), [x for _, x in ref], rtol=1e-12)
    s = np.array([k[0, 0] + k[1, 1] - 2 * k[0, 1] for k, _ in ref])
    np.testing.assert_allclose(np.asarray(mf.s), s, rtol=1e-10)
    # the reduced net is the rho = 1 ResNet of fieldres.kernels
    hyp_r = rm.ResHyper(1.2, 0.1)
    a = rm.resnet_meanfield("reduced", 15, hyp_r, "tanh", K0)
    k = fieldres.resnet_kernels(np.array(K0), 1.0, 15, fieldres.Hyper(1.2, 0.1), "tanh")
    np.testing.assert_allclose(np.asarray(a.gamma), np.asarray(k.trajectory)[:, 0, 1],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="kind"):
        rm.resnet_meanfield("half", 5)
    with pytest.raises(ValueError, match="2 x 2"):
        rm.resnet_meanfield("full", 5, K0=np.eye(3))


# ----------------------------------------------------------------------------------------
# Derived laws vs fits of the recursion at large depth
# ----------------------------------------------------------------------------------------


def test_tanh_laws_against_the_recursion():
    """FRN, sigma_a = 0: p ~ l, log chi ~ A sqrt(l), e -> 0 as l^-(1 - 2/pi), s ~ 2 l."""
    hyp = rm.ResHyper(1.0, 0.0, 1.0, 0.0)
    laws = rm.asymptotic_laws("full", "tanh", hyp)
    assert laws["e"].exponent == pytest.approx(1 - 2 / math.pi, rel=1e-12)
    assert laws["chi"].coefficient == pytest.approx(8 / 3 / math.sqrt(2 * math.pi), rel=1e-12)
    mf = rm.resnet_meanfield("full", 6000, hyp, "tanh", _K(0.05))
    fits = rm.fit_laws(mf, laws)
    assert fits["p"].exponent == pytest.approx(1.0, abs=2e-3)
    assert fits["s"].exponent == pytest.approx(1.0, abs=5e-3)
    assert fits["chi"].exponent == pytest.approx(0.5, abs=2e-3)
    assert fits["chi"].coefficient == pytest.approx(laws["chi"].coefficient, rel=0.01)
    assert fits["e"].exponent == pytest.approx(laws["e"].exponent, rel=0.01)
    # the wrong law must not fit: e.g. a plain power law for chi is far from exponent 0.5 ...
    wrong = rm.Law("chi", "power", 0.5)
    assert rm.fit_law(mf.layers, np.asarray(mf.chi_ratio), wrong).exponent > 3


def test_relu_laws_against_the_recursion():
    hyp = rm.ResHyper(1.0, 0.1, 2.0, 0.1)  # r = sigma_v^2 sigma_w^2 / 2 = 1
    laws = rm.asymptotic_laws("full", "relu", hyp)
    mf = rm.resnet_meanfield("full", 400, hyp, "relu", _K(0.5))
    fits = rm.fit_laws(mf, laws)
    assert laws["p"].exponent == pytest.approx(math.log(2.0))
    assert fits["p"].exponent == pytest.approx(math.log(2.0), rel=1e-6)
    assert fits["chi"].exponent == pytest.approx(math.log(2.0), rel=1e-9)
    assert fits["e"].exponent == pytest.approx(-2.0, abs=0.03)
    assert fits["s"].exponent == pytest.approx(math.log(2.0), rel=2e-3)
    # the coefficient of 1 - e ~ 4 / (k l)^2
    l = 400
    assert 1 - float(mf.e[-1]) == pytest.approx(laws["e"].coefficient / l**2, rel=0.15)


@pytest.mark.parametrize("alpha,kind", [(0.6, "reduced"), (0.75, "full")])
def test_alpha_relu_laws_against_the_recursion(alpha, kind):
    act = rm.AlphaReLU(alpha)
    hyp = rm.ResHyper(1.0, 0.0, 1.0, 0.0)
    laws = rm.asymptotic_laws(kind, act, hyp)
    assert laws["p"].exponent == pytest.approx(1 / (1 - alpha))
    assert laws["chi"].exponent == pytest.approx(alpha**2 / ((1 - alpha) * (2 * alpha - 1)))
    e_star = laws["e"].limit
    assert float(act.normalised_kernel(e_star)) == pytest.approx(e_star, abs=1e-12)
    # start in the linear regime around e* (the approach is slow: delta ~ (1 - alpha)/2)
    mf = rm.resnet_meanfield(kind, 6000, hyp, act, _K(e_star - 1e-3 * (1 - e_star)))
    fits = rm.fit_laws(mf, laws)
    assert fits["p"].exponent == pytest.approx(laws["p"].exponent, rel=2e-3)
    assert fits["s"].exponent == pytest.approx(laws["s"].exponent, rel=3e-3)
    assert fits["chi"].exponent == pytest.approx(laws["chi"].exponent, rel=3e-3)
    assert fits["e"].exponent == pytest.approx(laws["e"].exponent, rel=0.01)
    assert float(mf.p[-1]) == pytest.approx(laws["p"].coefficient * 6000 ** laws["p"].exponent,
                                            rel=0.02)


# ----------------------------------------------------------------------------------------
# Theory vs finite networks
# ----------------------------------------------------------------------------------------


def _max_z(mf, sim):
    th = dict(p=mf.p, p2=mf.p2, gamma=mf.gamma, s=mf.s, chi=mf.chi_ratio)
    return {k: float(np.max(np.abs(np.asarray(v)[1:] - sim.mean[k][1:]) / sim.stderr[k][1:]))
            for k, v in th.items()}


@pytest.mark.parametrize("activation,kind,hyp", [
    ("tanh", "full", rm.ResHyper(1.0, 0.1, 1.0, 0.1)),
    pytest.param("relu", "full", rm.ResHyper(1.0, 0.1, 0.5, 0.1), marks=pytest.mark.slow),
    pytest.param(rm.AlphaReLU(0.8), "reduced", rm.ResHyper(1.0, 0.1), marks=pytest.mark.slow),
])
def test_theory_matches_finite_networks(activation, kind, hyp):
    """p, p', gamma, s and ||J u||^2/N of 200 networks (N = 256, 30 layers), in SE units."""
    K0 = _K(0.5)
    sim = rm.simulate_resnet(jax.random.PRNGKey(0), kind, 30, 256, 200, hyp, activation, K0)
    mf = rm.resnet_meanfield(kind, 30, hyp, activation, K0)
    z = _max_z(mf, sim)
    assert max(z.values()) < 5.0, z
    assert sim.mean["chi"][0] == pytest.approx(1.0, abs=5 * sim.stderr["chi"][0])


@pytest.mark.slow
def test_sampler_matches_explicit_weights_and_resnet_sampler():
    hyp = rm.ResHyper(1.0, 0.1, 1.0, 0.1)
    K0 = _K(0.5)
    a = rm.simulate_resnet(jax.random.PRNGKey(1), "full", 10, 64, 400, hyp, "tanh", K0,
                           method="full")
    b = rm.simulate_resnet(jax.random.PRNGKey(2), "full", 10, 64, 400, hyp, "tanh", K0)
    for k in a.mean:
        z = np.abs(a.mean[k] - b.mean[k])[1:] / np.hypot(a.stderr[k], b.stderr[k])[1:]
        assert z.max() < 5.0, (k, z.max())
    # the RRN against fieldres.simulation (rho = 1), an independent sampler
    from fieldres import simulation

    hyp_r = rm.ResHyper(1.0, 0.1)
    r = rm.simulate_resnet(jax.random.PRNGKey(3), "reduced", 10, 128, 400, hyp_r, "tanh", K0)
    s = simulation.simulate_kernels(jax.random.PRNGKey(4), np.array(K0), rho=1.0, depth=10,
                                    width=128, n_networks=400, activation="tanh", sigma_w2=1.0,
                                    sigma_b2=0.1, keep_last=False)
    for k, (i, j) in (("p", (0, 0)), ("gamma", (0, 1))):
        diff = np.abs(r.mean[k] - np.asarray(s.K_mean)[:, i, j])
        se = np.hypot(r.stderr[k], np.asarray(s.K_stderr)[:, i, j])
        assert (diff[1:] / se[1:]).max() < 5.0


@pytest.mark.slow
def test_deep_tanh_network_against_theory():
    """100 layers, N = 512: still within standard errors (gradient ratio ~ e^{5})."""
    hyp = rm.ResHyper(1.0, 0.0, 1.0, 0.0)
    sim = rm.simulate_resnet(jax.random.PRNGKey(5), "full", 100, 512, 300, hyp, "tanh", _K(0.5))
    mf = rm.resnet_meanfield("full", 100, hyp, "tanh", _K(0.5))
    z = _max_z(mf, sim)
    assert max(z.values()) < 5.0, z


# ----------------------------------------------------------------------------------------
# Depth-dependent initialisation
# ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_optimal_sigma_v2_scales_as_one_over_depth():
    """tanh FRN, sigma_a = 0: the contour log chi0/chiL = const has sigma_v^2 ~ 1/L."""
    depths = [100, 400]
    level = 2.0
    res = rm.initialisation_for_level(depths, level, quantity="log_chi", vary="sigma_v2",
                                      kind="full", activation="tanh",
                                      hyper=rm.ResHyper(1.0, 0.0, 1.0, 0.0))
    v = res["sigma_v2"]
    assert np.all(np.isfinite(v)), res["messages"]
    # the level is met
    for L, x in zip(depths, v):
        mf = rm.resnet_meanfield("full", L, rm.ResHyper(1.0, 0.0, x, 0.0), "tanh", [[1.0]])
        assert float(mf.log_chi_ratio[-1]) == pytest.approx(level, abs=1e-7)
    slope = math.log(v[1] / v[0]) / math.log(depths[1] / depths[0])
    assert slope == pytest.approx(-1.0, abs=0.02)
    # Xavier and He keep the variances fixed: the gradient explosion grows with depth
    cmp = rm.xavier_he_comparison([10, 40])
    assert np.all(np.diff(cmp["xavier"]) > 0) and np.all(np.diff(cmp["he"]) > 0)
    assert np.all(np.asarray(cmp["he"]) > np.asarray(cmp["xavier"]))
    opt = np.asarray(cmp["optimal_sigma_v2"])
    assert opt[0] == pytest.approx(1.0, rel=1e-6) and np.all(np.diff(opt) < 0)
    with pytest.raises(ValueError, match="quantity"):
        rm.initialisation_for_level([10], 1.0, quantity="nope")


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def test_cli_resnet_meanfield(capsys, tmp_path):
    out = tmp_path / "laws.png"
    assert main(["resnet-meanfield", "--activation", "relu", "--kind", "reduced", "--depth",
                 "200", "--sigma-w2", "2", "--json", "--out", str(out)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["kind"] == "reduced" and len(d["trajectories"]["p"]) == 201
    assert d["laws"]["chi"]["exponent_derived"] == pytest.approx(math.log(2.0))
    assert d["laws"]["chi"]["exponent_fitted"] == pytest.approx(math.log(2.0), rel=1e-8)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["resnet-meanfield", "--activation", "alpha-relu", "--alpha", "0.7",
                 "--depth", "50"]) == 0
    assert "derived" in capsys.readouterr().out
    for argv in (["resnet-meanfield", "--activation", "alpha-relu"],
                 ["resnet-meanfield", "--sigma-v2", "-1"],
                 ["resnet-meanfield", "--k0", "1,2;3"],
                 ["resnet-meanfield", "--depth", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fieldres: error:")
