"""neural-tangents side of ``compare_neural_tangents.py``.

Runs inside the separate NT virtualenv (Python 3.11, jax 0.5.3, neural-tangents 0.6.5),
never in the project's environment. Invoked as::

    <nt-venv>/bin/python _nt_worker.py IN_DIR OUT_DIR

``IN_DIR/config.json`` holds the hyperparameters and the repeat settings,
``IN_DIR/inputs.npz`` the inputs ``X_P{P}``. After a warm-up the worker prints
``READY`` on stdout, then reads one JSON case per stdin line
(``{"tag", "L", "P", "rho", "modes"}``), writes ``OUT_DIR/{tag}.npz`` (the NNGP kernel
of every mode, ``K_{mode}``) and ``OUT_DIR/{tag}.json`` (timings) and prints
``DONE {tag}``. At end of input it writes ``OUT_DIR/meta.json`` and exits. Driving it
case by case lets the caller time the fieldres side of a case right after the NT side,
so that load changes on a shared machine affect both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# FanInSum warns that it assumes independent branches; here they are (the residual
# branch ends in a Dense layer with fresh weights), so silence it.
warnings.filterwarnings("ignore", message=".*FanIn.*layers assume independent inputs")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

# The width only enters NT's shape metadata; the NNGP kernel is the N -> infinity limit.
# Input Dense and block Dense share it so that `stax.repeat`'s block keeps the kernel
# metadata unchanged (required by repeat, which runs the block in a lax.scan and so
# compiles once for any depth L).
WIDTH = 512


def build_kernel_fn(depth, rho, h):
    """NT kernel_fn of the rho-scaled erf ResNet (THEORY.md section 1)."""
    sw, sb = np.sqrt(h["sigma_w2"]), np.sqrt(h["sigma_b2"])
    block = stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.Identity(),
            stax.serial(stax.Erf(), stax.Dense(WIDTH, W_std=rho * sw, b_std=rho * sb)),
        ),
        stax.FanInSum(),
    )
    _, _, kernel_fn = stax.serial(
        stax.Dense(WIDTH, W_std=np.sqrt(h["sigma_w2_in"]), b_std=np.sqrt(h["sigma_b2_in"])),
        stax.repeat(block, depth),
        stax.Erf(),
        stax.Dense(1, W_std=np.sqrt(h["sigma_w2_out"]), b_std=np.sqrt(h["sigma_b2_out"])),
    )
    return kernel_fn


def time_mode(kernel_fn, mode, x, repeats, budget_s):
    """(kernel, timings) of one NT mode.

    jit:    ``jax.jit(kernel_fn, static_argnames="get")``; compile = AOT
            ``lower(...).compile()`` wall time (tracing + lowering + XLA compile).
    batchN: ``nt.batch(kernel_fn, batch_size=N)`` (jits internally); compile = first
            call minus the median of the later calls.
    """
    timing = {}
    if mode == "jit":
        jf = jax.jit(kernel_fn, static_argnames="get")
        t0 = time.perf_counter()
        compiled = jf.lower(x, None, get="nngp").compile()
        timing["compile_s"] = time.perf_counter() - t0
        timing["compile_method"] = "aot lower().compile()"

        def f(x):
            return compiled(x, None)

    elif mode.startswith("batch"):
        bf = nt.batch(kernel_fn, batch_size=int(mode[len("batch") :]), device_count=0)

        def f(x):
            return bf(x, None, "nngp")

    else:
        raise ValueError(f"unknown NT mode {mode!r}")

    t0 = time.perf_counter()
    out = jax.block_until_ready(f(x))
    first = time.perf_counter() - t0
    runs = [] if mode.startswith("batch") else [first]
    t_start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        runs.append(time.perf_counter() - t0)
        if len(runs) >= 3 and time.perf_counter() - t_start > budget_s:
            break
    timing["run_s"] = statistics.median(runs)
    timing["runs_s"] = runs
    timing["first_call_s"] = first
    if mode.startswith("batch"):
        timing["compile_s"] = max(first - timing["run_s"], 0.0)
        timing["compile_method"] = "first call - median run"
    return np.asarray(out, dtype=np.float64), timing


def main(in_dir, out_dir):
    with open(os.path.join(in_dir, "config.json")) as fh:
        cfg = json.load(fh)
    inputs = np.load(os.path.join(in_dir, "inputs.npz"))
    h = cfg["hyper"]

    # Throw-away warm-up so that one-time JAX/XLA start-up cost is not booked as the
    # compile time of the first case (the fieldres side does the same).
    for mode in ("jit", "batch2"):
        time_mode(build_kernel_fn(2, 0.5, h), mode, jnp.ones((4, 3)) * 0.1, 1, 0.0)
    print("READY", flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        depth, size, rho = case["L"], case["P"], case["rho"]
        x = jnp.asarray(inputs[f"X_P{size}"], dtype=jnp.float64)
        per_mode, kernels = {}, {}
        for mode in case["modes"]:
            # a fresh kernel_fn per mode so that no mode profits from another's caches
            try:
                kernel_fn = build_kernel_fn(depth, rho, h)
                k, t = time_mode(kernel_fn, mode, x, cfg["repeats"], cfg["budget_s"])
            except Exception as exc:  # report and go on with the other modes
                per_mode[mode] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"[nt] L={depth} P={size} {mode}: FAILED {exc}", file=sys.stderr, flush=True)
                continue
            k = k.reshape(size, size)
            t["dtype"] = str(k.dtype)
            t["finite"] = bool(np.isfinite(k).all())
            per_mode[mode], kernels[f"K_{mode}"] = t, k
            print(
                f"[nt] L={depth} P={size} {mode}: "
                f"compile {t['compile_s']:.3f}s run {t['run_s']:.5f}s",
                file=sys.stderr,
                flush=True,
            )
        ok = [m for m in per_mode if "run_s" in per_mode[m]]
        best = min(ok, key=lambda m: per_mode[m]["run_s"]) if ok else None
        np.savez(os.path.join(out_dir, f"{case['tag']}.npz"), **kernels)
        with open(os.path.join(out_dir, f"{case['tag']}.json"), "w") as fh:
            json.dump({"L": depth, "P": size, "rho": rho, "best_mode": best, "modes": per_mode}, fh)
        print(f"DONE {case['tag']}", flush=True)

    meta = {
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "?"),
        "neural_tangents": getattr(nt, "__version__", "?"),
        "python": sys.version.split()[0],
        "x64": bool(jax.config.jax_enable_x64),
        "devices": [str(d) for d in jax.devices()],
        "width_metadata": WIDTH,
    }
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
