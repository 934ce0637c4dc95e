"""Balanced, standardised subsets of the loaded data sets.

:class:`Dataset` and :func:`make_dataset`, the entry point of every real-data experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import FieldresInputError
from .datasets import (
    LabelEncoding,
    StrPath,
    _canonical_dataset,
    _load_cifar10_with_files,
    _load_mnist_with_files,
)

__all__ = ["Dataset", "make_dataset"]

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
    FieldresInputError
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
            f"k0_scale must be a positive finite number or None, got {k0_scale}"
        )

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

