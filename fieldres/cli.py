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


def _check_variances(args, *names: str) -> None:
    """Each ``--name`` given (not None) must be a finite, non-negative variance."""
    for name in names:
        v = getattr(args, name)
        if v is not None and (not math.isfinite(v) or v < 0):
            raise CLIError(f"--{name.replace('_', '-')} must be a non-negative finite variance, "
                           f"got {v}")


def _setup(args):
    """Enable float64, build the hyperparameters and K0, validate. Returns (fr, hyper, K0)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import fieldres as fr

    _check_variances(args, "sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out")
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


def _a(word: str) -> str:
    """``'an erf'``, ``'a tanh'``: the indefinite article as the word is spoken."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


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


def _nlo_common(args):
    """Validate the finite-width arguments; returns (fr, hyper, K0)."""
    fr, hyper, K0 = _setup(args)
    if args.width is None or args.width < 1:
        raise CLIError(f"--width must be an integer >= 1, got {args.width}")
    if not math.isfinite(args.rho) or args.rho < 0:
        raise CLIError(f"--rho must be a non-negative number, got {args.rho}")
    if K0.shape[0] > 4:
        raise CLIError(f"nlo/simulate print every entry for at most 4 inputs; --k0 has "
                       f"{K0.shape[0]}")
    if args.activation == "relu":
        raise CLIError("the 1/N theory needs a smooth activation (erf, tanh, linear); ReLU's "
                       "second derivative is a delta function")
    return fr, hyper, K0


def _nlo_params(args, K0) -> dict:
    return _params(args, K0) | {"depth": args.depth, "rho": args.rho, "width": args.width,
                                "residual": not args.feedforward}


def _print_nlo_text(result, title, se=False):
    print(title)
    ent = result["entries"]
    labels = [f"({a},{b})" for a, b in ent]
    for name, desc in (("C", "post-activation kernel C^(L)"), ("K", "pre-activation kernel "
                                                                     "K^(L)"),
                       ("out", "output kernel sigma_w,out^2 C^(L) + sigma_b,out^2")):
        print(f"  {desc}")
        print(f"    leading order      {_fmt_matrix(result[f'{name}_lo'])}")
        mean = _fmt_matrix(result[f"{name}_nlo_mean"])
        if se:
            se_mean = _fmt_matrix(result[f"{name}_nlo_mean_se"])
            print(f"    Monte-Carlo mean   {mean}   (SE {se_mean})")
        else:
            print(f"    NLO mean           {mean}   (N x shift "
                  f"{_fmt_matrix(result[f'{name}_shift'])})")
        print(f"    N Cov over entries {' '.join(f'{x:>12}' for x in labels)}")
        for i, row in enumerate(result[f"{name}_ncov"]):
            vals = " ".join(f"{v:12.6g}" for v in row)
            if se:
                vals += "   SE " + " ".join(f"{v:.2g}" for v in result[f"{name}_ncov_se"][i])
            print(f"      {labels[i]:>16} {vals}")


def _rho_star_width(args, hyper, K0) -> dict:
    """rho*(inf) and rho*(N) to O(1/N) for input 0 and the pair (0, 1) (``rho-star --width``)."""
    if args.width < 1:
        raise CLIError(f"--width must be an integer >= 1, got {args.width}")
    if args.activation == "relu":
        raise CLIError("--width needs a smooth activation (the 1/N theory); ReLU is not")
    from fieldres.finite_width import rho_star_width

    out = {"width": args.width}
    entries = [("diagonal", (0, 0))] + ([("offdiagonal", (0, 1))] if K0.shape[0] > 1 else [])
    detail = {}
    for kind, entry in entries:
        r = rho_star_width(K0, args.depth, float(args.width), hyper, args.activation,
                           entry=entry, rho_range=(args.rho_min, args.rho_max))
        out[f"rho_star_{kind}_N"] = _finite_or_none(r.rho_star)
        detail[kind] = {
            "entry": list(entry),
            "rho_star_inf": _finite_or_none(r.rho_star_inf),
            "rho_star_N": _finite_or_none(r.rho_star),
            "log_shift_times_N": _finite_or_none(r.shift),
            "chi_out_inf": _finite_or_none(r.chi_inf),
            "chi_out_1": _finite_or_none(r.chi_1),
            "chi_out_max_N": _finite_or_none(r.chi_inf + r.chi_1 / args.width),
        }
    out["finite_width"] = detail
    return out


def _print_rho_star_width(result) -> None:
    N = result["width"]
    print(f"  finite width N = {N} (1/N theory; rho*(N) = rho*(inf) exp(c / N)):")
    for kind, d in result["finite_width"].items():
        if d["rho_star_N"] is None:
            print(f"    {kind} {tuple(d['entry'])}: no optimum at leading order")
            continue
        print(f"    {kind} {tuple(d['entry'])}: rho*(inf) = {d['rho_star_inf']:.9f}, "
              f"rho*(N) = {d['rho_star_N']:.9f} (c = {d['log_shift_times_N']:.4g}); "
              f"max chi_out = {d['chi_out_inf']:.6g} {d['chi_out_1']:+.4g}/N")


def cmd_nlo(args) -> int:
    fr, hyper, K0 = _nlo_common(args)
    from fieldres.finite_width import finite_width

    res = finite_width(K0, args.rho, args.depth, hyper, args.activation,
                       residual=not args.feedforward)
    N = args.width
    result = {"entries": [list(e) for e in res.entries]}
    for name in ("C", "K", "out"):
        lo = res.out if name == "out" else getattr(res, name)[-1]
        shift = res.out_shift if name == "out" else getattr(res, f"{name}_shift")[-1]
        result[f"{name}_lo"] = np.asarray(lo).tolist()
        result[f"{name}_nlo_mean"] = np.asarray(lo + shift / N).tolist()
        result[f"{name}_ncov"] = np.asarray(res.cov_matrix(name)).tolist()
        result[f"{name}_shift"] = np.asarray(shift).tolist()
    result["parameters"] = _nlo_params(args, K0)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    arch = "feed-forward net" if args.feedforward else f"ResNet (rho = {args.rho:g})"
    _print_nlo_text(result, f"1/N theory of a depth-{args.depth} {args.activation} {arch}, "
                            f"width N = {N}, K0 = {_fmt_matrix(K0)}")
    return 0


def cmd_simulate(args) -> int:
    fr, hyper, K0 = _nlo_common(args)
    if args.n_networks < 2:
        raise CLIError(f"--n-networks must be >= 2, got {args.n_networks}")
    import jax

    from fieldres.finite_width import simulate_nlo

    residual = not args.feedforward
    s = simulate_nlo(jax.random.PRNGKey(args.seed), K0, rho=args.rho, depth=args.depth,
                     width=args.width, n_networks=args.n_networks, hyper=hyper,
                     activation=args.activation, residual=residual, method=args.method,
                     batch_size=args.batch_size, progress=not args.json)
    if residual:
        k = fr.resnet_kernels(K0, args.rho, args.depth, hyper, args.activation)
    else:
        k = fr.ffnet_kernels(K0, args.depth, hyper, args.activation)
    act = fr.get_activation(args.activation)
    result = {"entries": [list(e) for e in s.entries],
              "C_lo": np.asarray(act.kernel(k.K_L)).tolist(),
              "K_lo": np.asarray(k.K_L).tolist(), "out_lo": np.asarray(k.K_out).tolist()}
    for name in ("C", "K", "out"):
        result[f"{name}_nlo_mean"] = np.asarray(getattr(s, f"{name}_mean")).tolist()
        result[f"{name}_nlo_mean_se"] = np.asarray(getattr(s, f"{name}_mean_se")).tolist()
        result[f"{name}_ncov"] = np.asarray(getattr(s, f"{name}_ncov")).tolist()
        result[f"{name}_ncov_se"] = np.asarray(getattr(s, f"{name}_ncov_se")).tolist()
    result["n_networks"] = args.n_networks
    result["method"] = args.method
    result["parameters"] = _nlo_params(args, K0) | {"seed": args.seed}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    arch = "feed-forward nets" if args.feedforward else f"ResNets (rho = {args.rho:g})"
    _print_nlo_text(result, f"Monte Carlo of {args.n_networks} depth-{args.depth} "
                            f"{args.activation} {arch}, width N = {args.width} "
                            f"({args.method}), K0 = {_fmt_matrix(K0)}", se=True)
    return 0


# --- command functions of Bayesian training (issue 4) go here ---


_TRAIN_DEFAULTS = dict(n_train=100, n_test=500, depth=10, rho=0.3, width=64, sampler="mala",
                       steps=1000, n_chains=2)


def cmd_train(args) -> int:
    """Bayesian (Langevin) training of the ResNet on a CIFAR-10 / MNIST class subset."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres.training import TRAIN_PRESETS, train

    opts = dict(_TRAIN_DEFAULTS)
    if args.preset:
        opts.update(TRAIN_PRESETS[args.preset])
    for k in opts:
        if getattr(args, k, None) is not None:
            opts[k] = getattr(args, k)
    for name in ("n_train", "n_test", "depth", "width", "steps", "n_chains"):
        if opts[name] < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {opts[name]}")
    if opts["n_train"] < 2 or opts["steps"] < 2:
        raise CLIError("--n-train and --steps must be >= 2")
    for name in ("rho", "noise", "step_size", "temperature", "k0_scale"):
        v = opts[name] if name in opts else getattr(args, name)
        ok = math.isfinite(v) and (v >= 0 if name == "rho" else v > 0)
        if not ok:
            kind = "non-negative" if name == "rho" else "positive"
            raise CLIError(f"--{name.replace('_', '-')} must be a {kind} finite number, got {v}")
    for name in ("sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out"):
        v = getattr(args, name)
        if not math.isfinite(v) or v < 0:
            raise CLIError(f"--{name.replace('_', '-')} must be a non-negative finite "
                           f"variance, got {v}")
    if args.batch_size is not None and opts["sampler"] != "sgld":
        raise CLIError("--batch-size is for --sampler sgld only")
    if args.resume and not args.save:
        raise CLIError("--resume needs --save FILE (the checkpoint to continue)")
    import fieldres as fr

    hyper = fr.Hyper(args.sigma_w2, args.sigma_b2, args.sigma_w2_out, args.sigma_b2_out)
    res = train(
        dataset=args.dataset, classes=args.classes, n_train=opts["n_train"],
        n_test=opts["n_test"], depth=opts["depth"], rho=opts["rho"], width=opts["width"],
        sampler=opts["sampler"], steps=opts["steps"], n_chains=opts["n_chains"],
        k0_scale=args.k0_scale, data_dir=args.data_dir, seed=args.seed, noise=args.noise,
        likelihood=args.likelihood, temperature=args.temperature, burn_in=args.burn_in,
        thin=args.thin, step_size=args.step_size, batch_size=args.batch_size, hyper=hyper,
        activation=args.activation, dtype=args.dtype, progress=not args.json and
        not args.no_progress and sys.stderr.isatty(), save_path=args.save, resume=args.resume,
    )
    d = res.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        print(f"Bayesian training ({d['sampler']}) of a depth-{d['depth']}, width-{d['width']} "
              f"{args.activation} ResNet, rho = {d['rho']:g}, on {d['dataset']} "
              f"{'/'.join(d['classes'])} (n_train = {d['n_train']}, n_test = {d['n_test']})")

        def pm(v, se, fmt=".4f"):
            return f"{v:{fmt}}" + ("" if se is None else f" ± {se:{fmt}}")

        print(f"  test error {pm(d['test_error'], d['test_error_se'])}, test MSE "
              f"{pm(d['test_mse'], d['test_mse_se'])}, train MSE "
              f"{pm(d['train_mse'], d['train_mse_se'])}")
        kc = d["kernel_change"]
        print(f"  kernel change {pm(kc, d['kernel_change_se'])} (prior floor "
              f"{d['kernel_change_prior']:.4f}), kernel-target alignment "
              f"{pm(d['kernel_alignment'], d['kernel_alignment_se'])} (prior "
              f"{d['kernel_alignment_prior']:.4f})")
        acc = d["acceptance_rate"]
        print(f"  {d['steps']} steps x {d['n_chains']} chains, {d['n_samples']} samples kept"
              + ("" if acc is None else f", acceptance rate {acc:.3f}")
              + f", step size {d['step_size']:.3g}, {d['seconds']:.1f} s")
    if res.diverged:
        print(f"fieldres: warning: {res.message}", file=sys.stderr)
        return 1
    return 0



# --- command functions of the signal-propagation toolkit (issue 5) go here ---

def _eoc_float(x):
    x = float(x)
    return x if math.isfinite(x) else None


def cmd_edge_of_chaos(args) -> int:
    """Feed-forward mean field: q*, c*, chi_1, xi_q, xi_c and sigma_w,crit^2(sigma_b^2)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres import meanfield as mf
    from fieldres.activations import get_activation

    get_activation(args.activation)
    _check_variances(args, "sigma_b2", "sigma_w2")
    if args.grid < 3:
        raise CLIError(f"--grid must be >= 3, got {args.grid}")
    crit = mf.critical_sigma_w2(args.sigma_b2, args.activation)
    sw2_crit = _eoc_float(crit.sigma_w2)
    crit_msg = str(crit.messages().ravel()[0])
    sw2 = args.sigma_w2 if args.sigma_w2 is not None else sw2_crit
    result = {
        "activation": args.activation,
        "sigma_b2": args.sigma_b2,
        "sigma_w2_critical": sw2_crit,
        "q_star_critical": _eoc_float(crit.q_star),
        "critical_status": crit_msg,
        "sigma_w2": sw2,
    }
    exit_code = 0 if sw2_crit is not None else 1
    if sw2 is not None:
        r = mf.mean_field(sw2, args.sigma_b2, args.activation)
        st = int(r.status)
        result.update({
            "q_star": _eoc_float(r.q_star),
            "c_star": _eoc_float(r.c_star),
            "chi_1": _eoc_float(r.chi_1),
            "chi_c": _eoc_float(r.chi_c),
            "xi_q": _eoc_float(r.xi_q),
            "xi_c": _eoc_float(r.xi_c),
            "phase": ("no fixed point" if st else "critical" if abs(float(r.chi_1) - 1.0) < 1e-9
                      else "chaotic" if float(r.chi_1) > 1.0 else "ordered"),
            "status": str(r.messages().ravel()[0]),
        })
        if st:
            exit_code = 1
    if args.out:
        lo, hi = args.sigma_w2_range
        w = np.linspace(lo, hi, args.grid)
        b = np.linspace(0.0, max(args.sigma_b2 * 2, 0.3), max(args.grid * 2 // 3, 3))
        diag = mf.phase_diagram(w, b, args.activation, n_critical=args.grid)
        mf.plot_phase_diagram(diag, title=f"{args.activation}: depth scale of correlations",
                              out=args.out)
        result["figure"] = str(args.out)
    if args.json:
        print(json.dumps(result, indent=2))
        return exit_code

    def fmt(x):
        return "inf" if x is None else f"{x:.8g}"

    print(f"Edge of chaos of a deep {args.activation} feed-forward net, "
          f"sigma_b^2 = {args.sigma_b2:g}")
    if sw2_crit is None:
        print(f"  critical sigma_w^2: not found ({crit_msg})")
    else:
        print(f"  critical sigma_w^2 = {sw2_crit:.10g}  "
              f"(q* there = {fmt(result['q_star_critical'])})")
    if sw2 is not None:
        where = "the critical point" if args.sigma_w2 is None else f"sigma_w^2 = {sw2:g}"
        if "q_star" in result and result["q_star"] is not None:
            print(f"  at {where}: q* = {fmt(result['q_star'])}, c* = {fmt(result['c_star'])}, "
                  f"chi_1 = {fmt(result['chi_1'])} ({result['phase']})")
            print(f"  depth scales: xi_q = {fmt(result['xi_q'])}, xi_c = {fmt(result['xi_c'])}")
        else:
            print(f"  at {where}: {result.get('status')}")
    if args.out:
        print(f"  phase diagram written to {args.out}")
    return exit_code


def cmd_resnet_meanfield(args) -> int:
    """Yang-Schoenholz residual mean field: trajectories and fitted vs derived exponents."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres import resnet_meanfield as rmf

    _check_variances(args, "sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2")
    act = rmf.resolve_activation(args.activation, args.alpha)
    K0 = parse_matrix(args.k0)
    hyper = rmf.ResHyper(args.sigma_w2, args.sigma_b2, args.sigma_v2, args.sigma_a2)
    traj = rmf.resnet_meanfield(args.kind, args.depth, hyper, act, K0)
    result = {
        "kind": args.kind,
        "activation": act.name,
        "depth": args.depth,
        "parameters": {"sigma_w2": args.sigma_w2, "sigma_b2": args.sigma_b2,
                       "sigma_v2": args.sigma_v2, "sigma_a2": args.sigma_a2,
                       "alpha": args.alpha, "k0": K0.tolist()},
        "trajectories": {
            "layer": list(range(args.depth + 1)),
            **{k: [_eoc_float(x) for x in np.asarray(getattr(traj, k))]
               for k in ("p", "p2", "gamma", "e", "s", "q", "log_chi_ratio")},
        },
    }
    laws, fits, note = {}, {}, None
    try:
        laws = rmf.asymptotic_laws(args.kind, act, hyper)
    except ValueError as e:  # no derived law for this activation: trajectories only
        note = str(e)
    if laws and args.depth >= 20:
        fits = rmf.fit_laws(traj, laws)
    result["laws"] = {
        k: {"quantity": law.quantity, "form": law.form, "exponent_derived": law.exponent,
            "coefficient_derived": _eoc_float(law.coefficient),
            "limit": _eoc_float(law.limit), "note": law.note,
            "exponent_fitted": _eoc_float(fits[k].exponent) if k in fits else None,
            "exponent_fitted_se": _eoc_float(fits[k].stderr) if k in fits else None,
            "fit_layers": [fits[k].l_min, fits[k].l_max] if k in fits else None}
        for k, law in laws.items()
    }
    if note:
        result["laws_note"] = note
    if args.out:
        rmf.plot_laws(traj, laws, fits, title=f"{args.kind} residual net, {act.name}",
                      out=args.out)
        result["figure"] = str(args.out)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    L = args.depth
    print(f"Mean field of a {args.kind} residual network ({act.name}), depth {L}")
    print(f"  layer L: p = {float(traj.p[-1]):.6g}, e = {float(traj.e[-1]):.6g}, "
          f"s = {float(traj.s[-1]):.6g}, log chi0/chiL = {float(traj.log_chi_ratio[-1]):.6g}")
    if note:
        print(f"  {note}")
    for d in result["laws"].values():
        fitted = ("—" if d["exponent_fitted"] is None else
                  f"{d['exponent_fitted']:.5g} ± {d['exponent_fitted_se']:.2g}")
        print(f"  {d['quantity']:>4} ({d['form']}): derived {d['exponent_derived']:.5g}, "
              f"fitted {fitted}   [{d['note']}]")
    if args.out:
        print(f"  figure written to {args.out}")
    return 0


def cmd_jacobian_spectrum(args) -> int:
    """Universal Jacobian spectrum (Tarnowski et al. 2019) vs an empirical finite ResNet."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres import spectra

    act = spectra.spectral_activation(args.activation)
    for name in ("width", "n_networks"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("sigma_w2", "k0"):
        v = getattr(args, name)
        if not math.isfinite(v) or v <= 0:
            raise CLIError(f"--{name.replace('_', '-')} must be positive and finite, got {v}")
    _check_variances(args, "sigma_b2")
    if args.rho is not None and args.c_target is not None:
        raise CLIError("give either --rho or --c-target, not both")
    common = dict(sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2, k0=args.k0,
                  architecture=args.architecture)
    if args.c_target is not None:
        if not math.isfinite(args.c_target) or args.c_target <= 0:
            raise CLIError(f"--c-target must be positive and finite, got {args.c_target}")
        rho = spectra.equalising_rho(act, args.depth, args.c_target, **common)
    else:
        rho = 1.0 / math.sqrt(args.depth) if args.rho is None else args.rho
        if not math.isfinite(rho) or rho <= 0:
            raise CLIError(f"--rho must be positive and finite, got {rho}")
    ec = spectra.effective_cumulant(act, args.depth, rho, **common)
    c = float(ec.c)
    lam = spectra.jacobian_spectrum(jax.random.PRNGKey(args.seed), act, args.depth, args.width,
                                    rho, weights=args.weights, n_networks=args.n_networks,
                                    **common)
    lo, hi = spectra.spectrum_edges(c)
    ks = spectra.ks_distance(lam, c)
    result = {
        "effective_cumulant": c,
        "ks_distance": ks,
        "ks_threshold_iid": spectra.ks_threshold(args.width),
        "condition_number": spectra.condition_number(c),
        "condition_number_empirical": float(np.sqrt(lam[-1] / lam[0])),
        "spectrum_edges": [lo, hi],
        "spectrum_edges_empirical": [float(lam[0]), float(lam[-1])],
        "mean_sv2": {"empirical": float(lam.mean()), "finite_depth": float(ec.mean_sv2),
                     "universal": math.exp(c)},
        "relative_variance": {
            "empirical": float(lam.var() / lam.mean() ** 2),
            "finite_depth": float(ec.relvar_gaussian if args.weights == "gaussian"
                                  else ec.relvar_orthogonal),
            "universal": 2.0 * c,
        },
        "rho": rho,
        "tarnowski_sigma2": float(spectra.tarnowski_sigma2(rho, args.sigma_w2, args.depth)),
        "parameters": {
            "activation": act.name, "depth": args.depth, "width": args.width,
            "n_networks": args.n_networks, "weights": args.weights,
            "architecture": args.architecture, "sigma_w2": args.sigma_w2,
            "sigma_b2": args.sigma_b2, "k0": args.k0, "seed": args.seed,
            "c_target": args.c_target,
        },
    }
    if args.out:
        fig = spectra.plot_spectrum(lam, c, out=args.out,
                                    label=f"{act.name}, N = {args.width}, L = {args.depth}")
        import matplotlib.pyplot as plt

        plt.close(fig)
        result["figure"] = str(args.out)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Jacobian spectrum of a {act.name} ResNet ({args.architecture}), L = {args.depth}, "
          f"N = {args.width}, {args.weights} weights, rho = {rho:.6g} "
          f"(Tarnowski sigma^2 = {result['tarnowski_sigma2']:.6g})")
    print(f"  effective cumulant c = {c:.6g}; universal support [{lo:.4g}, {hi:.4g}], "
          f"condition number {result['condition_number']:.4g} "
          f"(empirical {result['condition_number_empirical']:.4g})")
    print(f"  KS distance to the universal law: {ks:.4f} "
          f"(i.i.d. 99.9% bound for N values: {result['ks_threshold_iid']:.4f})")
    print(f"  mean squared singular value: empirical {lam.mean():.5g}, finite depth "
          f"{float(ec.mean_sv2):.5g}, universal e^c = {math.exp(c):.5g}")
    if args.out:
        print(f"  figure written to {args.out}")
    return 0


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

    # --- commands of the finite-width module (issue 3) go here ---
    for name, func, hlp in (
        ("nlo", cmd_nlo, "1/N theory: NLO mean and N Cov of C^(L), K^(L) and the output kernel"),
        ("simulate", cmd_simulate, "Monte Carlo of finite networks: the same statistics with "
                                   "standard errors"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--depth", "-L", type=int, default=10, help="number of hidden layers")
        s.add_argument("--rho", type=float, default=0.3, help="residual scaling")
        s.add_argument("--width", "-N", type=int, default=100, help="network width N")
        s.add_argument("--feedforward", action="store_true", help="feed-forward net (no skips)")
        if name == "simulate":
            s.add_argument("--n-networks", type=int, default=20000,
                           help="number of simulated networks")
            s.add_argument("--seed", type=int, default=0, help="random seed")
            s.add_argument("--method", choices=["sampler", "full"], default="sampler",
                           help="O(N P^2) kernel sampler or explicit N x N weights")
            s.add_argument("--batch-size", type=int, default=2048, help="networks per batch")
        _add_network_args(s, rho_search=False)
        s.set_defaults(func=func)

    # --- commands of Bayesian training (issue 4) go here ---
    s = sub.add_parser("train", help="Bayesian (Langevin) training on CIFAR-10/MNIST subsets")
    s.add_argument("--preset", choices=["smoke", "small"],
                   help="smoke: under a minute on 2 cores; small: the defaults")
    s.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist"])
    s.add_argument("--classes", nargs="+", default=["dog", "airplane"],
                   help="class names (default: dog airplane; two give ±1 labels)")
    s.add_argument("--n-train", type=int, help="training examples (default 100)")
    s.add_argument("--n-test", type=int, help="test examples (default 500)")
    s.add_argument("--k0-scale", type=float, default=0.05,
                   help="rescale inputs so that the mean diagonal of K0 is this value")
    s.add_argument("--data-dir", help="dataset folder (else $FIELDRES_DATA_DIR or ../shared/data)")
    s.add_argument("--depth", "-L", type=int, help="residual layers (default 10)")
    s.add_argument("--rho", type=float, help="residual scaling (default 0.3)")
    s.add_argument("--width", "-N", type=int, help="hidden width (default 64)")
    s.add_argument("--activation", default="erf", help="erf | relu | tanh | linear")
    s.add_argument("--sigma-w2", type=float, default=1.25, help="hidden weight variance")
    s.add_argument("--sigma-b2", type=float, default=0.05, help="hidden bias variance")
    s.add_argument("--sigma-w2-out", type=float, default=1.25, help="readout weight variance")
    s.add_argument("--sigma-b2-out", type=float, default=0.05, help="readout bias variance")
    s.add_argument("--likelihood", default="gaussian", choices=["gaussian", "softmax"])
    s.add_argument("--noise", type=float, default=0.1,
                   help="variance T of the Gaussian likelihood y ~ N(f(x), T) (default 0.1)")
    s.add_argument("--temperature", type=float, default=1.0, help="posterior temperature")
    s.add_argument("--sampler", choices=["mala", "ula", "sgld"], help="default mala")
    s.add_argument("--steps", type=int, help="total Langevin steps incl. burn-in (default 1000)")
    s.add_argument("--burn-in", type=int, help="default: half of --steps")
    s.add_argument("--thin", type=int, help="keep every THIN-th step (default: ~100 samples)")
    s.add_argument("--step-size", type=float, default=1e-3,
                   help="initial step size (MALA adapts it during burn-in)")
    s.add_argument("--batch-size", type=int, help="SGLD mini-batch size (default 32)")
    s.add_argument("--n-chains", type=int, help="independent chains (default 2)")
    s.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the sampling (default float32)")
    s.add_argument("--seed", type=int, default=0, help="seed of data selection and chains")
    s.add_argument("--save", help="checkpoint file (.npz) written during the run")
    s.add_argument("--resume", action="store_true", help="continue from --save if it exists")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_train)


    # --- commands of the signal-propagation toolkit (issue 5) go here ---
    s = sub.add_parser("edge-of-chaos",
                       help="feed-forward mean field: q*, c*, chi_1, xi_c, critical sigma_w^2")
    s.add_argument("--activation", default="tanh", help="tanh | erf | relu | linear (default tanh)")
    s.add_argument("--sigma-b2", type=float, default=0.05, help="bias variance (default 0.05)")
    s.add_argument("--sigma-w2", type=float,
                   help="weight variance for q*, c*, xi_q, xi_c (default: the critical one)")
    s.add_argument("--out", help="write the phase diagram (xi_c heat map, PNG/PDF)")
    s.add_argument("--grid", type=int, default=30, help="sigma_w^2 points of the diagram")
    s.add_argument("--sigma-w2-range", type=float, nargs=2, default=[0.5, 4.0],
                   metavar=("MIN", "MAX"), help="sigma_w^2 range of the diagram")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_edge_of_chaos)

    s = sub.add_parser("resnet-meanfield",
                       help="Yang-Schoenholz residual mean field: p, e, s, chi and their laws")
    s.add_argument("--activation", default="tanh",
                   help="tanh | erf | relu | alpha-relu (with --alpha) (default tanh)")
    s.add_argument("--alpha", type=float, help="exponent of alpha-relu, max(x, 0)^alpha")
    s.add_argument("--kind", choices=["full", "reduced"], default="full",
                   help="full (two weight layers per block) or reduced residual net")
    s.add_argument("--depth", "-L", type=int, default=1000, help="number of residual blocks")
    s.add_argument("--sigma-w2", type=float, default=1.0, help="weight variance sigma_w^2")
    s.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance sigma_b^2")
    s.add_argument("--sigma-v2", type=float, default=1.0, help="FRN output weights sigma_v^2")
    s.add_argument("--sigma-a2", type=float, default=0.0, help="FRN output biases sigma_a^2")
    s.add_argument("--k0", default="1,0.5;0.5,1",
                   help="kernel of the two inputs x^(0) as 'a,b;b,c' (default '1,0.5;0.5,1')")
    s.add_argument("--out", help="write the log-log figure with the derived slopes")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_resnet_meanfield)

    s = sub.add_parser("jacobian-spectrum",
                       help="universal Jacobian spectrum vs a finite ResNet (Tarnowski et al.)")
    s.add_argument("--activation", default="tanh",
                   help="linear | relu | leaky_relu[:SLOPE] | hard_tanh | tanh | erf | sigmoid "
                        "| selu (default tanh)")
    s.add_argument("--depth", "-L", type=int, default=50, help="number of residual blocks")
    s.add_argument("--width", "-N", type=int, default=1000, help="width N of the simulated net")
    s.add_argument("--rho", type=float, help="residual scaling (default 1/sqrt(depth))")
    s.add_argument("--c-target", type=float,
                   help="choose rho so that the effective cumulant is this value "
                        "(equalising initialisation)")
    s.add_argument("--sigma-w2", type=float, default=1.0, help="branch weight variance")
    s.add_argument("--sigma-b2", type=float, default=0.0, help="branch bias variance")
    s.add_argument("--k0", type=float, default=1.0, help="input variance")
    s.add_argument("--weights", choices=["gaussian", "orthogonal"], default="gaussian")
    s.add_argument("--architecture", choices=["fieldres", "tarnowski"], default="fieldres",
                   help="fieldres: h <- h + rho (W phi(h) + b); tarnowski: "
                        "x <- x + phi(rho W x + b)")
    s.add_argument("--n-networks", type=int, default=1, help="networks pooled (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="write the histogram figure (PNG/PDF)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_jacobian_spectrum)

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
