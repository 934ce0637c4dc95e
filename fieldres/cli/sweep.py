"""The sweep command: a grid of Bayesian-training runs as resumable jobs on submitit."""

from __future__ import annotations

import json
import sys

from ._common import CLIError


def cmd_sweep(args) -> int:
    """Run every point of a grid (rho/rho*, L, width, n_train, seed) as its own job."""
    from fieldres.bayes import sweep
    from fieldres.defaults import check_preset

    try:
        preset = check_preset(args.preset)
        grid = sweep.parse_grid(args.grid or [])
    except ValueError as e:
        raise CLIError(str(e)) from None
    if args.time < 1 or args.gpus < 0:
        raise CLIError("--time must be >= 1 minute and --gpus >= 0")
    points = sweep.expand_grid(grid, preset)
    if args.dry_run:
        if args.cluster != "slurm":
            raise CLIError("--dry-run shows the SLURM job array: use it with --cluster slurm")
        print(sweep.slurm_script(args.out, len(points), partition=args.partition,
                                 time_min=args.time, gpus=args.gpus))
        return 0
    settings = dict(sampler=args.sampler, data_dir=args.data_dir, noise=args.noise)
    res = sweep.run_sweep(grid, preset=preset, out_dir=args.out, cluster=args.cluster,
                          partition=args.partition, time_min=args.time, gpus=args.gpus,
                          settings=settings)
    summary = {k: res[k] for k in ("n_points", "ran", "skipped", "failed", "out")}
    if args.json:
        print(json.dumps(summary | dict(points=res["points"]), indent=2, allow_nan=False))
    else:
        print(f"sweep of {res['n_points']} point(s) in {res['out']}: ran {res['ran']}, "
              f"skipped {res['skipped']} already finished, {len(res['failed'])} failed; "
              f"results in results.json / results.csv")
        for r in res["points"]:
            flag = "" if r.get("converged") else "  NOT CONVERGED"
            print(f"  {r['name']}: rho = {r['rho']:.4g}, test error {r['test_error']:.4f}, "
                  f"R-hat {r['rhat_max'] if r['rhat_max'] is not None else 'undefined'}"
                  f"{flag}")
    for f in res["failed"]:
        print(f"fieldres: warning: point {sweep.point_name(f['point'])} failed: {f['error']}",
              file=sys.stderr)
    return 1 if res["failed"] else 0


def register(sub) -> None:
    """Add this group's subcommands to the ``fieldres`` parser."""
    s = sub.add_parser("sweep", help="grid of Bayesian-training runs as jobs on submitit "
                                     "(local or SLURM)")
    s.add_argument("--grid", nargs="+", metavar="KEY=V1,V2",
                   help="grid axes; keys: rho_factor (rho / rho*_diagonal), depth, width, "
                        "n_train, seed (missing keys: the preset's value)")
    s.add_argument("--preset", default="smoke", metavar="{smoke,default,paper}",
                   help="sizes and run lengths (default smoke)")
    s.add_argument("--out", required=True, help="folder of the sweep (reruns skip finished "
                                                "points)")
    s.add_argument("--sampler", default="mala", choices=["mala", "nuts", "ula", "sgld"])
    s.add_argument("--noise", type=float, default=0.1, help="likelihood variance T")
    s.add_argument("--data-dir", help="dataset folder (else $FIELDRES_DATA_DIR)")
    s.add_argument("--cluster", default="local", choices=["local", "slurm", "debug"],
                   help="submitit executor: local subprocesses (default), a SLURM job array, "
                        "or debug (in this process)")
    s.add_argument("--partition", help="SLURM partition")
    s.add_argument("--time", type=int, default=60, help="time limit per job in minutes")
    s.add_argument("--gpus", type=int, default=0, help="GPUs per job (SLURM)")
    s.add_argument("--dry-run", action="store_true",
                   help="print the sbatch script of the job array instead of submitting it")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_sweep)
