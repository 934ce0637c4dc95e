"""Fuzz table of the CLI: bad and extreme inputs over every command (issue 15).

Every case runs in-process through ``fieldres.cli.main(argv)``; refusals happen before any
computation, so each one returns in a fraction of a second. For each case we check the exit
code, that stderr holds exactly one line ``fieldres: error: ...`` naming the problem (never a
traceback), and that with ``--json`` stdout holds the error object, parsed by a strict parser
that rejects NaN and Infinity.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from fieldres.cli import main


def _reject_constant(name):
    raise ValueError(f"non-strict JSON constant {name}")


def strict_loads(s: str):
    """``json.loads`` that refuses NaN, Infinity and -Infinity."""
    return json.loads(s, parse_constant=_reject_constant)


# (argv, substring of the message). Every case exits 2 (bad input).
BAD = [
    # --- rho-star: types, ranges, combinations
    (["rho-star", "--depth", "0"], "--depth must be >= 1"),
    (["rho-star", "--depth", "-3"], "--depth must be >= 1"),
    (["rho-star", "--depth", "x"], "invalid int value"),
    (["rho-star", "--depth", "1.5"], "invalid int value"),
    (["rho-star", "--depth", ""], "invalid int value"),
    (["rho-star", "--sigma-w2", "-1"], "non-negative"),
    (["rho-star", "--sigma-w2", "nan"], "non-negative finite"),
    (["rho-star", "--sigma-w2", "inf"], "non-negative finite"),
    (["rho-star", "--sigma-b2=-1e-9"], "non-negative"),
    (["rho-star", "--sigma-b2", "-1e-9"], "expected one argument"),  # argparse: an option?
    (["rho-star", "--sigma-w2-out=-inf"], "sigma-w2-out"),
    (["rho-star", "--sigma-b2-out", "nan"], "sigma-b2-out"),
    (["rho-star", "--sigma-w2", "abc"], "invalid float value"),
    (["rho-star", "--activation", "softsign"], "unknown activation"),
    (["rho-star", "--activation", ""], "activation"),
    (["rho-star", "--k0", "0.5,0.6;0.6,0.5"], "positive semi-definite"),
    (["rho-star", "--k0", "nan"], "NaN"),
    (["rho-star", "--k0", "inf"], "NaN or infinite"),
    (["rho-star", "--k0", "1,2;3"], "rows"),
    (["rho-star", "--k0", "a,b;c,d"], "numbers"),
    (["rho-star", "--k0", ""], "numbers"),
    (["rho-star", "--k0", "1,0.5;0.4,1"], "not symmetric"),
    (["rho-star", "--k0", "0"], "positive diagonal"),
    (["rho-star", "--k0", "-1"], "positive diagonal"),
    (["rho-star", "--k0", "1,0;0,0"], "positive diagonal"),
    (["rho-star", "--k0", "1,2"], "square"),
    (["rho-star", "--rho-min", "0"], "--rho-min must be a positive"),
    (["rho-star", "--rho-min", "-1"], "--rho-min must be a positive"),
    (["rho-star", "--rho-max", "inf"], "--rho-max must be a positive finite"),
    (["rho-star", "--rho-max", "nan"], "--rho-max"),
    (["rho-star", "--rho-min", "10", "--rho-max", "1"], "must be smaller than --rho-max"),
    (["rho-star", "--rho-min", "1", "--rho-max", "1"], "must be smaller than --rho-max"),
    (["rho-star", "--width", "0"], "--width must be >= 2"),
    (["rho-star", "--width", "1"], "1/N expansion"),
    (["rho-star", "--width", "-5"], "--width must be >= 2"),
    (["rho-star", "--width", "100", "--activation", "relu", "--depth", "1000"],
     "integrates every pair of layers"),
    (["rho-star", "--width", "100", "--depth", "1000000"], "--depth must be <="),
    (["rho-star", "--classes", "dog", "unicorn"], "only used with --dataset"),
    (["rho-star", "--n-inputs", "4"], "only used with --dataset"),
    (["rho-star", "--k0-scale", "0.1"], "only used with --dataset"),
    (["rho-star", "--seed", "1"], "only used with --dataset"),
    (["rho-star", "--data-dir", "/tmp"], "only used with --dataset"),
    (["rho-star", "--dataset", "cifar10", "--k0", "1"], "either --k0 or --dataset"),
    (["rho-star", "--dataset", "imagenet"], "invalid choice"),
    (["rho-star", "--dataset", "cifar10", "--classes", "dog", "unicorn"], "unknown cifar10 class"),
    (["rho-star", "--dataset", "mnist", "--classes", "dog"], "unknown mnist class"),
    (["rho-star", "--dataset", "cifar10", "--classes", "dog", "dog"], "twice"),
    (["rho-star", "--dataset", "cifar10", "--n-inputs", "0"], "--n-inputs must be >= 1"),
    (["rho-star", "--dataset", "cifar10", "--n-inputs", "100000"], "--n-inputs must be <="),
    (["rho-star", "--dataset", "cifar10", "--k0-scale", "0"], "--k0-scale must be >"),
    (["rho-star", "--dataset", "cifar10", "--k0-scale", "nan"], "finite"),
    (["rho-star", "--dataset", "cifar10", "--seed", "-1"], "--seed must be >= 0"),
    (["rho-star", "--dataset", "cifar10", "--data-dir", "/nonexistent/x"], "FIELDRES_DATA_DIR"),
    (["rho-star", "--bogus"], "unrecognized arguments"),
    (["rho-star", "extra"], "unrecognized arguments"),
    # --- scaling
    (["scaling", "--depths", "10", "-5"], "--depths must be >= 1"),
    (["scaling", "--depths", "0"], "--depths must be >= 1"),
    (["scaling", "--depths"], "expected at least one argument"),
    (["scaling", "--depths", "10", "1000000"], "continuum limit"),
    (["scaling", "--k0", "0.05"], "at least two inputs"),
    (["scaling", "--rho-min", "5", "--rho-max", "1"], "must be smaller"),
    (["scaling", "--out", "/"], "is a directory"),
    (["scaling", "--out", "fig.txt"], "must end in"),
    (["scaling", "--out", "/proc/nope/fig.png"], "cannot write"),
    (["scaling", "--activation", "gelu"], "unknown activation"),
    (["scaling", "--sigma-b2", "-0.1"], "non-negative"),
    # --- response
    (["response", "--n-rho", "0"], "--n-rho must be >= 2"),
    (["response", "--n-rho", "1"], "--n-rho must be >= 2"),
    (["response", "--n-rho", "10000000"], "--n-rho must be <="),
    (["response", "--rho-min-plot", "10", "--rho-max-plot", "1"], "must be smaller"),
    (["response", "--rho-min-plot", "0"], "--rho-min-plot must be a positive"),
    (["response", "--rho-min-plot", "-1"], "--rho-min-plot must be a positive"),
    (["response", "--rho-max-plot", "inf"], "--rho-max-plot"),
    (["response", "--depths", "0"], "--depths must be >= 1"),
    (["response", "--k0", "1"], "at least two inputs"),
    (["response", "--out", "/tmp"], "is a directory"),
    (["response", "--out", "curves"], "must end in"),
    # --- kernel
    (["kernel", "--depth", "0"], "--depth must be >= 1"),
    (["kernel", "--depth", "100000000"], "--depth must be <="),
    (["kernel", "--rho", "-1"], "--rho must be >= 0"),
    (["kernel", "--rho", "nan"], "--rho must be a finite"),
    (["kernel", "--rho", "inf"], "--rho must be a finite"),
    (["kernel", "--feedforward", "--rho", "0.5"], "not used with --feedforward"),
    (["kernel", "--out", "/tmp"], "is a directory"),
    (["kernel", "--out", "k.png"], "must end in .npz or .json"),
    (["kernel", "--out", "/proc/x/k.npz"], "cannot write"),
    (["kernel", "--out", "/etc/hostname/k.npz"], "is not a directory"),
    (["kernel", "--k0", "1,1.5;1.5,1"], "positive semi-definite"),
    (["kernel", "--sigma-w2", "-2"], "non-negative"),
    # --- nlo
    (["nlo", "--width", "0"], "--width must be >= 2"),
    (["nlo", "--width", "1"], "1/N expansion"),
    (["nlo", "--depth", "0"], "--depth must be >= 1"),
    (["nlo", "--depth", "1000000"], "--depth must be <="),
    (["nlo", "--rho", "-0.1"], "--rho must be >= 0"),
    (["nlo", "--rho", "nan"], "finite"),
    (["nlo", "--activation", "relu", "--depth", "500"], "integrates every pair of layers"),
    (["nlo", "--k0", "1,0,0,0,0;0,1,0,0,0;0,0,1,0,0;0,0,0,1,0;0,0,0,0,1"], "at most 4 inputs"),
    (["nlo", "--feedforward", "--rho", "0.3"], "not used with --feedforward"),
    (["nlo", "--k0", "1,2;2,1"], "positive semi-definite"),
    # --- simulate
    (["simulate", "--n-networks", "1"], "--n-networks must be >= 2"),
    (["simulate", "--n-networks", "0"], "--n-networks must be >= 2"),
    (["simulate", "--n-networks", "1000000000000"], "--n-networks must be <="),
    (["simulate", "--width", "0"], "--width must be >= 1"),
    (["simulate", "--width", "100000", "--method", "full"], "N x N weights"),
    (["simulate", "--method", "exact"], "invalid choice"),
    (["simulate", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["simulate", "--seed", "-1"], "--seed must be >= 0"),
    (["simulate", "--depth", "0"], "--depth must be >= 1"),
    (["simulate", "--feedforward", "--rho", "1"], "not used with --feedforward"),
    (["simulate", "--preset", "quick"], "renamed: use --preset smoke"),
    (["simulate", "--preset", "huge"], "unknown preset"),
    # --- train (its checks live in fieldres.cli.train; all before any data is loaded)
    (["train", "--n-train", "0"], "--n-train"),
    (["train", "--width", "0"], "--width"),
    (["train", "--depth", "0"], "--depth"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--rho", "-1"], "--rho"),
    (["train", "--rho", "nan"], "--rho"),
    (["train", "--noise", "0"], "--noise"),
    (["train", "--temperature", "-1"], "--temperature"),
    (["train", "--step-size", "0"], "--step-size"),
    (["train", "--sigma-w2", "-1"], "--sigma-w2"),
    (["train", "--resume"], "--resume needs --save"),
    (["train", "--batch-size", "8"], "sgld"),
    (["train", "--preset", "quick"], "preset"),
    (["train", "--dataset", "imagenet"], "invalid choice"),
    (["train", "--sampler", "hmc"], "invalid choice"),
    # --- edge-of-chaos
    (["edge-of-chaos", "--sigma-b2", "-1"], "non-negative"),
    (["edge-of-chaos", "--sigma-w2", "nan"], "non-negative finite"),
    (["edge-of-chaos", "--activation", "softsign"], "unknown activation"),
    (["edge-of-chaos", "--grid", "10"], "give --out"),
    (["edge-of-chaos", "--sigma-w2-range", "1", "2"], "give --out"),
    (["edge-of-chaos", "--out", "pd.png", "--grid", "2"], "--grid must be >= 3"),
    (["edge-of-chaos", "--out", "pd.png", "--grid", "100000"], "--grid must be <="),
    (["edge-of-chaos", "--out", "pd.png", "--sigma-w2-range", "4", "1"], "must be smaller"),
    (["edge-of-chaos", "--out", "pd.png", "--sigma-w2-range", "0", "1"], "positive"),
    (["edge-of-chaos", "--out", "/tmp"], "is a directory"),
    (["edge-of-chaos", "--sigma-w2-range", "1"], "expected 2 arguments"),
    # --- resnet-meanfield
    (["resnet-meanfield", "--depth", "0"], "--depth must be >= 1"),
    (["resnet-meanfield", "--depth", "100000000"], "--depth must be <="),
    (["resnet-meanfield", "--sigma-v2", "-1"], "non-negative"),
    (["resnet-meanfield", "--sigma-a2", "nan"], "non-negative finite"),
    (["resnet-meanfield", "--alpha", "0.5"], "only used with --activation alpha-relu"),
    (["resnet-meanfield", "--activation", "alpha-relu"], "needs --alpha"),
    (["resnet-meanfield", "--activation", "alpha-relu", "--alpha", "-1"], "--alpha must be >"),
    (["resnet-meanfield", "--activation", "softsign"], "softsign"),
    (["resnet-meanfield", "--kind", "half"], "invalid choice"),
    (["resnet-meanfield", "--k0", "1,2;2,1"], "positive semi-definite"),
    (["resnet-meanfield", "--k0", "1"], "2 x 2"),
    (["resnet-meanfield", "--out", "/tmp"], "is a directory"),
    # --- jacobian-spectrum
    (["jacobian-spectrum", "--width", "0"], "--width must be >= 1"),
    (["jacobian-spectrum", "--width", "1000000"], "--width must be <="),
    (["jacobian-spectrum", "--depth", "0"], "--depth must be >= 1"),
    (["jacobian-spectrum", "--n-networks", "0"], "--n-networks must be >= 1"),
    (["jacobian-spectrum", "--sigma-w2", "0"], "--sigma-w2 must be >"),
    (["jacobian-spectrum", "--k0", "-1"], "--k0 must be >"),
    (["jacobian-spectrum", "--rho", "0"], "--rho must be >"),
    (["jacobian-spectrum", "--rho", "inf"], "--rho must be a finite"),
    (["jacobian-spectrum", "--rho", "0.1", "--c-target", "0.5"], "either --rho or --c-target"),
    (["jacobian-spectrum", "--c-target", "-1"], "--c-target must be >"),
    (["jacobian-spectrum", "--activation", "softsign"], "softsign"),
    (["jacobian-spectrum", "--weights", "uniform"], "invalid choice"),
    (["jacobian-spectrum", "--seed", "-2"], "--seed must be >= 0"),
    (["jacobian-spectrum", "--out", "x.txt"], "must end in"),
    (["jacobian-spectrum", "--preset", "small"], "renamed: use --preset default"),
    # --- the top level
    ([], "required"),
    (["nonsense"], "invalid choice"),
]

# Fast enough per refusal even on a loaded 2-core machine (the budget of issue 15 is 2x the
# bare start-up of ~1.7 s, of which the refusal itself costs milliseconds).
MAX_SECONDS = float(os.environ.get("FIELDRES_FUZZ_MAX_S", "5.0"))


def test_table_is_large():
    assert len(BAD) >= 100
    commands = {a[0] for a, _ in BAD if a}
    assert commands >= {"rho-star", "scaling", "response", "kernel", "nlo", "simulate", "train",
                        "edge-of-chaos", "resnet-meanfield", "jacobian-spectrum"}


@pytest.mark.parametrize("argv, match", BAD, ids=[" ".join(a) or "<empty>" for a, _ in BAD])
def test_bad_input_refused_fast_in_one_line(capsys, argv, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative --out files land in a scratch folder
    t0 = time.perf_counter()
    code = main(list(argv))
    dt = time.perf_counter() - t0
    out = capsys.readouterr()
    assert code == 2, (code, out.err)
    assert out.err.startswith("fieldres: error: "), out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    assert match in out.err, out.err
    assert out.out == ""
    assert dt < MAX_SECONDS, f"refusal took {dt:.2f} s"
    # the same with --json: the error object on stdout, strict JSON, same exit code
    code_j = main([*argv, "--json"])
    out = capsys.readouterr()
    assert code_j == 2
    err = strict_loads(out.out)["error"]
    assert err["kind"] == "bad_input" and match in err["message"], err
    assert out.err.count("\n") == 1


# Extreme but valid inputs: an answer (exit 0) or "no answer exists" (exit 1), strict JSON,
# no NaN/Infinity anywhere. Each is tiny.
EXTREME = [
    (["kernel", "--depth", "3", "--rho", "1e10"], 0, "overflow"),
    (["kernel", "--depth", "2", "--rho", "1e200"], 0, "overflow"),
    (["kernel", "--depth", "2", "--sigma-w2", "1e300"], 0, "overflow"),
    (["kernel", "--depth", "2", "--rho", "0"], 0, "ok"),
    (["kernel", "--depth", "2", "--feedforward", "--k0", "1e-300"], 0, None),
    (["rho-star", "--depth", "1000000"], 0, "continuum"),
]


@pytest.mark.parametrize("argv, code, status", EXTREME, ids=[" ".join(a) for a, *_ in EXTREME])
def test_extreme_input_gives_strict_json(capsys, argv, code, status):
    got = main([*argv, "--json"])
    out = capsys.readouterr()
    assert got == code, out.err
    assert "Traceback" not in out.err
    d = strict_loads(out.out)
    assert "error" not in d
    assert d["parameters"]["fieldres_version"]
    if status is not None:
        flat = json.dumps(d)
        assert status in flat


def test_internal_error_is_not_bad_input(capsys, monkeypatch):
    """A bug (here a TypeError inside a command) is reported as one, never as bad input."""
    from fieldres.cli import signal

    def boom(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(signal, "cmd_kernel", boom)
    code = main(["kernel", "--json"])
    out = capsys.readouterr()
    assert code == 3
    assert out.err.startswith("fieldres: internal error: TypeError") and "--debug" in out.err
    assert strict_loads(out.out)["error"]["kind"] == "internal"
    code = main(["kernel", "--debug"])
    assert code == 3 and "Traceback" in capsys.readouterr().err


def test_no_solution_error_kind(capsys, monkeypatch):
    from fieldres.cli import _common, signal

    def none(args):
        raise _common.NoSolutionError("no fixed point")

    monkeypatch.setattr(signal, "cmd_kernel", none)
    assert main(["kernel", "--json"]) == 1
    out = capsys.readouterr()
    assert strict_loads(out.out) == {"error": {"kind": "no_solution", "message": "no fixed point"}}
