"""Leading-order kernel recursion: reference numbers, independent NumPy route, invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr


def numpy_resnet(K0, rho, L, sw2=1.25, sb2=0.05, swo=1.25, sbo=0.05, residual=True):
    """Independent float64 NumPy recursion for erf (THEORY Sec. 2)."""
    K = np.array(K0, float)

    def C(K):
        d = np.diag(K)
        return 2 / np.pi * np.arcsin(2 * K / np.sqrt(np.outer(1 + 2 * d, 1 + 2 * d)))

    traj = [K]
    for _ in range(L):
        K = (K if residual else 0.0) + (rho**2 if residual else 1.0) * (sw2 * C(K) + sb2)
        traj.append(K)
    return np.array(traj), swo * C(K) + sbo


def test_theory_reference_single_input():
    k = fr.resnet_kernels(jnp.array([[0.5]]), 0.3, 10, fr.Hyper(sigma_w2=1.25, sigma_b2=0.05))
    assert float(k.K_L[0, 0]) == pytest.approx(0.989557, abs=5e-7)
    assert float(fr.Erf().kernel(k.K_L)[0, 0]) == pytest.approx(0.462566, abs=5e-7)


@pytest.mark.parametrize("residual", [True, False])
def test_matches_numpy_reference(residual):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 7))
    K0 = np.asarray(fr.input_kernel(X, 0.3, 0.02))
    traj_np, out_np = numpy_resnet(K0, 0.4, 12, residual=residual)
    f = fr.resnet_kernels if residual else (lambda K0, rho, L, **kw: fr.ffnet_kernels(K0, L, **kw))
    k = f(K0, 0.4, 12)
    np.testing.assert_allclose(k.trajectory, traj_np, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(k.K_out, out_np, rtol=1e-13, atol=1e-15)


def test_input_kernel():
    X = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(fr.input_kernel(X, 2.0, 0.1), 0.1 + 2.0 * X @ X.T / 3)


def test_kernel_grows_with_depth_and_rho():
    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    for act in ["erf", "relu", "tanh", "linear"]:
        tr = fr.resnet_kernels(K0, 0.5, 20, activation=act).trajectory
        assert np.all(np.diff(np.asarray(tr[:, 0, 0])) > 0), act
    a = fr.resnet_kernels(K0, 0.1, 20).K_L[0, 0]
    b = fr.resnet_kernels(K0, 1.0, 20).K_L[0, 0]
    assert b > a


def test_traced_depth_matches_static_and_compiles_once():
    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    depths = jnp.array([3, 10, 25])
    f = jax.vmap(lambda d: fr.resnet_kernels(K0, 0.3, d, max_depth=25, trajectory=False).K_out)
    out = f(depths)
    for d, o in zip([3, 10, 25], out):
        np.testing.assert_allclose(o, fr.resnet_kernels(K0, 0.3, d).K_out, rtol=1e-14)


def test_deep_network_finite():
    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    for act in ["erf", "relu"]:
        k = fr.resnet_kernels(K0, 0.01, 10_000, activation=act, trajectory=False)
        assert np.all(np.isfinite(k.K_out))


def test_differentiable_in_everything():
    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])

    def f(rho, sw2, K0):
        return fr.resnet_kernels(K0, rho, 10, fr.Hyper(sigma_w2=sw2)).K_out[0, 1]

    g = jax.grad(f, argnums=(0, 1, 2))(0.3, 1.25, K0)
    eps = 1e-6
    fd_rho = (f(0.3 + eps, 1.25, K0) - f(0.3 - eps, 1.25, K0)) / (2 * eps)
    fd_sw = (f(0.3, 1.25 + eps, K0) - f(0.3, 1.25 - eps, K0)) / (2 * eps)
    assert float(g[0]) == pytest.approx(float(fd_rho), rel=1e-7)
    assert float(g[1]) == pytest.approx(float(fd_sw), rel=1e-7)


@pytest.mark.parametrize(
    "K0, match",
    [
        (np.array([[0.5, 0.6], [0.6, 0.5]]), "positive semi-definite"),
        (np.array([[0.5, 0.1], [0.2, 0.5]]), "symmetric"),
        (np.array([[np.nan]]), "NaN"),
        (np.ones((2, 3)), "square"),
        (np.array([[-1.0]]), "positive diagonal"),
    ],
)
def test_bad_kernels(K0, match):
    with pytest.raises(ValueError, match=match):
        fr.resnet_kernels(K0, 0.3, 10)


def test_bad_arguments():
    K0 = np.eye(2) * 0.1
    with pytest.raises(ValueError, match="depth"):
        fr.resnet_kernels(K0, 0.3, 0)
    with pytest.raises(ValueError, match="sigma_w2"):
        fr.Hyper(sigma_w2=-1.0)
    with pytest.raises(ValueError, match="rho"):
        fr.resnet_kernels(K0, float("nan"), 3)
    with pytest.raises(ValueError, match="unknown activation"):
        fr.resnet_kernels(K0, 0.3, 3, activation="sigmoidal")
    with pytest.raises(ValueError, match="max_depth"):
        fr.resnet_kernels(K0, 0.3, jnp.array([3, 4]))
