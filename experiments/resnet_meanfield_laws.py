"""Yang & Schoenholz residual mean field: large-depth laws of p, e, s and chi, per activation.

For full residual networks (FRN) with tanh, ReLU and alpha-ReLU (alpha = 0.75): the exact
mean-field recursion over many layers on log-log axes with the analytically derived slopes
(dashed), the exponents fitted to the recursion at large depth next to the derived ones, and
finite networks (points: mean +- standard error over networks of width N) over the first
layers. Plus the depth-dependent initialisation: the sigma_v^2(L) that keeps the gradient
explosion log chi^(0)/chi^(L) of a tanh FRN on one contour, against Xavier (sigma^2 = 1) and
He (sigma^2 = 2), which keep it fixed. One PNG per activation and a summary PNG.

Usage: ``python experiments/resnet_meanfield_laws.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import _common as common
import jax
import numpy as np

PRESETS = {
    "smoke": dict(depth={"tanh": 1000, "relu": 300, "alpha-relu": 1000}, sim_depth=10,
                  width=64, n_networks=40, init_depths=(10, 40, 160)),
    "default": dict(depth={"tanh": 5000, "relu": 450, "alpha-relu": 5000}, sim_depth=30,
                    width=256, n_networks=100, init_depths=(10, 30, 100, 300)),
    "paper": dict(depth={"tanh": 20000, "relu": 600, "alpha-relu": 20000}, sim_depth=100,
                  width=512, n_networks=300, init_depths=(10, 30, 100, 300, 1000)),
}
ALPHA = 0.75


def _cases():
    from fieldres.meanfield import residual as rm

    return {
        "tanh": ("tanh", rm.ResHyper(1.0, 0.0, 1.0, 0.0)),
        "relu": ("relu", rm.ResHyper(1.0, 0.1, 1.0, 0.1)),
        "alpha-relu": (rm.AlphaReLU(ALPHA), rm.ResHyper(1.0, 0.0, 1.0, 0.0)),
    }


def compute(preset: str, seed: int) -> dict:
    from fieldres.meanfield import residual as rm

    p = PRESETS[preset]
    res: dict = {"parameters": dict(preset=preset, seed=seed, kind="full", alpha=ALPHA, **p),
                 "activations": {}}
    key = jax.random.PRNGKey(seed)
    for i, (name, (act, hyp)) in enumerate(_cases().items()):
        laws = rm.asymptotic_laws("full", act, hyp)
        if name == "alpha-relu":  # start in the linear regime around e* (slow approach)
            e0 = laws["e"].limit - 1e-3 * (1 - laws["e"].limit)
        else:
            e0 = 0.5
        K0 = [[1.0, e0], [e0, 1.0]]
        L = p["depth"][name]
        mf = rm.resnet_meanfield("full", L, hyp, act, K0)
        fits = rm.fit_laws(mf, laws)
        sim = rm.simulate_resnet(jax.random.fold_in(key, i), "full", p["sim_depth"], p["width"],
                                 p["n_networks"], hyp, act, K0)
        short = rm.resnet_meanfield("full", p["sim_depth"], hyp, act, K0)
        th = dict(p=short.p, gamma=short.gamma, s=short.s, chi=short.chi_ratio)
        z = {k: common.max_z(np.asarray(v)[1:], sim.mean[k][1:], sim.stderr[k][1:])
             for k, v in th.items()}
        res["activations"][name] = dict(
            hyper=dict(sigma_w2=float(hyp.sigma_w2), sigma_b2=float(hyp.sigma_b2),
                       sigma_v2=float(hyp.sigma_v2), sigma_a2=float(hyp.sigma_a2)),
            K0=K0,
            depth=L,
            laws={k: law._asdict() for k, law in laws.items()},
            fits={k: f._asdict() for k, f in fits.items()},
            trajectory=dict(p=mf.p, e=mf.e, s=mf.s, log_chi_ratio=mf.log_chi_ratio),
            simulation=dict(mean=sim.mean, stderr=sim.stderr, width=sim.width,
                            n_networks=sim.n_networks),
            max_abs_deviation_in_se=z,
        )
        res.setdefault("_objects", {})[name] = (mf, laws, fits, sim)
    res["initialisation"] = rm.xavier_he_comparison(list(p["init_depths"]))
    return res


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    from fieldres.meanfield import residual as rm

    objects = res.pop("_objects")
    stem = path.with_suffix("")
    for name, (mf, laws, fits, sim) in objects.items():
        fig = rm.plot_laws(mf, laws, fits, simulation=sim,
                           title=f"full residual net, {name}: mean field (line), derived "
                                 f"slope (dashed), N = {sim.width} networks (points)")
        common.save_figure(fig, f"{stem}_{name}.png")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    names = list(objects)
    keys = ("p", "e", "s", "chi")
    x = np.arange(len(keys))
    for j, name in enumerate(names):
        d = res["activations"][name]
        derived = [d["laws"][k]["exponent"] for k in keys]
        fitted = [d["fits"].get(k, {}).get("exponent", np.nan) for k in keys]
        axes[0].plot(x + 0.1 * j, np.asarray(fitted) / np.asarray(derived), "o",
                     label=name)
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_xticks(x, ["p", "e / 1-e", "s", "chi"])
    axes[0].set_ylabel("fitted / derived exponent")
    axes[0].set_title("(a) recursion at large depth", fontsize=9)
    axes[0].legend(frameon=False, fontsize=8)
    for j, name in enumerate(names):
        z = res["activations"][name]["max_abs_deviation_in_se"]
        axes[1].plot(np.arange(len(z)) + 0.1 * j, list(z.values()), "s", label=name)
    axes[1].set_xticks(np.arange(4), list(res["activations"][names[0]]
                                          ["max_abs_deviation_in_se"]))
    axes[1].axhline(3.0, color="0.5", ls=":")
    axes[1].set_ylabel("max |theory - MC| / SE over layers")
    axes[1].set_title("(b) finite networks", fontsize=9)
    axes[1].legend(frameon=False, fontsize=8)
    ini = res["initialisation"]
    L = np.asarray(ini["depths"])
    axes[2].loglog(L, ini["xavier"], "o-", label=r"Xavier ($\sigma_w^2 = \sigma_v^2 = 1$)")
    axes[2].loglog(L, ini["he"], "s-", label=r"He ($\sigma_w^2 = \sigma_v^2 = 2$)")
    axes[2].axhline(ini["level"], color="k", ls="--", lw=1, label="depth-dependent init")
    ax2 = axes[2].twinx()
    ax2.loglog(L, ini["optimal_sigma_v2"], "k^:", label=r"its $\sigma_v^2(L)$")
    ax2.set_ylabel(r"$\sigma_v^2(L)$ on the contour")
    axes[2].set_xlabel("depth $L$")
    axes[2].set_ylabel(r"$\log\chi^{(0)}/\chi^{(L)}$ (tanh FRN)")
    axes[2].set_title("(c) gradient explosion: fixed vs depth-dependent init", fontsize=9)
    axes[2].legend(frameon=False, fontsize=7, loc="upper left")
    ax2.legend(frameon=False, fontsize=7, loc="lower right")
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "resnet_meanfield_laws", lambda a: compute(a.preset, a.seed), plot
    )
    print(f"ResNet mean-field laws ({args.preset}) written to {png} (+ one PNG per activation) "
          f"and {js} in {res['runtime_s']:.1f} s")
    for name, d in res["activations"].items():
        parts = []
        for k, law in d["laws"].items():
            f = d["fits"].get(k)
            parts.append(f"{law['quantity']}: {law['exponent']:.4g} vs fit "
                         + ("—" if f is None else f"{f['exponent']:.4g}"))
        z = max(d["max_abs_deviation_in_se"].values())
        print(f"  {name:10s} " + "; ".join(parts) + f"; finite nets max |dev|/SE {z:.2f}")
    ini = res["initialisation"]
    print("  tanh FRN, log chi0/chiL: Xavier " + ", ".join(f"{x:.3g}" for x in ini["xavier"])
          + "; He " + ", ".join(f"{x:.3g}" for x in ini["he"]) + f" at L = {ini['depths']}; "
          "sigma_v^2(L) on the contour " + ", ".join(f"{x:.3g}" for x in ini["optimal_sigma_v2"]))
    return res


if __name__ == "__main__":
    main()
