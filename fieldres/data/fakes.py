"""Tiny fake CIFAR-10 / MNIST files in the original formats, for tests and examples."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import (
    _CIFAR_D,
    _CIFAR_LABEL_NAMES,
    _CIFAR_SUBDIR,
    _IDX_IMAGES_MAGIC,
    _IDX_LABELS_MAGIC,
    _MNIST_FILES,
    _MNIST_SUBDIR,
    StrPath,
)

__all__ = ["write_fake_cifar10", "write_fake_mnist"]

# --------------------------------------------------------------------------------------
# Fake fixtures in the original formats
# --------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Protocol-2 pickler that stores ``bytes`` as Python-2 ``str`` (opcodes U / T).

    This is how the original cPickle CIFAR-10 files store their keys and strings, so
    ``pickle.load(f, encoding="bytes")`` yields bytes and ``encoding="latin1"`` yields str,
    exactly as with the originals.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _write_py2_pickle(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def write_fake_cifar10(
    path: StrPath,
    n_per_batch: int = 100,
    n_batches: int = 2,
    seed: int = 0,
    n_test: int | None = None,
) -> Path:
    """Write a tiny random CIFAR-10 copy in the original python-pickle format.

    Parameters
    ----------
    path : str or os.PathLike
        Parent folder; the files go to ``path / "cifar-10-batches-py"`` (created).
    n_per_batch : int
        Images per training batch file.
    n_batches : int
        Number of ``data_batch_<N>`` files (``N = 1 .. n_batches``).
    seed : int
        Seed of the random pixels and labels.
    n_test : int, optional
        Images in ``test_batch``; defaults to ``n_per_batch``.

    Returns
    -------
    pathlib.Path
        The ``cifar-10-batches-py`` folder.

    Notes
    -----
    Files are protocol-2 pickles of dicts with Python-2 ``str`` keys, like the originals:
    batches have ``b'batch_label'``, ``b'labels'`` (list of int), ``b'data'`` (uint8
    ``(n, 3072)``, CHW rows) and ``b'filenames'`` (list of bytes); ``batches.meta`` has
    ``b'num_cases_per_batch'``, ``b'label_names'`` (the real ten names) and ``b'num_vis'``.
    Labels cycle through all ten classes in random order, so each class gets
    ``n // 10`` or ``n // 10 + 1`` images per file. Pixels are uniform random with a small
    class-dependent offset in the red channel.
    """
    folder = Path(path) / _CIFAR_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_test = n_per_batch if n_test is None else n_test
    meta = {
        b"num_cases_per_batch": int(n_per_batch),
        b"label_names": [n.encode() for n in _CIFAR_LABEL_NAMES],
        b"num_vis": _CIFAR_D,
    }
    _write_py2_pickle(meta, folder / "batches.meta")

    def batch(n: int, label: bytes, stem: str) -> dict[bytes, Any]:
        labs = rng.permutation(np.arange(n) % 10)
        data = rng.integers(0, 200, size=(n, _CIFAR_D), dtype=np.int64)
        data[:, :1024] += 5 * labs[:, None]  # a little class signal in the R plane
        return {
            b"batch_label": label,
            b"labels": [int(v) for v in labs],
            b"data": data.astype(np.uint8),
            b"filenames": [f"fake_{stem}_{i:05d}.png".encode() for i in range(n)],
        }

    for b in range(1, n_batches + 1):
        name = f"data_batch_{b}"
        label = f"training batch {b} of {n_batches}".encode()
        _write_py2_pickle(batch(n_per_batch, label, name), folder / name)
    _write_py2_pickle(batch(n_test, b"testing batch 1 of 1", "test_batch"), folder / "test_batch")
    return folder


def _write_idx_gz(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as g:
        g.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_mnist(path: StrPath, n_train: int = 100, n_test: int = 50, seed: int = 0) -> Path:
    """Write a tiny random MNIST copy as four gzipped big-endian IDX files.

    Parameters
    ----------
    path : str or os.PathLike
        Parent folder; the files go to ``path / "mnist"`` (created), under the standard
        names ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``.
    n_train, n_test : int
        Number of images in each split.
    seed : int
        Seed of the random pixels and labels.

    Returns
    -------
    pathlib.Path
        The ``mnist`` folder.

    Notes
    -----
    Image files: magic 2051, count, 28, 28, then uint8 pixels; label files: magic 2049,
    count, then uint8 labels. Labels cycle through 0..9 in random order. As in real MNIST,
    a 4-pixel border is always 0 (pixels constant over any subset); the central 20x20
    block is random.
    """
    folder = Path(path) / _MNIST_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labs = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, 4:24, 4:24] = rng.integers(0, 256, size=(n, 20, 20), dtype=np.uint8)
        img_stem, lab_stem = _MNIST_FILES[split]
        _write_idx_gz(folder / f"{img_stem}.gz", _IDX_IMAGES_MAGIC, images)
        _write_idx_gz(folder / f"{lab_stem}.gz", _IDX_LABELS_MAGIC, labs)
    return folder
