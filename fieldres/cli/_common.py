"""Shared pieces of the command line: errors, argument checks, strict JSON, formatting.

Every command validates all of its arguments here, before any computation (a refusal costs
no more than the start-up), and writes JSON only through :func:`emit_json` (strict: no NaN
or Infinity; every hyperparameter, the seed and ``fieldres_version`` recorded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .._validation import FieldresInputError
from ..defaults import DEFAULT_K0 as _DEFAULT_K0_MATRIX
from ..defaults import Hyper

#: ``fieldres.defaults.DEFAULT_K0`` in the ``--k0`` syntax.
DEFAULT_K0 = ";".join(",".join(f"{v:g}" for v in row) for row in _DEFAULT_K0_MATRIX)
#: The default variances (``fieldres.defaults.Hyper()``).
HYPER = Hyper()

# Bounded work: the largest sizes the commands accept (each refusal names its reason).
#: Depth above which the layer-by-layer rho* search (a bisection through an L-step scan,
#: ~50 s at L = 10^4) is replaced by the continuum limit in ``rho-star``.
MAX_DEPTH_SEARCH = 10_000
#: Largest depth of a kernel trajectory (``kernel``: the output holds every layer).
MAX_DEPTH_TRAJECTORY = 100_000
#: Largest depth of the 1/N theory and of the Monte Carlo (``nlo``, ``simulate``).
MAX_DEPTH_FINITE_WIDTH = 10_000
#: Largest depth of the residual mean field (``resnet-meanfield``).
MAX_DEPTH_MEANFIELD = 1_000_000
#: Smallest width of the 1/N theory: below it the expansion in 1/N means nothing.
MIN_WIDTH_NLO = 2


class CLIError(FieldresInputError):
    """A user error reported as one line on stderr (exit code 2)."""


class NoSolutionError(Exception):
    """The input is valid but no answer exists (exit code 1, ``kind = "no_solution"``)."""


# --------------------------------------------------------------------------------------
# argument checks (all cheap: no computation happens before they pass)
# --------------------------------------------------------------------------------------


def flag(name: str) -> str:
    """``sigma_w2`` -> ``--sigma-w2``."""
    return "--" + name.replace("_", "-")


def check_int(args, name: str, lo: int | None = None, hi: int | None = None,
              why: str = "") -> None:
    """``args.name`` (if not None) must be an integer in ``[lo, hi]``."""
    v = getattr(args, name, None)
    if v is None:
        return
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if lo is not None and x < lo:
            raise CLIError(f"{flag(name)} must be >= {lo}, got {x}" + (f" ({why})" if why else ""))
        if hi is not None and x > hi:
            raise CLIError(f"{flag(name)} must be <= {hi:,}, got {x:,}"
                           + (f" ({why})" if why else ""))


def check_float(args, name: str, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, why: str = "") -> None:
    """``args.name`` (if not None) must be finite and in ``[lo, hi]`` (``(lo, hi]`` if open)."""
    v = getattr(args, name, None)
    if v is None:
        return
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if not math.isfinite(x):
            raise CLIError(f"{flag(name)} must be a finite number, got {x}")
        if lo is not None and (x <= lo if lo_open else x < lo):
            rel = ">" if lo_open else ">="
            raise CLIError(f"{flag(name)} must be {rel} {lo:g}, got {x:g}"
                           + (f" ({why})" if why else ""))
        if hi is not None and x > hi:
            raise CLIError(f"{flag(name)} must be <= {hi:g}, got {x:g}"
                           + (f" ({why})" if why else ""))


def check_variances(args, *names: str) -> None:
    """Each ``--name`` given (not None) must be a finite, non-negative variance."""
    for name in names:
        v = getattr(args, name, None)
        if v is not None and (not math.isfinite(v) or v < 0):
            raise CLIError(f"{flag(name)} must be a non-negative finite variance, got {v}")


# kept for the command modules written against the old name
_check_variances = check_variances


def check_activation(name: str, allowed: tuple[str, ...] | None = None) -> None:
    """The activation must exist in the registry (and, if given, be one of ``allowed``)."""
    from ..kernels.activations import get_activation

    try:
        get_activation(name)
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(" ".join(str(e).split()) or f"unknown activation {name!r}") from e
    if allowed is not None and name not in allowed:
        raise CLIError(f"--activation {name} is not available here; use one of "
                       f"{', '.join(allowed)}")


def check_range(args, lo_name: str, hi_name: str, *, positive: bool = True) -> None:
    """Two flags that form a range: finite, ``lo < hi`` and (``positive``) ``lo > 0``."""
    lo, hi = getattr(args, lo_name), getattr(args, hi_name)
    for name, v in ((lo_name, lo), (hi_name, hi)):
        if not math.isfinite(v) or (positive and v <= 0):
            kind = "a positive finite number" if positive else "a finite number"
            raise CLIError(f"{flag(name)} must be {kind}, got {v}")
    if not lo < hi:
        raise CLIError(f"{flag(lo_name)} ({lo:g}) must be smaller than {flag(hi_name)} ({hi:g})")


FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def check_out(path: str | None, suffixes: tuple[str, ...] = FIGURE_SUFFIXES,
              name: str = "--out") -> None:
    """An output file must have a known suffix, not be a directory, and be writable."""
    if path is None:
        return
    p = Path(path)
    if path == "" or path.endswith(os.sep) or p.is_dir():
        raise CLIError(f"{name} {path!r} is a directory; give a file name ending in "
                       f"{' or '.join(suffixes)}")
    if p.suffix.lower() not in suffixes:
        raise CLIError(f"{name} {path!r} must end in {' or '.join(suffixes)}")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise CLIError(f"{name} {path!r} exists and is not writable")
        return
    parent = p.parent if str(p.parent) else Path(".")
    anc = parent
    while not anc.exists():  # the first existing ancestor must be a writable directory
        anc = anc.parent
    if not anc.is_dir():
        raise CLIError(f"{name} {path!r}: {str(anc)!r} is not a directory")
    try:  # a real test (access() says yes to root even where writing fails, e.g. /proc)
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise CLIError(f"{name} {path!r}: cannot write into {str(anc)!r} "
                       f"({e.strerror or e})") from None


def preset_arg(name: str) -> str:
    """argparse ``type`` of ``--preset`` (old names are refused naming the new ones)."""
    from ..defaults import check_preset

    try:
        return check_preset(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_preset(p: argparse.ArgumentParser, sizes: dict[str, dict]) -> None:
    """``--preset smoke|default|paper``: the run sizes ``sizes[preset]``; flags given win."""
    desc = "; ".join(f"{k}: " + ", ".join(f"{flag(n)[2:]} {v:,}" for n, v in d.items())
                     for k, d in sizes.items())
    p.add_argument("--preset", type=preset_arg, default="default",
                   help=f"run sizes ({desc}); a size flag given explicitly wins")
    p.set_defaults(_preset_sizes=sizes)


def apply_preset(args) -> None:
    """Fill the size flags not given on the command line from the chosen preset."""
    for name, v in args._preset_sizes[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, v)


def parse_matrix(text: str, name: str = "--k0") -> np.ndarray:
    """``"a,b;b,c"`` -> 2-D array (rows separated by ``;``, entries by ``,``)."""
    try:
        rows = [[float(x) for x in row.split(",")] for row in text.strip().split(";")]
    except ValueError as e:
        raise CLIError(f"{name} must look like 'a,b;b,c' (numbers), got {text!r}") from e
    if len({len(r) for r in rows}) != 1:
        raise CLIError(f"{name} rows have different lengths: {text!r}")
    return np.array(rows, dtype=float)


def parse_kernel(text: str, name: str = "--k0", max_inputs: int | None = None) -> np.ndarray:
    """Parse and check an input kernel (finite, symmetric, PSD, positive diagonal)."""
    from .._validation import check_kernel

    K0 = parse_matrix(text, name)
    check_kernel(K0, name)
    if max_inputs is not None and K0.shape[0] > max_inputs:
        raise CLIError(f"{name} has {K0.shape[0]} inputs; this command takes at most "
                       f"{max_inputs}")
    return K0


# --------------------------------------------------------------------------------------
# shared arguments of the signal-propagation and finite-width commands
# --------------------------------------------------------------------------------------


def _add_network_args(p: argparse.ArgumentParser, k0: bool = True,
                      rho_search: bool = True) -> None:
    g = p.add_argument_group("network (defaults: fieldres.defaults, the paper's Fig. 4)")
    g.add_argument("--activation", default="erf",
                   help="erf | relu | tanh | linear (default erf)")
    g.add_argument("--sigma-w2", type=float, default=float(HYPER.sigma_w2),
                   help=f"hidden weight variance (default {float(HYPER.sigma_w2):g})")
    g.add_argument("--sigma-b2", type=float, default=float(HYPER.sigma_b2),
                   help=f"hidden bias variance (default {float(HYPER.sigma_b2):g})")
    g.add_argument("--sigma-w2-out", type=float, default=float(HYPER.sigma_w2_out),
                   help=f"readout weight variance (default {float(HYPER.sigma_w2_out):g})")
    g.add_argument("--sigma-b2-out", type=float, default=float(HYPER.sigma_b2_out),
                   help=f"readout bias variance (default {float(HYPER.sigma_b2_out):g})")
    if k0:
        g.add_argument("--k0", default=None,
                       help=f"input kernel K^(0) as 'a,b;b,c' (default {DEFAULT_K0!r})")
    if rho_search:
        p.add_argument("--rho-min", type=float, default=1e-3,
                       help="smallest rho searched (default 1e-3)")
        p.add_argument("--rho-max", type=float, default=1e2,
                       help="largest rho searched (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def check_network(args, k0_required: bool = True) -> np.ndarray | None:
    """Validate the network arguments; returns the parsed ``K0`` (``None`` if not asked for)."""
    check_activation(args.activation)
    check_variances(args, "sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out")
    if hasattr(args, "rho_min"):
        check_range(args, "rho_min", "rho_max")
    if not k0_required:
        return None
    return parse_kernel(args.k0 if args.k0 is not None else DEFAULT_K0)


#: Opt-out of the persistent compilation cache: ``FIELDRES_JAX_CACHE=0`` (or ``off``).
CACHE_ENV = "FIELDRES_JAX_CACHE"
#: Where the cache lives (default ``$XDG_CACHE_HOME/fieldres/jax``, else ``~/.cache/...``).
CACHE_DIR_ENV = "FIELDRES_JAX_CACHE_DIR"


def compilation_cache_dir() -> Path | None:
    """The persistent compilation cache folder of the CLI, or ``None`` when opted out."""
    if os.environ.get(CACHE_ENV, "1").strip().lower() in ("0", "off", "no", "false"):
        return None
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fieldres" / "jax"


def enable_compilation_cache() -> Path | None:
    """Use JAX's persistent compilation cache in a user folder (see :func:`compilation_cache_dir`).

    A command compiles the same few functions every time it runs (the rho* search of one
    activation, say); the cache keeps XLA's compiled code across runs, so a repeated query
    pays tracing only (``benchmarks/profile_latency.py`` measures both). Not enabled when
    opted out, when JAX's own cache folder is configured already, or when the folder cannot
    be created; returns the folder in use.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own setting wins
        return Path(jax.config.jax_compilation_cache_dir)
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # the searches compile in ~0.5-10 s; tiny eager kernels are not worth a file each
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path


def _setup(args):
    """Enable float64 and build the hyperparameters and K0 (already validated).

    Returns ``(fr, hyper, K0)``.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()
    import fieldres as fr

    hyper = fr.Hyper(args.sigma_w2, args.sigma_b2, args.sigma_w2_out, args.sigma_b2_out)
    K0 = None
    if hasattr(args, "k0"):
        K0 = parse_kernel(args.k0 if args.k0 is not None else DEFAULT_K0)
    return fr, hyper, K0


# --------------------------------------------------------------------------------------
# JSON: strict, with the full record of what produced it
# --------------------------------------------------------------------------------------

_NOT_PARAMETERS = {"func", "check", "json", "command", "debug", "_preset_sizes"}


def record(args, **overrides) -> dict:
    """Every argument of the command (hyperparameters, sizes, seed) and ``fieldres_version``."""
    from .. import __version__

    d = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_PARAMETERS}
    if "k0" in d and isinstance(d["k0"], str | type(None)) and "k0" not in overrides:
        if getattr(args, "command", None) not in ("jacobian-spectrum",):
            d["k0"] = parse_matrix(d["k0"] if d["k0"] is not None else DEFAULT_K0).tolist()
    d.update(overrides)
    d["fieldres_version"] = __version__
    return d


def jsonable(x, _count: list | None = None):
    """Arrays to lists, numpy scalars to Python numbers, non-finite floats to ``None``.

    ``_count`` (a one-element list), if given, is incremented for every non-finite value.
    """
    if isinstance(x, dict):
        return {str(k): jsonable(v, _count) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v, _count) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return jsonable(np.asarray(x).tolist(), _count)
    if isinstance(x, np.generic):
        return jsonable(x.item(), _count)
    if isinstance(x, float) and not math.isfinite(x):
        if _count is not None:
            _count[0] += 1
        return None
    return x


def count_nonfinite(x) -> int:
    """Number of NaN or infinite values anywhere in a nested result."""
    c = [0]
    jsonable(x, c)
    return c[0]


def dumps(obj, indent: int | None = 2) -> str:
    """The one JSON writer of the CLI: strict (``allow_nan=False``: a NaN is a bug here)."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def emit_json(result: dict, args, indent: int | None = 2, **params) -> None:
    """Print ``result`` as strict JSON with ``parameters`` (every argument) merged in."""
    out = dict(result)
    out["parameters"] = record(args, **params) | dict(result.get("parameters", {}))
    print(dumps(out, indent=indent))


def error_json(kind: str, message: str) -> str:
    """``{"error": {"kind": ..., "message": ...}}`` (kind: bad_input, no_solution, internal)."""
    return dumps({"error": {"kind": kind, "message": message}}, indent=None)


# --------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------


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
        d["k0"] = np.asarray(K0).tolist()
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
    ds = fr.make_dataset(args.dataset, classes=tuple(args.classes), n_train=args.n_inputs,
                         n_test=0, seed=args.seed, data_dir=args.data_dir,
                         k0_scale=args.k0_scale)
    return np.asarray(fr.input_kernel(ds.x_train))


def warn(msg: str) -> None:
    """One line ``fieldres: warning: ...`` on stderr."""
    print(f"fieldres: warning: {msg}", file=sys.stderr)
