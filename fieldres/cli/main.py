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

Each command group lives in its own module and registers its subcommands here; each
command also registers a ``check`` that validates every argument before any computation.

Exit codes and messages
-----------------------
- 0: an answer.
- 1: valid input but no answer exists (a status says why), or a warning-level failure.
- 2: bad input: one line ``fieldres: error: ...`` on stderr (argument errors, the checks,
  :class:`fieldres.FieldresInputError` from the library and the data loaders).
- 3: a bug: ``fieldres: internal error: ...`` (the traceback with ``--debug``).

With ``--json`` a refusal also prints ``{"error": {"kind": ..., "message": ...}}`` on
stdout (kind ``bad_input``, ``no_solution`` or ``internal``); the exit code is unchanged.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .._validation import FieldresInputError
from ._common import CLIError, NoSolutionError, error_json

EXIT_NO_SOLUTION = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`CLIError` (one line, JSON-able) instead of exiting."""

    def error(self, message):  # noqa: D102 (argparse API)
        where = self.prog.removeprefix("fieldres").strip()  # "rho-star", or "" at the top
        raise CLIError(f"{where}: {message}" if where else message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fieldres",
        description="Finite-width field theory of deep residual networks "
                    "(Fischer, Dahmen, Helias, arXiv:2305.07715).",
    )
    from .. import __version__
    from . import finite_width, meanfield, posterior, signal, sweep, train

    groups = [signal, finite_width, train, sweep, posterior, meanfield]
    p.add_argument("--version", action="version", version=f"fieldres {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in groups:
        group.register(sub)
    return p


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
    want_json = "--json" in argv

    def refuse(kind: str, code: int, msg: str, prefix: str = "error") -> int:
        if want_json:
            print(error_json(kind, msg))
        print(f"fieldres: {prefix}: {msg}", file=sys.stderr)
        return code

    try:
        args = build_parser().parse_args(argv)
        check = getattr(args, "check", None)
        if check is not None:
            check(args)
        return args.func(args)
    except NoSolutionError as e:
        return refuse("no_solution", EXIT_NO_SOLUTION, _one_line(e))
    except FieldresInputError as e:  # CLIError, the library's checks, the data loaders
        return refuse("bad_input", EXIT_BAD_INPUT, _one_line(e))
    except KeyboardInterrupt:
        print("fieldres: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else is a bug and must look like one
        if debug:
            traceback.print_exc()
        msg = (f"{type(e).__name__}: {_one_line(e)[:500]} (please report; rerun with --debug "
               f"for the traceback)")
        return refuse("internal", EXIT_INTERNAL, msg, prefix="internal error")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
