"""Tests for :mod:`fieldres.data` (fake fixtures; one optional test on the real data)."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fieldres.data import (
    DATA_DIR_ENV,
    DataFormatError,
    DataNotFoundError,
    Dataset,
    load_cifar10,
    load_mnist,
    make_dataset,
    resolve_data_dir,
    write_fake_cifar10,
    write_fake_mnist,
)
from fieldres.data import datasets as fd

REAL_DATA = Path(__file__).parents[2] / "shared" / "data"
HAVE_REAL_DATA = (REAL_DATA / "cifar-10-batches-py" / "test_batch").is_file() and (
    REAL_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"
).is_file()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent folder with fake CIFAR-10 (2x100 train, 100 test) and MNIST (200/60)."""
    root = tmp_path_factory.mktemp("data")
    write_fake_cifar10(root, n_per_batch=100, n_batches=2, seed=1)
    write_fake_mnist(root, n_train=200, n_test=60, seed=2)
    return root


def _read_pickle(path: Path, encoding: str = "bytes"):
    with open(path, "rb") as f:
        return pickle.load(f, encoding=encoding)


def _copy_cifar(src_root: Path, dst_root: Path) -> Path:
    dst = dst_root / "cifar-10-batches-py"
    dst.mkdir(parents=True)
    for p in (src_root / "cifar-10-batches-py").iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def _write_pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


# ------------------------------------------------------------------ fixtures' format


def test_fake_cifar10_format_matches_original(fake_root: Path) -> None:
    folder = fake_root / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "test_batch",
    ]
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2
    d = _read_pickle(folder / "data_batch_1")
    assert list(d) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert d[b"batch_label"] == b"training batch 1 of 2"
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (100, 3072)
    assert isinstance(d[b"labels"], list) and all(type(v) is int for v in d[b"labels"])
    assert all(isinstance(f, bytes) for f in d[b"filenames"])
    # Python-2 str keys, like the originals: latin1 gives str keys (torchvision style).
    d2 = _read_pickle(folder / "data_batch_1", encoding="latin1")
    assert "data" in d2 and np.array_equal(d2["data"], d[b"data"])
    assert _read_pickle(folder / "test_batch")[b"batch_label"] == b"testing batch 1 of 1"
    meta = _read_pickle(folder / "batches.meta")
    assert meta[b"label_names"][0] == b"airplane" and len(meta[b"label_names"]) == 10
    assert meta[b"num_vis"] == 3072 and meta[b"num_cases_per_batch"] == 100


def test_fake_mnist_format_matches_original(fake_root: Path) -> None:
    folder = fake_root / "mnist"
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    assert struct.unpack(">iiii", raw[:16]) == (2051, 200, 28, 28)
    assert len(raw) == 16 + 200 * 784
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        raw = f.read()
    assert struct.unpack(">ii", raw[:8]) == (2049, 60)
    assert len(raw) == 8 + 60


def test_fake_writers_are_deterministic(tmp_path: Path) -> None:
    a = write_fake_cifar10(tmp_path / "a", n_per_batch=20, seed=3)
    b = write_fake_cifar10(tmp_path / "b", n_per_batch=20, seed=3)
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    a = write_fake_mnist(tmp_path / "a", 20, 10, seed=3)
    b = write_fake_mnist(tmp_path / "b", 20, 10, seed=3)
    for p in a.iterdir():
        assert p.read_bytes() == (b / p.name).read_bytes()


# ------------------------------------------------------------------ loaders


def test_load_cifar10_roundtrip(fake_root: Path) -> None:
    folder = fake_root / "cifar-10-batches-py"
    x, y, names = load_cifar10(fake_root, "train")
    b1, b2 = _read_pickle(folder / "data_batch_1"), _read_pickle(folder / "data_batch_2")
    assert x.dtype == np.uint8 and x.shape == (200, 3072)
    assert y.dtype == np.int64 and y.shape == (200,)
    assert np.array_equal(x, np.concatenate([b1[b"data"], b2[b"data"]]))
    assert np.array_equal(y, b1[b"labels"] + b2[b"labels"])
    assert names[:2] == ["airplane", "automobile"] and names[-1] == "truck"
    xt, yt, _ = load_cifar10(folder, split="test")  # the data-set folder itself works too
    assert xt.shape == (100, 3072)
    assert np.array_equal(yt, _read_pickle(folder / "test_batch")[b"labels"])


def test_load_cifar10_loads_existing_batches_in_numeric_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_fake_cifar10(tmp_path, n_per_batch=10, n_batches=11, seed=0)
    (folder / "data_batch_3").unlink()  # a gap is fine: whichever files exist
    (folder / "data_batch_x").write_bytes(b"ignored")  # not data_batch_<N>
    with caplog.at_level(logging.INFO, logger="fieldres.data"):
        x, _, _ = load_cifar10(tmp_path)
    assert "found 10 batch file(s)" in caplog.text
    order = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    expected = np.concatenate([_read_pickle(folder / f"data_batch_{i}")[b"data"] for i in order])
    assert np.array_equal(x, expected)
    ds = make_dataset(classes=("cat", "dog"), n_train=10, n_test=2, data_dir=tmp_path)
    assert ds.metadata["n_train_batches"] == 10


def test_load_mnist_roundtrip(fake_root: Path) -> None:
    x, y, names = load_mnist(fake_root, "train")
    assert x.dtype == np.uint8 and x.shape == (200, 784)
    assert y.dtype == np.int64 and y.shape == (200,)
    assert names == [str(i) for i in range(10)]
    assert np.bincount(y, minlength=10).tolist() == [20] * 10
    with gzip.open(fake_root / "mnist" / "train-images-idx3-ubyte.gz", "rb") as f:
        assert x.tobytes() == f.read()[16:]
    xt, yt, _ = load_mnist(fake_root / "mnist", "test")
    assert xt.shape == (60, 784) and yt.shape == (60,)


def test_load_mnist_accepts_uncompressed_files(fake_root: Path, tmp_path: Path) -> None:
    dst = tmp_path / "mnist"
    dst.mkdir()
    for p in (fake_root / "mnist").iterdir():
        with gzip.open(p, "rb") as f:
            (dst / p.name.removesuffix(".gz")).write_bytes(f.read())
    x, y, _ = load_mnist(tmp_path, "test")
    x0, y0, _ = load_mnist(fake_root, "test")
    assert np.array_equal(x, x0) and np.array_equal(y, y0)


def test_bad_split_and_dataset(fake_root: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_cifar10(fake_root, "validation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown dataset"):
        resolve_data_dir(fake_root, "imagenet")


# ------------------------------------------------------------------ locating data


def test_resolve_accepts_parent_or_dataset_folder(fake_root: Path) -> None:
    cifar = fake_root / "cifar-10-batches-py"
    assert resolve_data_dir(fake_root) == cifar
    assert resolve_data_dir(cifar) == cifar
    assert resolve_data_dir(str(fake_root), "mnist") == fake_root / "mnist"
    assert resolve_data_dir(fake_root, "CIFAR-10") == cifar


def test_resolve_env_var_and_precedence(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(fake_root))
    assert resolve_data_dir(dataset="mnist") == fake_root / "mnist"
    other = tmp_path / "other"
    write_fake_mnist(other, 10, 10)
    assert resolve_data_dir(other, "mnist") == other / "mnist"  # argument beats env var


def test_resolve_defaults_cwd_then_repo_root(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ../shared/data relative to the working directory
    work = tmp_path / "ws"
    (work / "proj").mkdir(parents=True)
    write_fake_cifar10(work / "shared" / "data", n_per_batch=10, n_batches=1)
    monkeypatch.chdir(work / "proj")
    assert resolve_data_dir() == (work / "shared" / "data" / "cifar-10-batches-py")
    # ../shared/data relative to the repository root of the package
    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "ws" / "repo"
    repo.mkdir()
    monkeypatch.setattr(fd, "_repo_root", lambda: repo)
    assert resolve_data_dir() == (work / "shared" / "data" / "cifar-10-batches-py")


def test_missing_data_message_names_every_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fd, "_repo_root", lambda: tmp_path / "nowhere" / "repo")
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir(dataset="cifar10")
    err = info.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    expected_paths = [
        tmp_path.parent / "shared" / "data",
        tmp_path.parent / "shared" / "data" / "cifar-10-batches-py",
        tmp_path / "nowhere" / "shared" / "data",
        tmp_path / "nowhere" / "shared" / "data" / "cifar-10-batches-py",
    ]
    for p in expected_paths:
        assert str(p) in msg
    assert list(err.tried) == expected_paths
    assert f"{DATA_DIR_ENV} is not set" in msg
    assert "batches.meta" in msg and "data_batch_1" in msg and "test_batch" in msg

    missing = tmp_path / "missing"
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(missing)
    msg = str(info.value)
    assert str(missing) in msg and str(missing / "mnist") in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and DATA_DIR_ENV in msg

    monkeypatch.setenv(DATA_DIR_ENV, str(missing))
    with pytest.raises(DataNotFoundError, match="FIELDRES_DATA_DIR=") as info:
        make_dataset()
    assert str(missing / "cifar-10-batches-py") in str(info.value)


def test_missing_split_files(fake_root: Path, tmp_path: Path) -> None:
    folder = _copy_cifar(fake_root, tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataNotFoundError, match="test_batch"):
        load_cifar10(tmp_path, "test")
    for p in folder.glob("data_batch_*"):
        p.unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_1"):
        load_cifar10(tmp_path, "train")
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(
        (fake_root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    )
    with pytest.raises(DataNotFoundError, match="train-labels-idx1-ubyte"):
        load_mnist(tmp_path, "train")


# ------------------------------------------------------------------ malformed files


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not a pickle", "not a valid CIFAR-10 python pickle"),
        ([1, 2, 3], "expected a pickled dict"),
        ({b"labels": [0]}, "missing key b'data'"),
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"shape \(4, 100\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "dtype float32"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "match b'data'"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"\[0, 9\]"),
    ],
)
def test_malformed_cifar_batch(
    fake_root: Path, tmp_path: Path, content: object, match: str
) -> None:
    folder = _copy_cifar(fake_root, tmp_path)
    target = folder / "data_batch_2"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        _write_pickle(content, target)
    with pytest.raises(DataFormatError, match=match) as info:
        load_cifar10(tmp_path)
    assert str(target) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_malformed_batches_meta(fake_root: Path, tmp_path: Path) -> None:
    folder = _copy_cifar(fake_root, tmp_path)
    _write_pickle({b"num_vis": 3072}, folder / "batches.meta")
    with pytest.raises(DataFormatError, match="label_names") as info:
        load_cifar10(tmp_path, "test")
    assert str(folder / "batches.meta") in str(info.value)


def test_pickle_with_arbitrary_global_is_refused(fake_root: Path, tmp_path: Path) -> None:
    folder = _copy_cifar(fake_root, tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    _write_pickle({b"data": Evil(), b"labels": []}, folder / "test_batch")
    with pytest.raises(DataFormatError, match="not allowed"):
        load_cifar10(tmp_path, "test")
    assert not marker.exists()


def test_str_keyed_python3_pickle_is_accepted(fake_root: Path, tmp_path: Path) -> None:
    folder = _copy_cifar(fake_root, tmp_path)
    d = _read_pickle(folder / "test_batch", encoding="latin1")
    _write_pickle(d, folder / "test_batch")  # Python-3 style: str keys, _codecs bytes
    x, y, _ = load_cifar10(tmp_path, "test")
    assert np.array_equal(x, d["data"]) and np.array_equal(y, d["labels"])


def _write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


def _mnist_copy(fake_root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "mnist"
    dst.mkdir()
    for p in (fake_root / "mnist").iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("name", "payload", "match"),
    [
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">ii", 2051, 60) + bytes(60), "magic"),
        ("t10k-images-idx3-ubyte.gz", struct.pack(">iiii", 2049, 60, 28, 28), "magic"),
        ("t10k-images-idx3-ubyte.gz", struct.pack(">iiii", 2051, 60, 28, 28) + bytes(9), "holds"),
        ("t10k-images-idx3-ubyte.gz", struct.pack(">iiii", 2051, 1, 20, 20) + bytes(400), "28"),
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">ii", 2049, 59) + bytes(59), "59 labels"),
        ("t10k-labels-idx1-ubyte.gz", struct.pack(">ii", 2049, 60) + bytes([12] * 60), "0..9"),
        ("t10k-labels-idx1-ubyte.gz", b"\x00\x00", "too short"),
    ],
)
def test_malformed_mnist(
    fake_root: Path, tmp_path: Path, name: str, payload: bytes, match: str
) -> None:
    folder = _mnist_copy(fake_root, tmp_path)
    _write_gz(folder / name, payload)
    with pytest.raises(DataFormatError, match=match) as info:
        load_mnist(tmp_path, "test")
    assert name in str(info.value)


def test_corrupt_gzip_and_non_gzip_mnist(fake_root: Path, tmp_path: Path) -> None:
    folder = _mnist_copy(fake_root, tmp_path)
    good = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "test")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataFormatError, match="magic"):
        load_mnist(tmp_path, "test")


# ------------------------------------------------------------------ make_dataset


def test_class_selection_by_name_case_insensitive(fake_root: Path) -> None:
    ds = make_dataset(classes=("DOG", " Airplane"), n_train=20, n_test=10, data_dir=fake_root)
    assert ds.classes == ("dog", "airplane")
    assert ds.dataset == "cifar10" and ds.d_in == 3072
    _, y_all, _ = load_cifar10(fake_root, "train")
    orig = y_all[ds.train_index]
    assert set(orig.tolist()) == {5, 0}
    np.testing.assert_array_equal(ds.y_train, np.where(orig == 5, 1.0, -1.0))
    _, yt_all, _ = load_cifar10(fake_root, "test")
    np.testing.assert_array_equal(ds.y_test, np.where(yt_all[ds.test_index] == 5, 1.0, -1.0))
    # MNIST: names "0".."9", and integer indices are accepted too
    a = make_dataset("mnist", classes=("3", "8"), n_train=10, n_test=6, data_dir=fake_root)
    b = make_dataset("MNIST", classes=(3, 8), n_train=10, n_test=6, data_dir=fake_root)
    assert a.classes == b.classes == ("3", "8")
    np.testing.assert_array_equal(a.x_train, b.x_train)


def test_balance_and_remainder_to_first_classes(fake_root: Path) -> None:
    ds = make_dataset(
        classes=("ship", "cat", "frog"), n_train=25, n_test=10, data_dir=fake_root, labels="int"
    )
    assert ds.n_train == 25 and ds.n_test == 10 and ds.n_classes == 3
    assert np.bincount(ds.y_train, minlength=3).tolist() == [9, 8, 8]
    assert np.bincount(ds.y_test, minlength=3).tolist() == [4, 3, 3]
    assert ds.metadata["train_counts"] == {"ship": 9, "cat": 8, "frog": 8}
    assert len(set(ds.train_index.tolist())) == 25  # no repeats
    assert not np.all(np.diff(ds.y_train) >= 0)  # shuffled, not grouped by class
    ds = make_dataset(classes=("dog", "cat"), n_train=40, n_test=20, data_dir=fake_root)
    assert (ds.y_train == 1).sum() == 20 and (ds.y_test == -1).sum() == 10


def test_reproducible_by_seed(fake_root: Path) -> None:
    kw = dict(classes=("dog", "airplane"), n_train=20, n_test=10, data_dir=fake_root)
    a = make_dataset(seed=7, **kw)
    b = make_dataset(seed=7, **kw)
    c = make_dataset(seed=8, **kw)
    for f in ("x_train", "y_train", "x_test", "y_test", "train_index", "test_index"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.train_index, c.train_index)


def test_standardisation_statistics_and_test_transform(fake_root: Path) -> None:
    ds = make_dataset(classes=("dog", "cat"), n_train=30, n_test=16, data_dir=fake_root)
    assert ds.scale == 1.0 and ds.k0_scale is None
    assert ds.x_train.dtype == np.float64
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, rtol=1e-12)
    x_raw, _, _ = load_cifar10(fake_root, "train")
    xt_raw, _, _ = load_cifar10(fake_root, "test")
    np.testing.assert_allclose(ds.pixel_mean, (x_raw[ds.train_index] / 255.0).mean(0))
    expected_test = (xt_raw[ds.test_index] / 255.0 - ds.pixel_mean) / ds.pixel_std
    np.testing.assert_allclose(ds.x_test, expected_test, rtol=1e-13, atol=1e-13)


def test_constant_pixels_are_centred_not_divided(fake_root: Path) -> None:
    # Fake MNIST has a 4-pixel border that is always 0 -> std 0 on any subset.
    ds = make_dataset("mnist", classes=("1", "7"), n_train=20, n_test=10, data_dir=fake_root)
    border = np.ones((28, 28), bool)
    border[4:24, 4:24] = False
    border = border.ravel()
    assert ds.metadata["n_constant_pixels"] >= border.sum()
    assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
    assert np.all(ds.x_train[:, border] == 0.0) and np.all(ds.x_test[:, border] == 0.0)
    assert np.all(ds.pixel_std[border] == 1.0)
    inner = ~border
    np.testing.assert_allclose(ds.x_train[:, inner].std(axis=0), 1.0, rtol=1e-12)
    # mean diag of K0 is then the fraction of non-constant pixels (< 1)
    k0 = np.mean(np.sum(ds.x_train**2, axis=1)) / ds.d_in
    assert k0 == pytest.approx(1 - ds.metadata["n_constant_pixels"] / 784, rel=1e-12)


@pytest.mark.parametrize(
    ("dataset", "classes", "k0"), [("cifar10", ("dog", "cat"), 2.5), ("mnist", ("0", "1"), 0.3)]
)
def test_k0_scale_hits_target(fake_root: Path, dataset: str, classes, k0: float) -> None:
    ds = make_dataset(
        dataset, classes=classes, n_train=20, n_test=10, data_dir=fake_root, k0_scale=k0
    )
    X = ds.x_train
    mean_diag = np.mean(np.diag(X @ X.T / ds.d_in))
    assert abs(mean_diag - k0) < 1e-12
    ref = make_dataset(dataset, classes=classes, n_train=20, n_test=10, data_dir=fake_root)
    np.testing.assert_allclose(ds.x_test, ref.x_test * ds.scale, rtol=1e-13, atol=1e-13)
    assert ds.k0_scale == k0


def test_label_encodings(fake_root: Path) -> None:
    kw = dict(n_train=30, n_test=12, data_dir=fake_root)
    two = make_dataset(classes=("dog", "cat"), **kw)
    assert two.label_encoding == "pm1" and two.y_train.dtype == np.float64
    assert set(two.y_train.tolist()) == {1.0, -1.0} and two.y_train.shape == (30,)
    three = make_dataset(classes=("dog", "cat", "bird"), **kw)
    assert three.label_encoding == "onehot" and three.y_train.shape == (30, 3)
    assert three.y_train.dtype == np.float64
    np.testing.assert_array_equal(three.y_train.sum(axis=1), 1.0)
    forced = make_dataset(classes=("dog", "cat"), labels="onehot", **kw)
    ints = make_dataset(classes=("dog", "cat"), labels="int", **kw)
    assert forced.y_train.shape == (30, 2) and ints.y_train.dtype == np.int64
    np.testing.assert_array_equal(forced.y_train.argmax(axis=1), ints.y_train)
    np.testing.assert_array_equal(two.y_train, 1.0 - 2.0 * ints.y_train)  # first class -> +1
    with pytest.raises(ValueError, match="exactly two"):
        make_dataset(classes=("dog", "cat", "bird"), labels="pm1", **kw)
    with pytest.raises(ValueError, match="labels must be"):
        make_dataset(classes=("dog", "cat"), labels="binary", **kw)  # type: ignore[arg-type]


def test_dataset_is_frozen_and_read_only(fake_root: Path) -> None:
    ds = make_dataset(classes=("dog", "cat"), n_train=10, n_test=4, data_dir=fake_root)
    assert isinstance(ds, Dataset)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.scale = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0
    assert "x_train=(10, 3072)" in repr(ds)


def test_make_dataset_errors(fake_root: Path) -> None:
    kw = dict(data_dir=fake_root)
    with pytest.raises(ValueError, match="unknown class 'wolf'") as info:
        make_dataset(classes=("dog", "wolf"), **kw)
    assert "airplane" in str(info.value) and "truck" in str(info.value)
    with pytest.raises(ValueError, match=r"valid names: \['0', '1'"):
        make_dataset("mnist", classes=("3", "ten"), **kw)
    with pytest.raises(ValueError, match="more than once"):
        make_dataset(classes=("dog", "Dog"), **kw)
    # 20 training examples of each class exist in the fake data
    with pytest.raises(ValueError, match="'dog' has only 20 train examples, but 21"):
        make_dataset(classes=("dog", "cat"), n_train=42, n_test=4, **kw)
    with pytest.raises(ValueError, match="has only 10 test examples"):
        make_dataset(classes=("dog", "cat"), n_train=4, n_test=22, **kw)
    with pytest.raises(ValueError, match="at least the number of classes"):
        make_dataset(classes=("dog", "cat", "bird"), n_train=2, n_test=4, **kw)
    with pytest.raises(ValueError, match="k0_scale"):
        make_dataset(classes=("dog", "cat"), n_train=4, n_test=4, k0_scale=0.0, **kw)
    with pytest.raises(ValueError, match="class index 10 out of range"):
        make_dataset(classes=(0, 10), n_train=4, n_test=4, **kw)


# ------------------------------------------------------------------ real data (optional)


@pytest.mark.skipif(not HAVE_REAL_DATA, reason=f"real CIFAR-10/MNIST not found under {REAL_DATA}")
def test_real_data_matches_readme_facts() -> None:
    x, y, names = load_cifar10(REAL_DATA, "test")
    assert x.shape == (10000, 3072) and x.dtype == np.uint8
    assert names[0] == "airplane" and names[3] == "cat" and names[9] == "truck"
    assert np.bincount(y, minlength=10).tolist() == [1000] * 10
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert x[0, :8].tolist() == [158, 159, 165, 166, 160, 156, 162, 159]
    xtr, ytr, _ = load_cifar10(REAL_DATA, "train")
    assert xtr.shape[0] % 10000 == 0 and xtr.shape[0] >= 10000
    assert xtr[0, :4].tolist() == [59, 43, 50, 68]
    assert ytr[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    xm, ym, mnames = load_mnist(REAL_DATA, "test")
    assert xm.shape == (10000, 784) and mnames[7] == "7"
    assert ym[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    ds = make_dataset(
        classes=("dog", "airplane"), n_train=500, n_test=1000, k0_scale=1.0, data_dir=REAL_DATA
    )
    assert ds.x_train.shape == (500, 3072) and ds.x_test.shape == (1000, 3072)
    assert (ds.y_test == 1.0).sum() == 500
    assert abs(np.mean(np.sum(ds.x_train**2, axis=1)) / 3072 - 1.0) < 1e-12
