"""``fieldres sweep``: grid points as submitit jobs, gathered results, reruns, SLURM array."""

import csv
import json
import subprocess
import sys

import pytest

import fieldres
from fieldres.bayes import sweep
from fieldres.cli import main


def run_cli(*argv):
    """``fieldres`` in its own process, as a user runs it.

    submitit configures its loggers on first import with the *current* ``sys.stdout`` and
    ``sys.stderr``; imported inside a test, those are pytest's capture streams, closed after
    the test, and a later log line kills the test process ("lost sys.stderr"). A subprocess
    keeps the sweep's jobs out of pytest's streams.
    """
    r = subprocess.run([sys.executable, "-m", "fieldres.cli", *argv], capture_output=True,
                       text=True, timeout=900)
    return r.returncode, r.stdout, r.stderr


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    fieldres.write_fake_cifar10(d, n_per_batch=100, n_batches=2, n_test=200, seed=5)
    return d


def test_parse_and_expand_grid():
    g = sweep.parse_grid(["rho_factor=0.25,1,4", "seed=0,1"])
    assert g == {"rho_factor": [0.25, 1.0, 4.0], "seed": [0, 1]}
    pts = sweep.expand_grid(g, "smoke")
    assert len(pts) == 6 and {p["depth"] for p in pts} == {2} and pts[0]["width"] == 8
    assert len({sweep.point_name(p) for p in pts}) == 6
    for bad, match in ((["lr=0.1"], "unknown grid key 'lr'"), (["depth"], "KEY=V1"),
                       (["depth=x"], "int"), (["rho_factor=-1"], "bad value"),
                       (["n_train=1"], "bad value")):
        with pytest.raises(ValueError, match=match):
            sweep.parse_grid(bad)


@pytest.mark.parametrize("cluster", [pytest.param("local", marks=pytest.mark.slow), "debug"])
def test_sweep_runs_gathers_and_skips_finished_points(capsys, tmp_path, fake_dir, cluster):
    out = tmp_path / "sw"
    argv = ["sweep", "--grid", "rho_factor=0.5,2", "--out", str(out), "--data-dir",
            str(fake_dir), "--cluster", cluster, "--json"]
    code, o, err = run_cli(*argv)
    assert code == 0, err
    d = json.loads(o)
    assert not d["failed"], d["failed"]
    assert d["n_points"] == 2 and d["ran"] == 2 and d["skipped"] == 0
    res = json.loads((out / "results.json").read_text())
    assert [p["point"]["rho_factor"] for p in res["points"]] == [0.5, 2.0]
    for p in res["points"]:
        assert p["rho"] == pytest.approx(p["point"]["rho_factor"] * p["rho_star_diagonal"])
        assert p["depth"] == 2 and p["width"] == 8 and p["n_train"] == 20
        assert "rhat_max" in p and "converged" in p
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 and rows[1]["rho_factor"] == "2.0"
    # a rerun skips both finished points; a larger grid runs only the new point
    code, o, err = run_cli(*argv)
    d = json.loads(o)
    assert code == 0 and d["ran"] == 0 and d["skipped"] == 2
    if cluster == "debug":
        code, o, _ = run_cli(*argv[:2], "rho_factor=0.5,2,1", *argv[3:])
        d = json.loads(o)
        assert d["ran"] == 1 and d["skipped"] == 2 and d["n_points"] == 3
    # other settings in the same folder are refused (results would be mixed)
    code, _, err = run(capsys, *argv, "--sampler", "nuts")
    assert code == 2 and "other settings" in err and err.count("\n") == 1


def test_slurm_job_array_is_built_not_submitted(capsys, tmp_path):
    code, o, err = run(capsys, "sweep", "--grid", "rho_factor=0.25,1,4", "depth=5,10",
                       "--out", str(tmp_path / "s"), "--cluster", "slurm", "--partition",
                       "gpu", "--time", "90", "--gpus", "1", "--dry-run")
    assert code == 0, err
    assert "#SBATCH --array=0-5%" in o and "#SBATCH --partition=gpu" in o
    assert "#SBATCH --time=90" in o and "#SBATCH --gpus-per-node=1" in o
    assert "submitit.core._submit" in o and not (tmp_path / "s" / "points").exists()


@pytest.mark.parametrize("argv, match", [
    (["--grid", "lr=0.1"], "unknown grid key"),
    (["--preset", "quick"], "--preset smoke"),
    (["--dry-run"], "--cluster slurm"),
    (["--cluster", "slurm"], "slurm executor"),
])
def test_sweep_bad_input(capsys, tmp_path, argv, match):
    code, _, err = run(capsys, "sweep", "--out", str(tmp_path / "x"), *argv)
    assert code == 2 and match in err and err.count("\n") == 1
