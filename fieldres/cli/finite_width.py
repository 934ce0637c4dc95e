"""Commands of the finite-width theory: nlo, simulate (and rho-star --width's part)."""

from __future__ import annotations

import numpy as np

from ._common import (
    MAX_DEPTH_FINITE_WIDTH,
    MIN_WIDTH_NLO,
    CLIError,
    _add_network_args,
    _finite_or_none,
    _fmt_matrix,
    _params,
    _setup,
    add_preset,
    apply_preset,
    check_float,
    check_int,
    check_network,
    emit_json,
)

#: ``simulate --preset``: how many networks are simulated.
SIMULATE_SIZES = {"smoke": dict(n_networks=2000), "default": dict(n_networks=20_000),
                  "paper": dict(n_networks=1_000_000)}

#: Most simulated networks of one ``simulate`` run, and the largest width of ``--method full``
#: (explicit N x N weight matrices).
MAX_NETWORKS = 10_000_000
MAX_WIDTH_FULL = 4096


#: Deepest ReLU network of the 1/N theory: a piecewise-linear activation uses the pairs
#: method (kink-aligned quadrature for every pair of layers), O(L^2) in the depth.
MAX_DEPTH_NLO_RELU = 50


def _check_width_nlo(args) -> None:
    """The 1/N theory: a width where the expansion means something; for ReLU a depth that
    the pairs method (O(L^2) layer pairs) computes in reasonable time."""
    check_int(args, "width", MIN_WIDTH_NLO,
              why="the 1/N expansion of the finite-width theory means nothing at N = 1")
    if args.activation == "relu":
        check_int(args, "depth", 1, MAX_DEPTH_NLO_RELU,
                  why="the 1/N theory of ReLU integrates every pair of layers, O(L^2)")


def check_nlo(args) -> None:
    """Every argument of ``nlo`` / ``simulate``, before any computation."""
    check_int(args, "depth", 1, MAX_DEPTH_FINITE_WIDTH,
              why="the finite-width statistics cost O(L) per layer pair")
    K0 = check_network(args)
    if K0.shape[0] > 4:
        raise CLIError(f"{args.command} prints every entry for at most 4 inputs; --k0 has "
                       f"{K0.shape[0]}")
    if args.feedforward and args.rho is not None:
        raise CLIError("--rho is not used with --feedforward (a feed-forward net has no "
                       "residual branch)")
    if args.rho is None:
        args.rho = 0.3
    check_float(args, "rho", lo=0.0)
    if args.command == "nlo":
        _check_width_nlo(args)
        return
    apply_preset(args)
    check_int(args, "width", 1, MAX_WIDTH_FULL if args.method == "full" else 10**7,
              why="--method full stores N x N weights" if args.method == "full" else "")
    check_int(args, "n_networks", 2, MAX_NETWORKS)
    check_int(args, "batch_size", 1, MAX_NETWORKS)
    check_int(args, "seed", 0)


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


# --- rho-star --width: rho*(N) for every input and pair of K0 (issue 14) ---------------
def _rho_star_width(args, hyper, K0) -> dict:
    """rho*(inf) and rho*(N) to O(1/N) for every diagonal entry and every pair of K0
    (``rho-star --width``), averaged over the inputs and over the pairs as the leading-order
    rho* is.

    An entry counts only where its 1/N correction is small (``|chi_1 / N| < |chi_inf|`` and
    ``|ln rho*(N) - ln rho*(inf)| < 1``); where no entry of a kind qualifies, its
    ``rho_star_N`` is null and ``status`` says why.
    """
    from fieldres.finite_width import rho_star_width_entries

    N = args.width
    P = K0.shape[0]
    n_pairs = P * (P - 1) // 2
    # measured (docs/finite_width.md): ~0.25 L CPU seconds per pair after compilation
    est = 0.25 * args.depth * n_pairs / 2.0
    if est > 60.0:
        from ._common import warn

        warn(f"rho*(N) for {n_pairs} pairs at depth {args.depth} takes about "
             f"{est / 60:.0f} min on 2 cores (fewer --n-inputs or a smaller --depth is faster)")
    res = rho_star_width_entries(K0, args.depth, hyper, args.activation,
                                 rho_range=(args.rho_min, args.rho_max))
    summ = res.summary(N)
    valid = res.valid(N)
    rN = res.rho_star(N)
    out = {"width": N}
    detail = {}
    for kind, diag in (("diagonal", True), ("offdiagonal", False)):
        sel = [k for k, (a, b) in enumerate(res.entries) if (a == b) == diag]
        d = summ[kind]
        if not sel:
            status = "needs at least two inputs (P >= 2) for an off-diagonal response"
        elif d["n_valid"] == d["n_entries"]:
            status = "ok"
        else:
            k = next(k for k in sel if not valid[k])
            a, b = res.entries[k]
            why = ("no optimum at leading order" if int(res.status[k]) != 0 else
                   f"the 1/N correction is not small at N = {N} (chi_1/N = "
                   f"{float(res.chi_1[k]) / N:.3g} vs chi_inf = {float(res.chi_inf[k]):.4g}, "
                   f"ln-shift {float(res.shift[k]) / N:.3g}): the expansion does not hold; "
                   f"use a larger --width")
            status = (f"ok for {d['n_valid']} of {d['n_entries']} entries; entry {(a, b)}: "
                      f"{why}" if d["n_valid"] else f"entry {(a, b)}: {why}")
        out[f"rho_star_{kind}_N"] = d["rho_star_N"]

        def per(x, only_valid=False, sel=sel):
            return [None if (only_valid and not valid[k]) else _finite_or_none(x[k])
                    for k in sel]

        c0 = np.asarray(res.chi_inf)
        c1 = np.asarray(res.chi_1)
        vs = np.asarray([k for k in sel if valid[k]], int)
        detail[kind] = {
            "n_entries": d["n_entries"],
            "n_valid": d["n_valid"],
            "entries": [list(res.entries[k]) for k in sel],
            "rho_star_inf": d["rho_star_inf"],
            "rho_star_inf_valid": d["rho_star_inf_same"],
            "rho_star_N": d["rho_star_N"],
            "shift": (None if d["rho_star_N"] is None
                      else d["rho_star_N"] - d["rho_star_inf_same"]),
            "log_shift_times_N": d["log_shift_times_N"],
            "chi_out_inf": float(c0[vs].mean()) if len(vs) else None,
            "chi_out_1": float(c1[vs].mean()) if len(vs) else None,
            "chi_out_max_N": d["chi_out_max_N"],
            "rho_star_inf_per_entry": per(np.asarray(res.rho_star_inf)),
            "rho_star_N_per_entry": per(rN, True),
            "log_shift_times_N_per_entry": per(np.asarray(res.shift)),
            "chi_out_1_per_entry": per(c1),
            "status": status,
        }
    out["finite_width"] = detail
    out["finite_width_inputs"] = P
    return out


def _print_rho_star_width(result) -> None:
    N = result["width"]
    print(f"  finite width N = {N} (1/N theory; rho*(N) = rho*(inf) exp(c / N) per entry, "
          f"averaged like rho*):")
    for kind, d in result["finite_width"].items():
        n = d["n_entries"]
        what = (f"{n} input{'s' * (n != 1)}" if kind == "diagonal"
                else f"{n} pair{'s' * (n != 1)}")
        label = "diagonal    " if kind == "diagonal" else "off-diagonal"
        if d["rho_star_N"] is None:
            print(f"    {label} ({what}): {d['status']}")
            continue
        extra = "" if d["status"] == "ok" else f"  [{d['status']}]"
        print(f"    {label} ({what}): rho*(inf) = {d['rho_star_inf_valid']:.9f}, "
              f"rho*(N) = {d['rho_star_N']:.9f}, shift {d['shift']:+.3e} "
              f"(c = {d['log_shift_times_N']:.4g}); max chi_out = {d['chi_out_inf']:.6g} "
              f"{d['chi_out_1']:+.4g}/N{extra}")
# --- end rho-star --width ---------------------------------------------------------------


def cmd_nlo(args) -> int:
    fr, hyper, K0 = _setup(args)
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
    result["status"] = "ok"
    result["parameters"] = _nlo_params(args, K0)
    if args.json:
        emit_json(result, args)
        return 0
    arch = "feed-forward net" if args.feedforward else f"ResNet (rho = {args.rho:g})"
    _print_nlo_text(result, f"1/N theory of a depth-{args.depth} {args.activation} {arch}, "
                            f"width N = {N}, K0 = {_fmt_matrix(K0)}")
    return 0


def cmd_simulate(args) -> int:
    fr, hyper, K0 = _setup(args)
    import jax

    from fieldres.simulation import simulate_nlo

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
    result["status"] = "ok"
    result["parameters"] = _nlo_params(args, K0) | {"seed": args.seed}
    if args.json:
        emit_json(result, args)
        return 0
    arch = "feed-forward nets" if args.feedforward else f"ResNets (rho = {args.rho:g})"
    _print_nlo_text(result, f"Monte Carlo of {args.n_networks} depth-{args.depth} "
                            f"{args.activation} {arch}, width N = {args.width} "
                            f"({args.method}), K0 = {_fmt_matrix(K0)}", se=True)
    return 0


# --- command functions of Bayesian training (issue 4) go here ---


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    # --- commands of the finite-width module (issue 3) go here ---
    for name, func, hlp in (
        ("nlo", cmd_nlo, "1/N theory: NLO mean and N Cov of C^(L), K^(L) and the output kernel"),
        ("simulate", cmd_simulate, "Monte Carlo of finite networks: the same statistics with "
                                   "standard errors"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--depth", "-L", type=int, default=10, help="number of hidden layers")
        s.add_argument("--rho", type=float, default=None, help="residual scaling (default 0.3)")
        s.add_argument("--width", "-N", type=int, default=100, help="network width N")
        s.add_argument("--feedforward", action="store_true", help="feed-forward net (no skips)")
        if name == "simulate":
            s.add_argument("--n-networks", type=int, default=None,
                           help="number of simulated networks (default: the preset's)")
            add_preset(s, SIMULATE_SIZES)
            s.add_argument("--seed", type=int, default=0, help="random seed")
            s.add_argument("--method", choices=["sampler", "full"], default="sampler",
                           help="O(N P^2) kernel sampler or explicit N x N weights")
            s.add_argument("--batch-size", type=int, default=2048, help="networks per batch")
        _add_network_args(s, rho_search=False)
        s.set_defaults(func=func, check=check_nlo)

