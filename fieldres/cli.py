"""Command-line interface: ``fieldres <command> [options]``.

Commands
--------
rho-star   optimal residual scaling for one depth (the main job)
scaling    rho*(L) over depths with the fitted exponents (paper Fig. 4c)
response   chi^out(rho) curves for several depths (paper Fig. 4a, b)
kernel     per-layer kernel and response trajectories as JSON or .npz

Bad input prints one line ``fieldres: error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_K0 = "0.05,0.03;0.03,0.05"


class CLIError(ValueError):
    """A user error reported as one line on stderr (exit code 2)."""


def parse_matrix(text: str) -> np.ndarray:
    """``"a,b;b,c"`` -> 2-D array (rows separated by ``;``, entries by ``,``)."""
    try:
        rows = [[float(x) for x in row.split(",")] for row in text.strip().split(";")]
    except ValueError as e:
        raise CLIError(f"--k0 must look like 'a,b;b,c' (numbers), got {text!r}") from e
    if len({len(r) for r in rows}) != 1:
        raise CLIError(f"--k0 rows have different lengths: {text!r}")
    return np.array(rows, dtype=float)


def _add_network_args(p: argparse.ArgumentParser, k0: bool = True,
                      rho_search: bool = True) -> None:
    g = p.add_argument_group("network (defaults: the paper's Fig. 4)")
    g.add_argument("--activation", default="erf",
                   help="erf | relu | tanh | linear (default erf)")
    g.add_argument("--sigma-w2", type=float, default=1.25, help="hidden weight variance")
    g.add_argument("--sigma-b2", type=float, default=0.05, help="hidden bias variance")
    g.add_argument("--sigma-w2-out", type=float, default=1.25, help="readout weight variance")
    g.add_argument("--sigma-b2-out", type=float, default=0.05, help="readout bias variance")
    if k0:
        g.add_argument("--k0", default=DEFAULT_K0,
                       help=f"input kernel K^(0) as 'a,b;b,c' (default {DEFAULT_K0!r})")
    if rho_search:
        p.add_argument("--rho-min", type=float, default=1e-3, help="smallest rho searched")
        p.add_argument("--rho-max", type=float, default=1e2, help="largest rho searched")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _setup(args):
    """Enable float64, build the hyperparameters and K0, validate. Returns (fr, hyper, K0)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import fieldres as fr

    for name in ("sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out"):
        v = getattr(args, name)
        if not math.isfinite(v) or v < 0:
            raise CLIError(f"--{name.replace('_', '-')} must be a non-negative finite variance, "
                           f"got {v}")
    fr.get_activation(args.activation)
    hyper = fr.Hyper(args.sigma_w2, args.sigma_b2, args.sigma_w2_out, args.sigma_b2_out)
    K0 = parse_matrix(args.k0) if hasattr(args, "k0") else None
    if K0 is not None:
        from fieldres._validation import check_kernel

        check_kernel(K0, "--k0")
    return fr, hyper, K0


def _params(args, K0) -> dict:
    d = {
        "activation": args.activation,
        "sigma_w2": args.sigma_w2,
        "sigma_b2": args.sigma_b2,
        "sigma_w2_out": args.sigma_w2_out,
        "sigma_b2_out": args.sigma_b2_out,
    }
    if hasattr(args, "rho_min"):
        d["rho_range"] = [args.rho_min, args.rho_max]
    if K0 is not None:
        d["k0"] = K0.tolist()
    return d


def _fmt_matrix(K) -> str:
    """A kernel on one line in the ``--k0`` syntax, e.g. ``0.05,0.03;0.03,0.05``."""
    return ";".join(",".join(f"{v:.6g}" for v in row) for row in np.asarray(K))


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _summarise(res, entries):
    """Average rho* and chi_max over the diagonal and the off-diagonal entries found."""
    rho = np.asarray(res.rho_star)
    chi = np.asarray(res.chi_max)
    msgs = res.messages()
    out = {}
    for kind, sel in (("diagonal", [a == b for a, b in entries]),
                      ("offdiagonal", [a != b for a, b in entries])):
        sel = np.asarray(sel)
        if not sel.any():
            out[kind] = (None, None, "needs at least two inputs (P >= 2) for an off-diagonal "
                                     "response", [])
            continue
        ok = sel & np.isfinite(rho)
        if ok.any():
            status = "ok" if ok.sum() == sel.sum() else (
                f"ok for {ok.sum()} of {sel.sum()} entries; others: {msgs[sel & ~ok][0]}")
            out[kind] = (float(rho[ok].mean()), float(chi[ok].mean()), status,
                         [(_finite_or_none(r)) for r in rho[sel]])
        else:
            out[kind] = (None, None, str(msgs[sel][0]), [None] * int(sel.sum()))
    return out


def _data_kernel(fr, args) -> np.ndarray:
    if args.n_inputs < 1 or not math.isfinite(args.k0_scale) or args.k0_scale <= 0:
        raise CLIError("--n-inputs must be >= 1 and --k0-scale positive")
    ds = fr.make_dataset(args.dataset, classes=tuple(args.classes), n_train=args.n_inputs,
                         n_test=0, seed=args.seed, data_dir=args.data_dir,
                         k0_scale=args.k0_scale)
    return np.asarray(fr.input_kernel(ds.x_train))


def cmd_rho_star(args) -> int:
    fr, hyper, K0 = _setup(args)
    from fieldres.optimal import rho_star_continuum, rho_star_entries

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
    return 1 if failed else 0


def cmd_scaling(args) -> int:
    fr, hyper, K0 = _setup(args)
    if K0.shape[0] < 2:
        raise CLIError("scaling needs a kernel of at least two inputs (--k0 'a,b;b,c')")
    from fieldres.optimal import rho_star_continuum, rho_star_scaling

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
    print(f"rho*(L) of a {args.activation} ResNet, K0 = {_fmt_matrix(K0)}")
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
        return "— (fewer than two optima)" if e is None else f"{e:.4f} (± {se:.4f})"

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
    from fieldres.optimal import rho_star

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
    print(f"chi_out(rho) of a {args.activation} ResNet on {args.n_rho} rho values in "
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


# --- command functions of Bayesian training (issue 4) go here ---


# --- command functions of the signal-propagation toolkit (issue 5) go here ---


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fieldres",
        description="Finite-width field theory of deep residual networks "
                    "(Fischer, Dahmen, Helias, arXiv:2305.07715).",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"fieldres {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

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

    # --- commands of the finite-width module (issue 3) go here ---

    # --- commands of Bayesian training (issue 4) go here ---

    # --- commands of the signal-propagation toolkit (issue 5) go here ---

    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("depth",):
        if getattr(args, name, 1) is not None and getattr(args, name, 1) < 1:
            print(f"fieldres: error: --{name} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    if getattr(args, "depths", None) is not None and min(args.depths) < 1:
        print(f"fieldres: error: --depths must all be >= 1, got {args.depths}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:  # user errors: one clear line
        msg = " ".join(str(e).split()) if str(e).strip() else type(e).__name__
        print(f"fieldres: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
