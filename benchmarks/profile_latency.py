#!/usr/bin/env python
"""Where the wall time of a user-facing query goes, and the latency targets (issue 16, item 1).

Prints, measured in one run (each line a fresh subprocess, ``--repeat`` times, median):

- the floor: ``python -c "import jax; jax.numpy.ones(3).sum()"``;
- ``import fieldres``, ``import fieldres.cli`` and the heavy third-party imports alone;
- ``fieldres rho-star --depth 100`` (erf, defaults), with ``--activation tanh``, and both at
  depth 1000; ``fieldres scaling`` over 7 depths. Each *cold* (persistent compilation cache
  off, ``FIELDRES_JAX_CACHE=0``: every run compiles) and *warm* (the CLI's persistent cache
  in a fresh folder, primed by one untimed run: what a user's repeated query costs);
- in-process: the first and second ``rho_star`` call of the API, the number of XLA
  compilations of the first call (``jax.log_compiles``), and the split of the first call
  into tracing + lowering and XLA compilation;

and the ratios against the targets of issue 16 (``rho-star`` <= 3x the floor; ``scaling``
<= 1.5x one ``rho-star``; first API call <= 1 s; tanh <= 2x erf). With ``--baseline PATH``
(a checkout of an older fieldres, e.g. a ``git worktree`` of the commit before a change)
every fieldres case also runs against that tree, interleaved, so before/after ratios come
from the same run. The machine is shared and noisy: compare ratios within one run only.

``--table`` also writes the figures into the table of ``benchmarks/README.md``
(see ``benchmarks/table.py``).

Usage::

    python benchmarks/profile_latency.py [--repeat 3] [--json out.json] [--baseline DIR]
                                         [--table] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
FLOOR = [PY, "-c", "import jax; jax.numpy.ones(3).sum()"]
CLI = [PY, "-m", "fieldres.cli"]

IMPORTS = [
    ("import equinox", [PY, "-c", "import equinox"]),
    ("import optimistix", [PY, "-c", "import optimistix"]),
    ("import fieldres", [PY, "-c", "import fieldres"]),
    ("import fieldres.cli", [PY, "-c", "import fieldres.cli"]),
]
QUERIES = [
    ("rho-star L=100", [*CLI, "rho-star", "--depth", "100"]),
    ("rho-star L=100 tanh", [*CLI, "rho-star", "--depth", "100", "--activation", "tanh"]),
    ("rho-star L=1000", [*CLI, "rho-star", "--depth", "1000"]),
    ("rho-star L=1000 tanh", [*CLI, "rho-star", "--depth", "1000", "--activation", "tanh"]),
    ("scaling (7 depths)", [*CLI, "scaling"]),
]
QUICK = {"rho-star L=100", "rho-star L=100 tanh", "scaling (7 depths)"}

IN_PROCESS = r"""
import time, json, logging, sys
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
if len(sys.argv) > 1:
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
import jax.numpy as jnp
import fieldres as fr
t_import = time.perf_counter() - t0
K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
msgs = []
class Grab(logging.Handler):
    def emit(self, record):
        msgs.append(record.getMessage())
logging.getLogger("jax").addHandler(Grab())
logging.getLogger("jax").setLevel(logging.DEBUG)
with jax.log_compiles():
    t1 = time.perf_counter(); r = fr.rho_star(K0, 100); jax.block_until_ready(r.rho_star)
    first = time.perf_counter() - t1
def secs(prefix):
    import re
    return sum(float(re.search(r"in ([0-9.e-]+) sec", m).group(1)) for m in msgs
               if m.startswith(prefix) and re.search(r"in ([0-9.e-]+) sec", m))
t2 = time.perf_counter(); r = fr.rho_star(K0, 100); jax.block_until_ready(r.rho_star)
second = time.perf_counter() - t2
print(json.dumps(dict(
    import_s=t_import, first_s=first, second_s=second,
    compiles=sum(m.startswith("Finished XLA compilation") for m in msgs),
    cache_hits=sum("cache hit" in m.lower() for m in msgs),
    trace_s=secs("Finished tracing") + secs("Finished jaxpr to MLIR"),
    xla_s=secs("Finished XLA compilation"), rho_star=float(r.rho_star))))
"""


def wall(cmd: list[str], repeat: int, env: dict) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        times.append(time.perf_counter() - t)
        if p.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(cmd[2:])} failed ({p.returncode}): {p.stderr[-500:]}")
    return statistics.median(times)


def side_env(root: Path, cache: str | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root)}
    if cache is None:
        env["FIELDRES_JAX_CACHE"] = "0"
    else:
        env.pop("FIELDRES_JAX_CACHE", None)
        env["FIELDRES_JAX_CACHE_DIR"] = cache
    return env


def api(root: Path, cache: str | None = None) -> dict:
    cmd = [PY, "-c", IN_PROCESS] + ([cache] if cache else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=side_env(root, None))
    return json.loads(out.stdout.strip().splitlines()[-1])



def ratios(res: dict, sides) -> dict[str, list[tuple]]:
    """The ratios of issue 16 per column (``new cold``, ``base cold``, ``new warm``)."""
    floor = res["floor"]["floor"]
    out = {}
    for col in [f"{s} cold" for s in sides] + ["new warm"]:
        s, temp = col.split()
        r = res[s]

        def w(q, r=r, temp=temp):
            return r.get(f"{q} {temp}")

        items = [("rho-star L=100 / floor", "rho-star L=100", w("rho-star L=100"), "floor",
                  floor, "<= 3"),
                 ("scaling / rho-star", "scaling (7 depths)", w("scaling (7 depths)"),
                  "rho-star L=100", w("rho-star L=100"), "<= 1.5")]
        for L in (100, 1000):
            if w(f"rho-star L={L} tanh") is not None:
                items.append((f"tanh / erf, L = {L}", f"rho-star L={L} tanh",
                              w(f"rho-star L={L} tanh"), f"rho-star L={L}",
                              w(f"rho-star L={L}"), "<= 2"))
        out[col] = items
    return out


def table_rows(table: dict, apis: dict) -> list[dict]:
    """Rows of the README table (see ``benchmarks/table.py``)."""
    rows = []
    for col, items in table.items():
        for _, num, a, den, b, target in items:
            rows.append(dict(path=f"`fieldres {num}` ({col})", figure=f"{a:.2f} s",
                             floor=f"{den}: {b:.2f} s", ratio=f"{a / b:.2f} (target {target})"))
    for s, a in apis.items():
        rows.append(dict(path=f"API first `rho_star(K0, 100)` ({s})",
                         figure=f"{a['first_s']:.2f} s",
                         floor=f"second call: {a['second_s'] * 1e3:.1f} ms",
                         ratio=f"{a['first_s'] / a['second_s']:.0f} (target: <= 1 s)"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--baseline", help="an older fieldres tree to measure alongside")
    ap.add_argument("--quick", action="store_true", help="skip the depth-1000 queries")
    ap.add_argument("--table", action="store_true", help="update benchmarks/README.md")
    args = ap.parse_args(argv)

    machine = f"{platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}"
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"machine: {machine}; load average {os.getloadavg()[0]:.1f}")
    print(f"date: {date}")
    sides = {"new": ROOT}
    if args.baseline:
        sides["base"] = Path(args.baseline).resolve()
    queries = [q for q in QUERIES if not args.quick or q[0] in QUICK]
    res: dict[str, dict[str, float]] = {s: {} for s in sides}
    res["floor"] = {"floor": wall(FLOOR, args.repeat, dict(os.environ))}
    print(f"  {'floor: import jax + one op':45s} {res['floor']['floor']:7.2f} s")
    for name, cmd in IMPORTS:
        for s, root in sides.items():
            res[s][name] = wall(cmd, args.repeat, side_env(root, None))
        print(f"  {name:45s} " + "  ".join(f"{s} {res[s][name]:7.2f} s" for s in sides))
    with tempfile.TemporaryDirectory(prefix="fieldres-jax-cache-") as cache:
        for name, cmd in queries:
            for s, root in sides.items():
                res[s][name + " cold"] = wall(cmd, args.repeat, side_env(root, None))
            env = side_env(ROOT, cache)
            wall(cmd, 1, env)  # prime the persistent cache
            res["new"][name + " warm"] = wall(cmd, args.repeat, env)
            print(f"  {name:45s} " + "  ".join(f"{s} cold {res[s][name + ' cold']:7.2f} s"
                                              for s in sides)
                  + f"  new warm {res['new'][name + ' warm']:7.2f} s")
        apis = {s: api(root) for s, root in sides.items()}
        api(ROOT, cache)  # prime
        apis["new warm"] = api(ROOT, cache)
    for s, a in apis.items():
        print(f"  API {s:9s}: import {a['import_s']:.2f} s, first rho_star {a['first_s']:.2f} s "
              f"({a['compiles']} XLA compilations, {a['cache_hits']} cache hits; tracing + "
              f"lowering {a['trace_s']:.2f} s, XLA {a['xla_s']:.2f} s), second "
              f"{a['second_s'] * 1e3:.1f} ms")

    table = ratios(res, sides)
    print("ratios (numerator / denominator, seconds):")
    for col, items in table.items():
        for label, num, a, den, b, target in items:
            print(f"  {col:9s} {label:28s} {a / b:6.2f} = {num} {a:.2f} / {den} {b:.2f} "
                  f"(target {target})")
    for s, a in apis.items():
        print(f"  first API rho_star (<= 1 s)      {s}: {a['first_s']:.2f} s")
    rows = table_rows(table, apis)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(walls=res, api=apis, machine=machine, date=date, rows=rows), f,
                      indent=2)
    if args.table:
        sys.path.insert(0, str(Path(__file__).parent))
        import table as tbl

        tbl.update("latency", rows, date=date, machine=machine)
        print(f"table updated: {tbl.README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
