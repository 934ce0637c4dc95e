"""The 1/N theory vs Monte Carlo of finite networks: layers, widths and entries.

Fischer, Dahmen, Helias, arXiv:2305.07715 (field theory of finite-width ResNets); THEORY
§4-6. Four panels:

(a) mean shift over layers: :math:`N(\\mathbb E\\hat C^{(l)} - C^{(l)})` of the two-input case
    (diagonal and off-diagonal entries), NLO theory vs the simulated mean +- SE, ResNet and
    feed-forward net (the analogue of the paper's Fig. 2 at next-to-leading order);
(b) the variance over layers, :math:`N\\,\\mathrm{Var}\\,\\hat C^{(l)}_{12}`, theory vs MC;
(c) the error of the mean at the last layer vs width for THEORY §5's case: the leading-order
    error falls as :math:`1/N`, the NLO error as :math:`1/N^2` (fitted exponents);
(d) every entry of :math:`N\\,\\mathrm{Cov}` of the two-input ResNet at the largest width,
    theory vs MC.

Usage: ``python experiments/fig_nlo_validation.py --preset smoke|default|paper --out results/``
"""

from __future__ import annotations

import math

import _common as common
import jax
import numpy as np

PRESETS = {
    "smoke": dict(layer_width=50, layer_networks=3000, depth2=3,
                  fit_lo_widths=[25, 100], fit_nlo_widths=[8],
                  fit_networks=30_000, cov_width=100, cov_networks=6000,
                  ff_nlo_widths=[16], ff_networks=20_000,
                  rn_nlo_widths=[8, 16], rn_networks=[20_000, 20_000]),
    "default": dict(layer_width=50, layer_networks=30_000, depth2=5,
                    fit_lo_widths=[25, 50, 100], fit_nlo_widths=[8, 16, 32],
                    fit_networks=200_000, cov_width=100, cov_networks=20_000,
                    ff_nlo_widths=[16, 32], ff_networks=200_000,
                    rn_nlo_widths=[8, 16, 32], rn_networks=[200_000, 200_000, 200_000]),
    "paper": dict(layer_width=50, layer_networks=200_000, depth2=8,
                  fit_lo_widths=[50, 100, 200, 400],
                  fit_nlo_widths=[8, 12, 16, 24, 32, 48, 64],
                  fit_networks=1_000_000, cov_width=200, cov_networks=100_000,
                  ff_nlo_widths=[16, 24, 32, 48, 64], ff_networks=1_000_000,
                  rn_nlo_widths=[8, 12, 16, 24, 32, 48],
                  rn_networks=[1_000_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000,
                               16_000_000]),
}
K2 = [[0.5, 0.3], [0.3, 0.8]]
RHO2, SIGMA_W2, SIGMA_B2 = 0.5, 1.25, 0.05  # the two-input ResNet case
FF_SIGMA_W2, FF_SIGMA_B2 = 1.5, 0.1  # the feed-forward case (same K0)
REF = dict(k0=0.5, rho=0.3, depth=10)  # THEORY §5
RN = dict(K0=[[1.0, -0.9], [-0.9, 1.2]], rho=0.7, depth=8)  # ResNet with a visible 1/N^2


def _fit(widths, err, se):
    """Weighted least-squares fit of log|err| = c - p log N over the resolved points (|err| >
    2 SE); returns (p, its standard error, mask)."""
    widths, err, se = (np.asarray(v, float) for v in (widths, err, se))
    ok = np.abs(err) > 2 * se
    if ok.sum() < 2:
        return float("nan"), float("nan"), ok
    x, y = np.log(widths[ok]), np.log(np.abs(err[ok]))
    w = (np.abs(err[ok]) / se[ok]) ** 2  # 1 / Var(log|err|)
    A = np.stack([np.ones_like(x), -x], 1)
    cov = np.linalg.inv(A.T @ (w[:, None] * A))
    coef = cov @ A.T @ (w * y)
    return float(coef[1]), float(np.sqrt(cov[1, 1])), ok


def nlo_width_scaling(key, K0, rho, depth, hyper, residual, widths, networks,
                      entry=(0, 1)) -> dict:
    """Error of E C^(L)_entry vs width for one case: LO error ~ 1/N, NLO error ~ 1/N^2.

    ``networks``: networks per width (the NLO error falls like 1/N^2 while the standard
    error falls like 1/sqrt(N n), so wider nets need many more of them to be resolved)."""
    from fieldres.finite_width import finite_width
    from fieldres.simulation import simulate_kernels

    a, b = entry
    th = finite_width(np.asarray(K0), rho, depth, hyper, residual=residual)
    lo, shift = float(th.C[-1, a, b]), float(th.C_shift[-1, a, b])
    rows = []
    for w, n in zip(widths, networks):
        s = simulate_kernels(jax.random.fold_in(key, w), np.asarray(K0), rho=rho,
                             depth=depth, width=w, n_networks=int(n),
                             sigma_w2=float(hyper.sigma_w2), sigma_b2=float(hyper.sigma_b2),
                             residual=residual, keep_last=False, batch_size=20_000)
        m, se = float(s.C_mean[-1, a, b]), float(s.C_stderr[-1, a, b])
        rows.append(dict(width=w, networks=int(n), mean=m, se=se, err_lo=m - lo,
                         err_nlo=m - lo - shift / w, z_nlo=(m - lo - shift / w) / se))
    p_nlo, p_nlo_se, ok = _fit([r["width"] for r in rows], [r["err_nlo"] for r in rows],
                               [r["se"] for r in rows])
    p_lo, p_lo_se, ok_lo = _fit([r["width"] for r in rows], [r["err_lo"] for r in rows],
                                [r["se"] for r in rows])
    return dict(rows=rows, C_lo=lo, C_shift=shift, depth=depth, entry=list(entry),
                K0=np.asarray(K0).tolist(), rho=rho, residual=residual,
                exponent_nlo=p_nlo, exponent_nlo_se=p_nlo_se, exponent_lo=p_lo,
                exponent_lo_se=p_lo_se,
                widths_used_nlo=[r["width"] for r, k in zip(rows, ok) if k],
                widths_used_lo=[r["width"] for r, k in zip(rows, ok_lo) if k])


def ffnet_width_scaling(key, p) -> dict:
    """Error of E C^(L)_12 of the two-input feed-forward net vs width: 1/N^2 after NLO."""
    import fieldres

    hyp = fieldres.Hyper(FF_SIGMA_W2, FF_SIGMA_B2, FF_SIGMA_W2, FF_SIGMA_B2)
    widths = p["ff_nlo_widths"]
    return nlo_width_scaling(jax.random.fold_in(key, 300), K2, RHO2, p["depth2"], hyp, False,
                             widths, [p["ff_networks"]] * len(widths))


def resnet_width_scaling(key, p) -> dict:
    """The same for a two-input ResNet whose 1/N^2 term is large enough to resolve
    (anti-correlated inputs, rho = 0.7, L = 8, off-diagonal entry: N^2 x NLO error ~ 0.3)."""
    import fieldres

    hyp = fieldres.Hyper(SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2)
    return nlo_width_scaling(jax.random.fold_in(key, 400), RN["K0"], RN["rho"], RN["depth"],
                             hyp, True, p["rn_nlo_widths"], p["rn_networks"])


def compute(preset: str, seed: int) -> dict:
    import fieldres
    from fieldres.finite_width import finite_width, finite_width_single
    from fieldres.simulation import simulate_kernels, simulate_nlo

    p = PRESETS[preset]
    key = jax.random.PRNGKey(seed)
    K2a = np.asarray(K2)
    hyper = fieldres.Hyper(SIGMA_W2, SIGMA_B2, SIGMA_W2, SIGMA_B2)
    hyper_ff = fieldres.Hyper(FF_SIGMA_W2, FF_SIGMA_B2, FF_SIGMA_W2, FF_SIGMA_B2)
    L2 = p["depth2"]
    out: dict = {"parameters": dict(preset=preset, seed=seed, K0=K2, rho=RHO2,
                                    sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2,
                                    ff_sigma_w2=FF_SIGMA_W2, ff_sigma_b2=FF_SIGMA_B2,
                                    depth=L2, reference_case=REF, **p)}

    # (a), (b): over layers, ResNet vs FFNet, width layer_width
    N = p["layer_width"]
    layers = {}
    for name, residual, hyp in (("resnet", True, hyper), ("ffnet", False, hyper_ff)):
        th = finite_width(K2a, RHO2, L2, hyp, residual=residual)
        s = simulate_kernels(jax.random.fold_in(key, int(residual)), K2a, rho=RHO2, depth=L2,
                             width=N, n_networks=p["layer_networks"],
                             sigma_w2=float(hyp.sigma_w2), sigma_b2=float(hyp.sigma_b2),
                             residual=residual, keep_last=False, batch_size=4000)
        d = {}
        for (a, b), tag in (((0, 0), "11"), ((0, 1), "12")):
            lo = np.asarray(th.C)[:, a, b]
            d[f"shift_theory_{tag}"] = np.asarray(th.C_shift)[:, a, b]
            d[f"shift_mc_{tag}"] = N * (np.asarray(s.C_mean)[:, a, b] - lo)
            d[f"shift_mc_se_{tag}"] = N * np.asarray(s.C_stderr)[:, a, b]
            n = p["layer_networks"]
            var = np.asarray(s.C_var)[:, a, b]
            d[f"nvar_theory_{tag}"] = np.asarray(th.C_cov)[:, a, b, a, b]
            d[f"nvar_mc_{tag}"] = N * var
            # SE of a variance, Gaussian approximation sqrt(2 / (n - 1)) (plotting only)
            d[f"nvar_mc_se_{tag}"] = N * var * np.sqrt(2.0 / (n - 1))
            z = (d[f"shift_mc_{tag}"] - d[f"shift_theory_{tag}"]) / np.where(
                d[f"shift_mc_se_{tag}"] > 0, d[f"shift_mc_se_{tag}"], np.inf)
            d[f"shift_max_abs_z_{tag}"] = float(np.max(np.abs(z)))
        layers[name] = d
    out["layers"] = layers

    # (c): the error of E C^(L) vs width, THEORY §5 case
    ref = finite_width_single(REF["k0"], REF["rho"], REF["depth"], fieldres.Hyper(1.25, 0.05))
    lo, shift = float(ref.C[-1]), float(ref.C_shift[-1])
    widths = sorted(set(p["fit_lo_widths"]) | set(p["fit_nlo_widths"]))
    rows = []
    for i, w in enumerate(widths):
        s = simulate_kernels(jax.random.fold_in(key, 100 + i), np.array([[REF["k0"]]]),
                             rho=REF["rho"], depth=REF["depth"], width=w,
                             n_networks=p["fit_networks"], sigma_w2=1.25, sigma_b2=0.05,
                             keep_last=False, batch_size=20_000)
        m, se = float(s.C_mean[-1, 0, 0]), float(s.C_stderr[-1, 0, 0])
        rows.append(dict(width=w, mean=m, se=se, err_lo=m - lo, err_nlo=m - lo - shift / w,
                         z_nlo=(m - lo - shift / w) / se))
    fit_lo = [r for r in rows if r["width"] in p["fit_lo_widths"]]
    fit_nlo = [r for r in rows if r["width"] in p["fit_nlo_widths"]]
    p_lo, p_lo_se, ok_lo = _fit([r["width"] for r in fit_lo], [r["err_lo"] for r in fit_lo],
                                [r["se"] for r in fit_lo])
    p_nlo, p_nlo_se, ok_nlo = _fit([r["width"] for r in fit_nlo],
                                   [r["err_nlo"] for r in fit_nlo],
                                   [r["se"] for r in fit_nlo])
    out["width_scaling"] = dict(
        rows=rows, C_lo=lo, C_shift=shift, exponent_lo=p_lo, exponent_lo_se=p_lo_se,
        exponent_nlo=p_nlo, exponent_nlo_se=p_nlo_se,
        widths_used_lo=[r["width"] for r, k in zip(fit_lo, ok_lo) if k],
        widths_used_nlo=[r["width"] for r, k in zip(fit_nlo, ok_nlo) if k],
        max_abs_z_nlo_in_issue_widths=float(max(abs(r["z_nlo"]) for r in rows
                                                 if r["width"] >= 50) if any(
            r["width"] >= 50 for r in rows) else float("nan")),
    )

    # (c'): a case with larger 1/N^2 terms, the off-diagonal C_12 of the feed-forward net
    out["width_scaling_ffnet"] = ffnet_width_scaling(key, p)
    # (c''): a ResNet case with a resolvable 1/N^2 term
    out["width_scaling_resnet"] = resnet_width_scaling(key, p)

    # (d): every entry of N Cov at the last layer, ResNet, two inputs
    th = finite_width(K2a, RHO2, L2, hyper)
    Nc = p["cov_width"]
    sim = simulate_nlo(jax.random.fold_in(key, 7), K2a, rho=RHO2, depth=L2, width=Nc,
                       n_networks=p["cov_networks"], hyper=hyper)
    cov = {}
    for name in ("C", "K", "out"):
        tc = np.asarray(th.cov_matrix(name))
        mc = np.asarray(getattr(sim, f"{name}_ncov"))
        se = np.asarray(getattr(sim, f"{name}_ncov_se"))
        scale = np.sqrt(np.outer(np.diag(tc), np.diag(tc)))
        cov[name] = dict(theory=tc, mc=mc, se=se, dev_rel_scale=(mc - tc) / scale,
                         z=(mc - tc) / se)
        sh = np.asarray(th.out_shift if name == "out" else getattr(th, f"{name}_shift")[-1])
        lo_ = np.asarray(th.out if name == "out" else getattr(th, name)[-1])
        cov[name]["mean_z"] = (np.asarray(getattr(sim, f"{name}_mean")) - lo_ - sh / Nc) / \
            np.asarray(getattr(sim, f"{name}_mean_se"))
    out["covariance"] = dict(width=Nc, entries=th.entries, **cov)
    return out


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    colors = {"resnet": "tab:blue", "ffnet": "tab:green"}
    labels = {"resnet": "ResNet", "ffnet": "FFNet"}
    N = res["parameters"]["layer_width"]
    for name, d in res["layers"].items():
        c = colors[name]
        layers = np.arange(len(d["shift_theory_11"]))
        for tag, mk, ls in (("11", "o", "-"), ("12", "s", "--")):
            ax[0].plot(layers, d[f"shift_theory_{tag}"], ls, color=c,
                       label=f"{labels[name]} $C_{{{tag}}}$ theory")
            ax[0].errorbar(layers, d[f"shift_mc_{tag}"], yerr=d[f"shift_mc_se_{tag}"], fmt=mk,
                           ms=3, color=c, mfc="white" if tag == "12" else c, capsize=2)
            ax[1].plot(layers, d[f"nvar_theory_{tag}"], ls, color=c,
                       label=f"{labels[name]} $C_{{{tag}}}$")
            ax[1].errorbar(layers, d[f"nvar_mc_{tag}"], yerr=d[f"nvar_mc_se_{tag}"], fmt=mk,
                           ms=3, color=c, mfc="white" if tag == "12" else c, capsize=2)
    ax[0].set_xlabel("layer $l$")
    ax[0].set_ylabel(r"$N(\mathbb{E}\hat C^{(l)} - C^{(l)})$")
    ax[0].set_title(f"(a) mean shift, N = {N} (points: MC $\\pm$ SE)", fontsize=9)
    ax[0].legend(fontsize=6, frameon=False)
    ax[1].set_xlabel("layer $l$")
    ax[1].set_ylabel(r"$N\,\mathrm{Var}\,\hat C^{(l)}$")
    ax[1].set_title("(b) variance over layers", fontsize=9)
    ax[1].legend(fontsize=6, frameon=False)

    ws = res["width_scaling"]
    rows = ws["rows"]
    w = np.array([r["width"] for r in rows], float)
    e_lo = np.abs([r["err_lo"] for r in rows])
    e_nlo = np.abs([r["err_nlo"] for r in rows])
    se = np.array([r["se"] for r in rows])
    ax[2].errorbar(w, e_lo, yerr=se, fmt="o", color="tab:red",
                   label=f"LO error, fit $N^{{-{ws['exponent_lo']:.2f}}}$")
    resolved = math.isfinite(ws["exponent_nlo_se"]) and ws["exponent_nlo_se"] < 0.5
    ax[2].errorbar(w, e_nlo, yerr=se, fmt="s", color="tab:purple",
                   label=f"NLO error, fit $N^{{-{ws['exponent_nlo']:.2f}}}$" if resolved
                   else "NLO error (mostly below the MC resolution)")
    ax[2].plot(w, se, ":", color="gray", label="MC standard error")
    wf = res.get("width_scaling_ffnet")
    if wf:
        w2 = np.array([r["width"] for r in wf["rows"]], float)
        ax[2].errorbar(w2, np.abs([r["err_nlo"] for r in wf["rows"]]),
                       yerr=[r["se"] for r in wf["rows"]], fmt="D", color="tab:green",
                       label=f"FFNet $C_{{12}}$ NLO error, fit $N^{{-{wf['exponent_nlo']:.2f}}}$")
    wr = res.get("width_scaling_resnet")
    if wr:
        w3 = np.array([r["width"] for r in wr["rows"]], float)
        ax[2].errorbar(w3, np.abs([r["err_nlo"] for r in wr["rows"]]),
                       yerr=[r["se"] for r in wr["rows"]], fmt="v", color="tab:blue",
                       label=f"ResNet $C_{{12}}$ (anti-corr.) NLO error, fit "
                             f"$N^{{-{wr['exponent_nlo']:.2f}}}$")
    ax[2].set_xscale("log")
    ax[2].set_yscale("log")
    ax[2].set_xlabel("width $N$")
    ax[2].set_ylabel(r"$|\mathbb{E}\hat C^{(L)} - \mathrm{theory}|$")
    ax[2].set_title("(c) error of the mean at the last layer", fontsize=9)
    ax[2].legend(fontsize=6, frameon=False)

    cv = res["covariance"]
    for name, mk in (("C", "o"), ("out", "^")):
        t = np.asarray(cv[name]["theory"]).ravel()
        m = np.asarray(cv[name]["mc"]).ravel()
        e = np.asarray(cv[name]["se"]).ravel()
        ax[3].errorbar(t, m, yerr=e, fmt=mk, ms=4, label=name)
    lim = [0, max(np.max(np.asarray(cv["out"]["theory"])), 1e-3) * 1.1]
    ax[3].plot(lim, lim, "k-", lw=0.8)
    ax[3].set_xlabel(r"theory $N\,\mathrm{Cov}$")
    ax[3].set_ylabel(r"Monte Carlo $N\,\mathrm{Cov}$")
    ax[3].set_title(f"(d) all entries, P = 2, N = {cv['width']}", fontsize=9)
    ax[3].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "fig_nlo_validation", lambda a: compute(a.preset, a.seed), plot
    )
    ws = res["width_scaling"]
    print(f"1/N validation ({args.preset}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    print(f"  LO error exponent {ws['exponent_lo']:.3f} +- {ws['exponent_lo_se']:.3f} "
          f"(widths {ws['widths_used_lo']}), NLO error exponent {ws['exponent_nlo']:.3f} +- "
          f"{ws['exponent_nlo_se']:.3f} (widths {ws['widths_used_nlo']})")
    wf = res["width_scaling_ffnet"]
    print(f"  FFNet C_12: NLO error exponent {wf['exponent_nlo']:.3f} +- "
          f"{wf['exponent_nlo_se']:.3f} (widths {wf['widths_used_nlo']})")
    wr = res["width_scaling_resnet"]
    print(f"  ResNet C_12 (anti-correlated inputs): NLO error exponent "
          f"{wr['exponent_nlo']:.3f} +- {wr['exponent_nlo_se']:.3f} (widths "
          f"{wr['widths_used_nlo']}), LO error exponent {wr['exponent_lo']:.3f} +- "
          f"{wr['exponent_lo_se']:.3f}")
    for name, d in res["layers"].items():
        print(f"  {name}: max |theory - MC| / SE of the mean shift over layers: "
              f"C11 {d['shift_max_abs_z_11']:.2f}, C12 {d['shift_max_abs_z_12']:.2f}")
    return res


if __name__ == "__main__":
    main()
