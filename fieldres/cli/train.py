"""The train command: Bayesian (Langevin) training on data subsets."""

from __future__ import annotations

import json
import math
import sys

from ._common import (
    CLIError,
)

_TRAIN_DEFAULTS = dict(n_train=100, n_test=500, depth=10, rho=0.3, width=64, sampler="mala",
                       steps=1000, n_chains=4)


def cmd_train(args) -> int:
    """Bayesian (Langevin) training of the ResNet on a CIFAR-10 / MNIST class subset."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from fieldres.bayes.training import TRAIN_PRESETS, train
    from fieldres.defaults import check_preset

    opts = dict(_TRAIN_DEFAULTS)
    if args.preset:
        try:
            opts.update(TRAIN_PRESETS[check_preset(args.preset)])
        except ValueError as e:
            raise CLIError(str(e)) from None
    for k in opts:
        if getattr(args, k, None) is not None:
            opts[k] = getattr(args, k)
    opts["step_size"] = (args.step_size if args.step_size is not None
                         else 0.1 if opts["sampler"] == "nuts" else 1e-3)
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
        thin=args.thin, step_size=opts["step_size"], batch_size=args.batch_size, hyper=hyper,
        activation=args.activation, dtype=args.dtype, progress=not args.json and
        not args.no_progress and sys.stderr.isatty(), save_path=args.save, resume=args.resume,
    )
    d = res.to_dict()
    if args.json:
        print(json.dumps(d, indent=2, allow_nan=False))
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

        def num(v, fmt):
            return "undefined" if v is None else f"{v:{fmt}}"

        print(f"  convergence: R-hat max {num(d['rhat_max'], '.4f')}, ESS min "
              f"{num(d['ess_min'], '.0f')} (bulk {num(d['ess_bulk_min'], '.0f')}, tail "
              f"{num(d['ess_tail_min'], '.0f')}), {num(d['ess_per_second'], '.3g')} ESS/s, "
              f"{d['divergences']} divergent transitions")
        if d["converged"]:
            print("  converged (R-hat < 1.01, ESS >= 400, no divergences)")
        else:
            print("  NOT CONVERGED: the numbers above are not a posterior result "
                  "(need R-hat < 1.01, ESS >= 400 and no divergences; run more steps, more "
                  "chains or --sampler nuts)")
    if res.diverged:
        print(f"fieldres: warning: {res.message}", file=sys.stderr)
        return 1
    return 0



# --- command functions of the signal-propagation toolkit (issue 5) go here ---


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    # --- commands of Bayesian training (issue 4) go here ---
    s = sub.add_parser("train", help="Bayesian (Langevin) training on CIFAR-10/MNIST subsets")
    s.add_argument("--preset", metavar="{smoke,default,paper}",
                   help="smoke: under a minute on 2 cores; default: the defaults; paper: the "
                        "posterior of the paper's experiment (GPU-sized)")
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
    s.add_argument("--sampler", choices=["mala", "nuts", "ula", "sgld"],
                   help="default mala; nuts: NUTS with window adaptation of the step size "
                        "and a diagonal mass matrix")
    s.add_argument("--steps", type=int, help="total Langevin steps incl. burn-in (default 1000)")
    s.add_argument("--burn-in", type=int, help="default: half of --steps")
    s.add_argument("--thin", type=int, help="keep every THIN-th step (default: ~100 samples)")
    s.add_argument("--step-size", type=float,
                   help="initial step size, adapted during burn-in by MALA and NUTS "
                        "(default 1e-3; nuts 0.1)")
    s.add_argument("--batch-size", type=int, help="SGLD mini-batch size (default 32)")
    s.add_argument("--n-chains", type=int,
                   help="independent chains from prior draws (default 4; R-hat needs >= 2)")
    s.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="dtype of the sampling (default float32)")
    s.add_argument("--seed", type=int, default=0, help="seed of data selection and chains")
    s.add_argument("--save", help="checkpoint file (.npz) written during the run")
    s.add_argument("--resume", action="store_true", help="continue from --save if it exists")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_train)

