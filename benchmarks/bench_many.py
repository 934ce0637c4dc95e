#!/usr/bin/env python
"""Cost of the many-input 1/N statistics against P and L (prints a table).

Not a test. Sections:

``exact``     :func:`fieldres.finite_width.many.finite_width_many` (sub-block assembly, exact):
              wall time (first call, compile included; then a second call) for P = 3..5 at
              L = 5 and for P = 4 at L = 5, 10, 20
``sampled``   :func:`~fieldres.finite_width.many.sample_kernel_cov`: last-layer P^4 tensors
              at L = 50 from 20 000 paths, P = 4, 8, 16; the largest relative standard error
``contract``  :func:`~fieldres.finite_width.many.contract_kernel_cov`: V(A, A) for two
              matrices at L = 50 from 10 000 paths, P = 16, 64, 256; and P = 64 at
              L = 10, 50, 200

Memory: the arrays each method holds (bytes, computed from the shapes) and the process's
peak resident set (``ru_maxrss``, cumulative).

Usage::

    python benchmarks/bench_many.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import fieldres  # noqa: E402
from fieldres.finite_width.many import (  # noqa: E402
    contract_kernel_cov,
    finite_width_many,
    sample_kernel_cov,
)

HYPER = fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.05)
RHO = 0.3


def kernel(P, seed=0):
    X = np.random.default_rng(seed).normal(size=(P, max(2 * P, 8)))
    return X @ X.T / X.shape[1]


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(f, *args, **kw):
    t = time.perf_counter()
    r = f(*args, **kw)
    jax.block_until_ready(jax.tree.leaves(r))
    return r, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    print(f"jax {jax.__version__}, devices {jax.devices()}")

    print("\n[exact] finite_width_many (sub-block assembly)")
    print(f"{'P':>4} {'L':>4} {'first s':>9} {'second s':>9} {'out MB':>8} {'rss MB':>8}")
    for P, L in ([(3, 5), (4, 5)] if q else [(3, 5), (4, 5), (5, 5), (4, 10), (4, 20)]):
        K0 = kernel(P)
        _, t1 = timed(finite_width_many, K0, RHO, L, HYPER)
        _, t2 = timed(finite_width_many, K0, RHO + 0.01, L, HYPER)
        print(f"{P:>4} {L:>4} {t1:9.2f} {t2:9.2f} {3 * (L + 1) * P**4 * 8 / 2**20:8.2f} "
              f"{rss_mb():8.0f}")

    print("\n[sampled] sample_kernel_cov, L = 50, 20 000 paths")
    print(f"{'P':>4} {'first s':>9} {'second s':>9} {'max rel se':>11} {'chunk MB':>9}")
    for P in ([4, 16] if q else [4, 8, 16]):
        K0 = kernel(P)
        _, t1 = timed(sample_kernel_cov, K0, RHO, 50, HYPER, n_samples=20_000,
                                                chunk=1_000)
        r, t2 = timed(sample_kernel_cov, K0, RHO, 50, HYPER, n_samples=20_000,
                                                chunk=1_000, seed=1)
        rel = float(np.max(r.C_se) / np.max(np.abs(r.C_cov)))
        n_e = P * (P + 1) // 2
        mb = (51 * 1000 * P + 3 * 1000 * n_e + 3 * n_e**2) * 8 / 2**20
        print(f"{P:>4} {t1:9.2f} {t2:9.2f} {rel:11.4f} {mb:9.1f}")

    print("\n[contract] contract_kernel_cov, two matrices, 10 000 paths")
    print(f"{'P':>4} {'L':>4} {'first s':>9} {'second s':>9} {'rel se':>8} {'weights MB':>11}")
    cases = [(16, 50), (256, 50)] if q else [(16, 50), (64, 50), (256, 50), (64, 10),
                                            (64, 200)]
    for P, L in cases:
        K0 = kernel(P)
        A = np.random.default_rng(1).normal(size=(2, P, P))
        _, t1 = timed(contract_kernel_cov, A, None, K0, RHO, L, HYPER,
                                                  n_samples=10_000, chunk=500)
        r, t2 = timed(contract_kernel_cov, A, None, K0, RHO, L, HYPER,
                                                  n_samples=10_000, chunk=500, seed=1)
        rel = float(np.max(np.diag(np.asarray(r.se)) / np.abs(np.diag(np.asarray(r.V)))))
        mb = (L + 1) * 4 * P * P * 8 / 2**20
        print(f"{P:>4} {L:>4} {t1:9.2f} {t2:9.2f} {rel:8.4f} {mb:11.1f}")
    print(f"\npeak rss {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
