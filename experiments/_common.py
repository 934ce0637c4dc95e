"""Shared helpers of the figure scripts: argument parsing, output files, simulation summaries.

Every script ``experiments/figN_*.py`` has a ``main(argv=None)`` that parses
``--preset smoke|default|paper`` and ``--out DIR``, computes theory (and, where asked, Monte-Carlo)
numbers with the public :mod:`fieldres` API and writes ``figN_*.png`` and ``figN_*.json``
into ``DIR``. The JSON holds the parameters and every number that is plotted.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fieldres.defaults import check_preset


def preset_arg(name: str) -> str:
    """argparse ``type`` of ``--preset``: one of :data:`fieldres.defaults.PRESETS`; an old name
    (``quick``, ``small``) is refused with a message naming its new one."""
    try:
        return check_preset(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def enable_x64() -> None:
    """Kernels, responses and root finding need float64 (STYLE point 8)."""
    jax.config.update("jax_enable_x64", True)


def parse_args(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """``--preset smoke|default|paper``, ``--out DIR`` (default ``results/``), ``--seed``, extra."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--preset",
        type=preset_arg,
        default="smoke",
        help="smoke: smoke-test sizes (seconds, used by the tests); default: a few minutes; "
             "paper: the paper's sizes",
    )
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    if extra is not None:
        extra(parser)
    return parser.parse_args(None if argv is None else list(argv))


def to_jsonable(x: Any) -> Any:
    """Arrays to lists, numpy/jax scalars to Python numbers, non-finite floats to ``None``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        a = np.asarray(x)
        if a.ndim == 0:
            return to_jsonable(a.item())
        return to_jsonable(a.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, np.generic):
        return to_jsonable(x.item())
    return x


def save_json(data: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(data), indent=2) + "\n")
    return path


def save_figure(fig, path: Path) -> Path:
    """Save with :func:`fieldres.plotting.save` and close the figure."""
    import matplotlib.pyplot as plt

    from fieldres import plotting

    out = plotting.save(fig, path)
    plt.close(fig)
    return out


def out_paths(out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{stem}.png", out_dir / f"{stem}.json"


class Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def run_experiment(
    doc: str,
    argv: Sequence[str] | None,
    stem: str,
    compute: Callable[[argparse.Namespace], dict],
    plot: Callable[[dict, Path], Any],
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[dict, argparse.Namespace, Path, Path]:
    """The common ``main()``: float64, ``--preset/--out/--seed`` (+ ``extra``), ``compute(args)``,
    the figure ``<out>/<stem>.png`` and the JSON ``<out>/<stem>.json`` with ``runtime_s``.

    Returns ``(result, args, png_path, json_path)`` for the script's own summary lines.
    """
    enable_x64()
    args = parse_args(doc.splitlines()[0], argv, extra=extra)
    timer = Timer()
    res = compute(args)
    png, js = out_paths(args.out, stem)
    plot(res, png)
    res["runtime_s"] = timer()
    save_json(res, js)
    return res, args, png, js


def pair_input_kernel(seed: int, d_in: int, corr: float, sigma_w2_in: float, sigma_b2_in: float):
    """``K^(0)`` of two random Gaussian inputs ``x_1, x_2`` in ``R^d_in`` with correlation ``corr``.

    Returns ``(X, K0)`` with ``K0 = sigma_b2_in + sigma_w2_in X X^T / d_in`` (THEORY Sec. 2).
    """
    import fieldres

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, d_in))
    X = np.stack([z[0], corr * z[0] + math.sqrt(1.0 - corr**2) * z[1]])
    K0 = fieldres.input_kernel(X, sigma_w2_in, sigma_b2_in)
    return X, np.asarray(K0)


def _pool(means: np.ndarray, vars_: np.ndarray, n_per: int) -> tuple[np.ndarray, np.ndarray]:
    """Pool equal-size groups: overall mean and standard error of the mean."""
    G = means.shape[0]
    n = G * n_per
    mean = means.mean(0)
    m2 = ((n_per - 1) * vars_ + n_per * (means - mean) ** 2).sum(0)
    return mean, np.sqrt(m2 / (n - 1) / n)


def simulate_layers(
    key,
    K0,
    *,
    rho: float,
    depth: int,
    width: int,
    n_networks: int,
    hyper,
    residual: bool,
    n_groups: int = 10,
    activation: str = "erf",
) -> dict[str, np.ndarray]:
    """Monte-Carlo per-layer kernels and diagonal/off-diagonal responses of finite networks.

    The ``n_networks`` networks are split into ``n_groups`` groups of equal size. Each group
    is simulated with :func:`fieldres.simulation.simulate_kernels` and differentiated at fixed
    random numbers (``jax.jvp``, pathwise) in the directions ``T = e_0 e_0^T`` (diagonal
    summary) and ``T = e_0 e_1^T + e_1 e_0^T`` (off-diagonal summary) of ``K0``: the group
    means of ``dK^(l)`` are unbiased estimates of ``chi^(l)`` (THEORY Sec. 3; exact down to
    the tiny responses of deep feed-forward nets, where finite differences lose all digits);
    their standard error is taken over groups.

    Returns ``(L + 1, P, P)`` arrays ``C_mean, C_se, K_mean, K_se`` (all networks) and
    ``(L + 1,)`` arrays ``chi_diag, chi_diag_se, chi_off, chi_off_se``.
    """
    from fieldres import simulation

    K0 = np.asarray(K0, dtype=np.float64)
    n_per = max(n_networks // n_groups, 2)
    common = dict(
        rho=rho,
        depth=depth,
        width=width,
        n_networks=n_per,
        activation=activation,
        sigma_w2=float(hyper.sigma_w2),
        sigma_b2=float(hyper.sigma_b2),
        sigma_w2_out=float(hyper.sigma_w2_out),
        sigma_b2_out=float(hyper.sigma_b2_out),
        residual=residual,
        batch_size=n_per,
        keep_last=False,
    )
    T_diag = np.zeros_like(K0)
    T_diag[0, 0] = 1.0
    T_off = np.zeros_like(K0)
    T_off[0, 1] = T_off[1, 0] = 1.0
    Cm, Cv, Km, Kv, dd, do = [], [], [], [], [], []
    for g in range(n_groups):
        kg = jax.random.fold_in(key, g)

        def stats(K, kg=kg):
            r = simulation.simulate_kernels(kg, K, **common)
            return r.C_mean, r.C_var, r.K_mean, r.K_var

        for T, store, (a, b) in ((T_diag, dd, (0, 0)), (T_off, do, (0, 1))):
            # pathwise derivative at fixed random numbers (forward mode through the sampler)
            primal, tangent = jax.jvp(stats, (K0,), (T,))
            store.append(np.asarray(tangent[2])[:, a, b])
        Cm.append(np.asarray(primal[0]))
        Cv.append(np.asarray(primal[1]))
        Km.append(np.asarray(primal[2]))
        Kv.append(np.asarray(primal[3]))
    C_mean, C_se = _pool(np.array(Cm), np.array(Cv), n_per)
    K_mean, K_se = _pool(np.array(Km), np.array(Kv), n_per)
    dd, do = np.array(dd), np.array(do)
    G = len(dd)
    return dict(
        C_mean=C_mean,
        C_se=C_se,
        K_mean=K_mean,
        K_se=K_se,
        chi_diag=dd.mean(0),
        chi_diag_se=dd.std(0, ddof=1) / math.sqrt(G),
        chi_off=do.mean(0),
        chi_off_se=do.std(0, ddof=1) / math.sqrt(G),
        n_networks=G * n_per,
    )


def max_z(theory, mc, se, skip_zero_se: bool = True) -> float:
    """``max |theory - MC| / SE`` over entries with a positive standard error."""
    theory, mc, se = (np.asarray(v, float) for v in (theory, mc, se))
    m = se > 1e-14 if skip_zero_se else np.ones_like(se, bool)
    if not np.any(m):
        return float("nan")
    return float(np.max(np.abs(theory[m] - mc[m]) / se[m]))
