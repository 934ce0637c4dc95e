"""Bayesian training: measures, the train() entry point and the ``fieldres train`` CLI.

Runs use a tiny generated CIFAR-10 copy (``write_fake_cifar10``: random pixels with a
class-dependent offset in the red plane, so the classes are learnable).
"""

import json
import math

import numpy as np
import pytest

import fieldres
from fieldres.bayes import training as training
from fieldres.cli import main

KEYS = ("test_error", "test_mse", "train_mse", "kernel_change", "kernel_alignment",
        "acceptance_rate", "steps", "seconds")


@pytest.fixture(scope="module")
def fake_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    fieldres.write_fake_cifar10(d, n_per_batch=100, n_batches=2, n_test=200, seed=5)
    return d


@pytest.fixture(scope="module")
def fake_data(fake_dir):
    return fieldres.make_dataset("cifar10", classes=("dog", "airplane"), n_train=40, n_test=40,
                                 seed=0, data_dir=fake_dir, k0_scale=0.05)


def test_kernel_alignment():
    rng = np.random.default_rng(0)
    y = np.sign(rng.normal(size=12))
    assert training.kernel_alignment(np.outer(y, y), y) == pytest.approx(1.0)
    K = rng.normal(size=(12, 5))
    K = K @ K.T
    a = training.kernel_alignment(K, y)
    assert training.kernel_alignment(3.7 * K + 2.0, y) == pytest.approx(a)  # scale, constant
    # identity kernel: <H, Yc Yc^T> / (||H|| ||Yc Yc^T||) = 1 / sqrt(P - 1)
    assert training.kernel_alignment(np.eye(12), y) == pytest.approx(1 / math.sqrt(11))
    # one-hot targets of two classes = +-1 labels
    onehot = np.stack([(y > 0), (y < 0)], 1).astype(float)
    assert training.kernel_alignment(K, onehot) == pytest.approx(a)
    assert -1.0 <= a <= 1.0


def test_debiased_change_removes_the_fluctuation_floor():
    """Over repeated noisy 5-chain estimates the debiased distance is centred on the truth."""
    rng = np.random.default_rng(1)
    P, C, reps = 6, 5, 400
    ref = np.eye(P) + 0.5
    M = ref + 0.05 * np.diag(np.arange(P))
    true = np.linalg.norm(M - ref) / np.linalg.norm(ref)
    deb, raw, deb0, raw0 = [], [], [], []
    for _ in range(reps):
        n = rng.normal(size=(C, P, P)) * 0.15
        n = (n + n.transpose(0, 2, 1)) / 2
        a, b = training.debiased_change(M + n, ref)
        deb.append(a)
        raw.append(b)
        a, b = training.debiased_change(ref + n, ref)
        deb0.append(a)
        raw0.append(b)
    assert np.mean(raw) > 1.2 * true  # the plain distance is inflated by the noise
    # debiased: within 5 % (the residual is the small Jensen bias of the square root)
    assert abs(np.mean(deb) - true) < 0.05 * true
    assert np.std(deb) / math.sqrt(reps) < 0.02 * true
    assert np.mean(deb0) < 0.25 * np.mean(raw0)  # no difference: the floor is removed
    assert math.isnan(training.debiased_change(M[None], ref)[0])


COMMON = dict(n_train=40, depth=2, rho=0.5, width=12, steps=240, n_chains=3, seed=1,
              n_kernel=40)


@pytest.fixture(scope="module")
def strong(fake_data):
    return training.train(noise=0.05, data=fake_data, **COMMON)


def test_train_result(strong):
    d = strong.to_dict()
    for k in KEYS + ("test_error_se", "kernel_change_se", "kernel_alignment_prior",
                     "kernel_change_prior", "step_size", "n_samples", "dataset", "classes"):
        assert k in d, k
    json.dumps(d)
    assert d["steps"] == 240 and d["n_samples"] == 3 * 120 and d["message"] == "ok"
    assert 0.2 < d["acceptance_rate"] < 0.9
    for k in ("test_error", "test_mse", "train_mse", "kernel_change", "kernel_alignment"):
        assert math.isfinite(d[k]), k
    assert 0 <= d["test_error"] <= 1 and d["classes"] == ["dog", "airplane"]


@pytest.mark.slow
def test_posterior_fits_and_adapts_more_than_the_prior(strong, fake_data):
    """A strong likelihood fits the training set and moves the kernel; no likelihood does not."""
    prior = training.train(noise=1e6, data=fake_data, **COMMON)  # likelihood off: the prior
    assert strong.train_mse < 0.5 * prior.train_mse
    assert strong.train_error < prior.train_error
    assert strong.kernel_alignment > strong.kernel_alignment_prior + 0.05
    assert abs(prior.kernel_alignment - prior.kernel_alignment_prior) < 0.1
    # debiased kernel change: clearly above the no-data run
    assert strong.kernel_change > 2 * prior.kernel_change
    # the prior run's MALA acceptance: the prior is N(0, I), nearly every step accepted
    assert prior.acceptance_rate > 0.4


@pytest.mark.slow
def test_sweep_softmax_and_sgld(fake_dir):
    ds = fieldres.make_dataset("cifar10", classes=("dog", "airplane", "ship"), n_train=30,
                               n_test=30, seed=0, data_dir=fake_dir, labels="int")
    out = training.train_sweep(ds.x_train, ds.y_train, ds.x_test, ds.y_test, depth=2,
                               rhos=[0.1, 1.0], width=8, likelihood="softmax", sampler="sgld",
                               batch_size=10, step_size=1e-3, steps=40, n_chains=2)
    assert [r.rho for r in out] == [0.1, 1.0]
    for r in out:
        assert r.sampler == "sgld" and r.acceptance_rate is None
        assert 0 <= r.test_error <= 1 and 0 <= r.test_mse <= 2  # Brier score
        assert math.isfinite(r.train_loss) and r.extra["likelihood"] == "softmax"


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(sampler="hmc"), "sampler"),
        (dict(rhos=[-1.0]), "rhos"),
        (dict(noise=0.0), "noise"),
        (dict(batch_size=4), "sgld only"),
        (dict(likelihood="poisson"), "likelihood"),
        (dict(depth=0), "depth"),
    ],
)
def test_train_sweep_bad_input(fake_data, kw, match):
    args = dict(depth=2, rhos=[0.5], width=4, steps=4) | kw
    with pytest.raises(ValueError, match=match):
        training.train_sweep(fake_data.x_train, fake_data.y_train, fake_data.x_test,
                             fake_data.y_test, **args)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_train_smoke_json(capsys, fake_dir):
    code, out, err = run(capsys, "train", "--preset", "smoke", "--data-dir", str(fake_dir),
                         "--n-test", "20", "--steps", "60", "--json", "--depth", "2")
    assert code == 0, err
    d = json.loads(out)
    for k in KEYS:
        assert k in d, k
    assert d["steps"] == 60 and d["depth"] == 2 and d["width"] == 32 and d["n_train"] == 40
    assert d["sampler"] == "mala" and 0 < d["acceptance_rate"] <= 1
    assert d["seconds"] > 0


@pytest.mark.slow
def test_cli_train_text_and_options(capsys, fake_dir):
    code, out, err = run(capsys, "train", "--data-dir", str(fake_dir), "--n-train", "20",
                         "--n-test", "20", "--depth", "2", "--width", "8", "--steps", "20",
                         "--sampler", "sgld", "--batch-size", "5", "--rho", "0.7",
                         "--no-progress")
    assert code == 0, err
    assert "Bayesian training (sgld)" in out and "rho = 0.7" in out and "test error" in out
    assert "acceptance rate" not in out
    assert "R-hat max" in out and "NOT CONVERGED" in out  # 4 x 10 draws: ESS < 400


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--rho", "-1"], "--rho"),
        (["--n-train", "1"], "--n-train"),
        (["--noise", "0"], "--noise"),
        (["--batch-size", "4"], "sgld only"),
        (["--resume"], "--save"),
        (["--classes", "dog", "zebra"], "unknown class"),
        (["--depth", "0"], "depth"),
        (["--sigma-w2", "-1"], "non-negative"),
    ],
)
def test_cli_train_bad_input_exit_2(capsys, fake_dir, argv, match):
    code, out, err = run(capsys, "train", "--data-dir", str(fake_dir), "--steps", "4", *argv)
    assert code == 2
    assert match in err and err.startswith("fieldres: error:") and err.count("\n") == 1


def test_cli_train_missing_data(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path / "nowhere"), "--steps", "4")
    assert code == 2 and "Could not find the cifar10 data set" in err and err.count("\n") == 1


DIAG_KEYS = ("rhat_max", "ess_min", "ess_bulk_min", "ess_tail_min", "ess_per_second",
             "acceptance_rate", "divergences", "converged")


def test_cli_train_reports_diagnostics_and_provenance(capsys, fake_dir):
    code, out, err = run(capsys, "train", "--data-dir", str(fake_dir), "--n-train", "20",
                         "--n-test", "20", "--depth", "2", "--width", "8", "--steps", "60",
                         "--json", "--sigma-b2", "0.07", "--seed", "3")
    assert code == 0, err
    d = json.loads(out)
    for k in DIAG_KEYS:
        assert k in d, k
    assert d["n_chains"] == 4 and d["n_chains_diagnosed"] == 4  # >= 4 chains by default
    assert d["sampler"] == "mala" and d["converged"] is False  # 4 x 30 draws: ESS < 400
    assert isinstance(d["divergences"], int) and d["divergences"] >= 0
    assert d["rhat_max"] >= 0.99 and d["ess_min"] > 0
    assert d["ess_per_second"] == pytest.approx(d["ess_min"] / d["seconds"])
    assert d["converged"] == (d["rhat_max"] < 1.01 and d["ess_min"] >= 400
                              and d["divergences"] == 0)
    assert set(d["diagnostics"]) == {"test_predictions", "test_error", "train_loss",
                                     "output_kernel"}
    assert d["activation"] == "erf" and d["seed"] == 3
    assert d["hyper"]["sigma_b2"] == pytest.approx(0.07) and d["hyper"]["sigma_w2"] == 1.25
    assert d["fieldres_version"] == fieldres.__version__


@pytest.mark.parametrize("old, new", [("small", "default"), ("quick", "smoke")])
def test_cli_train_old_preset_names_are_refused(capsys, fake_dir, old, new):
    code, _, err = run(capsys, "train", "--preset", old, "--data-dir", str(fake_dir))
    assert code == 2 and f"--preset {new}" in err and err.count("\n") == 1


def test_train_presets_are_the_common_names():
    assert tuple(training.TRAIN_PRESETS) == fieldres.defaults.PRESETS
    assert all(p["n_chains"] >= 4 for p in training.TRAIN_PRESETS.values())
