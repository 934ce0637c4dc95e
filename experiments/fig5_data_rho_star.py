"""Paper Fig. 5: optimal scaling on CIFAR-10 data depends strongly on depth, weakly on variances.

Fischer, Dahmen, Helias, arXiv:2305.07715, Fig. 5. ``P = 20`` CIFAR-10 training images
(10 dogs, 10 airplanes; :func:`fieldres.make_dataset` with ``k0_scale = 0.05``), input kernel
``K^(0) = X X^T / d_in`` (``sigma^2_{w,in} = 1``, ``sigma^2_{b,in} = 0``), erf. For every
sample ``alpha`` and every pair ``alpha < beta`` the optimal scaling
``rho*_ab = argmax_rho chi^out_ab`` (:func:`fieldres.rho_star_entries`) is computed for
depths ``L`` and a grid of ``(sigma^2_w, sigma^2_b)`` (``sigma^2_{w,out} = sigma^2_w``,
``sigma^2_{b,out} = sigma^2_b``). Plotted: the averages ``rhobar*_aa`` (a) and
``rhobar*_ab`` (b) vs ``L``. Entries without an interior maximum (status != OK) are not
averaged; their number is stored per point.

Usage: ``python experiments/fig5_data_rho_star.py --preset smoke|default|paper --out results/
[--data-dir DIR]`` (default data location: ``FIELDRES_DATA_DIR`` or ``../shared/data``).
"""

from __future__ import annotations

import _common as common
import numpy as np

PRESETS = {
    "smoke": dict(n_train=6, depths=(10, 50, 200)),
    "default": dict(n_train=12, depths=(10, 20, 50, 100, 200)),
    "paper": dict(n_train=20, depths=(10, 20, 50, 100, 200, 500, 1000)),
}
SIGMA_W2S = (0.5, 1.25, 2.0)
SIGMA_B2S = (0.0, 0.05, 0.2)
K0_SCALE = 0.05


def _extra(parser):
    parser.add_argument(
        "--data-dir",
        default=None,
        help="CIFAR-10 location (default: FIELDRES_DATA_DIR or ../shared/data)",
    )


def _ratio(m: np.ndarray, axis: int) -> np.ndarray:
    """``max / min`` of the finite values along ``axis`` (``nan`` where there are none)."""
    finite = np.isfinite(m)
    hi = np.where(finite, m, -np.inf).max(axis)
    lo = np.where(finite, m, np.inf).min(axis)
    return np.where(finite.any(axis), hi / np.where(finite.any(axis), lo, 1.0), np.nan)


def compute(preset: str, seed: int, data_dir) -> dict:
    import fieldres
    from fieldres.bayes.posterior import average_rho_star as _summary  # the Fig. 5 average

    p = PRESETS[preset]
    ds = fieldres.make_dataset(
        "cifar10",
        classes=("dog", "airplane"),
        n_train=p["n_train"],
        n_test=0,
        seed=seed,
        data_dir=data_dir,
        k0_scale=K0_SCALE,
    )
    K0 = np.asarray(fieldres.input_kernel(ds.x_train, 1.0, 0.0))
    P = K0.shape[0]
    diag = [(a, a) for a in range(P)]
    off = [(a, b) for a in range(P) for b in range(a + 1, P)]
    depths = list(p["depths"])
    # all depths and entries of one hyperparameter set in one vmapped call
    entries = [e for _ in depths for e in diag + off]
    entry_depths = [L for L in depths for _ in diag + off]
    n_d, n_e = len(diag), len(diag) + len(off)
    lines = []
    for sw in SIGMA_W2S:
        for sb in SIGMA_B2S:
            hyper = fieldres.Hyper(sw, sb, sw, sb, 1.0, 0.0)
            r = fieldres.rho_star_entries(K0, entry_depths, hyper, entries=entries)
            rho = np.asarray(r.rho_star).reshape(len(depths), n_e)
            st = np.asarray(r.status).reshape(len(depths), n_e)
            lines.append(
                dict(
                    sigma_w2=sw,
                    sigma_b2=sb,
                    diagonal=[_summary(rho[i, :n_d], st[i, :n_d]) for i in range(len(depths))],
                    offdiagonal=[_summary(rho[i, n_d:], st[i, n_d:]) for i in range(len(depths))],
                )
            )
    # spread over hyperparameters vs spread over depth (the figure's message)
    summary = {}
    for kind in ("diagonal", "offdiagonal"):
        m = np.array([[pt["mean"] for pt in ln[kind]] for ln in lines])  # (n_hyper, n_depth)
        summary[kind] = dict(
            max_over_min_across_hyper_per_depth=_ratio(m, 0),
            max_over_min_across_depth_per_hyper=_ratio(m, 1),
            exponent_per_hyper=[fieldres.signal.optimal.fit_power_law(depths, row)[0] for row in m],
        )
    return dict(
        parameters=dict(
            preset=preset,
            seed=seed,
            dataset="cifar10",
            classes=ds.classes,
            P=P,
            d_in=ds.d_in,
            k0_scale=K0_SCALE,
            sigma_w2_in=1.0,
            sigma_b2_in=0.0,
            sigma_w2s=SIGMA_W2S,
            sigma_b2s=SIGMA_B2S,
            depths=depths,
            activation="erf",
            source_dir=ds.metadata.get("source_dir"),
            rho_range=r.rho_range,
            K0_mean_diag=float(np.mean(np.diag(K0))),
            K0_mean_offdiag=float((K0.sum() - np.trace(K0)) / (P * (P - 1))),
        ),
        lines=lines,
        summary=summary,
    )


def plot(res: dict, path):
    import matplotlib.pyplot as plt
    import matplotlib.ticker as mticker

    depths = np.asarray(res["parameters"]["depths"], float)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0))
    colors = dict(zip(SIGMA_W2S, ("tab:orange", "tab:blue", "tab:purple"), strict=True))
    styles = dict(zip(SIGMA_B2S, ("-", "--", ":"), strict=True))
    markers = dict(zip(SIGMA_B2S, ("o", "s", "^"), strict=True))
    for ax, kind, title in (
        (axes[0], "diagonal", r"(a) variances $\bar\rho^*_{\alpha\alpha}$"),
        (axes[1], "offdiagonal", r"(b) covariances $\bar\rho^*_{\alpha\beta}$"),
    ):
        for ln in res["lines"]:
            y = np.array([pt["mean"] for pt in ln[kind]], float)
            ax.loglog(
                depths,
                y,
                ls=styles[ln["sigma_b2"]],
                marker=markers[ln["sigma_b2"]],
                ms=4,
                color=colors[ln["sigma_w2"]],
                label=rf"$\sigma_w^2={ln['sigma_w2']:g}$, $\sigma_b^2={ln['sigma_b2']:g}$",
            )
        ys = np.array([[pt["mean"] for pt in ln[kind]] for ln in res["lines"]], float)
        ref = 0.5 * np.nanmin(ys[:, 0]) * np.sqrt(depths[0])
        ax.loglog(
            depths,
            ref / np.sqrt(depths),
            color="0.6",
            lw=3,
            alpha=0.5,
            label=r"$\propto 1/\sqrt{L}$",
        )
        missing = [ln for ln in res["lines"] if any(pt["n_no_maximum"] for pt in ln[kind])]
        if missing:
            note = "no interior max. (not averaged):\n" + "\n".join(
                rf"$\sigma_w^2={ln['sigma_w2']:g}$, $\sigma_b^2={ln['sigma_b2']:g}$: "
                + f"{sum(pt['n_no_maximum'] for pt in ln[kind])} entries"
                for ln in missing
            )
            ax.text(0.98, 0.98, note, transform=ax.transAxes, fontsize=7, va="top", ha="right")
        ax.set_xlabel("depth $L$")
        ax.set_ylabel(r"averaged optimal scaling $\bar\rho^*$")
        ax.set_title(title, fontsize=10)
        ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    p = res["parameters"]
    axes[1].legend(fontsize=7, frameon=False, ncol=1, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(
        f"CIFAR-10 {'/'.join(p['classes'])}, P = {p['P']}, "
        f"mean K$^{{(0)}}_{{\\alpha\\alpha}}$ = {p['K0_mean_diag']:.3f}",
        fontsize=10,
    )
    fig.tight_layout()
    return common.save_figure(fig, path)


def fieldres_status_name(code: int) -> str:
    import fieldres

    return fieldres.Status(int(code)).name


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "fig5_data_rho_star", lambda a: compute(a.preset, a.seed, a.data_dir),
        plot, extra=_extra,
    )
    print(f"Fig. 5 ({args.preset}) written to {png} and {js} in {res['runtime_s']:.1f} s")
    depths = res["parameters"]["depths"]
    for ln in res["lines"]:
        d = ", ".join(f"{pt['mean']:.4f}" for pt in ln["diagonal"])
        o = ", ".join(f"{pt['mean']:.4f}" for pt in ln["offdiagonal"])
        bad = sum(pt["n_no_maximum"] for pt in ln["diagonal"] + ln["offdiagonal"])
        if bad:
            codes = sorted(
                {
                    c
                    for pt in ln["diagonal"] + ln["offdiagonal"]
                    for c in pt["status_counts"]
                    if c != 0
                }
            )
            names = ", ".join(fieldres_status_name(c) for c in codes)
            bad = f"{bad} ({names})"
        print(
            f"  sigma_w2={ln['sigma_w2']:g} sigma_b2={ln['sigma_b2']:g}: L={depths} "
            f"diag [{d}] off [{o}] (entries without maximum: {bad})"
        )
    for kind, s in res["summary"].items():
        print(
            f"  {kind}: max/min across (sigma_w2, sigma_b2) per depth "
            + np.array2string(np.asarray(s["max_over_min_across_hyper_per_depth"]), precision=3)
            + "; across depth per hyper "
            + np.array2string(np.asarray(s["max_over_min_across_depth_per_hyper"]), precision=2)
        )
    return res


if __name__ == "__main__":
    main()
