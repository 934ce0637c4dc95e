"""Many inputs: sub-block assembly (exact) and one-neuron path sampling (unbiased).

Exact identities: every entry of :func:`finite_width_many` for P = 3 and 4 equals the P = 2
result on its sub-pair and the pairs method on the full kernel; the adjoint contraction equals
the contraction of the sampled tensor on the same paths. Statistical checks: the path-sampled
tensors and contractions against the exact tensor in units of their standard error; the slow
tests against >= 200k finite networks (erf, tanh).
"""

import itertools

import jax
import numpy as np
import pytest

from fieldres._validation import FieldresInputError
from fieldres.finite_width import finite_width
from fieldres.finite_width._leading import _layer_kernels_jit
from fieldres.finite_width.many import (
    _apply_J,
    _apply_JT,
    _local_jacobian,
    _prepare,
    contract_kernel_cov,
    finite_width_many,
    sample_kernel_cov,
)
from fieldres.kernels.recursion import Hyper
from fieldres.simulation import simulate_nlo

HYPER = Hyper(sigma_w2=1.25, sigma_b2=0.05, sigma_w2_out=1.25, sigma_b2_out=0.05)
K3 = np.array([[0.5, 0.3, -0.1], [0.3, 0.8, 0.2], [-0.1, 0.2, 0.6]])
K4 = np.array([[0.5, 0.3, -0.1, 0.15], [0.3, 0.8, 0.2, 0.1], [-0.1, 0.2, 0.6, -0.2],
               [0.15, 0.1, -0.2, 0.7]])
RHO, DEPTH = 0.5, 3
COV = ("C_cov", "K_cov", "CK_cov")
SHIFT = ("C_shift", "K_shift")


@pytest.fixture(scope="module")
def many3():
    return finite_width_many(K3, RHO, DEPTH, HYPER)


@pytest.fixture(scope="module")
def pairs3():
    return finite_width(K3, RHO, DEPTH, HYPER, method="pairs")


def _check_sub_pairs(res, K0):
    """Entries among two inputs equal the P = 2 result (walk method) on that pair."""
    for a, b in itertools.combinations(range(K0.shape[0]), 2):
        idx = np.array([a, b])
        sub = finite_width(K0[np.ix_(idx, idx)], RHO, DEPTH, HYPER)
        ix4 = np.ix_(range(DEPTH + 1), idx, idx, idx, idx)
        ix2 = np.ix_(range(DEPTH + 1), idx, idx)
        for name in COV:
            np.testing.assert_allclose(np.asarray(getattr(res, name))[ix4],
                                       getattr(sub, name), rtol=0, atol=1e-12)
        for name in SHIFT:
            np.testing.assert_allclose(np.asarray(getattr(res, name))[ix2],
                                       getattr(sub, name), rtol=0, atol=1e-12)


def _check_against(res, ref, atol):
    for name in COV + SHIFT + ("K", "C", "out", "out_cov", "out_shift"):
        np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=0, atol=atol,
                                   err_msg=name)


def test_p3_sub_pairs_are_exact(many3):
    assert many3.method == "many" and many3.C_cov.shape == (DEPTH + 1,) + (3,) * 4
    _check_sub_pairs(many3, K3)


def test_p3_equals_pairs_method(many3, pairs3):
    _check_against(many3, pairs3, 1e-11)


def test_p3_symmetries(many3):
    T = np.asarray(many3.C_cov)
    np.testing.assert_array_equal(T, np.transpose(T, (0, 2, 1, 3, 4)))
    np.testing.assert_array_equal(T, np.transpose(T, (0, 1, 2, 4, 3)))
    np.testing.assert_allclose(T, np.transpose(T, (0, 3, 4, 1, 2)), rtol=0, atol=1e-14)


@pytest.mark.slow
def test_p4_sub_pairs_and_pairs_method():
    """Entries of <= 2 inputs: the sub-pair walks; of 3 and 4 inputs: the pairs method on
    the full kernel at the same quadrature (coarse here, to keep the test fast)."""
    quad = dict(degree=32, n_theta=12)
    res = finite_width_many(K4, RHO, DEPTH, HYPER, **quad)
    _check_sub_pairs(res, K4)
    ref = finite_width(K4, RHO, DEPTH, HYPER, method="pairs", **quad)
    many_in = np.array([len(set(t)) >= 3 for t in itertools.product(range(4), repeat=4)])
    many_in = many_in.reshape((4,) * 4)
    for name in COV:
        a, b = np.asarray(getattr(res, name)), np.asarray(getattr(ref, name))
        np.testing.assert_allclose(a[:, many_in], b[:, many_in], rtol=0, atol=1e-13)
        assert np.abs(a[:, many_in]).max() > 1e-3


def test_p4_selected_inputs_agree(many3):
    """The ``inputs=`` sub-block route of finite_width gives the same numbers."""
    sel = finite_width(K4, RHO, DEPTH, HYPER, inputs=(0, 1, 2))
    ref = finite_width_many(K4[:3, :3], RHO, DEPTH, HYPER)
    _check_against(ref, sel, 1e-11)


def test_local_jacobian_is_the_kernel_map_jacobian():
    for act in ("erf", "relu"):
        K0, rho, hyper, a = _prepare(K3, RHO, DEPTH, HYPER, act)
        Ks, _ = _layer_kernels_jit(K0, rho, hyper, a, DEPTH, True)
        def cmap(v, a=a):
            K = v.reshape(3, 3)
            return a.kernel(0.5 * (K + K.T)).reshape(-1)

        J = jax.vmap(jax.jacfwd(cmap))(Ks.reshape(DEPTH + 1, -1))
        d1, d3 = _local_jacobian(Ks, a)
        S = np.random.default_rng(1).normal(size=(3, 3))
        S = S + S.T
        for l in range(DEPTH + 1):
            np.testing.assert_allclose(_apply_J(d1[l], d3[l], S), (J[l] @ S.reshape(-1))
                                       .reshape(3, 3), rtol=0, atol=1e-13)
            np.testing.assert_allclose(_apply_JT(d1[l], d3[l], S), (J[l].T @ S.reshape(-1))
                                       .reshape(3, 3), rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------------------
# Path sampling


def _z(est, se, exact):
    return (np.asarray(est) - np.asarray(exact)) / np.asarray(se)


@pytest.fixture(scope="module")
def sampled3():
    return sample_kernel_cov(K3, RHO, DEPTH, HYPER, n_samples=60_000, chunk=3_000, seed=3)


def test_sampled_tensor_within_standard_errors(sampled3, pairs3):
    P = 3
    e = np.array([(a, b) for a in range(P) for b in range(a, P)])
    for name, ref in (("C", pairs3.C_cov[-1]), ("K", pairs3.K_cov[-1]),
                      ("CK", pairs3.CK_cov[-1]), ("out", pairs3.out_cov)):
        est, se = getattr(sampled3, f"{name}_cov"), getattr(sampled3, f"{name}_se")
        z = _z(est, se, ref)[e[:, 0][:, None], e[:, 1][:, None], e[:, 0], e[:, 1]]
        # the entries share the paths: their z are correlated, so no chi-square test
        assert np.max(np.abs(z)) < 4.0, (name, z)
        assert np.max(np.asarray(se)) < 0.02 * np.max(np.abs(np.asarray(ref)))


def test_contraction_equals_tensor_contraction_on_the_same_paths(sampled3):
    """Adjoint weights (backward pass) = forward response: the same sample averages."""
    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(2, 3, 3)), rng.normal(size=(3, 3, 3))
    As, Bs = 0.5 * (A + A.transpose(0, 2, 1)), 0.5 * (B + B.transpose(0, 2, 1))
    for kind, T in (("C", "C_cov"), ("K", "K_cov"), ("CK", "CK_cov"), ("out", "out_cov")):
        c = contract_kernel_cov(A, B, K3, RHO, DEPTH, HYPER, kind=kind, n_samples=60_000,
                                chunk=3_000, seed=3)
        ex = np.einsum("iab,abcd,jcd->ij", As, np.asarray(getattr(sampled3, T)), Bs)
        np.testing.assert_allclose(c.V, ex, rtol=1e-10, atol=1e-12 * np.abs(ex).max())
        assert c.V.shape == (2, 3) and c.n_samples == 60_000


@pytest.mark.parametrize("kw", [dict(residual=False),
                                pytest.param(dict(activation="tanh"), marks=pytest.mark.slow)])
def test_contraction_within_standard_errors_ffnet_and_tanh(kw):
    rng = np.random.default_rng(6)
    A = rng.normal(size=(2, 3, 3))
    ref = finite_width(K3, RHO, DEPTH, HYPER, method="pairs", **kw)
    c = contract_kernel_cov(A, None, K3, RHO, DEPTH, HYPER, kind="K", n_samples=40_000,
                            chunk=2_000, seed=4, **kw)
    As = 0.5 * (A + A.transpose(0, 2, 1))
    ex = np.einsum("iab,abcd,jcd->ij", As, np.asarray(ref.K_cov[-1]), As)
    z = _z(c.V, c.se, ex)
    assert np.max(np.abs(z)) < 4.0, (kw, z)


def test_sampling_detects_a_wrong_tensor(sampled3):
    """The comparison can fail: the independent-layer approximation is many SE away."""
    wrong = finite_width(K3, RHO, DEPTH, HYPER, method="pairs", cross_layer=False)
    z = _z(sampled3.K_cov, sampled3.K_se, wrong.K_cov[-1])
    assert np.max(np.abs(z)) > 10.0


def test_bad_input():
    with pytest.raises(FieldresInputError, match="n_samples"):
        sample_kernel_cov(K3, RHO, DEPTH, HYPER, n_samples=0)
    with pytest.raises(FieldresInputError, match="batches"):
        sample_kernel_cov(K3, RHO, DEPTH, HYPER, n_samples=1000, chunk=500)
    with pytest.raises(FieldresInputError, match="kind"):
        contract_kernel_cov(np.eye(3), None, K3, RHO, DEPTH, HYPER, kind="x")
    with pytest.raises(FieldresInputError, match="A must be"):
        contract_kernel_cov(np.eye(2), None, K3, RHO, DEPTH, HYPER)
    with pytest.raises(FieldresInputError, match="symmetric"):
        finite_width_many(K3 + np.triu(np.ones((3, 3)), 1), RHO, DEPTH, HYPER)
    with pytest.raises(FieldresInputError, match="depth"):
        finite_width_many(K3, RHO, 0, HYPER)
    with pytest.raises(FieldresInputError, match="rho"):
        contract_kernel_cov(np.eye(3), None, K3, -1.0, DEPTH, HYPER)


# ------------------------------------------------------------------------------------------
# Monte Carlo of finite networks (slow)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_mc_p3_networks(activation):
    """P = 3, 200k networks of width 200: means within 3 SE of LO + shift / N, every N Cov
    entry within 3 MC SE or 3 % of its scale."""
    N, depth, rho = 200, 6, 0.5
    th = finite_width_many(K3, rho, depth, HYPER, activation)
    sim = simulate_nlo(jax.random.PRNGKey(31), K3, rho=rho, depth=depth, width=N,
                       n_networks=200_000, hyper=HYPER, activation=activation)
    for name in ("C", "K", "out"):
        lo = np.asarray(th.out if name == "out" else getattr(th, name)[-1])
        sh = np.asarray(th.out_shift if name == "out" else getattr(th, f"{name}_shift")[-1])
        z = (np.asarray(getattr(sim, f"{name}_mean")) - lo - sh / N) / np.asarray(
            getattr(sim, f"{name}_mean_se"))
        assert np.all(np.abs(z) < 3.0), (name, z)
        tc, mc = np.asarray(th.cov_matrix(name)), np.asarray(getattr(sim, f"{name}_ncov"))
        se = np.asarray(getattr(sim, f"{name}_ncov_se"))
        scale = np.sqrt(np.outer(np.diag(tc), np.diag(tc)))
        ok = (np.abs(mc - tc) < 3.0 * se) | (np.abs(mc - tc) < 0.03 * scale)
        assert np.all(ok), (name, (mc - tc) / se, (mc - tc) / scale)
