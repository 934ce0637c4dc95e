"""Command-line interface: ``fieldres <command> [options]``.

Commands
--------
rho-star   optimal residual scaling for one depth (the main job)
scaling    rho*(L) over depths with the fitted exponents (paper Fig. 4c)
response   chi^out(rho) curves for several depths (paper Fig. 4a, b)
kernel     per-layer kernel and response trajectories as JSON or .npz
nlo, simulate                 finite-width theory and its Monte-Carlo check
train, sweep                  Bayesian (Langevin) training, and grids of it on submitit
edge-of-chaos, resnet-meanfield, jacobian-spectrum   the mean-field toolkit

Each command group lives in its own module and registers its subcommands here.
Bad input prints one line ``fieldres: error: ...`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import finite_width, meanfield, signal, sweep, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fieldres",
        description="Finite-width field theory of deep residual networks "
                    "(Fischer, Dahmen, Helias, arXiv:2305.07715).",
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"fieldres {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for group in (signal, finite_width, train, sweep, meanfield):
        group.register(sub)
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

