#!/usr/bin/env python
"""Performance figures of the leading-order calculator (erf, default ``fieldres.Hyper()``).

Not a test: it prints tables (and writes JSON with ``--json``). Sections:

``kernels``   ``fieldres.resnet_kernels(..., trajectory=False)`` over depths L x sizes P
``response``  ``fieldres.response`` (chi_L and chi^out, both summaries) over L x P
``rhostar``   ``fieldres.rho_star`` for one diagonal and one off-diagonal entry (P = 2) and
              ``fieldres.rho_star_entries`` for all 210 entries of a P = 20 kernel, over L
``traj``      peak memory of ``trajectory=True`` (grows as L P^2) next to ``trajectory=False``
``compile``   AOT compile time vs L (the layer loop is a ``lax.scan``: flat in L)
``scaling``   ``fieldres.rho_star_scaling`` on the 7-depth curve {10..1000}: run time and the
              number of XLA compilations of the whole sweep
``floor``     fieldres vs a minimal hand-written ``lax.fori_loop`` of the bare erf update
``validation`` host-side input checks of the public entry points (full-rank vs rank-deficient K0)

Method
------
* Every configuration runs in a fresh subprocess (this script with ``--worker``), so that
  compilation caches and allocator state never leak between configurations.
* compile = first call - median of the later calls (public API as a user calls it; every
  call ends in ``jax.block_until_ready``). run = median of the later calls; the number of
  repeats shrinks for slow configurations (``--repeats``, ``--time-per-config``).
* Peak memory, two numbers per configuration, both from the kernel's resident-set
  high-water mark (``VmHWM`` of ``/proc/self/status``, reset with ``echo 5 >
  /proc/self/clear_refs`` before the measured call; where that is impossible
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` before/after is used instead):
  ``first`` = peak RSS increase over the first call (tracing + XLA compilation + one run),
  ``run`` = peak RSS increase over one steady-state call (the working memory of the
  computation itself: outputs + XLA temporaries). Workers run with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc returns freed large buffers to the OS
  and RSS follows live memory (with glibc's default dynamic threshold a freed buffer stays
  resident and the next call's peak would read as ~0).
  ``XLA`` = ``jax.jit(f).lower(K0).compile().memory_analysis()`` temp + output bytes (a
  separate compile done after the timings; n/a for ``rho_star_entries``, which leaves jit).
* Configurations whose estimated single-call time exceeds ``--max-run`` seconds are skipped
  and printed as ``skipped (est. N s)``; the estimate scales the largest configuration of
  the same kind measured so far by L P^2 (by L for rho*). P = 1000, L = 1000 is always run
  for ``kernels`` and ``response``.
* Compile counts (``scaling``): a ``jax.monitoring`` listener on
  ``/jax/core/compile/backend_compile_duration`` (one event per XLA compilation) in a fresh
  process, cross-checked by ``jax_log_compiles`` records ("Finished XLA compilation of
  jit(NAME)") captured with a ``logging`` handler, which give the names.

Usage::

    /work/venv/bin/python benchmarks/bench_core.py                # default: 7-13 min on 2 cores
    /work/venv/bin/python benchmarks/bench_core.py --quick        # small subset, ~2 min
    /work/venv/bin/python benchmarks/bench_core.py --depths 10,100 --sizes 20,200 \\
        --sections kernels,response,floor --json out.json

Timings on a shared machine are noisy (the floor comparison interleaves the two sides
call by call for that reason); compare numbers taken within one invocation.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
RHO = 0.1  # residual scaling used for kernels / response (run time does not depend on it)
SECTIONS = ("kernels", "response", "rhostar", "traj", "compile", "scaling", "floor",
            "validation")
SCALING_DEPTHS = (10, 20, 50, 100, 200, 500, 1000)
FORCED = {("kernels", 1000, 1000), ("response", 1000, 1000)}

# Prior cost per unit of work (seconds), refined by measurements as the run goes:
# kernels/response: per L*P^2 element-layer; rho*: per layer; entries: per layer.
PRIOR_COST = {
    "kernels": 2.0e-8,
    "response": 5.0e-8,
    "rho_star_diag": 5.0e-6,
    "rho_star_off": 3.0e-5,
    "rho_star_entries": 3.0e-3,
    "traj": 2.0e-8,
}
MB = 1e6


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================== worker side


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMeter:
    """Peak RSS increase over a block: VmHWM after clear_refs, else ru_maxrss before/after."""

    def __init__(self):
        self.method = "VmHWM+clear_refs"
        if not self._reset():
            self.method = "ru_maxrss"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            return False
        hwm, rss = _status_kb("VmHWM"), _status_kb("VmRSS")
        return hwm is not None and rss is not None and hwm <= rss + 64

    def __enter__(self):
        gc.collect()
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if self.method == "VmHWM+clear_refs":
            self._reset()
            self._rss0 = _status_kb("VmRSS")
        self.delta_bytes = None
        return self

    def __exit__(self, *exc):
        if self.method == "VmHWM+clear_refs":
            self.delta_bytes = max(0, _status_kb("VmHWM") - self._rss0) * 1024
        else:  # ru_maxrss is in kB on Linux; only increases beyond the earlier peak show
            self.delta_bytes = max(
                0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._ru0) * 1024
        return False


def _make_K0(P, seed=0, scale=1.0, d_in=None):
    """Input kernel of P Gaussian inputs; full rank unless ``d_in < P``."""
    import numpy as np

    import fieldres

    rng = np.random.default_rng(seed)
    d_in = P + 16 if d_in is None else d_in
    X = rng.standard_normal((P, d_in))
    return fieldres.input_kernel(X, sigma_w2_in=scale)


def _xla_memory(g, K0):
    import jax

    try:
        compiled = jax.jit(g).lower(K0).compile()
        m = compiled.memory_analysis()
    except Exception as e:  # noqa: BLE001 - report and go on
        return {"xla_error": f"{type(e).__name__}: {e}"[:200]}, None
    if m is None:
        return {}, compiled
    return {
        "xla_temp_bytes": int(m.temp_size_in_bytes),
        "xla_output_bytes": int(m.output_size_in_bytes),
        "xla_argument_bytes": int(m.argument_size_in_bytes),
    }, compiled


class _Skip(Exception):
    pass


def _timed_config(f, repeats, time_per_config, g=None, K0=None):
    """Compile/run times and peak memory of the zero-argument callable f."""
    import jax

    meter = PeakMeter()
    with meter:
        t0 = time.perf_counter()
        out = jax.block_until_ready(f())
        first = time.perf_counter() - t0
    peak_first = meter.delta_bytes
    runs, peaks = [], []
    for _ in range(max(1, repeats)):  # stops early once time_per_config is spent
        out = None  # noqa: F841 - free the previous result before the measured call
        with meter:
            t0 = time.perf_counter()
            out = jax.block_until_ready(f())
            runs.append(time.perf_counter() - t0)
        peaks.append(meter.delta_bytes)
        if sum(runs) > time_per_config:
            break
    del out
    run = statistics.median(runs)
    res = {
        "first_s": first,
        "run_s": run,
        "runs_s": runs,
        "compile_s": max(0.0, first - run),
        "peak_first_bytes": peak_first,
        "peak_run_bytes": max(peaks),
        "mem_method": meter.method,
    }
    if g is not None:
        mem, compiled = _xla_memory(g, K0)
        res.update(mem)
        # the same computation under an outer jit: no host-side validation, no dispatch of
        # the eager conversions; isolates the XLA program from the Python entry point.
        # Skipped where the calls are slow (host overhead is then negligible anyway).
        try:
            if compiled is None or run * len(runs) > time_per_config / 2:
                raise _Skip
            jax.block_until_ready(compiled(K0))
            jt = []
            for _ in range(len(runs)):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(K0))
                jt.append(time.perf_counter() - t0)
            res["run_jit_s"] = statistics.median(jt)
        except _Skip:
            pass
        except Exception as e:  # noqa: BLE001
            res["run_jit_error"] = f"{type(e).__name__}: {e}"[:200]
    return res


def _work_kernels(cfg):
    import jax

    import fieldres

    P, L, traj = cfg["P"], cfg["L"], cfg.get("trajectory", False)
    K0 = jax.block_until_ready(_make_K0(P))
    hyper = fieldres.Hyper()

    def f():
        k = fieldres.resnet_kernels(K0, RHO, L, hyper, "erf", trajectory=traj)
        return k

    def g(K):
        return fieldres.resnet_kernels(K, RHO, L, hyper, "erf", trajectory=traj)

    res = _timed_config(f, cfg["repeats"], cfg["time_per_config"], g, K0)
    res["trajectory_bytes_theory"] = (L + 1) * P * P * 8 if traj else 0
    return res


def _work_response(cfg):
    import jax

    import fieldres

    P, L = cfg["P"], cfg["L"]
    K0 = jax.block_until_ready(_make_K0(P))
    hyper = fieldres.Hyper()

    def f():
        return fieldres.response(K0, RHO, L, hyper, "erf")

    def g(K):
        return fieldres.response(K, RHO, L, hyper, "erf")

    return _timed_config(f, cfg["repeats"], cfg["time_per_config"], g, K0)


def _K2():
    import jax.numpy as jnp

    # the docstring example of fieldres.rho_star: an interior maximum for both summaries
    return jnp.array([[0.05, 0.03], [0.03, 0.05]])


def _work_rho_star(cfg):
    import jax
    import numpy as np

    import fieldres

    L, entry = cfg["L"], tuple(cfg["entry"])
    K0 = jax.block_until_ready(_K2())

    def f():
        return fieldres.rho_star(K0, L, entry=entry)

    def g(K):
        return fieldres.rho_star(K, L, entry=entry)

    res = _timed_config(f, cfg["repeats"], cfg["time_per_config"], g, K0)
    out = f()
    res["rho_star"] = float(out.rho_star)
    res["status"] = int(np.asarray(out.status))
    return res


def _work_rho_star_entries(cfg):
    import jax
    import numpy as np

    import fieldres

    P, L = cfg["P"], cfg["L"]
    K0 = jax.block_until_ready(_make_K0(P, seed=1, scale=0.05))

    def f():
        return fieldres.rho_star_entries(K0, L)

    res = _timed_config(f, cfg["repeats"], cfg["time_per_config"])
    out = f()
    st = np.asarray(out.status)
    res["n_entries"] = int(st.size)
    res["n_ok"] = int(np.sum(st == 0))
    return res


def _work_compile(cfg):
    """AOT trace+lower and XLA compile wall time vs the (static) depth, fresh jit per L."""
    import jax

    import fieldres

    P = cfg["P"]
    K0 = jax.block_until_ready(_make_K0(P))
    K2 = jax.block_until_ready(_K2())
    hyper = fieldres.Hyper()
    fns = {
        "kernels": (K0, lambda L: (lambda K: fieldres.resnet_kernels(
            K, RHO, L, hyper, "erf", trajectory=False))),
        "response": (K0, lambda L: (lambda K: fieldres.response(K, RHO, L, hyper, "erf"))),
        "rho_star_off": (K2, lambda L: (lambda K: fieldres.rho_star(K, L, entry=(0, 1)))),
    }
    # warm-up so that the first depth does not pay one-off costs (imports, MLIR context)
    jax.jit(fns["kernels"][1](3)).lower(K0).compile()
    raw = []
    # two passes, increasing then decreasing L, so that drift in machine load does not
    # masquerade as a trend in L; the table takes the faster of the two
    for order in (cfg["depths"], cfg["depths"][::-1]):
        for L in order:
            for name, (K, mk) in fns.items():
                t0 = time.perf_counter()
                lowered = jax.jit(mk(L)).lower(K)
                t1 = time.perf_counter()
                lowered.compile()
                t2 = time.perf_counter()
                raw.append({"fn": name, "L": L, "lower_s": t1 - t0, "compile_s": t2 - t1,
                            "total_s": t2 - t0})
    rows = []
    for name in fns:
        for L in cfg["depths"]:
            best = min((r for r in raw if r["fn"] == name and r["L"] == L),
                       key=lambda r: r["total_s"])
            rows.append(best)
    return {"rows": rows, "raw": raw}


class CompileCounter:
    """Counts XLA compilations: jax.monitoring events + jax_log_compiles log records."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import logging

        import jax

        self.events = []
        self.records = []
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        counter = self

        class _Handler(logging.Handler):
            def emit(self, record):
                msg = record.getMessage()
                if msg.startswith("Finished XLA compilation of "):
                    counter.records.append(msg)

        self.handler = _Handler(level=logging.DEBUG)
        lg = logging.getLogger("jax")
        lg.addHandler(self.handler)
        lg.propagate = False  # keep the per-compile warnings off stderr
        for h in list(lg.handlers):
            if h is not self.handler:
                lg.removeHandler(h)
        jax.config.update("jax_log_compiles", True)

    def _on_event(self, name, duration, **kwargs):
        if name == self.EVENT:
            self.events.append(duration)

    def reset(self):
        self.events.clear()
        self.records.clear()

    def summary(self):
        import re

        names = {}
        secs = {}
        for m in self.records:
            mm = re.match(r"Finished XLA compilation of (.*) in ([0-9.eE+-]+) sec", m)
            name = mm.group(1) if mm else m
            names[name] = names.get(name, 0) + 1
            if mm:
                secs[name] = secs.get(name, 0.0) + float(mm.group(2))
        heavy = {k: v for k, v in names.items() if secs.get(k, 0.0) >= 0.1}
        return {
            "n_backend_compiles": len(self.events),
            "n_log_records": len(self.records),
            "backend_compile_s": float(sum(self.events)),
            "by_name": names,
            "seconds_by_name": secs,
            "heavy": heavy,  # >= 0.1 s of XLA time in total
        }


def _work_scaling(cfg):
    import jax
    import numpy as np

    import fieldres

    cc = CompileCounter()
    K0 = jax.block_until_ready(_K2())
    depths = list(cfg["depths"])
    cc.reset()
    t0 = time.perf_counter()
    fit = fieldres.rho_star_scaling(K0, depths)
    first = time.perf_counter() - t0
    compiles_first = cc.summary()
    runs = []
    cc.reset()
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        fit = fieldres.rho_star_scaling(K0, depths)  # returns numpy-backed results
        jax.block_until_ready(fit.diagonal.rho_star)
        runs.append(time.perf_counter() - t0)
    compiles_repeat = cc.summary()
    # another curve with the same number of depths and the same maximum: no recompilation
    other = sorted({max(depths)} | {d + 1 for d in depths[:-1]})
    other = (other + depths)[: len(depths)]
    cc.reset()
    fieldres.rho_star_scaling(K0, other)
    compiles_other = cc.summary()
    # a curve with a larger maximum depth: the static scan length changes
    deeper = [2 * d for d in depths]
    cc.reset()
    fieldres.rho_star_scaling(K0, deeper)
    compiles_deeper = cc.summary()
    return {
        "depths": depths,
        "first_s": first,
        "run_s": statistics.median(runs),
        "runs_s": runs,
        "compile_s": max(0.0, first - statistics.median(runs)),
        "compiles_first_call": compiles_first,
        "compiles_repeat_calls": compiles_repeat,
        "other_depths": other,
        "compiles_other_same_max": compiles_other,
        "deeper_depths": deeper,
        "compiles_deeper": compiles_deeper,
        "rho_star_diag": np.asarray(fit.diagonal.rho_star).tolist(),
        "rho_star_off": np.asarray(fit.offdiagonal.rho_star).tolist(),
        "exponent_diag": fit.exponent_diagonal,
        "exponent_off": fit.exponent_offdiagonal,
    }


def _floor_fn(L):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def floor(K0, rho, sw2, sb2):
        def body(_, K):
            s = 1.0 + 2.0 * jnp.diagonal(K)
            C = (2.0 / jnp.pi) * jnp.arcsin(2.0 * K / jnp.sqrt(s[:, None] * s[None, :]))
            return K + rho**2 * (sw2 * C + sb2)

        return jax.lax.fori_loop(0, L, body, K0)

    return floor


def _diagnose_variants(P, L, K0, repeats):
    """Run alternative update rules when the floor ratio is high (where is the time?)."""
    import jax
    import jax.numpy as jnp

    import fieldres

    act = fieldres.get_activation("erf")
    h = fieldres.Hyper()
    rho, sw2, sb2 = (jnp.asarray(x, K0.dtype) for x in (RHO, h.sigma_w2, h.sigma_b2))
    eye = jnp.eye(P, dtype=bool)

    def lib(K):
        return K + rho**2 * (sw2 * act.kernel(K) + sb2)

    def no_safe_where(K):
        d = jnp.diagonal(K)
        off = act.covariance(d[:, None], d[None, :], K)
        return K + rho**2 * (sw2 * jnp.where(eye, jnp.diag(act.variance(d)), off) + sb2)

    def no_diag_where(K):
        d = jnp.diagonal(K)
        off = act.covariance(d[:, None], d[None, :], jnp.where(eye, 0.0, K))
        return K + rho**2 * (sw2 * off + sb2)

    def bare(K):
        d = jnp.diagonal(K)
        return K + rho**2 * (sw2 * act.covariance(d[:, None], d[None, :], K) + sb2)

    out = {}
    for name, step in [("bare", bare), ("lib_kernel", lib), ("no_safe_where", no_safe_where),
                       ("no_diag_where", no_diag_where)]:
        fn = jax.jit(lambda K, s=step: jax.lax.fori_loop(0, L, lambda i, x: s(x), K))
        jax.block_until_ready(fn(K0))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(K0))
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts)
    public_core = jax.jit(lambda K: fieldres.resnet_kernels(K, RHO, L, trajectory=False).K_L)
    jax.block_until_ready(public_core(K0))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(public_core(K0))
        ts.append(time.perf_counter() - t0)
    out["resnet_kernels_under_jit"] = statistics.median(ts)
    return {"diag_L": L, "variants_run_s": out}


def _work_floor(cfg):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import fieldres

    P, L, reps = cfg["P"], cfg["L"], cfg["repeats"]
    K0 = jax.block_until_ready(_make_K0(P))
    h = fieldres.Hyper()
    args = tuple(jnp.asarray(x, K0.dtype) for x in (RHO, h.sigma_w2, h.sigma_b2))
    floor = _floor_fn(L)

    def f_fr():
        return fieldres.resnet_kernels(K0, RHO, L, h, "erf", trajectory=False).K_L

    # floor: AOT-compiled (compile = lower().compile() wall time); fieldres: public API as
    # a user calls it (compile = first call - median run)
    t0 = time.perf_counter()
    floor_c = floor.lower(K0, *args).compile()
    compile_floor = time.perf_counter() - t0
    sides = {"floor": lambda: floor_c(K0, *args), "fieldres": f_fr}
    if cfg.get("under_jit"):
        # the public API under an outer jit: no host-side validation, same XLA program
        f_jit = jax.jit(lambda K: fieldres.resnet_kernels(K, RHO, L, h, "erf",
                                                          trajectory=False).K_L)
        t0 = time.perf_counter()
        f_jit_c = f_jit.lower(K0).compile()
        compile_jit = time.perf_counter() - t0
        sides["fieldres_under_jit"] = lambda: f_jit_c(K0)
    t0 = time.perf_counter()
    out_fr = np.asarray(jax.block_until_ready(f_fr()))
    first_fr = time.perf_counter() - t0
    runs = {k: [] for k in sides}
    out_floor = None
    for _ in range(reps):  # interleaved, so that machine load hits all sides alike
        for name, fn in sides.items():
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn())
            runs[name].append(time.perf_counter() - t0)
            if name == "floor" and out_floor is None:
                out_floor = np.asarray(out)
            del out
    med = {k: statistics.median(v) for k, v in runs.items()}
    compile_s = {"floor": compile_floor, "fieldres": max(0.0, first_fr - med["fieldres"])}
    if "fieldres_under_jit" in sides:
        compile_s["fieldres_under_jit"] = compile_jit
    pair_ratios = [a / b for a, b in zip(runs["fieldres"], runs["floor"], strict=True)]
    res = {
        "P": P,
        "L": L,
        "first_s_fieldres": first_fr,
        "runs_s": runs,
        "run_s": med,
        "compile_s": compile_s,
        "ratio": med["fieldres"] / med["floor"],
        "ratio_pairwise_median": statistics.median(pair_ratios),
        "max_abs_diff": float(np.max(np.abs(out_fr - out_floor))),
        "ns_per_element_layer_floor": med["floor"] / (L * P * P) * 1e9,
    }
    if "fieldres_under_jit" in med:
        res["ratio_under_jit"] = med["fieldres_under_jit"] / med["floor"]
    if res["ratio"] > 1.5 or cfg.get("diagnose"):
        res["diagnosis"] = _diagnose_variants(P, max(1, L // 10), K0, 3)
    return res


def _work_validation(cfg):
    """Host-side checks of the public API: full-rank vs rank-deficient (d_in < P) K0.

    ``check_kernel`` (symmetry, Cholesky, eigvalsh fallback) is timed on its own after an
    idle pause and right after an XLA call (as inside the public API, where XLA's and
    OpenBLAS's worker threads compete for the cores), next to the public call and the same
    computation under an outer ``jax.jit`` (which skips the host-side checks).
    """
    import jax

    import fieldres
    from fieldres._validation import check_kernel

    P, L, reps = cfg["P"], cfg["L"], 3
    rows = []
    for label, d_in in (("full rank", P + 16), ("rank 10", 10)):
        K0 = jax.block_until_ready(_make_K0(P, d_in=d_in))
        core = jax.jit(lambda K: fieldres.resnet_kernels(K, RHO, L, trajectory=False).K_L)

        def public(K0=K0):
            return fieldres.resnet_kernels(K0, RHO, L, trajectory=False).K_L

        jax.block_until_ready(core(K0))
        jax.block_until_ready(public())
        t_idle, t_after, t_pub, t_jit = [], [], [], []
        for _ in range(reps):  # back-to-back public calls, as in a user's loop
            t0 = time.perf_counter()
            jax.block_until_ready(public())
            t_pub.append(time.perf_counter() - t0)
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(core(K0))
            t_jit.append(time.perf_counter() - t0)
        for _ in range(reps):
            jax.block_until_ready(core(K0))
            t0 = time.perf_counter()
            check_kernel(K0)
            t_after.append(time.perf_counter() - t0)
        for _ in range(reps):
            time.sleep(0.3)
            t0 = time.perf_counter()
            check_kernel(K0)
            t_idle.append(time.perf_counter() - t0)
        med = statistics.median
        rows.append({"K0": label, "check_idle_s": med(t_idle), "check_after_xla_s": med(t_after),
                     "public_s": med(t_pub), "jit_s": med(t_jit)})
    return {"P": P, "L": L, "rows": rows,
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "")}


WORKERS = {
    "kernels": _work_kernels,
    "traj": _work_kernels,
    "response": _work_response,
    "rho_star_diag": _work_rho_star,
    "rho_star_off": _work_rho_star,
    "rho_star_entries": _work_rho_star_entries,
    "compile": _work_compile,
    "scaling": _work_scaling,
    "floor": _work_floor,
    "validation": _work_validation,
}


def worker_main(cfg_json: str) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    cfg = json.loads(cfg_json)
    res = WORKERS[cfg["kind"]](cfg)
    print("RESULT " + json.dumps(res), flush=True)


# =========================================================================== parent side


def run_worker(cfg: dict, timeout: float, env_extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(env_extra or {})
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONWARNINGS"] = "ignore"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE), "--worker", json.dumps(cfg)],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["worker_wall_s"] = wall
            return res
    return {"error": f"worker exit {proc.returncode}: " + proc.stderr.strip()[-800:]}


def _work(kind, L, P):
    if kind in ("kernels", "response", "traj"):
        return L * P * P
    return L


class Estimator:
    """Single-call run time estimate: the largest measured config of the kind, scaled."""

    def __init__(self):
        self.ref: dict[str, tuple[float, float]] = {}

    def add(self, kind, L, P, run_s):
        w = _work(kind, L, P)
        if kind not in self.ref or w >= self.ref[kind][0]:
            self.ref[kind] = (w, run_s)

    def estimate(self, kind, L, P):
        w = _work(kind, L, P)
        if kind in self.ref:
            w0, t0 = self.ref[kind]
            return t0 * w / max(w0, 1)
        return PRIOR_COST[kind] * w


def _fmt_s(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 1e-3:
        return f"{x * 1e3:.1f}m"
    return f"{x * 1e6:.0f}u"


def _fmt_mb(b):
    if b is None:
        return "-"
    mb = b / MB
    return f"{mb:.0f}" if mb >= 100 else (f"{mb:.1f}" if mb >= 1 else f"{mb:.2f}")


def _xla_total(r):
    if "xla_temp_bytes" not in r:
        return None
    return r["xla_temp_bytes"] + r["xla_output_bytes"]


def print_table(title, header, rows):
    print()
    print(title)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def run_grid(kind, configs, args, est, results):
    """configs: list of (L, P, extra cfg); runs them cheapest first, skipping slow ones."""
    rows = []
    for L, P, extra in sorted(configs, key=lambda c: _work(kind, c[0], c[1])):
        e = est.estimate(kind, L, P)
        label = extra.get("label", "")
        rec = {"kind": kind, "L": L, "P": P, **{k: v for k, v in extra.items() if k != "label"},
               "est_run_s": e}
        forced = (kind, L, P) in FORCED
        if e > args.max_run and not forced:
            rec["skipped"] = True
            results.append(rec)
            log(f"[{kind}{label}] L={L} P={P}: skipped (est. {e:.0f} s per call)")
            continue
        cfg = {"kind": kind, "L": L, "P": P, "repeats": args.repeats,
               "time_per_config": args.time_per_config, **extra}
        log(f"[{kind}{label}] L={L} P={P} (est. {e:.2g} s per call) ...")
        res = run_worker(cfg, timeout=max(600.0, 10 * e + 120))
        rec.update(res)
        results.append(rec)
        if "error" not in res:
            est.add(kind, L, P, res["run_s"])
            log(f"    compile {res['compile_s']:.2f} s, run {res['run_s']:.3g} s, "
                f"peak run {_fmt_mb(res['peak_run_bytes'])} MB")
        else:
            log("    ERROR " + res["error"])
    return rows


def grid_rows(results, kinds, with_P=True):
    out = []
    for r in results:
        if r["kind"] not in kinds:
            continue
        name = r["kind"] + (f" {tuple(r['entry'])}" if "entry" in r else "")
        head = [name] + ([r["P"]] if with_P else []) + [r["L"]]
        if r.get("skipped"):
            out.append(head + [f"skipped (est. {r['est_run_s']:.0f} s)"] + [""] * 7)
            continue
        if "error" in r:
            out.append(head + ["ERROR: " + r["error"][:60]] + [""] * 7)
            continue
        extra = ""
        if "rho_star" in r:
            extra = f"rho*={r['rho_star']:.5g} st={r['status']}"
        elif "n_entries" in r:
            extra = f"{r['n_ok']}/{r['n_entries']} ok"
        out.append(head + [
            _fmt_s(r["compile_s"]),
            _fmt_s(r["run_s"]),
            _fmt_s(r.get("run_jit_s")),
            str(len(r["runs_s"])),
            _fmt_mb(r["peak_first_bytes"]),
            _fmt_mb(r["peak_run_bytes"]),
            _fmt_mb(_xla_total(r)),
            extra,
        ])
    return out


GRID_HEADER_TAIL = ["compile s", "run s", "jit run s", "n", "peak first MB", "peak run MB",
                    "XLA MB", ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depths", default="10,100,1000,10000", help="comma-separated L")
    ap.add_argument("--sizes", default="1,20,200,1000", help="comma-separated P")
    ap.add_argument("--quick", action="store_true",
                    help="small subset: depths 10,100, sizes 1,20,200; floor at P=200, L=200")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--repeats", type=int, default=5, help="max timed calls after the first")
    ap.add_argument("--time-per-config", type=float, default=12.0,
                    help="stop repeating once this many seconds of timed calls are spent")
    ap.add_argument("--max-run", type=float, default=30.0,
                    help="skip configurations whose estimated single call exceeds this (s)")
    ap.add_argument("--floor-P", type=int, default=1000)
    ap.add_argument("--floor-L", type=int, default=1000)
    ap.add_argument("--floor-repeats", type=int, default=3)
    ap.add_argument("--floor-jit", action="store_true",
                    help="add a third floor side: the public API under an outer jax.jit")
    ap.add_argument("--diagnose", action="store_true",
                    help="always run the floor diagnosis variants (else only if ratio > 1.5)")
    ap.add_argument("--json", default=None, help="write all results to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker is not None:
        worker_main(args.worker)
        return 0

    import jax  # noqa: F401 - only for the version in the metadata

    jax_version = jax.__version__
    depths = [int(x) for x in args.depths.split(",") if x]
    sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.quick:
        depths = [d for d in depths if d <= 100] or [10, 100]
        sizes = [p for p in sizes if p <= 200] or [1, 20, 200]
        args.floor_P, args.floor_L = 200, 200
        args.floor_jit = True  # at this size the host-side checks matter: show both
        args.time_per_config = min(args.time_per_config, 4.0)
    sections = [s for s in args.sections.split(",") if s]
    for s in sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")

    t_start = time.perf_counter()
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "jax": jax_version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "args": vars(args),
        "depths": depths,
        "sizes": sizes,
        "rho": RHO,
        "dtype": "float64",
        "activation": "erf",
        "hyper": "fieldres.Hyper() defaults",
    }
    results: list[dict] = []
    est = Estimator()
    print(f"fieldres bench_core: jax {jax_version}, {os.cpu_count()} CPU(s), float64, erf, "
          f"default Hyper(), rho={RHO}; load avg {os.getloadavg()[0]:.2f}")
    print("compile = first call - median run; run = median of n calls after the first; "
          "peak first/run = peak RSS increase over the first / one steady call "
          "(fresh process per row); XLA = memory_analysis temp+output")

    if "kernels" in sections:
        cfgs = [(L, P, {"trajectory": False}) for L in depths for P in sizes]
        if depths and sizes and 1000 in sizes and 1000 in depths:
            pass  # forced via FORCED
        run_grid("kernels", cfgs, args, est, results)
        print_table("(a) resnet_kernels(trajectory=False)", ["what", "P", "L"] + GRID_HEADER_TAIL,
                    grid_rows(results, {"kernels"}))

    if "response" in sections:
        run_grid("response", [(L, P, {}) for L in depths for P in sizes], args, est, results)
        print_table("(b) response (chi_L and chi^out, diagonal + off-diagonal summaries)",
                    ["what", "P", "L"] + GRID_HEADER_TAIL, grid_rows(results, {"response"}))

    if "rhostar" in sections:
        run_grid("rho_star_diag", [(L, 2, {"entry": [0, 0]}) for L in depths], args, est,
                 results)
        run_grid("rho_star_off", [(L, 2, {"entry": [0, 1]}) for L in depths], args, est,
                 results)
        run_grid("rho_star_entries", [(L, 20, {}) for L in depths], args, est, results)
        print_table("(c) rho_star (P=2 kernel [[.05,.03],[.03,.05]]) and rho_star_entries "
                    "(all 210 entries of a P=20 kernel)",
                    ["what", "P", "L"] + GRID_HEADER_TAIL,
                    grid_rows(results, {"rho_star_diag", "rho_star_off", "rho_star_entries"}))

    if "traj" in sections:
        pts = [(L, P) for P in (200, 1000) for L in (10, 100, 1000)
               if not (P == 1000 and L == 1000)]
        if args.quick:
            pts = [(10, 200), (100, 200)]
        run_grid("traj", [(L, P, {"trajectory": True}) for L, P in pts], args, est, results)
        # trajectory=False at the same points (reuse the kernels grid where it ran)
        have = {(r["L"], r["P"]) for r in results
                if r["kind"] == "kernels" and not r.get("skipped") and "error" not in r}
        missing = [(L, P, {"trajectory": False, "label": " traj=False"}) for L, P in pts
                   if (L, P) not in have]
        run_grid("kernels", missing, args, est, results)
        rows = []
        for L, P in pts + ([(1000, 1000)] if not args.quick else []):
            rf = next((r for r in results if r["kind"] == "kernels" and (r["L"], r["P"]) == (L, P)
                       and "peak_run_bytes" in r), None)
            rt = next((r for r in results if r["kind"] == "traj" and (r["L"], r["P"]) == (L, P)
                       and "peak_run_bytes" in r), None)
            theo = (L + 1) * P * P * 8
            rows.append([
                P, L,
                _fmt_mb(rf["peak_run_bytes"]) if rf else "-",
                _fmt_mb(_xla_total(rf)) if rf else "-",
                _fmt_mb(rt["peak_run_bytes"]) if rt else "not run",
                _fmt_mb(_xla_total(rt)) if rt else (
                    f"est. {_fmt_mb(2 * theo)} (temp+out)" if (L, P) == (1000, 1000) else "-"),
                _fmt_mb(theo),
                _fmt_s(rt["run_s"]) if rt else "-",
            ])
        print_table("memory: trajectory=False is O(P^2), trajectory=True grows as L*P^2 "
                    "(P=1000, L=1000 with trajectory is not run)",
                    ["P", "L", "False: peak run MB", "False: XLA MB", "True: peak run MB",
                     "True: XLA MB", "(L+1)P^2*8 MB", "True: run s"], rows)

    if "compile" in sections:
        cdepths = sorted(set(depths) | {10, 100, 1000, 10000, 100000})
        if args.quick:
            cdepths = [10, 100, 1000, 10000]
        log(f"[compile] AOT compile vs L {cdepths} ...")
        res = run_worker({"kind": "compile", "P": 20, "depths": cdepths}, timeout=600)
        results.append({"kind": "compile", **res})
        if "error" in res:
            print("\ncompile vs L: ERROR", res["error"])
        else:
            rows = []
            for fn in ("kernels", "response", "rho_star_off"):
                rr = [r for r in res["rows"] if r["fn"] == fn]
                rows.append([fn] + [f"{r['lower_s']:.2f}+{r['compile_s']:.2f}" for r in rr])
            print_table("compile time vs L: AOT trace+lower + XLA compile (s), P=20 "
                        "(rho_star_off: P=2), fresh jit per L, faster of two passes",
                        ["fn"] + [f"L={L}" for L in cdepths], rows)

    if "scaling" in sections:
        log(f"[scaling] rho_star_scaling on {SCALING_DEPTHS} ...")
        res = run_worker({"kind": "scaling", "depths": list(SCALING_DEPTHS),
                          "repeats": args.repeats}, timeout=600)
        results.append({"kind": "scaling", **res})
        print()
        if "error" in res:
            print("scaling: ERROR", res["error"])
        else:
            c1 = res["compiles_first_call"]
            print(f"scaling curve: rho_star_scaling(K0 (P=2), depths={list(SCALING_DEPTHS)}), "
                  f"both summaries")
            ok = "OK" if res["run_s"] < 1.0 else "ABOVE TARGET"
            print(f"  run after compile: {res['run_s']:.3f} s (median of {len(res['runs_s'])}; "
                  f"target < 1 s: {ok}); first call {res['first_s']:.2f} s")
            heavy = ", ".join(f"{k} x{v}" for k, v in c1["heavy"].items())
            print(f"  XLA compilations in the first sweep: {c1['n_backend_compiles']} "
                  f"(jax.monitoring backend_compile events; log records: "
                  f"{c1['n_log_records']}), of which heavy (>=0.1 s): {heavy or 'none'}; "
                  f"the rest are eager one-op jits (indexing/stack/convert), "
                  f"{c1['backend_compile_s']:.2f} s XLA time in total")
            deeper_heavy = ", ".join(
                f"{k} x{v}" for k, v in res["compiles_deeper"]["heavy"].items())
            print(f"  repeat sweeps: {res['compiles_repeat_calls']['n_backend_compiles']} "
                  f"compilations; another curve with the same max depth {res['other_depths']}: "
                  f"{res['compiles_other_same_max']['n_backend_compiles']}; a deeper curve "
                  f"(max {max(res['deeper_depths'])}): "
                  f"{res['compiles_deeper']['n_backend_compiles']} "
                  f"(heavy: {deeper_heavy or 'none'})")
            print(f"  fitted exponents: diagonal {res['exponent_diag']:.4f}, off-diagonal "
                  f"{res['exponent_off']:.4f}")

    if "floor" in sections:
        P, L = args.floor_P, args.floor_L
        log(f"[floor] fieldres vs hand-written fori_loop at P={P}, L={L} ...")
        res = run_worker({"kind": "floor", "P": P, "L": L, "repeats": args.floor_repeats,
                          "diagnose": args.diagnose, "under_jit": args.floor_jit},
                         timeout=1800)
        results.append({"kind": "floor", **res})
        print()
        if "error" in res:
            print("floor: ERROR", res["error"])
        else:
            ok = "OK" if res["ratio"] <= 1.5 else "ABOVE TARGET"
            print(f"floor: P={P}, L={L}, {args.floor_repeats} interleaved calls per side")
            for k in res["run_s"]:
                print(f"  {k:20s} run {res['run_s'][k]:.3f} s (calls "
                      f"{', '.join(f'{x:.2f}' for x in res['runs_s'][k])}), "
                      f"compile {res['compile_s'][k]:.2f} s")
            ujit = (f"under outer jit {res['ratio_under_jit']:.3f}; "
                    if "ratio_under_jit" in res else "")
            print(f"  ratio fieldres/floor = {res['ratio']:.3f} (target <= 1.5: {ok}); "
                  f"pairwise median {res['ratio_pairwise_median']:.3f}; {ujit}"
                  f"floor {res['ns_per_element_layer_floor']:.1f} ns per element-layer; "
                  f"max|K_fieldres - K_floor| = {res['max_abs_diff']:.2e}")
            if "diagnosis" in res:
                d = res["diagnosis"]
                print(f"  diagnosis at L={d['diag_L']}: " + ", ".join(
                    f"{k} {v:.3f} s" for k, v in d["variants_run_s"].items()))

    if "validation" in sections:
        vrows = []
        for P in sorted({200, max(sizes) if sizes else 1000}):
            for threads in (None, "1"):
                extra = {"OPENBLAS_NUM_THREADS": threads} if threads else {}
                tag = f"OPENBLAS_NUM_THREADS={threads}" if threads else "default threads"
                log(f"[validation] host-side checks at P={P}, {tag} ...")
                res = run_worker({"kind": "validation", "P": P, "L": 10}, timeout=600,
                                 env_extra=extra)
                results.append({"kind": "validation", "threads": tag, **res})
                if "error" in res:
                    vrows.append([P, tag, "ERROR " + res["error"][:60], "", "", "", "", ""])
                    continue
                for r in res["rows"]:
                    vrows.append([P, tag, r["K0"], _fmt_s(r["check_idle_s"]),
                                  _fmt_s(r["check_after_xla_s"]), _fmt_s(r["public_s"]),
                                  _fmt_s(r["jit_s"]),
                                  _fmt_s(max(0.0, r["public_s"] - r["jit_s"]))])
        print_table("host-side input validation (fieldres._validation.check_kernel) in the "
                    "public API, resnet_kernels L=10, medians of 3",
                    ["P", "BLAS threads", "K0", "check idle", "check after XLA",
                     "public call", "under jit", "overhead"], vrows)

    meta["wall_s"] = time.perf_counter() - t_start
    meta["loadavg_end"] = os.getloadavg()
    print(f"\ntotal wall time {meta['wall_s']:.0f} s; load avg {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
