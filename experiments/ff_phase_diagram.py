"""Feed-forward mean field: the order-to-chaos phase diagram with xi_c as a heat map.

Poole et al. (arXiv:1606.05340) Fig. 1 / Schoenholz et al. (arXiv:1611.01232) Fig. 1:
(a) the depth scale of correlations xi_c over (sigma_w^2, sigma_b^2) for tanh with the
critical line chi_1 = 1 (dashed); (b) the critical line sigma_w,crit^2(sigma_b^2) of tanh,
erf and ReLU; (c) validation: the correlation of two inputs over the layers of finite tanh
feed-forward nets (points: mean over networks, N neurons) against the mean-field correlation
map (lines) in the ordered and the chaotic phase, with the predicted decay exp(-l/xi_c).

Usage: ``python experiments/ff_phase_diagram.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import _common as common
import jax
import numpy as np

PRESETS = {
    "smoke": dict(n_w=10, n_b=6, n_critical=8, width=100, n_networks=60, depth=8,
                  activations=("tanh",)),
    "default": dict(n_w=30, n_b=20, n_critical=20, width=300, n_networks=150, depth=16,
                    activations=("tanh", "erf", "relu")),
    "paper": dict(n_w=60, n_b=40, n_critical=40, width=1000, n_networks=300, depth=30,
                  activations=("tanh", "erf", "relu")),
}
W_RANGE, B_RANGE = (0.5, 4.0), (0.0, 0.3)
SIGMA_B2 = 0.05  # the reference bias of the validation panel and of the printed numbers
POINTS = (1.0, 2.5)  # sigma_w^2: ordered, chaotic (tanh, sigma_b^2 = 0.05)


def compute(preset: str, seed: int) -> dict:
    import fieldres
    from fieldres import meanfield as mf
    from fieldres import simulation

    p = PRESETS[preset]
    w = np.linspace(*W_RANGE, p["n_w"])
    b = np.linspace(*B_RANGE, p["n_b"])
    grid = mf.mean_field(*np.meshgrid(w, b), "tanh")
    # the line and, as its last entry, the reference bias (one compilation per activation)
    b_line = np.append(np.linspace(*B_RANGE, p["n_critical"]), SIGMA_B2)
    lines = {act: mf.critical_sigma_w2(b_line, act) for act in p["activations"]}
    res: dict = {
        "parameters": dict(preset=preset, seed=seed, sigma_w2_range=W_RANGE,
                           sigma_b2_range=B_RANGE, activation="tanh", **p),
        "sigma_w2": w,
        "sigma_b2": b,
        "xi_c": np.asarray(grid.xi_c),
        "chi_1": np.asarray(grid.chi_1),
        "q_star": np.asarray(grid.q_star),
        "critical_lines": {a: dict(sigma_b2=b_line[:-1], sigma_w2=np.asarray(c.sigma_w2)[:-1],
                                   status=np.asarray(c.status)[:-1])
                           for a, c in lines.items()},
        "sigma_w2_critical_at_0.05": {a: float(c.sigma_w2[-1]) for a, c in lines.items()},
        "validation": [],
    }
    for i, sw2 in enumerate(POINTS):
        r = mf.mean_field(sw2, SIGMA_B2, "tanh")
        q, c0 = float(r.q_star), 0.6
        K0 = q * np.array([[1.0, c0], [c0, 1.0]])
        L = p["depth"]
        th = np.asarray(fieldres.ffnet_kernels(K0, L, fieldres.Hyper(sw2, SIGMA_B2), "tanh")
                        .trajectory)
        sim = simulation.simulate_kernels(jax.random.fold_in(jax.random.PRNGKey(seed), i), K0,
                                          rho=1.0, depth=L, width=p["width"],
                                          n_networks=p["n_networks"], activation="tanh",
                                          sigma_w2=sw2, sigma_b2=SIGMA_B2, residual=False,
                                          keep_last=False)
        Km, Ks = np.asarray(sim.K_mean), np.asarray(sim.K_stderr)
        c_th = th[:, 0, 1] / np.sqrt(th[:, 0, 0] * th[:, 1, 1])
        c_mc = Km[:, 0, 1] / np.sqrt(Km[:, 0, 0] * Km[:, 1, 1])
        # standard error of the correlation of the means (delta method, off-diagonal dominant)
        c_se = Ks[:, 0, 1] / np.sqrt(Km[:, 0, 0] * Km[:, 1, 1])
        res["validation"].append(dict(
            sigma_w2=sw2, sigma_b2=SIGMA_B2, q_star=q, c_star=float(r.c_star),
            chi_1=float(r.chi_1), xi_c=float(r.xi_c), c_theory=c_th, c_mc=c_mc, c_se=c_se,
            max_abs_deviation_in_se=common.max_z(th, Km, Ks)))
    return res


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    ax = axes[0]
    w, b = res["sigma_w2"], res["sigma_b2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.clip(np.log10(np.asarray(res["xi_c"], float)), 0, 3)
    mesh = ax.pcolormesh(w, b, np.ma.masked_invalid(z), shading="auto", cmap="magma", vmin=0,
                         vmax=3)
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10}\xi_c$")
    line = res["critical_lines"]["tanh"]
    ok = line["status"] == 0
    ax.plot(line["sigma_w2"][ok], line["sigma_b2"][ok], "w--", lw=2)
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title(r"(a) tanh: depth scale $\xi_c$, $\chi_1 = 1$ dashed", fontsize=9)
    ax = axes[1]
    for act, d in res["critical_lines"].items():
        ok = d["status"] == 0
        ax.plot(d["sigma_w2"][ok], d["sigma_b2"][ok], "-", label=act)
    ax.set_xlabel(r"$\sigma^2_{w,\mathrm{crit}}$")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.set_title("(b) order-to-chaos lines", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    ax = axes[2]
    for d, col in zip(res["validation"], ("tab:blue", "tab:red")):
        layers = np.arange(len(d["c_theory"]))
        ax.plot(layers, d["c_theory"], "-", color=col,
                label=rf"$\sigma_w^2 = {d['sigma_w2']:g}$, $\xi_c = {d['xi_c']:.3g}$")
        ax.errorbar(layers, d["c_mc"], yerr=d["c_se"], fmt="o", ms=3, color=col, capsize=2)
        ax.axhline(d["c_star"], color=col, ls=":", lw=1)
    p = res["parameters"]
    ax.set_xlabel("layer $l$")
    ax.set_ylabel("correlation $c^{(l)}$")
    ax.set_title(f"(c) tanh FFNets, N = {p['width']}, {p['n_networks']} nets; "
                 r"$\sigma_b^2 = 0.05$", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "ff_phase_diagram", lambda a: compute(a.preset, a.seed), plot
    )
    crit = res["sigma_w2_critical_at_0.05"]
    print(f"FF phase diagram ({args.preset}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    print("  sigma_w,crit^2(sigma_b^2 = 0.05): "
          + ", ".join(f"{a} {v:.6f}" for a, v in crit.items()))
    for d in res["validation"]:
        print(f"  tanh sigma_w^2 = {d['sigma_w2']:g}: q* = {d['q_star']:.4f}, "
              f"c* = {d['c_star']:.4f}, xi_c = {d['xi_c']:.3f}; finite nets vs theory: "
              f"max |dev|/SE = {d['max_abs_deviation_in_se']:.2f}")
    return res


if __name__ == "__main__":
    main()
