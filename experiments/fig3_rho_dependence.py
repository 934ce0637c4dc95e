"""Paper Fig. 3: kernels K^(l) and responses chi^(l) over layers for several residual scalings.

Fischer, Dahmen, Helias, arXiv:2305.07715, Fig. 3: ``rho in {1.0, 0.3, 0.1}`` (dark to
light); ``sigma^2_{w,in} = sigma^2_w = sigma^2_{w,out} = 1.2``, bias variances ``0.2``,
``d_in = 100``, erf. (a) Diagonal ``K^(l)_11`` (and off-diagonal ``K^(l)_12``); (b) diagonal
response ``chi^(l)_11``. Curves: leading-order theory (:func:`fieldres.resnet_kernels`,
:func:`fieldres.response`); points: mean +- standard error over finite networks
(:func:`fieldres.simulation.simulate_kernels`; responses by the pathwise derivative at fixed
random numbers). ``rho`` sets the rate at which both grow.

Usage: ``python experiments/fig3_rho_dependence.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import _common as common
import jax
import numpy as np

PRESETS = {
    "smoke": dict(depth=10, width=64, n_networks=200, n_groups=10),
    "default": dict(depth=30, width=200, n_networks=500, n_groups=10),
    "paper": dict(depth=50, width=500, n_networks=1000, n_groups=20),
}
RHOS = (1.0, 0.3, 0.1)
SIGMA_W2, SIGMA_B2, D_IN, CORR = 1.2, 0.2, 100, 0.5


def compute(preset: str, seed: int) -> dict:
    import fieldres

    p = PRESETS[preset]
    L = p["depth"]
    hyper = fieldres.Hyper(SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2)
    X, K0 = common.pair_input_kernel(seed, D_IN, CORR, SIGMA_W2, SIGMA_B2)
    key = jax.random.PRNGKey(seed)
    res: dict = {
        "parameters": dict(
            preset=preset,
            seed=seed,
            depth=L,
            width=p["width"],
            n_networks=p["n_networks"],
            n_groups=p["n_groups"],
            rhos=RHOS,
            sigma_w2=SIGMA_W2,
            sigma_b2=SIGMA_B2,
            sigma_w2_in=SIGMA_W2,
            sigma_b2_in=SIGMA_B2,
            sigma_w2_out=SIGMA_W2,
            sigma_b2_out=SIGMA_B2,
            d_in=D_IN,
            input_correlation=CORR,
            activation="erf",
            K0=K0,
        ),
        "curves": [],
    }
    for i, rho in enumerate(RHOS):
        K = np.asarray(fieldres.resnet_kernels(K0, rho, L, hyper).trajectory)
        chi = np.asarray(fieldres.response(K0, rho, L, hyper, trajectory=True).trajectory)
        sim = common.simulate_layers(
            jax.random.fold_in(key, i),
            K0,
            rho=rho,
            depth=L,
            width=p["width"],
            n_networks=p["n_networks"],
            hyper=hyper,
            residual=True,
            n_groups=p["n_groups"],
        )
        d = dict(
            rho=rho,
            K_diag_theory=K[:, 0, 0],
            K_off_theory=K[:, 0, 1],
            K_diag_mc=sim["K_mean"][:, 0, 0],
            K_diag_se=sim["K_se"][:, 0, 0],
            K_off_mc=sim["K_mean"][:, 0, 1],
            K_off_se=sim["K_se"][:, 0, 1],
            chi_diag_theory=chi[:, 0, 0],
            chi_off_theory=chi[:, 0, 1],
            chi_diag_mc=sim["chi_diag"],
            chi_diag_se=sim["chi_diag_se"],
            chi_off_mc=sim["chi_off"],
            chi_off_se=sim["chi_off_se"],
        )
        d["max_abs_deviation_in_se"] = {
            q: common.max_z(d[f"{q}_theory"], d[f"{q}_mc"], d[f"{q}_se"])
            for q in ("K_diag", "K_off", "chi_diag", "chi_off")
        }
        res["curves"].append(d)
    return res


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    cmap = plt.get_cmap("Blues")
    n = len(res["curves"])
    for i, d in enumerate(res["curves"]):
        c = cmap(0.95 - 0.55 * i / max(n - 1, 1))  # dark (rho = 1) to light (rho = 0.1)
        layers = np.arange(len(d["K_diag_theory"]))
        lab = rf"$\rho = {d['rho']:g}$"
        ax_a.plot(layers, d["K_diag_theory"], "-", color=c, label=lab + r": $K_{11}$")
        ax_a.plot(layers, d["K_off_theory"], "--", color=c, label=lab + r": $K_{12}$")
        ax_a.errorbar(
            layers, d["K_diag_mc"], yerr=d["K_diag_se"], fmt="o", ms=3, color=c, capsize=2
        )
        ax_a.errorbar(
            layers,
            d["K_off_mc"],
            yerr=d["K_off_se"],
            fmt="s",
            ms=3,
            color=c,
            mfc="white",
            capsize=2,
        )
        ax_b.plot(layers, d["chi_diag_theory"], "-", color=c, label=lab)
        ax_b.errorbar(
            layers, d["chi_diag_mc"], yerr=d["chi_diag_se"], fmt="o", ms=3, color=c, capsize=2
        )
    p = res["parameters"]
    ax_a.set_xlabel("layer $l$")
    ax_a.set_ylabel("kernel $K^{(l)}$")
    ax_a.set_yscale("log")
    ax_a.set_title(
        f"(a) kernels (lines: theory; points: N = {p['width']}, {p['n_networks']} networks)",
        fontsize=9,
    )
    ax_a.legend(fontsize=7, frameon=False, ncol=1)
    ax_b.set_xlabel("layer $l$")
    ax_b.set_ylabel(r"response $\chi^{(l)}_{11}$")
    ax_b.set_title("(b) response (diagonal)", fontsize=9)
    ax_b.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "fig3_rho_dependence", lambda a: compute(a.preset, a.seed), plot
    )
    print(f"Fig. 3 ({args.preset}) written to {png} and {js} in {res['runtime_s']:.1f} s")
    for d in res["curves"]:
        print(
            f"  rho = {d['rho']:g}: K^(L)_11 = {d['K_diag_theory'][-1]:.4f} "
            f"(MC {d['K_diag_mc'][-1]:.4f} +- {d['K_diag_se'][-1]:.4f}), "
            f"chi^(L)_11 = {d['chi_diag_theory'][-1]:.4f} "
            f"(MC {d['chi_diag_mc'][-1]:.4f} +- {d['chi_diag_se'][-1]:.4f}); max dev/SE "
            + ", ".join(f"{k} {v:.2f}" for k, v in d["max_abs_deviation_in_se"].items())
        )
    return res


if __name__ == "__main__":
    main()
