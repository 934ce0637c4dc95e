"""Shared pieces of the command line: argument groups, input parsing, formatting."""

from __future__ import annotations

import argparse
import math

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


