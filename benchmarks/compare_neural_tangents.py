#!/usr/bin/env python
"""Side-by-side check of fieldres against neural-tangents (NT).

Computes the NNGP output kernel K^out of the rho-scaled erf ResNet
(docs: THEORY.md sections 1-2) with both libraries, in float64, and reports the
largest absolute difference and the compile / run times of each.

neural-tangents 0.6.5 does not import with current jax, so its side runs in a
separate virtualenv (Python 3.11, jax==0.5.3, neural-tangents==0.6.5,
tf2jax==0.3.7 -- the latter pulls TensorFlow, ~2.7 GB). This script creates that
venv on demand (default ``benchmarks/.nt-venv``, git-ignored) and runs
``_nt_worker.py`` in it as a subprocess; inputs and outputs travel as .npz files
in a temporary directory. The fieldres side runs in the calling interpreter.
Neither NT nor this script is a dependency of fieldres; this is not part of CI.

Network (NT stax)::

    Dense(N, W_std=sigma_w_in, b_std=sigma_b_in)
    repeat(serial(FanOut(2),
                  parallel(Identity(),
                           serial(Erf(), Dense(N, W_std=rho*sigma_w, b_std=rho*sigma_b))),
                  FanInSum()), L)
    Erf()
    Dense(1, W_std=sigma_w_out, b_std=sigma_b_out)

Timing: both sides are timed from the raw inputs X to K^out, in float64, each case NT
first and fieldres right after it (the NT worker is driven case by case), so that load
on a shared machine hits both alike -- compare ratios measured within one invocation.
Each side is timed in several modes and its fastest (by run time) is reported:
NT ``jit`` (``jax.jit(kernel_fn, static_argnames="get")``, ``get="nngp"``) and
``nt.batch(kernel_fn, batch_size=P//2)`` (``--nt-modes``); fieldres ``direct`` (the
public API as called, it jits internally; input validation included) and ``jit``
(input_kernel + resnet_kernels under one outer ``jax.jit``, depth static, rho traced).
For the jit modes "compile" is the AOT ``lower(...).compile()`` wall time (tracing +
lowering + XLA) and "run" the median of ``--repeats`` calls of the compiled function
(each ended by ``block_until_ready``); for the other modes compile = first call minus
that median. A throw-away warm-up runs first on both sides. The JSON keeps every
mode's numbers. The kernels are also checked against an independent NumPy float64
recursion (column ``max|K_NT-ref|``).

Usage::

    /work/venv/bin/python benchmarks/compare_neural_tangents.py \
        [--depths 10,100,1000] [--sizes 20,200] [--rho R] [--json out.json] \
        [--nt-venv PATH] [--no-install] [--repeats 7]

Exit status: 0 when every case agrees to ``--tol`` (default 1e-9), 1 otherwise,
2 when the NT environment is missing / cannot be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "_nt_worker.py"
DEFAULT_VENV = HERE / ".nt-venv"

NT_REQUIREMENTS = ["jax==0.5.3", "jaxlib==0.5.3", "neural-tangents==0.6.5", "tf2jax==0.3.7"]
NT_VERSIONS = {"jax": "0.5.3", "neural_tangents": "0.6.5"}

FIELDRES_MODES = ("direct", "jit")

TIMING_DEFINITION = (
    "both sides timed from X to K_out, each case NT then fieldres back to back; jit modes: "
    "compile = AOT lower().compile() wall time, run = median over calls of the compiled "
    "function; other modes (nt.batch, fieldres direct): compile = first call - median of "
    "later calls; each side reports its fastest mode by run time"
)

HYPER = dict(
    sigma_w2=1.25,
    sigma_b2=0.05,
    sigma_w2_out=1.25,
    sigma_b2_out=0.05,
    sigma_w2_in=1.0,
    sigma_b2_in=0.0,
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- NT venv


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _worker_env() -> dict:
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _probe_venv(venv: Path) -> str | None:
    """None if the venv imports NT with the pinned versions, else the reason."""
    py = _venv_python(venv)
    if not py.exists():
        return f"{py} does not exist"
    code = (
        "import json, jax, neural_tangents as nt; "
        "print(json.dumps({'jax': jax.__version__, 'neural_tangents': nt.__version__}))"
    )
    proc = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, env=_worker_env(), timeout=600
    )
    if proc.returncode != 0:
        return "importing neural_tangents failed:\n" + proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got != NT_VERSIONS:
        return f"wrong versions in the NT venv: {got}, want {NT_VERSIONS}"
    return None


def ensure_nt_venv(venv: Path, install: bool, python311: str) -> Path:
    problem = _probe_venv(venv)
    if problem is None:
        return _venv_python(venv)
    if not install:
        log(f"NT venv {venv} not usable ({problem}); rerun without --no-install to create it.")
        sys.exit(2)
    log(f"NT venv {venv} not usable ({problem.splitlines()[0]})")
    log("installing it (pulls TensorFlow, ~2.7 GB) ...")
    exe = shutil.which(python311) or python311
    if not _venv_python(venv).exists():
        rc = subprocess.run([exe, "-m", "venv", str(venv)]).returncode
        if rc != 0:
            log(f"`{exe} -m venv {venv}` failed (exit {rc}); Python 3.11 is required for NT.")
            sys.exit(2)
    cmd = [str(_venv_python(venv)), "-m", "pip", "install", *NT_REQUIREMENTS]
    log("$ " + " ".join(cmd))
    rc = subprocess.run(cmd, env=_worker_env()).returncode
    if rc != 0:
        log(f"pip install into {venv} failed (exit {rc}).")
        sys.exit(2)
    problem = _probe_venv(venv)
    if problem is not None:
        log(f"NT venv installed but still not usable: {problem}")
        sys.exit(2)
    return _venv_python(venv)


# --------------------------------------------------------------------------- inputs / reference


def make_inputs(sizes, d_in, k0_diag, seed):
    """Gaussian X (P, d_in), scaled so that mean(diag K^(0)) == k0_diag exactly."""
    rng = np.random.default_rng(seed)
    out = {}
    for size in sizes:
        z = rng.standard_normal((size, d_in))
        mean_diag = HYPER["sigma_w2_in"] * np.mean(np.sum(z**2, axis=1)) / d_in
        z *= np.sqrt((k0_diag - HYPER["sigma_b2_in"]) / mean_diag)
        out[size] = z
    return out


def _c_erf(k):
    d = 1.0 + 2.0 * np.diag(k)
    return (2.0 / np.pi) * np.arcsin(2.0 * k / np.sqrt(np.outer(d, d)))


def numpy_reference(x, rho, depth, h=HYPER):
    """Independent NumPy float64 recursion of THEORY.md section 2 (check only)."""
    k = h["sigma_b2_in"] + h["sigma_w2_in"] * (x @ x.T) / x.shape[1]
    for _ in range(depth):
        k = k + rho**2 * (h["sigma_w2"] * _c_erf(k) + h["sigma_b2"])
    return h["sigma_w2_out"] * _c_erf(k) + h["sigma_b2_out"]


# --------------------------------------------------------------------------- timing


def _time(f, x, repeats, budget_s, compile_fn=None):
    """(output, timings) of f(x).

    With ``compile_fn`` (AOT: returns the compiled callable) compile is its wall time and
    every call counts as a run; without it compile = first call - median of later calls.
    """
    import jax

    timing = {}
    if compile_fn is not None:
        t0 = time.perf_counter()
        f = compile_fn()
        timing["compile_s"] = time.perf_counter() - t0
        timing["compile_method"] = "aot lower().compile()"
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(x))
    first = time.perf_counter() - t0
    runs = [first] if compile_fn is not None else []
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
    if compile_fn is None:
        timing["compile_s"] = max(first - timing["run_s"], 0.0)
        timing["compile_method"] = "first call - median run"
    return out, timing


# --------------------------------------------------------------------------- fieldres side


class FieldresSide:
    """K^out and timings from fieldres, in this interpreter, float64.

    Modes: ``direct`` -- the public API called as a user would (resnet_kernels jits
    internally; input validation and Python dispatch are in the time); ``jit`` -- the
    same calls (input_kernel + resnet_kernels) under one outer ``jax.jit`` with the
    depth static and rho traced, compile timed AOT. The faster one is reported.
    """

    def __init__(self, repeats, budget_s, dev_standin=False):
        self.repeats, self.budget_s, self.dev_standin = repeats, budget_s, dev_standin
        if dev_standin:
            self.meta = {"backend": "NUMPY STAND-IN (development only, NOT fieldres)"}
            return
        import jax

        jax.config.update("jax_enable_x64", True)
        if str(REPO) not in sys.path:
            sys.path.append(str(REPO))
        import fieldres

        self.jax, self.fieldres = jax, fieldres
        h = HYPER
        self.hyper = fieldres.Hyper(
            sigma_w2=h["sigma_w2"],
            sigma_b2=h["sigma_b2"],
            sigma_w2_out=h["sigma_w2_out"],
            sigma_b2_out=h["sigma_b2_out"],
        )
        self.meta = {
            "backend": "fieldres",
            "fieldres_version": getattr(fieldres, "__version__", "?"),
            "fieldres_path": str(Path(fieldres.__file__).parent),
            "jax": jax.__version__,
            "python": sys.version.split()[0],
            "x64": bool(jax.config.jax_enable_x64),
            "devices": [str(d) for d in jax.devices()],
        }
        # throw-away warm-up, as on the NT side
        self.run(2, 4, 0.5, np.full((4, 3), 0.1), quiet=True)

    def _k_out(self, x, rho, depth):
        h, fr = HYPER, self.fieldres
        k0 = fr.input_kernel(x, sigma_w2_in=h["sigma_w2_in"], sigma_b2_in=h["sigma_b2_in"])
        return fr.resnet_kernels(k0, rho, depth, self.hyper, "erf", trajectory=False).K_out

    def _mode(self, mode, depth, rho, x):
        """(f, compile_fn, description) for one mode."""
        jax, jnp = self.jax, self.jax.numpy
        if mode == "direct":
            return (lambda x: self._k_out(x, rho, depth)), None, "direct API call (internal jit)"
        jf = jax.jit(self._k_out, static_argnames="depth")
        r = jnp.asarray(rho, dtype=jnp.float64)
        try:
            jax.eval_shape(lambda x, r: jf(x, r, depth=depth), x, r)
        except Exception:  # fieldres refuses a traced rho: bake it in
            jc = jax.jit(lambda x: self._k_out(x, rho, depth))
            return None, (lambda: jc.lower(x).compile()), "outer jax.jit, rho constant"

        def compile_fn():
            compiled = jf.lower(x, r, depth=depth).compile()
            return lambda x: compiled(x, r)

        return None, compile_fn, "outer jax.jit, rho traced"

    def run(self, depth, size, rho, x_np, quiet=False):
        if self.dev_standin:
            # DEVELOPMENT ONLY: lets the harness run before fieldres exists; labelled as
            # such in the table and the JSON, never fieldres numbers.
            k, t = _time(
                lambda x: numpy_reference(x, rho, depth), x_np, self.repeats, self.budget_s
            )
            return np.asarray(k), t | {"mode": "standin", "how": "numpy-standin"}
        x = self.jax.numpy.asarray(x_np, dtype=self.jax.numpy.float64)
        per_mode, outs = {}, {}
        for mode in FIELDRES_MODES:
            f, compile_fn, how = self._mode(mode, depth, rho, x)
            k, t = _time(f, x, self.repeats, self.budget_s, compile_fn)
            t["how"], t["dtype"] = how, str(k.dtype)
            per_mode[mode], outs[mode] = t, np.asarray(k, dtype=np.float64)
            if not quiet:
                log(
                    f"[fieldres] L={depth} P={size} {mode}: compile {t['compile_s']:.3f}s "
                    f"run {t['run_s']:.5f}s ({how})"
                )
        best = min(per_mode, key=lambda m: per_mode[m]["run_s"])
        spread = max(float(np.max(np.abs(outs[m] - outs[best]))) for m in outs)
        return outs[best], per_mode[best] | {
            "mode": best,
            "modes": per_mode,
            "max_abs_diff_between_modes": spread,
        }


def fieldres_available() -> str | None:
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    try:
        import fieldres

        for name in ("input_kernel", "Hyper", "resnet_kernels"):
            getattr(fieldres, name)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- NT side


class NTWorker:
    """The NT subprocess (``_nt_worker.py`` under the NT venv's python), driven case by case."""

    def __init__(self, nt_python, in_dir, out_dir):
        self.out_dir = Path(out_dir)
        self.proc = subprocess.Popen(
            [str(nt_python), str(WORKER), str(in_dir), str(out_dir)],
            env=_worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._stderr = threading.Thread(target=self._forward_stderr, daemon=True)
        self._stderr.start()
        self._expect("READY")

    def _forward_stderr(self):
        for line in self.proc.stderr:  # drop TensorFlow/absl start-up chatter
            if not line.startswith(("I0000", "W0000", "WARNING: All log messages before absl")):
                sys.stderr.write(line)

    def _expect(self, what):
        for line in self.proc.stdout:
            if line.strip() == what:
                return
        self.proc.wait()
        raise RuntimeError(f"NT worker exited (code {self.proc.returncode}) before {what!r}")

    def run(self, tag, case):
        self.proc.stdin.write(json.dumps({"tag": tag, **case}) + "\n")
        self.proc.stdin.flush()
        self._expect(f"DONE {tag}")
        res = json.loads((self.out_dir / f"{tag}.json").read_text())
        with np.load(self.out_dir / f"{tag}.npz") as z:
            res["kernels"] = {k[2:]: z[k] for k in z.files}
        return res

    def close(self):
        self.proc.stdin.close()
        rc = self.proc.wait()
        self._stderr.join(timeout=5)
        if rc != 0:
            raise RuntimeError(f"NT worker failed at exit (code {rc})")
        return json.loads((self.out_dir / "meta.json").read_text())


# --------------------------------------------------------------------------- main


def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", type=_ints, default=[10, 100, 1000], help="comma list of L")
    p.add_argument("--sizes", type=_ints, default=[20, 200], help="comma list of P")
    p.add_argument("--rho", type=float, default=None, help="residual scale (default 1/sqrt(L))")
    p.add_argument("--d-in", type=int, default=100)
    p.add_argument("--k0-diag", type=float, default=0.05, help="mean diagonal of K^(0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7, help="timed calls after the first")
    p.add_argument(
        "--budget-s", type=float, default=30.0, help="stop repeating (after 3 calls) past this"
    )
    p.add_argument(
        "--nt-modes",
        default="jit,batch",
        help="NT modes to time: jit, batch (batch_size P//2), batchN (batch_size N)",
    )
    p.add_argument("--nt-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--no-install", action="store_true", help="fail if the NT venv is absent")
    p.add_argument("--python311", default="python3.11", help="interpreter used to create the venv")
    p.add_argument("--tol", type=float, default=1e-9, help="max |K_NT - K_fieldres| for exit 0")
    p.add_argument("--json", type=Path, default=None, help="write results here")
    p.add_argument(
        "--dev-standin",
        action="store_true",
        help="DEVELOPMENT ONLY: time a NumPy recursion instead of fieldres",
    )
    return p.parse_args(argv)


def nt_modes_for(spec, size):
    modes = []
    for m in spec.split(","):
        m = m.strip()
        if m == "batch":
            if size % 2 == 0 and size >= 4:
                modes.append(f"batch{size // 2}")
        elif m.startswith("batch"):
            if size % int(m[5:]) == 0:
                modes.append(m)
        elif m:
            modes.append(m)
    return list(dict.fromkeys(modes))


def main(argv=None):
    args = parse_args(argv)
    cases = [
        (depth, size, args.rho if args.rho is not None else 1.0 / np.sqrt(depth))
        for depth in args.depths
        for size in args.sizes
    ]

    if not args.dev_standin:
        missing = fieldres_available()
        if missing:
            log(f"fieldres is not importable ({missing}).")
            log("(--dev-standin exists only to develop this harness; it does not time fieldres.)")
            return 2
    nt_python = ensure_nt_venv(args.nt_venv.resolve(), not args.no_install, args.python311)

    xs = make_inputs(args.sizes, args.d_in, args.k0_diag, args.seed)
    fr = FieldresSide(args.repeats, args.budget_s, args.dev_standin)

    rows = []
    with tempfile.TemporaryDirectory(prefix="fieldres-nt-") as tmp:
        in_dir, out_dir = Path(tmp, "in"), Path(tmp, "out")
        in_dir.mkdir()
        out_dir.mkdir()
        np.savez(in_dir / "inputs.npz", **{f"X_P{s}": x for s, x in xs.items()})
        config = {"hyper": HYPER, "repeats": args.repeats, "budget_s": args.budget_s}
        (in_dir / "config.json").write_text(json.dumps(config))
        log(f"starting NT worker: {nt_python} {WORKER.name}")
        worker = NTWorker(nt_python, in_dir, out_dir)
        for i, (depth, size, rho) in enumerate(cases):
            # NT then fieldres for the same case, back to back (shared machine)
            modes = nt_modes_for(args.nt_modes, size)
            case = {"L": depth, "P": size, "rho": float(rho), "modes": modes}
            nt_res = worker.run(f"case{i}", case)
            k_fr, frt = fr.run(depth, size, rho, xs[size])
            rows.append(make_row(depth, size, rho, xs[size], nt_res, k_fr, frt))
        nt_meta = worker.close()
    fr_meta = fr.meta

    print_table(rows, fr_meta, nt_meta)
    diffs = [r["max_abs_diff_nt_fieldres"] for r in rows]
    ok = all(d is not None and d <= args.tol for d in diffs)

    if args.json:
        payload = {
            "description": "fieldres vs neural-tangents NNGP K^out, rho-scaled erf ResNet, float64",
            "hyper": HYPER,
            "d_in": args.d_in,
            "k0_mean_diag": args.k0_diag,
            "seed": args.seed,
            "repeats": args.repeats,
            "tol": args.tol,
            "all_agree": ok,
            "timing_definition": TIMING_DEFINITION,
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "python": sys.version,
            },
            "fieldres_side": fr_meta,
            "nt_side": nt_meta,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1))
        log(f"wrote {args.json}")
    if not ok:
        log(f"MISMATCH: some |K_NT - K_fieldres| > {args.tol:g}")
    return 0 if ok else 1


def make_row(depth, size, rho, x, nt_res, k_fr, frt):
    ref = numpy_reference(x, rho, depth)
    best = nt_res["best_mode"]
    k_nt = nt_res["kernels"].get(best) if best else None
    for mode, info in nt_res["modes"].items():
        if mode in nt_res["kernels"]:
            info["max_abs_diff_numpy_ref"] = float(np.max(np.abs(nt_res["kernels"][mode] - ref)))
    ntt = nt_res["modes"].get(best, {}) if best else {}

    def diff(a, b):
        return float(np.max(np.abs(a - b))) if a is not None and b is not None else None

    return {
        "L": depth,
        "P": size,
        "rho": float(rho),
        "max_abs_diff_nt_fieldres": diff(k_nt, k_fr),
        "max_abs_diff_nt_numpy_ref": diff(k_nt, ref),
        "max_abs_diff_fieldres_numpy_ref": diff(k_fr, ref),
        "max_abs_K_out": float(np.max(np.abs(ref))),
        "nt_best_mode": best,
        "nt_compile_s": ntt.get("compile_s"),
        "nt_run_s": ntt.get("run_s"),
        "fieldres_best_mode": frt.get("mode"),
        "fieldres_compile_s": frt["compile_s"],
        "fieldres_run_s": frt["run_s"],
        "speed_ratio_run_nt_over_fieldres": (ntt["run_s"] / frt["run_s"]) if ntt else None,
        "speed_ratio_compile_nt_over_fieldres": (
            ntt["compile_s"] / frt["compile_s"] if ntt and frt["compile_s"] > 0 else None
        ),
        "nt_modes": nt_res["modes"],
        "fieldres_timing": frt,
    }


def print_table(rows, fr_meta, nt_meta):
    print(
        f"\nfieldres side: {fr_meta['backend']}   |   NT side: neural-tangents "
        f"{nt_meta.get('neural_tangents')} on jax {nt_meta.get('jax')} (x64={nt_meta.get('x64')})"
    )
    hdr = (
        f"{'L':>5} {'P':>4} {'max|K_NT-K_fr|':>14} {'max|K_NT-ref|':>13} {'NT mode':>9} "
        f"{'NT comp s':>9} {'NT run s':>9} {'fr mode':>7} {'fr comp s':>9} {'fr run s':>9} "
        f"{'run NT/fr':>9} {'comp NT/fr':>10}"
    )
    print(hdr)
    print("-" * len(hdr))

    def f(v, fmt):
        return format(v, fmt) if v is not None else "n/a"

    for r in rows:
        print(
            f"{r['L']:>5} {r['P']:>4} {f(r['max_abs_diff_nt_fieldres'], '14.2e')} "
            f"{f(r['max_abs_diff_nt_numpy_ref'], '13.2e')} {str(r['nt_best_mode']):>9} "
            f"{f(r['nt_compile_s'], '9.3f')} {f(r['nt_run_s'], '9.5f')} "
            f"{str(r['fieldres_best_mode']):>7} "
            f"{r['fieldres_compile_s']:9.3f} {r['fieldres_run_s']:9.5f} "
            f"{f(r['speed_ratio_run_nt_over_fieldres'], '9.2f')} "
            f"{f(r['speed_ratio_compile_nt_over_fieldres'], '10.2f')}"
        )
    print(
        "ref = independent NumPy float64 recursion (THEORY.md sec. 2). jit modes: compile = AOT\n"
        "lower().compile(); run = median of calls. Ratios NT/fieldres > 1 mean fieldres is faster."
    )


if __name__ == "__main__":
    sys.exit(main())
