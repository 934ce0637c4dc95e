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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .._validation import FieldresInputError

__all__ = [
    "DATA_DIR_ENV",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "load_cifar10",
    "load_mnist",
    "make_dataset",
    "resolve_data_dir",
    "write_fake_cifar10",
    "write_fake_mnist",
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
    ValueError
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


# --------------------------------------------------------------------------------------
# Preprocessed class subsets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A preprocessed, balanced class subset (returned by :func:`make_dataset`).

    All arrays are read-only numpy arrays.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        ``float64`` inputs of shape ``(n, d_in)``: pixels in ``[0, 1]``, standardised per
        pixel with the training-subset statistics, then multiplied by :attr:`scale`.
    y_train, y_test : numpy.ndarray
        Targets: ``float64`` ``(n,)`` in ``{+1, -1}`` (``"pm1"``), ``float64`` one-hot
        ``(n, n_classes)`` (``"onehot"``), or ``int64`` ``(n,)`` class positions in
        :attr:`classes` (``"int"``).
    classes : tuple of str
        Canonical class names, in the order given; ``classes[0]`` is the ``+1`` class.
    d_in : int
        Input dimension (3072 for CIFAR-10, 784 for MNIST).
    scale : float
        Global factor applied after standardisation (1.0 when ``k0_scale`` is None).
    dataset : str
        ``"cifar10"`` or ``"mnist"``.
    label_encoding : str
        ``"pm1"``, ``"onehot"`` or ``"int"`` (``"auto"`` resolved).
    seed : int
        Seed of the ``numpy.random.default_rng`` used for the subset draw.
    k0_scale : float or None
        Requested mean diagonal of ``K0 = X X^T / d_in`` on the training set.
    pixel_mean, pixel_std : numpy.ndarray
        Per-pixel statistics (``(d_in,)``, pixels in ``[0, 1]``) used for standardisation;
        ``pixel_std`` is 1 for pixels constant over the training subset, which are only
        centred.
    train_index, test_index : numpy.ndarray
        Row indices of the chosen examples in the arrays returned by
        :func:`load_cifar10` / :func:`load_mnist` for the train / test split, in the order
        of ``x_train`` / ``x_test``.
    metadata : dict
        Provenance: ``source_dir``, ``source_files`` (file names read),
        ``n_train_batches`` (CIFAR-10 ``data_batch_*`` files found; None for MNIST),
        ``n_constant_pixels``, ``train_counts``, ``test_counts`` (per class name).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    d_in: int
    scale: float
    dataset: str
    label_encoding: str
    seed: int
    k0_scale: float | None
    pixel_mean: np.ndarray
    pixel_std: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(dataset={self.dataset!r}, classes={self.classes}, "
            f"x_train={self.x_train.shape}, x_test={self.x_test.shape}, d_in={self.d_in}, "
            f"labels={self.label_encoding!r}, scale={self.scale:.6g}, "
            f"k0_scale={self.k0_scale}, seed={self.seed})"
        )


def _select_classes(classes: Iterable[str | int] | str, names: Sequence[str]) -> list[int]:
    if isinstance(classes, str | int):
        classes = [classes]
    lookup = {n.lower(): i for i, n in enumerate(names)}
    chosen: list[int] = []
    for c in classes:
        if isinstance(c, bool):
            raise TypeError(f"class must be a name or an index, got {c!r}")
        if isinstance(c, int | np.integer):
            if not 0 <= int(c) < len(names):
                raise FieldresInputError(
                    f"class index {c} out of range 0..{len(names) - 1}; valid names: {list(names)}"
                )
            idx = int(c)
        else:
            key = str(c).strip().lower()
            if key not in lookup:
                raise FieldresInputError(f"unknown class {c!r}; valid names: {list(names)}")
            idx = lookup[key]
        if idx in chosen:
            raise FieldresInputError(f"class {names[idx]!r} given more than once")
        chosen.append(idx)
    if not chosen:
        raise FieldresInputError(f"at least one class is required; valid names: {list(names)}")
    return chosen


def _per_class_counts(n: int, n_classes: int) -> list[int]:
    """Split ``n`` evenly; the remainder goes one each to the first classes."""
    base, rem = divmod(n, n_classes)
    return [base + (1 if i < rem else 0) for i in range(n_classes)]


def _draw(
    labels: np.ndarray,
    chosen: Sequence[int],
    counts: Sequence[int],
    names: Sequence[str],
    split: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``counts[j]`` examples of class ``chosen[j]`` without replacement, shuffled."""
    idx_parts, pos_parts = [], []
    for j, (c, k) in enumerate(zip(chosen, counts, strict=True)):
        pool = np.flatnonzero(labels == c)
        if k > pool.size:
            raise FieldresInputError(
                f"class {names[c]!r} has only {pool.size} {split} examples, but {k} were "
                f"requested (n_{split}={sum(counts)} over {len(chosen)} classes)"
            )
        idx_parts.append(np.sort(rng.choice(pool, size=k, replace=False)))
        pos_parts.append(np.full(k, j, dtype=np.int64))
    idx = np.concatenate(idx_parts)
    pos = np.concatenate(pos_parts)
    perm = rng.permutation(idx.size)
    return idx[perm], pos[perm]


def _encode_labels(pos: np.ndarray, n_classes: int, encoding: str) -> np.ndarray:
    if encoding == "pm1":
        return np.where(pos == 0, 1.0, -1.0)
    if encoding == "onehot":
        return np.eye(n_classes, dtype=np.float64)[pos]
    return pos.astype(np.int64)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def make_dataset(
    dataset: str = "cifar10",
    classes: Sequence[str | int] | str = ("dog", "airplane"),
    n_train: int = 500,
    n_test: int = 1000,
    seed: int = 0,
    data_dir: StrPath | None = None,
    k0_scale: float | None = None,
    labels: LabelEncoding = "auto",
) -> Dataset:
    """Build a balanced, standardised class subset of CIFAR-10 or MNIST.

    Parameters
    ----------
    dataset : {"cifar10", "mnist"}
        Which data set.
    classes : sequence of str (or int)
        Class names, case-insensitive (CIFAR-10: the names in ``batches.meta``, e.g.
        ``"dog"``; MNIST: ``"0"`` ... ``"9"``). Integers are taken as label indices. The
        order matters: ``classes[0]`` is the ``+1`` class for ``"pm1"`` labels. A single
        string is one class.
    n_train, n_test : int
        Total number of training / test examples, split evenly over the classes; when not
        divisible, the first ``n % n_classes`` classes get one more example. ``n_train``
        must be at least the number of classes; ``n_test`` may be 0.
    seed : int
        Seed for ``numpy.random.default_rng``; the same seed gives the same subset.
    data_dir : str or os.PathLike, optional
        Data location, see :func:`resolve_data_dir`.
    k0_scale : float, optional
        If given, after standardisation all inputs are multiplied by one global factor
        so that the mean diagonal of ``K0 = X X^T / d_in`` over the training set equals
        ``k0_scale``. ``None`` leaves the standardised inputs as they are (their mean
        diagonal is then 1 minus the fraction of constant pixels).
    labels : {"auto", "pm1", "onehot", "int"}
        Target encoding. ``"auto"``: ``"pm1"`` for two classes (``classes[0]`` -> +1.0,
        ``classes[1]`` -> -1.0), ``"onehot"`` (float) otherwise. ``"int"`` gives the
        position of the class in ``classes``.

    Returns
    -------
    Dataset
        The subset; see :class:`Dataset`.

    Raises
    ------
    ValueError
        Unknown dataset / class name (the message lists the valid names), repeated class,
        a class with too few examples, bad sizes, ``"pm1"`` with other than two classes,
        non-positive ``k0_scale``, or training inputs that are all constant.
    DataNotFoundError, DataFormatError
        From the loaders.

    Notes
    -----
    Preprocessing: pixels ``/ 255`` as ``float64``; per-pixel mean and (population) std
    over the selected training subset; ``x = (x - mean) / std``, where pixels constant
    over the training subset keep ``std = 1`` (they are centred, never divided by zero);
    then ``x *= scale``. The test set gets the same transform. Examples are drawn per
    class without replacement from the official train / test splits, then shuffled.
    """
    ds = _canonical_dataset(dataset)
    if labels not in ("auto", "pm1", "onehot", "int"):
        raise FieldresInputError(f"labels must be 'auto', 'pm1', 'onehot' or 'int', got {labels!r}")
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if k0_scale is not None and not (np.isfinite(k0_scale) and k0_scale > 0):
        raise FieldresInputError(
            f"k0_scale must be a positive finite number or None, got {k0_scale}")

    loader = _load_cifar10_with_files if ds == "cifar10" else _load_mnist_with_files
    x_tr_raw, lab_tr, names, train_files = loader(data_dir, "train")

    chosen = _select_classes(classes, names)
    k = len(chosen)
    encoding = labels if labels != "auto" else ("pm1" if k == 2 else "onehot")
    if encoding == "pm1" and k != 2:
        raise FieldresInputError(f"labels='pm1' needs exactly two classes, got {k}")
    if n_train < k:
        raise FieldresInputError(f"n_train={n_train} must be at least the number of classes ({k})")
    if n_test < 0:
        raise FieldresInputError(f"n_test must be >= 0, got {n_test}")

    rng = np.random.default_rng(seed)
    train_counts = _per_class_counts(int(n_train), k)
    test_counts = _per_class_counts(int(n_test), k)
    tr_idx, tr_pos = _draw(lab_tr, chosen, train_counts, names, "train", rng)

    x_te_raw, lab_te, _, test_files = loader(data_dir, "test")
    te_idx, te_pos = _draw(lab_te, chosen, test_counts, names, "test", rng)

    raw_tr = x_tr_raw[tr_idx]
    raw_te = x_te_raw[te_idx]
    d_in = raw_tr.shape[1]

    x_tr = raw_tr.astype(np.float64) / 255.0
    x_te = raw_te.astype(np.float64) / 255.0
    constant = raw_tr.min(axis=0) == raw_tr.max(axis=0)
    mean = x_tr.mean(axis=0)
    mean[constant] = x_tr[0, constant]  # exact, so constant pixels centre to exactly 0
    std = x_tr.std(axis=0)
    std[constant] = 1.0
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std

    scale = 1.0
    if k0_scale is not None:
        mean_diag = float(np.mean(np.sum(x_tr * x_tr, axis=1)) / d_in)
        if mean_diag <= 0.0:
            raise FieldresInputError(
                "cannot rescale to k0_scale: every pixel is constant over the training subset"
            )
        scale = float(np.sqrt(k0_scale / mean_diag))
        x_tr *= scale
        x_te *= scale

    folder = train_files[0].parent
    metadata: dict[str, Any] = {
        "source_dir": str(folder),
        "source_files": tuple(p.name for p in (*train_files, *test_files)),
        "n_train_batches": len(train_files) if ds == "cifar10" else None,
        "n_constant_pixels": int(constant.sum()),
        "train_counts": dict(zip((names[c] for c in chosen), train_counts, strict=True)),
        "test_counts": dict(zip((names[c] for c in chosen), test_counts, strict=True)),
    }
    return Dataset(
        x_train=_readonly(x_tr),
        y_train=_readonly(_encode_labels(tr_pos, k, encoding)),
        x_test=_readonly(x_te),
        y_test=_readonly(_encode_labels(te_pos, k, encoding)),
        classes=tuple(names[c] for c in chosen),
        d_in=int(d_in),
        scale=scale,
        dataset=ds,
        label_encoding=encoding,
        seed=int(seed),
        k0_scale=None if k0_scale is None else float(k0_scale),
        pixel_mean=_readonly(mean),
        pixel_std=_readonly(std),
        train_index=_readonly(tr_idx.astype(np.int64)),
        test_index=_readonly(te_idx.astype(np.int64)),
        metadata=metadata,
    )


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
