"""Commands of signal propagation: rho-star, scaling, response, kernel."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ._common import (
    CLIError,
    _a,
    _add_network_args,
    _data_kernel,
    _finite_or_none,
    _fmt_matrix,
    _params,
    _setup,
    _summarise,
)
from .finite_width import _print_rho_star_width, _rho_star_width


def cmd_rho_star(args) -> int:
    fr, hyper, K0 = _setup(args)
    from fieldres.signal.optimal import rho_star_continuum, rho_star_entries

    if args.dataset:
        K0 = _data_kernel(fr, args)

    P = K0.shape[0]
    entries = [(a, a) for a in range(P)] + [(a, b) for a in range(P) for b in range(a + 1, P)]
    res = rho_star_entries(K0, args.depth, hyper, args.activation, entries=entries,
                           rho_range=(args.rho_min, args.rho_max))
    summary = _summarise(res, entries)
    k0_mean = float(np.mean(np.diag(K0)))
    cont = rho_star_continuum(k0_mean, args.depth, hyper, args.activation)
    L = args.depth
    result = {
        "depth": L,
        "rho_star_diagonal": summary["diagonal"][0],
        "rho_star_offdiagonal": summary["offdiagonal"][0],
        "chi_out_max_diagonal": summary["diagonal"][1],
        "chi_out_max_offdiagonal": summary["offdiagonal"][1],
        "rho_star_diagonal_status": summary["diagonal"][2],
        "rho_star_offdiagonal_status": summary["offdiagonal"][2],
        "rho_star_diagonal_per_input": summary["diagonal"][3],
        "rho_star_offdiagonal_per_pair": summary["offdiagonal"][3],
        "continuum": {
            "K_star": _finite_or_none(cont.K_star),
            "tau_star": _finite_or_none(cont.tau_star),
            "rho_star_diagonal": _finite_or_none(cont.rho_star),
            "k0": k0_mean,
        },
        "parameters": _params(args, K0),
    }
    if args.dataset:
        result["parameters"]["data"] = {"dataset": args.dataset, "classes": args.classes,
                                        "n_inputs": args.n_inputs, "k0_scale": args.k0_scale,
                                        "seed": args.seed}
    failed = result["rho_star_diagonal"] is None and result["rho_star_offdiagonal"] is None
    if getattr(args, "width", None) is not None:  # issue 3: rho*(N) at finite width
        result.update(_rho_star_width(args, hyper, K0))
    if args.json:
        print(json.dumps(result, indent=2))
        return 1 if failed else 0
    print(f"Optimal residual scaling rho* = argmax_rho chi_out of a depth-{L} "
          f"{args.activation} ResNet")
    print(f"  sigma_w^2 = {args.sigma_w2:g}, sigma_b^2 = {args.sigma_b2:g}, "
          f"sigma_w,out^2 = {args.sigma_w2_out:g}, sigma_b,out^2 = {args.sigma_b2_out:g}")
    if args.dataset:
        print(f"  input kernel from {P} {args.dataset} images of {', '.join(args.classes)} "
              f"(mean diagonal {np.mean(np.diag(K0)):.4g}); rho* averaged over the "
              f"{P} inputs and {P * (P - 1) // 2} pairs")
    else:
        print(f"  input kernel K0 = {_fmt_matrix(K0)}")
    labels = (("diagonal", "diagonal     chi_aa"), ("offdiagonal", "off-diagonal chi_ab"))
    for kind, label in labels:
        r, c, status, _ = summary[kind]
        if r is None:
            print(f"  {label}: no optimum: {status}")
        else:
            extra = "" if status == "ok" else f"  [{status}]"
            print(f"  {label}: rho* = {r:.9f}   rho* sqrt(L) = {r * math.sqrt(L):.4f}   "
                  f"max chi_out = {c:.6g}{extra}")
    if result["continuum"]["rho_star_diagonal"] is not None:
        print(f"  continuum limit (diagonal, L -> inf): K* = {float(cont.K_star):.4f}, "
              f"rho* ~ sqrt(tau*/L) = {float(cont.rho_star):.6f}")
    if getattr(args, "width", None) is not None:
        _print_rho_star_width(result)
    return 1 if failed else 0


def cmd_scaling(args) -> int:
    fr, hyper, K0 = _setup(args)
    if K0.shape[0] < 2:
        raise CLIError("scaling needs a kernel of at least two inputs (--k0 'a,b;b,c')")
    from fieldres.signal.optimal import rho_star_continuum, rho_star_scaling

    depths = sorted(set(args.depths))
    fit = rho_star_scaling(K0, depths, hyper, args.activation,
                           rho_range=(args.rho_min, args.rho_max))
    cont = [_finite_or_none(rho_star_continuum(float(K0[0, 0]), L, hyper,
                                               args.activation).rho_star) for L in depths]
    result = {
        "depths": depths,
        "rho_star_diagonal": [_finite_or_none(x) for x in fit.diagonal.rho_star],
        "rho_star_offdiagonal": [_finite_or_none(x) for x in fit.offdiagonal.rho_star],
        "exponent_diagonal": _finite_or_none(fit.exponent_diagonal),
        "exponent_offdiagonal": _finite_or_none(fit.exponent_offdiagonal),
        "exponent_diagonal_se": _finite_or_none(fit.exponent_diagonal_se),
        "exponent_offdiagonal_se": _finite_or_none(fit.exponent_offdiagonal_se),
        "rho_star_continuum_diagonal": cont,
        "status_diagonal": [str(m) for m in fit.diagonal.messages()],
        "status_offdiagonal": [str(m) for m in fit.offdiagonal.messages()],
        "parameters": _params(args, K0),
    }
    if args.out:
        from fieldres.plotting import plot_scaling

        plot_scaling(depths, result["rho_star_diagonal"], result["rho_star_offdiagonal"],
                     fit.exponent_diagonal, fit.exponent_offdiagonal,
                     continuum=[np.nan if c is None else c for c in cont], out=args.out)
        result["figure"] = str(args.out)
    missing = [r is None for k in ("diagonal", "offdiagonal") for r in result[f"rho_star_{k}"]]
    exit_code = 1 if any(missing) else 0
    if args.json:
        print(json.dumps(result, indent=2))
        return exit_code
    print(f"rho*(L) of {_a(args.activation)} ResNet, K0 = {_fmt_matrix(K0)}")
    print(f"  {'L':>6} {'rho* diag':>12} {'rho* sqrtL':>11} {'rho* off':>12} {'rho* sqrtL':>11}")
    def fmt(x, L):
        if x is None:
            return "      —     ", "     —     "
        return f"{x:12.6f}", f"{x * math.sqrt(L):11.4f}"

    for L, d, o in zip(depths, result["rho_star_diagonal"], result["rho_star_offdiagonal"]):
        print(f"  {L:>6} {' '.join(fmt(d, L))} {' '.join(fmt(o, L))}")
    for kind in ("diagonal", "offdiagonal"):
        for L, r, msg in zip(depths, result[f"rho_star_{kind}"], result[f"status_{kind}"]):
            if r is None:
                print(f"  L = {L}, {kind}: no optimum: {msg}")

    def fmt_exp(e, se):
        if e is None:
            return "— (fewer than two optima)"
        return f"{e:.4f}" + ("" if se is None else f" (± {se:.4f})")

    print(f"  fitted exponent: diagonal "
          f"{fmt_exp(result['exponent_diagonal'], result['exponent_diagonal_se'])}, "
          f"off-diagonal "
          f"{fmt_exp(result['exponent_offdiagonal'], result['exponent_offdiagonal_se'])};"
          f"  1/sqrt(L) would be -0.5")
    if args.out:
        print(f"  figure written to {args.out}")
    return exit_code


def cmd_response(args) -> int:
    fr, hyper, K0 = _setup(args)
    if K0.shape[0] < 2:
        raise CLIError("response needs a kernel of at least two inputs (--k0 'a,b;b,c')")
    from fieldres.signal.optimal import rho_star

    rhos = np.geomspace(args.rho_min_plot, args.rho_max_plot, args.n_rho)
    curves = {"diagonal": {}, "off-diagonal": {}}
    stars = {"diagonal": {}, "off-diagonal": {}}
    status = {"diagonal": {}, "off-diagonal": {}}
    for L in sorted(set(args.depths)):
        chi = np.asarray(fr.response_curve(K0, rhos, L, hyper, args.activation))
        curves["diagonal"][L] = chi[:, 0, 0].tolist()
        curves["off-diagonal"][L] = chi[:, 0, 1].tolist()
        for name, entry in (("diagonal", (0, 0)), ("off-diagonal", (0, 1))):
            res = rho_star(K0, L, hyper, args.activation, entry=entry,
                           rho_range=(args.rho_min, args.rho_max))
            stars[name][L] = float(res.rho_star)
            status[name][L] = str(res.messages().ravel()[0])
    result = {
        "rho": rhos.tolist(),
        "depths": sorted(set(args.depths)),
        "chi_out_diagonal": {str(L): v for L, v in curves["diagonal"].items()},
        "chi_out_offdiagonal": {str(L): v for L, v in curves["off-diagonal"].items()},
        "rho_star_diagonal": {str(L): _finite_or_none(v) for L, v in stars["diagonal"].items()},
        "rho_star_offdiagonal": {str(L): _finite_or_none(v)
                                 for L, v in stars["off-diagonal"].items()},
        "status_diagonal": {str(L): v for L, v in status["diagonal"].items()},
        "status_offdiagonal": {str(L): v for L, v in status["off-diagonal"].items()},
        "parameters": _params(args, K0),
    }
    exit_code = 1 if any(not math.isfinite(v) for d in stars.values() for v in d.values()) else 0
    if args.out:
        from fieldres.plotting import plot_response_curves

        plot_response_curves(rhos, curves, stars, out=args.out)
        result["figure"] = str(args.out)
    if args.json:
        print(json.dumps(result, indent=2))
        return exit_code
    print(f"chi_out(rho) of {_a(args.activation)} ResNet on {args.n_rho} rho values in "
          f"[{args.rho_min_plot:g}, {args.rho_max_plot:g}]")

    def star(name, L):
        v = stars[name][L]
        return f"rho* = {v:.6f}" if math.isfinite(v) else f"no optimum ({status[name][L]})"

    for L in result["depths"]:
        print(f"  L = {L:5d}: diagonal: max of curve {max(curves['diagonal'][L]):.5g}, "
              f"{star('diagonal', L)}; off-diagonal: max of curve "
              f"{max(curves['off-diagonal'][L]):.5g}, {star('off-diagonal', L)}")
    if args.out:
        print(f"  figure written to {args.out}")
    return exit_code


def cmd_kernel(args) -> int:
    fr, hyper, K0 = _setup(args)
    residual = not args.feedforward
    if residual:
        k = fr.resnet_kernels(K0, args.rho, args.depth, hyper, args.activation)
    else:
        k = fr.ffnet_kernels(K0, args.depth, hyper, args.activation)
    r = fr.response(K0, args.rho, args.depth, hyper, args.activation, residual=residual,
                    trajectory=True)
    act = fr.get_activation(args.activation)
    import jax

    C = jax.vmap(act.kernel)(k.trajectory)
    data = {
        "K": np.asarray(k.trajectory),
        "C": np.asarray(C),
        "K_out": np.asarray(k.K_out),
        "chi": np.asarray(r.trajectory),
        "chi_out": np.asarray(r.chi_out),
    }
    params = _params(args, K0) | {"depth": args.depth, "rho": args.rho, "residual": residual}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npz":
            np.savez(out, **data, parameters=json.dumps(params))
        else:
            out.write_text(json.dumps({k: v.tolist() for k, v in data.items()} | params))
    if args.json or not args.out:
        print(json.dumps({"layers": list(range(args.depth + 1))}
                         | {k: v.tolist() for k, v in data.items()}
                         | {"parameters": params}))
    else:
        print(f"kernel trajectory (L = {args.depth}, rho = {args.rho}) written to {args.out}")
    return 0


# --- command functions of the finite-width module (issue 3) go here ---


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    s = sub.add_parser("rho-star", help="optimal residual scaling rho* for one depth")
    s.add_argument("--depth", "-L", type=int, default=100, help="number of residual layers")
    _add_network_args(s)
    d = s.add_argument_group("data-driven rho* (paper Fig. 5): K0 from real inputs instead of --k0")
    d.add_argument("--dataset", choices=["cifar10", "mnist"],
                   help="take K0 = X X^T / d_in from this dataset's training images")
    d.add_argument("--classes", nargs="+", default=["dog", "airplane"],
                   help="class names (default: dog airplane)")
    d.add_argument("--n-inputs", type=int, default=20, help="number of images P (balanced)")
    d.add_argument("--k0-scale", type=float, default=0.05,
                   help="rescale inputs so that the mean diagonal of K0 is this value")
    d.add_argument("--data-dir", help="dataset folder (else $FIELDRES_DATA_DIR or ../shared/data)")
    d.add_argument("--seed", type=int, default=0, help="seed of the image selection")
    s.add_argument("--width", "-N", type=int, default=None,
                   help="also report rho*(N) at this finite width (1/N theory; 15-20 s, "
                        "mostly compilation)")
    s.set_defaults(func=cmd_rho_star)

    s = sub.add_parser("scaling", help="rho*(L) over depths and the fitted exponents (Fig. 4c)")
    s.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50, 100, 200, 500, 1000])
    s.add_argument("--out", help="write the figure (PNG/PDF)")
    _add_network_args(s)
    s.set_defaults(func=cmd_scaling)

    s = sub.add_parser("response", help="chi_out(rho) curves for several depths (Fig. 4a,b)")
    s.add_argument("--depths", type=int, nargs="+", default=[10, 50, 100, 200])
    s.add_argument("--n-rho", type=int, default=200, help="points of the rho grid")
    s.add_argument("--rho-min-plot", type=float, default=1e-2)
    s.add_argument("--rho-max-plot", type=float, default=1e1)
    s.add_argument("--out", help="write the figure (PNG/PDF)")
    _add_network_args(s)
    s.set_defaults(func=cmd_response)

    s = sub.add_parser("kernel", help="per-layer kernels K^(l), C^(l) and responses chi^(l)")
    s.add_argument("--depth", "-L", type=int, default=10)
    s.add_argument("--rho", type=float, default=0.3)
    s.add_argument("--feedforward", action="store_true", help="feed-forward net (no skips)")
    s.add_argument("--out", help="write .npz or .json (else JSON on stdout)")
    _add_network_args(s, rho_search=False)
    s.set_defaults(func=cmd_kernel)

