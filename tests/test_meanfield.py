"""Feed-forward mean field (fieldres.meanfield): fixed points, depth scales, critical line.

Independent routes: closed forms (erf, ReLU) vs quadrature; a SciPy reference (adaptive
quad + brentq) for tanh; autodiff through the root finders vs finite differences; depth
scales vs the decay of the exact kernel recursion; theory vs Monte-Carlo simulation of finite
feed-forward nets in units of the standard error; the CLI.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize

import fieldres
from fieldres import meanfield as mf
from fieldres.cli import main


def _gauss(f, q):
    g = lambda z: f(math.sqrt(q) * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    return integrate.quad(g, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13)[0]


def _tanh_reference(sigma_b2):
    """sigma_w,crit^2 and q* of tanh by SciPy (adaptive quadrature, Brent), from scratch."""

    def qstar(sw2):
        V = lambda q: _gauss(lambda x: math.tanh(x) ** 2, q)  # noqa: E731
        return optimize.brentq(lambda q: q - sw2 * V(q) - sigma_b2, 1e-12, 100, xtol=1e-15)

    def g(sw2):
        return sw2 * _gauss(lambda x: 1.0 / math.cosh(x) ** 4 if abs(x) < 150 else 0.0,
                            qstar(sw2)) - 1.0

    s = optimize.brentq(g, 1.0, 3.0, xtol=1e-14)
    return s, qstar(s)


def test_critical_line_closed_forms():
    """erf: pi/4, tanh: 1 at sigma_b = 0 (transcritical, q* -> 0); ReLU: 2 for any bias."""
    erf = mf.critical_sigma_w2([0.0], "erf")
    assert float(erf.sigma_w2[0]) == pytest.approx(math.pi / 4, rel=1e-7)
    relu = mf.critical_sigma_w2([0.0, 0.05, 0.2], "relu")
    np.testing.assert_allclose(np.asarray(relu.sigma_w2), 2.0, rtol=1e-9)
    assert np.all(np.asarray(relu.status) == 0)


def test_tanh_critical_point_matches_scipy_reference():
    ref_sw2, ref_q = _tanh_reference(0.05)
    both = mf.critical_sigma_w2([0.0, 0.05], "tanh")
    assert float(both.sigma_w2[0]) == pytest.approx(1.0, rel=1e-7)  # q* -> 0: phi'(0)^2 = 1
    cp = jax.tree.map(lambda x: x[1], both)
    assert int(cp.status) == 0
    assert float(cp.sigma_w2) == pytest.approx(ref_sw2, rel=1e-9)
    assert float(cp.q_star) == pytest.approx(ref_q, rel=1e-8)
    # on the line: chi_1 = 1 and xi_c diverges
    r = mf.mean_field(cp.sigma_w2, 0.05, "tanh")
    assert float(r.chi_1) == pytest.approx(1.0, abs=1e-9)
    assert float(r.xi_c) > 1e6


def test_erf_fixed_points_against_closed_forms():
    sw2, sb2 = 2.5, 0.05
    r = mf.mean_field(sw2, sb2, "erf")
    V = lambda q: (2 / math.pi) * math.asin(2 * q / (1 + 2 * q))  # noqa: E731
    q = optimize.brentq(lambda q: q - sw2 * V(q) - sb2, 1e-9, 50, xtol=1e-15)
    chi1 = sw2 * (4 / math.pi) / math.sqrt(1 + 4 * q)
    f = lambda c: (sw2 * (2 / math.pi) * math.asin(2 * c * q / (1 + 2 * q)) + sb2) / q  # noqa: E731
    c = optimize.brentq(lambda c: f(c) - c, 0.0, 0.999, xtol=1e-15)
    chic = sw2 * (2 / math.pi) * (2 / (1 + 2 * q)) / math.sqrt(1 - (2 * c * q / (1 + 2 * q)) ** 2)
    assert float(r.q_star) == pytest.approx(q, rel=1e-10)
    assert float(r.chi_1) == pytest.approx(chi1, rel=1e-10)
    assert float(r.c_star) == pytest.approx(c, rel=1e-9)
    assert float(r.chi_c) == pytest.approx(chic, rel=1e-8)
    assert float(r.xi_c) == pytest.approx(-1 / math.log(chic), rel=1e-7)
    assert int(r.status) == 0 and bool(r.chaotic)


@pytest.mark.slow
def test_quadrature_route_matches_closed_form():
    """The same physics through 'erf-quadrature' (GaussHermite, Price derivatives)."""
    w = np.array([0.9, 1.5, 2.5, 3.5])
    b = np.array([0.0, 0.05, 0.05, 0.2])
    a = mf.mean_field(w, b, "erf")
    g = mf.mean_field(w, b, "erf-quadrature")
    for name in ("q_star", "c_star", "chi_1", "chi_c", "chi_q"):
        np.testing.assert_allclose(np.asarray(getattr(g, name)), np.asarray(getattr(a, name)),
                                   rtol=1e-8, atol=1e-10, err_msg=name)


def test_implicit_derivatives_match_finite_differences():
    def q_of(sw2):
        return mf.feedforward._q_star(sw2, jnp.asarray(0.05), fieldres.get_activation("erf"),
                          jnp.asarray(1.0))[0]

    x = jnp.asarray(2.0)
    d = float(jax.grad(q_of)(x))
    h = 1e-5
    fd = (float(q_of(x + h)) - float(q_of(x - h))) / (2 * h)
    assert d == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("sw2", [1.0, 2.5])
def test_depth_scales_from_the_exact_recursion(sw2):
    """xi_c, xi_q equal the asymptotic decay rates of the NNGP recursion of the FFNet."""
    sb2 = 0.05
    r = mf.mean_field(sw2, sb2, "tanh")
    q, c_star = float(r.q_star), float(r.c_star)
    c0 = 0.6 if c_star == 1.0 else c_star + 0.01
    L = 60
    K = np.asarray(fieldres.ffnet_kernels(q * np.array([[1.0, c0], [c0, 1.0]]), L,
                                          fieldres.Hyper(sw2, sb2), "tanh").trajectory)
    c = K[:, 0, 1] / np.sqrt(K[:, 0, 0] * K[:, 1, 1])
    dev = c - c_star
    ratio = dev[-1] / dev[-2]
    assert -1 / math.log(ratio) == pytest.approx(float(r.xi_c), rel=1e-3)
    # length: start off the fixed point, deviations shrink by chi_q per layer
    Kq = np.asarray(fieldres.ffnet_kernels(np.array([[1.5 * q]]), 12, fieldres.Hyper(sw2, sb2),
                                           "tanh").trajectory)[:, 0, 0]
    rq = (Kq[-1] - q) / (Kq[-2] - q)
    assert -1 / math.log(rq) == pytest.approx(float(r.xi_q), rel=2e-3)


def test_phases_and_missing_fixed_point():
    crit = float(mf.critical_sigma_w2(0.1, "tanh").sigma_w2)
    r = mf.mean_field([0.8 * crit, 1.25 * crit], 0.1, "tanh")
    chi = np.asarray(r.chi_1)
    assert chi[0] < 1 < chi[1]
    assert float(r.c_star[0]) == 1.0 and float(r.c_star[1]) < 1.0
    # ReLU above sigma_w^2 = 2: the length diverges, reported as such (never a number)
    relu = mf.mean_field([1.0, 2.5], 0.1, "relu")
    assert int(relu.status[0]) == 0 and float(relu.q_star[0]) == pytest.approx(0.1 / 0.5)
    assert int(relu.status[1]) == mf.Status.NO_FIXED_POINT
    assert np.isinf(float(relu.q_star[1])) and np.isnan(float(relu.chi_1[1]))
    assert "diverges" in relu.messages()[1]
    with pytest.raises(ValueError, match="non-negative"):
        mf.mean_field(-1.0, 0.0)


@pytest.mark.parametrize("sw2", [pytest.param(1.0, marks=pytest.mark.slow), 2.5])
def test_finite_networks_follow_the_correlation_map(sw2):
    """Finite tanh FFNets: per-layer kernels vs the mean field, in standard errors.

    Inputs start at the fixed length q* with correlation 0.6 (ordered: c -> 1; chaotic:
    c -> c* < 1). The leading-order error is O(1/N); at N = 300 it is below the standard
    error of 300 networks.
    """
    from fieldres import simulation

    sb2 = 0.05
    r = mf.mean_field(sw2, sb2, "tanh")
    q = float(r.q_star)
    K0 = q * np.array([[1.0, 0.6], [0.6, 1.0]])
    L = 10
    sim = simulation.simulate_kernels(jax.random.PRNGKey(3), K0, rho=1.0, depth=L, width=300,
                                      n_networks=300, activation="tanh", sigma_w2=sw2,
                                      sigma_b2=sb2, residual=False, keep_last=False)
    theory = np.asarray(fieldres.ffnet_kernels(K0, L, fieldres.Hyper(sw2, sb2), "tanh")
                        .trajectory)
    z = np.abs(np.asarray(sim.K_mean) - theory)[1:] / np.asarray(sim.K_stderr)[1:]
    assert z.max() < 5.0, z.max()
    # the correlation relaxes towards c* (ordered: 1; chaotic: c* < 1) at the rate 1/xi_c
    Km = np.asarray(sim.K_mean)
    c_sim = Km[:, 0, 1] / np.sqrt(Km[:, 0, 0] * Km[:, 1, 1])
    c_th = theory[:, 0, 1] / np.sqrt(theory[:, 0, 0] * theory[:, 1, 1])
    c_star = float(r.c_star)
    np.testing.assert_allclose(c_sim, c_th, atol=0.01)
    assert abs(c_th[-1] - c_star) < abs(c_th[0] - c_star) * math.exp(-L / float(r.xi_c)) * 1.3
    assert abs(c_sim[-1] - c_star) < 0.7 * abs(0.6 - c_star)


def test_cli_edge_of_chaos(capsys, tmp_path):
    assert main(["edge-of-chaos", "--activation", "erf", "--sigma-b2", "0.0", "--sigma-w2",
                 "1.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["sigma_w2_critical"] == pytest.approx(math.pi / 4, rel=1e-7)
    assert d["q_star"] == pytest.approx(0.5, rel=1e-9)  # erf, sigma_b = 0, sigma_w^2 = 1.5
    assert d["phase"] == "chaotic" and d["c_star"] == pytest.approx(0.0, abs=1e-12)
    assert d["xi_c"] > 0
    out = tmp_path / "pd.png"
    assert main(["edge-of-chaos", "--activation", "erf", "--grid", "6", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "critical sigma_w^2" in text and out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bad input: one line on stderr, exit 2
    for argv in (["edge-of-chaos", "--sigma-b2", "-0.1"], ["edge-of-chaos", "--activation", "x"],
                 ["edge-of-chaos", "--grid", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fieldres: error:")
    # ReLU beyond the edge: no fixed point, exit 1 with the reason
    assert main(["edge-of-chaos", "--activation", "relu", "--sigma-w2", "3", "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["sigma_w2_critical"] == pytest.approx(2.0) and d["q_star"] is None
    assert d["phase"] == "no fixed point"


@pytest.mark.parametrize("activation", [pytest.param("tanh", marks=pytest.mark.slow), "erf"])
def test_critical_point_is_critical_not_a_failure(activation):
    """At sigma_w,crit^2 (chi_1 = 1) the fixed points exist and xi_c diverges (issue 11).

    Before the fix the c* solver stalled on the nearly double root at c = 1 (tanh,
    sigma_b^2 = 0.01: 'no fixed point') and xi_c came out as ~1e15 or nan.
    """
    sb2 = np.array([0.0, 0.01, 0.05, 0.3])
    cp = mf.critical_sigma_w2(sb2, activation)
    assert np.all(np.asarray(cp.status) == mf.Status.OK)
    r = mf.mean_field(cp.sigma_w2, sb2, activation)
    assert np.all(np.asarray(r.status) == mf.Status.CRITICAL), r.messages()
    assert np.all(np.isinf(np.asarray(r.xi_c)))
    np.testing.assert_allclose(np.asarray(r.chi_1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(r.c_star), 1.0)
    np.testing.assert_allclose(np.asarray(r.q_star), np.asarray(cp.q_star), rtol=1e-12,
                               atol=1e-12)
    assert np.all(np.isfinite(np.asarray(r.q_star)))
    assert all("diverges" in m for m in r.messages())
    # just beyond the line (chaotic): c* < 1 is found, and xi_c follows the near-critical
    # law xi_c (chi_1 - 1) = 1 + O(chi_1 - 1) (f'(c*) = 1 - (chi_1 - 1) + O((chi_1 - 1)^2));
    # measured: the O() term is 5-8 (chi_1 - 1); tanh's quadrature adds ~1e-12 / (chi_1 - 1)
    w = np.asarray(cp.sigma_w2)[1:]
    for eps in (1e-4, 1e-6):
        n = mf.mean_field(w * (1 + eps), sb2[1:], activation)
        assert np.all(np.asarray(n.status) == mf.Status.OK)
        assert np.all(np.asarray(n.c_star) < 1.0)
        delta = np.asarray(n.chi_1) - 1.0
        assert np.all(delta > 1e-8)
        np.testing.assert_allclose(np.asarray(n.xi_c) * delta, 1.0,
                                   rtol=10 * delta.max() + 1e-11 / delta.min())


def test_relu_at_its_critical_point_has_a_diverging_length():
    """ReLU at sigma_w^2 = 2, sigma_b^2 > 0: q^(l) grows linearly, q* = inf (not ~1e12)."""
    cp = mf.critical_sigma_w2([0.0, 0.05, 0.3], "relu")
    assert np.all(np.asarray(cp.status) == mf.Status.OK)
    q = np.asarray(cp.q_star)
    assert q[0] == 0.0 and np.all(np.isinf(q[1:]))
    r = mf.mean_field(cp.sigma_w2, [0.0, 0.05, 0.3], "relu")
    assert np.all(np.asarray(r.status) == mf.Status.CRITICAL)
    assert float(r.q_star[0]) == 0.0 and np.all(np.isinf(np.asarray(r.q_star)[1:]))
    assert np.all(np.isinf(np.asarray(r.xi_c)))
    # a resolved distance from the edge still gives the finite q* = sigma_b^2 / (1 - chi)
    near = mf.mean_field(2.0 * (1 - 1e-6), 0.05, "relu")
    assert int(near.status) == mf.Status.OK
    assert float(near.q_star) == pytest.approx(0.05 / 1e-6, rel=1e-6)


def _no_non_finite(text):
    return all(bad not in text for bad in ("Infinity", "NaN", "e+1"))


def test_cli_edge_of_chaos_at_the_critical_point(capsys):
    assert main(["edge-of-chaos", "--activation", "tanh", "--sigma-b2", "0.01", "--json"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    assert _no_non_finite(out)
    assert d["phase"] == "critical" and d["status_code"] == int(mf.Status.CRITICAL)
    assert d["xi_c"] is None and d["xi_c_status"] == "diverges"
    assert d["xi_q"] > 0 and d["xi_q_status"] == "finite"
    assert d["q_star"] == pytest.approx(d["q_star_critical"], rel=1e-12)
    assert d["c_star"] == 1.0 and d["chi_1"] == pytest.approx(1.0, abs=1e-9)
    assert main(["edge-of-chaos", "--activation", "erf", "--sigma-b2", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "xi_c = diverges" in text and "(critical)" in text and "e+1" not in text
    # ReLU: the length itself diverges at the edge
    assert main(["edge-of-chaos", "--activation", "relu", "--json"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    assert _no_non_finite(out)
    assert d["sigma_w2_critical"] == pytest.approx(2.0, rel=1e-12)
    assert d["q_star_critical"] is None and d["q_star_critical_status"] == "diverges"
    assert d["q_star"] is None and d["q_star_status"] == "diverges"
    assert d["phase"] == "critical" and d["xi_c"] is None
