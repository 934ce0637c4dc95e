"""Commands of the mean-field toolkit: edge-of-chaos, resnet-meanfield, jacobian-spectrum."""

from __future__ import annotations

import math

import numpy as np

from ..defaults import Hyper
from ._common import (
    MAX_DEPTH_MEANFIELD,
    CLIError,
    _check_variances,
    add_preset,
    apply_preset,
    check_activation,
    check_float,
    check_int,
    check_out,
    check_range,
    emit_json,
    parse_kernel,
    parse_matrix,
)

_DEFAULT_SIGMA_B2 = float(Hyper().sigma_b2)  # the one default bias variance (defaults.py)

#: Largest simulated width and depth of ``jacobian-spectrum`` (one N x N product per layer,
#: an N x N singular-value decomposition per network).
MAX_WIDTH_SPECTRUM = 4096
MAX_DEPTH_SPECTRUM = 10_000
MAX_NETWORKS_SPECTRUM = 1000
#: ``jacobian-spectrum --preset``: the simulated network sizes.
SPECTRUM_SIZES = {"smoke": dict(depth=10, width=100, n_networks=1),
                  "default": dict(depth=50, width=1000, n_networks=1),
                  "paper": dict(depth=50, width=1000, n_networks=4)}


def check_edge_of_chaos(args) -> None:
    """Every argument of ``edge-of-chaos``, before any computation."""
    check_activation(args.activation)
    _check_variances(args, "sigma_b2", "sigma_w2")
    if args.out is None:
        for name, default in (("grid", 30), ("sigma_w2_range", [0.5, 4.0])):
            if getattr(args, name) is not None:
                raise CLIError(f"--{name.replace('_', '-')} only shapes the phase diagram; "
                               f"give --out FILE too")
            setattr(args, name, default)
        return
    if args.grid is None:
        args.grid = 30
    if args.sigma_w2_range is None:
        args.sigma_w2_range = [0.5, 4.0]
    check_int(args, "grid", 3, 400, why="the diagram costs grid^2 fixed points")
    lo, hi = args.sigma_w2_range
    ns = type("R", (), {"sigma_w2_min": lo, "sigma_w2_max": hi})()
    try:
        check_range(ns, "sigma_w2_min", "sigma_w2_max")
    except CLIError as e:
        raise CLIError(f"--sigma-w2-range MIN MAX: {e}".replace("--sigma-w2-min", "MIN")
                       .replace("--sigma-w2-max", "MAX")) from None
    check_out(args.out)


def check_resnet_meanfield(args) -> None:
    """Every argument of ``resnet-meanfield``, before any computation."""
    from fieldres.meanfield import residual as rmf

    _check_variances(args, "sigma_w2", "sigma_b2", "sigma_v2", "sigma_a2")
    check_int(args, "depth", 1, MAX_DEPTH_MEANFIELD)
    if args.alpha is not None and args.activation != "alpha-relu":
        raise CLIError("--alpha is only used with --activation alpha-relu")
    if args.activation == "alpha-relu":
        if args.alpha is None:
            raise CLIError("--activation alpha-relu needs --alpha (the exponent)")
        check_float(args, "alpha", lo=0.0, lo_open=True)
    try:
        rmf.resolve_activation(args.activation, args.alpha)
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(" ".join(str(e).split())) from e
    K0 = parse_kernel(args.k0)
    if K0.shape != (2, 2):
        raise CLIError(f"--k0 must be the 2 x 2 kernel of two inputs, got {K0.shape[0]} x "
                       f"{K0.shape[1]}")
    check_out(args.out)


def check_jacobian_spectrum(args) -> None:
    """Every argument of ``jacobian-spectrum``, before any computation."""
    from fieldres.meanfield import spectra

    try:
        spectra.spectral_activation(args.activation)
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(" ".join(str(e).split())) from e
    apply_preset(args)
    check_int(args, "depth", 1, MAX_DEPTH_SPECTRUM)
    check_int(args, "width", 1, MAX_WIDTH_SPECTRUM, why="one N x N SVD per network")
    check_int(args, "n_networks", 1, MAX_NETWORKS_SPECTRUM)
    check_int(args, "seed", 0)
    for name in ("sigma_w2", "k0"):
        check_float(args, name, lo=0.0, lo_open=True)
    _check_variances(args, "sigma_b2")
    if args.rho is not None and args.c_target is not None:
        raise CLIError("give either --rho or --c-target, not both")
    check_float(args, "rho", lo=0.0, lo_open=True)
    check_float(args, "c_target", lo=0.0, lo_open=True)
    check_out(args.out)


def _eoc_float(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _diverging(x) -> str:
    """``"diverges"`` for an infinite mean-field quantity, ``"finite"`` otherwise."""
    return "diverges" if math.isinf(float(x)) else "finite"


def _phase(status: int, chi_1: float) -> str:
    from fieldres.status import Status

    if status == Status.CRITICAL:
        return "critical"
    if status == Status.NO_FIXED_POINT:
        return "no fixed point"
    if status != Status.OK:
        return "not converged"
    return "chaotic" if chi_1 > 1.0 else "ordered"


def cmd_edge_of_chaos(args) -> int:
    """Feed-forward mean field: q*, c*, chi_1, xi_q, xi_c and sigma_w,crit^2(sigma_b^2).

    Quantities that diverge (``xi_c`` and ``xi_q`` at criticality, ``q*`` of ReLU at its
    critical point) are JSON ``null`` with ``"<name>_status": "diverges"`` and print as
    ``diverges``; exit 1 only where the mean field has no fixed point or a solver failed.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres.kernels.activations import get_activation
    from fieldres.meanfield import feedforward as mf
    from fieldres.status import is_success

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
        "q_star_critical_status": _diverging(crit.q_star) if sw2_crit is not None else None,
        "critical_status": crit_msg,
        "sigma_w2": sw2,
    }
    exit_code = 0 if sw2_crit is not None else 1
    ok = False
    if sw2 is not None:
        r = mf.mean_field(sw2, args.sigma_b2, args.activation)
        st = int(r.status)
        ok = bool(is_success(st))
        result.update({
            "q_star": _eoc_float(r.q_star),
            "c_star": _eoc_float(r.c_star),
            "chi_1": _eoc_float(r.chi_1),
            "chi_c": _eoc_float(r.chi_c),
            "xi_q": _eoc_float(r.xi_q),
            "xi_c": _eoc_float(r.xi_c),
            "phase": _phase(st, float(r.chi_1)),
            "status": str(r.messages().ravel()[0]),
            "status_code": st,
        })
        if ok:
            result.update({f"{k}_status": _diverging(getattr(r, k))
                           for k in ("q_star", "xi_q", "xi_c")})
        else:
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
        emit_json(result, args)
        return exit_code

    def fmt(x):
        return "diverges" if x is None else f"{x:.8g}"

    print(f"Edge of chaos of a deep {args.activation} feed-forward net, "
          f"sigma_b^2 = {args.sigma_b2:g}")
    if sw2_crit is None:
        print(f"  critical sigma_w^2: not found ({crit_msg})")
    else:
        q_crit = result["q_star_critical"]
        q_text = "diverges" if q_crit is None else f"= {fmt(q_crit)}"
        print(f"  critical sigma_w^2 = {sw2_crit:.10g}  (q* there {q_text})")
    if sw2 is not None:
        where = "the critical point" if args.sigma_w2 is None else f"sigma_w^2 = {sw2:g}"
        if ok:
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
    from fieldres.meanfield import residual as rmf

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
        emit_json(result, args)
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
    from fieldres.meanfield import spectra

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
        emit_json(result, args)
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


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    # --- commands of the signal-propagation toolkit (issue 5) go here ---
    s = sub.add_parser("edge-of-chaos",
                       help="feed-forward mean field: q*, c*, chi_1, xi_c, critical sigma_w^2")
    s.add_argument("--activation", default="tanh", help="tanh | erf | relu | linear (default tanh)")
    s.add_argument("--sigma-b2", type=float, default=_DEFAULT_SIGMA_B2,
                   help=f"bias variance (default {_DEFAULT_SIGMA_B2:g}, fieldres.Hyper's)")
    s.add_argument("--sigma-w2", type=float,
                   help="weight variance for q*, c*, xi_q, xi_c (default: the critical one)")
    s.add_argument("--out", help="write the phase diagram (xi_c heat map, PNG/PDF)")
    s.add_argument("--grid", type=int, default=None,
                   help="sigma_w^2 points of the diagram (with --out; default 30)")
    s.add_argument("--sigma-w2-range", type=float, nargs=2, default=None,
                   metavar=("MIN", "MAX"),
                   help="sigma_w^2 range of the diagram (with --out; default 0.5 4)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_edge_of_chaos, check=check_edge_of_chaos)

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
    s.set_defaults(func=cmd_resnet_meanfield, check=check_resnet_meanfield)

    s = sub.add_parser("jacobian-spectrum",
                       help="universal Jacobian spectrum vs a finite ResNet (Tarnowski et al.)")
    s.add_argument("--activation", default="tanh",
                   help="linear | relu | leaky_relu[:SLOPE] | hard_tanh | tanh | erf | sigmoid "
                        "| selu (default tanh)")
    s.add_argument("--depth", "-L", type=int, default=None,
                   help="number of residual blocks (default: the preset's)")
    s.add_argument("--width", "-N", type=int, default=None,
                   help="width N of the simulated net (default: the preset's)")
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
    s.add_argument("--n-networks", type=int, default=None,
                   help="networks pooled (default: the preset's)")
    add_preset(s, SPECTRUM_SIZES)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", help="write the histogram figure (PNG/PDF)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_jacobian_spectrum, check=check_jacobian_spectrum)
