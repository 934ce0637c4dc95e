#!/usr/bin/env python
"""Throughput of the Langevin samplers (fieldres.sampling) on the ResNet posterior.

Not a test: prints a table (and writes JSON with ``--json``).

``overhead``  steps per second of the driver (MALA full batch; SGLD mini-batch) against a
              floor: a hand-written ``lax.scan`` of bare ``jax.value_and_grad`` Langevin
              updates of the same log density, same chains, same batch (no accept/reject,
              no noise bookkeeping, no summaries). Ratio = floor time / driver time per
              step (the issue's target: driver <= 1.2x the floor).
``scaling``   MALA chain-steps per second over width N, depth L and training-set size n.

Every timing: compile first (one warm-up call), then the median of ``--repeats`` timed
calls, each ending in ``block_until_ready``; the time per step is the slope between calls of
``--steps`` and ``3 --steps`` steps, so the fixed cost of a ``sample()`` call (initial
gradient, host checks) is reported separately and not spread over the steps. float32,
erf, CIFAR-sized inputs (d_in = 3072, random data: throughput does not depend on the values).

Usage::

    /work/venv/bin/python benchmarks/bench_sampling.py            # ~5 min on 2 CPU cores
    /work/venv/bin/python benchmarks/bench_sampling.py --quick    # ~1 min
    /work/venv/bin/python benchmarks/bench_sampling.py --json out.json

On a GPU the same script measures the accelerator (``jax.devices()`` is printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from fieldres import sampling
from fieldres.kernels import Hyper
from fieldres.models import init_params
from fieldres.training import make_log_density


def _problem(n, d_in, width, depth, chains, seed=0):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(n, d_in)) * 0.2, jnp.float32)
    Y = jnp.asarray(np.sign(rng.normal(size=(n, 1))), jnp.float32)
    hyper = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), Hyper())
    lp, ll, ld = make_log_density("gaussian", 0.1, hyper, "erf")
    pos = jax.vmap(lambda k: init_params(k, d_in, width, depth, 1, "float32"))(
        jax.random.split(jax.random.key(seed), chains))
    rho = jnp.full((chains,), 0.3, jnp.float32)
    return X, Y, lp, ll, ld, pos, rho


def _time(fn, repeats):
    jax.block_until_ready(fn())  # compile + warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _per_step(make, steps, repeats):
    """Seconds per step from runs of ``steps`` and ``3 steps`` (fixed per-call cost removed).

    Returns ``(per_step, per_call_overhead)``.
    """
    t1 = _time(make(steps), repeats)
    t3 = _time(make(3 * steps), repeats)
    per = (t3 - t1) / (2 * steps)
    return per, t1 - steps * per


def _floor(ld_batch, pos, rho, steps, eps=1e-4):
    """Bare Langevin: value_and_grad + update + Gaussian noise, vmapped, in a lax.scan."""
    vg = jax.vmap(jax.value_and_grad(ld_batch), in_axes=(0, 0))

    @jax.jit
    def run(pos, key):
        def body(p, t):
            _, g = vg(p, rho)
            noise = jax.tree.map(
                lambda x, k: jax.random.normal(k, x.shape, x.dtype), p,
                jax.tree.unflatten(jax.tree.structure(p), list(jax.random.split(
                    jax.random.fold_in(key, t), len(jax.tree.leaves(p))))))
            return jax.tree.map(lambda x, gg, n: x + eps * gg + np.sqrt(2 * eps) * n, p, g,
                                noise), None
        return jax.lax.scan(body, pos, jnp.arange(steps))[0]

    return lambda: run(pos, jax.random.key(1))


def _driver(smp, pos, rho, steps):
    def go():
        r = sampling.sample(jax.random.key(1), smp, pos, n_steps=steps + 1, burn_in=steps,
                            thin=1, context=rho, step_size=1e-4, adapt_step_size=False,
                            chunk_size=steps)
        return r.positions
    return go


def overhead(args):
    rows = []
    with jax.enable_x64(False):
        for sampler in ("mala", "sgld"):
            n = args.n
            X, Y, lp, ll, ld, pos, rho = _problem(n, 3072, args.width, args.depth, args.chains)
            if sampler == "mala":
                smp = sampling.MALA(ld, (X, Y))
                batch = (X, Y)
            else:
                smp = sampling.SGLD(lp, ll, (X, Y), args.batch)
                batch = (X[: args.batch], Y[: args.batch])
            t_floor, _ = _per_step(
                lambda k: _floor(lambda p, r, b=batch, f=ld: f(p, b, r), pos, rho, k),  # noqa: B023
                args.steps, args.repeats)
            t_drv, t_call = _per_step(lambda k: _driver(smp, pos, rho, k),  # noqa: B023
                                      args.steps,
                                      args.repeats)
            rows.append(dict(sampler=sampler, n=n, batch=len(batch[0]), width=args.width,
                             depth=args.depth, chains=args.chains, floor_ms=1e3 * t_floor,
                             driver_ms=1e3 * t_drv, ratio=t_drv / t_floor,
                             driver_call_overhead_s=t_call))
            print(f"  {sampler:5s} n={n:5d} batch={len(batch[0]):5d} N={args.width} "
                  f"L={args.depth} chains={args.chains}: floor {1e3 * t_floor:8.2f} ms/step, "
                  f"driver {1e3 * t_drv:8.2f} ms/step, ratio {t_drv / t_floor:5.2f} "
                  f"(+ {t_call:.2f} s per sample() call)", flush=True)
    return rows


def scaling(args):
    rows = []
    base = dict(n=args.n, width=args.width, depth=args.depth)
    grid = [("width", v) for v in args.widths] + [("depth", v) for v in args.depths] + [
        ("n", v) for v in args.ns]
    with jax.enable_x64(False):
        for name, v in grid:
            cfg = base | {name: v}
            X, Y, lp, ll, ld, pos, rho = _problem(cfg["n"], 3072, cfg["width"], cfg["depth"],
                                                  args.chains)
            t, _ = _per_step(lambda k, f=ld, X=X, Y=Y, pos=pos, rho=rho: _driver(
                sampling.MALA(f, (X, Y)), pos, rho, k), args.steps, args.repeats)
            cps = args.chains / t
            rows.append(cfg | dict(chains=args.chains, ms_per_step=1e3 * t,
                                   chain_steps_per_s=cps))
            print(f"  MALA {name}={v:5d} (n={cfg['n']}, N={cfg['width']}, L={cfg['depth']}): "
                  f"{1e3 * t:8.2f} ms/step for {args.chains} chains = {cps:8.1f} chain-steps/s",
                  flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--depths", type=int, nargs="+", default=[5, 20, 50])
    p.add_argument("--ns", type=int, nargs="+", default=[50, 500])
    p.add_argument("--sections", default="overhead,scaling")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.n = 20, 2, 100
        args.widths, args.depths, args.ns = [32, 128], [20], [300]
    print(f"devices: {jax.devices()}")
    out = dict(devices=[str(d) for d in jax.devices()], settings=vars(args))
    if "overhead" in args.sections:
        print("overhead: driver vs bare value_and_grad Langevin scan (per step, all chains)")
        out["overhead"] = overhead(args)
    if "scaling" in args.sections:
        print("scaling: MALA throughput")
        out["scaling"] = scaling(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
