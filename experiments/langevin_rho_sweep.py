"""Bayesian training vs residual scaling: does the ResNet generalise best near rho*(L)?

THEORY §7; Fischer, Dahmen, Helias, arXiv:2305.07715, Sec. 5 (the claim that trained
networks at or near the optimal scaling adapt more to the data and generalise better).

For every depth ``L`` the theoretical optimum ``rho*(L)`` is computed with the core
calculator from the training inputs themselves (:func:`fieldres.rho_star_entries` on
``K^(0) = X X^T / d_in`` of up to 20 training images, averaged over the diagonal entries
as in the paper's Fig. 5; the off-diagonal average is recorded and drawn too). The
posterior of the ResNet (erf, THEORY §1 variances, Gaussian likelihood with noise ``T`` on
±1 labels, CIFAR-10 dogs vs airplanes) is then sampled by MALA for ``rho = f rho*(L)`` on a
log grid of factors ``f`` (default ``1/8 ... 8``); all ``rho`` of one depth and their chains
are vmapped in one run, sharded over every available device
(:func:`fieldres.bayes.training.train_sweep`). Measured per point: posterior-predictive test
error and MSE, train MSE, kernel change (posterior-mean last-hidden-layer kernel vs the NNGP
prior kernel) and kernel--target alignment, with standard errors over chains.

Outputs ``langevin_rho_sweep.{png,json}``: (a) test error, (b) kernel change and (c)
alignment vs ``rho / rho*(L)``; (d) the (rho, L) map of the test error with the ``rho*(L)``
curves overlaid. The JSON is rewritten after every depth, so an interrupted run keeps the
depths already done. Each point can also be run alone: ``fieldres train --depth L --rho R
--json`` (e.g. one job-array task per point).

Usage: ``python experiments/langevin_rho_sweep.py --preset smoke|default|paper --out
results/ [--data-dir DIR] [--depths 5 10] [--factors 0.25 1 4]``.
Presets: ``smoke`` (seconds; run by the tests), ``default`` (about half a CPU-hour on 2
cores), ``paper`` (sized for a GPU). ``--replot JSON`` redraws a saved result.
"""

from __future__ import annotations

import argparse
import math

import _common as common
import numpy as np

PRESETS = {
    "smoke": dict(depths=(2, 4), factors=(0.25, 1.0, 4.0), n_train=20, n_test=40, width=8,
                  n_chains=2, steps=40, n_kernel=20),
    "default": dict(depths=(5, 10, 20, 50), factors=tuple(2.0**k for k in range(-3, 4)),
                    n_train=100, n_test=500, width=64, n_chains=3, steps=800, n_kernel=100),
    "paper": dict(depths=(5, 10, 20, 50), factors=tuple(2.0 ** (k / 2) for k in range(-6, 7)),
                  n_train=1000, n_test=2000, width=256, n_chains=8, steps=20000, n_kernel=500),
}
CLASSES = ("dog", "airplane")
K0_SCALE = 0.05
NOISE = 0.1
P_RHO_STAR = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", type=common.preset_arg, default="smoke",
                   help="smoke (seconds, the tests) | default | paper")
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument("--seed", type=int, default=0, help="seed of data selection and chains")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10 location (default: FIELDRES_DATA_DIR or ../shared/data)")
    p.add_argument("--depths", type=int, nargs="+", help="override the preset's depths")
    p.add_argument("--factors", type=float, nargs="+", help="override rho / rho* factors")
    p.add_argument("--sampler", choices=("mala", "nuts", "ula", "sgld"), default="mala")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.add_argument("--replot", metavar="JSON", help="only redraw the figure from a saved JSON")
    return p.parse_args(None if argv is None else list(argv))


def rho_star_of_data(x_train, depths) -> dict:
    """Data-driven rho*(L): diagonal and off-diagonal averages (paper Fig. 5)."""
    import fieldres

    X = np.asarray(x_train)[:P_RHO_STAR]
    K0 = np.asarray(fieldres.input_kernel(X, 1.0, 0.0))
    P = K0.shape[0]
    diag = [(a, a) for a in range(P)]
    off = [(a, b) for a in range(P) for b in range(a + 1, P)]
    out = {}
    for L in depths:
        r = fieldres.rho_star_entries(K0, L, fieldres.Hyper(), entries=diag + off)
        rho = np.asarray(r.rho_star)
        ok = np.asarray(r.status) == 0
        d_ok, o_ok = ok[: len(diag)], ok[len(diag):]
        if not d_ok.any():
            raise RuntimeError(f"no interior maximum of chi_out for L = {L}: "
                               f"{r.messages()[0]}")
        out[L] = dict(
            diagonal=float(rho[: len(diag)][d_ok].mean()),
            offdiagonal=float(rho[len(diag):][o_ok].mean()) if o_ok.any() else float("nan"),
            n_ok_diagonal=int(d_ok.sum()),
            n_ok_offdiagonal=int(o_ok.sum()),
        )
    return out


def _diff(a: dict, b: dict, key: str) -> dict:
    se = [x.get(f"{key}_se") for x in (a, b)]
    d = a[key] - b[key]
    s = math.sqrt(sum(v**2 for v in se)) if all(v is not None for v in se) else None
    return dict(difference=d, se=s, z=(d / s if s else None))


def summarise(points: list[dict], factors) -> dict:
    """Per depth: best rho / rho*, and the test error at rho* minus that at the grid ends."""
    per_depth = {}
    for L in sorted({p["depth"] for p in points}):
        pts = sorted((p for p in points if p["depth"] == L), key=lambda p: p["factor"])
        errs = np.array([p["test_error"] for p in pts])
        mses = np.array([p["test_mse"] for p in pts])
        kc = np.array([np.nan if p["kernel_change"] is None else p["kernel_change"]
                       for p in pts])
        fs = np.array([p["factor"] for p in pts])
        at_star = pts[int(np.argmin(np.abs(np.log(fs))))]
        s = dict(
            best_factor_test_error=float(fs[np.argmin(errs)]),
            best_factor_test_mse=float(fs[np.argmin(mses)]),
            best_factor_kernel_change=(float(fs[np.nanargmax(kc)])
                                       if np.isfinite(kc).any() else None),
            test_error_at_rho_star=at_star["test_error"],
            test_error_min=float(errs.min()),
            test_error_max=float(errs.max()),
            smallest_factor=float(fs[0]),
            largest_factor=float(fs[-1]),
            rho_star_minus_smallest=_diff(at_star, pts[0], "test_error"),
            rho_star_minus_largest=_diff(at_star, pts[-1], "test_error"),
            mse_rho_star_minus_smallest=_diff(at_star, pts[0], "test_mse"),
            mse_rho_star_minus_largest=_diff(at_star, pts[-1], "test_mse"),
            n_converged=int(sum(bool(p.get("converged")) for p in pts)),
            n_points=len(pts),
        )
        per_depth[str(L)] = s
    best = [v["best_factor_test_error"] for v in per_depth.values()]
    near = [1 / 2.01 <= b <= 2.01 for b in best]
    return dict(
        per_depth=per_depth,
        best_factor_geometric_mean=float(np.exp(np.mean(np.log(best)))),
        n_depths_best_within_factor_2=int(sum(near)),
        n_depths=len(best),
    )


def plot(res: dict, path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.ticker import NullFormatter

    pts = res["points"]
    depths = sorted({p["depth"] for p in pts})
    cmap = plt.get_cmap("viridis")
    colors = {L: cmap(i / max(len(depths) - 1, 1)) for i, L in enumerate(depths)}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    panels = (
        (axes[0, 0], "test_error", "posterior-predictive test error", "(a)"),
        (axes[0, 1], "kernel_change", r"kernel change $\|\bar C_{post}-C_{prior}\|/\|C_{prior}\|$",
         "(b)"),
        (axes[1, 0], "kernel_alignment", "kernel–target alignment (posterior)", "(c)"),
    )
    for ax, key, label, tag in panels:
        for L in depths:
            q = sorted((p for p in pts if p["depth"] == L), key=lambda p: p["factor"])
            x = np.array([p["factor"] for p in q])
            y = np.array([np.nan if p[key] is None else p[key] for p in q], float)
            e = np.array([0.0 if p.get(f"{key}_se") is None else p[f"{key}_se"] for p in q])
            ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=2, color=colors[L],
                        label=f"L = {L}")
            # an unconverged point is no result: drawn hollow (white face), never filled
            bad = np.array([not p.get("converged", False) for p in q])
            if bad.any():
                ax.plot(x[bad], y[bad], ls="none", marker="o", ms=7, mfc="white",
                        mec=colors[L], mew=1.5)
            if key == "kernel_change":
                floor = [p["kernel_change_prior"] for p in q]
                ax.plot(x, floor, ls=":", color=colors[L], lw=1)
                ax.plot(x, [p["kernel_change_raw"] for p in q], ls="none", marker=".",
                        color=colors[L], alpha=0.5)
            if key == "kernel_alignment":
                ax.plot(x, [p["kernel_alignment_prior"] for p in q], ls=":", color=colors[L],
                        lw=1)
        ax.axvline(1.0, color="0.5", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(r"$\rho / \rho^*(L)$")
        ax.set_ylabel(label)
        ax.set_title(f"{tag} " + label.split(" $")[0], fontsize=10)
    axes[0, 0].plot([], [], ls="none", marker="o", ms=7, mfc="white", mec="0.3",
                    label="not converged (R-hat >= 1.01 or ESS < 400)")
    axes[0, 0].legend(fontsize=8, frameon=False)
    axes[0, 1].text(0.02, 0.98, "debiased over chains; dots: plain distance;\ndotted: the "
                    "same (debiased) for the chains' starting networks",
                    transform=axes[0, 1].transAxes, fontsize=7, va="top")
    axes[1, 0].text(0.02, 0.98, "dotted: prior (starting networks)",
                    transform=axes[1, 0].transAxes, fontsize=7, va="top")

    ax = axes[1, 1]
    errs = np.array([p["test_error"] for p in pts])
    norm = Normalize(vmin=errs.min(), vmax=errs.max())
    sc = ax.scatter([p["rho"] for p in pts], [p["depth"] for p in pts], c=errs, cmap="magma_r",
                    norm=norm, marker="s", s=140, edgecolors="none")
    nc = [p for p in pts if not p.get("converged", False)]
    if nc:  # unconverged cells are crossed out
        ax.scatter([p["rho"] for p in nc], [p["depth"] for p in nc], marker="s", s=140,
                   facecolors="none", edgecolors="0.5", hatch="///", linewidths=0.5,
                   label="not converged")
    fig.colorbar(sc, ax=ax, label="test error")
    rs = res["rho_star"]
    Ls = np.array(depths, float)
    ax.plot([rs[str(L)]["diagonal"] for L in depths], Ls, "c-o", ms=3,
            label=r"$\rho^*_{\alpha\alpha}(L)$ (theory)")
    off = [rs[str(L)]["offdiagonal"] for L in depths]
    if all(o is not None and np.isfinite(o) for o in off):
        ax.plot(off, Ls, "c--", lw=1, label=r"$\rho^*_{\alpha\beta}(L)$ (theory)")
    for L in depths:
        q = [p for p in pts if p["depth"] == L]
        b = min(q, key=lambda p: p["test_error"])
        ax.plot(b["rho"], L, "x", color="k", ms=9, mew=2)
    ax.plot([], [], "x", color="k", label="lowest test error")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(depths)
    ax.set_yticklabels([str(L) for L in depths])
    ax.set_xlabel(r"$\rho$")
    ax.set_ylabel("depth $L$")
    ax.set_title(r"(d) test error over $(\rho, L)$", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    p = res["parameters"]
    fig.suptitle(
        f"Langevin ({p['sampler']}) posterior of the ResNet, CIFAR-10 {'/'.join(p['classes'])}, "
        f"n_train = {p['n_train']}, N = {p['width']}, {p['n_chains']} chains x {p['steps']} "
        f"steps, T = {p['noise']}", fontsize=10)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    common.enable_x64()
    args = parse_args(argv)
    if args.replot:
        import json
        from pathlib import Path

        res = json.loads(Path(args.replot).read_text())
        png = plot(res, Path(args.replot).with_suffix(".png"))
        print(f"figure redrawn: {png}")
        return res
    import fieldres
    from fieldres.bayes.training import train_sweep

    cfg = dict(PRESETS[args.preset])
    if args.depths:
        cfg["depths"] = tuple(args.depths)
    if args.factors:
        cfg["factors"] = tuple(args.factors)
    timer = common.Timer()
    ds = fieldres.make_dataset("cifar10", classes=CLASSES, n_train=cfg["n_train"],
                               n_test=cfg["n_test"], seed=args.seed, data_dir=args.data_dir,
                               k0_scale=K0_SCALE)
    rho_star = rho_star_of_data(ds.x_train, cfg["depths"])
    png, js = common.out_paths(args.out, "langevin_rho_sweep")
    params = dict(
        preset=args.preset, seed=args.seed, dataset="cifar10", classes=ds.classes,
        n_train=cfg["n_train"], n_test=cfg["n_test"], width=cfg["width"],
        n_chains=cfg["n_chains"], steps=cfg["steps"], depths=list(cfg["depths"]),
        factors=list(cfg["factors"]), sampler=args.sampler, noise=NOISE, k0_scale=K0_SCALE,
        activation="erf", hyper=dict(sigma_w2=1.25, sigma_b2=0.05, sigma_w2_out=1.25,
                                     sigma_b2_out=0.05, sigma_w2_in=1.0, sigma_b2_in=0.0),
        n_kernel=cfg["n_kernel"], p_rho_star=min(P_RHO_STAR, cfg["n_train"]),
        source_dir=ds.metadata.get("source_dir"),
        devices=[str(d) for d in __import__("jax").devices()],
    )
    res = dict(parameters=params, rho_star={str(L): v for L, v in rho_star.items()},
               points=[], depth_seconds={})
    for L in cfg["depths"]:
        t = common.Timer()
        rhos = [rho_star[L]["diagonal"] * f for f in cfg["factors"]]
        out = train_sweep(ds.x_train, ds.y_train, ds.x_test, ds.y_test, depth=L, rhos=rhos,
                          width=cfg["width"], noise=NOISE, sampler=args.sampler,
                          steps=cfg["steps"], n_chains=cfg["n_chains"],
                          n_kernel=cfg["n_kernel"], seed=args.seed + 1000 * L,
                          progress=args.progress)
        for f, r in zip(cfg["factors"], out):
            d = r.to_dict()
            d["factor"] = f
            d["rho_star"] = rho_star[L]["diagonal"]
            res["points"].append(d)
        res["depth_seconds"][str(L)] = t()
        res["summary"] = summarise(res["points"], cfg["factors"])
        res["runtime_s"] = timer()
        common.save_json(res, js)
        print(f"  L = {L}: rho* = {rho_star[L]['diagonal']:.4f}; test error "
              + ", ".join(f"{d['factor']:.3g}: {d['test_error']:.3f}" for d in res["points"]
                          if d["depth"] == L) + f"  ({t():.0f} s)", flush=True)
    plot(res, png)
    res["runtime_s"] = timer()
    common.save_json(res, js)
    s = res["summary"]
    print(f"Langevin rho sweep ({args.preset}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    for L, v in s["per_depth"].items():
        a, b = v["rho_star_minus_smallest"], v["rho_star_minus_largest"]
        print(f"  L = {L}: best rho/rho* = {v['best_factor_test_error']:.3g}; test error at "
              f"rho* {v['test_error_at_rho_star']:.3f}, minus at rho*x{v['smallest_factor']:.3g}"
              f" {a['difference']:+.3f}, minus at rho*x{v['largest_factor']:.3g} "
              f"{b['difference']:+.3f}; {v['n_converged']} of {v['n_points']} points "
              "converged" + ("" if v["n_converged"] == v["n_points"] else
                             " (the others are NOT results: drawn hollow)"))
    print(f"  best rho/rho* within a factor 2 for {s['n_depths_best_within_factor_2']} of "
          f"{s['n_depths']} depths (geometric mean {s['best_factor_geometric_mean']:.3g})")
    return res


if __name__ == "__main__":
    main()
