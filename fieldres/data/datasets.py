"""Loading and preprocessing of the image data sets used in the experiments.

This module reads CIFAR-10 (the standard python-pickle version, ``cifar-10-batches-py/``)
and MNIST (the four gzipped big-endian IDX files) from local disk -- it never downloads
anything -- and turns a class subset into a small, balanced, standardised problem for
kernel / finite-width experiments (:func:`make_dataset`).

Locating the data (:func:`resolve_data_dir`), in this order:

1. the ``data_dir`` argument, when given;
2. the environment variable ``FIELDRES_DATA_DIR``, when set;
3. ``../shared/data`` relative to the current working directory, then relative to the
   repository root of this package.

Each location may be either the parent folder (holding ``cifar-10-batches-py/`` and/or
``mnist/``) or the data-set folder itself. An explicit ``data_dir`` or a set environment
variable is used exclusively: if it does not hold the data, :class:`DataNotFoundError` is
raised rather than silently falling back to another copy.

Only the ``data_batch_*`` files that exist are loaded (in numeric order), so a partial
CIFAR-10 copy with, e.g., two of the five training batches works; the number found is
logged (logger ``fieldres.data``) and recorded in :attr:`Dataset.metadata`.

:func:`write_fake_cifar10` and :func:`write_fake_mnist` write tiny random fixtures in
exactly the original on-disk formats, for tests that must not depend on the real data.

Everything is returned as numpy arrays (``uint8`` pixels, ``int64`` labels from the
loaders; ``float64`` features from :func:`make_dataset`); convert with
``jax.numpy.asarray`` where needed.
"""

from __future__ import annotations

import codecs
import gzip
import logging
import os
import pickle
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._validation import FieldresInputError

__all__ = [
    "DATA_DIR_ENV",
    "DataFormatError",
    "DataNotFoundError",
    "load_cifar10",
    "load_mnist",
    "resolve_data_dir",
]

logger = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]
Split = Literal["train", "test"]
LabelEncoding = Literal["auto", "pm1", "onehot", "int"]

#: Environment variable naming the data folder.
DATA_DIR_ENV = "FIELDRES_DATA_DIR"

_CIFAR_SUBDIR = "cifar-10-batches-py"
_MNIST_SUBDIR = "mnist"
_CIFAR_D = 3 * 32 * 32
_MNIST_D = 28 * 28
_CIFAR_BATCH_RE = re.compile(r"^data_batch_(\d+)$")
_MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_LABEL_NAMES = [str(i) for i in range(10)]
# The original CIFAR-10 label names (as in batches.meta); used by the fake writer only.
_CIFAR_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

_EXPECTED = {
    "cifar10": (
        f"a folder '{_CIFAR_SUBDIR}/' (or that folder itself) with the python-pickle version "
        "of CIFAR-10: 'batches.meta', 'test_batch' and one or more of "
        "'data_batch_1' ... 'data_batch_5' (https://www.cs.toronto.edu/~kriz/cifar.html)"
    ),
    "mnist": (
        f"a folder '{_MNIST_SUBDIR}/' (or that folder itself) with the IDX files "
        "'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', "
        "'t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz' (gzipped or not)"
    ),
}


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class DataNotFoundError(FieldresInputError, FileNotFoundError):
    """The data set could not be found on disk.

    The message names every location tried, the environment variable and the files
    expected. The locations tried are also available as :attr:`tried`.
    """

    def __init__(self, message: str, tried: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.tried: tuple[Path, ...] = tuple(tried)

    def __str__(self) -> str:  # FileNotFoundError's default would show only errno fields
        return str(self.args[0])


class DataFormatError(FieldresInputError):
    """A data file exists but is malformed (bad pickle or gzip, wrong shapes, bad magic)."""


# --------------------------------------------------------------------------------------
# Locating the data
# --------------------------------------------------------------------------------------


def _canonical_dataset(dataset: str) -> str:
    key = str(dataset).lower().replace("-", "").replace("_", "")
    if key in ("cifar10", "cifar"):
        return "cifar10"
    if key == "mnist":
        return "mnist"
    raise FieldresInputError(f"unknown dataset {dataset!r}; expected 'cifar10' or 'mnist'")


def _mnist_file(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem.gz`` or ``folder/stem`` if either exists, else ``None``."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _is_dataset_folder(folder: Path, dataset: str) -> bool:
    if not folder.is_dir():
        return False
    if dataset == "cifar10":
        return (folder / "batches.meta").is_file()
    return any(
        _mnist_file(folder, stem) is not None for pair in _MNIST_FILES.values() for stem in pair
    )


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _default_bases() -> list[Path]:
    bases = [Path.cwd() / ".." / "shared" / "data", _repo_root().parent / "shared" / "data"]
    unique: list[Path] = []
    for base in bases:
        base = Path(os.path.normpath(base.absolute()))
        if base not in unique:
            unique.append(base)
    return unique


def resolve_data_dir(data_dir: StrPath | None = None, dataset: str = "cifar10") -> Path:
    """Find the folder that holds a data set.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Either the parent data folder (containing ``cifar-10-batches-py/`` or ``mnist/``)
        or the data-set folder itself. When given, it is the only location tried.
    dataset : {"cifar10", "mnist"}
        Which data set to look for (``"cifar-10"`` and ``"CIFAR10"`` are accepted too).

    Returns
    -------
    pathlib.Path
        The data-set folder itself (e.g. ``.../cifar-10-batches-py``), absolute.

    Raises
    ------
    DataNotFoundError
        If no location holds the data set. The message lists every path tried, the state
        of ``FIELDRES_DATA_DIR`` and the files expected.
    FieldresInputError
        If ``dataset`` is not a known data set.

    Notes
    -----
    Search order: the ``data_dir`` argument; else the environment variable
    ``FIELDRES_DATA_DIR`` (used exclusively when set and non-empty); else
    ``../shared/data`` relative to the current working directory and relative to the
    repository root of this package. A CIFAR-10 folder is recognised by its
    ``batches.meta``; an MNIST folder by any of its four IDX files.
    """
    ds = _canonical_dataset(dataset)
    subdir = _CIFAR_SUBDIR if ds == "cifar10" else _MNIST_SUBDIR
    env_value = os.environ.get(DATA_DIR_ENV, "")

    if data_dir is not None:
        source = "the data_dir argument"
        bases = [Path(data_dir).expanduser()]
    elif env_value:
        source = f"the environment variable {DATA_DIR_ENV}"
        bases = [Path(env_value).expanduser()]
    else:
        source = "the default locations"
        bases = _default_bases()

    tried: list[Path] = []
    for base in bases:
        base = Path(os.path.normpath(base.absolute()))
        for candidate in (base, base / subdir):
            tried.append(candidate)
            if _is_dataset_folder(candidate, ds):
                return candidate

    env_state = f"{DATA_DIR_ENV}={env_value!r}" if env_value else f"{DATA_DIR_ENV} is not set"
    lines = "\n".join(f"  - {p}" for p in tried)
    raise DataNotFoundError(
        f"Could not find the {ds} data set using {source}. Paths tried:\n{lines}\n"
        f"Environment variable: {env_state}.\n"
        f"Expected {_EXPECTED[ds]}.\n"
        f"Pass data_dir=... or set {DATA_DIR_ENV} to the folder holding the data.",
        tried,
    )


# --------------------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------------------


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_frombuffer() -> Any:
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core.numeric import _frombuffer
    return _frombuffer


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the few globals a CIFAR-10 batch file needs.

    Equivalent to ``pickle.load(f, encoding="bytes")`` on legitimate files, but refuses to
    import arbitrary callables, so a corrupted or hostile file cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _numpy_frombuffer()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            return codecs.encode
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR file")


def _load_pickle(path: Path) -> dict[bytes, Any]:
    """Load a CIFAR-style pickle with bytes keys; raise DataFormatError on any problem."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: could not read the pickle ({exc})") from exc
    except Exception as exc:  # unpickling can raise almost anything on garbage input
        raise DataFormatError(
            f"{path}: not a valid CIFAR-10 python pickle ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Accept str keys too (files re-pickled under Python 3 with str keys).
    return {(k.encode("latin1") if isinstance(k, str) else k): v for k, v in obj.items()}


def _as_str(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _load_cifar_label_names(folder: Path) -> list[str]:
    path = folder / "batches.meta"
    meta = _load_pickle(path)
    names = meta.get(b"label_names")
    if not isinstance(names, list | tuple) or not names:
        raise DataFormatError(f"{path}: missing or empty b'label_names' list")
    if not all(isinstance(n, bytes | str) for n in names):
        raise DataFormatError(f"{path}: b'label_names' must hold strings")
    return [_as_str(n) for n in names]


def _cifar_split_files(folder: Path, split: Split) -> list[Path]:
    if split == "test":
        files = [folder / "test_batch"] if (folder / "test_batch").is_file() else []
    else:
        numbered = []
        for p in folder.iterdir():
            m = _CIFAR_BATCH_RE.match(p.name)
            if m and p.is_file():
                numbered.append((int(m.group(1)), p))
        files = [p for _, p in sorted(numbered)]
    if not files:
        wanted = "'test_batch'" if split == "test" else "'data_batch_1' ... 'data_batch_5'"
        raise DataNotFoundError(
            f"CIFAR-10 folder {folder} has no {split} data: expected {wanted}. "
            f"Expected {_EXPECTED['cifar10']}.",
            [folder],
        )
    return files


def _load_cifar_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    for key in (b"data", b"labels"):
        if key not in d:
            found = sorted(repr(k) for k in d)
            raise DataFormatError(f"{path}: missing key {key!r} (keys found: {found})")
    data = d[b"data"]
    if not isinstance(data, np.ndarray):
        raise DataFormatError(f"{path}: b'data' is a {type(data).__name__}, expected ndarray")
    if data.dtype != np.uint8:
        raise DataFormatError(f"{path}: b'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != _CIFAR_D:
        raise DataFormatError(
            f"{path}: b'data' has shape {data.shape}, expected (n, {_CIFAR_D}) "
            "(rows of 1024 R, 1024 G, 1024 B values)"
        )
    try:
        labels = np.asarray(d[b"labels"])
    except Exception as exc:
        raise DataFormatError(f"{path}: b'labels' is not an array of ints ({exc})") from exc
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise DataFormatError(
            f"{path}: b'labels' has shape {labels.shape}, expected ({data.shape[0]},) to "
            "match b'data'"
        )
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_classes
    ):
        raise DataFormatError(
            f"{path}: b'labels' must be integers in [0, {n_classes - 1}] (dtype {labels.dtype})"
        )
    return np.ascontiguousarray(data), labels.astype(np.int64)


def _check_split(split: str) -> Split:
    if split not in ("train", "test"):
        raise FieldresInputError(f"split must be 'train' or 'test', got {split!r}")
    return split  # type: ignore[return-value]


def _load_cifar10_with_files(
    data_dir: StrPath | None, split: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    split = _check_split(split)
    folder = resolve_data_dir(data_dir, "cifar10")
    names = _load_cifar_label_names(folder)
    files = _cifar_split_files(folder, split)
    parts = [_load_cifar_batch(p, len(names)) for p in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    logger.info(
        "CIFAR-10 %s: found %d batch file(s) in %s (%s), %d images",
        split,
        len(files),
        folder,
        ", ".join(p.name for p in files),
        images.shape[0],
    )
    return images, labels, names, files


def load_cifar10(
    data_dir: StrPath | None = None, split: Split = "train"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load one split of CIFAR-10 (python-pickle version).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Data location, see :func:`resolve_data_dir`.
    split : {"train", "test"}
        ``"train"`` concatenates every ``data_batch_<N>`` file present, in increasing
        ``N`` (the number found is logged at INFO level); ``"test"`` reads ``test_batch``.

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` array of shape ``(n, 3072)`` in the original layout: each row is 1024 R,
        then 1024 G, then 1024 B values, each a row-major 32x32 plane (CHW). Use
        ``images.reshape(-1, 3, 32, 32)`` for NCHW.
    labels : numpy.ndarray
        ``int64`` array of shape ``(n,)`` with values in ``0..9``.
    label_names : list of str
        The class names from ``batches.meta`` (``"airplane"``, ..., ``"truck"``).

    Raises
    ------
    DataNotFoundError
        If the data folder or the split's files are missing.
    DataFormatError
        If a file is not a valid CIFAR-10 pickle (bad pickle, missing keys, wrong shape
        or dtype, labels out of range).
    """
    images, labels, names, _ = _load_cifar10_with_files(data_dir, split)
    return images, labels, names


# --------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a (possibly gzipped) big-endian IDX file of unsigned bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    raw = g.read()
            else:
                raw = f.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"{path}: could not decompress/read ({exc})") from exc
    if len(raw) < 4:
        raise DataFormatError(f"{path}: file too short for an IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expected_magic:
        raise DataFormatError(
            f"{path}: wrong IDX magic number {magic} (0x{magic & 0xFFFFFFFF:08x}), "
            f"expected {expected_magic} (0x{expected_magic:08x})"
        )
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    n_values = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header_len
    if payload != n_values:
        raise DataFormatError(
            f"{path}: IDX header announces shape {dims} ({n_values} bytes) but the file "
            f"holds {payload} data bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def load_mnist(
    data_dir: StrPath | None = None, split: Split = "train"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load one split of MNIST from the four IDX files.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Data location, see :func:`resolve_data_dir`.
    split : {"train", "test"}
        ``"train"`` reads ``train-*-ubyte[.gz]``, ``"test"`` reads ``t10k-*-ubyte[.gz]``.

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` array of shape ``(n, 784)`` (row-major 28x28 images).
    labels : numpy.ndarray
        ``int64`` array of shape ``(n,)`` with values in ``0..9``.
    label_names : list of str
        ``["0", "1", ..., "9"]``.

    Raises
    ------
    DataNotFoundError
        If the data folder or one of the split's two files is missing.
    DataFormatError
        If a file has the wrong magic number, an inconsistent header, images that are not
        28x28, labels out of range, or image and label counts that differ.
    """
    images, labels, names, _ = _load_mnist_with_files(data_dir, split)
    return images, labels, names


def _load_mnist_with_files(
    data_dir: StrPath | None, split: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[Path]]:
    split = _check_split(split)
    folder = resolve_data_dir(data_dir, "mnist")
    paths: list[Path] = []
    for stem in _MNIST_FILES[split]:
        p = _mnist_file(folder, stem)
        if p is None:
            raise DataNotFoundError(
                f"MNIST folder {folder} lacks '{stem}.gz' (or '{stem}') for the {split} "
                f"split. Expected {_EXPECTED['mnist']}.",
                [folder],
            )
        paths.append(p)
    img_path, lab_path = paths
    images = _read_idx(img_path, _IDX_IMAGES_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataFormatError(f"{img_path}: images have shape {images.shape}, expected (n, 28, 28)")
    labels = _read_idx(lab_path, _IDX_LABELS_MAGIC)
    if labels.ndim != 1:
        raise DataFormatError(f"{lab_path}: labels have shape {labels.shape}, expected (n,)")
    if labels.shape[0] != images.shape[0]:
        raise DataFormatError(
            f"{lab_path}: {labels.shape[0]} labels but {img_path.name} holds "
            f"{images.shape[0]} images"
        )
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{lab_path}: labels must lie in 0..9 (max {labels.max()})")
    logger.info("MNIST %s: %d images from %s", split, images.shape[0], folder)
    return images.reshape(-1, _MNIST_D), labels.astype(np.int64), list(_MNIST_LABEL_NAMES), paths
