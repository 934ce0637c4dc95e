"""Commands of signal propagation: rho-star, scaling, response, kernel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._common import (
    MAX_DEPTH_FINITE_WIDTH,
    MAX_DEPTH_SEARCH,
    MAX_DEPTH_TRAJECTORY,
    CLIError,
    _a,
    _add_network_args,
    _data_kernel,
    _finite_or_none,
    _fmt_matrix,
    _params,
    _setup,
    _summarise,
    check_float,
    check_int,
    check_network,
    check_out,
    count_nonfinite,
    dumps,
    emit_json,
    jsonable,
)
from .finite_width import _check_width_nlo, _print_rho_star_width, _rho_star_width

_DATA_DEFAULTS = dict(classes=["dog", "airplane"], n_inputs=20, k0_scale=0.05, seed=0)
#: Most images of a data-driven rho* (every pair is one solve: P (P + 1) / 2 of them).
MAX_INPUTS = 200
_CONTINUUM_NOTE = (f"depth > {MAX_DEPTH_SEARCH:,}: the layer-by-layer search is replaced by "
                   f"the continuum limit rho* ~ sqrt(tau*/L) (exact as L -> inf)")


def _check_data(args) -> None:
    """The data-driven rho* flags: all or nothing, names known, data present."""
    given = [k for k in _DATA_DEFAULTS if getattr(args, k) is not None]
    if args.data_dir is not None:
        given.append("data_dir")
    if args.dataset is None:
        if given:
            raise CLIError(f"--{given[0].replace('_', '-')} is only used with --dataset "
                           f"(cifar10 or mnist)")
        return
    if args.k0 is not None:
        raise CLIError("give either --k0 or --dataset, not both (with --dataset K0 is "
                       "computed from the images)")
    for k, v in _DATA_DEFAULTS.items():
        if getattr(args, k) is None:
            setattr(args, k, list(v) if isinstance(v, list) else v)
    check_int(args, "n_inputs", 1, MAX_INPUTS, why="each pair of inputs is one rho* solve")
    check_float(args, "k0_scale", lo=0.0, lo_open=True)
    check_int(args, "seed", 0)
    from ..data import datasets

    names = (datasets._CIFAR_LABEL_NAMES if args.dataset == "cifar10"
             else datasets._MNIST_LABEL_NAMES)
    bad = [c for c in args.classes if c not in names]
    if bad:
        raise CLIError(f"--classes: unknown {args.dataset} class {bad[0]!r}; expected some of "
                       f"{', '.join(names)}")
    if len(set(args.classes)) != len(args.classes):
        raise CLIError(f"--classes names a class twice: {' '.join(args.classes)}")
    datasets.resolve_data_dir(args.data_dir, args.dataset)  # DataNotFoundError: exit 2


def check_rho_star(args) -> None:
    check_int(args, "depth", 1)
    check_network(args, k0_required=args.dataset is None)
    _check_data(args)
    if args.width is not None:
        _check_width_nlo(args)
        check_int(args, "depth", 1, MAX_DEPTH_FINITE_WIDTH,
                  why="the 1/N theory of --width costs O(L) per rho evaluation")


def cmd_rho_star(args) -> int:
    fr, hyper, K0 = _setup(args)
    from fieldres.signal.optimal import rho_star_continuum, rho_star_entries

    if args.dataset:
        K0 = _data_kernel(fr, args)
    if getattr(args, "width", None) is not None:  # issue 14: before any computation
        from fieldres.finite_width.nlo_entries import check_pairs_invertible

        check_pairs_invertible(K0)

    P = K0.shape[0]
    L = args.depth
    k0_mean = float(np.mean(np.diag(K0)))
    cont = rho_star_continuum(k0_mean, L, hyper, args.activation)
    cont_msg = str(fr.Status(int(cont.status)).name.lower())
    search = L <= MAX_DEPTH_SEARCH
    if search:
        entries = [(a, a) for a in range(P)] + [(a, b) for a in range(P)
                                                for b in range(a + 1, P)]
        res = rho_star_entries(K0, L, hyper, args.activation, entries=entries,
                               rho_range=(args.rho_min, args.rho_max))
        summary = _summarise(res, entries)
    else:  # routed to the continuum limit (diagonal); no such formula off the diagonal
        rc = _finite_or_none(cont.rho_star)
        summary = {
            "diagonal": (rc, None, _CONTINUUM_NOTE if rc is not None else
                         f"{_CONTINUUM_NOTE}; it has no optimum here ({cont_msg})",
                         [rc] * P if rc is not None else [None] * P),
            "offdiagonal": (None, None, f"not computed: {_CONTINUUM_NOTE} for the diagonal "
                                        f"entries only", [None] * (P * (P - 1) // 2)),
        }
    result = {
        "depth": L,
        "method": "search" if search else "continuum",
        "rho_star_diagonal": summary["diagonal"][0],
        "rho_star_offdiagonal": summary["offdiagonal"][0],
        "chi_out_max_diagonal": summary["diagonal"][1],
        "chi_out_max_offdiagonal": summary["offdiagonal"][1],
        "status": "ok",
        "status_diagonal": summary["diagonal"][2],
        "status_offdiagonal": summary["offdiagonal"][2],
        "rho_star_diagonal_per_input": summary["diagonal"][3],
        "rho_star_offdiagonal_per_pair": summary["offdiagonal"][3],
        "continuum": {
            "K_star": _finite_or_none(cont.K_star),
            "tau_star": _finite_or_none(cont.tau_star),
            "rho_star_diagonal": _finite_or_none(cont.rho_star),
            "k0": k0_mean,
            "status": cont_msg,
        },
        "parameters": _params(args, K0),
    }
    if args.dataset:
        result["parameters"]["data"] = {"dataset": args.dataset, "classes": args.classes,
                                        "n_inputs": args.n_inputs, "k0_scale": args.k0_scale,
                                        "seed": args.seed}
    failed = result["rho_star_diagonal"] is None and result["rho_star_offdiagonal"] is None
    if failed:
        result["status"] = f"no optimum: {result['status_diagonal']}"
    if getattr(args, "width", None) is not None:  # issue 3: rho*(N) at finite width
        result.update(_rho_star_width(args, hyper, K0))
    if args.json:
        emit_json(result, args)
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
    if not search:
        print(f"  note: {_CONTINUUM_NOTE}")
    labels = (("diagonal", "diagonal     chi_aa"), ("offdiagonal", "off-diagonal chi_ab"))
    for kind, label in labels:
        r, c, status, _ = summary[kind]
        if r is None:
            print(f"  {label}: no optimum: {status}")
        elif c is None:
            print(f"  {label}: rho* = {r:.9f}   rho* sqrt(L) = {r * math.sqrt(L):.4f}   "
                  f"(continuum limit)")
        else:
            extra = "" if status == "ok" else f"  [{status}]"
            print(f"  {label}: rho* = {r:.9f}   rho* sqrt(L) = {r * math.sqrt(L):.4f}   "
                  f"max chi_out = {c:.6g}{extra}")
    if search and result["continuum"]["rho_star_diagonal"] is not None:
        print(f"  continuum limit (diagonal, L -> inf): K* = {float(cont.K_star):.4f}, "
              f"rho* ~ sqrt(tau*/L) = {float(cont.rho_star):.6f}")
    if getattr(args, "width", None) is not None:
        _print_rho_star_width(result)
    return 1 if failed else 0


def cmd_scaling(args) -> int:
    fr, hyper, K0 = _setup(args)
    from fieldres.signal.optimal import rho_star_continuum, rho_star_scaling

    depths = sorted(set(args.depths))
    fit = rho_star_scaling(K0, depths, hyper, args.activation,
                           rho_range=(args.rho_min, args.rho_max))
    # one compiled call for all depths (K* and tau* do not depend on L)
    cont_all = rho_star_continuum(float(K0[0, 0]), np.asarray(depths), hyper, args.activation)
    cont = [_finite_or_none(x) for x in np.asarray(cont_all.rho_star)]
    result = {
        "depths": depths,
        "rho_star_diagonal": [_finite_or_none(x) for x in fit.diagonal.rho_star],
        "rho_star_offdiagonal": [_finite_or_none(x) for x in fit.offdiagonal.rho_star],
        "exponent_diagonal": _finite_or_none(fit.exponent_diagonal),
        "exponent_offdiagonal": _finite_or_none(fit.exponent_offdiagonal),
        "exponent_diagonal_se": _finite_or_none(fit.exponent_diagonal_se),
        "exponent_offdiagonal_se": _finite_or_none(fit.exponent_offdiagonal_se),
        "continuum": {"rho_star_diagonal": cont},
        "status": "ok",
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
    if any(missing):
        result["status"] = f"no optimum for {sum(missing)} of {len(missing)} (depth, entry) pairs"
    if args.json:
        emit_json(result, args)
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
    from fieldres.signal.optimal import rho_star

    rhos = np.geomspace(args.rho_min_plot, args.rho_max_plot, args.n_rho)
    curves = {"diagonal": {}, "off-diagonal": {}}
    stars = {"diagonal": {}, "off-diagonal": {}}
    status = {"diagonal": {}, "off-diagonal": {}}
    for L in sorted(set(args.depths)):
        chi = np.asarray(fr.response_curve(K0, rhos, L, hyper, args.activation))
        curves["diagonal"][L] = jsonable(chi[:, 0, 0])  # overflow -> None
        curves["off-diagonal"][L] = jsonable(chi[:, 0, 1])
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
        "status": "ok",
        "status_diagonal": {str(L): v for L, v in status["diagonal"].items()},
        "status_offdiagonal": {str(L): v for L, v in status["off-diagonal"].items()},
        "parameters": _params(args, K0),
    }
    n_over = sum(v is None for d in curves.values() for c in d.values() for v in c)
    if n_over:
        result["status"] = (f"overflow: {n_over} values of chi_out exceed the float64 range "
                            f"(null in the curves)")
    exit_code = 1 if any(not math.isfinite(v) for d in stars.values() for v in d.values()) else 0
    if args.out:
        from fieldres.plotting import plot_response_curves

        plot_response_curves(rhos, {k: {L: [np.nan if v is None else v for v in c]
                                         for L, c in d.items()} for k, d in curves.items()},
                             stars, out=args.out)
        result["figure"] = str(args.out)
    if args.json:
        emit_json(result, args)
        return exit_code
    print(f"chi_out(rho) of {_a(args.activation)} ResNet on {args.n_rho} rho values in "
          f"[{args.rho_min_plot:g}, {args.rho_max_plot:g}]")

    def star(name, L):
        v = stars[name][L]
        return f"rho* = {v:.6f}" if math.isfinite(v) else f"no optimum ({status[name][L]})"

    def top(c):
        vals = [v for v in c if v is not None]
        return f"{max(vals):.5g}" if vals else "overflow"

    for L in result["depths"]:
        print(f"  L = {L:5d}: diagonal: max of curve {top(curves['diagonal'][L])}, "
              f"{star('diagonal', L)}; off-diagonal: max of curve "
              f"{top(curves['off-diagonal'][L])}, {star('off-diagonal', L)}")
    if n_over:
        print(f"  {result['status']}")
    if args.out:
        print(f"  figure written to {args.out}")
    return exit_code


def cmd_kernel(args) -> int:
    fr, hyper, K0 = _setup(args)
    residual = not args.feedforward
    rho = 0.0 if not residual else args.rho
    if residual:
        k = fr.resnet_kernels(K0, rho, args.depth, hyper, args.activation)
    else:
        k = fr.ffnet_kernels(K0, args.depth, hyper, args.activation)
    r = fr.response(K0, rho, args.depth, hyper, args.activation, residual=residual,
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
    n_bad = count_nonfinite(data)
    status = "ok" if not n_bad else (
        f"overflow: {n_bad} values exceed the float64 range (reported as null); the kernel "
        f"diverges at rho = {rho:g}, depth {args.depth}")
    params = _params(args, K0) | {"depth": args.depth, "rho": None if not residual else rho,
                                  "residual": residual}
    body = {"layers": list(range(args.depth + 1))} | jsonable(data) | {"status": status}
    if args.out:
        from ._common import record

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        full = record(args) | params
        if out.suffix == ".npz":
            np.savez(out, **data, status=status, parameters=dumps(full, indent=None))
        else:
            out.write_text(dumps(body | {"parameters": full}, indent=None))
    if args.json or not args.out:
        emit_json(body, args, indent=None, **params)
    else:
        print(f"kernel trajectory (L = {args.depth}, rho = {args.rho}) written to {args.out}")
        if n_bad:
            print(f"  {status}")
    return 0


def check_scaling(args) -> None:
    check_int(args, "depths", 1, MAX_DEPTH_SEARCH,
              why="the layer-by-layer search takes ~50 s at L = 10^4; `fieldres rho-star "
                  "--depth L` gives the continuum limit for larger L")
    if len(set(args.depths)) > 100:
        raise CLIError(f"--depths: at most 100 depths, got {len(set(args.depths))}")
    K0 = check_network(args)
    if K0.shape[0] < 2:
        raise CLIError(f"{args.command} needs a kernel of at least two inputs "
                       f"(--k0 'a,b;b,c')")
    check_out(args.out)


def check_response(args) -> None:
    check_scaling(args)
    check_int(args, "n_rho", 2, 100_000)
    from ._common import check_range

    check_range(args, "rho_min_plot", "rho_max_plot")


def check_kernel_args(args) -> None:
    check_int(args, "depth", 1, MAX_DEPTH_TRAJECTORY,
              why="the output holds every layer's kernel")
    check_network(args)
    if args.feedforward and args.rho is not None:
        raise CLIError("--rho is not used with --feedforward (a feed-forward net has no "
                       "residual branch)")
    if args.rho is None:
        args.rho = 0.3
    check_float(args, "rho", lo=0.0)
    check_out(args.out, (".npz", ".json"))


# --- command functions of the finite-width module (issue 3) go here ---


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    s = sub.add_parser("rho-star", help="optimal residual scaling rho* for one depth")
    s.add_argument("--depth", "-L", type=int, default=100, help="number of residual layers")
    _add_network_args(s)
    d = s.add_argument_group("data-driven rho* (paper Fig. 5): K0 from real inputs instead of --k0")
    d.add_argument("--dataset", choices=["cifar10", "mnist"],
                   help="take K0 = X X^T / d_in from this dataset's training images")
    d.add_argument("--classes", nargs="+", default=None,
                   help="class names (default: dog airplane)")
    d.add_argument("--n-inputs", type=int, default=None,
                   help=f"number of images P (balanced; default 20, at most {MAX_INPUTS})")
    d.add_argument("--k0-scale", type=float, default=None,
                   help="rescale inputs so that the mean diagonal of K0 is this value "
                        "(default 0.05)")
    d.add_argument("--data-dir", help="dataset folder (else $FIELDRES_DATA_DIR or ../shared/data)")
    d.add_argument("--seed", type=int, default=None,
                   help="seed of the image selection (default 0)")
    s.add_argument("--width", "-N", type=int, default=None,
                   help="also report rho*(N) at this finite width for every input and pair "
                        "(1/N theory, N >= 2; ~2 s per pair at L = 10, ~20 s at L = 100)")
    s.set_defaults(func=cmd_rho_star, check=check_rho_star)

    s = sub.add_parser("scaling", help="rho*(L) over depths and the fitted exponents (Fig. 4c)")
    s.add_argument("--depths", type=int, nargs="+", default=[10, 20, 50, 100, 200, 500, 1000])
    s.add_argument("--out", help="write the figure (PNG/PDF)")
    _add_network_args(s)
    s.set_defaults(func=cmd_scaling, check=check_scaling)

    s = sub.add_parser("response", help="chi_out(rho) curves for several depths (Fig. 4a,b)")
    s.add_argument("--depths", type=int, nargs="+", default=[10, 50, 100, 200])
    s.add_argument("--n-rho", type=int, default=200, help="points of the rho grid")
    s.add_argument("--rho-min-plot", type=float, default=1e-2)
    s.add_argument("--rho-max-plot", type=float, default=1e1)
    s.add_argument("--out", help="write the figure (PNG/PDF)")
    _add_network_args(s)
    s.set_defaults(func=cmd_response, check=check_response)

    s = sub.add_parser("kernel", help="per-layer kernels K^(l), C^(l) and responses chi^(l)")
    s.add_argument("--depth", "-L", type=int, default=10)
    s.add_argument("--rho", type=float, default=None, help="residual scaling (default 0.3)")
    s.add_argument("--feedforward", action="store_true", help="feed-forward net (no skips)")
    s.add_argument("--out", help="write .npz or .json (else JSON on stdout)")
    _add_network_args(s, rho_search=False)
    s.set_defaults(func=cmd_kernel, check=check_kernel_args)

