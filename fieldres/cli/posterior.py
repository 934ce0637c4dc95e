"""The posterior command: the infinite-width Bayesian posterior of the ResNet on data."""

from __future__ import annotations

import json
import math
import sys
import time

from ._common import CLIError, _check_variances, _finite_or_none

_DEFAULTS = dict(n_train=500, n_test=1000, noise=1e-3, k0_scale=0.05, max_pairs=1000)


def _rho_value(text: str):
    if text == "evidence":
        return text
    try:
        v = float(text)
    except ValueError as e:
        raise CLIError(f"--rho must be a number or 'evidence', got {text!r}") from e
    if not math.isfinite(v) or v <= 0:
        raise CLIError(f"--rho must be positive and finite, got {text}")
    return v


def _classes(values) -> tuple[str, ...]:
    out = tuple(c for v in values for c in v.split(",") if c)
    if not out:
        raise CLIError("--classes needs at least one class name")
    return out


def _clean(x):
    """NaN / inf to None, recursively, for strict JSON."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float):
        return _finite_or_none(x)
    return x


def _metrics(r) -> dict:
    return dict(test_error=float(r.test_error), test_mse=float(r.test_mse),
                train_mse=float(r.train_mse), log_evidence=float(r.log_evidence),
                kernel_alignment=float(r.kernel_alignment))


def cmd_posterior(args) -> int:
    """GP-limit posterior (test error, MSE, log evidence, alignment) at one rho or a scan."""
    t0 = time.perf_counter()
    if args.width is not None:
        raise CLIError("--width: the finite-width posterior is not implemented yet for data "
                       "sets (the 1/N theory, fieldres.bayes.posterior_nlo, covers at most 4 "
                       "inputs); omit --width for the infinite-width (GP) posterior")
    for name in ("n_train", "n_test"):
        if getattr(args, name) < (2 if name == "n_train" else 1):
            raise CLIError(f"--{name.replace('_', '-')} must be >= "
                           f"{2 if name == 'n_train' else 1}, got {getattr(args, name)}")
    if not (math.isfinite(args.noise) and args.noise > 0):
        raise CLIError(f"--noise T must be a positive finite number, got {args.noise}")
    if not (math.isfinite(args.k0_scale) and args.k0_scale > 0):
        raise CLIError(f"--k0-scale must be a positive finite number, got {args.k0_scale}")
    if args.rho_factor is not None and not (math.isfinite(args.rho_factor)
                                            and args.rho_factor > 0):
        raise CLIError(f"--rho-factor must be positive and finite, got {args.rho_factor}")
    if args.max_pairs < 1:
        raise CLIError(f"--max-pairs must be >= 1, got {args.max_pairs}")
    _check_variances(args, "sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out")
    rho_opt = None if args.rho is None else _rho_value(args.rho)
    classes = _classes(args.classes)

    import jax

    jax.config.update("jax_enable_x64", True)
    import fieldres as fr
    from fieldres.bayes import posterior as po

    act = fr.get_activation(args.activation)
    hyper = fr.Hyper(args.sigma_w2, args.sigma_b2, args.sigma_w2_out, args.sigma_b2_out)
    ds = fr.make_dataset(args.dataset, classes=classes, n_train=args.n_train,
                         n_test=args.n_test, seed=args.seed, data_dir=args.data_dir,
                         k0_scale=args.k0_scale)
    K0 = fr.input_kernel(ds.x_train)
    rs = po.rho_star_data(K0, args.depth, hyper, act, max_pairs=args.max_pairs, seed=args.seed)
    rs_diag, rs_off = rs.rho_star_diagonal, rs.rho_star_offdiagonal
    base = rs_diag if args.rho_factor_of == "diagonal" else rs_off
    needs_rho_star = args.scan or (rho_opt is None)
    if needs_rho_star and not math.isfinite(base):
        raise CLIError(f"rho*_{args.rho_factor_of} does not exist for these inputs (no entry "
                       f"of chi^out has an interior maximum); give --rho R instead")
    out = dict(depth=args.depth, width=None, n_train=ds.n_train, n_test=ds.n_test,
               noise=args.noise, seed=args.seed, dataset=ds.dataset, classes=list(ds.classes),
               activation=args.activation, sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2,
               sigma_w2_out=args.sigma_w2_out, sigma_b2_out=args.sigma_b2_out,
               k0_scale=args.k0_scale, rho_star_diagonal=rs_diag, rho_star_offdiagonal=rs_off,
               rho_star_pairs_averaged=rs.offdiagonal["n_total"], rho_star_pairs=rs.n_pairs)
    post = dict(hyper=hyper, activation=act)
    rc = 0
    if args.scan:
        rows = po.rho_scan(ds.x_train, ds.y_train, ds.x_test, ds.y_test, rho_ref=base,
                           depth=args.depth, noise=args.noise, **post)
        for row in rows:
            row.pop("rho_factor")
            row.update(rho_factor_diagonal=row["rho"] / rs_diag,
                       rho_factor_offdiagonal=row["rho"] / rs_off)
        best = min(range(len(rows)), key=lambda i: rows[i]["test_error"])
        ev_best = max(range(len(rows)), key=lambda i: rows[i]["log_evidence"])
        out.update(scan=[{**row, **{k: out[k] for k in (
            "rho_star_diagonal", "rho_star_offdiagonal", "depth", "width", "n_train", "noise",
            "seed")}} for row in rows],
            argmin_rho_factor_diagonal=rows[best]["rho_factor_diagonal"],
            argmin_rho_factor_offdiagonal=rows[best]["rho_factor_offdiagonal"],
            argmax_evidence_rho_factor_diagonal=rows[ev_best]["rho_factor_diagonal"],
            argmax_evidence_rho_factor_offdiagonal=rows[ev_best]["rho_factor_offdiagonal"])
    else:
        if rho_opt == "evidence":
            grid = [f * rs_diag for f in po.HALF_OCTAVES] if math.isfinite(rs_diag) else None
            ev = po.evidence_optimal_rho(ds.x_train, ds.y_train, depth=args.depth,
                                         noise=args.noise, rho_grid=grid, **post)
            out["evidence"] = dict(status=ev.status.name, message=ev.message)
            if not math.isfinite(ev.rho):
                print(f"fieldres: error: evidence maximisation failed: {ev.message}",
                      file=sys.stderr)
                rho, rc = None, 1
            else:
                rho = ev.rho
        elif rho_opt is not None:
            rho = rho_opt
        else:
            rho = (1.0 if args.rho_factor is None else args.rho_factor) * base
        out["rho"] = rho
        if rho is not None:
            r = po.network_posterior(ds.x_train, ds.y_train, ds.x_test, ds.y_test, rho=rho,
                                     depth=args.depth, noise=args.noise, **post)
            out.update(_metrics(r), rho_factor_diagonal=rho / rs_diag,
                       rho_factor_offdiagonal=rho / rs_off)
    out["seconds"] = time.perf_counter() - t0
    out = _clean(out)
    if args.json:
        print(json.dumps(out, indent=2, allow_nan=False))
        return rc

    def g(x, fmt=".4g"):
        return "n/a" if x is None else f"{x:{fmt}}"

    print(f"GP-limit posterior of a depth-{args.depth} {args.activation} ResNet on "
          f"{ds.dataset} {'/'.join(ds.classes)} (n_train = {ds.n_train}, n_test = {ds.n_test}, "
          f"T = {args.noise:g})")
    print(f"  data rho*: diagonal {g(rs_diag)}, off-diagonal {g(rs_off)} "
          f"({out['rho_star_pairs_averaged']} of {rs.n_pairs} pairs averaged)")
    if args.scan:
        print(f"  {'rho/rho*_diag':>13} {'rho/rho*_off':>12} {'test err':>9} {'test MSE':>9} "
              f"{'train MSE':>10} {'log evid.':>11} {'align.':>7}")
        for row in out["scan"]:
            print(f"  {row['rho_factor_diagonal']:13.3f} {row['rho_factor_offdiagonal']:12.3f} "
                  f"{g(row['test_error'], '.4f'):>9} {g(row['test_mse'], '.4f'):>9} "
                  f"{g(row['train_mse'], '.3g'):>10} {g(row['log_evidence'], '.2f'):>11} "
                  f"{g(row['kernel_alignment'], '.4f'):>7}")
        print(f"  lowest test error at {out['argmin_rho_factor_diagonal']:.3f} rho*_diagonal "
              f"= {out['argmin_rho_factor_offdiagonal']:.3f} rho*_offdiagonal; evidence "
              f"largest at {out['argmax_evidence_rho_factor_diagonal']:.3f} rho*_diagonal")
    elif out["rho"] is not None:
        print(f"  rho = {out['rho']:.5g} = {out['rho_factor_diagonal']:.3f} rho*_diagonal = "
              f"{out['rho_factor_offdiagonal']:.3f} rho*_offdiagonal"
              + (" (evidence maximum)" if rho_opt == "evidence" else ""))
        print(f"  test error {out['test_error']:.4f}, test MSE {out['test_mse']:.4f}, train MSE "
              f"{out['train_mse']:.3g}, log evidence {out['log_evidence']:.3f}, kernel-target "
              f"alignment {out['kernel_alignment']:.4f}")
    print(f"  {out['seconds']:.1f} s")
    return rc


def register(sub) -> None:
    """Add the ``posterior`` command to the ``fieldres`` parser."""
    s = sub.add_parser("posterior", help="infinite-width Bayesian posterior (GP regression with "
                                         "the output kernel) on CIFAR-10/MNIST subsets")
    s.add_argument("--depth", "-L", type=int, required=True, help="residual layers L")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--rho", help="residual scaling R, or 'evidence' (maximise the log "
                                   "evidence over rho by its gradient)")
    how.add_argument("--rho-factor", type=float,
                     help="rho = F rho* of the training inputs (default F = 1)")
    how.add_argument("--scan", action="store_true",
                     help="rho / rho* = 1/8 ... 8 in half-octave steps")
    s.add_argument("--rho-factor-of", choices=["diagonal", "offdiagonal"], default="diagonal",
                   help="which data rho* --rho-factor and --scan refer to (default diagonal)")
    s.add_argument("--width", "-N", type=int,
                   help="finite width (not implemented yet: refused)")
    s.add_argument("--n-train", type=int, default=_DEFAULTS["n_train"],
                   help=f"training examples (default {_DEFAULTS['n_train']})")
    s.add_argument("--n-test", type=int, default=_DEFAULTS["n_test"],
                   help=f"test examples (default {_DEFAULTS['n_test']})")
    s.add_argument("--noise", "-T", type=float, default=_DEFAULTS["noise"],
                   help="variance T of the Gaussian likelihood (default 1e-3)")
    s.add_argument("--dataset", default="cifar10", choices=["cifar10", "mnist"])
    s.add_argument("--classes", nargs="+", default=["dog,airplane"],
                   help="class names, comma- or space-separated (default dog,airplane: ±1 "
                        "targets; more classes: one-hot)")
    s.add_argument("--k0-scale", type=float, default=_DEFAULTS["k0_scale"],
                   help="rescale inputs so that the mean diagonal of K0 is this (default 0.05)")
    s.add_argument("--data-dir", help="dataset folder (else $FIELDRES_DATA_DIR or ../shared/data)")
    s.add_argument("--max-pairs", type=int, default=_DEFAULTS["max_pairs"],
                   help="pairs averaged for rho*_offdiagonal (a random subset when there are "
                        "more; default 1000)")
    s.add_argument("--activation", default="erf", help="erf | relu | tanh | linear")
    s.add_argument("--sigma-w2", type=float, default=1.25, help="hidden weight variance")
    s.add_argument("--sigma-b2", type=float, default=0.05, help="hidden bias variance")
    s.add_argument("--sigma-w2-out", type=float, default=1.25, help="readout weight variance")
    s.add_argument("--sigma-b2-out", type=float, default=0.05, help="readout bias variance")
    s.add_argument("--seed", type=int, default=0, help="seed of the data subset")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_posterior)
