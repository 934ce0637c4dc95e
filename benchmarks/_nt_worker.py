"""neural-tangents side of ``compare_neural_tangents.py``.

Runs inside the separate NT virtualenv (jax 0.5.3, neural-tangents 0.6.5), never
in the project's environment. Invoked as::

    <nt-venv>/bin/python _nt_worker.py IN_DIR OUT_DIR

``IN_DIR/config.json`` holds the hyperparameters, the (L, P) cases, the modes to
time and the repeat counts; ``IN_DIR/inputs.npz`` holds ``X_P{P}`` arrays. The
worker writes ``OUT_DIR/kernels.npz`` (``K_L{L}_P{P}``, the NNGP kernel of NT's
best mode) and ``OUT_DIR/timings.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import warnings  # noqa: E402

# FanInSum warns that it assumes independent branches; here they are (the residual
# branch ends in a Dense layer with fresh weights), so silence it.
warnings.filterwarnings("ignore", message=".*FanIn.*layers assume independent inputs")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

# The width only enters NT's metadata; the NNGP kernel is the N -> infinity limit.
# Input Dense and block Dense must share it so that `stax.repeat`'s block keeps
# the kernel metadata (shape) unchanged.
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


def make_mode(kernel_fn, mode):
    """Return f(X) -> NNGP kernel (P, P) for one NT evaluation mode."""
    if mode == "jit":
        jf = jax.jit(kernel_fn, static_argnames="get")
        return lambda x: jf(x, None, "nngp")
    if mode.startswith("batch"):
        # nt.batch jits kernel_fn internally; do not wrap the result in jit.
        bs = int(mode[len("batch"):])
        bf = nt.batch(kernel_fn, batch_size=bs, device_count=0)
        return lambda x: bf(x, None, "nngp")
    raise ValueError(f"unknown NT mode {mode!r}")


def time_fn(f, x, repeats, budget_s):
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(x))
    first = time.perf_counter() - t0
    runs = []
    t_start = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        runs.append(time.perf_counter() - t0)
        if i >= 2 and time.perf_counter() - t_start > budget_s:
            break
    run = statistics.median(runs)
    return np.asarray(out, dtype=np.float64), first, run, runs


def main(in_dir, out_dir):
    with open(os.path.join(in_dir, "config.json")) as fh:
        cfg = json.load(fh)
    inputs = np.load(os.path.join(in_dir, "inputs.npz"))
    h = cfg["hyper"]
    # Throw-away warm-up so that one-time XLA/JAX start-up cost is not booked as
    # the compile time of the first case (the fieldres side does the same).
    for mode in ("jit", "batch2"):
        jax.block_until_ready(
            make_mode(build_kernel_fn(2, 0.5, h), mode)(jax.numpy.ones((4, 3)) * 0.1)
        )
    kernels, results = {}, []
    for case in cfg["cases"]:
        depth, size, rho = case["L"], case["P"], case["rho"]
        x = jax.numpy.asarray(inputs[f"X_P{size}"], dtype=jax.numpy.float64)
        per_mode = {}
        best = None
        for mode in case["modes"]:
            # a fresh kernel_fn per mode so that no mode profits from another's cache
            f = make_mode(build_kernel_fn(depth, rho, h), mode)
            try:
                k, first, run, runs = time_fn(f, x, cfg["repeats"], cfg["budget_s"])
            except Exception as exc:  # report and go on with the other modes
                per_mode[mode] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"[nt] L={depth} P={size} {mode}: FAILED {exc}", file=sys.stderr, flush=True)
                continue
            k = k.reshape(size, size)
            per_mode[mode] = {
                "first_call_s": first,
                "compile_s": max(first - run, 0.0),
                "run_s": run,
                "runs_s": runs,
                "dtype": str(k.dtype),
                "finite": bool(np.isfinite(k).all()),
            }
            print(
                f"[nt] L={depth} P={size} {mode}: first {first:.3f}s run {run:.4f}s",
                file=sys.stderr,
                flush=True,
            )
            if best is None or run < per_mode[best]["run_s"]:
                best = mode
            kernels[f"K_L{depth}_P{size}_{mode}"] = k
        if best is not None:
            kernels[f"K_L{depth}_P{size}"] = kernels[f"K_L{depth}_P{size}_{best}"]
        results.append({"L": depth, "P": size, "rho": rho, "best_mode": best, "modes": per_mode})
    np.savez(os.path.join(out_dir, "kernels.npz"), **kernels)
    meta = {
        "jax": jax.__version__,
        "neural_tangents": getattr(nt, "__version__", "?"),
        "x64": bool(jax.config.jax_enable_x64),
        "devices": [str(d) for d in jax.devices()],
        "width_metadata": WIDTH,
        "results": results,
    }
    with open(os.path.join(out_dir, "timings.json"), "w") as fh:
        json.dump(meta, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
