#!/usr/bin/env python
"""Where the wall time of a user-facing query goes (issue 16, item 1).

Prints, measured in one run (each line a fresh subprocess, ``--repeat`` times, median):

- the floor: ``python -c "import jax; jax.numpy.ones(3).sum()"``;
- ``import fieldres``, ``import fieldres.cli`` and the heavy third-party imports alone;
- ``fieldres rho-star --depth 100`` (erf, defaults) and the same with ``--activation tanh``
  at depths 100 and 1000;
- ``fieldres scaling`` over 7 depths;
- in-process: the first and second ``rho_star`` call of the API, and the number of XLA
  compilations of the first call (``jax.log_compiles``);

and the ratios against the targets of issue 16 (``rho-star`` <= 3x the floor; ``scaling``
<= 1.5x one ``rho-star``; first API call <= 1 s; tanh <= 2x erf). The machine is shared and
noisy: compare ratios within one run, not across runs.

Usage::

    python benchmarks/profile_latency.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PY = sys.executable
FLOOR = [PY, "-c", "import jax; jax.numpy.ones(3).sum()"]
CLI = [PY, "-m", "fieldres.cli"]

CASES = [
    ("floor: import jax + one op", FLOOR),
    ("import equinox", [PY, "-c", "import equinox"]),
    ("import optimistix", [PY, "-c", "import optimistix"]),
    ("import fieldres", [PY, "-c", "import fieldres"]),
    ("import fieldres.cli", [PY, "-c", "import fieldres.cli"]),
    ("fieldres --help", [*CLI, "--help"]),
    ("rho-star --depth 0 (refusal)", [*CLI, "rho-star", "--depth", "0"]),
    ("rho-star --depth 100", [*CLI, "rho-star", "--depth", "100"]),
    ("rho-star --depth 100 --activation tanh", [*CLI, "rho-star", "--depth", "100",
                                                "--activation", "tanh"]),
    ("rho-star --depth 1000", [*CLI, "rho-star", "--depth", "1000"]),
    ("rho-star --depth 1000 --activation tanh", [*CLI, "rho-star", "--depth", "1000",
                                                 "--activation", "tanh"]),
    ("scaling (7 depths)", [*CLI, "scaling"]),
]

IN_PROCESS = r"""
import time, json, logging, io
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import fieldres as fr
t_import = time.perf_counter() - t0
K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
stream = io.StringIO()
handler = logging.StreamHandler(stream)
logging.getLogger("jax").addHandler(handler)
logging.getLogger("jax").setLevel(logging.WARNING)
with jax.log_compiles():
    t1 = time.perf_counter(); r = fr.rho_star(K0, 100); jax.block_until_ready(r.rho_star)
    first = time.perf_counter() - t1
n_compiles = stream.getvalue().count("Finished XLA compilation")
t2 = time.perf_counter(); r = fr.rho_star(K0, 100); jax.block_until_ready(r.rho_star)
second = time.perf_counter() - t2
print(json.dumps(dict(import_s=t_import, first_s=first, second_s=second, compiles=n_compiles)))
"""


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False, env={**os.environ})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (median)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    import platform

    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(time.strftime("date: %Y-%m-%d %H:%M UTC", time.gmtime()))
    res = {}
    for name, cmd in CASES:
        res[name] = wall(cmd, args.repeat)
        print(f"  {name:45s} {res[name]:7.2f} s")
    out = subprocess.run([PY, "-c", IN_PROCESS], capture_output=True, text=True, check=True)
    api = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  API: import {api['import_s']:.2f} s, first rho_star {api['first_s']:.2f} s "
          f"({api['compiles']} XLA compilations), second {api['second_s'] * 1e3:.1f} ms")
    floor = res["floor: import jax + one op"]
    one = res["rho-star --depth 100"]
    ratios = {
        "rho-star / floor (target <= 3)": one / floor,
        "scaling / rho-star (target <= 1.5)": res["scaling (7 depths)"] / one,
        "first API rho_star, s (target <= 1)": api["first_s"],
        "tanh / erf at depth 100 (target <= 2)":
            res["rho-star --depth 100 --activation tanh"] / one,
        "tanh / erf at depth 1000 (target <= 2)":
            res["rho-star --depth 1000 --activation tanh"] / res["rho-star --depth 1000"],
        "refusal / --help (target <= 2)": res["rho-star --depth 0 (refusal)"]
        / res["fieldres --help"],
    }
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:45s} {v:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(walls=res, api=api, ratios=ratios), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
