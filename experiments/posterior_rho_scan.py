"""Infinite-width Bayesian posterior of the erf ResNet on CIFAR-10 against rho / rho*(L).

Does the network generalise best near the optimal scaling rho* of signal propagation
(Fischer, Dahmen, Helias, arXiv:2305.07715)? At infinite width the Bayesian posterior is GP
regression with the output kernel K^out(rho, L) (:mod:`fieldres.bayes.posterior`). For CIFAR-10
dogs vs airplanes as :func:`fieldres.make_dataset` prepares them (``k0_scale = 0.05``, targets
±1), the Fig. 4/5 variances (:class:`fieldres.Hyper`), noise ``T`` on the diagonal, depths
``L`` and training-set sizes ``n``, on several random data subsets: the test error, the log
evidence and the kernel--target alignment at ``rho = f rho*_diagonal(L)`` for
``f = 1/8 ... 8`` in half-octave steps, where ``rho*`` is the data-driven optimum of the
training inputs averaged as in Fig. 5 (:func:`fieldres.bayes.posterior.rho_star_data`).

Reported (JSON + figure): the curves with error bars over subsets, the collapse across depths
(spread of the depth curves against ``rho / rho*`` vs against raw ``rho``), the location of
the test-error minimum and of the evidence maximum in units of both ``rho*``, and
``err(rho*) - err(4 rho*)`` per case.

Usage: ``python experiments/posterior_rho_scan.py --preset smoke|default|paper --out results/
[--data-dir DIR]``. ``smoke`` runs on the tiny fake CIFAR-10 of the tests when
``--data-dir`` points at it.
"""

from __future__ import annotations

import argparse
import math

import _common as common
import numpy as np

PRESETS = {
    "smoke": dict(n_trains=(20,), n_test=20, depths=(3, 5), seeds=(0, 1), noises=(1e-3,),
                  max_pairs=20, factors=(0.5, 1.0, 4.0)),
    "default": dict(n_trains=(100, 500), n_test=500, depths=(5, 10, 20, 50), seeds=(0, 1, 2),
                    noises=(1e-3,), max_pairs=300, factors=None),
    "paper": dict(n_trains=(100, 500, 2000), n_test=1000, depths=(5, 10, 20, 50),
                  seeds=(0, 1, 2), noises=(1e-3, 1e-1), max_pairs=1000, factors=None),
}
K0_SCALE = 0.05
CLASSES = ("dog", "airplane")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=tuple(PRESETS), default="smoke",
                   help="smoke: seconds (tests); default: ~10 min on 2 cores; paper: hours")
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument("--seed", type=int, default=0, help="offset added to the subset seeds")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10 location (default: FIELDRES_DATA_DIR or ../shared/data)")
    return p.parse_args(None if argv is None else list(argv))


def _mean_se(a) -> tuple[list, list]:
    a = np.asarray(a, float)
    se = a.std(0, ddof=1) / math.sqrt(a.shape[0]) if a.shape[0] > 1 else np.full(a.shape[1:],
                                                                                   np.nan)
    return a.mean(0).tolist(), se.tolist()


def _case(fr, po, ds, depth, noise, factors, max_pairs, seed):
    K0 = np.asarray(fr.input_kernel(ds.x_train))
    rs = po.rho_star_data(K0, depth, max_pairs=max_pairs, seed=seed)
    rows = po.rho_scan(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                       rho_ref=rs.rho_star_diagonal, depth=depth, noise=noise, factors=factors)
    return dict(rho_star_diagonal=rs.rho_star_diagonal,
                rho_star_offdiagonal=rs.rho_star_offdiagonal,
                rho_star_offdiagonal_se=rs.offdiagonal["se"],
                rho_star_n_no_maximum=rs.diagonal["n_no_maximum"] + rs.offdiagonal["n_no_maximum"],
                rows=rows)


def _spread(curves_x, curves_y, grid):
    """Max - min over curves of ``y`` interpolated (in ``log x``) on ``grid`` (inside all)."""
    lo = max(np.min(x) for x in curves_x)
    hi = min(np.max(x) for x in curves_x)
    g = np.asarray([v for v in grid if lo <= v <= hi])
    if g.size == 0:
        return float("nan"), 0
    ys = np.array([np.interp(np.log(g), np.log(x), y) for x, y in
                   zip(curves_x, curves_y, strict=True)])
    return float(np.max(ys.max(0) - ys.min(0))), int(g.size)


def summarise(cases: list[dict], factors, depths) -> dict:
    f = np.asarray(factors)
    out = {}
    keys = sorted({(c["n_train"], c["noise"]) for c in cases})
    i1, i4 = int(np.argmin(np.abs(f - 1))), int(np.argmin(np.abs(f - 4)))
    for n, T in keys:
        per_depth = {}
        for L in depths:
            cs = [c for c in cases if (c["n_train"], c["noise"], c["depth"]) == (n, T, L)]
            err = np.array([[r["test_error"] for r in c["rows"]] for c in cs])
            lev = np.array([[r["log_evidence"] for r in c["rows"]] for c in cs])
            ali = np.array([[r["kernel_alignment"] for r in c["rows"]] for c in cs])
            ratio = np.array([c["rho_star_diagonal"] / c["rho_star_offdiagonal"] for c in cs])
            amin = f[np.argmin(err, 1)]
            amax_ev = f[np.argmax(lev, 1)]
            err_m, err_se = _mean_se(err)
            per_depth[L] = dict(
                test_error=err_m, test_error_se=err_se,
                log_evidence_per_n=_mean_se(lev / n)[0],
                kernel_alignment=_mean_se(ali)[0],
                argmin_rho_factor_diagonal=_mean_se(amin[:, None])[0][0],
                argmin_rho_factor_diagonal_per_subset=amin.tolist(),
                argmin_rho_factor_offdiagonal=float(np.mean(amin * ratio)),
                argmax_evidence_rho_factor_diagonal=float(np.mean(amax_ev)),
                argmax_evidence_rho_factor_offdiagonal=float(np.mean(amax_ev * ratio)),
                argmax_alignment_rho_factor_diagonal=float(np.mean(f[np.argmax(ali, 1)])),
                err_at_argmax_evidence_minus_min=float(np.mean(
                    err[np.arange(len(cs)), np.argmax(lev, 1)] - err.min(1))),
                err_rho_star_minus_err_4rho_star=(err[:, i1] - err[:, i4]).tolist(),
                rho_star_diagonal=float(np.mean([c["rho_star_diagonal"] for c in cs])),
                rho_star_offdiagonal=float(np.mean([c["rho_star_offdiagonal"] for c in cs])),
            )
        # collapse: depth curves against rho / rho* vs against raw rho, up to 4 rho*
        upto = f <= 4 + 1e-12
        mean_curves = [np.asarray(per_depth[L]["test_error"]) for L in depths]
        spread_scaled = float(np.max(np.ptp(np.array(mean_curves)[:, upto], axis=0)))
        raw_x = [f[upto] * per_depth[L]["rho_star_diagonal"] for L in depths]
        ref = per_depth[depths[len(depths) // 2]]["rho_star_diagonal"]
        spread_raw, n_raw = _spread(raw_x, [c[upto] for c in mean_curves], f[upto] * ref)
        out[f"n{n}_T{T:g}"] = dict(n_train=n, noise=T, per_depth=per_depth,
                                   spread_across_depths_scaled=spread_scaled,
                                   spread_across_depths_raw_rho=spread_raw,
                                   raw_rho_points_in_overlap=n_raw)
    return out


def compute(args) -> dict:
    import fieldres as fr
    from fieldres.bayes import posterior as po

    p = PRESETS[args.preset]
    factors = p["factors"] or po.HALF_OCTAVES
    cases = []
    for n in p["n_trains"]:
        for s in p["seeds"]:
            seed = s + args.seed
            ds = fr.make_dataset("cifar10", classes=CLASSES, n_train=n, n_test=p["n_test"],
                                 seed=seed, data_dir=args.data_dir, k0_scale=K0_SCALE)
            for L in p["depths"]:
                for T in p["noises"]:
                    c = _case(fr, po, ds, L, T, factors, p["max_pairs"], seed)
                    c.update(n_train=n, seed=seed, depth=L, noise=T)
                    cases.append(c)
                    print(f"  n={n} seed={seed} L={L} T={T:g}: rho*_diag "
                          f"{c['rho_star_diagonal']:.4f}, err "
                          + " ".join(f"{r['test_error']:.3f}" for r in c["rows"]), flush=True)
    return dict(parameters=dict(preset=args.preset, seed=args.seed, dataset="cifar10",
                                classes=CLASSES, k0_scale=K0_SCALE, hyper="fieldres.Hyper()",
                                activation="erf", factors=list(factors), **{
                                    k: v for k, v in p.items() if k != "factors"}),
                cases=cases, summary=summarise(cases, factors, p["depths"]))


def plot(res: dict, path):
    import matplotlib.pyplot as plt

    summ = res["summary"]
    f = np.asarray(res["parameters"]["factors"])
    fig, axes = plt.subplots(len(summ), 3, figsize=(13, 3.6 * len(summ)), squeeze=False)
    for row, (_, s) in zip(axes, summ.items(), strict=True):
        for L, d in s["per_depth"].items():
            row[0].errorbar(f, d["test_error"], yerr=d["test_error_se"], marker="o", ms=3,
                            capsize=2, label=f"L = {L}")
            row[1].plot(f, d["log_evidence_per_n"], marker="o", ms=3, label=f"L = {L}")
            row[2].plot(f, d["kernel_alignment"], marker="o", ms=3, label=f"L = {L}")
        ratio = np.mean([d["rho_star_offdiagonal"] / d["rho_star_diagonal"]
                         for d in s["per_depth"].values()])
        for ax, ylab in zip(row, ("test error", "log evidence / n", "kernel-target alignment"),
                            strict=True):
            ax.set_xscale("log", base=2)
            ax.axvline(1.0, color="0.5", ls="--", lw=1)
            ax.axvline(ratio, color="0.5", ls=":", lw=1)
            ax.set_xlabel(r"$\rho / \rho^*_\mathrm{diagonal}(L)$  (dotted: $\rho^*_\mathrm{off}$)")
            ax.set_ylabel(ylab)
            ax.set_title(f"n_train = {s['n_train']}, T = {s['noise']:g}", fontsize=9)
        row[0].legend(fontsize=7, frameon=False)
    fig.suptitle("GP-limit posterior of the erf ResNet, CIFAR-10 dog/airplane "
                 f"(mean ± s.e. over {len(res['parameters']['seeds'])} subsets)", fontsize=10)
    fig.tight_layout()
    return common.save_figure(fig, path)


def main(argv=None) -> dict:
    common.enable_x64()
    args = parse_args(argv)
    timer = common.Timer()
    res = compute(args)
    png, js = common.out_paths(args.out, "posterior_rho_scan")
    plot(res, png)
    res["runtime_s"] = timer()
    common.save_json(res, js)
    print(f"posterior rho scan ({args.preset}) written to {png} and {js} in "
          f"{res['runtime_s']:.1f} s")
    for key, s in res["summary"].items():
        print(f"  {key}: spread across depths {s['spread_across_depths_scaled']:.4f} "
              f"(rho/rho*) vs {s['spread_across_depths_raw_rho']:.4f} (raw rho)")
        for L, d in s["per_depth"].items():
            gap = np.mean(d["err_rho_star_minus_err_4rho_star"])
            print(f"    L={L}: min err at {d['argmin_rho_factor_diagonal']:.2f} rho*_diag = "
                  f"{d['argmin_rho_factor_offdiagonal']:.2f} rho*_off; evidence max at "
                  f"{d['argmax_evidence_rho_factor_diagonal']:.2f} rho*_diag; "
                  f"err(rho*) - err(4 rho*) = {gap:.3f}")
    return res


if __name__ == "__main__":
    main()
