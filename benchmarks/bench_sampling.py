#!/usr/bin/env python
"""Throughput of the Langevin samplers (fieldres.bayes.sampling) on the ResNet posterior.

Not a test: prints a table (and writes JSON with ``--json``).

``overhead``  steps per second of the driver (MALA full batch; SGLD mini-batch) against a
              floor: a hand-written ``lax.scan`` of bare ``jax.value_and_grad`` Langevin
              updates of the same log density, same chains, dtype and step size, doing the
              same work per step: gradient, Gaussian noise and, for SGLD, a mini-batch
              drawn without replacement (no accept/reject, no divergence check, no
              summaries). Ratio = driver time / floor time per step (the issue's target:
              driver <= 1.2x the floor). ``--baseline FILE`` also times another version of
              ``fieldres/sampling.py`` (e.g. the previous commit's) in the same run.
``scaling``   MALA chain-steps per second over width N, depth L and training-set size n.
``mixing``    which sampler mixes (issue 13): MALA (step size adapted during burn-in) against
              NUTS with ``blackjax.window_adaptation`` (step size and diagonal mass matrix),
              both on the whitened weights ``W = sigma_w z / sqrt(N)`` of
              :mod:`fieldres.bayes.models`, on the same posterior: CIFAR-10 dogs vs
              airplanes, L = 10, width 64, n_train = 100, Gaussian likelihood (T = 0.1),
              erf, at rho in {rho*/4, rho*, 4 rho*} (rho* = the diagonal data-driven optimum
              of ``fieldres rho-star --dataset cifar10``, 20 images). Printed per run:
              ESS per second of the test predictions (min over test points of the bulk and
              tail ESS, ArviZ, divided by the run's wall time less its compilation time,
              which jax.monitoring reports; warm-up included), their largest
              rank-normalised split-R-hat, the ESS, the acceptance rate, divergences and the
              wall and compile times. ``--sections mixing``.

Every timing: compile first (one warm-up call), then ``--repeats`` rounds in which every
contender is timed in turn (interleaved, so that a change of the machine's load hits all of
them alike), each call ending in ``block_until_ready``; the time per step is the slope
between calls of ``--steps`` and ``3 --steps`` steps, so the fixed cost of a ``sample()``
call (initial gradient, host checks) is reported separately and not spread over the steps;
ratios are the median over rounds of the per-round ratio. On a CPU backend the clock is the
process's CPU time (all threads; ``--clock wall`` for wall time): on a shared machine wall
time mostly measures the other jobs. float32, erf, CIFAR-sized inputs (d_in = 3072, random
data: throughput does not depend on the values).

Usage::

    /work/venv/bin/python benchmarks/bench_sampling.py            # ~5 min on 2 CPU cores
    /work/venv/bin/python benchmarks/bench_sampling.py --quick    # ~1 min
    /work/venv/bin/python benchmarks/bench_sampling.py --json out.json

On a GPU the same script measures the accelerator (``jax.devices()`` is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from fieldres.bayes import sampling as sampling
from fieldres.bayes.models import init_params
from fieldres.bayes.training import make_log_density
from fieldres.kernels.recursion import Hyper


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


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}


def _timed(fn, clock):
    t = clock()
    jax.block_until_ready(fn())
    return clock() - t


def _per_step(makers: dict, steps, repeats, clock):
    """Seconds per step of each contender from calls of ``steps`` and ``3 steps`` steps.

    ``makers[name](k)`` returns a function running ``k`` steps. The contenders are timed
    in turn, ``repeats`` rounds. Returns ``{name: (per_step, per_call_overhead,
    ratio_to_first)}``: medians over rounds (the ratio is the median of the per-round
    ratios to the first contender).
    """
    fns = {name: (make(steps), make(3 * steps)) for name, make in makers.items()}
    for f1, f3 in fns.values():  # compile + warm-up
        jax.block_until_ready(f1())
        jax.block_until_ready(f3())
    per = {name: [] for name in fns}
    fixed = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (f1, f3) in fns.items():
            t1 = _timed(f1, clock)
            t3 = _timed(f3, clock)
            p = (t3 - t1) / (2 * steps)
            per[name].append(p)
            fixed[name].append(t1 - steps * p)
    first = next(iter(fns))
    return {name: (statistics.median(per[name]), statistics.median(fixed[name]),
                   statistics.median([a / b for a, b in zip(per[name], per[first])]))
            for name in fns}


def _floor(ld_batch, pos, rho, data, batch, steps, eps=1e-4):
    """Bare Langevin: value_and_grad + update + Gaussian noise, vmapped, in a lax.scan.

    ``batch``: mini-batch size (drawn without replacement for every chain and step, as
    SGLD does) or ``None`` for the full batch.
    """
    vg = jax.vmap(jax.value_and_grad(ld_batch), in_axes=(0, None if batch is None else 0, 0))
    n = len(data[0])
    C = len(rho)

    @jax.jit
    def run(pos, key):
        def body(p, t):
            k_batch, k_noise = jax.random.split(jax.random.fold_in(key, t))
            if batch is None:
                b = data
            else:
                idx = jax.vmap(lambda k: jax.random.choice(k, n, (batch,), replace=False))(
                    jax.random.split(k_batch, C))
                b = jax.tree.map(lambda a: a[idx], data)
            _, g = vg(p, b, rho)
            noise = jax.tree.map(
                lambda x, k: jax.random.normal(k, x.shape, x.dtype), p,
                jax.tree.unflatten(jax.tree.structure(p), list(jax.random.split(
                    k_noise, len(jax.tree.leaves(p))))))
            return jax.tree.map(lambda x, gg, n: x + eps * gg + np.sqrt(2 * eps) * n, p, g,
                                noise), None
        return jax.lax.scan(body, pos, jnp.arange(steps))[0]

    return lambda: run(pos, jax.random.key(1))


def _load_module(path):
    spec = importlib.util.spec_from_file_location("_baseline_sampling", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _driver(smp, pos, rho, steps, mod=sampling):
    def go():
        r = mod.sample(jax.random.key(1), smp, pos, n_steps=steps + 1, burn_in=steps,
                            thin=1, context=rho, step_size=1e-4, adapt_step_size=False,
                            chunk_size=steps)
        return r.positions
    return go


def overhead(args):
    rows = []
    clock = CLOCK[args.clock]
    mods = {"driver": sampling}
    if args.baseline:
        mods["baseline"] = _load_module(args.baseline)
    with jax.enable_x64(False):
        for sampler in ("mala", "sgld"):
            n = args.n
            X, Y, lp, ll, ld, pos, rho = _problem(n, 3072, args.width, args.depth, args.chains)
            batch = None if sampler == "mala" else args.batch
            makers = {"floor": lambda k, f=ld, X=X, Y=Y, pos=pos, rho=rho, b=batch: _floor(
                lambda p, d, r: f(p, d, r), pos, rho, (X, Y), b, k)}
            for name, mod in mods.items():
                smp = (mod.MALA(ld, (X, Y)) if sampler == "mala"
                       else mod.SGLD(lp, ll, (X, Y), args.batch))
                makers[name] = (lambda k, s=smp, m=mod, pos=pos, rho=rho:
                                _driver(s, pos, rho, k, m))
            res = _per_step(makers, args.steps, args.repeats, clock)
            t_floor = res["floor"][0]
            row = dict(sampler=sampler, n=n, batch=batch or n, width=args.width,
                       depth=args.depth, chains=args.chains, clock=args.clock,
                       floor_ms=1e3 * t_floor)
            line = (f"  {sampler:5s} n={n:5d} batch={batch or n:5d} N={args.width} "
                    f"L={args.depth} chains={args.chains}: floor {1e3 * t_floor:8.2f} ms/step")
            for name in mods:
                t, t_call, ratio = res[name]
                row |= {f"{name}_ms": 1e3 * t, f"{name}_ratio": ratio,
                        f"{name}_call_overhead_s": t_call}
                line += (f", {name} {1e3 * t:8.2f} ms/step, ratio {ratio:5.2f} "
                         f"(+ {t_call:.2f} s per call)")
            rows.append(row)
            print(line, flush=True)
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
            t = _per_step({"mala": lambda k, f=ld, X=X, Y=Y, pos=pos, rho=rho: _driver(
                sampling.MALA(f, (X, Y)), pos, rho, k)}, args.steps, args.repeats,
                CLOCK[args.clock])["mala"][0]
            cps = args.chains / t
            rows.append(cfg | dict(chains=args.chains, ms_per_step=1e3 * t,
                                   chain_steps_per_s=cps))
            print(f"  MALA {name}={v:5d} (n={cfg['n']}, N={cfg['width']}, L={cfg['depth']}): "
                  f"{1e3 * t:8.2f} ms/step for {args.chains} chains = {cps:8.1f} chain-steps/s",
                  flush=True)
    return rows


def rho_star_diagonal(x_train, depth: int) -> float:
    """``rho_star_diagonal`` of ``fieldres rho-star --dataset cifar10`` (first 20 images)."""
    import fieldres
    from fieldres.signal.optimal import rho_star_entries

    K0 = np.asarray(fieldres.input_kernel(np.asarray(x_train)[:20], 1.0, 0.0), np.float64)
    P = K0.shape[0]
    r = rho_star_entries(K0, depth, Hyper(), "erf", entries=[(a, a) for a in range(P)])
    rho = np.asarray(r.rho_star, np.float64)
    return float(np.nanmean(rho[np.asarray(r.status) == 0]))


def mixing(args) -> list[dict]:
    """ESS/s of the test predictions: MALA vs NUTS on the same ResNet posterior."""
    import fieldres
    from fieldres.bayes.training import train_sweep

    jax.config.update("jax_enable_x64", True)
    L, width, n_train = args.depth, args.width, args.n_train
    ds = fieldres.make_dataset("cifar10", classes=("dog", "airplane"), n_train=n_train,
                               n_test=args.n_test, seed=0, data_dir=args.data_dir,
                               k0_scale=0.05)
    rs = rho_star_diagonal(ds.x_train, L)
    print(f"mixing: L = {L}, N = {width}, n_train = {n_train}, n_test = {args.n_test}, "
          f"{args.chains} chains; rho*_diagonal = {rs:.4f}", flush=True)
    head = (f"{'rho/rho*':>8} {'sampler':>7} {'ESS/s':>9} {'R-hat':>7} {'ESS':>7} "
            f"{'accept':>6} {'div':>4} {'step':>9} {'steps':>6} {'run s':>7} {'compile':>7} "
            f"{'R-hat all':>9} {'test err':>8}")
    print(head)
    compile_s = [0.0]

    def listener(name, secs, **kw):
        if name.startswith("/jax/core/compile/"):
            compile_s[0] += secs

    jax.monitoring.register_event_duration_secs_listener(listener)
    rows = []
    for f in args.factors:
        for sampler in args.samplers.split(","):
            steps = args.mala_steps if sampler == "mala" else args.nuts_steps
            burn = steps // 2
            thin = max(1, (steps - burn) // 200)
            kw = dict(step_size=1e-3) if sampler == "mala" else dict(
                step_size=0.1, max_num_doublings=args.max_doublings)
            compile_s[0] = 0.0
            r = train_sweep(ds.x_train, ds.y_train, ds.x_test, ds.y_test, depth=L,
                            rhos=[f * rs], width=width, sampler=sampler, steps=steps,
                            burn_in=burn, thin=thin, n_chains=args.chains, n_kernel=20,
                            seed=0, **kw)[0]
            q = r.extra["diagnostics"]["test_predictions"]
            ess = min(q["ess_bulk_min"], q["ess_tail_min"])
            comp = min(compile_s[0], r.seconds)
            run_s = r.seconds - comp
            row = dict(factor=f, rho=f * rs, sampler=sampler, ess_per_s=ess / run_s,
                       compile_s=comp, run_s=run_s,
                       rhat=q["rhat_max"], ess=ess, acceptance=r.acceptance_rate,
                       divergences=r.divergences, step_size=r.step_size, steps=steps,
                       wall_s=r.seconds, rhat_all=r.rhat_max, ess_all=r.ess_min,
                       converged=r.converged, test_error=r.test_error,
                       n_draws=r.n_samples // args.chains)
            rows.append(row)
            print(f"{f:8.3g} {sampler:>7} {row['ess_per_s']:9.3g} {q['rhat_max']:7.3f} "
                  f"{ess:7.1f} {r.acceptance_rate:6.3f} {r.divergences:4d} "
                  f"{r.step_size:9.2e} {steps:6d} {run_s:7.1f} {comp:7.1f} "
                  f"{r.rhat_max:9.3f} {r.test_error:8.3f}", flush=True)
        by = {x["sampler"]: x for x in rows if x["factor"] == f}
        if "mala" in by and "nuts" in by:
            print(f"{'':8} NUTS / MALA ESS/s = "
                  f"{by['nuts']['ess_per_s'] / by['mala']['ess_per_s']:.3g}", flush=True)
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
    p.add_argument("--clock", choices=sorted(CLOCK), default=None,
                   help="cpu (process CPU time; default on a CPU backend) or wall")
    p.add_argument("--baseline", help="another fieldres/sampling.py to time in the same run")
    p.add_argument("--json")
    p.add_argument("--data-dir", help="CIFAR-10 folder (mixing; default FIELDRES_DATA_DIR)")
    p.add_argument("--factors", type=float, nargs="+", default=[0.25, 1.0, 4.0],
                   help="rho / rho* of the mixing section")
    p.add_argument("--n-test", type=int, default=100, help="test points (mixing)")
    p.add_argument("--n-train", type=int, default=100, help="training points (mixing)")
    p.add_argument("--mala-steps", type=int, default=4000)
    p.add_argument("--nuts-steps", type=int, default=300)
    p.add_argument("--max-doublings", type=int, default=6, help="NUTS tree depth cap")
    p.add_argument("--samplers", default="mala,nuts")
    args = p.parse_args(argv)
    if args.clock is None:
        args.clock = "cpu" if jax.default_backend() == "cpu" else "wall"
    if args.quick:
        args.steps, args.repeats, args.n = 20, 2, 100
        args.widths, args.depths, args.ns = [32, 128], [20], [300]
    print(f"devices: {jax.devices()}")
    out = dict(devices=[str(d) for d in jax.devices()], settings=vars(args))
    if "overhead" in args.sections:
        print(f"overhead: driver vs bare value_and_grad Langevin scan (per step, all chains; "
              f"{args.clock} time)")
        out["overhead"] = overhead(args)
    if "scaling" in args.sections:
        print("scaling: MALA throughput")
        out["scaling"] = scaling(args)
    if "mixing" in args.sections:
        out["mixing"] = mixing(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
