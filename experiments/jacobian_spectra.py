"""Jacobian spectra of deep ResNets: one universal law, set by one effective cumulant.

Tarnowski, Warcho\u0142, Jastrz\u0119bski, Tabor, Nowak, arXiv:1809.08848 (Figs. 1, 3), with the
feed-forward contrast of Pennington, Schoenholz, Ganguli, arXiv:1711.04735.

(a) Effective cumulant ``c`` per activation from signal propagation (both residual
    parametrisations), and the equalising ``rho`` that gives every activation ``c = 1``.
(b) Empirical squared singular values of finite ResNets at ``c = 1`` against the universal
    density: KS distance per activation, for Gaussian and orthogonal weights, for the
    paper's post-activation net (``x <- x + phi(rho W x + b)``), fieldres's pre-activation
    net (``h <- h + rho (W phi(h) + b)``) and the same with ``phi'`` decorrelated across
    blocks (diagnostic).
(c) KS distance against width ``N`` (linear and tanh).
(d) Feed-forward contrast at criticality: relative variance of the spectrum, theory vs
    simulation, Gaussian vs orthogonal, tanh vs ReLU, next to the ResNet's ``2c``.

Usage: ``python experiments/jacobian_spectra.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import math
import zlib

import _common as common
import jax
import numpy as np

ACTIVATIONS = ("linear", "relu", "leaky_relu:0.3", "hard_tanh", "tanh", "sigmoid", "selu")
PRESETS = {
    "smoke": dict(depth=10, width=100, acts=("linear", "relu", "tanh", "sigmoid"),
                  ks_acts=("relu",), weights=("gaussian",), ks_widths=(50, 100),
                  ks_width_acts=("linear",), ff_depth=6, ff_width=80),
    "default": dict(depth=20, width=300, acts=ACTIVATIONS, ks_acts=("relu", "tanh"),
                    weights=("gaussian", "orthogonal"), ks_widths=(50, 100, 200),
                    ks_width_acts=("linear",), ff_depth=16, ff_width=200),
    "paper": dict(depth=50, width=1000, acts=ACTIVATIONS, ks_acts=ACTIVATIONS,
                  weights=("gaussian", "orthogonal"), ks_widths=(125, 250, 500, 1000),
                  ks_width_acts=("linear", "tanh"), ff_depth=32, ff_width=500),
}
C_TARGET = 1.0
FF_SIGMA_B2 = 1e-3  # tanh critical point near q* -> 0 (Pennington et al.)


def _tag(*parts: str) -> int:
    """A reproducible key index per case (Python's str hash is salted per process)."""
    return zlib.crc32("/".join(parts).encode()) % 2**31


def compute(preset: str, seed: int) -> dict:
    from fieldres.meanfield import spectra as sp

    p = PRESETS[preset]
    L, N = p["depth"], p["width"]
    key = jax.random.PRNGKey(seed)
    out: dict = {"parameters": dict(preset=preset, seed=seed, depth=L, width=N,
                                    c_target=C_TARGET, sigma_w2=1.0, sigma_b2=0.0, k0=1.0,
                                    ff_depth=p["ff_depth"], ff_width=p["ff_width"],
                                    ff_sigma_b2=FF_SIGMA_B2)}

    # (a) effective cumulants at rho = 1/sqrt(L) and equalising rho for c = 1
    cum = {}
    for name in p["acts"]:
        row = {}
        for arch in ("fieldres", "tarnowski"):
            ec = sp.effective_cumulant(name, L, 1 / math.sqrt(L), architecture=arch)
            rho_eq = sp.equalising_rho(name, L, C_TARGET, architecture=arch)
            row[arch] = dict(c=float(ec.c), rho_equalising=rho_eq,
                             tarnowski_sigma2=float(sp.tarnowski_sigma2(rho_eq, 1.0, L)),
                             final_variance=float(ec.variance[-1]))
        cum[name] = row
    out["cumulants"] = cum
    out["universal"] = dict(c=C_TARGET, edges=sp.spectrum_edges(C_TARGET),
                            condition_number=sp.condition_number(C_TARGET),
                            moments=sp.universal_moments(C_TARGET, 3),
                            condition_numbers={str(c): sp.condition_number(c)
                                               for c in (0.1, 0.5, 1.0, 2.0, 5.0)})

    # (b) KS per activation / weights / architecture at c = 1
    ks_thr = sp.ks_threshold(N)
    ks = {}
    hist = {}
    for name in p["ks_acts"]:
        for weights in p["weights"]:
            for variant in ("tarnowski", "fieldres", "fieldres-decorrelated"):
                arch = "tarnowski" if variant == "tarnowski" else "fieldres"
                rho = cum[name][arch]["rho_equalising"]
                k = jax.random.fold_in(key, _tag(name, weights, variant))
                lam = sp.jacobian_spectrum(k, name, L, N, rho, weights=weights,
                                           architecture=arch,
                                           decorrelate=variant.endswith("decorrelated"))
                ks[f"{name}/{weights}/{variant}"] = dict(
                    ks=sp.ks_distance(lam, C_TARGET), n=int(lam.size),
                    condition_number_empirical=float(math.sqrt(lam[-1] / lam[0])),
                    mean=float(lam.mean()), relvar=float(lam.var() / lam.mean() ** 2))
                if weights == "gaussian":
                    hist[f"{name}/{variant}"] = lam
    out["ks"] = ks
    out["ks_threshold_iid"] = ks_thr

    # (c) KS against N at fixed L (Gaussian weights, paper's architecture)
    ks_n = {}
    for name in p["ks_width_acts"]:
        rho = cum[name]["tarnowski"]["rho_equalising"]
        vals = []
        for n in p["ks_widths"]:
            lam = sp.jacobian_spectrum(jax.random.fold_in(key, 7 * n), name, L, n, rho,
                                       architecture="tarnowski")
            vals.append(sp.ks_distance(lam, C_TARGET))
        ks_n[name] = vals
    out["ks_vs_width"] = dict(widths=list(p["ks_widths"]), ks=ks_n,
                              threshold=[sp.ks_threshold(n) for n in p["ks_widths"]])

    # (d) feed-forward contrast at criticality
    Lf, Nf = p["ff_depth"], p["ff_width"]
    sw_t, q_t = sp.ffnet_critical_point("tanh", FF_SIGMA_B2)
    ff = {}
    ff_hist = {}
    for name, sw, sb, q in (("tanh", sw_t, FF_SIGMA_B2, q_t), ("relu", 2.0, 0.0, 1.0)):
        mom = sp.ffnet_spectrum_moments(name, Lf, sw, sb, q)
        for weights in ("gaussian", "orthogonal"):
            lam = sp.jacobian_spectrum(jax.random.fold_in(key, _tag(name, weights)),
                                       name, Lf, Nf, sigma_w2=sw, sigma_b2=sb, k0=q,
                                       weights=weights, residual=False)
            theory = float(mom.relvar_gaussian if weights == "gaussian"
                           else mom.relvar_orthogonal)
            ff[f"{name}/{weights}"] = dict(relvar_theory=theory,
                                           relvar_empirical=float(lam.var() / lam.mean() ** 2),
                                           mean_theory=float(mom.mean_sv2),
                                           mean_empirical=float(lam.mean()),
                                           sigma_w2=sw, sigma_b2=sb, q_star=q)
            ff_hist[f"{name}/{weights}"] = lam
    ec = sp.effective_cumulant("tanh", Lf, sp.equalising_rho("tanh", Lf, C_TARGET))
    ff["resnet_tanh_c1"] = dict(relvar_theory=2 * C_TARGET,
                                relvar_finite_depth=float(ec.relvar_gaussian))
    out["ffnet"] = ff
    return out, hist, ff_hist


def plot(res: dict, hist: dict, ff_hist: dict, path):
    import matplotlib.pyplot as plt

    from fieldres.meanfield import spectra as sp

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    ax = axes[0, 0]
    lam_t, dens_t, _ = sp.spectral_curve(C_TARGET, 801)
    colors = {"tarnowski": "tab:blue", "fieldres": "tab:red", "fieldres-decorrelated": "tab:green"}
    # a nonlinear activation shows the pre-activation net's deviation (linear has none)
    names = [k.split("/")[0] for k in hist]
    name = "relu" if "relu" in names else names[0]
    edges = np.geomspace(lam_t[0] / 2, lam_t[-1] * 2, 50)
    for variant, col in colors.items():
        lam = hist[f"{name}/{variant}"]
        h, _ = np.histogram(np.log(lam), bins=np.log(edges), density=True)
        ks = res["ks"][f"{name}/gaussian/{variant}"]["ks"]
        ax.stairs(h, edges, color=col, label=f"{variant} (KS {ks:.3f})")
    ax.plot(lam_t, lam_t * dens_t, "k-", lw=1.5, label="universal law")
    ax.set_xscale("log")
    p = res["parameters"]
    ax.set_title(f"(a) {name}, c = {C_TARGET:g}, N = {p['width']}, L = {p['depth']}",
                 fontsize=10)
    ax.set_xlabel(r"squared singular value $\lambda$")
    ax.set_ylabel(r"density of $\log\lambda$")
    ax.legend(fontsize=7, frameon=False)

    ax = axes[0, 1]
    acts = list(res["cumulants"])
    x = np.arange(len(acts))
    for j, arch in enumerate(("fieldres", "tarnowski")):
        ax.bar(x + 0.4 * j - 0.2, [res["cumulants"][a][arch]["c"] for a in acts], 0.4,
               label=f"{arch}, " + r"$\rho = 1/\sqrt{L}$")
    ax.set_xticks(x, acts, rotation=30, fontsize=8)
    ax.set_ylabel("effective cumulant $c$")
    ax.set_yscale("log")
    ax.set_title(r"(b) $c = \rho^2\sigma_w^2 \sum_l E[\phi'(h_l)^2]$", fontsize=10)
    ax.legend(fontsize=7, frameon=False)

    ax = axes[1, 0]
    kv = res["ks_vs_width"]
    for nm, vals in kv["ks"].items():
        ax.loglog(kv["widths"], vals, "o-", label=f"{nm} (post-activation ResNet)")
    ax.loglog(kv["widths"], kv["threshold"], "k--", label="DKW bound, i.i.d. (99.9%)")
    for k, v in res["ks"].items():
        if k.endswith("gaussian/fieldres"):
            ax.axhline(v["ks"], color="tab:red", lw=0.8, ls=":")
    ax.set_xlabel("width $N$")
    ax.set_ylabel("KS distance to the universal law")
    ax.set_title("(c) KS vs width (red dotted: pre-activation ResNet at the largest N)",
                 fontsize=9)
    ax.legend(fontsize=7, frameon=False)

    ax = axes[1, 1]
    edges = None
    for k, lam in ff_hist.items():
        # ReLU zeroes about half the units in every layer (J has rank <= N/2), and deep
        # Gaussian nets have singular values below double precision's reach: values under
        # 1e-12 of the largest are left out of the log-scale histogram and counted
        pos = lam[lam > 1e-12 * lam.max()]
        if edges is None:
            allv = np.concatenate([v[v > 1e-12 * v.max()] for v in ff_hist.values()])
            edges = np.geomspace(allv.min(), allv.max(), 60)
        h, _ = np.histogram(np.log(pos), bins=np.log(edges))
        h = h / (lam.size * np.diff(np.log(edges)))
        r = res["ffnet"][k]
        ax.stairs(h, edges, label=f"FF {k}: relvar {r['relvar_empirical']:.2g} "
                                  f"(theory {r['relvar_theory']:.2g}), "
                                  f"{1 - pos.size / lam.size:.0%} < 1e-12 max")
    ax.set_xscale("log")
    ax.set_xlabel(r"squared singular value $\lambda$")
    ax.set_ylabel(r"density of $\log\lambda$")
    ax.set_title(f"(d) feed-forward at criticality, L = {p['ff_depth']} "
                 f"(ResNet at c = 1: relvar 2)", fontsize=10)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    common.enable_x64()
    args = common.parse_args(__doc__.splitlines()[0], argv)
    timer = common.Timer()
    res, hist, ff_hist = compute(args.preset, args.seed)
    png, js = common.out_paths(args.out, "jacobian_spectra")
    plot(res, hist, ff_hist, png)
    res["runtime_s"] = timer()
    common.save_json(res, js)
    print(f"wrote {png} and {js} in {res['runtime_s']:.1f} s")
    return res


if __name__ == "__main__":
    main()
