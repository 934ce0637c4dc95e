"""Measures of a posterior's kernels: relative change, its debiased form, kernel--target alignment.

Used by :mod:`fieldres.bayes.training` (which re-exports them); see its module docstring.
"""

from __future__ import annotations

import numpy as np

__all__ = ["relative_change", "debiased_change", "kernel_alignment"]


def relative_change(K, K_ref) -> float:
    """``||K - K_ref||_F / ||K_ref||_F``."""
    K, K_ref = np.asarray(K, np.float64), np.asarray(K_ref, np.float64)
    return float(np.linalg.norm(K - K_ref) / np.linalg.norm(K_ref))


def debiased_change(Ks, K_ref) -> tuple[float, float]:
    r"""Relative distance of the mean of independent kernel estimates from ``K_ref``.

    ``Ks`` ``(C, P, P)`` are independent estimates (one per chain) of a mean kernel ``M``.
    The plain distance ``||mean(Ks) - K_ref||_F`` is biased upwards by the estimates'
    fluctuations (``E||m - K_ref||^2 = ||M - K_ref||^2 + tr Cov(m)``); with
    ``tr Cov(m) ~ sum_c ||K_c - m||^2 / (C (C - 1))`` the squared distance is debiased:

    .. math::

        \widehat{d^2} = \lVert \bar K - K_\mathrm{ref} \rVert_F^2
        - \frac{1}{C (C-1)} \sum_c \lVert K_c - \bar K \rVert_F^2 .

    Returns ``(sqrt(max(d2, 0)) / ||K_ref||, raw ||mean - K_ref|| / ||K_ref||)``; the first is
    ``nan`` for fewer than two estimates.
    """
    Ks = np.asarray(Ks, np.float64)
    K_ref = np.asarray(K_ref, np.float64)
    if Ks.ndim != 3 or Ks.shape[0] == 0:
        return float("nan"), float("nan")
    m = Ks.mean(0)
    ref = np.linalg.norm(K_ref)
    raw2 = np.sum((m - K_ref) ** 2)
    C = Ks.shape[0]
    if C < 2:
        return float("nan"), float(np.sqrt(raw2) / ref)
    var = np.sum((Ks - m) ** 2) / (C * (C - 1))
    return float(np.sqrt(max(raw2 - var, 0.0)) / ref), float(np.sqrt(raw2) / ref)


def kernel_alignment(K, Y) -> float:
    """Centred kernel--target alignment ``<K_c, Y_c Y_c^T>_F / (||K_c||_F ||Y_c Y_c^T||_F)``.

    ``Y`` is ``(P,)`` (e.g. ±1 labels) or ``(P, k)`` (one-hot); centring by
    ``H = I - 1 1^T / P`` on both sides (Cortes, Mohri & Rostamizadeh, JMLR 13, 2012).
    Lies in ``[-1, 1]``; 1 means the kernel is a multiple of the centred label kernel.
    """
    K = np.asarray(K, np.float64)
    Y = np.asarray(Y, np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    Kc = K - K.mean(0, keepdims=True) - K.mean(1, keepdims=True) + K.mean()
    Yc = Y - Y.mean(0, keepdims=True)
    T = Yc @ Yc.T
    den = np.linalg.norm(Kc) * np.linalg.norm(T)
    return float(np.sum(Kc * T) / den) if den > 0 else float("nan")
