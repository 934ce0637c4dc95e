"""Grids of Bayesian-training runs as independent, resumable jobs on submitit.

A grid maps each of the keys :data:`GRID_KEYS` to a list of values; every combination is
one *point*, run by :func:`run_point` as its own job: the data subset of its ``n_train``
and ``seed``, ``rho = rho_factor * rho*_diagonal(L)`` of those training inputs (the
data-driven optimum of ``fieldres rho-star --dataset``: :func:`rho_star_diagonal`), then
:func:`fieldres.bayes.training.train` with a checkpoint (``points/<name>.npz``, resumed when
the job is restarted) and the result in ``points/<name>.json``. A point whose result file
exists is skipped, so rerunning a sweep runs only what is missing. :func:`run_sweep` submits
the missing points with a submitit executor (``local``: subprocesses on this machine;
``slurm``: one job array; ``debug``: in this process) and gathers every finished point into
``results.json`` and ``results.csv``. ``sweep.json`` records the grid and the settings; a
rerun with other settings in the same folder is refused (its results would be mixed).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import FieldresInputError

__all__ = ["GRID_KEYS", "SWEEP_PRESETS", "parse_grid", "expand_grid", "point_name",
           "rho_star_diagonal", "run_point", "run_sweep", "slurm_script"]

#: The keys a grid may have, with their types and defaults (``None``: the preset's value).
GRID_KEYS: dict[str, tuple[type, Any]] = {
    "rho_factor": (float, 1.0), "depth": (int, None), "width": (int, None),
    "n_train": (int, None), "seed": (int, 0),
}

#: Sizes per preset (``fieldres sweep --preset``): defaults of the grid keys and run lengths.
SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": dict(depth=2, width=8, n_train=20, n_test=20, steps=40, n_chains=4, n_kernel=20),
    "default": dict(depth=10, width=64, n_train=100, n_test=500, steps=2000, n_chains=4,
                    n_kernel=100),
    "paper": dict(depth=10, width=256, n_train=500, n_test=2000, steps=4000, n_chains=4,
                  n_kernel=200),
}


def parse_grid(items) -> dict[str, list]:
    """``["rho_factor=0.25,1,4", "depth=10"]`` -> ``{"rho_factor": [0.25, 1.0, 4.0], ...}``."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, vals = str(item).partition("=")
        key = key.strip()
        if not sep or not vals.strip():
            raise FieldresInputError(f"grid entry {item!r} is not KEY=V1,V2,...")
        if key not in GRID_KEYS:
            raise FieldresInputError(f"unknown grid key {key!r}; the keys are "
                             f"{', '.join(GRID_KEYS)}")
        typ = GRID_KEYS[key][0]
        try:
            values = [typ(v) for v in vals.split(",")]
        except ValueError:
            raise FieldresInputError(f"grid key {key!r} needs {typ.__name__} values, got "
                             f"{vals!r}") from None
        for v in values:
            bad = (not math.isfinite(v) or v < 0) if typ is float else (
                v < 0 if key == "seed" else v < (2 if key == "n_train" else 1))
            if bad:
                raise FieldresInputError(f"grid key {key!r}: bad value {v!r}")
        grid[key] = list(dict.fromkeys(values))
    return grid


def expand_grid(grid: dict[str, list], preset: str) -> list[dict]:
    """Every combination of the grid, missing keys filled from the preset / defaults."""
    sizes = SWEEP_PRESETS[preset]
    axes = {k: grid.get(k, [sizes.get(k) if d is None else d])
            for k, (_, d) in GRID_KEYS.items()}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def point_name(point: dict) -> str:
    """A file name for a point, e.g. ``L10_N64_n100_s0_f0.25``."""
    return (f"L{point['depth']}_N{point['width']}_n{point['n_train']}_s{point['seed']}"
            f"_f{point['rho_factor']:g}")


def rho_star_diagonal(x_train, depth: int, n_inputs: int = 20) -> float:
    """Mean over the diagonal entries of rho*(L) on the first ``n_inputs`` training inputs.

    The ``rho_star_diagonal`` of ``fieldres rho-star --dataset`` (paper Fig. 5), for the
    default variances and erf.
    """
    from ..kernels.recursion import Hyper, input_kernel
    from ..signal.optimal import rho_star_entries

    K0 = np.asarray(input_kernel(np.asarray(x_train, np.float64)[:n_inputs], 1.0, 0.0))
    P = K0.shape[0]
    r = rho_star_entries(K0, depth, Hyper(), "erf", entries=[(a, a) for a in range(P)])
    rho = np.asarray(r.rho_star, np.float64)
    ok = np.asarray(r.status) == 0
    if not ok.any():
        raise FieldresInputError(f"no interior rho*(L={depth}) for these inputs")
    return float(np.mean(rho[ok]))


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def run_point(point: dict, settings: dict, out_dir: str) -> dict:
    """Run one grid point (a submitit job); returns its result dict (also written to disk)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from ..data.subsets import make_dataset
    from .training import train

    pts = Path(out_dir) / "points"
    pts.mkdir(parents=True, exist_ok=True)
    name = point_name(point)
    done = pts / f"{name}.json"
    if done.is_file():
        return json.loads(done.read_text())
    data = make_dataset(settings["dataset"], classes=tuple(settings["classes"]),
                        n_train=point["n_train"], n_test=settings["n_test"],
                        seed=point["seed"], data_dir=settings.get("data_dir"),
                        k0_scale=settings["k0_scale"])
    rs = rho_star_diagonal(data.x_train, point["depth"])
    res = train(data=data, depth=point["depth"], rho=point["rho_factor"] * rs,
                width=point["width"], sampler=settings["sampler"], steps=settings["steps"],
                n_chains=settings["n_chains"], n_kernel=settings["n_kernel"],
                seed=point["seed"], noise=settings["noise"],
                save_path=str(pts / f"{name}.npz"), resume=True)
    d = res.to_dict() | dict(point=point, rho_star_diagonal=rs, name=name)
    _write_json(done, d)
    return d


def slurm_script(out_dir, n_points: int, *, partition: str | None, time_min: int,
                 gpus: int, array_parallelism: int = 256) -> str:
    """The sbatch script of the job array that ``--cluster slurm`` submits (not submitted).

    Built by submitit's own sbatch writer (``submitit.slurm.slurm._make_sbatch_string``,
    what ``SlurmExecutor`` submits) with the parameters :func:`run_sweep` passes; it needs
    no SLURM installation.
    """
    from submitit.slurm.slurm import _make_sbatch_string

    folder = (Path(out_dir) / "submitit").resolve()
    return _make_sbatch_string(command=f"python -u -m submitit.core._submit {folder}",
                               folder=folder, map_count=n_points,
                               **_slurm_params(partition, time_min, gpus, array_parallelism))


def _slurm_params(partition, time_min, gpus, array_parallelism) -> dict:
    p = dict(time=int(time_min), gpus_per_node=int(gpus), array_parallelism=array_parallelism,
             job_name="fieldres-sweep")
    if partition:
        p["partition"] = partition
    return p


def run_sweep(grid: dict[str, list], *, preset: str, out_dir, cluster: str = "local",
              partition: str | None = None, time_min: int = 60, gpus: int = 0,
              settings: dict | None = None) -> dict:
    """Run the missing points of a grid through submitit and gather all results.

    Returns ``{"points": [...], "ran": n, "skipped": n, "failed": [...], ...}``; the
    gathered table is written to ``out_dir/results.{json,csv}``.
    """
    import submitit

    if cluster not in ("local", "slurm", "debug"):
        raise FieldresInputError(f"cluster must be local, slurm or debug, got {cluster!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = SWEEP_PRESETS[preset]
    settings = dict(dataset="cifar10", classes=["dog", "airplane"], k0_scale=0.05,
                    noise=0.1, sampler="mala", data_dir=None) | (settings or {})
    settings |= {k: sizes[k] for k in ("n_test", "steps", "n_chains", "n_kernel")}
    record = dict(preset=preset, settings={k: v for k, v in settings.items()
                                           if k != "data_dir"})
    meta = out / "sweep.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        if old.get("settings") != record["settings"] or old.get("preset") != preset:
            raise FieldresInputError(
                f"{out} holds a sweep with other settings ({old.get('preset')}, "
                f"{old.get('settings')}); use another --out folder")
    _write_json(meta, record | dict(grid=grid))
    points = expand_grid(grid, preset)
    todo = [p for p in points if not (out / "points" / f"{point_name(p)}.json").is_file()]
    failed = []
    if todo:
        try:
            ex = submitit.AutoExecutor(folder=out / "submitit", cluster=cluster)
        except RuntimeError as e:  # e.g. --cluster slurm without srun/sbatch
            raise FieldresInputError(f"cannot use the {cluster} executor here ({e}); "
                             "--dry-run prints the job array's sbatch script") from None
        if cluster == "slurm":
            ex.update_parameters(**{f"slurm_{k}": v for k, v in _slurm_params(
                partition, time_min, gpus, 256).items() if k != "job_name"},
                name="fieldres-sweep")
        else:
            ex.update_parameters(timeout_min=int(time_min))
        jobs = ex.map_array(run_point, todo, [settings] * len(todo), [str(out)] * len(todo))
        for p, job in zip(todo, jobs):
            # exception() waits for the job and returns its error instead of raising it
            # (the debug executor's result() would open pdb on a failed job).
            e = job.exception()
            if e is not None:  # a failed job: keep the others, report it
                failed.append(dict(point=p, error=str(e).strip().splitlines()[-1][:500]))
    rows = [json.loads((out / "points" / f"{point_name(p)}.json").read_text())
            for p in points if (out / "points" / f"{point_name(p)}.json").is_file()]
    _write_json(out / "results.json", dict(preset=preset, grid=grid, points=rows))
    cols = list(GRID_KEYS) + ["rho_star_diagonal", "rho", "test_error", "test_mse",
                              "train_mse", "kernel_alignment", "rhat_max", "ess_min",
                              "converged", "divergences", "seconds"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["point"].get(c, r.get(c)) if c in GRID_KEYS else r.get(c)
                        for c in cols])
    return dict(points=rows, n_points=len(points), ran=len(todo) - len(failed),
                skipped=len(points) - len(todo), failed=failed, out=str(out))
