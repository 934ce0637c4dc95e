#!/usr/bin/env python
"""Performance of the 1/N (finite-width) theory, and its cost against Monte Carlo.

Not a test: prints a table (``--json PATH`` writes it). Sections:

``single``   one input, L = 100: :func:`fieldres.finite_width.finite_width` (P = 1) and
             :func:`~fieldres.finite_width.finite_width_single`: first call (compile + run)
             and the median of later calls at new values of rho (target: < 2 s after compile)
``pairs``    every entry for P = 2 at L = 50 (target: < 60 s, compile included), with
             the default walk method (O(L)) and the pairs method (O(L^2)), and their
             agreement
``vs_mc``    theory vs Monte Carlo at equal accuracy: the MC needs n networks for a 1 %
             standard error on N Var C^(L) (n from the measured fourth moment of the
             samples); MC time = n x the measured time per network of the exact O(N P^2)
             sampler. Printed: how many times cheaper the theory is (target >= 100x).

Usage::

    /work/venv/bin/python benchmarks/bench_finite_width.py [--quick] [--json out.json]

Timings on a shared machine are noisy; every call ends in ``jax.block_until_ready``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import fieldres  # noqa: E402
from fieldres.finite_width import finite_width, finite_width_single  # noqa: E402
from fieldres.simulation import simulate_kernels  # noqa: E402

HYPER = fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.05)


def _timed(f, *args):
    t = time.perf_counter()
    out = f(*args)
    jax.block_until_ready(jax.tree.leaves(out))
    return time.perf_counter() - t, out


def bench_single(repeats: int) -> dict:
    res = {}
    for name, f in (
        ("finite_width(P=1)", lambda r: finite_width(jnp.array([[0.5]]), r, 100, HYPER)),
        ("finite_width_single", lambda r: finite_width_single(0.5, r, 100, HYPER)),
    ):
        first, _ = _timed(f, 0.1)
        later = [_timed(f, 0.1 + 0.001 * (i + 1))[0] for i in range(repeats)]
        res[name] = dict(first_s=first, run_s=statistics.median(later))
    return res


def bench_pairs(depth: int, repeats: int) -> dict:
    """Every entry for P = 2 at one depth, both methods; the walk's agreement with pairs."""
    K0 = jnp.array([[0.5, 0.3], [0.3, 0.8]])
    out = {}
    res = {}
    for method in ("walk", "pairs"):
        first, res[method] = _timed(lambda m=method: finite_width(K0, 0.2, depth, HYPER,
                                                                  method=m))
        later = [_timed(lambda m=method, i=i: finite_width(K0, 0.2 + 0.001 * (i + 1), depth,
                                                           HYPER, method=m))[0]
                 for i in range(repeats if method == "walk" else 1)]
        out[method] = dict(first_s=first, run_s=statistics.median(later))
    w, p = res["walk"], res["pairs"]
    diff = max(float(jnp.max(jnp.abs(getattr(w, k) - getattr(p, k)))
                     / jnp.max(jnp.abs(getattr(p, k))))
               for k in ("C_cov", "K_cov", "CK_cov", "C_shift", "K_shift"))
    return dict(depth=depth, n_layer_pairs=(depth + 1) * (depth + 2) // 2,
                max_rel_diff_walk_pairs=diff,
                C_ncov_last=np.asarray(w.cov_matrix("C")).tolist(), **out)


def bench_vs_mc(case: dict, n_pilot: int, target_rel: float = 0.01) -> dict:
    K0 = jnp.asarray(case["K0"])
    L, N, rho = case["depth"], case["width"], case["rho"]
    f = lambda r: finite_width(K0, r, L, HYPER)  # noqa: E731
    _timed(f, rho + 1e-3)  # compile
    t_theory = statistics.median(_timed(f, rho)[0] for _ in range(3))

    def sim(n, seed):
        return simulate_kernels(jax.random.PRNGKey(seed), K0, rho=rho, depth=L, width=N,
                                n_networks=n, sigma_w2=1.25, sigma_b2=0.05,
                                batch_size=min(n, 4096))

    _timed(sim, min(n_pilot, 4096), 0)  # compile
    t_mc, s = _timed(sim, n_pilot, 1)
    x = np.asarray(s.C_last, np.float64)[:, 0, -1]  # the last entry (off-diagonal for P=2)
    d = x - x.mean()
    var, m4 = d.var(ddof=1), np.mean(d**4)
    rel_per_sqrt_n = np.sqrt(m4 - var**2) / var  # rel. SE of the variance = this / sqrt(n)
    n_needed = int(np.ceil((rel_per_sqrt_n / target_rel) ** 2))
    t_mc_needed = t_mc / n_pilot * n_needed
    return dict(case=case, theory_s=t_theory, mc_s_per_network=t_mc / n_pilot,
                networks_for_1pct=n_needed, mc_s_for_1pct=t_mc_needed,
                speedup=t_mc_needed / t_theory, mc_NVar=N * var,
                theory_NVar=float(finite_width(K0, rho, L, HYPER).C_cov[-1, 0, -1, 0, -1]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller pilot")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    reps = 2 if args.quick else 5
    out = {"device": str(jax.devices()[0]), "single": bench_single(reps)}
    print("single input, L = 100 (seconds):")
    for k, v in out["single"].items():
        print(f"  {k:22s} first call {v['first_s']:7.2f}   later calls {v['run_s']:7.3f}")
    out["pairs"] = bench_pairs(50, reps)
    v = out["pairs"]
    print("P = 2, all entries, L = 50 (seconds):")
    for m in ("walk", "pairs"):
        print(f"  method={m:6s} first call {v[m]['first_s']:7.2f} (compile included)   later "
              f"calls {v[m]['run_s']:7.3f}")
    print(f"  max relative difference walk vs pairs: {v['max_rel_diff_walk_pairs']:.1e} "
          f"(pairs: {v['n_layer_pairs']} layer-pair integrals; walk: one pass)")
    cases = [dict(name="THEORY 5 (P=1, L=10, N=200)", K0=[[0.5]], rho=0.3, depth=10,
                  width=200),
             dict(name="P=2, L=50, N=200", K0=[[0.5, 0.3], [0.3, 0.8]], rho=0.2, depth=50,
                  width=200)]
    out["vs_mc"] = [bench_vs_mc(c, 4096 if args.quick else 16384) for c in cases]
    print("theory vs Monte Carlo at 1 % standard error on N Var C^(L):")
    for v in out["vs_mc"]:
        print(f"  {v['case']['name']}: theory {v['theory_s']:.3f} s; MC needs "
              f"{v['networks_for_1pct']} networks = {v['mc_s_for_1pct']:.1f} s "
              f"({v['mc_s_per_network'] * 1e3:.3f} ms each) -> theory {v['speedup']:.0f}x "
              f"cheaper (N Var: theory {v['theory_NVar']:.4f}, MC {v['mc_NVar']:.4f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
