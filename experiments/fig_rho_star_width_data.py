"""The finite-width shift of the optimal scaling rho* on CIFAR-10 inputs, against the width N.

Fischer, Dahmen, Helias, arXiv:2305.07715 (Fig. 5 at leading order; the 1/N theory of
``docs/finite_width.md``). ``P`` CIFAR-10 training images (dogs and airplanes,
:func:`fieldres.make_dataset` with ``k0_scale = 0.05``), ``K^(0) = X X^T / d_in``, erf,
``sigma_w^2 = 1.25``, ``sigma_b^2 = 0.05``. For every input and every pair the
leading-order optimum ``rho*(inf)`` and its ``1/N`` shift ``c`` (``rho*(N) = rho*(inf)
exp(c / N)``, :func:`fieldres.finite_width.rho_star_width_entries`) are computed for depths
``L`` (10, 50, 200 in the default and paper presets), and averaged as Fig. 5 averages:

(a) the diagonal average ``rhobar*(N) / rhobar*(inf) - 1`` against ``N`` (theory lines, one
    per depth);
(b) the same for the off-diagonal average;
(c) Monte Carlo: the response ``chi^out`` that ``rho*(N)`` maximises, at the leading-order
    optimum of the first pair (depth ``mc_depth``), measured in finite networks
    (:func:`fieldres.simulation.simulate_response`, mean +- SE) against ``chi_0 + chi_1 / N``
    and the infinite-width ``chi_0``; the deviation in units of the SE is stored.

Usage: ``python experiments/fig_rho_star_width_data.py --preset smoke|default|paper
--out results/ [--data-dir DIR]`` (default data location: ``FIELDRES_DATA_DIR`` or
``../shared/data``).
"""

from __future__ import annotations

import time

import _common as common
import numpy as np

PRESETS = {
    "smoke": dict(n_train=3, depths=(2, 4), mc_depth=2, mc_widths=(20,), mc_networks=2000),
    "default": dict(n_train=4, depths=(10, 50, 200), mc_depth=10, mc_widths=(25, 50, 100),
                    mc_networks=100_000),
    "paper": dict(n_train=20, depths=(10, 50, 200), mc_depth=10, mc_widths=(25, 50, 100, 200),
                  mc_networks=400_000),
}
WIDTHS = np.geomspace(10, 10_000, 61)
K0_SCALE = 0.05  # (P = 2 is useless: the per-pixel centring makes the two images opposite)


def _extra(parser):
    parser.add_argument("--data-dir", default=None,
                        help="CIFAR-10 location (default: FIELDRES_DATA_DIR or ../shared/data)")


def _monte_carlo(K0, p, hyper, seed) -> dict:
    """MC response of the first pair at its leading-order optimum vs chi_0 + chi_1 / N."""
    import jax
    import jax.numpy as jnp

    from fieldres.finite_width import rho_star_width_entries
    from fieldres.simulation import simulate_response

    K2 = jnp.asarray(K0[:2, :2])
    R = rho_star_width_entries(K2, p["mc_depth"], hyper, entries=[(0, 1)])
    rho = float(R.rho_star_inf[0])
    c0, c1 = float(R.chi_inf[0]), float(R.chi_1[0])
    T = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    rows = []
    for i, N in enumerate(p["mc_widths"]):
        r = simulate_response(jax.random.PRNGKey(seed + i), K2, T, rho=rho, depth=p["mc_depth"],
                              width=int(N), n_networks=p["mc_networks"], batch_size=1000,
                              sigma_w2=hyper.sigma_w2, sigma_b2=hyper.sigma_b2,
                              sigma_w2_out=hyper.sigma_w2_out, sigma_b2_out=hyper.sigma_b2_out)
        m, se = float(r.mean[0, 1]), float(r.stderr[0, 1])
        nlo = c0 + c1 / N
        rows.append(dict(width=int(N), mc=m, se=se, nlo=nlo, lo=c0, z_nlo=(m - nlo) / se,
                         z_lo=(m - c0) / se))
    return dict(entry=[0, 1], depth=p["mc_depth"], rho=rho, chi_0=c0, chi_1=c1,
                n_networks=p["mc_networks"], points=rows)


def compute(preset: str, seed: int, data_dir) -> dict:
    import fieldres
    from fieldres.finite_width import rho_star_width_entries

    p = PRESETS[preset]
    ds = fieldres.make_dataset("cifar10", classes=("dog", "airplane"), n_train=p["n_train"],
                               n_test=0, seed=seed, data_dir=data_dir, k0_scale=K0_SCALE)
    K0 = np.asarray(fieldres.input_kernel(ds.x_train, 1.0, 0.0))
    P = K0.shape[0]
    hyper = fieldres.Hyper()
    lines = []
    for L in p["depths"]:
        t0 = time.perf_counter()
        R = rho_star_width_entries(K0, int(L), hyper)
        dt = time.perf_counter() - t0
        r0 = np.asarray(R.rho_star_inf)
        rN = R.rho_star(WIDTHS)  # (n_widths, E)
        line = dict(depth=int(L), seconds=dt, entries=[list(e) for e in R.entries],
                    rho_star_inf=r0, shift=np.asarray(R.shift), chi_inf=np.asarray(R.chi_inf),
                    chi_1=np.asarray(R.chi_1))
        for kind, diag in (("diagonal", True), ("offdiagonal", False)):
            sel = np.array([(a == b) == diag for a, b in R.entries], bool)
            ok = sel & (np.asarray(R.status) == 0) & np.isfinite(np.asarray(R.shift))
            if not ok.any():
                line[kind] = None
                continue
            m0, mN = r0[ok].mean(), rN[:, ok].mean(1)
            valid = np.array([R.valid(N)[ok].all() for N in WIDTHS])
            line[kind] = dict(n_entries=int(sel.sum()), n_used=int(ok.sum()),
                              rho_star_inf=float(m0), rho_star_N=mN, relative_shift=mN / m0 - 1,
                              expansion_holds=valid,
                              mean_log_shift_times_N=float(np.mean(np.asarray(R.shift)[ok])),
                              summary_N100=R.summary(100.0)[kind])
        lines.append(line)
    mc = _monte_carlo(K0, p, hyper, seed) if P >= 2 else None
    return dict(
        parameters=dict(preset=preset, seed=seed, dataset="cifar10", classes=ds.classes, P=P,
                        d_in=ds.d_in, k0_scale=K0_SCALE, depths=list(p["depths"]),
                        activation="erf", hyper=dict(sigma_w2=hyper.sigma_w2,
                                                     sigma_b2=hyper.sigma_b2),
                        source_dir=ds.metadata.get("source_dir"),
                        K0_mean_diag=float(np.mean(np.diag(K0)))),
        widths=WIDTHS, lines=lines, monte_carlo=mc,
    )


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    W = np.asarray(res["widths"], float)
    for ax, kind, title in ((axes[0], "diagonal", r"(a) diagonal $\bar\rho^*_{\alpha\alpha}$"),
                            (axes[1], "offdiagonal",
                             r"(b) off-diagonal $\bar\rho^*_{\alpha\beta}$")):
        for ln in res["lines"]:
            d = ln[kind]
            if d is None:
                continue
            y = np.asarray(d["relative_shift"], float)
            ok = np.asarray(d["expansion_holds"], bool)
            ax.loglog(W[ok], np.abs(y[ok]), label=rf"$L = {ln['depth']}$ "
                      rf"($\bar\rho^*(\infty)$ = {d['rho_star_inf']:.3g}, "
                      rf"{'+' if y[-1] >= 0 else '-'})")
        ax.set_xlabel("width $N$")
        ax.set_ylabel(r"$|\bar\rho^*(N)/\bar\rho^*(\infty) - 1|$")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    mc = res["monte_carlo"]
    ax = axes[2]
    if mc is not None:
        pts = mc["points"]
        Ns = np.array([q["width"] for q in pts], float)
        grid = np.geomspace(Ns.min() / 1.5, Ns.max() * 1.5, 50)
        ax.semilogx(grid, mc["chi_0"] + mc["chi_1"] / grid, label=r"NLO $\chi_0 + \chi_1/N$")
        ax.axhline(mc["chi_0"], color="0.5", ls="--", label=r"LO $\chi_0$")
        ax.errorbar(Ns, [q["mc"] for q in pts], yerr=[q["se"] for q in pts], fmt="o", ms=4,
                    color="k", label=f"Monte Carlo ({mc['n_networks']} nets)")
        ax.set_xlabel("width $N$")
        ax.set_ylabel(r"$\chi^{out}_{01}$ at $\rho^*(\infty)$")
        ax.set_title(rf"(c) pair (0, 1), $L = {mc['depth']}$, $\rho$ = {mc['rho']:.4g}",
                     fontsize=10)
        ax.legend(fontsize=7, frameon=False)
    p = res["parameters"]
    fig.suptitle(f"finite-width shift of rho* on CIFAR-10 {'/'.join(p['classes'])}, "
                 f"P = {p['P']}, erf", fontsize=10)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    res, args, png, js = common.run_experiment(
        __doc__, argv, "fig_rho_star_width_data",
        lambda a: compute(a.preset, a.seed, a.data_dir), plot, extra=_extra)
    print(f"rho*(N) on CIFAR-10 ({args.preset}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    for ln in res["lines"]:
        parts = []
        for kind in ("diagonal", "offdiagonal"):
            d = ln[kind]
            if d is None:
                parts.append(f"{kind}: none")
                continue
            r100 = d["summary_N100"]["rho_star_N"]
            r100 = "none" if r100 is None else f"{r100:.5f}"
            parts.append(f"{kind} ({d['n_used']}/{d['n_entries']}): rho*(inf) "
                         f"{d['rho_star_inf']:.5f}, rho*(100) {r100}, mean c "
                         f"{d['mean_log_shift_times_N']:.4g}")
        print(f"  L = {ln['depth']} ({ln['seconds']:.1f} s): " + "; ".join(parts))
    mc = res["monte_carlo"]
    if mc is not None:
        for q in mc["points"]:
            print(f"  MC pair (0, 1), L = {mc['depth']}, N = {q['width']}: {q['mc']:.5f} +- "
                  f"{q['se']:.5f}; NLO {q['nlo']:.5f} ({q['z_nlo']:+.1f} SE), LO {q['lo']:.5f} "
                  f"({q['z_lo']:+.1f} SE)")
    return res


if __name__ == "__main__":
    main()
