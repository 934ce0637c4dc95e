"""Paper Fig. 4: output response chi^out(rho) and the optimal scaling rho*(L) ~ 1/sqrt(L).

Fischer, Dahmen, Helias, arXiv:2305.07715, Fig. 4; THEORY Sec. 3. Input kernel
``K^(0) = [[0.05, 0.03], [0.03, 0.05]]``, ``sigma^2_w = sigma^2_{w,out} = 1.25``,
``sigma^2_b = sigma^2_{b,out} = 0.05``, erf. (a) diagonal and (b) off-diagonal
``chi^out(rho)`` for ``L in {10, 50, 100, 200}`` (:func:`fieldres.response_curve`), maxima
marked; (c) ``rho*(L)`` for both summaries (:func:`fieldres.rho_star_scaling`) with the
fitted power-law exponents, a ``1/sqrt(L)`` guide and the continuum (large-depth)
prediction ``sqrt(tau*/L)`` (:func:`fieldres.rho_star_continuum`).

Usage: ``python experiments/fig4_optimal_scaling.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import _common as common
import numpy as np

K0 = ((0.05, 0.03), (0.03, 0.05))
SIGMA_W2, SIGMA_B2 = 1.25, 0.05
PRESETS = {
    "smoke": dict(
        curve_depths=(10, 50, 100, 200), scaling_depths=(10, 20, 50, 100, 200, 500, 1000), n_rho=121
    ),
    "default": dict(
        curve_depths=(10, 50, 100, 200), scaling_depths=(10, 20, 50, 100, 200, 500, 1000), n_rho=201
    ),
    "paper": dict(
        curve_depths=(10, 50, 100, 200), scaling_depths=(10, 20, 50, 100, 200, 500, 1000), n_rho=401
    ),
}
# THEORY.md Sec. 3 reference table (erf, the parameters above).
REFERENCE = {
    10: dict(diag=0.326509, off=1.089168, chi_diag=2.01900, chi_off=11.4089),
    100: dict(diag=0.097219, off=0.292569, chi_diag=1.96872, chi_off=10.7917),
    1000: dict(diag=0.030565, off=0.090995, chi_diag=1.96397, chi_off=10.7238),
}


def compute(preset: str) -> dict:
    import fieldres

    p = PRESETS[preset]
    hyper = fieldres.Hyper(SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2)
    K0a = np.asarray(K0)
    rhos = np.geomspace(1e-2, 1e1, p["n_rho"])
    curves = {"diagonal": {}, "off-diagonal": {}}
    for L in p["curve_depths"]:
        chi = np.asarray(fieldres.response_curve(K0a, rhos, L, hyper))
        curves["diagonal"][L] = chi[:, 0, 0]
        curves["off-diagonal"][L] = chi[:, 0, 1]
    depths = np.asarray(p["scaling_depths"])
    fit = fieldres.rho_star_scaling(K0a, depths, hyper)
    # tau* does not depend on L: one solve, rho*_cont(L) = sqrt(tau* / L).
    cont = fieldres.rho_star_continuum(K0a[0, 0], 1, hyper)
    rd, ro = np.asarray(fit.diagonal.rho_star), np.asarray(fit.offdiagonal.rho_star)
    cd, co = np.asarray(fit.diagonal.chi_max), np.asarray(fit.offdiagonal.chi_max)
    big = depths >= 100
    checks = {}
    for L, ref in REFERENCE.items():
        if L in depths:
            i = int(np.nonzero(depths == L)[0][0])
            checks[L] = dict(
                rho_star_diag=float(rd[i]),
                rho_star_diag_ref=ref["diag"],
                rho_star_off=float(ro[i]),
                rho_star_off_ref=ref["off"],
                chi_max_diag=float(cd[i]),
                chi_max_diag_ref=ref["chi_diag"],
                chi_max_off=float(co[i]),
                chi_max_off_ref=ref["chi_off"],
                abs_err_rho_diag=abs(float(rd[i]) - ref["diag"]),
                abs_err_rho_off=abs(float(ro[i]) - ref["off"]),
            )
    return dict(
        parameters=dict(
            preset=preset,
            K0=K0a,
            sigma_w2=SIGMA_W2,
            sigma_b2=SIGMA_B2,
            sigma_w2_out=SIGMA_W2,
            sigma_b2_out=SIGMA_B2,
            activation="erf",
            curve_depths=p["curve_depths"],
            scaling_depths=depths,
            rho_grid=(float(rhos[0]), float(rhos[-1]), len(rhos)),
        ),
        rho=rhos,
        curves=curves,
        scaling=dict(
            depths=depths,
            rho_star_diag=rd,
            rho_star_off=ro,
            status_diag=np.asarray(fit.diagonal.status),
            status_off=np.asarray(fit.offdiagonal.status),
            chi_max_diag=cd,
            chi_max_off=co,
            rho_star_sqrtL_diag=rd * np.sqrt(depths),
            rho_star_sqrtL_off=ro * np.sqrt(depths),
            exponent_diag=fit.exponent_diagonal,
            exponent_diag_se=fit.exponent_diagonal_se,
            exponent_off=fit.exponent_offdiagonal,
            exponent_off_se=fit.exponent_offdiagonal_se,
            # local exponents from the deepest depths (L >= 100): closer to the asymptotic -1/2
            exponent_diag_large_L=fieldres.signal.optimal.fit_power_law(depths[big], rd[big])[0],
            exponent_off_large_L=fieldres.signal.optimal.fit_power_law(depths[big], ro[big])[0],
            continuum_rho_star=np.sqrt(float(cont.tau_star) / depths),
            continuum_status=int(cont.status),
            continuum_K_star=float(cont.K_star),
            continuum_sqrt_tau_star=float(np.sqrt(cont.tau_star)),
        ),
        reference_check=checks,
    )


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    rho = np.asarray(res["rho"])
    sc = res["scaling"]
    depths = np.asarray(sc["depths"], float)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    for ax, name, cmap, key in (
        (axes[0], "diagonal", "Blues", "diag"),
        (axes[1], "off-diagonal", "Greens", "off"),
    ):
        cm = plt.get_cmap(cmap)
        Ls = sorted(res["curves"][name])
        for i, L in enumerate(Ls):
            c = cm(0.35 + 0.6 * i / max(len(Ls) - 1, 1))  # light (L = 10) to dark
            ax.semilogx(rho, res["curves"][name][L], color=c, label=f"L = {L}")
            j = np.nonzero(depths == L)[0]
            if j.size and np.isfinite(sc[f"rho_star_{key}"][j[0]]):
                ax.plot(sc[f"rho_star_{key}"][j[0]], sc[f"chi_max_{key}"][j[0]], "o", color=c, ms=4)
        sym = r"\alpha\alpha" if key == "diag" else r"\alpha\beta"
        ax.set_xlabel(r"residual scaling $\rho$")
        ax.set_ylabel(rf"output response $\chi^{{\mathrm{{out}}}}_{{{sym}}}$")
        ax.set_title(f"({'a' if key == 'diag' else 'b'}) {name} (dots: maxima)", fontsize=10)
        ax.legend(frameon=False, fontsize=8)
    ax = axes[2]
    ax.loglog(
        depths,
        sc["rho_star_diag"],
        "o-",
        color="tab:blue",
        label=rf"diagonal, slope {sc['exponent_diag']:.3f}",
    )
    ax.loglog(
        depths,
        sc["rho_star_off"],
        "s-",
        color="tab:green",
        label=rf"off-diagonal, slope {sc['exponent_off']:.3f}",
    )
    ax.loglog(
        depths, sc["continuum_rho_star"], "k:", label=r"continuum $\sqrt{\tau^*/L}$ (diagonal)"
    )
    ref = 0.5 * float(np.nanmin(np.asarray(sc["rho_star_diag"]) * np.sqrt(depths)))
    ax.loglog(
        depths, ref / np.sqrt(depths), color="0.6", lw=3, alpha=0.6, label=r"$\propto 1/\sqrt{L}$"
    )
    ax.set_xlabel("depth $L$")
    ax.set_ylabel(r"optimal scaling $\rho^*$")
    ax.set_title(r"(c) $\rho^* = \mathrm{argmax}_\rho\, \chi^{\mathrm{out}}$", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    common.enable_x64()
    args = common.parse_args(__doc__.splitlines()[0], argv)
    timer = common.Timer()
    res = compute(args.preset)
    res["parameters"]["seed"] = args.seed
    png, js = common.out_paths(args.out, "fig4_optimal_scaling")
    plot(res, png)
    res["runtime_s"] = timer()
    common.save_json(res, js)
    sc = res["scaling"]
    print(f"Fig. 4 ({args.preset}) written to {png} and {js} in {res['runtime_s']:.1f} s")
    print(
        f"  exponent diagonal {sc['exponent_diag']:.4f} +- {sc['exponent_diag_se']:.4f}, "
        f"off-diagonal {sc['exponent_off']:.4f} +- {sc['exponent_off_se']:.4f} "
        f"(L >= 100: {sc['exponent_diag_large_L']:.4f}, {sc['exponent_off_large_L']:.4f}); "
        f"continuum K* = {sc['continuum_K_star']:.4f}, "
        f"sqrt(tau*) = {sc['continuum_sqrt_tau_star']:.4f}"
    )
    for L, c in res["reference_check"].items():
        print(
            f"  L = {L}: rho* diag {c['rho_star_diag']:.6f} (ref {c['rho_star_diag_ref']}), "
            f"off {c['rho_star_off']:.6f} (ref {c['rho_star_off_ref']})"
        )
    return res


if __name__ == "__main__":
    main()
