"""Paper Fig. 2: post-activation kernels and responses over layers, ResNet vs feed-forward net.

Fischer, Dahmen, Helias, arXiv:2305.07715, Fig. 2. Two random inputs in ``R^100``;
``sigma^2_{w,in} = sigma^2_w = sigma^2_{w,out} = 1.2``, all bias variances ``0.2``, erf,
ResNet with ``rho = 1``. (a) ``C^(l) = C_phi(K^(l))`` (diagonal and off-diagonal entries),
leading-order theory vs the mean +- standard error over finite networks
(:func:`fieldres.simulation.simulate_kernels`). (b) The diagonal response
``chi^(l) = dK^(l)_11 / dK^(0)_11``, theory (:func:`fieldres.response`) vs a pathwise
Monte-Carlo estimate (forward-mode derivative at fixed random numbers); the output response
``chi^out`` is also checked with :func:`fieldres.simulation.simulate_response`.

Usage: ``python experiments/fig2_resnet_vs_ffnet.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import _common as common
import jax
import jax.numpy as jnp
import numpy as np

PRESETS = {
    "smoke": dict(depth=8, width=64, n_networks=200, n_groups=10),
    "default": dict(depth=20, width=200, n_networks=500, n_groups=10),
    "paper": dict(depth=30, width=500, n_networks=1000, n_groups=20),
}
SIGMA_W2, SIGMA_B2, D_IN, RHO, CORR = 1.2, 0.2, 100, 1.0, 0.5


def compute(preset: str, seed: int) -> dict:
    import fieldres
    from fieldres import simulation

    p = PRESETS[preset]
    hyper = fieldres.Hyper(SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2)
    X, K0 = common.pair_input_kernel(seed, D_IN, CORR, SIGMA_W2, SIGMA_B2)
    act = fieldres.get_activation("erf")
    key = jax.random.PRNGKey(seed)
    L = p["depth"]
    out: dict = {
        "parameters": dict(
            preset=preset,
            seed=seed,
            depth=L,
            width=p["width"],
            n_networks=p["n_networks"],
            n_groups=p["n_groups"],
            rho=RHO,
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
        )
    }
    deviations = {}
    for name, residual in (("resnet", True), ("ffnet", False)):
        if residual:
            kern = fieldres.resnet_kernels(K0, RHO, L, hyper)
        else:
            kern = fieldres.ffnet_kernels(K0, L, hyper)
        C_theory = np.asarray(jax.vmap(act.kernel)(kern.trajectory))
        resp = fieldres.response(K0, RHO, L, hyper, residual=residual, trajectory=True)
        chi_theory = np.asarray(resp.trajectory)
        sim = common.simulate_layers(
            jax.random.fold_in(key, int(residual)),
            K0,
            rho=RHO,
            depth=L,
            width=p["width"],
            n_networks=p["n_networks"],
            hyper=hyper,
            residual=residual,
            n_groups=p["n_groups"],
        )
        T = jnp.zeros((2, 2)).at[0, 0].set(1.0)
        rr = simulation.simulate_response(
            jax.random.fold_in(key, 10 + int(residual)),
            K0,
            T,
            rho=RHO,
            depth=L,
            width=p["width"],
            n_networks=p["n_networks"],
            sigma_w2=SIGMA_W2,
            sigma_b2=SIGMA_B2,
            sigma_w2_out=SIGMA_W2,
            sigma_b2_out=SIGMA_B2,
            residual=residual,
            # small batches: larger vmapped JVP batches (>= 200 networks at N = 500, L = 30)
            # were seen to hang on a 2-core CPU
            batch_size=50,
        )
        chi_out_theory = float(resp.chi_out[0, 0])
        chi_out_mc, chi_out_se = float(rr.mean[0, 0]), float(rr.stderr[0, 0])
        out[name] = dict(
            C_diag_theory=C_theory[:, 0, 0],
            C_off_theory=C_theory[:, 0, 1],
            C_diag_mc=sim["C_mean"][:, 0, 0],
            C_diag_se=sim["C_se"][:, 0, 0],
            C_off_mc=sim["C_mean"][:, 0, 1],
            C_off_se=sim["C_se"][:, 0, 1],
            K_diag_theory=np.asarray(kern.trajectory)[:, 0, 0],
            K_diag_mc=sim["K_mean"][:, 0, 0],
            K_diag_se=sim["K_se"][:, 0, 0],
            chi_diag_theory=chi_theory[:, 0, 0],
            chi_diag_mc=sim["chi_diag"],
            chi_diag_se=sim["chi_diag_se"],
            chi_off_theory=chi_theory[:, 0, 1],
            chi_off_mc=sim["chi_off"],
            chi_off_se=sim["chi_off_se"],
            chi_out_theory=chi_out_theory,
            chi_out_mc=chi_out_mc,
            chi_out_se=chi_out_se,
        )
        d = out[name]
        deviations[name] = dict(
            C_diag=common.max_z(d["C_diag_theory"], d["C_diag_mc"], d["C_diag_se"]),
            C_off=common.max_z(d["C_off_theory"], d["C_off_mc"], d["C_off_se"]),
            K_diag=common.max_z(d["K_diag_theory"], d["K_diag_mc"], d["K_diag_se"]),
            chi_diag=common.max_z(d["chi_diag_theory"], d["chi_diag_mc"], d["chi_diag_se"]),
            chi_off=common.max_z(d["chi_off_theory"], d["chi_off_mc"], d["chi_off_se"]),
            chi_out=abs(chi_out_theory - chi_out_mc) / chi_out_se,
        )
        # relative deviations (the FFNet response is ~1e-15 at depth 30 with a tiny SE, so
        # an O(1/N) relative finite-width shift shows as several SE)
        deviations[name]["chi_out_relative"] = abs(chi_out_mc / chi_out_theory - 1.0)
        deviations[name]["chi_diag_relative_last"] = abs(
            d["chi_diag_mc"][-1] / d["chi_diag_theory"][-1] - 1.0
        )
    out["max_abs_deviation_in_se"] = deviations
    return out


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = {"resnet": "tab:blue", "ffnet": "tab:green"}
    labels = {"resnet": r"ResNet ($\rho=1$)", "ffnet": "FFNet"}
    for name in ("resnet", "ffnet"):
        d, c = res[name], colors[name]
        layers = np.arange(len(d["C_diag_theory"]))
        ax_a.plot(
            layers, d["C_diag_theory"], "-", color=c, label=labels[name] + r": $C_{11}$ theory"
        )
        ax_a.plot(
            layers, d["C_off_theory"], "--", color=c, label=labels[name] + r": $C_{12}$ theory"
        )
        ax_a.errorbar(
            layers,
            d["C_diag_mc"],
            yerr=d["C_diag_se"],
            fmt="o",
            ms=3,
            color=c,
            capsize=2,
            label="simulation (mean $\\pm$ SE)" if name == "resnet" else None,
        )
        ax_a.errorbar(
            layers,
            d["C_off_mc"],
            yerr=d["C_off_se"],
            fmt="s",
            ms=3,
            color=c,
            mfc="white",
            capsize=2,
        )
        ax_b.semilogy(layers, d["chi_diag_theory"], "-", color=c, label=labels[name] + " theory")
        ax_b.errorbar(
            layers,
            d["chi_diag_mc"],
            yerr=d["chi_diag_se"],
            fmt="o",
            ms=3,
            color=c,
            capsize=2,
            label=labels[name] + " simulation",
        )
    p = res["parameters"]
    ax_a.set_xlabel("layer $l$")
    ax_a.set_ylabel(r"post-activation kernel $C^{(l)} = C_\phi(K^{(l)})$")
    ax_a.set_title(f"(a) kernels, N = {p['width']}, {p['n_networks']} networks", fontsize=10)
    ax_a.legend(fontsize=7, frameon=False)
    ax_b.set_xlabel("layer $l$")
    ax_b.set_ylabel(r"response $\chi^{(l)}_{11} = \partial K^{(l)}_{11}/\partial K^{(0)}_{11}$")
    ax_b.set_title("(b) response (diagonal)", fontsize=10)
    ax_b.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "fig2_resnet_vs_ffnet", lambda a: compute(a.preset, a.seed), plot
    )
    print(f"Fig. 2 ({args.preset}) written to {png} and {js} in {res['runtime_s']:.1f} s")
    for name, dev in res["max_abs_deviation_in_se"].items():
        print(
            f"  {name}: max |theory - MC| / SE = "
            + ", ".join(f"{k} {v:.2f}" for k, v in dev.items())
        )
    return res


if __name__ == "__main__":
    main()
