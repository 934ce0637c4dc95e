"""Property-based tests of the public API (Hypothesis; issue 15).

Random positive semi-definite input kernels (P <= 4) and variances in their valid ranges:
the kernels stay finite and PSD and grow with depth in the Loewner order (each residual layer
adds rho^2 (sigma_w^2 C_phi(K) + sigma_b^2), a covariance); rho* lies inside the searched
range or comes with a non-OK status; the input check refuses non-PSD kernels; the CLI's JSON
writer never emits NaN or Infinity. Shapes are fixed per test so compiled functions are
reused; ``max_examples`` is small to keep the file to seconds after compilation.
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

jax.config.update("jax_enable_x64", True)

import fieldres as fr  # noqa: E402

SETTINGS = dict(max_examples=12, deadline=None, derandomize=True)
DEPTH = 6


@st.composite
def psd_kernels(draw, P=None):
    """``K0 = A A^T / P + eps I`` with bounded entries (a random Gram matrix of inputs)."""
    P = draw(st.integers(1, 4)) if P is None else P
    vals = draw(st.lists(st.floats(-2.0, 2.0), min_size=P * P, max_size=P * P))
    A = np.asarray(vals, dtype=float).reshape(P, P)
    eps = draw(st.floats(1e-3, 1.0))
    scale = draw(st.floats(1e-2, 10.0))
    return scale * (A @ A.T / P + eps * np.eye(P))


variances = st.floats(0.0, 3.0)
activations = st.sampled_from(["erf", "tanh", "relu", "linear"])


@settings(**SETTINGS)
@given(K0=psd_kernels(P=3), rho=st.floats(0.0, 2.0), sw2=variances, sb2=variances,
       act=activations)
def test_resnet_kernels_finite_psd_and_growing(K0, rho, sw2, sb2, act):
    hyper = fr.Hyper(sw2, sb2)
    traj = np.asarray(fr.resnet_kernels(K0, rho, DEPTH, hyper, act).trajectory)
    assert traj.shape == (DEPTH + 1, 3, 3)
    assert np.all(np.isfinite(traj))
    scale = float(np.max(np.abs(traj)))
    tol = 1e-9 * max(scale, 1.0)
    for K in traj:
        assert np.linalg.eigvalsh(0.5 * (K + K.T))[0] >= -tol
    for K_prev, K_next in zip(traj[:-1], traj[1:]):  # Loewner order: K^(l) - K^(l-1) is PSD
        D = K_next - K_prev
        assert np.linalg.eigvalsh(0.5 * (D + D.T))[0] >= -tol
        assert np.all(np.diag(K_next) >= np.diag(K_prev) - tol)


@settings(**SETTINGS)
@given(K0=psd_kernels(P=2), sw2=st.floats(0.1, 3.0), sb2=st.floats(0.0, 1.0),
       off=st.booleans())
def test_rho_star_inside_range_or_status(K0, sw2, sb2, off):
    act = "erf"  # one activation: two compilations (diagonal, off-diagonal) in all
    lo, hi = 1e-3, 1e2
    res = fr.rho_star(K0, 10, fr.Hyper(sw2, sb2), act, entry=(0, 1) if off else (0, 0),
                      rho_range=(lo, hi))
    status = int(res.status)
    rho, chi = float(res.rho_star), float(res.chi_max)
    if status == fr.Status.OK:
        assert lo < rho < hi and math.isfinite(chi)
    else:
        assert status in {int(s) for s in fr.Status} and math.isnan(rho)
        assert str(res.messages().ravel()[0])


@settings(**SETTINGS)
@given(K0=psd_kernels(P=2), neg=st.floats(1e-3, 10.0))
def test_check_kernel_refuses_non_psd(K0, neg):
    from fieldres._validation import check_kernel

    check_kernel(K0)  # a Gram matrix passes
    w, V = np.linalg.eigh(K0)
    w[0] = -neg * max(abs(w[-1]), 1.0)  # flip the smallest eigenvalue below zero
    bad = (V * w) @ V.T
    bad = 0.5 * (bad + bad.T)
    with pytest.raises(fr.FieldresInputError):
        check_kernel(bad)


finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                          st.none(), st.text(max_size=5))
nested = st.recursive(finite_or_not, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=4), kids, max_size=4)),
    max_leaves=20)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(obj=nested)
def test_cli_json_is_always_strict(obj):
    from fieldres.cli._common import count_nonfinite, dumps, jsonable

    text = dumps(jsonable(obj))

    def refuse(name):
        raise ValueError(name)

    back = json.loads(text, parse_constant=refuse)  # no NaN/Infinity ever
    assert count_nonfinite(back) == 0
    arr = np.asarray([1.0, np.nan, np.inf])
    assert jsonable({"a": arr}) == {"a": [1.0, None, None]}
    with pytest.raises(ValueError):  # the writer itself refuses a NaN that slipped through
        dumps({"x": float("nan")})
